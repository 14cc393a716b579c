//! The RFC 9111 caching policy: when a response may be stored, how long it stays fresh, when
//! a stored response may answer a request, how to revalidate it and how to freshen it.
//!
//! This is the job the npm package `http-cache-semantics` does (`before_request` /
//! `after_response`), done for the [`http`] crate's types and RFC 9111. It is pure code: no
//! async, no I/O, and the clock is always passed in (`now: SystemTime`), so every rule can be
//! tested with fixed times.
//!
//! A [`CachePolicy`] is built from the request and response heads of one exchange. It keeps
//! what the rules need later, all of it plain data (see [`PolicyParts`]) so a store can
//! serialize it next to the body and rebuild the policy with [`CachePolicy::from_parts`].
//!
//! ```
//! use http::{Request, Response};
//! use std::time::{Duration, SystemTime};
//! use tower_etag::policy::{BeforeRequest, CacheMode, CachePolicy};
//! use tower_etag::semantics::request::RequestHead;
//!
//! let (req, ()) = Request::get("/a").body(()).unwrap().into_parts();
//! let head = RequestHead::from_parts(&req).unwrap(); // the request, parsed once
//! let (res, ()) = Response::builder()
//!     .header("cache-control", "max-age=60")
//!     .header("etag", "\"v1\"")
//!     .body(())
//!     .unwrap()
//!     .into_parts();
//! let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let policy = CachePolicy::new(&req, &res, t0, t0, CacheMode::Shared);
//! assert!(policy.storable().is_ok());
//!
//! // Ten seconds later the stored response answers a new request by itself.
//! let later = t0 + Duration::from_secs(10);
//! assert!(matches!(policy.before_request(&req, &head, later), BeforeRequest::Fresh { .. }));
//! assert_eq!(policy.time_to_live(later), Duration::from_secs(50));
//!
//! // After a minute it must be revalidated, with its ETag in If-None-Match.
//! match policy.before_request(&req, &head, t0 + Duration::from_secs(61)) {
//!     BeforeRequest::Stale { revalidation_headers, .. } => {
//!         assert_eq!(revalidation_headers["if-none-match"], "\"v1\"");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```
//!
//! # What is not implemented
//!
//! - Partial content (RFC 9111 §3.3, §3.4): `206` responses and any response with
//!   `Content-Range` are never stored, and combining ranges is not done. (The response
//!   cache answers a single `Range` from a fresh stored full response:
//!   [`semantics::range`](crate::semantics::range).)
//! - Heuristic freshness uses the customary 10 % of `Date − Last-Modified` (§4.2.2), capped at
//!   [`PolicyOptions::heuristic_max`].
//! - `must-understand` (§5.2.2.3) makes a response storable only with a status code this
//!   module understands; it never overrides `no-store` (that is allowed, not required).
//! - Only GET and HEAD responses are stored (a POST response with explicit freshness may be
//!   stored by RFC 9111, but it could only answer a later GET of its `Content-Location`).

mod age;
pub mod decide;
pub(crate) mod filing;
pub mod freshness;
pub(crate) mod head;
mod invalidate;
mod revalidate;
mod storable;
pub(crate) mod vary;

pub use invalidate::invalidated_uris;
pub use revalidate::{
    only_if_cached_unsatisfied, AfterResponse, BeforeRequest, HeadUpdate, StaleReason,
};
pub use storable::NotStorable;

use crate::semantics::{cache_control::CacheControl, etag::EntityTag, targeted};
use http::{
    header::{AUTHORIZATION, ETAG, LAST_MODIFIED},
    request, response, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri,
};

/// The response directives a cache follows: those of the targeted field `targeted` when it
/// has valid ones (RFC 9213 §2.2), else `Cache-Control`'s.
pub(crate) fn response_cache_control(
    headers: &HeaderMap,
    targeted: Option<&HeaderName>,
) -> CacheControl {
    targeted
        .and_then(|name| targeted::directives(headers, name))
        .unwrap_or_else(|| CacheControl::from_headers(headers))
}
use std::time::{Duration, SystemTime};

/// Whether the cache is shared (a proxy or a server-side cache serving many users) or private
/// (one user's cache). RFC 9111 §1: some rules differ, e.g. `private` and `s-maxage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CacheMode {
    /// A shared cache: what one user gets may be served to another. The default.
    #[default]
    Shared,
    /// A private cache: serves a single user.
    Private,
}

