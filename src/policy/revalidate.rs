//! Using a stored response (RFC 9111 §4, §4.2.4), revalidating it (§4.3.1), freshening it
//! from a `304` or `HEAD` response (§4.3.3 – §4.3.5) and serving it on errors (RFC 5861).

use super::{head, storable::NotStorable, vary, CacheMode, CachePolicy, PolicyParts};
use crate::semantics::{
    cache_control::CacheControl, dates::single_date, etag::EntityTag, headers::seconds_value,
    request::RequestHead, targeted,
};
use http::header::SET_COOKIE;
use http::{
    header::{
        AGE, AUTHORIZATION, CONTENT_LENGTH, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
    },
    request, response, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri,
};
use std::time::{Duration, SystemTime};

/// What to do with a stored response for a new request ([`CachePolicy::before_request`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum BeforeRequest {
    /// Serve the stored response without contacting the origin.
    Fresh {
        /// The stored header fields with `Age` set to the current age (RFC 9111 §5.1).
        headers: HeaderMap,
        /// How much longer it stays fresh ([`CachePolicy::time_to_live`]).
        ttl: Duration,
        /// The response is stale but the request's `max-stale` allows it (§4.2.4); a
        /// `Cache-Status` can say so.
        permitted_stale: bool,
    },
    /// The stored response must be revalidated (or replaced) before it is used.
    Stale {
        /// Why it cannot be served as is.
        reason: StaleReason,
        /// `stale-while-revalidate` (RFC 5861 §3) lets the cache serve it now and revalidate
        /// in the background.
        swr_allowed: bool,
        /// The conditional fields to send to revalidate it
        /// ([`CachePolicy::revalidation_headers`]).
        revalidation_headers: HeaderMap,
        /// Until when the stored response may answer in place of an error (a `5xx`, or no
        /// answer at all), by `stale-if-error` (RFC 5861 §4); `None`: not now, nor later
        /// ([`CachePolicy::stale_if_error_until`]). An error that comes after it must not be
        /// answered with the stored response.
        stale_if_error_until: Option<SystemTime>,
    },
    /// The stored response was not selected for this request (RFC 9111 §4.1): the request's
    /// values of the `Vary` fields differ, the response has `Vary: *`, or (defensively, when
    /// the caller's key let it through) the method or target URI differ — a stored HEAD
    /// response never answers a GET. Treat it as a miss for this variant.
    VaryMismatch,
}

impl BeforeRequest {
    /// Whether the stored response may be sent without contacting the origin.
    pub fn is_fresh(&self) -> bool {
        matches!(self, Self::Fresh { .. })
    }
}

/// Why a stored response must be revalidated ([`BeforeRequest::Stale`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StaleReason {
    /// Its freshness lifetime is over (and no `max-stale` allows it).
    Expired,
    /// The response has `no-cache`: it must be validated for every use (§5.2.2.4).
    ResponseNoCache,
    /// The request has `no-cache` or `Pragma: no-cache` (§5.2.1.4, §5.4).
    RequestNoCache,
    /// The response is older than the request's `max-age` (§5.2.1.1).
    RequestMaxAge,
    /// The response is fresh for less than the request's `min-fresh` (§5.2.1.3).
    RequestMinFresh,
}

impl StaleReason {
    /// Whether the request asked for the origin (its `no-cache`, `max-age` or `min-fresh`),
    /// rather than the stored response being stale or `no-cache` itself: RFC 9211's
    /// `fwd=request` rather than `fwd=stale`.
    pub const fn requested_by_client(self) -> bool {
        matches!(
            self,
            Self::RequestNoCache | Self::RequestMaxAge | Self::RequestMinFresh
        )
    }

    /// A short token for a `Cache-Status` `detail` parameter.
    pub const fn detail(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::ResponseNoCache => "response-no-cache",
            Self::RequestNoCache => "request-no-cache",
            Self::RequestMaxAge => "request-max-age",
            Self::RequestMinFresh => "request-min-fresh",
        }
    }
}

/// The stored entry after a revalidation exchange ([`CachePolicy::after_revalidation`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
// A short-lived return value: boxing the policies would only add allocations.
#[allow(clippy::large_enum_variant)]
pub enum AfterResponse {
    /// A `304` whose validator matches the stored response (RFC 9111 §4.3.4): keep the
    /// stored body, answer with `served`, and store `stored`.
    NotModified {
        /// The stored response with every field of the `304` (RFC 9111 §3.2): the answer
        /// for the client that asked (its `Set-Cookie` included).
        served: CachePolicy,
        /// What the cache may keep: `served` checked again by [`CachePolicy::storable`]
        /// (RFC 9111 §3, §3.5) and, in a shared cache, without the `304`'s `Set-Cookie`,
        /// which belongs to one client. `Err`: the `304` made the response unstorable
        /// (`private`, `no-store`, `Authorization` without permission): remove the entry.
        stored: Result<CachePolicy, NotStorable>,
    },
    /// A `304` that matches none of the stored validators (RFC 9111 §4.3.4: it "MUST NOT
    /// [be used] to update any stored responses"). The stored response is not what the
    /// origin has: drop it. It may still answer this request only where serving it stale
    /// is explicitly permitted ([`CachePolicy::stale_permitted`]); otherwise answer `504`, as
    /// a cache that cannot validate must (RFC 9111 §5.2.2.2).
    Mismatch,
    /// A full response: the new response's policy. Replace the stored entry with it (and the
    /// new body) if [`CachePolicy::storable`]. A `5xx` is also `Modified`: check
    /// [`BeforeRequest::Stale::stale_if_error_until`] first to serve the stored response.
    Modified(CachePolicy),
}

/// What a `HEAD` response does to a stored response ([`CachePolicy::freshen_with_head`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
// A short-lived return value: boxing the policy would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum HeadUpdate {
    /// Its validators (and `Content-Length`) match: the stored policy with its header fields
    /// updated and new times (RFC 9111 §4.3.5, §3.2).
    Freshened(CachePolicy),
    /// They do not match: the stored response is outdated. RFC 9111 asks to consider it
    /// stale; a cache may as well drop it.
    Invalidate,
    /// The `HEAD` response says nothing about this stored response (not a `200`, or it
    /// selects another variant).
    Unchanged,
}

/// Whether a request with `only-if-cached` must be answered `504 Gateway Timeout`
/// (RFC 9111 §5.2.1.7): it has the directive, and nothing is stored (`outcome` is `None`) or
/// the stored response cannot be sent without contacting the origin.
///
/// Returns `false` for requests without `only-if-cached`.
pub fn only_if_cached_unsatisfied(head: &RequestHead, outcome: Option<&BeforeRequest>) -> bool {
    head.cache_control.only_if_cached && !outcome.is_some_and(BeforeRequest::is_fresh)
}

/// The one `ETag` of a head, if it is valid or a legacy unquoted tag (read as recipients
/// read one: [`EntityTag::from_origin_header_value`]).
fn etag(headers: &HeaderMap) -> Option<EntityTag> {
    let mut lines = headers.get_all(ETAG).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    EntityTag::from_origin_header_value(first)
}

/// Whether two URIs name the same target: same path and query, and the same authority when
/// both have one.
fn same_target(a: &Uri, b: &Uri) -> bool {
    fn pq(u: &Uri) -> &str {
        u.path_and_query().map_or("/", |p| p.as_str())
    }
    if pq(a) != pq(b) {
        return false;
    }
    match (a.authority(), b.authority()) {
        (Some(x), Some(y)) => {
            x.host().eq_ignore_ascii_case(y.host()) && x.port_u16() == y.port_u16()
        }
        _ => true,
    }
}

