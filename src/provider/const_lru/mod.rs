//! [`ConstLruProvider`]: ETags in a bounded LRU shared by every clone.

mod key;

pub use key::SimpleEtagCacheKey;

use self::key::{Digester, KeyView, KEY_FIELDS};
use super::{fill_request, CacheProvider, Lookup, LookupRequest, RequestHead, StoreRequest};
use crate::clock::Clock;
use crate::semantics::request::{absolute_target, uri_authority};
use crate::sync::lock;
use crate::{
    body::{BufferedBody, NoBody, ReadAhead, ReadAheadFuture},
    policy::freshness::{age_header, explicit_lifetime},
    policy::invalidated_uris,
    semantics::cache_control::CacheControl,
    semantics::conditional::{Outcome, Validators},
    semantics::dates::single_date,
    semantics::etag::EntityTag,
    semantics::headers::{
        bodiless_hint, copy_with_room, seconds_value, vary_names, without_freshness_if_412,
    },
};
use http::{
    header::{
        AGE, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LOCATION, CONTENT_TYPE, ETAG, EXPIRES,
        LAST_MODIFIED, SET_COOKIE, VARY,
    },
    response::Parts,
    HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode,
};
use http_body::Body;
use lru::LruCache;
use std::{
    collections::HashMap,
    convert::Infallible,
    fmt,
    future::{ready, Future, Ready},
    num::NonZeroUsize,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};
use tower_service::Service;

/// The default limit on the bytes read ahead to hash a body: 8 MiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 8 * 1024 * 1024;

/// The default limit on the time a body is read ahead before the response head goes out:
/// 500 ms.
pub const DEFAULT_READ_AHEAD_TIMEOUT: Duration = Duration::from_millis(500);

/// What the provider keeps of a response: its validators, the fields a 304 repeats, and when
/// (if ever) it may answer a 304 without asking the inner service.
#[derive(Debug)]
struct Entry {
    etag: EntityTag,
    last_modified: Option<SystemTime>,
    /// ETag, Cache-Control, Expires, Content-Location, Vary and Last-Modified as sent.
    not_modified_headers: HeaderMap,
    stored_at: Instant,
    /// The response's `Age` when it was stored.
    initial_age: Duration,
    /// Until when a 304 may be answered from this entry alone; `None`: never.
    fresh_until: Option<Instant>,
    /// `public`, `s-maxage` or `must-revalidate`: may answer requests with `Authorization`.
    shareable_with_authorization: bool,
}

/// Fields a 304 made from an entry repeats (RFC 9110 §15.4.5).
const NOT_MODIFIED_FIELDS: [HeaderName; 6] = [
    ETAG,
    CACHE_CONTROL,
    EXPIRES,
    CONTENT_LOCATION,
    VARY,
    LAST_MODIFIED,
];

impl Entry {
    /// The entry for a response with this head and entity tag, or `None` where none may be
    /// kept (`no-store`).
    fn new(
        headers: &HeaderMap,
        etag: EntityTag,
        etag_value: HeaderValue,
        head: &RequestHead,
        ttl: Option<Duration>,
        clock: &Clock,
    ) -> Option<Self> {
        let cc = CacheControl::from_headers(headers);
        if cc.no_store {
            return None;
        }
        let (now, received) = (clock.instant(), clock.now());
        let shareable_with_authorization = cc.public || cc.s_maxage.is_some() || cc.must_revalidate;
        let initial_age = age_header(headers).unwrap_or_default();
        let fresh_until = may_answer_alone(&cc, headers, head, shareable_with_authorization)
            .then(|| explicit_lifetime(&cc, headers, true, received).or(ttl))
            .flatten()
            .and_then(|lifetime| lifetime.checked_sub(initial_age))
            .and_then(|remaining| now.checked_add(remaining));
        let mut not_modified_headers = HeaderMap::with_capacity(NOT_MODIFIED_FIELDS.len());
        for (name, value) in headers {
            if NOT_MODIFIED_FIELDS.contains(name) && name != ETAG {
                not_modified_headers.append(name.clone(), value.clone());
            }
        }
        not_modified_headers.insert(ETAG, etag_value);
        Some(Self {
            etag,
            last_modified: single_date(headers, LAST_MODIFIED),
            not_modified_headers,
            stored_at: now,
            initial_age,
            fresh_until,
            shareable_with_authorization,
        })
    }

