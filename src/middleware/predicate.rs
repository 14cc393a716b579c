//! When the cache is involved at all: [`PassthroughPredicate`] and its building blocks.
//!
//! A predicate answers twice: for the request (should the cache look it up?) and for the
//! response (should the cache hash, store and answer preconditions for it?). `true` means
//! "involve the cache"; `false` passes the message through untouched.
//!
//! Hard safety rules (no `no-store` entry, no answer without the inner service for
//! `private` or authorised content) live in the providers, where no predicate can switch them
//! off.
//!
//! ```
//! use http::{Method, StatusCode};
//! use tower_etag::predicate::{DefaultPredicate, PassthroughPredicate, RequestPredicate};
//!
//! // The default rules, and never for paths under /api.
//! let predicate = DefaultPredicate::new()
//!     .and(RequestPredicate::new(|_: &Method, uri: &http::Uri, _: &http::HeaderMap| {
//!         !uri.path().starts_with("/api")
//!     }));
//! # let _ = predicate;
//! ```

use http::{
    header::CONTENT_LENGTH, Extensions, HeaderMap, Method, Request, Response, StatusCode, Uri,
    Version,
};

/// Decides per request and per response whether the cache is involved.
///
/// It chooses among **safe** requests (GET, HEAD, OPTIONS, ...) only: a request with an
/// unsafe method (POST, PUT, DELETE, ...) always reaches the provider and its response the
/// provider's store, whatever the predicate says, because such a response invalidates what a
/// cache holds for its target (RFC 9111 §4.4), and an `If-Match` must be able to refuse it.
/// A predicate cannot switch that off.
///
/// Closures over the response's parts are predicates (on responses only), like tower-http's
/// compression predicates: `|status: StatusCode, version: Version, headers: &HeaderMap,
/// extensions: &Extensions| -> bool`. [`RequestPredicate`] wraps a closure over requests.
pub trait PassthroughPredicate: Clone {
    /// Whether the cache should look this request up (`false`: straight to the inner service).
    fn cache_request<B>(&self, request: &Request<B>) -> bool {
        let _ = request;
        true
    }

    /// Whether the cache should process this response of the inner service (`false`: it is
    /// returned untouched).
    fn cache_response<B>(&self, response: &Response<B>) -> bool {
        let _ = response;
        true
    }

    /// A predicate that involves the cache only where both `self` and `other` do.
    fn and<Other>(self, other: Other) -> And<Self, Other>
    where
        Self: Sized,
        Other: PassthroughPredicate,
    {
        And {
            lhs: self,
            rhs: other,
        }
    }
}

impl<F> PassthroughPredicate for F
where
    F: Fn(StatusCode, Version, &HeaderMap, &Extensions) -> bool + Clone,
{
    fn cache_response<B>(&self, response: &Response<B>) -> bool {
        self(
            response.status(),
            response.version(),
            response.headers(),
            response.extensions(),
        )
    }
}

/// Two predicates that must both agree. Made by [`PassthroughPredicate::and`].
#[derive(Clone, Copy, Debug, Default)]
pub struct And<L, R> {
    lhs: L,
    rhs: R,
}

impl<L: PassthroughPredicate, R: PassthroughPredicate> PassthroughPredicate for And<L, R> {
    fn cache_request<B>(&self, request: &Request<B>) -> bool {
        self.lhs.cache_request(request) && self.rhs.cache_request(request)
    }

    fn cache_response<B>(&self, response: &Response<B>) -> bool {
        self.lhs.cache_response(response) && self.rhs.cache_response(response)
    }
}

/// A predicate on requests from a closure over the method, URI and headers; it accepts
/// every response.
#[derive(Clone, Copy, Debug)]
pub struct RequestPredicate<F>(F);

impl<F> RequestPredicate<F>
where
    F: Fn(&Method, &Uri, &HeaderMap) -> bool + Clone,
{
    /// Wraps `f`.
    pub const fn new(f: F) -> Self {
        Self(f)
    }
}

impl<F> PassthroughPredicate for RequestPredicate<F>
where
    F: Fn(&Method, &Uri, &HeaderMap) -> bool + Clone,
{
    fn cache_request<B>(&self, request: &Request<B>) -> bool {
        (self.0)(request.method(), request.uri(), request.headers())
    }
}

