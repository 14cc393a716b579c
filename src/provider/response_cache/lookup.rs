//! The response cache's lookup service: fresh hit, stale (revalidate / serve stale), miss.

use super::{
    body::HitBody,
    coalesce::{self, FillGuard, Join},
    copy_head,
    entry::{self, Index},
    status::{CacheStatus, Fwd},
    CacheBypass, ResponseCache,
};
use crate::{
    middleware::body::NoBody,
    policy::{BeforeRequest, CachePolicy},
    provider::Lookup,
    semantics::cache_control::CacheControl,
    semantics::conditional::Preconditions,
    semantics::headers::{answer_preconditions, Answer},
    store::{Store, StoredBody},
};
use bytes::Bytes;
use http::{
    header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE},
    request, HeaderName, HeaderValue, Method, Request, Response, StatusCode,
};
use http_body::SizeHint;
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};
use tower_service::Service;

/// The name of the `Cache-Status` field (RFC 9211).
pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// What lookup hands to store: opaque to users.
#[derive(Debug)]
pub struct ResponseCacheKey(pub(crate) KeyKind);

#[derive(Debug)]
pub(crate) enum KeyKind {
    /// Not cached: only `Cache-Status` is added.
    Bypass { fwd: Fwd, detail: &'static str },
    /// An unsafe method: invalidate after a non-error response (RFC 9111 §4.4).
    Invalidate { request: Box<request::Parts> },
    /// A miss or a revalidation: store what comes back.
    Fill(Box<Fill>),
}

#[derive(Debug)]
pub(crate) struct Fill {
    pub(crate) primary: String,
    pub(crate) index: Option<Arc<Index>>,
    pub(crate) request: request::Parts,
    pub(crate) request_time: SystemTime,
    pub(crate) fwd: Fwd,
    pub(crate) guard: Option<FillGuard>,
    pub(crate) stale: Option<StoredEntry>,
}

/// An entry read from the store.
#[derive(Debug)]
pub(crate) struct StoredEntry {
    pub(crate) variant_key: String,
    pub(crate) policy: Arc<CachePolicy>,
    pub(crate) body: Bytes,
}

/// Request fields that make a request conditional; the cache answers them itself and sends
/// its own validators to the inner service.
const CONDITIONAL_FIELDS: [HeaderName; 5] = [
    IF_MATCH,
    IF_NONE_MATCH,
    IF_MODIFIED_SINCE,
    IF_UNMODIFIED_SINCE,
    IF_RANGE,
];

type LookupResult<ReqBody> = Lookup<ReqBody, ResponseCacheKey, HitBody>;

impl<St: Store, ReqBody: Send + 'static> Service<Request<ReqBody>> for ResponseCache<St> {
    type Response = LookupResult<ReqBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let cache = self.clone();
        Box::pin(async move { Ok(cache.lookup(request).await) })
    }
}

fn bypass<ReqBody>(
    request: Request<ReqBody>,
    fwd: Fwd,
    detail: &'static str,
) -> LookupResult<ReqBody> {
    Lookup::Miss {
        request,
        key: ResponseCacheKey(KeyKind::Bypass { fwd, detail }),
    }
}

/// The request sent to the inner service on a miss or revalidation: a GET (a HEAD fetches
/// the GET representation so it can be stored), with the cache's own validators if any.
/// `parts` no longer has the client's conditionals (`lookup` removed them: the cache answers
/// them from what it stores).
fn forwarded<ReqBody>(
    parts: request::Parts,
    body: ReqBody,
    validators: Option<&http::HeaderMap>,
) -> Request<ReqBody> {
    let mut request = Request::from_parts(parts, body);
    if request.method() == Method::HEAD {
        *request.method_mut() = Method::GET;
    }
    let headers = request.headers_mut();
    if let Some(v) = validators {
        for (name, value) in v {
            headers.insert(name, value.clone());
        }
    }
    request
}