    fn validators(&self) -> Validators<'_> {
        Validators {
            etag: Some(&self.etag),
            last_modified: self.last_modified,
        }
    }

    fn age(&self, now: Instant) -> Duration {
        self.initial_age + now.saturating_duration_since(self.stored_at)
    }
}

/// Whether a response may ever be the basis of a 304 sent without asking the inner service:
/// never for `no-cache` (even qualified), `private`, `Set-Cookie`, a `Vary` on fields outside
/// the key (the entry would stand for other users' variants), or a response to a request with
/// `Authorization` that did not allow sharing (RFC 9111 §3.5).
fn may_answer_alone(
    cc: &CacheControl,
    headers: &HeaderMap,
    head: &RequestHead,
    shareable: bool,
) -> bool {
    !cc.no_cache.is_present()
        && !cc.private.is_present()
        && !headers.contains_key(SET_COOKIE)
        && vary_names(headers).all(|n| KEY_FIELDS.iter().any(|k| k.as_str() == n))
        && (!head.authorization || shareable)
}

struct Config {
    max_body_size: u64,
    read_ahead_timeout: Duration,
    ttl: Option<Duration>,
    clock: Clock,
}

/// Entries by the digest of their key; each keeps its full key, checked on every hit.
type Lru = LruCache<u64, (SimpleEtagCacheKey, Entry), foldhash::fast::FixedState>;

/// The LRU and, beside it, which entries stand for which target (host, path and query), so
/// that invalidating a target touches its own entries only (never a scan of the capacity).
struct Table {
    /// Grows with its entries (never allocated for `capacity` up front: a capacity read from
    /// configuration may be far larger than what is ever stored).
    lru: Lru,
    capacity: usize,
    /// Target digest → the key digests of its entries. Holds exactly the entries in `lru`.
    targets: HashMap<u64, Vec<u64>>,
}

impl Table {
    fn insert(&mut self, digester: &Digester, digest: u64, key: SimpleEtagCacheKey, entry: Entry) {
        let target = digester.target(&key);
        if self.lru.len() >= self.capacity && !self.lru.contains(&digest) {
            // The least recently used entry makes room.
            if let Some((evicted, (evicted_key, _))) = self.lru.pop_lru() {
                self.unindex(digester.target(&evicted_key), evicted);
            }
        }
        // The same digest: the same key (whose target is indexed already), or another key
        // with that digest, whose target index must follow.
        if let Some((_, (old_key, _))) = self.lru.push(digest, (key, entry)) {
            let old_target = digester.target(&old_key);
            if old_target == target {
                return;
            }
            self.unindex(old_target, digest);
        }
        self.targets.entry(target).or_default().push(digest);
    }

    fn remove(&mut self, digester: &Digester, digest: u64) -> bool {
        match self.lru.pop(&digest) {
            Some((key, _)) => {
                self.unindex(digester.target(&key), digest);
                true
            }
            None => false,
        }
    }

    fn unindex(&mut self, target: u64, digest: u64) {
        if let Some(keys) = self.targets.get_mut(&target) {
            keys.retain(|d| *d != digest);
            if keys.is_empty() {
                self.targets.remove(&target);
            }
        }
    }