impl CachePolicy {
    /// Whether this stored response can be used for `req` at all (RFC 9111 §4): same target,
    /// a method the stored one can answer, and matching `Vary` fields (§4.1).
    fn selected_for(&self, req: &request::Parts) -> bool {
        let method_ok =
            req.method == self.method || (req.method == Method::HEAD && self.method == Method::GET);
        method_ok
            && same_target(&self.uri, &req.uri)
            && vary::matches(&self.response_headers, &self.vary_request, &req.headers)
    }

    /// Whether a directive forbids serving this response stale (RFC 9111 §4.2.4):
    /// `must-revalidate`, `no-cache`, and in a shared cache `proxy-revalidate` and `s-maxage`
    /// (§5.2.2.8, §5.2.2.10).
    fn stale_forbidden(&self) -> bool {
        let cc = &self.res_cc;
        cc.must_revalidate
            || head::no_cache_all(cc)
            || (self.shared() && (cc.proxy_revalidate || cc.s_maxage.is_some()))
    }

    /// What to do with this stored response for the request `req` at `now`.
    ///
    /// - [`BeforeRequest::VaryMismatch`] when it was not selected for `req` (§4.1).
    /// - [`BeforeRequest::Fresh`] when it is fresh and the request's `max-age` and `min-fresh`
    ///   accept it, or it is stale within the request's `max-stale` and no response directive
    ///   forbids serving it stale (§4.2.4).
    /// - [`BeforeRequest::Stale`] otherwise, and always for request `no-cache` /
    ///   `Pragma: no-cache` and response `no-cache`. `immutable` changes nothing here.
    ///
    /// `only-if-cached` is left to the caller: see [`only_if_cached_unsatisfied`].
    ///
    /// `head` is `req` as [`RequestHead`] read it (the request is parsed once).
    pub fn before_request(
        &self,
        req: &request::Parts,
        head: &RequestHead,
        now: SystemTime,
    ) -> BeforeRequest {
        if !self.selected_for(req) {
            return BeforeRequest::VaryMismatch;
        }
        let req_cc = &head.cache_control;
        let age = self.age(now);
        let lifetime = self.freshness_lifetime();
        let staleness = age.saturating_sub(lifetime);
        let fresh = lifetime > age;

        let reason = if head::no_cache_all(&self.res_cc) {
            Some(StaleReason::ResponseNoCache)
        } else if req_cc.no_cache.is_present() {
            Some(StaleReason::RequestNoCache)
        } else if req_cc.max_age.is_some_and(|max| age > max) {
            // §5.2.1.1: the client wants a response no older than max-age.
            Some(StaleReason::RequestMaxAge)
        } else if !fresh {
            let permitted = !self.stale_forbidden()
                && match req_cc.max_stale {
                    Some(None) => true,
                    Some(Some(bound)) => staleness <= bound,
                    None => false,
                };
            (!permitted).then_some(StaleReason::Expired)
        } else if req_cc
            .min_fresh
            .is_some_and(|min| lifetime.saturating_sub(age) < min)
        {
            Some(StaleReason::RequestMinFresh)
        } else {
            None
        };

        match reason {
            None => BeforeRequest::Fresh {
                headers: self.headers_with_age(now),
                ttl: lifetime.saturating_sub(age),
                permitted_stale: !fresh,
            },
            Some(reason) => BeforeRequest::Stale {
                reason,
                // RFC 5861 §3: only when staleness is the only reason, within the window.
                swr_allowed: reason == StaleReason::Expired
                    && !self.stale_forbidden()
                    && self
                        .res_cc
                        .stale_while_revalidate
                        .is_some_and(|window| staleness < window),
                revalidation_headers: self.revalidation_headers(req),
                stale_if_error_until: self
                    .stale_if_error_window(req_cc)
                    .map(|w| self.stale_until(w))
                    .filter(|until| now <= *until),
            },
        }
    }

    /// The stored header fields with `Age` set to the age at `now` (RFC 9111 §5.1).
    pub fn headers_with_age(&self, now: SystemTime) -> HeaderMap {
        // A clone, not a copy field by field: the stored fields were given room for `Age`
        // and a cache's `Cache-Status` when the policy was made (`from_parts`), and a clone
        // keeps it, so neither insert rehashes.
        let mut headers = self.response_headers.clone();
        headers.insert(AGE, seconds_value(self.age(now).as_secs()));
        headers
    }

    /// The conditional fields for a request that revalidates this stored response
    /// (RFC 9111 §4.3.1), in the manner of `http-cache-semantics`' `revalidationHeaders`:
    ///
    /// - `If-None-Match`: the stored `ETag`. When the client sent its own `If-None-Match`,
    ///   its list is kept and the stored tag appended unless already listed (the union that
    ///   §4.3.2 allows); a client `*` is kept as is.
    /// - `If-Modified-Since`: the client's own when it sent one, else the stored
    ///   `Last-Modified`.
    ///
    /// The caller replaces the request's `If-None-Match` and `If-Modified-Since` with these
    /// (and evaluates any `If-Match` / `If-Unmodified-Since` itself). Empty when the stored
    /// response was not selected for `req` or has no validator. A `304` carrying a tag from
    /// the client's list but not the stored one does not freshen the entry
    /// ([`AfterResponse::Modified`]); §4.3.2 lets such a `304` go to the client.
    pub fn revalidation_headers(&self, req: &request::Parts) -> HeaderMap {
        if !self.selected_for(req) {
            return HeaderMap::new();
        }
        let mut out = self.own_validators();
        let client_inm: Vec<&HeaderValue> = req.headers.get_all(IF_NONE_MATCH).iter().collect();
        if !client_inm.is_empty() {
            match (out.get(IF_NONE_MATCH), self.origin_etag()) {
                (Some(stored), Some(tag)) => {
                    let star = client_inm.iter().any(|v| v.as_bytes().trim_ascii() == b"*");
                    let listed = crate::semantics::etag::list_matches(
                        client_inm.iter().copied(),
                        &tag,
                        false,
                    );
                    let mut joined: Vec<u8> = Vec::new();
                    for (i, v) in client_inm.iter().enumerate() {
                        if i > 0 {
                            joined.extend_from_slice(b", ");
                        }
                        joined.extend_from_slice(v.as_bytes());
                    }
                    if !star && !listed {
                        joined.extend_from_slice(b", ");
                        joined.extend_from_slice(stored.as_bytes());
                    }
                    match HeaderValue::from_bytes(&joined) {
                        Ok(v) => {
                            out.insert(IF_NONE_MATCH, v);
                        }
                        Err(_) => {
                            out.remove(IF_NONE_MATCH);
                        }
                    }
                }
                _ => {
                    for v in client_inm {
                        out.append(IF_NONE_MATCH, v.clone());
                    }
                }
            }
        }
        if let Some(ims) = req.headers.get(IF_MODIFIED_SINCE) {
            out.insert(IF_MODIFIED_SINCE, ims.clone());
        }
        out
    }