/// The default cap on a heuristic freshness lifetime: one day.
///
/// A response with `Last-Modified` a year ago would otherwise be fresh for five weeks on the
/// strength of a guess; a day keeps the cache useful for static content while bounding how
/// long a change can go unseen.
pub const DEFAULT_HEURISTIC_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// The default time an entry with validators is kept beyond its freshness (and stale
/// windows) so it can still be revalidated cheaply: one day.
pub const DEFAULT_REVALIDATION_HEADROOM: Duration = Duration::from_secs(24 * 60 * 60);

/// Tunables of a [`CachePolicy`]. The defaults follow common practice and are documented on
/// each field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyOptions {
    /// The largest heuristic freshness lifetime (RFC 9111 §4.2.2), [`DEFAULT_HEURISTIC_MAX`]
    /// by default. `Duration::ZERO` turns heuristic freshness off.
    pub heuristic_max: Duration,
    /// How much longer than its freshness and stale windows an entry with a validator is
    /// worth keeping for revalidation ([`CachePolicy::storage_ttl`]),
    /// [`DEFAULT_REVALIDATION_HEADROOM`] by default.
    pub revalidation_headroom: Duration,
    /// An operator's override, off by default: the freshness lifetime of a response that
    /// gives none (no `max-age`, `s-maxage` or `Expires`), in place of the heuristic
    /// (§4.2.2), for the statuses the heuristic applies to. For origins that send poor
    /// cache headers.
    pub default_ttl: Option<Duration>,
    /// An operator's override, off by default: the shortest freshness lifetime of a response
    /// that may be reused (not one with `no-cache`, nor a status without freshness of its
    /// own the heuristic does not cover).
    pub min_ttl: Option<Duration>,
    /// An operator's override, off by default: the longest freshness lifetime.
    pub max_ttl: Option<Duration>,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self {
            heuristic_max: DEFAULT_HEURISTIC_MAX,
            revalidation_headroom: DEFAULT_REVALIDATION_HEADROOM,
            default_ttl: None,
            min_ttl: None,
            max_ttl: None,
        }
    }
}

/// The caching policy of one stored (or candidate) response.
///
/// Build it with [`CachePolicy::new`] when a response arrives, check
/// [`storable`](CachePolicy::storable), and later ask
/// [`before_request`](CachePolicy::before_request) whether it can answer a new request.
/// Everything it holds is exposed by [`CachePolicy::into_parts`] as plain data for a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    method: Method,
    uri: Uri,
    vary_request: Vec<(String, Option<String>)>,
    status: StatusCode,
    response_headers: HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
    mode: CacheMode,
    request_authorization: bool,
    request_no_store: bool,
    options: PolicyOptions,
    etag_minted: bool,
    targeted: Option<HeaderName>,
    /// Derived from `response_headers` (and `targeted`); not part of [`PolicyParts`].
    res_cc: CacheControl,
    /// Derived once: §4.2.3 `corrected_initial_age` (parses `Date` and `Age`).
    initial_age: Duration,
    /// Derived once: the freshness lifetime (§4.2.1, §4.2.2).
    lifetime: Duration,
    /// Which override of [`PolicyOptions`] decided `lifetime`, if one did.
    lifetime_override: Option<&'static str>,
}

/// The fields a served copy of the stored ones may gain without the map growing.
const SERVED_ROOM: usize = 3;