impl<St: Store> ResponseCache<St> {
    async fn lookup<ReqBody>(&self, request: Request<ReqBody>) -> LookupResult<ReqBody> {
        if request.extensions().get::<CacheBypass>().is_some() {
            return bypass(request, Fwd::Bypass, "bypass-requested");
        }
        match *request.method() {
            Method::GET | Method::HEAD => {}
            Method::OPTIONS | Method::TRACE | Method::CONNECT => {
                return bypass(request, Fwd::Bypass, "method")
            }
            _ => {
                let (parts, body) = request.into_parts();
                let copy = copy_head(&parts);
                let request = Request::from_parts(parts, body);
                return Lookup::Miss {
                    request,
                    key: ResponseCacheKey(KeyKind::Invalidate {
                        request: Box::new(copy),
                    }),
                };
            }
        }
        if request.headers().contains_key(RANGE) {
            // Partial content is not stored (RFC 9111 §3.4 is not implemented).
            return bypass(request, Fwd::Bypass, "range");
        }
        let request_cc = CacheControl::from_headers(request.headers());
        if request_cc.no_store {
            return bypass(request, Fwd::Request, "request-no-store");
        }
        let (mut parts, body) = request.into_parts();
        let Some(primary) = self.primary_key(&parts) else {
            return bypass(Request::from_parts(parts, body), Fwd::Bypass, "no-user");
        };
        let client = Preconditions::from_request(&parts.method, &parts.headers);
        let is_head = parts.method == Method::HEAD;
        // The cache answers the client's preconditions itself, from what it stores; the
        // inner service only ever sees the cache's own validators.
        for name in CONDITIONAL_FIELDS {
            parts.headers.remove(name);
        }

        let mut collapsed = false;
        loop {
            let now = SystemTime::now();
            let index = match self.read_index(&primary).await {
                Ok(i) => i,
                Err(()) => {
                    return bypass(Request::from_parts(parts, body), Fwd::Bypass, "store-error")
                }
            };
            let variant_key = index
                .as_ref()
                .map(|i| i.variant_key(&primary, &parts.headers));
            let stored = match &variant_key {
                Some(k) => self.read_entry(k).await,
                None => None,
            };
            let mut fwd = if index.is_some() {
                Fwd::VaryMiss
            } else {
                Fwd::UriMiss
            };
            if let Some(entry) = stored {
                match entry.policy.before_request(&parts, now) {
                    BeforeRequest::Fresh { headers, .. } => {
                        let ttl = entry.policy.time_to_live(now);
                        let status = CacheStatus {
                            collapsed,
                            ttl: Some(ttl.as_secs() as i64),
                            ..CacheStatus::hit()
                        };
                        let response = self.respond(
                            &entry.policy,
                            headers,
                            entry.body.clone(),
                            is_head,
                            &client,
                            status,
                        );
                        let refresh_due = self.shared.config.refresh_ahead.is_some_and(|w| ttl < w);
                        if refresh_due {
                            let fill = (primary, index, parts, body);
                            return self.answer_and_refresh(response, entry, fill, Fwd::Stale);
                        }
                        return Lookup::Hit(response);
                    }
                    BeforeRequest::Stale {
                        swr_allowed,
                        revalidation_headers,
                        ..
                    } => {
                        if request_cc.only_if_cached {
                            return Lookup::Hit(self.gateway_timeout());
                        }
                        let by_time = entry.policy.is_fresh(now);
                        fwd = if by_time { Fwd::Request } else { Fwd::Stale };
                        if swr_allowed {
                            let status = CacheStatus {
                                detail: Some("stale-while-revalidate"),
                                ..CacheStatus::hit()
                            };
                            let response = self.respond(
                                &entry.policy,
                                entry.policy.headers_with_age(now),
                                entry.body.clone(),
                                is_head,
                                &client,
                                status,
                            );
                            let fill = (primary, index, parts, body);
                            return self.answer_and_refresh(response, entry, fill, fwd);
                        }
                        let on_error =
                            entry.policy.stale_if_error_allowed(&parts, now).then(|| {
                                let status = CacheStatus {
                                    fwd: Some(fwd),
                                    detail: Some("stale-if-error"),
                                    ..CacheStatus::default()
                                };
                                self.respond(
                                    &entry.policy,
                                    entry.policy.headers_with_age(now),
                                    entry.body.clone(),
                                    is_head,
                                    &client,
                                    status,
                                )
                            });
                        let key = self.fill_key(primary, index, &parts, fwd, None, Some(entry));
                        let request = forwarded(parts, body, Some(&revalidation_headers));
                        return match on_error {
                            Some(on_error) => Lookup::Revalidate {
                                request,
                                key,
                                on_error,
                            },
                            None => Lookup::Miss { request, key },
                        };
                    }
                    BeforeRequest::VaryMismatch => fwd = Fwd::VaryMiss,
                }
            }
            if request_cc.only_if_cached {
                // RFC 9111 §5.2.1.7: nothing suitable stored.
                return Lookup::Hit(self.gateway_timeout());
            }
            let coalesce_key = variant_key.unwrap_or_else(|| primary.clone());
            match self.shared.coalescer.join(&coalesce_key) {
                Join::Leader(guard) => {
                    let key = self.fill_key(primary, index, &parts, fwd, Some(guard), None);
                    return Lookup::Miss {
                        request: forwarded(parts, body, None),
                        key,
                    };
                }
                Join::Follower(rx) if !collapsed => {
                    collapsed = true;
                    if coalesce::wait(rx, self.shared.config.coalesce_timeout).await {
                        continue; // Look again: the first request has stored its response.
                    }
                    let key = self.fill_key(primary, index, &parts, fwd, None, None);
                    return Lookup::Miss {
                        request: forwarded(parts, body, None),
                        key,
                    };
                }
                Join::Follower(_) => {
                    // Still nothing after waiting once: go on alone, without storing twice.
                    let key = self.fill_key(primary, index, &parts, fwd, None, None);
                    return Lookup::Miss {
                        request: forwarded(parts, body, None),
                        key,
                    };
                }
            }
        }
    }