    /// Removes every entry of a target; returns how many there were.
    fn remove_target(&mut self, target: u64, host: &str, path_and_query: &str) -> usize {
        let Some(digests) = self.targets.remove(&target) else {
            return 0;
        };
        let mut removed = 0;
        for digest in digests {
            // A digest collision of two targets must not remove the other's entries.
            let belongs = self.lru.peek(&digest).is_some_and(|(key, _)| {
                key.host.eq_ignore_ascii_case(host) && key.path_and_query == path_and_query
            });
            if belongs {
                self.lru.pop(&digest);
                removed += 1;
            } else if self.lru.contains(&digest) {
                self.targets.entry(target).or_default().push(digest);
            }
        }
        removed
    }

    fn clear(&mut self) {
        self.lru.clear();
        self.targets.clear();
    }
}

struct Shared {
    table: Mutex<Table>,
    digester: Digester,
    config: Config,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        // The table is left consistent by every operation, so a panic elsewhere while the
        // lock was held does not make it unusable.
        lock(&self.table)
    }
}

/// An ETag cache in a bounded LRU, shared by all clones: no background task, one short lock
/// per lookup and per store (never held across an await).
///
/// - Entity tags are strong: the quoted, unpadded URL-safe base64 of the body's blake3 hash.
///   A response that already carries a valid `ETag` keeps it and is not hashed.
/// - Keys are [`SimpleEtagCacheKey`]s.
/// - A request whose preconditions match a **fresh** entry gets its 304 (or 412) without the
///   inner service being called. Fresh means: within the response's own freshness lifetime
///   (`s-maxage`, `max-age`, `Expires`), or else within the TTL set with
///   [`ConstLruProviderBuilder::ttl`]; never for `no-cache`, `no-store`, `private` or
///   `Set-Cookie` responses, never for requests with `Authorization` unless the response
///   said `public`, `s-maxage` or `must-revalidate`, and never when the request asks for
///   revalidation (`Cache-Control: no-cache`, `max-age` below the entry's age).
/// - Otherwise the inner service runs, the body is hashed (up to
///   [`ConstLruProviderBuilder::max_body_size`]; a larger body streams through untagged) and a
///   matching `If-None-Match` still gets its 304.
/// - A HEAD that cannot be answered from a fresh entry is sent to the inner service as a
///   GET, so that it carries the GET representation's tag; its body is dropped.
///
/// `CAP` is the number of entries, unless [`ConstLruProviderBuilder::capacity`] chose another
/// at run time (from configuration). Entries live on the heap, so a large capacity never
/// touches the stack (tower-etag-cache 0.1 built its table on the stack first, which
/// overflowed it in debug builds).
///
/// ```
/// use tower_etag::{EtagCacheLayer, ConstLruProvider};
/// use std::{num::NonZeroUsize, time::Duration};
///
/// let provider = ConstLruProvider::<1024>::builder().ttl(Duration::from_secs(5)).build();
/// // A capacity read from configuration:
/// let entries = NonZeroUsize::new(200_000).unwrap();
/// let sized = ConstLruProvider::<1024>::builder().capacity(entries).build();
/// assert_eq!(sized.capacity(), 200_000);
/// let layer = EtagCacheLayer::with_default_predicate(provider.clone());
/// # let _ = layer;
/// provider.clear();
/// ```
pub struct ConstLruProvider<const CAP: usize> {
    shared: Arc<Shared>,
}

impl<const CAP: usize> Clone for ConstLruProvider<CAP> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<const CAP: usize> fmt::Debug for ConstLruProvider<CAP> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConstLruProvider")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("max_body_size", &self.shared.config.max_body_size)
            .field("ttl", &self.shared.config.ttl)
            .field("clock", &self.shared.config.clock)
            .finish()
    }
}

/// Builds a [`ConstLruProvider`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ConstLruProviderBuilder<const CAP: usize> {
    capacity: usize,
    max_body_size: u64,
    read_ahead_timeout: Duration,
    ttl: Option<Duration>,
    clock: Clock,
}