/// Only GET and HEAD requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct GetOrHead;

impl PassthroughPredicate for GetOrHead {
    fn cache_request<B>(&self, request: &Request<B>) -> bool {
        matches!(*request.method(), Method::GET | Method::HEAD)
    }
}

/// Only 2xx responses, except `204 No Content` (nothing to tag) and `206 Partial Content`
/// (a part, not the representation).
#[derive(Clone, Copy, Debug, Default)]
pub struct SuccessfulFullResponse;

impl PassthroughPredicate for SuccessfulFullResponse {
    fn cache_response<B>(&self, response: &Response<B>) -> bool {
        let status = response.status();
        status.is_success()
            && status != StatusCode::NO_CONTENT
            && status != StatusCode::PARTIAL_CONTENT
    }
}

/// Not responses that declare an empty body (`Content-Length: 0`). A missing or invalid
/// `Content-Length` does not exclude a response.
#[derive(Clone, Copy, Debug, Default)]
pub struct NotEmpty;

impl PassthroughPredicate for NotEmpty {
    fn cache_response<B>(&self, response: &Response<B>) -> bool {
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        declared != Some(0)
    }
}

/// The default rules: [`GetOrHead`], [`SuccessfulFullResponse`] and [`NotEmpty`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultPredicate(And<And<GetOrHead, SuccessfulFullResponse>, NotEmpty>);

impl DefaultPredicate {
    /// The default predicate.
    pub const fn new() -> Self {
        Self(And {
            lhs: And {
                lhs: GetOrHead,
                rhs: SuccessfulFullResponse,
            },
            rhs: NotEmpty,
        })
    }
}

impl PassthroughPredicate for DefaultPredicate {
    fn cache_request<B>(&self, request: &Request<B>) -> bool {
        self.0.cache_request(request)
    }

    fn cache_response<B>(&self, response: &Response<B>) -> bool {
        self.0.cache_response(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method) -> Request<()> {
        Request::builder()
            .method(method)
            .uri("/x")
            .body(())
            .unwrap()
    }

    fn res(status: u16, content_length: Option<&str>) -> Response<()> {
        let mut b = Response::builder().status(status);
        if let Some(cl) = content_length {
            b = b.header(CONTENT_LENGTH, cl);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn default_only_get_and_head() {
        let p = DefaultPredicate::new();
        assert!(p.cache_request(&req(Method::GET)));
        assert!(p.cache_request(&req(Method::HEAD)));
        for m in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ] {
            assert!(!p.cache_request(&req(m.clone())), "{m}");
        }
    }

    #[test]
    fn default_only_full_2xx_responses() {
        let p = DefaultPredicate::new();
        for ok in [200, 201, 203, 299] {
            assert!(p.cache_response(&res(ok, None)), "{ok}");
        }
        for not in [204, 206, 301, 304, 404, 500] {
            assert!(!p.cache_response(&res(not, None)), "{not}");
        }
    }

    #[test]
    fn default_skips_declared_empty_bodies_only() {
        let p = DefaultPredicate::new();
        assert!(!p.cache_response(&res(200, Some("0"))));
        assert!(p.cache_response(&res(200, Some("12"))));
        assert!(p.cache_response(&res(200, Some("bogus"))));
        assert!(p.cache_response(&res(200, None)));
    }

    #[test]
    fn closures_and_combinator() {
        let only_html = |_: StatusCode, _: Version, h: &HeaderMap, _: &Extensions| {
            h.get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v == "text/html")
        };
        let p = DefaultPredicate::new().and(only_html);
        let mut html = res(200, None);
        html.headers_mut()
            .insert(http::header::CONTENT_TYPE, "text/html".parse().unwrap());
        assert!(p.cache_response(&html));
        assert!(!p.cache_response(&res(200, None)));
        // The request side of a response closure accepts everything; `and` keeps GET/HEAD.
        assert!(!p.cache_request(&req(Method::POST)));
        assert!(p.cache_request(&req(Method::GET)));
    }

    #[test]
    fn request_predicate() {
        let p = RequestPredicate::new(|_: &Method, uri: &Uri, _: &HeaderMap| uri.path() != "/x");
        assert!(!p.cache_request(&req(Method::GET)));
        assert!(p.cache_response(&res(200, None)));
    }
}