/// Everything a [`CachePolicy`] holds, as public fields: what a store serializes.
///
/// `CachePolicy::from_parts(policy.into_parts()) == policy` always holds. The struct is
/// deliberately exhaustive so that a store outside this crate can rebuild it from its own
/// encoding; a store should still version that encoding, since a later release may add a
/// field (a breaking change, announced as such).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyParts {
    /// The request method (GET or HEAD for a storable response).
    pub method: Method,
    /// The request target as received.
    pub uri: Uri,
    /// The values, in the request, of the fields named by the response's `Vary`: lower-case
    /// field name and normalised value (lines joined with `", "`, `%` and non-ASCII bytes
    /// percent-encoded, white space runs folded to one space, ends trimmed; for the
    /// `Accept*` lists no white space around commas, and `Accept-Language` and
    /// `Accept-Encoding` lower-cased); `None` when the request lacked the field. Sorted by
    /// name.
    pub vary_request: Vec<(String, Option<String>)>,
    /// The response status.
    pub status: StatusCode,
    /// The response header fields as stored: without hop-by-hop fields and without the fields
    /// named by a qualified `no-cache` (and, in a shared cache, `private`).
    pub response_headers: HeaderMap,
    /// When the request was sent (RFC 9111 §4.2.3 `request_time`).
    pub request_time: SystemTime,
    /// When the response was received (RFC 9111 §4.2.3 `response_time`).
    pub response_time: SystemTime,
    /// Shared or private cache.
    pub mode: CacheMode,
    /// Whether the request carried `Authorization` (RFC 9111 §3.5), or (in the shared
    /// entries of a per-user cache) named a user, which counts the same.
    pub request_authorization: bool,
    /// Whether the request carried `Cache-Control: no-store` (RFC 9111 §5.2.1.5).
    pub request_no_store: bool,
    /// The tunables.
    pub options: PolicyOptions,
    /// Whether the stored `ETag` was minted by the cache from the stored body (the origin
    /// sent none): it answers clients' `If-None-Match`, but is never put in a revalidation
    /// request ([`CachePolicy::revalidation_headers`]), nor compared with the origin's
    /// validators (the origin never issued it).
    pub etag_minted: bool,
    /// The targeted cache-control field (RFC 9213) whose directives this cache follows
    /// instead of `Cache-Control` and `Expires`, if the response had one on the cache's
    /// target list ([`CachePolicy::with_targets`]).
    pub targeted: Option<HeaderName>,
}

impl CachePolicy {
    /// The policy of the response `res` to the request `req`, with default
    /// [`PolicyOptions`]. `request_time` is when the request was sent on, `response_time`
    /// when the response head arrived (RFC 9111 §4.2.3).
    ///
    /// The response header fields are stored without hop-by-hop fields (§3.1), without the
    /// fields a qualified `no-cache="…"` names (they must not be served without
    /// revalidation, §5.2.2.4) and, in a shared cache, without those a qualified
    /// `private="…"` names (§5.2.2.7). Fields the policy itself depends on (`Cache-Control`,
    /// `Date`, `Expires`, `Age`, `Vary`, `ETag`, `Last-Modified`) are never dropped that way;
    /// a qualified directive naming one of them counts as unqualified instead.
    pub fn new(
        req: &request::Parts,
        res: &response::Parts,
        request_time: SystemTime,
        response_time: SystemTime,
        mode: CacheMode,
    ) -> Self {
        Self::with_options(
            req,
            res,
            request_time,
            response_time,
            mode,
            PolicyOptions::default(),
        )
    }

    /// Like [`CachePolicy::new`], with explicit [`PolicyOptions`].
    pub fn with_options(
        req: &request::Parts,
        res: &response::Parts,
        request_time: SystemTime,
        response_time: SystemTime,
        mode: CacheMode,
        options: PolicyOptions,
    ) -> Self {
        let times = (request_time, response_time);
        Self::with_targets(req, res, times, mode, options, &[])
    }

    /// Like [`CachePolicy::with_options`], for a cache with a target list (RFC 9213): the
    /// first field of `targets` the response has with a valid, non-empty value decides this
    /// cache's policy, and `Cache-Control` and `Expires` are ignored for it (§2.2).
    /// `times` are `(request_time, response_time)`.
    pub fn with_targets(
        req: &request::Parts,
        res: &response::Parts,
        times: (SystemTime, SystemTime),
        mode: CacheMode,
        options: PolicyOptions,
        targets: &[HeaderName],
    ) -> Self {
        let (request_time, response_time) = times;
        let (targeted, cc) = match targeted::select(&res.headers, targets) {
            Some((name, cc)) => (Some(name.clone()), cc),
            None => (None, CacheControl::from_headers(&res.headers)),
        };
        let response_headers = head::stored_headers_by(&res.headers, mode, &cc);
        let vary_request = vary::selecting_values(&response_headers, &req.headers);
        let req_cc = CacheControl::from_headers(&req.headers);
        Self::from_parts(PolicyParts {
            method: req.method.clone(),
            uri: req.uri.clone(),
            vary_request,
            status: res.status,
            response_headers,
            request_time,
            response_time,
            mode,
            request_authorization: req.headers.contains_key(AUTHORIZATION),
            request_no_store: req_cc.no_store,
            options,
            etag_minted: false,
            targeted,
        })
    }

