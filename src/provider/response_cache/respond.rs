//! The responses the cache makes itself: from a stored entry (a hit, a stale answer, a
//! freshened one), and the `504` of a request the cache cannot answer. Each carries its
//! `Cache-Status` (RFC 9211).

use super::{
    body::HitBody,
    lookup::StoredEntry,
    status::{issue, CacheStatus},
    tap::Tap,
    ResponseCache,
};
use crate::store::StoredBody;
use crate::{
    body::NoBody,
    policy::{BeforeRequest, CachePolicy},
    semantics::{
        headers::{answer_preconditions_as, bodiless_fields, Answer, Role},
        range::{self, RangeAnswer},
        request::RequestHead,
    },
};
use bytes::Bytes;
use http::{
    header::{CONTENT_LENGTH, CONTENT_RANGE, IF_RANGE, RANGE},
    request, HeaderMap, HeaderValue, Response, StatusCode,
};
use http_body::{Body as _, SizeHint};
use std::{sync::Arc, time::SystemTime};

impl<St> ResponseCache<St> {
    /// A response made from a stored entry: its status, `headers` (the stored fields with
    /// `Age`, RFC 9111 §5.1), the client's preconditions answered from them (RFC 9110
    /// §13.2), no body for HEAD.
    pub(crate) fn respond(
        &self,
        policy: &CachePolicy,
        headers: HeaderMap,
        body: &StoredBody,
        head: &RequestHead,
        status: &CacheStatus,
    ) -> Response<HitBody> {
        let len = body.len();
        self.respond_with(
            policy,
            headers,
            len,
            || HitBody::stored(body, 0..len),
            head,
            status,
        )
    }

    /// [`ResponseCache::respond`] with a body of `len` bytes that `full` makes, if needed.
    fn respond_with(
        &self,
        policy: &CachePolicy,
        headers: HeaderMap,
        len: u64,
        full: impl FnOnce() -> HitBody,
        head: &RequestHead,
        status: &CacheStatus,
    ) -> Response<HitBody> {
        let mut response = Response::new(());
        *response.status_mut() = policy.status();
        *response.headers_mut() = headers;
        let (mut parts, ()) = response.into_parts();
        let body = match answer_preconditions_as(
            &mut parts,
            &head.preconditions,
            head.is_head(),
            Role::Cache,
        ) {
            Answer::Full => full(),
            Answer::Head => HitBody::None(NoBody::with_hint(SizeHint::with_exact(len))),
            Answer::NotModified => HitBody::None(NoBody::unknown()),
            Answer::PreconditionFailed => HitBody::bytes(Bytes::new()),
        };
        self.with_status(Response::from_parts(parts, body), status)
    }

    /// A response for a request coalesced on a fill, its body read through the fill's
    /// tap as it is written: when the response being stored is one this request may be
    /// given fresh (the same checks as a hit: `Vary`, request directives); else `None`, and
    /// the request goes on its own.
    pub(crate) fn respond_following(
        &self,
        tap: &Arc<Tap>,
        parts: &request::Parts,
        head: &RequestHead,
    ) -> Option<Response<HitBody>> {
        let BeforeRequest::Fresh { headers, ttl, .. } =
            tap.policy.before_request(parts, head, self.now())
        else {
            return None;
        };
        let status = CacheStatus {
            collapsed: true,
            ttl: Some(ttl.as_secs() as i64),
            ..CacheStatus::hit()
        };
        let full = || HitBody::streaming(tap.body(), tap.len);
        Some(self.respond_with(&tap.policy, headers, tap.len, full, head, &status))
    }

    /// A fresh hit for a GET with `Range` (RFC 9110 §14), whose `Range` and `If-Range` lines
    /// are in `request`: the client's preconditions first (§13.2.2, steps 1 to 4), then
    /// `If-Range` (step 5), then the range: `206 Partial Content` with `Content-Range`, `416
    /// Range Not Satisfiable` when nothing of the body is asked for, or the whole `200` (an
    /// `If-Range` that does not hold, several ranges, one that cannot be read, a stored
    /// status other than 200). The part is a slice of the stored bytes, or read from the store
    /// alone: nothing is copied, and the rest of the body is not read.
    pub(crate) fn respond_range(
        &self,
        entry: &StoredEntry,
        headers: HeaderMap,
        head: &RequestHead,
        request: &HeaderMap,
        status: &CacheStatus,
    ) -> Response<HitBody> {
        let body = &entry.body;
        let whole = self.respond(&entry.policy, headers, body, head, status);
        if whole.status() != StatusCode::OK {
            return whole;
        }
        // `If-Range` is one value: several lines are not a validator that holds.
        let mut if_range = request.get_all(IF_RANGE).iter();
        let holds = match (if_range.next(), if_range.next()) {
            (None, _) => true,
            (Some(v), None) => range::if_range_holds(v, whole.headers()),
            (Some(_), Some(_)) => false,
        };
        if !holds {
            return whole;
        }
        let len = body.len();
        let (mut parts, whole) = whole.into_parts();
        let (status, content_range, part) = match range::answer(request.get_all(RANGE), len) {
            RangeAnswer::Full => return Response::from_parts(parts, whole),
            RangeAnswer::Partial { start, end } => {
                // `end < len` and `start <= end`: within the body, read from the store
                // without the rest of it.
                let part = HitBody::stored(body, start..end + 1);
                let value = format!("bytes {start}-{end}/{len}");
                (StatusCode::PARTIAL_CONTENT, value, part)
            }
            RangeAnswer::Unsatisfiable => {
                // Like a 412, an answer to this request's Range only: not for caches.
                bodiless_fields(&mut parts.headers, StatusCode::PRECONDITION_FAILED);
                let value = format!("bytes */{len}");
                let none = HitBody::bytes(Bytes::new());
                (StatusCode::RANGE_NOT_SATISFIABLE, value, none)
            }
        };
        parts.status = status;
        if let Ok(value) = HeaderValue::from_str(&content_range) {
            parts.headers.insert(CONTENT_RANGE, value);
        }
        let part_len = part.size_hint().exact().unwrap_or(0);
        parts
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(part_len));
        Response::from_parts(parts, part)
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
        self.respond(&entry.policy, headers, &entry.body, head, status)
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

    /// `response` as the cache sends it ([`ResponseCache::finish_head`]).
    pub(crate) fn with_status<B>(
        &self,
        mut response: Response<B>,
        status: &CacheStatus,
    ) -> Response<B> {
        self.finish_head(response.headers_mut(), status);
        response
    }

    /// The last word on every response head the cache sends: its `Cache-Status`, and
    /// without the targeted fields it followed unless they are to go on (RFC 9213 §3).
    pub(crate) fn finish_head(&self, headers: &mut HeaderMap, status: &CacheStatus) {
        let config = &self.shared.config;
        if !config.forward_targeted {
            for name in config.targets.iter() {
                headers.remove(name);
            }
        }
        issue(headers, status, &config.name);
    }
}
