//! The responses the cache makes itself: from a stored entry (a hit, a stale answer, a
//! freshened one), and the `504` of a request the cache cannot answer. Each carries its
//! `Cache-Status` (RFC 9211).

use super::{
    body::HitBody,
    lookup::StoredEntry,
    status::{with_status, CacheStatus},
    ResponseCache,
};
use crate::{
    middleware::body::NoBody,
    policy::CachePolicy,
    semantics::{
        headers::{answer_preconditions, Answer},
        request::RequestHead,
    },
};
use bytes::Bytes;
use http::{header::CONTENT_LENGTH, HeaderMap, HeaderValue, Response, StatusCode};
use http_body::SizeHint;
use std::time::SystemTime;

impl<St> ResponseCache<St> {
    /// A response made from a stored entry: its status, `headers` (the stored fields with
    /// `Age`, RFC 9111 §5.1), the client's preconditions answered from them (RFC 9110
    /// §13.2), no body for HEAD.
    pub(crate) fn respond(
        &self,
        policy: &CachePolicy,
        headers: HeaderMap,
        body: Bytes,
        head: &RequestHead,
        status: &CacheStatus,
    ) -> Response<HitBody> {
        let mut response = Response::new(());
        *response.status_mut() = policy.status();
        *response.headers_mut() = headers;
        let (mut parts, ()) = response.into_parts();
        let body = match answer_preconditions(&mut parts, &head.preconditions, head.is_head()) {
            Answer::Full => HitBody::bytes(body),
            Answer::Head => {
                HitBody::None(NoBody::with_hint(SizeHint::with_exact(body.len() as u64)))
            }
            Answer::NotModified => HitBody::None(NoBody::unknown()),
            Answer::PreconditionFailed => HitBody::bytes(Bytes::new()),
        };
        self.with_status(Response::from_parts(parts, body), status)
    }

    /// A response made from a stored entry that is stale at `now` (served while it is
    /// revalidated, or in place of an error), with its `Age`.
    pub(crate) fn respond_stale(
        &self,
        entry: &StoredEntry,
        head: &RequestHead,
        now: SystemTime,
        status: &CacheStatus,
    ) -> Response<HitBody> {
        let headers = entry.policy.headers_with_age(now);
        self.respond(&entry.policy, headers, entry.body.clone(), head, status)
    }

    /// `504 Gateway Timeout`: the request cannot be answered without the origin and may not
    /// reach it (`only-if-cached`, RFC 9111 §5.2.1.7), or the stored response may not be
    /// served and could not be validated (`must-revalidate`, §5.2.2.2).
    pub(crate) fn gateway_timeout(&self, status: &CacheStatus) -> Response<HitBody> {
        let mut res = Response::new(HitBody::bytes(Bytes::new()));
        *res.status_mut() = StatusCode::GATEWAY_TIMEOUT;
        res.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        self.with_status(res, status)
    }

    /// `response` with the cache's `Cache-Status`.
    pub(crate) fn with_status<B>(
        &self,
        response: Response<B>,
        status: &CacheStatus,
    ) -> Response<B> {
        with_status(response, status, &self.shared.config.name)
    }
}