    /// The validators the cache sends for this stored response alone (a request without
    /// conditions of its own, a background refresh): its `ETag` (the origin's, never a
    /// minted one) as `If-None-Match`, its `Last-Modified` (when a valid date) as
    /// `If-Modified-Since`.
    pub fn own_validators(&self) -> HeaderMap {
        let mut own = HeaderMap::new();
        if let Some(stored) = self
            .response_headers
            .get(ETAG)
            .filter(|_| self.origin_etag().is_some())
        {
            own.insert(IF_NONE_MATCH, stored.clone());
        }
        if single_date(&self.response_headers, LAST_MODIFIED).is_some() {
            if let Some(lm) = self.response_headers.get(LAST_MODIFIED) {
                own.insert(IF_MODIFIED_SINCE, lm.clone());
            }
        }
        own
    }

    /// Until when this stored response may answer `req` in place of an error (a `5xx` or no
    /// answer at all), by `stale-if-error` (RFC 5861 §4) in the request or the response,
    /// within the longer of the two windows; `None` when it may not at all.
    ///
    /// Never when a directive forbids serving stale: `must-revalidate`, response `no-cache`,
    /// and in a shared cache `proxy-revalidate` or `s-maxage` (RFC 9111 §4.2.4); never for a
    /// request with `no-cache` unless that request itself carries `stale-if-error`; never
    /// when the response was not selected for `req` (§4.1).
    pub fn stale_if_error_until(
        &self,
        req: &request::Parts,
        head: &RequestHead,
    ) -> Option<SystemTime> {
        if !self.selected_for(req) {
            return None;
        }
        self.stale_if_error_window(&head.cache_control)
            .map(|window| self.stale_until(window))
    }

    /// Until when this stored response may stand in for an origin that cannot be reached
    /// (the inner service fails, or a gateway answers 502 or 504), by a grace the cache was
    /// configured with rather than a directive: RFC 9111 §4.2.4 lets a cache that is
    /// "disconnected" serve stale. Never where a directive forbids serving stale (as for
    /// [`CachePolicy::stale_if_error_until`]), nor to a request with `no-cache`, nor when
    /// the response was not selected for `req`; `None` for a zero grace.
    pub fn stale_if_unreachable_until(
        &self,
        req: &request::Parts,
        head: &RequestHead,
        grace: Duration,
    ) -> Option<SystemTime> {
        let refused = grace.is_zero()
            || !self.selected_for(req)
            || self.stale_forbidden()
            || head.cache_control.no_cache.is_present();
        (!refused).then(|| self.stale_until(grace))
    }

    /// How long to keep this response in a store whose cache serves it for `grace` past its
    /// freshness when the origin cannot be reached: [`CachePolicy::storage_ttl`], or longer
    /// for the grace, unless a directive forbids serving it stale.
    pub fn storage_ttl_with_grace(&self, now: SystemTime, grace: Duration) -> Duration {
        let ttl = self.storage_ttl(now);
        if grace.is_zero() || self.stale_forbidden() {
            return ttl;
        }
        let graced = self
            .freshness_lifetime()
            .saturating_add(grace)
            .saturating_sub(self.age(now));
        ttl.max(graced)
    }

