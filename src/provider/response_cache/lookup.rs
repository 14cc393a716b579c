//! The response cache's lookup service. A request is **classified** (bypass, invalidate,
//! cacheable), its entry **found** in the keyspace, the policy **decides** what the entry
//! can do for it (a fresh hit, stale-while-revalidate, a revalidation, a miss), and misses
//! and revalidations are **coalesced**, so that one request per key reaches the inner
//! service at a time.

use super::{
    body::HitBody,
    coalesce::{Join, Waited, Waiter},
    copy_head,
    keyspace::{Keyspace, Place, Seen, Selector},
    lock,
    status::{CacheStatus, Fwd},
    tee::Held,
    CacheBypass, FillingUrl, ResponseCache,
};
use crate::{
    cache_control::FieldDirective,
    policy::{
        decide::{decide, Asked, Decision, Found as Judged, Rules},
        filing::{FilingRules, Shelf},
        BeforeRequest, CachePolicy, StaleReason,
    },
    provider::{fill_request, Lookup, LookupRequest, RequestHead},
    store::{Expect, GetResult, Key, Store, StoreError, StoredBody},
};
use http::{
    header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE},
    request, HeaderMap, HeaderName, Method, Request, Response,
};
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime},
};
use tower_service::Service;

/// What lookup hands to store: opaque to users.
#[derive(Debug)]
pub struct ResponseCacheKey(pub(crate) KeyKind);

#[derive(Debug)]
pub(crate) enum KeyKind {
    /// Not cached: only `Cache-Status` is added.
    Bypass { fwd: Fwd, detail: &'static str },
    /// An unsafe method: invalidate after a non-error response (RFC 9111 §4.4).
    Invalidate { uri: http::Uri },
    /// A miss or a revalidation: store what comes back.
    Fill(Box<Fill>),
}

/// A fill: what the store service needs to file the inner service's response.
#[derive(Debug)]
pub(crate) struct Fill {
    pub(crate) place: Place,
    /// The place's records as the lookup saw them: what the fill writes against.
    pub(crate) seen: Seen,
    /// Per-user mode, a user's request filled at the shared place: the user's own place
    /// (and its records), for a response only that user may have.
    pub(crate) for_user: Option<(Place, Seen)>,
    /// Filed in its user's own entries ([`Fill::for_user`]): never streamed to followers.
    pub(crate) users_own: bool,
    /// The request as sent on (a GET, without the client's conditionals).
    pub(crate) request: request::Parts,
    pub(crate) request_time: SystemTime,
    pub(crate) fwd: Fwd,
    pub(crate) held: Held,
    /// A revalidation: the stored entry and until when it may stand in for an error.
    pub(crate) stale: Option<Stale>,
    /// A miss sent on with the client's own validators: a 304 is the client's answer.
    pub(crate) client_conditional: bool,
    _filling: FillingUrl,
}

impl Fill {
    /// The shelves its response may be filed in, in order of preference, and whether its
    /// request named a user: a user's request at the shared place (per-user mode) may go to
    /// the shared entries or the user's own; one at a user's own place (a revalidation of
    /// the user's entry) stays there; any other goes to its place's shelf.
    pub(crate) fn shelves(&self, rules: FilingRules) -> (&'static [Shelf], bool) {
        if self.for_user.is_some() {
            (rules.shelves(true), true)
        } else if self.place.user.is_some() {
            (&[Shelf::Own], true)
        } else {
            (rules.shelves(false), false)
        }
    }
}

/// The entry a fill revalidates.
#[derive(Debug)]
pub(crate) struct Stale {
    pub(crate) entry: StoredEntry,
    pub(crate) stale_if_error_until: Option<SystemTime>,
    /// Until when it stands in for an origin that cannot be reached, by the cache's grace.
    pub(crate) unreachable_until: Option<SystemTime>,
    /// The validators the revalidation request carried: which stored response a `304`
    /// without validators is about ([`CachePolicy::after_revalidation_of`]).
    pub(crate) sent: HeaderMap,
}

/// An entry read from the store.
#[derive(Debug)]
pub(crate) struct StoredEntry {
    pub(crate) key: Key,
    /// The store's version of it: a write based on this read names it.
    pub(crate) version: u64,
    pub(crate) selector: Selector,
    pub(crate) policy: Arc<CachePolicy>,
    pub(crate) body: StoredBody,
    /// Which tier of a layered store it came from (`Cache-Status` detail of a hit).
    pub(crate) tier: Option<&'static str>,
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

impl<St: Store, ReqBody: Send + 'static> Service<LookupRequest<ReqBody>> for ResponseCache<St> {
    type Response = LookupResult<ReqBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, lookup: LookupRequest<ReqBody>) -> Self::Future {
        let cache = self.clone();
        Box::pin(async move { Ok(cache.lookup(lookup).await) })
    }
}