impl<const CAP: usize> ConstLruProviderBuilder<CAP> {
    /// How many entries the provider keeps (default: `CAP`); the least recently used one
    /// makes room for a new one. Memory grows with the entries stored, not with this bound.
    pub fn capacity(mut self, entries: NonZeroUsize) -> Self {
        self.capacity = entries.get();
        self
    }

    /// The most bytes read ahead to hash a body (default [`DEFAULT_MAX_BODY_SIZE`]). A body
    /// that is, or turns out to be, larger streams through without an ETag.
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// The longest time a body is read ahead to hash it (default
    /// [`DEFAULT_READ_AHEAD_TIMEOUT`]): a body that has not ended by then goes out as it
    /// streams, untagged, so a slow or never-ending body never holds its head back. Timed
    /// by tokio's timer (a runtime without one, `Builder::enable_time` not called, panics
    /// at the first body that makes the read wait).
    pub fn read_ahead_timeout(mut self, timeout: Duration) -> Self {
        self.read_ahead_timeout = timeout;
        self
    }

    /// How long a response without freshness information of its own counts as fresh, so
    /// that matching requests get a 304 without calling the inner service. Off by default.
    /// A response's own `max-age`, `s-maxage` or `Expires` takes precedence.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Where the provider reads the time (default [`Clock::system`]): when an entry was
    /// stored, its `Age`, and until when it answers a 304 alone. A
    /// [`ManualClock`](crate::clock::ManualClock) lets tests move past a freshness
    /// lifetime without sleeping. The read-ahead timeout stays on tokio's timer.
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// The provider.
    pub fn build(self) -> ConstLruProvider<CAP> {
        ConstLruProvider {
            shared: Arc::new(Shared {
                table: Mutex::new(Table {
                    lru: LruCache::unbounded_with_hasher(foldhash::fast::FixedState::default()),
                    capacity: self.capacity.max(1),
                    targets: HashMap::new(),
                }),
                digester: Digester::default(),
                config: Config {
                    max_body_size: self.max_body_size,
                    read_ahead_timeout: self.read_ahead_timeout,
                    ttl: self.ttl,
                    clock: self.clock,
                },
            }),
        }
    }
}

impl<const CAP: usize> ConstLruProvider<CAP> {
    /// A provider with the default settings.
    pub fn init() -> Self {
        Self::builder().build()
    }

    /// A builder for a provider with other settings.
    pub fn builder() -> ConstLruProviderBuilder<CAP> {
        const { assert!(CAP > 0, "a ConstLruProvider needs room for one entry") };
        ConstLruProviderBuilder {
            capacity: CAP,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            read_ahead_timeout: DEFAULT_READ_AHEAD_TIMEOUT,
            ttl: None,
            clock: Clock::system(),
        }
    }

    /// Forgets the entry of `key`; returns whether there was one.
    pub fn invalidate(&self, key: &SimpleEtagCacheKey) -> bool {
        let digest = self.shared.digester.digest(&key.view());
        self.shared.table().remove(&self.shared.digester, digest)
    }

    /// Forgets every entry (all representations) of a target. `host` as in
    /// [`SimpleEtagCacheKey::host`] (lower-cased, without the default port); returns how
    /// many entries went. Touches that target's entries only.
    pub fn invalidate_target(&self, host: &str, path_and_query: &str) -> usize {
        let host = host.to_ascii_lowercase();
        let target = self
            .shared
            .digester
            .target_of(host.as_bytes(), path_and_query);
        self.shared
            .table()
            .remove_target(target, &host, path_and_query)
    }

    /// Forgets every entry.
    pub fn clear(&self) {
        self.shared.table().clear();
    }

    /// How many entries the cache holds.
    pub fn len(&self) -> usize {
        self.shared.table().lru.len()
    }