    /// The `stale-if-error` window that applies to a request with these directives.
    fn stale_if_error_window(&self, req_cc: &CacheControl) -> Option<Duration> {
        if self.stale_forbidden()
            || (req_cc.no_cache.is_present() && req_cc.stale_if_error.is_none())
        {
            return None;
        }
        match (req_cc.stale_if_error, self.res_cc.stale_if_error) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(Duration::ZERO).max(b.unwrap_or(Duration::ZERO))),
        }
    }

    /// The time at which this response has been stale for `window`.
    fn stale_until(&self, window: Duration) -> SystemTime {
        // Stale once its age reaches the lifetime: `initial_age` had passed on arrival.
        let fresh_for = self.freshness_lifetime().saturating_add(window);
        match fresh_for.checked_sub(self.initial_age) {
            Some(left) => self
                .response_time
                .checked_add(left)
                .unwrap_or(self.response_time),
            None => self
                .response_time
                .checked_sub(self.initial_age - fresh_for)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }

    /// Whether this stored response may be served stale to the request `head` at `now`
    /// because the request or the response explicitly permits it (RFC 9111 §4.2.4: "A cache
    /// MUST NOT generate a stale response unless it is disconnected or doing so is explicitly
    /// permitted by the client or origin server"): the request's `max-stale` covers its
    /// staleness, or a `stale-if-error` window covers `now` (for when the origin's answer is
    /// an error or unusable). Never where a directive forbids serving it stale, nor to a
    /// request with `no-cache` (§5.2.1.4) unless it carries `stale-if-error` itself.
    pub fn stale_permitted(&self, head: &RequestHead, now: SystemTime) -> bool {
        let cc = &head.cache_control;
        if self.stale_forbidden() {
            return false;
        }
        let by_max_stale = !cc.no_cache.is_present()
            && match cc.max_stale {
                Some(None) => true,
                Some(Some(bound)) => self.staleness(now) <= bound,
                None => false,
            };
        by_max_stale
            || self
                .stale_if_error_window(cc)
                .is_some_and(|window| now <= self.stale_until(window))
    }

    /// Whether the validators of `new` (a `304`) identify this stored response for update
    /// (RFC 9111 §4.3.4).
    fn validators_match(&self, new: &HeaderMap) -> bool {
        // RFC 9111 §4.3.4: the first of a strong validator, a weak one, none at all.
        let stored = &self.response_headers;
        if new.contains_key(ETAG) {
            return match (etag(new), self.origin_etag()) {
                // A strong validator selects the stored responses with the same strong one.
                (Some(n), Some(s)) if !n.is_weak() => n.strong_eq(&s),
                // A weak one selects a stored response it corresponds to.
                (Some(n), Some(s)) => n.weak_eq(&s),
                _ => false,
            };
        }
        if new.contains_key(LAST_MODIFIED) {
            return match (
                single_date(new, LAST_MODIFIED),
                single_date(stored, LAST_MODIFIED),
            ) {
                (Some(n), Some(s)) => n == s,
                _ => false,
            };
        }
        // No validator in the 304: it updates a stored response that has none either (a
        // minted tag is not the origin's).
        let origin_tagged = stored.contains_key(ETAG) && !self.etag_minted;
        !origin_tagged && !stored.contains_key(LAST_MODIFIED)
    }

    /// Whether `sent` (a revalidation request's `If-None-Match` and `If-Modified-Since`) are
    /// the validators the cache makes for this response alone, and at least one: then the
    /// request named this stored response and nothing else.
    fn named_alone_by(&self, sent: &HeaderMap) -> bool {
        let own = self.own_validators();
        !own.is_empty()
            && [IF_NONE_MATCH, IF_MODIFIED_SINCE]
                .iter()
                .all(|name| sent.get_all(name).iter().eq(own.get_all(name).iter()))
    }

    /// This stored response with its header fields updated from `new` (§3.2) and new times,
    /// following the first valid field of `targets` in the updated fields (RFC 9213 §2.2):
    /// `new` may bring a targeted field of higher precedence, or spoil the one followed.
    fn freshened(
        &self,
        req: &request::Parts,
        new: &response::Parts,
        request_time: SystemTime,
        response_time: SystemTime,
        targets: &[HeaderName],
    ) -> CachePolicy {
        // Which fields of `new` are stored depends on the directives followed (a qualified
        // `no-cache` names fields), so merge again when the choice changed.
        let merge = |targeted: Option<&HeaderName>| {
            head::updated_headers(&self.response_headers, &new.headers, self.mode, targeted)
        };
        let mut response_headers = merge(self.targeted.as_ref());
        let targeted = targeted::select(&response_headers, targets).map(|(name, _)| name.clone());
        if targeted != self.targeted {
            response_headers = merge(targeted.as_ref());
        }
        self.with_headers(req, response_headers, targeted, request_time, response_time)
    }

    fn with_headers(
        &self,
        req: &request::Parts,
        response_headers: HeaderMap,
        targeted: Option<HeaderName>,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> CachePolicy {
        let vary_request = vary::selecting_values(&response_headers, &req.headers);
        CachePolicy::from_parts(PolicyParts {
            method: self.method.clone(),
            uri: self.uri.clone(),
            vary_request,
            status: self.status,
            response_headers,
            request_time,
            response_time,
            mode: self.mode,
            request_authorization: self.request_authorization
                || req.headers.contains_key(AUTHORIZATION),
            request_no_store: self.request_no_store
                || CacheControl::from_headers(&req.headers).no_store,
            options: self.options,
            // A 304 keeps the stored tag (it never matched it: see `validators_match`).
            etag_minted: self.etag_minted,
            targeted,
        })
    }

    /// The stored `ETag` the origin issued: not one the cache minted, which the origin never
    /// saw and which must never reach it as a validator.
    fn origin_etag(&self) -> Option<EntityTag> {
        if self.etag_minted {
            return None;
        }
        etag(&self.response_headers)
    }

    /// The outcome of revalidating this stored response: `req` is the request as sent to the
    /// origin, `res` its response head (a `304` or a full response), with the times of that
    /// exchange (RFC 9111 §4.3.3, §4.3.4).
    ///
    /// A `304` whose validator matches the stored one (strong `ETag` by strong comparison,
    /// weak `ETag` by weak comparison, else `Last-Modified`, else both without validators)
    /// gives [`AfterResponse::NotModified`]: the stored header fields updated with the
    /// `304`'s (§3.2; `Content-Length`, `Content-Type`, `Content-Encoding` and
    /// `Content-Range` are kept from the stored response, since they describe the stored
    /// content) and the new times, for the client; and what may be stored of it, checked
    /// again by [`CachePolicy::storable`] (the `304` may say `private` or `no-store`), never
    /// with the `304`'s `Set-Cookie` in a shared cache.
    ///
    /// A `304` that matches nothing gives [`AfterResponse::Mismatch`]; anything else
    /// [`AfterResponse::Modified`].
    ///
    /// The targeted field followed stays the one this policy follows
    /// ([`CachePolicy::targeted`]); a cache with a list of targeted fields calls
    /// [`CachePolicy::after_revalidation_with_targets`].
    pub fn after_revalidation(
        &self,
        req: &request::Parts,
        res: &response::Parts,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> AfterResponse {
        let targets = self.targeted.as_slice();
        self.after_revalidation_with_targets(req, res, request_time, response_time, targets)
    }

    /// [`CachePolicy::after_revalidation`] for a cache that follows the targeted fields
    /// `targets` (RFC 9213; in precedence order, as given to [`CachePolicy::with_targets`]):
    /// the updated fields choose again which one decides, so a `304` that adds a targeted
    /// field of higher precedence (its `no-store` included) is followed, and one that makes
    /// the followed field invalid hands over to the next, or to `Cache-Control`.
    pub fn after_revalidation_with_targets(
        &self,
        req: &request::Parts,
        res: &response::Parts,
        request_time: SystemTime,
        response_time: SystemTime,
        targets: &[HeaderName],
    ) -> AfterResponse {
        self.after_revalidation_of(
            &HeaderMap::new(),
            req,
            res,
            (request_time, response_time),
            targets,
        )
    }

    /// [`CachePolicy::after_revalidation_with_targets`], knowing `sent`: the conditional
    /// fields (`If-None-Match`, `If-Modified-Since`) of the request that revalidated this
    /// response, and `times` its request and response times.
    ///
    /// RFC 9111 §4.3.4 identifies the stored response a `304` updates by the `304`'s
    /// validator, or, when it has none, only a stored response that has none either. Many
    /// origins leave the validators off their `304`s. When `sent` are exactly the
    /// validators the cache makes for this response alone ([`CachePolicy::revalidation_headers`]
    /// of a request without conditions of its own), the `304` can only be about this
    /// response, and it is taken as identifying it, as browsers and Varnish do: otherwise a
    /// healthy origin would turn every revalidation into an error. A `304` whose validator
    /// does not match is still [`AfterResponse::Mismatch`].
    pub fn after_revalidation_of(
        &self,
        sent: &HeaderMap,
        req: &request::Parts,
        res: &response::Parts,
        times: (SystemTime, SystemTime),
        targets: &[HeaderName],
    ) -> AfterResponse {
        let (request_time, response_time) = times;
        if res.status != StatusCode::NOT_MODIFIED {
            return AfterResponse::Modified(CachePolicy::with_targets(
                req,
                res,
                times,
                self.mode,
                self.options,
                targets,
            ));
        }
        let no_validator =
            !res.headers.contains_key(ETAG) && !res.headers.contains_key(LAST_MODIFIED);
        let identified =
            self.validators_match(&res.headers) || (no_validator && self.named_alone_by(sent));
        if !identified {
            return AfterResponse::Mismatch;
        }
        let served = self.freshened(req, res, request_time, response_time, targets);
        let stored = if self.mode == CacheMode::Shared && res.headers.contains_key(SET_COOKIE) {
            // The 304 updates what is stored (§3.2), but a cookie is one client's: what a
            // shared cache keeps never carries it. The stored response had none (it would
            // not have been stored).
            let mut headers = served.response_headers.clone();
            headers.remove(SET_COOKIE);
            let targeted = served.targeted.clone();
            self.with_headers(req, headers, targeted, request_time, response_time)
        } else {
            served.clone()
        };
        let stored = stored.storable().map(|()| stored);
        AfterResponse::NotModified { served, stored }
    }

    /// What the response `res` to a `HEAD` request `req` does to this stored response
    /// (RFC 9111 §4.3.5): a `200` whose received validators (`ETag`, `Last-Modified`, at least
    /// one) all match the stored ones, and whose `Content-Length` (if any) equals the stored
    /// one, freshens it ([`HeadUpdate::Freshened`], header fields updated as for a `304`);
    /// a `200` that does not match outdates it ([`HeadUpdate::Invalidate`]).
    pub fn freshen_with_head(
        &self,
        req: &request::Parts,
        res: &response::Parts,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> HeadUpdate {
        if res.status != StatusCode::OK
            || !same_target(&self.uri, &req.uri)
            || !vary::matches(&self.response_headers, &self.vary_request, &req.headers)
        {
            return HeadUpdate::Unchanged;
        }
        let stored = &self.response_headers;
        let new = &res.headers;
        let mut any = false;
        let mut ok = true;
        if new.contains_key(ETAG) {
            any = true;
            ok &= matches!((etag(new), self.origin_etag()), (Some(n), Some(s)) if n == s);
        }
        if new.contains_key(LAST_MODIFIED) {
            any = true;
            ok &= matches!(
                (single_date(new, LAST_MODIFIED), single_date(stored, LAST_MODIFIED)),
                (Some(n), Some(s)) if n == s
            );
        }
        if new.contains_key(CONTENT_LENGTH) {
            let len = |h: &HeaderMap| -> Option<u64> {
                h.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
            };
            ok &= matches!((len(new), len(stored)), (Some(n), Some(s)) if n == s);
        }
        if any && ok {
            let targets = self.targeted.as_slice();
            HeadUpdate::Freshened(self.freshened(req, res, request_time, response_time, targets))
        } else {
            HeadUpdate::Invalidate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::CacheMode::{Private, Shared};
    use super::*;
    use http::header::CACHE_CONTROL;

    fn fresh(o: &BeforeRequest) -> bool {
        o.is_fresh()
    }

    fn stale_reason(o: &BeforeRequest) -> Option<StaleReason> {
        match o {
            BeforeRequest::Stale { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    #[test]
    fn fresh_hit_carries_age() {
        let p = shared(&[("cache-control", "max-age=100"), ("x-a", "1")]);
        match p.before(&get(&[]), at(42)) {
            BeforeRequest::Fresh {
                headers,
                ttl,
                permitted_stale,
            } => {
                assert_eq!(ttl, secs(58));
                assert_eq!(headers[AGE], "42");
                assert_eq!(headers["x-a"], "1");
                assert!(!permitted_stale);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expired_is_stale() {
        let p = shared(&[("cache-control", "max-age=10")]);
        assert!(fresh(&p.before(&get(&[]), at(9))));
        assert_eq!(
            stale_reason(&p.before(&get(&[]), at(10))),
            Some(StaleReason::Expired)
        );
    }

    #[test]
    fn request_no_cache_and_pragma_force_revalidation() {
        let p = shared(&[("cache-control", "max-age=100")]);
        assert!(fresh(&p.before(&get(&[]), at(1))));
        for h in [("cache-control", "no-cache"), ("pragma", "no-cache")] {
            assert_eq!(
                stale_reason(&p.before(&get(&[h]), at(1))),
                Some(StaleReason::RequestNoCache)
            );
        }
    }

    #[test]
    fn response_no_cache_always_revalidates() {
        let p = shared(&[("cache-control", "max-age=100, no-cache")]);
        assert_eq!(p.storable(), Ok(()));
        let o = p.before(&get(&[("cache-control", "max-stale")]), at(1));
        assert_eq!(stale_reason(&o), Some(StaleReason::ResponseNoCache));
        // Qualified no-cache only concerns the named fields.
        let p = shared(&[
            ("cache-control", "max-age=100, no-cache=\"x-a\""),
            ("x-a", "1"),
        ]);
        assert!(fresh(&p.before(&get(&[]), at(1))));
        assert!(!p.response_headers().contains_key("x-a"));
    }

    #[test]
    fn a_responses_pragma_no_cache_is_no_cache_only_without_cache_control() {
        // RFC 9111 §5.4 keeps no requirement; RFC 7234 §5.4 read `Pragma: no-cache` as
        // `no-cache` where `Cache-Control` is absent, and so does this cache, for responses
        // too: the reading that caches less.
        let expires = date(t0() + secs(100));
        let p = shared(&[("expires", &expires), ("pragma", "no-cache")]);
        assert_eq!(p.storable(), Ok(()));
        let o = p.before(&get(&[]), at(1));
        assert_eq!(stale_reason(&o), Some(StaleReason::ResponseNoCache));
        // Negative: with a Cache-Control line, Pragma is not read.
        let p = shared(&[("cache-control", "max-age=100"), ("pragma", "no-cache")]);
        assert!(fresh(&p.before(&get(&[]), at(1))));
    }

    #[test]
    fn request_max_age() {
        let p = shared(&[("cache-control", "max-age=100")]);
        let r = get(&[("cache-control", "max-age=10")]);
        assert!(fresh(&p.before(&r, at(10))));
        assert_eq!(
            stale_reason(&p.before(&r, at(11))),
            Some(StaleReason::RequestMaxAge)
        );
    }

    #[test]
    fn min_fresh() {
        let p = shared(&[("cache-control", "max-age=100")]);
        let r = get(&[("cache-control", "min-fresh=30")]);
        assert!(fresh(&p.before(&r, at(70))));
        assert_eq!(
            stale_reason(&p.before(&r, at(71))),
            Some(StaleReason::RequestMinFresh)
        );
    }

    #[test]
    fn max_stale_allows_stale_within_bound() {
        let p = shared(&[("cache-control", "max-age=10")]);
        let r = get(&[("cache-control", "max-stale=5")]);
        match p.before(&r, at(15)) {
            BeforeRequest::Fresh {
                permitted_stale, ..
            } => assert!(permitted_stale),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            stale_reason(&p.before(&r, at(16))),
            Some(StaleReason::Expired)
        );
        let any = get(&[("cache-control", "max-stale")]);
        assert!(fresh(&p.before(&any, at(100_000))));
    }

    #[test]
    fn max_stale_yields_to_must_revalidate_proxy_revalidate_and_s_maxage() {
        let r = get(&[("cache-control", "max-stale")]);
        let p = shared(&[("cache-control", "max-age=10, must-revalidate")]);
        assert!(!fresh(&p.before(&r, at(20))));
        for cc in ["max-age=10, proxy-revalidate", "s-maxage=10"] {
            let p = shared(&[("cache-control", cc)]);
            assert!(!fresh(&p.before(&r, at(20))), "{cc}");
            // In a private cache these directives do not apply.
            let p = policy(&[], &[("cache-control", cc)], Private);
            if p.freshness_lifetime() > Duration::ZERO {
                assert!(fresh(&p.before(&r, at(20))), "{cc}");
            }
        }
    }

    #[test]
    fn immutable_changes_nothing() {
        let p = shared(&[("cache-control", "max-age=10, immutable")]);
        assert!(!fresh(&p.before(&get(&[]), at(10))));
        assert_eq!(
            stale_reason(&p.before(&get(&[("cache-control", "no-cache")]), at(1))),
            Some(StaleReason::RequestNoCache)
        );
    }

    #[test]
    fn stale_while_revalidate_window() {
        let p = shared(&[("cache-control", "max-age=10, stale-while-revalidate=20")]);
        let swr = |t| match p.before(&get(&[]), at(t)) {
            BeforeRequest::Stale { swr_allowed, .. } => swr_allowed,
            other => panic!("{other:?}"),
        };
        assert!(swr(15));
        assert!(!swr(30));
        // Not when the request forces revalidation.
        match p.before(&get(&[("cache-control", "no-cache")]), at(15)) {
            BeforeRequest::Stale { swr_allowed, .. } => assert!(!swr_allowed),
            other => panic!("{other:?}"),
        }
        // Not with must-revalidate.
        let p = shared(&[(
            "cache-control",
            "max-age=10, stale-while-revalidate=20, must-revalidate",
        )]);
        assert!(matches!(
            p.before(&get(&[]), at(15)),
            BeforeRequest::Stale {
                swr_allowed: false,
                ..
            }
        ));
    }

    #[test]
    fn head_uses_stored_get_but_get_not_stored_head() {
        let p = shared(&[("cache-control", "max-age=100")]);
        let head = req_with(Method::HEAD, "/r", &[]);
        assert!(fresh(&p.before(&head, at(1))));
        let p = CachePolicy::new(
            &head,
            &res(&[("cache-control", "max-age=100")]),
            t0(),
            t0(),
            Shared,
        );
        assert!(fresh(&p.before(&head, at(1))));
        assert_eq!(p.before(&get(&[]), at(1)), BeforeRequest::VaryMismatch);
    }

    #[test]
    fn other_target_does_not_match() {
        let p = shared(&[("cache-control", "max-age=100")]);
        let other = req_with(Method::GET, "/r?x", &[]);
        assert_eq!(p.before(&other, at(1)), BeforeRequest::VaryMismatch);
        let abs = req_with(Method::GET, "http://a.example/r", &[]);
        assert!(fresh(&p.before(&abs, at(1))));
    }

    #[test]
    fn only_if_cached_helper() {
        let oic = get(&[("cache-control", "only-if-cached")]);
        assert!(only_if_cached_unsatisfied(&head_of(&oic), None));
        let p = shared(&[("cache-control", "max-age=10")]);
        assert!(!only_if_cached_unsatisfied(
            &head_of(&oic),
            Some(&p.before(&oic, at(1)))
        ));
        assert!(only_if_cached_unsatisfied(
            &head_of(&oic),
            Some(&p.before(&oic, at(11)))
        ));
        // Stale but allowed by max-stale: served.
        let oic_stale = get(&[("cache-control", "only-if-cached, max-stale")]);
        assert!(!only_if_cached_unsatisfied(
            &head_of(&oic_stale),
            Some(&p.before(&oic_stale, at(11)))
        ));
        // Without the directive, never.
        assert!(!only_if_cached_unsatisfied(&head_of(&get(&[])), None));
    }

    #[test]
    fn revalidation_headers_from_stored_validators() {
        let lm = date(t0() - secs(100));
        let p = shared(&[
            ("cache-control", "max-age=0"),
            ("etag", "W/\"v1\""),
            ("last-modified", &lm),
        ]);
        let h = p.revalidation_headers(&get(&[]));
        assert_eq!(h[IF_NONE_MATCH], "W/\"v1\"");
        assert_eq!(h[IF_MODIFIED_SINCE], lm.as_str());
        match p.before(&get(&[]), at(1)) {
            BeforeRequest::Stale {
                revalidation_headers,
                reason,
                ..
            } => {
                assert_eq!(revalidation_headers, h);
                assert_eq!(reason, StaleReason::Expired);
            }
            other => panic!("{other:?}"),
        }
        // Nothing to validate with.
        assert!(shared(&[("cache-control", "max-age=0")])
            .revalidation_headers(&get(&[]))
            .is_empty());
        // Invalid validators are not sent; a legacy unquoted tag is, as the origin sent it.
        let p = shared(&[("etag", "\"a b\""), ("last-modified", "yesterday")]);
        assert!(p.revalidation_headers(&get(&[])).is_empty());
        let p = shared(&[("etag", "no-quotes"), ("last-modified", "yesterday")]);
        let h = p.revalidation_headers(&get(&[]));
        assert_eq!(h.len(), 1);
        assert_eq!(h[IF_NONE_MATCH], "no-quotes");
    }

    #[test]
    fn revalidation_headers_keep_client_conditionals() {
        let lm = date(t0() - secs(100));
        let p = shared(&[("etag", "\"v1\""), ("last-modified", &lm)]);
        let client_ims = date(t0() - secs(5));
        let h = p.revalidation_headers(&get(&[
            ("if-none-match", "\"v0\""),
            ("if-modified-since", &client_ims),
        ]));
        assert_eq!(h[IF_NONE_MATCH], "\"v0\", \"v1\"");
        assert_eq!(h[IF_MODIFIED_SINCE], client_ims.as_str());
        // Already listed, or `*`: kept as is.
        let h = p.revalidation_headers(&get(&[("if-none-match", "\"v1\"")]));
        assert_eq!(h[IF_NONE_MATCH], "\"v1\"");
        let h = p.revalidation_headers(&get(&[("if-none-match", "*")]));
        assert_eq!(h[IF_NONE_MATCH], "*");
    }

    /// RFC 9111 §4.2.4: a disconnected cache may serve stale, by a configured grace, except
    /// where a directive forbids stale or the request asks for the origin.
    #[test]
    fn a_grace_for_an_unreachable_origin_and_what_forbids_it() {
        let grace = secs(60);
        let p = shared(&[("cache-control", "max-age=10")]);
        let (req, head) = (get(&[]), head_of(&get(&[])));
        assert_eq!(
            p.stale_if_unreachable_until(&req, &head, grace),
            Some(at(70))
        );
        assert_eq!(p.stale_if_unreachable_until(&req, &head, secs(0)), None);
        assert_eq!(p.storage_ttl(t0()), secs(10));
        assert_eq!(
            p.storage_ttl_with_grace(t0(), grace),
            secs(70),
            "kept for the grace"
        );
        for forbidding in [
            "max-age=10, must-revalidate",
            "max-age=10, no-cache",
            "s-maxage=10",
        ] {
            let p = shared(&[("cache-control", forbidding)]);
            assert_eq!(
                p.stale_if_unreachable_until(&req, &head, grace),
                None,
                "{forbidding}"
            );
            assert_eq!(p.storage_ttl_with_grace(t0(), grace), p.storage_ttl(t0()));
        }
        let no_cache = get(&[("cache-control", "no-cache")]);
        assert_eq!(
            p.stale_if_unreachable_until(&no_cache, &head_of(&no_cache), grace),
            None
        );
    }

    #[test]
    fn stale_if_error_windows_and_prohibitions() {
        let p = shared(&[("cache-control", "max-age=10, stale-if-error=60")]);
        assert!(p.sie_allowed(&get(&[]), at(70)));
        assert!(!p.sie_allowed(&get(&[]), at(71)));
        // From the request alone.
        let p = shared(&[("cache-control", "max-age=10")]);
        assert!(!p.sie_allowed(&get(&[]), at(20)));
        let r = get(&[("cache-control", "stale-if-error=30")]);
        assert!(p.sie_allowed(&r, at(20)));
        assert!(!p.sie_allowed(&r, at(41)));
        for cc in [
            "max-age=10, stale-if-error=60, must-revalidate",
            "max-age=10, stale-if-error=60, proxy-revalidate",
            "s-maxage=10, stale-if-error=60",
            "max-age=10, stale-if-error=60, no-cache",
        ] {
            assert!(
                !shared(&[("cache-control", cc)]).sie_allowed(&get(&[]), at(20)),
                "{cc}"
            );
        }
        let private = policy(
            &[],
            &[(
                "cache-control",
                "max-age=10, stale-if-error=60, proxy-revalidate",
            )],
            Private,
        );
        assert!(private.sie_allowed(&get(&[]), at(20)));
        // A request with no-cache did not ask for stale content.
        let p = shared(&[("cache-control", "max-age=10, stale-if-error=60")]);
        assert!(!p.sie_allowed(&get(&[("cache-control", "no-cache")]), at(20)));
    }

    fn not_modified(headers: &[(&str, &str)]) -> response::Parts {
        res_with(304, headers)
    }

    /// A tag the cache minted (the origin sent no validator) never reaches the origin, and
    /// is not what a `304` is matched against.
    #[test]
    fn a_minted_tag_is_not_the_origins_validator() {
        let p = shared(&[("cache-control", "max-age=10")])
            .with_minted_etag(&EntityTag::strong("minted").unwrap())
            .unwrap();
        assert_eq!(p.response_headers()[ETAG], "\"minted\"");
        assert!(p.revalidation_headers(&get(&[])).is_empty());
        // A 304 without validators updates a stored response without the origin's.
        let o = p.after_revalidation(&get(&[]), &not_modified(&[]), at(1), at(1));
        assert!(matches!(o, AfterResponse::NotModified { .. }), "{o:?}");
        // The origin's own tag, even the same string, selects nothing minted.
        let o = p.after_revalidation(
            &get(&[]),
            &not_modified(&[("etag", "\"minted\"")]),
            at(1),
            at(1),
        );
        assert!(matches!(o, AfterResponse::Mismatch), "{o:?}");
        // Never over the origin's validators, never on another status.
        let tag = EntityTag::strong("m").unwrap();
        assert!(shared(&[("etag", "\"o\"")])
            .with_minted_etag(&tag)
            .is_none());
        let lm = date(t0());
        assert!(shared(&[("last-modified", &lm)])
            .with_minted_etag(&tag)
            .is_none());
    }

    #[test]
    fn matching_304_freshens() {
        let p = shared(&[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("content-length", "5"),
            ("content-type", "text/plain"),
            ("x-old", "o"),
        ]);
        let res304 = not_modified(&[
            ("cache-control", "max-age=100"),
            ("etag", "\"v1\""),
            ("content-length", "0"),
            ("x-new", "n"),
            ("connection", "close"),
        ]);
        match p.after_revalidation(&get(&[]), &res304, at(50), at(51)) {
            AfterResponse::NotModified { served: f, stored } => {
                assert_eq!(stored.as_ref(), Ok(&f));
                assert_eq!(f.status(), StatusCode::OK);
                assert_eq!(f.response_time(), at(51));
                assert_eq!(f.response_headers()["content-length"], "5");
                assert_eq!(f.response_headers()["content-type"], "text/plain");
                assert_eq!(f.response_headers()["x-old"], "o");
                assert_eq!(f.response_headers()["x-new"], "n");
                assert!(!f.response_headers().contains_key("connection"));
                assert_eq!(f.freshness_lifetime(), secs(100));
                assert!(f.is_fresh(at(60)));
                assert_eq!(f.storable(), Ok(()));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mismatching_304_is_modified() {
        let p = shared(&[("cache-control", "max-age=10"), ("etag", "\"v1\"")]);
        for etag in ["\"v2\"", "W/\"v2\"", "garbage"] {
            let o =
                p.after_revalidation(&get(&[]), &not_modified(&[("etag", etag)]), at(50), at(51));
            assert_eq!(o, AfterResponse::Mismatch, "{etag}");
        }
        // A strong tag needs a strong stored tag.
        let weak = shared(&[("etag", "W/\"v1\"")]);
        let o = weak.after_revalidation(
            &get(&[]),
            &not_modified(&[("etag", "\"v1\"")]),
            at(1),
            at(1),
        );
        assert!(matches!(o, AfterResponse::Mismatch));
        // A weak tag matches by weak comparison.
        let o = p.after_revalidation(
            &get(&[]),
            &not_modified(&[("etag", "W/\"v1\"")]),
            at(1),
            at(1),
        );
        assert!(matches!(o, AfterResponse::NotModified { .. }));
    }

    #[test]
    fn last_modified_and_validatorless_304() {
        let lm = date(t0() - secs(100));
        let p = shared(&[("last-modified", &lm)]);
        let same = not_modified(&[("last-modified", &lm)]);
        assert!(matches!(
            p.after_revalidation(&get(&[]), &same, at(1), at(1)),
            AfterResponse::NotModified { .. }
        ));
        let other = not_modified(&[("last-modified", &*date(t0()))]);
        assert!(matches!(
            p.after_revalidation(&get(&[]), &other, at(1), at(1)),
            AfterResponse::Mismatch
        ));
        // A 304 without validators does not update a stored response that has them ...
        let none = not_modified(&[]);
        assert!(matches!(
            p.after_revalidation(&get(&[]), &none, at(1), at(1)),
            AfterResponse::Mismatch
        ));
        // ... but does update one without.
        let bare = shared(&[]);
        assert!(matches!(
            bare.after_revalidation(&get(&[]), &none, at(1), at(1)),
            AfterResponse::NotModified { .. }
        ));
    }

    /// RFC 9111 §4.3.4 identifies no stored response for a `304` without validators when
    /// the stored one has a validator. When the request carried that response's validators
    /// and nothing else, the `304` can only be about it: it is taken as identifying it (as
    /// browsers and Varnish do), so an origin that leaves `ETag` off its `304`s is not an
    /// error.
    #[test]
    fn a_validatorless_304_updates_the_one_response_the_request_named() {
        let lm = date(t0() - secs(100));
        let p = shared(&[("etag", "\"v1\""), ("last-modified", &lm)]);
        let sent = p.revalidation_headers(&get(&[]));
        assert_eq!(sent[IF_NONE_MATCH], "\"v1\"");
        let none = not_modified(&[("cache-control", "max-age=60")]);
        match p.after_revalidation_of(&sent, &get(&[]), &none, (at(1), at(1)), &[]) {
            AfterResponse::NotModified { served, .. } => {
                assert_eq!(served.response_headers()[ETAG], "\"v1\"", "kept");
                assert_eq!(served.freshness_lifetime(), secs(60), "updated");
            }
            other => panic!("{other:?}"),
        }
        // By `Last-Modified` alone, too.
        let by_date = shared(&[("last-modified", &lm)]);
        let sent = by_date.revalidation_headers(&get(&[]));
        assert!(matches!(
            by_date.after_revalidation_of(&sent, &get(&[]), &none, (at(1), at(1)), &[]),
            AfterResponse::NotModified { .. }
        ));
    }

    /// The negative cases: a request that named more than the stored response (the client's
    /// own tags or date beside it, `*`), or a `304` whose own validator does not match,
    /// identifies nothing.
    #[test]
    fn a_validatorless_304_to_a_request_naming_more_identifies_nothing() {
        let p = shared(&[("etag", "\"v1\"")]);
        let none = not_modified(&[]);
        for client in [
            ("if-none-match", "\"v0\""),
            ("if-none-match", "*"),
            ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ] {
            let sent = p.revalidation_headers(&get(&[client]));
            let o = p.after_revalidation_of(&sent, &get(&[]), &none, (at(1), at(1)), &[]);
            assert_eq!(o, AfterResponse::Mismatch, "{client:?}: {sent:?}");
        }
        // Nothing sent: nothing named.
        let o = p.after_revalidation_of(&HeaderMap::new(), &get(&[]), &none, (at(1), at(1)), &[]);
        assert_eq!(o, AfterResponse::Mismatch);
        // A 304 with another strong validator is about another representation.
        let sent = p.revalidation_headers(&get(&[]));
        let other = not_modified(&[("etag", "\"v2\"")]);
        let o = p.after_revalidation_of(&sent, &get(&[]), &other, (at(1), at(1)), &[]);
        assert_eq!(o, AfterResponse::Mismatch);
    }

    #[test]
    fn full_response_is_modified_and_replaces() {
        let p = shared(&[("cache-control", "max-age=10"), ("etag", "\"v1\"")]);
        let new = res(&[("cache-control", "max-age=30"), ("etag", "\"v2\"")]);
        match p.after_revalidation(&get(&[]), &new, at(50), at(51)) {
            AfterResponse::Modified(m) => {
                assert_eq!(m.storable(), Ok(()));
                assert_eq!(m.response_headers()[ETAG], "\"v2\"");
                assert_eq!(m.freshness_lifetime(), secs(30));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn freshened_304_with_no_store_is_not_storable() {
        let p = shared(&[("etag", "\"v1\"")]);
        let o = p.after_revalidation(
            &get(&[]),
            &not_modified(&[("etag", "\"v1\""), ("cache-control", "no-store")]),
            at(1),
            at(1),
        );
        match o {
            AfterResponse::NotModified { stored, .. } => {
                assert_eq!(stored, Err(NotStorable::NoStore))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_304_set_cookie_is_served_but_never_stored_by_a_shared_cache() {
        // RFC 9111 §3.2 updates the stored fields; §3 still decides what a shared cache keeps.
        let p = shared(&[("cache-control", "max-age=0"), ("etag", "\"v1\"")]);
        let res304 = not_modified(&[
            ("etag", "\"v1\""),
            ("cache-control", "max-age=60"),
            ("set-cookie", "session=alice"),
        ]);
        match p.after_revalidation(&get(&[]), &res304, at(1), at(1)) {
            AfterResponse::NotModified { served, stored } => {
                assert_eq!(served.response_headers()[SET_COOKIE], "session=alice");
                let stored = stored.expect("still storable without the cookie");
                assert!(!stored.response_headers().contains_key(SET_COOKIE));
                assert_eq!(stored.freshness_lifetime(), secs(60));
            }
            other => panic!("{other:?}"),
        }
        // A private cache is one user's: it keeps the cookie.
        let p = policy(
            &[],
            &[("cache-control", "max-age=0"), ("etag", "\"v1\"")],
            Private,
        );
        match p.after_revalidation(&get(&[]), &res304, at(1), at(1)) {
            AfterResponse::NotModified { stored, .. } => {
                assert_eq!(
                    stored.unwrap().response_headers()[SET_COOKIE],
                    "session=alice"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_304_that_makes_the_response_unstorable_removes_it() {
        let p = shared(&[("cache-control", "public, max-age=0"), ("etag", "\"v1\"")]);
        for (cc, reason) in [
            ("private, max-age=60", NotStorable::Private),
            ("no-store", NotStorable::NoStore),
        ] {
            let res304 = not_modified(&[("etag", "\"v1\""), ("cache-control", cc)]);
            match p.after_revalidation(&get(&[]), &res304, at(1), at(1)) {
                AfterResponse::NotModified { served, stored } => {
                    assert_eq!(stored, Err(reason), "{cc}");
                    // The client that asked still gets the stored body with the 304's fields.
                    assert_eq!(served.response_headers()[CACHE_CONTROL], cc);
                }
                other => panic!("{cc}: {other:?}"),
            }
        }
        // Revalidated for a request with credentials, without `public` any more (§3.5).
        let res304 = not_modified(&[("etag", "\"v1\""), ("cache-control", "max-age=60")]);
        let authed = get(&[("authorization", "Bearer x")]);
        match p.after_revalidation(&authed, &res304, at(1), at(1)) {
            AfterResponse::NotModified { stored, .. } => {
                assert_eq!(stored, Err(NotStorable::Authorization))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stale_is_served_only_where_explicitly_permitted() {
        // RFC 9111 §4.2.4: not merely "not forbidden".
        let p = shared(&[("cache-control", "max-age=10"), ("etag", "\"v1\"")]);
        let plain = get(&[]);
        assert!(!p.stale_permitted(&head_of(&plain), at(20)));
        let max_stale = get(&[("cache-control", "max-stale=30")]);
        assert!(p.stale_permitted(&head_of(&max_stale), at(20)));
        assert!(!p.stale_permitted(&head_of(&max_stale), at(41)));
        let sie = shared(&[
            ("cache-control", "max-age=10, stale-if-error=30"),
            ("etag", "\"v1\""),
        ]);
        assert!(sie.stale_permitted(&head_of(&plain), at(40)));
        assert!(!sie.stale_permitted(&head_of(&plain), at(41)));
        // The client asked for validation.
        let no_cache = get(&[("cache-control", "no-cache, max-stale")]);
        assert!(!sie.stale_permitted(&head_of(&no_cache), at(20)));
        // Directives that forbid it.
        for cc in [
            "max-age=10, must-revalidate, stale-if-error=30",
            "s-maxage=10, stale-if-error=30",
        ] {
            let p = shared(&[("cache-control", cc)]);
            assert!(!p.stale_permitted(&head_of(&max_stale), at(20)), "{cc}");
        }
        // A mismatched 304 is a mismatch whatever the directives.
        let o = p.after_revalidation(&plain, &not_modified(&[("etag", "\"v2\"")]), at(1), at(1));
        assert_eq!(o, AfterResponse::Mismatch);
    }

    #[test]
    fn stale_if_error_deadline_is_computed_once() {
        let p = shared(&[("cache-control", "max-age=10, stale-if-error=60")]);
        assert_eq!(
            p.stale_if_error_until(&get(&[]), &head_of(&get(&[]))),
            Some(at(70))
        );
        match p.before(&get(&[]), at(20)) {
            BeforeRequest::Stale {
                stale_if_error_until,
                ..
            } => assert_eq!(stale_if_error_until, Some(at(70))),
            other => panic!("{other:?}"),
        }
        // Past the window the decision holds none: an error then is answered as an error.
        match p.before(&get(&[]), at(71)) {
            BeforeRequest::Stale {
                stale_if_error_until,
                ..
            } => assert_eq!(stale_if_error_until, None),
            other => panic!("{other:?}"),
        }
        // An `Age` on arrival shortens it.
        let aged = shared(&[
            ("cache-control", "max-age=10, stale-if-error=60"),
            ("age", "30"),
        ]);
        assert_eq!(
            aged.stale_if_error_until(&get(&[]), &head_of(&get(&[]))),
            Some(at(40))
        );
        let too_old = shared(&[
            ("cache-control", "max-age=10, stale-if-error=5"),
            ("age", "30"),
        ]);
        assert!(!too_old.sie_allowed(&get(&[]), at(0)));
    }

    #[test]
    fn stale_reasons_say_who_asked_for_the_origin() {
        assert!(StaleReason::RequestNoCache.requested_by_client());
        assert!(StaleReason::RequestMaxAge.requested_by_client());
        assert!(StaleReason::RequestMinFresh.requested_by_client());
        assert!(!StaleReason::Expired.requested_by_client());
        assert!(!StaleReason::ResponseNoCache.requested_by_client());
    }

    #[test]
    fn head_freshens_when_validators_and_length_match() {
        let p = shared(&[
            ("cache-control", "max-age=10"),
            ("etag", "\"v1\""),
            ("content-length", "5"),
        ]);
        let head = req_with(Method::HEAD, "/r", &[]);
        let ok = res(&[
            ("etag", "\"v1\""),
            ("content-length", "5"),
            ("cache-control", "max-age=99"),
        ]);
        match p.freshen_with_head(&head, &ok, at(20), at(20)) {
            HeadUpdate::Freshened(f) => {
                assert_eq!(f.method(), Method::GET);
                assert_eq!(f.freshness_lifetime(), secs(99));
                assert!(f.is_fresh(at(30)));
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            res(&[("etag", "\"v2\""), ("content-length", "5")]),
            res(&[("etag", "\"v1\""), ("content-length", "6")]),
            res(&[("content-length", "5")]),
        ] {
            assert_eq!(
                p.freshen_with_head(&head, &bad, at(20), at(20)),
                HeadUpdate::Invalidate
            );
        }
        let missing = res_with(404, &[]);
        assert_eq!(
            p.freshen_with_head(&head, &missing, at(20), at(20)),
            HeadUpdate::Unchanged
        );
    }
}