/// What a request is to the cache.
enum Class {
    /// Not for the cache: forwarded, nothing stored (a `Cache-Status` says why).
    Bypass(Fwd, &'static str),
    /// An unsafe method: forwarded; a non-error response invalidates.
    Invalidate,
    /// Looked up at this place.
    Cacheable(Place),
}

/// What the last lookup of a URL found (for a store with remote reads): its epoch and its
/// most recent `Vary` set, from which the next lookup computes the key it expects.
#[derive(Clone, Debug)]
pub(crate) struct Expected {
    epoch: u64,
    names: Arc<[String]>,
}

/// An entry read ahead, before the URL's record said which one to read: the entry, or the
/// key found empty.
type ReadAhead = Result<StoredEntry, Key>;

fn read_key(read: &ReadAhead) -> &Key {
    match read {
        Ok(entry) => &entry.key,
        Err(absent) => absent,
    }
}

/// Where a request was looked up, and what was found there.
struct Looked {
    place: Place,
    seen: Seen,
    found: Found,
    /// See [`Fill::for_user`].
    for_user: Option<(Place, Seen)>,
}

/// What was found for a request.
struct Found {
    /// The entry selected for the request, with the policy's decision for it.
    entry: Option<(StoredEntry, BeforeRequest)>,
    /// What a miss is: nothing stored for the URL, or not for this selection.
    miss: Fwd,
    /// What coalesced misses wait on (none when an entry was found: it is the entry's).
    coalesce_key: Option<Key>,
}

/// A ranged request's `Range` and its conditional fields (`If-Range` among them), as it
/// came: what its answer from a stored response reads, and what goes on if there is none.
fn range_fields(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in std::iter::once(&RANGE).chain(CONDITIONAL_FIELDS.iter()) {
        for value in headers.get_all(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The validators of the client's conditional GET that go on when nothing is stored (RFC
/// 9111 §4.3.2: the cache "MUST NOT evaluate" preconditions for a target it has no stored
/// response for): `If-None-Match` and `If-Modified-Since`. The origin's answer, a 304 or a
/// full response, goes to the client as it is.
fn client_validators(headers: &HeaderMap) -> HeaderMap {
    // `If-Match` and `If-Unmodified-Since` never get here: such a request bypasses a cache
    // that does not speak for the origin (`classify`).
    let mut out = HeaderMap::new();
    for name in [IF_NONE_MATCH, IF_MODIFIED_SINCE] {
        for value in headers.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The request sent to the inner service on a miss or revalidation: a GET (a HEAD fetches
/// the GET representation so it can be stored), with the cache's own validators if any.
/// `parts` no longer has the client's conditionals: the cache answers them itself.
fn forwarded<ReqBody>(
    parts: request::Parts,
    body: ReqBody,
    validators: Option<&HeaderMap>,
) -> Request<ReqBody> {
    let mut request = Request::from_parts(parts, body);
    fill_request(&mut request);
    if let Some(v) = validators {
        let headers = request.headers_mut();
        for name in v.keys() {
            headers.remove(name);
        }
        for (name, value) in v {
            headers.append(name, value.clone());
        }
    }
    request
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

impl<St: Store> ResponseCache<St> {
    async fn lookup<ReqBody>(&self, lookup: LookupRequest<ReqBody>) -> LookupResult<ReqBody> {
        let LookupRequest { head, request } = lookup;
        let (parts, body) = request.into_parts();
        match self.classify(&head, &parts) {
            Class::Bypass(fwd, detail) => bypass(Request::from_parts(parts, body), fwd, detail),
            Class::Invalidate => {
                let uri = parts.uri.clone();
                Lookup::Miss {
                    request: Request::from_parts(parts, body),
                    key: ResponseCacheKey(KeyKind::Invalidate { uri }),
                }
            }
            Class::Cacheable(place) => self.cacheable(place, head, parts, body).await,
        }
    }

    fn classify(&self, head: &RequestHead, parts: &request::Parts) -> Class {
        match head.method {
            Method::GET | Method::HEAD => {}
            Method::OPTIONS | Method::TRACE | Method::CONNECT => {
                return Class::Bypass(Fwd::Bypass, "method")
            }
            // RFC 9111 §4.4, whatever else the request says (a bypass included).
            _ => return Class::Invalidate,
        }
        if parts.extensions.get::<CacheBypass>().is_some() {
            return Class::Bypass(Fwd::Bypass, "bypass-requested");
        }
        if head.content {
            // What the origin made of the body would be served to requests without it.
            return Class::Bypass(Fwd::Bypass, "request-body");
        }
        if head.cache_control.no_store {
            return Class::Bypass(Fwd::Request, "request-no-store");
        }
        if !self.shared.config.mint_etags
            && (parts.headers.contains_key(IF_MATCH)
                || parts.headers.contains_key(IF_UNMODIFIED_SINCE))
        {
            // RFC 9111 §4.3.2: a cache MUST NOT evaluate preconditions that only apply to an
            // origin server: the request goes there as it came. (A cache that mints tags
            // speaks for the origin, and answers them.)
            return Class::Bypass(Fwd::Request, "origin-precondition");
        }
        match self.place(head, parts) {
            Ok(place) => Class::Cacheable(place),
            Err(why) => Class::Bypass(Fwd::Bypass, why),
        }
    }

    async fn cacheable<ReqBody>(
        &self,
        place: Place,
        head: Arc<RequestHead>,
        mut parts: request::Parts,
        body: ReqBody,
    ) -> LookupResult<ReqBody> {
        // A GET with `Range` is answered from a fresh stored full response (RFC 9110 §14);
        // anything else about it goes to the inner service as it came (partial content is
        // not stored: RFC 9111 §3.4 is not implemented). HEAD ignores `Range` (§14.2).
        let ranged =
            (head.range && head.method == Method::GET).then(|| range_fields(&parts.headers));
        // Never on what the cache sends itself (fills, revalidations, refreshes): they are
        // for the whole representation. A ranged request that goes on gets it back.
        if head.range {
            parts.headers.remove(RANGE);
        }
        // The cache answers the client's preconditions itself, from what it stores; the
        // inner service sees the cache's own validators, or on a miss the client's (below):
        // unless the cache mints tags, for then a client's tag may be one the origin never
        // issued.
        let client_validators = if head.conditional {
            let validators = if self.shared.config.mint_etags {
                HeaderMap::new()
            } else {
                client_validators(&parts.headers)
            };
            for name in CONDITIONAL_FIELDS {
                parts.headers.remove(name);
            }
            validators
        } else {
            HeaderMap::new()
        };
        // A host policy may say this origin's clients send `no-cache` for no reason.
        let ignored_no_cache = head.cache_control.no_cache.is_present()
            && self
                .host_policy(head.authority.as_deref())
                .is_some_and(|p| p.ignores_request_no_cache());
        let head = if ignored_no_cache {
            let mut without = (*head).clone();
            without.cache_control.no_cache = FieldDirective::Absent;
            Arc::new(without)
        } else {
            head
        };
        let keyspace = self.keyspace();
        let mut collapsed = false;
        let mut request_place = place;
        loop {
            let now = self.now();
            let looked = if self.per_user() {
                // Boxed: the common path's future stays small (it is moved with every
                // request).
                Box::pin(self.look_up(&keyspace, request_place, &parts, &head, now)).await
            } else {
                self.look_up_at(&keyspace, request_place, &parts, &head, now)
                    .await
            };
            let Looked {
                place,
                seen,
                found,
                for_user,
            } = match looked {
                Ok(looked) => looked,
                Err(e) => {
                    tracing::warn!(error = %e, "cache store failed; serving without it");
                    if head.cache_control.only_if_cached {
                        // RFC 9111 §5.2.1.7: a stored response or a 504, never the origin.
                        return Lookup::Hit(self.gateway_timeout(&CacheStatus {
                            detail: Some("store-error"),
                            ..CacheStatus::fwd(Fwd::UriMiss)
                        }));
                    }
                    return bypass(Request::from_parts(parts, body), Fwd::Bypass, "store-error");
                }
            };
            let asked = Asked {
                only_if_cached: head.cache_control.only_if_cached,
                ranged: ranged.is_some(),
                for_user: for_user.is_some(),
            };
            let rules = Rules {
                refresh_ahead: self.shared.config.refresh_ahead,
            };
            let decision = decide(
                Judged::of(found.entry.as_ref().map(|(_, b)| b)),
                asked,
                rules,
            );
            // The entry moves only here, once the decision is made. `decide` gives a hit only
            // for a fresh entry and a revalidation only for a stale one (its tests hold every
            // combination to that); any other pairing would be a miss.
            let revalidation = match (decision, found.entry) {
                (Decision::Hit, Some((entry, BeforeRequest::Fresh { headers, ttl, .. }))) => {
                    let status = self.hit_status(&entry, ttl, collapsed, ignored_no_cache);
                    let response =
                        self.answer_fresh(&entry, headers, &head, ranged.as_ref(), &status);
                    if seen
                        .index()
                        .is_some_and(|i| i.worth_touching(entry.selector))
                    {
                        keyspace.touch(&place, &seen, entry.selector).await;
                    }
                    return Lookup::Hit(response);
                }
                (
                    Decision::HitAndRefresh,
                    Some((entry, BeforeRequest::Fresh { headers, ttl, .. })),
                ) => {
                    let status = self.hit_status(&entry, ttl, collapsed, ignored_no_cache);
                    let response =
                        self.answer_fresh(&entry, headers, &head, ranged.as_ref(), &status);
                    let job = Job {
                        place,
                        seen,
                        for_user,
                        parts,
                        body,
                        fwd: Fwd::Stale,
                    };
                    return self.serve_and_refresh(response, entry, job);
                }
                (Decision::ServeStale, Some((entry, BeforeRequest::Stale { reason, .. }))) => {
                    let status = CacheStatus {
                        detail: Some("stale-while-revalidate"),
                        ..CacheStatus::hit()
                    };
                    let response = self.respond_stale(&entry, &head, now, &status);
                    let job = Job {
                        place,
                        seen,
                        for_user,
                        parts,
                        body,
                        fwd: fwd_for(reason),
                    };
                    return self.serve_and_refresh(response, entry, job);
                }
                (Decision::GatewayTimeout, _) => return Lookup::Hit(self.only_if_cached()),
                (Decision::Pass, _) => {
                    // Nothing fresh to take the range from: the request goes on as it came.
                    parts.headers.extend(ranged.unwrap_or_default());
                    return bypass(Request::from_parts(parts, body), Fwd::Bypass, "range");
                }
                (
                    Decision::Revalidate,
                    Some((
                        entry,
                        BeforeRequest::Stale {
                            reason,
                            revalidation_headers,
                            stale_if_error_until,
                            ..
                        },
                    )),
                ) => {
                    let grace = self.shared.config.unreachable_grace;
                    let unreachable_until = entry
                        .policy
                        .stale_if_unreachable_until(&parts, &head, grace);
                    Some(Revalidation {
                        entry,
                        validators: revalidation_headers,
                        stale_if_error_until,
                        unreachable_until,
                        fwd: fwd_for(reason),
                    })
                }
                _ => None,
            };
            let (miss, coalesce_key) = (found.miss, found.coalesce_key);
            // A revalidation is coalesced on its entry, a miss on what it will fill. A miss
            // that carries the client's validators waits for a fill already running (whose
            // entry then answers it) but never leads one: its answer may be the client's 304,
            // which fills nothing for the others.
            let conditional_miss = revalidation.is_none() && !client_validators.is_empty();
            let coalesce_key = match &revalidation {
                Some(revalidation) => revalidation.entry.key.clone(),
                None => coalesce_key.unwrap_or_else(|| place.coalesce_key()),
            };
            let join = if conditional_miss {
                self.shared
                    .coalescer
                    .follow(coalesce_key.as_str())
                    .map_or(Join::Alone, Join::Follower)
            } else {
                self.shared.coalescer.join(coalesce_key.as_str())
            };
            let guard = match join {
                Join::Leader(guard) => Some(guard),
                Join::Alone => None,
                Join::Follower(waiter) if !collapsed => {
                    collapsed = true;
                    if let Waited::Tap(tap) = self.wait(waiter).await {
                        // The body streams into the store: read it from there as it comes.
                        let following = ranged
                            .is_none()
                            .then(|| self.respond_following(&tap, &parts, &head))
                            .flatten();
                        if let Some(response) = following {
                            return Lookup::Hit(response);
                        }
                    }
                    // Look again, from the request's own place: the first request has
                    // (probably) stored its response.
                    request_place = for_user.map_or(place, |(own, _)| own);
                    continue;
                }
                // Still nothing after waiting once: go on alone.
                Join::Follower(_) => None,
            };
            let held = Held {
                guard,
                ..Held::default()
            };
            let job = Job {
                place,
                seen,
                for_user,
                parts,
                body,
                fwd: miss,
            };
            let client_validators = conditional_miss.then_some(&client_validators);
            return self.forward(job, held, revalidation, client_validators, &head, now);
        }
    }

    /// The `Cache-Status` of a fresh hit: which override let it happen (a longer life: a
    /// default or a minimum; a maximum shortens, and is said when the entry is stored), else
    /// which tier answered.
    fn hit_status(
        &self,
        entry: &StoredEntry,
        ttl: Duration,
        collapsed: bool,
        ignored_no_cache: bool,
    ) -> CacheStatus {
        let lengthened = entry
            .policy
            .lifetime_override()
            .filter(|o| *o != "override-max-ttl");
        let detail = if ignored_no_cache {
            Some("override-ignore-no-cache")
        } else {
            lengthened.or(entry.tier)
        };
        CacheStatus {
            collapsed,
            ttl: Some(ttl.as_secs() as i64),
            detail,
            ..CacheStatus::hit()
        }
    }

    /// The answer of a fresh hit: the stored response, or the range asked for.
    fn answer_fresh(
        &self,
        entry: &StoredEntry,
        headers: HeaderMap,
        head: &RequestHead,
        ranged: Option<&HeaderMap>,
        status: &CacheStatus,
    ) -> Response<HitBody> {
        match ranged {
            Some(fields) => self.respond_range(entry, headers, head, fields, status),
            None => self.respond(&entry.policy, headers, &entry.body, head, status),
        }
    }

    /// A miss (`revalidation` is `None`) or a revalidation, sent on to the inner service;
    /// a revalidation within `stale-if-error` carries the stale answer for an error. A miss
    /// carries `client_validators` when the client sent any (RFC 9111 §4.3.2: with nothing
    /// stored, the client's own conditional may go on, so that an origin's 304 reaches it
    /// without a body).
    fn forward<ReqBody>(
        &self,
        job: Job<ReqBody>,
        held: Held,
        revalidation: Option<Revalidation>,
        client_validators: Option<&HeaderMap>,
        head: &RequestHead,
        now: SystemTime,
    ) -> LookupResult<ReqBody> {
        let Some(Revalidation {
            entry,
            validators,
            stale_if_error_until,
            unreachable_until,
            fwd,
        }) = revalidation
        else {
            let (request, key) = self.fill(job, held, None, client_validators);
            return Lookup::Miss { request, key };
        };
        // The inner service failing is the origin being unreachable: either permission
        // covers it, the longer one decides.
        let on_error_until = stale_if_error_until.max(unreachable_until);
        let on_error = on_error_until.map(|until| {
            let detail = if stale_if_error_until == Some(until) {
                "stale-if-error"
            } else {
                "stale-if-unreachable"
            };
            let status = CacheStatus {
                fwd: Some(fwd),
                detail: Some(detail),
                ..CacheStatus::default()
            };
            (self.respond_stale(&entry, head, now, &status), until)
        });
        let stale = Stale {
            entry,
            stale_if_error_until,
            unreachable_until,
            sent: validators,
        };
        let job = Job { fwd, ..job };
        let (request, key) = self.fill(job, held, Some(stale), None);
        match on_error {
            Some((on_error, on_error_until)) => Lookup::Revalidate {
                request,
                key,
                on_error,
                on_error_until,
            },
            None => Lookup::Miss { request, key },
        }
    }

    /// Reads what `place` holds for the request.
    async fn look_up_at(
        &self,
        keyspace: &Keyspace<'_, St>,
        place: Place,
        parts: &request::Parts,
        head: &RequestHead,
        now: SystemTime,
    ) -> Result<Looked, StoreError> {
        if self.shared.read_ahead.is_some() && !keyspace.private {
            // Boxed: only caches over remote stores pay for the larger future.
            return Box::pin(self.look_up_ahead(keyspace, place, parts, head, now)).await;
        }
        let seen = keyspace.read(&place).await?;
        let found = self.find(&place, &seen, parts, head, now, None).await;
        Ok(Looked {
            place,
            seen,
            found,
            for_user: None,
        })
    }

    /// [`look_up_at`](Self::look_up_at) over a store with remote reads: the URL's record,
    /// and at once the entry the last lookup of the URL found, so a hit waits for one round
    /// trip.
    async fn look_up_ahead(
        &self,
        keyspace: &Keyspace<'_, St>,
        place: Place,
        parts: &request::Parts,
        head: &RequestHead,
        now: SystemTime,
    ) -> Result<Looked, StoreError> {
        let (seen, ahead) = match self.expected(&place) {
            Some(expected) => {
                let selector = Selector::of(&expected.names, &parts.headers);
                let key = place.variant_key(expected.epoch, selector);
                let (seen, ahead) = keyspace.read_and_get(&place, &key).await;
                let ahead = self.read_entry(&place, key, selector, Some(ahead)).await;
                (seen?, Some(Box::new(ahead)))
            }
            None => (keyspace.read(&place).await?, None),
        };
        let found = self.find(&place, &seen, parts, head, now, ahead).await;
        self.remember(&place, &seen);
        Ok(Looked {
            place,
            seen,
            found,
            for_user: None,
        })
    }

    /// What the last lookup of `place`'s URL found (a shared place over a store with remote
    /// reads: private ones have more records to read first).
    fn expected(&self, place: &Place) -> Option<Expected> {
        lock(self.shared.read_ahead.as_ref()?)
            .get(&place.url)
            .cloned()
    }

    /// Remembers what this lookup of `place` found, for the next one to read ahead.
    fn remember(&self, place: &Place, seen: &Seen) {
        let Some(read_ahead) = &self.shared.read_ahead else {
            return;
        };
        let mut read_ahead = lock(read_ahead);
        let current = seen.index().zip(seen.epoch());
        match current.and_then(|(index, epoch)| Some((epoch, index.vary_sets().first()?))) {
            Some((epoch, names)) => {
                let unchanged = read_ahead
                    .peek(&place.url)
                    .is_some_and(|e| e.epoch == epoch && *e.names == **names);
                if !unchanged {
                    let names = names.clone().into();
                    read_ahead.put(place.url.clone(), Expected { epoch, names });
                }
            }
            _ => {
                read_ahead.pop(&place.url);
            }
        }
    }

    /// Per-user mode: [`look_up_at`](Self::look_up_at), and a user's request that finds
    /// nothing of its own is looked up at the shared place, keeping its own place for a
    /// response only it may have; its misses wait only on that user's requests (what they
    /// fill may be the user's alone).
    async fn look_up(
        &self,
        keyspace: &Keyspace<'_, St>,
        place: Place,
        parts: &request::Parts,
        head: &RequestHead,
        now: SystemTime,
    ) -> Result<Looked, StoreError> {
        let own = self.look_up_at(keyspace, place, parts, head, now).await?;
        if own.place.user.is_none() || own.found.entry.is_some() {
            return Ok(own);
        }
        self.look_up_shared(keyspace, own, parts, head, now).await
    }

    /// [`look_up`](Self::look_up) of a user's request with nothing of its own: the shared
    /// place, with the user's own kept for the fill.
    async fn look_up_shared(
        &self,
        keyspace: &Keyspace<'_, St>,
        own: Looked,
        parts: &request::Parts,
        head: &RequestHead,
        now: SystemTime,
    ) -> Result<Looked, StoreError> {
        let Looked {
            place, seen, found, ..
        } = own;
        let shared = place.shared();
        let shared_seen = keyspace.read_shared(&shared, &seen).await?;
        let mut shared_found = self
            .find(&shared, &shared_seen, parts, head, now, None)
            .await;
        if matches!(shared_found.entry, Some((_, BeforeRequest::Stale { .. }))) {
            // A user's request does not revalidate a shared entry for everyone: its answer
            // (or a 304 to it) is the user's, and is filed as a miss's.
            shared_found.entry = None;
            shared_found.miss = Fwd::Stale;
        }
        shared_found.coalesce_key =
            Some(found.coalesce_key.unwrap_or_else(|| place.coalesce_key()));
        Ok(Looked {
            place: shared,
            seen: shared_seen,
            found: shared_found,
            for_user: Some((place, seen)),
        })
    }

    /// Waits for a coalesced fill (bounded by the coalesce timeout).
    async fn wait(&self, waiter: Waiter) -> Waited {
        let waited = waiter.wait(self.shared.config.coalesce_timeout).await;
        if matches!(waited, Waited::TimedOut) {
            tracing::debug!("a coalesced fill took too long; going on alone");
        }
        waited
    }

    /// The entry of `place` selected for the request: of the variants listed under the URL's
    /// `Vary` sets that the policy does not reject (RFC 9111 §4.1), the most recent by `Date`
    /// (§4); equal dates go by storage order, most recently stored first. A URL has at most
    /// a few sets (`keyspace::MAX_VARY_SETS`), and most have one. An entry read `ahead` is
    /// used where its key is one the index says to read (it is read otherwise).
    async fn find(
        &self,
        place: &Place,
        seen: &Seen,
        parts: &request::Parts,
        head: &RequestHead,
        now: SystemTime,
        mut ahead: Option<Box<ReadAhead>>,
    ) -> Found {
        let (Some(index), Some(epoch)) = (seen.index(), seen.epoch()) else {
            return Found {
                entry: None,
                miss: Fwd::UriMiss,
                coalesce_key: None,
            };
        };
        let mut first_key = None;
        let mut tried = Vec::with_capacity(index.vary_sets().len());
        let mut stored_variant = false;
        let mut best: Option<(StoredEntry, BeforeRequest)> = None;
        for names in index.vary_sets() {
            let selector = Selector::of(names, &parts.headers);
            let key = place.variant_key(epoch, selector);
            if !index.lists(selector) {
                first_key.get_or_insert(key);
                continue;
            }
            tried.push(selector);
            let read = match ahead.take() {
                Some(read) if read_key(&read) == &key => *read,
                other => {
                    ahead = other;
                    self.read_entry(place, key, selector, None).await
                }
            };
            match read {
                Ok(entry) => {
                    let decision = entry.policy.before_request(parts, head, now);
                    if decision != BeforeRequest::VaryMismatch {
                        let newer = best
                            .as_ref()
                            .is_none_or(|(b, _)| entry.policy.more_recent_than(&b.policy));
                        if newer {
                            best = Some((entry, decision));
                        }
                        continue;
                    }
                    stored_variant = true;
                    first_key.get_or_insert(entry.key);
                }
                Err(key) => {
                    first_key.get_or_insert(key);
                }
            }
        }
        if let Some(found) = best {
            return Found {
                entry: Some(found),
                miss: Fwd::VaryMiss,
                coalesce_key: None,
            };
        }
        // RFC 9211 §2.2: `vary-miss` says a response for the URI is stored, just not one for
        // this request. The index lists what fills claimed, so look one up before saying it.
        if !stored_variant {
            let other = index.variants().iter().find(|s| !tried.contains(s));
            if let Some(&selector) = other {
                let key = place.variant_key(epoch, selector);
                stored_variant = matches!(self.shared.store.get(&key).await, Ok(Some(_)));
            }
        }
        Found {
            entry: None,
            miss: if stored_variant {
                Fwd::VaryMiss
            } else {
                Fwd::UriMiss
            },
            coalesce_key: first_key,
        }
    }

    /// Answers with `response` now and revalidates `entry` in the background
    /// (stale-while-revalidate, refresh-ahead): unless a revalidation of it is running, or
    /// the background pool is full (then the entry is served as it is; the next request
    /// tries again).
    fn serve_and_refresh<ReqBody>(
        &self,
        response: Response<HitBody>,
        entry: StoredEntry,
        job: Job<ReqBody>,
    ) -> LookupResult<ReqBody> {
        let guard = match self.shared.coalescer.join(entry.key.as_str()) {
            Join::Leader(guard) => Some(guard),
            Join::Alone => None,
            Join::Follower(_) => return Lookup::Hit(response),
        };
        let Ok(permit) = Arc::clone(&self.shared.background).try_acquire_owned() else {
            tracing::debug!("background pool full: serving stale without a refresh");
            return Lookup::Hit(response);
        };
        // The refresh's answer goes to nobody: it carries the entry's own validators, not
        // the client's, so a `304` without validators is still about this entry.
        let validators = entry.policy.own_validators();
        let held = Held {
            guard,
            permit: Some(permit),
            tap: None,
        };
        let stale = Stale {
            entry,
            stale_if_error_until: None,
            unreachable_until: None,
            sent: validators,
        };
        let (request, key) = self.fill(job, held, Some(stale), None);
        Lookup::Refresh {
            response,
            request,
            key,
            timeout: self.shared.config.background_timeout,
        }
    }

    /// The request for the inner service and the key of the fill that files its response.
    fn fill<ReqBody>(
        &self,
        job: Job<ReqBody>,
        held: Held,
        stale: Option<Stale>,
        client_validators: Option<&HeaderMap>,
    ) -> (Request<ReqBody>, ResponseCacheKey) {
        let Job {
            place,
            seen,
            for_user,
            parts,
            body,
            fwd,
        } = job;
        let mut request = copy_head(&parts);
        // The inner service is asked for the GET representation (see `forwarded`), and that
        // is what gets stored.
        request.method = Method::GET;
        let filling = FillingUrl::new(&self.shared.filling, place.url.clone());
        // A revalidation sends the stale entry's validators; a miss, the client's, if any.
        let validators = stale.as_ref().map(|s| &s.sent).or(client_validators);
        let outgoing = forwarded(parts, body, validators);
        let fill = Fill {
            place,
            seen,
            for_user,
            users_own: false,
            request,
            request_time: self.now(),
            fwd,
            held,
            client_conditional: stale.is_none() && client_validators.is_some(),
            stale,
            _filling: filling,
        };
        (outgoing, ResponseCacheKey(KeyKind::Fill(Box::new(fill))))
    }

    /// The entry under `key` of `place` (`got`, when the lookup read it already), or the
    /// key back when there is none (or none this version can read, or one not filed by
    /// the rules of the place's shelf: such a record is taken out of the way).
    pub(crate) async fn read_entry(
        &self,
        place: &Place,
        key: Key,
        selector: Selector,
        got: Option<GetResult>,
    ) -> Result<StoredEntry, Key> {
        let got = match got {
            Some(got) => got,
            None => self.shared.store.get(&key).await,
        };
        let stored = match got {
            Ok(Some(stored)) => stored,
            Ok(None) => return Err(key),
            Err(e) => {
                tracing::warn!(error = %e, "cache store failed; serving without it");
                return Err(key);
            }
        };
        let policy = self.shared.heads.policy_of(&stored.meta).filter(|policy| {
            self.shared
                .config
                .filing
                .answers_from(place.shelf(), policy)
        });
        let Some(policy) = policy else {
            // Written by another version, or damaged, or filed by other rules (a user's
            // answer an older version put in the shared entries, an entry of a cache of
            // another mode over the same store): as good as absent, and out of the way of
            // the entry that replaces it.
            let _ = self
                .shared
                .store
                .remove(&key, Expect::Version(stored.version))
                .await;
            return Err(key);
        };
        Ok(StoredEntry {
            key,
            version: stored.version,
            selector,
            policy,
            body: stored.body,
            tier: stored.tier,
        })
    }

    /// RFC 9111 §5.2.1.7: `only-if-cached` and nothing suitable is stored.
    fn only_if_cached(&self) -> Response<HitBody> {
        self.gateway_timeout(&CacheStatus {
            detail: Some("only-if-cached"),
            ..CacheStatus::fwd(Fwd::UriMiss)
        })
    }
}

/// Why a request with a stale entry goes to the origin, for `Cache-Status`: the client
/// asked for it (`no-cache`, `max-age`, ...), or the entry is stale.
fn fwd_for(reason: StaleReason) -> Fwd {
    if reason.requested_by_client() {
        Fwd::Request
    } else {
        Fwd::Stale
    }
}

/// A stored entry to revalidate, and how.
struct Revalidation {
    entry: StoredEntry,
    /// The conditional fields to send.
    validators: HeaderMap,
    stale_if_error_until: Option<SystemTime>,
    unreachable_until: Option<SystemTime>,
    fwd: Fwd,
}

/// A request on its way to the inner service, with where its response is filed.
struct Job<ReqBody> {
    place: Place,
    seen: Seen,
    for_user: Option<(Place, Seen)>,
    parts: request::Parts,
    body: ReqBody,
    fwd: Fwd,
}