    /// How many entries the cache can hold.
    pub fn capacity(&self) -> usize {
        self.shared.table().capacity
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entity tag stored for `key`, if any.
    pub fn etag(&self, key: &SimpleEtagCacheKey) -> Option<EntityTag> {
        let digest = self.shared.digester.digest(&key.view());
        let table = self.shared.table();
        let (stored_key, entry) = table.lru.peek(&digest)?;
        (stored_key == key).then(|| entry.etag.clone())
    }
}

/// Whether the request itself asks that nothing be answered without the origin
/// (RFC 9111 §5.2.1): `no-cache` (or `Pragma: no-cache`), or a `max-age` below the entry's age.
fn request_wants_revalidation(cc: &CacheControl, age: Duration) -> bool {
    cc.no_cache.is_present() || cc.max_age.is_some_and(|max| age > max)
}

fn bodiless(mut headers: HeaderMap, status: StatusCode) -> Response<NoBody> {
    // The entry keeps no content fields: only a 412 has something to lose.
    without_freshness_if_412(&mut headers, status);
    let mut res = Response::new(NoBody::with_hint(bodiless_hint(status)));
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res
}

impl<const CAP: usize, ReqBody> Service<LookupRequest<ReqBody>> for ConstLruProvider<CAP> {
    type Response = Lookup<ReqBody, SimpleEtagCacheKey, NoBody>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, lookup: LookupRequest<ReqBody>) -> Self::Future {
        let LookupRequest { head, mut request } = lookup;
        if !head.method.is_safe() {
            // Only to invalidate after the response (RFC 9111 §4.4), in the store service.
            let key = SimpleEtagCacheKey::of(&KeyView::of_request(&head, &request));
            return ready(Ok(Lookup::Miss { request, key }));
        }
        if head.cache_control.no_store || head.content || head.range {
            // RFC 9111 §5.2.1.5: nothing of a no-store exchange is stored. A GET with a body
            // might be answered from that body, and a range is not the representation.
            return ready(Ok(Lookup::Pass(request)));
        }
        if let Some(hit) = self.answer_from_entry(&head, &request) {
            return ready(Ok(Lookup::Hit(hit)));
        }
        let key = SimpleEtagCacheKey::of(&KeyView::of_request(&head, &request));
        // Fetch the GET representation so a HEAD answer carries its tag.
        fill_request(&mut request);
        ready(Ok(Lookup::Miss { request, key }))
    }
}

impl<const CAP: usize> ConstLruProvider<CAP> {
    /// A 304 or 412 from a fresh entry, where one may be sent without the inner service.
    fn answer_from_entry<ReqBody>(
        &self,
        head: &RequestHead,
        request: &Request<ReqBody>,
    ) -> Option<Response<NoBody>> {
        if head.preconditions.is_empty() {
            return None;
        }
        // No allocation up to here: the key is a view of the request, the map's key a
        // digest of it, and the entry's own full key is compared before it is used.
        let view = KeyView::of_request(head, request);
        let digest = self.shared.digester.digest(&view);
        let now = self.shared.config.clock.instant();
        let mut table = self.shared.table();
        let (key, entry) = table.lru.get(&digest)?;
        let fresh = entry.fresh_until.is_some_and(|until| now < until);
        if !fresh
            || !key.view().same_as(&view)
            || (head.authorization && !entry.shareable_with_authorization)
            || request_wants_revalidation(&head.cache_control, entry.age(now))
        {
            return None;
        }
        let status = match head.preconditions.evaluate(entry.validators()) {
            Outcome::Proceed => return None,
            Outcome::NotModified => StatusCode::NOT_MODIFIED,
            Outcome::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        };
        let mut headers = copy_with_room(&entry.not_modified_headers, &AGE, 1);
        // RFC 9111 §5.1: a response served from a cache carries its Age.
        headers.insert(AGE, seconds_value(entry.age(now).as_secs()));
        Some(bodiless(headers, status))
    }