    /// Rebuilds a policy from its plain data (as returned by [`CachePolicy::into_parts`]).
    pub fn from_parts(parts: PolicyParts) -> Self {
        // A targeted field that is gone or no longer valid (a 304 changed it) gives way to
        // Cache-Control.
        let targeted_cc = parts
            .targeted
            .as_ref()
            .and_then(|name| targeted::directives(&parts.response_headers, name));
        let targeted = parts.targeted.filter(|_| targeted_cc.is_some());
        let res_cc =
            targeted_cc.unwrap_or_else(|| CacheControl::from_headers(&parts.response_headers));
        let mut response_headers = parts.response_headers;
        // Room for what a served copy adds (`Age`, `Cache-Status`) and a minted `ETag`:
        // `headers_with_age` clones the map, and a clone keeps the room. (At the map's
        // limit there is none to give: the copy then grows, it does not fail.)
        let _ = response_headers.try_reserve(SERVED_ROOM);
        let mut policy = Self {
            method: parts.method,
            uri: parts.uri,
            vary_request: parts.vary_request,
            status: parts.status,
            response_headers,
            request_time: parts.request_time,
            response_time: parts.response_time,
            mode: parts.mode,
            request_authorization: parts.request_authorization,
            request_no_store: parts.request_no_store,
            options: parts.options,
            etag_minted: parts.etag_minted,
            targeted,
            res_cc,
            initial_age: Duration::ZERO,
            lifetime: Duration::ZERO,
            lifetime_override: None,
        };
        // Both depend on the stored response only: parse its dates once, not on every hit.
        policy.initial_age = policy.compute_corrected_initial_age();
        (policy.lifetime, policy.lifetime_override) = policy.compute_freshness_lifetime();
        policy
    }

    /// This policy with header values and target in buffers of its own: one built from a
    /// response just received shares them with the connection's read buffer, and a store
    /// that kept it would keep those whole buffers alive.
    #[must_use]
    pub fn detached(&self) -> Self {
        self.clone().into_detached()
    }

    /// [`CachePolicy::detached`], without a copy of the policy itself.
    #[must_use]
    pub fn into_detached(mut self) -> Self {
        for value in self.response_headers.values_mut() {
            if let Ok(mut own) = HeaderValue::from_bytes(value.as_bytes()) {
                own.set_sensitive(value.is_sensitive());
                *value = own;
            }
        }
        if let Ok(uri) = Uri::try_from(self.uri.to_string()) {
            self.uri = uri;
        }
        self
    }

    /// The policy's plain data, for a store to serialize.
    #[must_use]
    pub fn into_parts(self) -> PolicyParts {
        PolicyParts {
            method: self.method,
            uri: self.uri,
            vary_request: self.vary_request,
            status: self.status,
            response_headers: self.response_headers,
            request_time: self.request_time,
            response_time: self.response_time,
            mode: self.mode,
            request_authorization: self.request_authorization,
            request_no_store: self.request_no_store,
            options: self.options,
            etag_minted: self.etag_minted,
            targeted: self.targeted,
        }
    }

    /// A copy of the policy's plain data ([`CachePolicy::into_parts`] without consuming).
    #[must_use]
    pub fn to_parts(&self) -> PolicyParts {
        self.clone().into_parts()
    }

    /// This policy with `tag` as the stored response's `ETag`, minted by the cache from the
    /// stored body ([`PolicyParts::etag_minted`]); `None` where the response has a validator
    /// of its own (`ETag` or `Last-Modified`: the origin's validators are the ones to keep),
    /// or is not a `200`.
    #[must_use]
    pub fn with_minted_etag(&self, tag: &EntityTag) -> Option<Self> {
        if !self.wants_minted_etag() {
            return None;
        }
        let mut minted = self.clone();
        minted.response_headers.insert(ETAG, tag.to_header_value());
        minted.etag_minted = true;
        Some(minted)
    }

    /// Whether a cache that mints validators should tag this response: a `200` without a
    /// validator of its own (see [`CachePolicy::with_minted_etag`]).
    pub fn wants_minted_etag(&self) -> bool {
        self.status == StatusCode::OK
            && !self.response_headers.contains_key(ETAG)
            && !self.response_headers.contains_key(LAST_MODIFIED)
    }