    /// Answers with `response` now and revalidates `entry` in the background
    /// (stale-while-revalidate, refresh-ahead), unless a revalidation of it is running.
    fn answer_and_refresh<ReqBody>(
        &self,
        response: Response<HitBody>,
        entry: StoredEntry,
        (primary, index, parts, body): (String, Option<Arc<Index>>, request::Parts, ReqBody),
        fwd: Fwd,
    ) -> LookupResult<ReqBody> {
        match self.shared.coalescer.join(&entry.variant_key) {
            Join::Leader(guard) => {
                let validators = entry.policy.revalidation_headers(&parts);
                let key = self.fill_key(primary, index, &parts, fwd, Some(guard), Some(entry));
                let request = forwarded(parts, body, Some(&validators));
                Lookup::Refresh {
                    response,
                    request,
                    key,
                }
            }
            Join::Follower(_) => Lookup::Hit(response),
        }
    }

    fn fill_key(
        &self,
        primary: String,
        index: Option<Arc<Index>>,
        parts: &request::Parts,
        fwd: Fwd,
        guard: Option<FillGuard>,
        stale: Option<StoredEntry>,
    ) -> ResponseCacheKey {
        let mut request = copy_head(parts);
        if request.method == Method::HEAD {
            // The inner service is asked for the GET representation (see `forwarded`), and
            // that is what gets stored.
            request.method = Method::GET;
        }
        ResponseCacheKey(KeyKind::Fill(Box::new(Fill {
            primary,
            index,
            request,
            request_time: SystemTime::now(),
            fwd,
            guard,
            stale,
        })))
    }

    /// The index of a primary key; `Err` when the store failed (the cache steps aside).
    pub(crate) async fn read_index(&self, primary: &str) -> Result<Option<Arc<Index>>, ()> {
        match self.shared.store.get(&entry::index_key(primary)).await {
            Ok(Some(stored)) => Ok(Index::of(&stored.meta)),
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "cache store failed; serving without it");
                Err(())
            }
        }
    }

    pub(crate) async fn read_entry(&self, variant_key: &str) -> Option<StoredEntry> {
        match self.shared.store.get(variant_key).await {
            Ok(Some(stored)) => {
                let policy = entry::policy_of(&stored.meta)?;
                let StoredBody::Bytes(body) = stored.body;
                Some(StoredEntry {
                    variant_key: variant_key.to_owned(),
                    policy,
                    body,
                })
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cache store failed; serving without it");
                None
            }
        }
    }

    /// A response made from a stored entry: its status and headers, `Age` (RFC 9111 §5.1),
    /// the client's preconditions answered (RFC 9110 §13.2), no body for HEAD.
    pub(crate) fn respond(
        &self,
        policy: &CachePolicy,
        headers_with_age: http::HeaderMap,
        body: Bytes,
        is_head: bool,
        client: &Preconditions,
        status: CacheStatus,
    ) -> Response<HitBody> {
        let mut response = Response::new(());
        *response.status_mut() = policy.status();
        // The stored fields and `Age` (RFC 9111 §5.1): for a fresh hit, as `before_request`
        // made them (one copy of the map, not two).
        *response.headers_mut() = headers_with_age;
        let (mut parts, ()) = response.into_parts();
        let body = match answer_preconditions(&mut parts, client, is_head) {
            Answer::Full => HitBody::bytes(body),
            Answer::Head => {
                HitBody::None(NoBody::with_hint(SizeHint::with_exact(body.len() as u64)))
            }
            Answer::NotModified => HitBody::None(NoBody::unknown()),
            Answer::PreconditionFailed => HitBody::bytes(Bytes::new()),
        };
        parts.headers.insert(
            CACHE_STATUS,
            status.to_header_value(&self.shared.config.name),
        );
        Response::from_parts(parts, body)
    }

    /// RFC 9111 §5.2.1.7: `only-if-cached` and nothing suitable is stored.
    fn gateway_timeout(&self) -> Response<HitBody> {
        let mut res = Response::new(HitBody::bytes(Bytes::new()));
        *res.status_mut() = StatusCode::GATEWAY_TIMEOUT;
        let status = CacheStatus {
            detail: Some("only-if-cached"),
            ..CacheStatus::fwd(Fwd::UriMiss)
        };
        res.headers_mut().insert(
            CACHE_STATUS,
            status.to_header_value(&self.shared.config.name),
        );
        res.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        res
    }
}