    /// RFC 9111 §4.4: a non-error response to an unsafe method invalidates the entries of its
    /// target and of a same-origin `Location` / `Content-Location`.
    fn invalidate_after<B>(
        &self,
        key: &SimpleEtagCacheKey,
        head: &RequestHead,
        response: &Response<B>,
    ) {
        let Some(target) = absolute_target(head, &key.path_and_query) else {
            self.invalidate_target(&key.host, &key.path_and_query);
            return;
        };
        for uri in invalidated_uris(&head.method, response.status(), &target, response.headers()) {
            // Same origin (checked by `invalidated_uris`): the host as keys spell it.
            let host = uri_authority(&uri);
            let host = host.as_deref().unwrap_or(&key.host);
            let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
            self.invalidate_target(host, pq);
        }
    }

    fn store(&self, key: SimpleEtagCacheKey, entry: Option<Entry>) {
        let digester = &self.shared.digester;
        let digest = digester.digest(&key.view());
        let mut table = self.shared.table();
        match entry {
            Some(e) => table.insert(digester, digest, key, e),
            None => {
                table.remove(digester, digest);
            }
        }
    }
}

/// The future of [`ConstLruProvider`]'s store service.
pub struct ConstLruStoreFuture<const CAP: usize, B: Body> {
    state: StoreState<CAP, B>,
}

impl<const CAP: usize, B: Body> fmt::Debug for ConstLruStoreFuture<CAP, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            StoreState::Ready(_) => "Ready",
            StoreState::Reading { .. } => "Reading",
        };
        f.debug_struct("ConstLruStoreFuture")
            .field("state", &state)
            .finish()
    }
}

// Built once per miss and moved into the middleware's future once: boxing the larger
// variant would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum StoreState<const CAP: usize, B: Body> {
    Ready(Option<Response<BufferedBody<Pin<Box<B>>>>>),
    Reading {
        read: ReadAheadFuture<Pin<Box<B>>>,
        pending: Option<(Parts, StoreRequestHead<CAP>)>,
    },
}

/// What the store future keeps while it reads the body.
struct StoreRequestHead<const CAP: usize> {
    provider: ConstLruProvider<CAP>,
    key: SimpleEtagCacheKey,
    head: Arc<RequestHead>,
}

impl<const CAP: usize> StoreRequestHead<CAP> {
    /// Files the entry and tags the response; the middleware then answers the client's
    /// preconditions against that tag.
    fn respond<B: Body>(
        self,
        mut parts: Parts,
        etag: EntityTag,
        body: BufferedBody<B>,
    ) -> Response<BufferedBody<B>> {
        let etag_value = etag.to_header_value();
        let entry = Entry::new(
            &parts.headers,
            etag,
            etag_value.clone(),
            &self.head,
            self.provider.shared.config.ttl,
            &self.provider.shared.config.clock,
        );
        self.provider.store(self.key, entry);
        parts.headers.insert(ETAG, etag_value);
        Response::from_parts(parts, head_or_full(&self.head, body))
    }

    /// The response goes out untouched and untagged; an old entry for it can no longer be
    /// vouched for.
    fn pass<B: Body>(self, parts: Parts, body: BufferedBody<B>) -> Response<BufferedBody<B>> {
        self.provider.store(self.key, None);
        Response::from_parts(parts, head_or_full(&self.head, body))
    }
}

/// The body for the client: none for a HEAD (fetched as a GET), but the size of the GET's.
fn head_or_full<B: Body>(head: &RequestHead, body: BufferedBody<B>) -> BufferedBody<B> {
    if head.is_head() {
        BufferedBody::no_body(body.size_hint())
    } else {
        body
    }
}

/// Whether a body of unknown length should still be read ahead: a compressed representation
/// (tower-http's `CompressionLayer` inside this layer streams without a length) is the
/// transformation of a finite body. Event streams never end and never are.
fn worth_reading_unbounded(headers: &HeaderMap) -> bool {
    headers.contains_key(CONTENT_ENCODING)
        && !headers
            .get(CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"text/event-stream"))
}