    /// The targeted field whose directives this policy follows ([`PolicyParts::targeted`]).
    pub fn targeted(&self) -> Option<&HeaderName> {
        self.targeted.as_ref()
    }

    /// Whether the stored `ETag` was minted by the cache ([`PolicyParts::etag_minted`]).
    pub fn etag_minted(&self) -> bool {
        self.etag_minted
    }

    /// The request method of the stored exchange.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request target of the stored exchange.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The normalised request values of the fields the response varies on (see
    /// [`PolicyParts::vary_request`]).
    pub fn vary_request(&self) -> &[(String, Option<String>)] {
        &self.vary_request
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stored response header fields (see [`PolicyParts::response_headers`]). They may
    /// hold the origin's `Age`; a response served from the cache must carry
    /// [`CachePolicy::age`] instead (as [`BeforeRequest::Fresh`] does).
    pub fn response_headers(&self) -> &HeaderMap {
        &self.response_headers
    }

    /// The response's `Cache-Control` directives.
    pub fn response_cache_control(&self) -> &CacheControl {
        &self.res_cc
    }

    /// When the request was sent.
    pub fn request_time(&self) -> SystemTime {
        self.request_time
    }

    /// When the response was received.
    pub fn response_time(&self) -> SystemTime {
        self.response_time
    }

    /// Shared or private cache.
    pub fn mode(&self) -> CacheMode {
        self.mode
    }

    /// Whether the request carried `Authorization`.
    pub fn request_had_authorization(&self) -> bool {
        self.request_authorization
    }

    /// The tunables.
    pub fn options(&self) -> PolicyOptions {
        self.options
    }

    fn shared(&self) -> bool {
        self.mode == CacheMode::Shared
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Builders shared by the tests of the policy modules.

    use super::*;
    use crate::semantics::request::RequestHead;
    use http::{HeaderValue, Request, Response};

    /// A header map of `pairs` (names may repeat).
    pub(crate) fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    /// A fixed instant: 2023-11-14T22:13:20Z.
    pub(crate) fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    pub(crate) fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    pub(crate) fn at(s: u64) -> SystemTime {
        t0() + secs(s)
    }

    pub(crate) fn date(t: SystemTime) -> String {
        httpdate::fmt_http_date(t)
    }

    pub(crate) fn req_with(method: Method, uri: &str, headers: &[(&str, &str)]) -> request::Parts {
        let mut b = Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    pub(crate) fn get(headers: &[(&str, &str)]) -> request::Parts {
        req_with(Method::GET, "/r", headers)
    }

    pub(crate) fn res_with(status: u16, headers: &[(&str, &str)]) -> response::Parts {
        let mut b = Response::builder().status(status);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    pub(crate) fn res(headers: &[(&str, &str)]) -> response::Parts {
        res_with(200, headers)
    }

    /// A policy for `GET /r` answered at `t0()` with a 200 and `headers`.
    pub(crate) fn policy(
        req_headers: &[(&str, &str)],
        res_headers: &[(&str, &str)],
        mode: CacheMode,
    ) -> CachePolicy {
        CachePolicy::new(&get(req_headers), &res(res_headers), t0(), t0(), mode)
    }

    pub(crate) fn shared(res_headers: &[(&str, &str)]) -> CachePolicy {
        policy(&[], res_headers, CacheMode::Shared)
    }

    /// `req` read as the middleware reads it.
    pub(crate) fn head_of(req: &request::Parts) -> RequestHead {
        RequestHead::from_parts(req).unwrap()
    }

    impl CachePolicy {
        /// [`CachePolicy::before_request`] with the head read from `req`.
        pub(crate) fn before(&self, req: &request::Parts, now: SystemTime) -> BeforeRequest {
            self.before_request(req, &head_of(req), now)
        }

        /// Whether stale-if-error lets this response answer `req` at `now`.
        pub(crate) fn sie_allowed(&self, req: &request::Parts, now: SystemTime) -> bool {
            self.stale_if_error_until(req, &head_of(req))
                .is_some_and(|until| now <= until)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;
    use crate::semantics::request::RequestHead;
    use proptest::prelude::*;

    #[test]
    fn shared_is_the_default_mode() {
        assert_eq!(CacheMode::default(), CacheMode::Shared);
    }

    #[test]
    fn parts_round_trip() {
        let p = policy(
            &[("accept", "text/html"), ("authorization", "x")],
            &[
                ("cache-control", "public, max-age=5"),
                ("vary", "accept"),
                ("etag", "\"a\""),
            ],
            CacheMode::Private,
        );
        let parts = p.to_parts();
        assert_eq!(
            parts.vary_request,
            [("accept".to_owned(), Some("text/html".to_owned()))]
        );
        assert!(parts.request_authorization);
        assert_eq!(parts.mode, CacheMode::Private);
        assert_eq!(CachePolicy::from_parts(parts), p);
    }

    #[test]
    fn accessors_report_the_exchange() {
        let p = CachePolicy::new(
            &req_with(Method::HEAD, "/x?q=1", &[]),
            &res_with(404, &[]),
            at(1),
            at(2),
            CacheMode::Shared,
        );
        assert_eq!(p.method(), Method::HEAD);
        assert_eq!(p.uri(), "/x?q=1");
        assert_eq!(p.status(), StatusCode::NOT_FOUND);
        assert_eq!(p.request_time(), at(1));
        assert_eq!(p.response_time(), at(2));
        assert!(!p.request_had_authorization());
        assert_eq!(p.options(), PolicyOptions::default());
    }

    fn arb_value() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC*",
            "[ -~]{0,40}",
            Just("W/\"x\"".to_owned()),
            Just("Sun, 06 Nov 1994 08:49:37 GMT".to_owned()),
            "(max-age|s-maxage|max-stale|min-fresh|no-cache|private|stale-if-error|stale-while-revalidate)(=[0-9\"a-z, -]{0,12})?(, [a-z-]{1,10}(=[0-9]{1,25})?){0,3}",
            "[0-9]{0,25}",
        ]
    }

    const NAMES: &[&str] = &[
        "cache-control",
        "pragma",
        "date",
        "expires",
        "age",
        "last-modified",
        "etag",
        "vary",
        "connection",
        "set-cookie",
        "authorization",
        "accept",
        "content-length",
        "content-range",
        "location",
        "content-location",
        "if-none-match",
        "if-modified-since",
    ];

    fn arb_headers() -> impl Strategy<Value = Vec<(usize, String)>> {
        proptest::collection::vec((0..NAMES.len(), arb_value()), 0..8)
    }

    fn to_map(pairs: &[(usize, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (i, v) in pairs {
            if let Ok(v) = http::HeaderValue::from_str(v) {
                h.append(NAMES[*i], v);
            }
        }
        h
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_panic(
            req_h in arb_headers(),
            res_h in arb_headers(),
            new_h in arb_headers(),
            status in 100u16..600,
            shared in any::<bool>(),
            times in proptest::collection::vec(0u64..4_000_000_000, 4),
        ) {
            let mut req = get(&[]);
            req.headers = to_map(&req_h);
            let mut res = res_with(200, &[]);
            res.status = StatusCode::from_u16(status).unwrap();
            res.headers = to_map(&res_h);
            let t = |i: usize| SystemTime::UNIX_EPOCH + Duration::from_secs(times[i]);
            let mode = if shared { CacheMode::Shared } else { CacheMode::Private };
            let p = CachePolicy::new(&req, &res, t(0), t(1), mode);
            let _ = p.storable();
            let mut new_req = get(&[]);
            new_req.headers = to_map(&new_h);
            if let Ok(new_head) = RequestHead::from_parts(&new_req) {
                let _ = p.before_request(&new_req, &new_head, t(2));
                let _ = p.stale_if_error_until(&new_req, &new_head);
            }
            if let Ok(head) = RequestHead::from_parts(&req) {
                let _ = p.before_request(&req, &head, t(3));
            }
            let _ = p.time_to_live(t(2));
            let _ = p.storage_ttl(t(2));
            let _ = p.revalidation_headers(&new_req);
            let _ = p.after_revalidation(&new_req, &res, t(2), t(3));
            let _ = p.freshen_with_head(&new_req, &res, t(2), t(3));
            let _ = invalidated_uris(&Method::POST, res.status, &req.uri, &res.headers);
            prop_assert_eq!(CachePolicy::from_parts(p.to_parts()), p);
        }
    }
}