impl<const CAP: usize, B: Body> Future for ConstLruStoreFuture<CAP, B> {
    type Output = Result<Response<BufferedBody<Pin<Box<B>>>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            StoreState::Ready(res) => Poll::Ready(Ok(res.take().expect("polled after completion"))),
            StoreState::Reading { read, pending } => {
                let outcome = std::task::ready!(Pin::new(read).poll(cx));
                let (parts, ctx) = pending.take().expect("polled after completion");
                Poll::Ready(Ok(match outcome {
                    // An empty body has nothing to tag (axum adds its `Content-Length: 0` only
                    // outside this layer, so the predicate could not see it).
                    ReadAhead::Complete { body, len: 0, .. } => ctx.pass(parts, body),
                    ReadAhead::Complete { body, hash, .. } => {
                        ctx.respond(parts, EntityTag::from_blake3(&hash), body)
                    }
                    ReadAhead::Incomplete { body } => ctx.pass(parts, body),
                }))
            }
        }
    }
}

impl<const CAP: usize, ResBody: Body> Service<StoreRequest<SimpleEtagCacheKey, ResBody>>
    for ConstLruProvider<CAP>
{
    type Response = Response<BufferedBody<Pin<Box<ResBody>>>>;
    type Error = Infallible;
    type Future = ConstLruStoreFuture<CAP, ResBody>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: StoreRequest<SimpleEtagCacheKey, ResBody>) -> Self::Future {
        let StoreRequest {
            key,
            head,
            response,
        } = req;
        if !head.method.is_safe() {
            self.invalidate_after(&key, &head, &response);
            return ConstLruStoreFuture {
                state: StoreState::Ready(Some(
                    response.map(|b| BufferedBody::streaming(Box::pin(b))),
                )),
            };
        }
        let (parts, body) = response.into_parts();
        let body = Box::pin(body);
        let ctx = StoreRequestHead {
            provider: self.clone(),
            key,
            head,
        };
        let ready_with = |res| ConstLruStoreFuture {
            state: StoreState::Ready(Some(res)),
        };

        if let Some(existing) = parts.headers.get(ETAG) {
            // The inner service tagged the response itself: keep its tag, hash nothing.
            return ready_with(match EntityTag::from_header_value(existing) {
                Some(etag) => ctx.respond(parts, etag, BufferedBody::streaming(body)),
                None => {
                    tracing::debug!(etag = ?existing, "malformed ETag from the inner service; passing the response through");
                    ctx.pass(parts, BufferedBody::streaming(body))
                }
            });
        }
        let limit = self.shared.config.max_body_size;
        // Read ahead only a body known to be small enough: one without an upper bound (a
        // stream, server-sent events) might never end, and its headers must go out now.
        // The exception is a compressed body (see `worth_reading_unbounded`); the read-ahead
        // still stops at the limit.
        let upper = body.size_hint().upper();
        let bounded = upper.is_some_and(|upper| upper <= limit);
        if !bounded && (upper.is_some() || !worth_reading_unbounded(&parts.headers)) {
            return ready_with(ctx.pass(parts, BufferedBody::streaming(body)));
        }
        // Every read-ahead is bounded in time too (a slow body of a known size would hold its
        // head back as well); one of unknown length only where that bound can be kept.
        let read = ReadAheadFuture::new(body, limit, self.shared.config.read_ahead_timeout);
        if !bounded && !read.is_timed() {
            return ready_with(ctx.pass(parts, read.into_streaming()));
        }
        ConstLruStoreFuture {
            state: StoreState::Reading {
                read,
                pending: Some((parts, ctx)),
            },
        }
    }
}

impl<const CAP: usize, ReqBody, ResBody: Body> CacheProvider<ReqBody, ResBody>
    for ConstLruProvider<CAP>
{
    type Key = SimpleEtagCacheKey;
    type HitBody = NoBody;
    type Body = BufferedBody<Pin<Box<ResBody>>>;

    fn now(&self) -> SystemTime {
        self.shared.config.clock.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str, path: &str, accept: &'static str) -> SimpleEtagCacheKey {
        SimpleEtagCacheKey {
            host: host.to_owned(),
            path_and_query: path.to_owned(),
            accept: vec![HeaderValue::from_static(accept)],
            ..Default::default()
        }
    }

    fn entry(tag: &str) -> Entry {
        let etag = EntityTag::strong(tag).unwrap();
        let head =
            RequestHead::from_parts(&Request::get("/").body(()).unwrap().into_parts().0).unwrap();
        let value = etag.to_header_value();
        Entry::new(
            &HeaderMap::new(),
            etag,
            value,
            &head,
            None,
            &Clock::system(),
        )
        .unwrap()
    }

    /// Every key the table indexes is in the LRU, and the other way round.
    fn consistent<const CAP: usize>(p: &ConstLruProvider<CAP>) -> bool {
        let table = p.shared.table();
        let indexed: usize = table.targets.values().map(Vec::len).sum();
        indexed == table.lru.len()
            && table
                .targets
                .values()
                .flatten()
                .all(|d| table.lru.contains(d))
    }

    /// tower-etag-cache 0.1 overflowed an 8 MiB stack in debug builds for 65 536 entries: the
    /// table is now on the heap from the start, so even a 64 KiB stack is enough.
    #[test]
    fn a_large_capacity_never_touches_the_stack() {
        let provider = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(ConstLruProvider::<65_536>::init)
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(provider.capacity(), 65_536);
        let runtime = ConstLruProvider::<16>::builder()
            .capacity(NonZeroUsize::new(3).unwrap())
            .build();
        for i in 0..5 {
            runtime.store(key("a.test", &format!("/{i}"), "x"), Some(entry("t")));
        }
        assert_eq!((runtime.len(), runtime.capacity()), (3, 3));
        assert!(runtime.etag(&key("a.test", "/0", "x")).is_none(), "evicted");
        assert!(runtime.etag(&key("a.test", "/4", "x")).is_some());
        // A bound from configuration costs nothing until entries fill it.
        let huge = ConstLruProvider::<16>::builder()
            .capacity(NonZeroUsize::MAX)
            .build();
        huge.store(key("a.test", "/", "x"), Some(entry("t")));
        assert_eq!((huge.len(), huge.capacity()), (1, usize::MAX));
    }

    #[test]
    fn invalidating_a_target_removes_its_representations_only() {
        let p = ConstLruProvider::<16>::init();
        for accept in ["text/html", "application/json"] {
            p.store(key("a.test", "/x", accept), Some(entry(accept)));
        }
        p.store(key("a.test", "/y", "text/html"), Some(entry("y")));
        p.store(key("b.test", "/x", "text/html"), Some(entry("bx")));
        assert_eq!(p.invalidate_target("A.TEST", "/x"), 2);
        assert_eq!(p.len(), 2);
        assert!(p.etag(&key("a.test", "/y", "text/html")).is_some());
        assert!(p.etag(&key("b.test", "/x", "text/html")).is_some());
        assert_eq!(p.invalidate_target("a.test", "/x"), 0);
        assert!(consistent(&p));
    }

    #[test]
    fn the_target_index_follows_evictions_replacements_and_removals() {
        let p = ConstLruProvider::<4>::init();
        for i in 0..10 {
            p.store(key("a.test", &format!("/{}", i % 6), "x"), Some(entry("t")));
            assert!(consistent(&p), "after store {i}");
        }
        p.store(key("a.test", "/5", "x"), Some(entry("again")));
        p.store(key("a.test", "/5", "x"), None);
        assert!(p.invalidate(&key("a.test", "/3", "x")));
        assert!(consistent(&p));
        p.clear();
        assert!(consistent(&p) && p.is_empty());
    }
}
