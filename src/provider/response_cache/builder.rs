//! [`ResponseCacheBuilder`], and the settings it gives a [`ResponseCache`] (`Config`).

use super::{
    coalesce::Coalescer, host, status::cache_name, HostPolicy, ResponseCache, Shared, UserKey,
    DEFAULT_BACKGROUND_TIMEOUT, DEFAULT_MAX_BACKGROUND_FILLS, DEFAULT_MAX_VARIANTS,
    MAX_MAX_VARIANTS, READ_AHEAD_URLS,
};
use crate::{
    clock::Clock,
    policy::{
        filing::{FilingRules, Users},
        CacheMode,
    },
    store::Store,
};
use http::{request, HeaderName};
use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::Semaphore;

/// What a cache was built with: read by every request.
pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) user_key: Option<UserKey>,
    /// The key of the users' digests in keys, if any.
    pub(crate) user_secret: Option<[u8; 32]>,
    /// In front of an HTTP client: keys are absolute URLs, scheme included.
    pub(crate) client: bool,
    /// Per-origin overrides.
    pub(crate) hosts: host::HostPolicies,
    pub(crate) mint_etags: bool,
    /// The targeted cache-control fields this cache follows (RFC 9213), most applicable
    /// first, and whether they go on downstream.
    pub(crate) targets: Arc<[HeaderName]>,
    pub(crate) forward_targeted: bool,
    /// How long past its freshness an entry stands in for an unreachable origin.
    pub(crate) unreachable_grace: Duration,
    pub(crate) coalesce_timeout: Duration,
    pub(crate) refresh_ahead: Option<Duration>,
    pub(crate) max_variants: usize,
    pub(crate) background_timeout: Duration,
    pub(crate) max_background_fills: usize,
    /// The mode and the users: where responses are filed, the one decision every write
    /// asks.
    pub(crate) filing: FilingRules,
    /// What the policy sees as now.
    pub(crate) clock: Clock,
}

/// Builds a [`ResponseCache`].
#[must_use]
pub struct ResponseCacheBuilder<St> {
    store: St,
    name: String,
    /// `None` until chosen: shared, or a user agent's private cache in front of a client.
    mode: Option<CacheMode>,
    user_key: Option<UserKey>,
    per_user: bool,
    user_secret: Option<[u8; 32]>,
    client: bool,
    hosts: host::HostPolicies,
    /// `None` until chosen: on, or off in front of a client.
    mint_etags: Option<bool>,
    targets: Vec<HeaderName>,
    forward_targeted: bool,
    unreachable_grace: Duration,
    coalesce_timeout: Duration,
    refresh_ahead: Option<Duration>,
    max_variants: usize,
    max_background_fills: usize,
    background_timeout: Duration,
    clock: Clock,
}

impl<St: fmt::Debug> fmt::Debug for ResponseCacheBuilder<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCacheBuilder")
            .field("store", &self.store)
            .field("name", &self.name)
            .finish()
    }
}

impl<St: Store> ResponseCacheBuilder<St> {
    /// The defaults ([`ResponseCache`] says which), over `store`.
    pub(super) fn new(store: St) -> Self {
        Self {
            store,
            name: "tower-etag".to_owned(),
            mode: None,
            user_key: None,
            per_user: false,
            user_secret: None,
            client: false,
            hosts: host::HostPolicies::default(),
            mint_etags: None,
            targets: Vec::new(),
            forward_targeted: false,
            unreachable_grace: Duration::ZERO,
            coalesce_timeout: Duration::from_secs(10),
            refresh_ahead: None,
            max_variants: DEFAULT_MAX_VARIANTS,
            max_background_fills: DEFAULT_MAX_BACKGROUND_FILLS,
            background_timeout: DEFAULT_BACKGROUND_TIMEOUT,
            clock: Clock::system(),
        }
    }

    /// The cache's name in `Cache-Status` (default `tower-etag`). A name that is not a
    /// Structured Fields token is written as a quoted string.
    pub fn name(mut self, name: &str) -> Self {
        self.name = cache_name(name);
        self
    }

    /// Private-cache mode: responses marked `private` are stored, per user. `user_key`
    /// names the user of a request (a session id, an account id; keys hold a digest of it,
    /// never the name); requests for which it returns `None` (or an empty name, or one
    /// with a NUL character) bypass the cache. Entries of one user are never served to
    /// another; [`ResponseCache::purge_user`] forgets one user's.
    /// Every response is stored per user, `public` ones included, but never one that keeps
    /// `Set-Cookie` (a user may have several sessions; a replayed cookie would move one into
    /// another); an invalidation (an unsafe request, [`ResponseCache::invalidate_url`])
    /// reaches every user's entries of the URL. See `docs/SECURITY.md` for who may see
    /// what, path by path.
    pub fn private<F>(mut self, user_key: F) -> Self
    where
        F: Fn(&request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.mode = Some(CacheMode::Private);
        self.user_key = Some(Arc::new(user_key));
        self.per_user = false;
        self
    }

    /// A shared cache that also keeps each user's own entries: what a backend calling APIs
    /// for many users needs. `user_key` names the user of a request (an account id, a
    /// digest of its token); requests for which it returns `None` (or an empty name, or
    /// one with a NUL character) are anonymous.
    ///
    /// - An anonymous request's response that a shared cache may store (RFC 9111 §3) is
    ///   stored once for everyone.
    /// - A user's response goes to the shared entries only if a shared cache may keep it
    ///   as an answer to `Authorization` (§3.5: `public`, `s-maxage`, `must-revalidate`),
    ///   however the user was named (a cookie, a header): a user is a user, and the entry
    ///   stays an answer to `Authorization` (a later `304` that drops `public` removes it).
    ///   Anything else storable under a private cache's rules (`private`, plain `max-age`)
    ///   goes to that user's own entries and answers only that user's requests: never
    ///   another user's, never an anonymous one. One with `Set-Cookie` is never stored
    ///   (unless `no-cache="set-cookie"` leaves the cookie out, then it is stored without
    ///   it). [`ResponseCache::insert`] files by the same rules.
    /// - A user's request is answered from the user's own entries first, then from the
    ///   shared ones while they are fresh; it never revalidates or refreshes a shared
    ///   entry (what comes back is the user's). Misses of a user are coalesced with that
    ///   user's requests only: a response filed as the user's reaches no one else waiting.
    /// - [`ResponseCache::purge_user`] forgets all of one user's entries; an invalidation
    ///   (an unsafe request, [`ResponseCache::invalidate_url`]) reaches every user's.
    ///
    /// A user's request reads up to four records before a hit (the URL's epoch, the user's
    /// generation and index, then the shared index) where one with nothing of its own for
    /// the URL looks at the shared entries too. Users are named in keys by a digest (keyed
    /// with [`user_key_secret`](Self::user_key_secret), which ids of low entropy need).
    /// Switching an existing shared cache to `per_user` leaves its entries unreachable (the
    /// URL's epoch becomes a record of its own).
    pub fn per_user<F>(mut self, user_key: F) -> Self
    where
        F: Fn(&request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.mode = Some(CacheMode::Shared);
        self.user_key = Some(Arc::new(user_key));
        self.per_user = true;
        self
    }

    /// The secret that keys the digests users are named by in the store's keys (private and
    /// per-user modes; default: none, a plain blake3 digest). Without it, names of low
    /// entropy (account numbers) could be found from a store's keys by trying them all.
    /// Give every node that shares a store the same secret (and keep it: a new one leaves
    /// every user's entries unreachable).
    pub fn user_key_secret(mut self, secret: [u8; 32]) -> Self {
        self.user_secret = Some(secret);
        self
    }

    /// A user agent's cache: private (RFC 9111 §1), for the one user of the application
    /// it runs in. `private` responses and answers to requests with `Authorization` are
    /// stored, `s-maxage` and `proxy-revalidate` do not apply. The default mode of a
    /// [`client`](Self::client) cache; never put it in front of a server that many users
    /// reach.
    pub fn user_agent(mut self) -> Self {
        self.mode = Some(CacheMode::Private);
        self.user_key = None;
        self.per_user = false;
        self
    }

    /// A shared cache (RFC 9111 §1): what one user gets may be served to another, so
    /// `private` responses, `Set-Cookie` and answers to `Authorization` are not stored. The
    /// default, except in front of a [`client`](Self::client). Undoes
    /// [`user_agent`](Self::user_agent), [`private`](Self::private) and
    /// [`per_user`](Self::per_user).
    pub fn shared(mut self) -> Self {
        self.mode = Some(CacheMode::Shared);
        self.user_key = None;
        self.per_user = false;
        self
    }

    /// A cache in front of an HTTP client (hyper-util's `Client`, any tower HTTP client
    /// service) rather than a server:
    ///
    /// - requests name absolute URIs (`https://api.example/v1/x`), and entries are keyed by
    ///   scheme, authority, path and query; a request without a scheme and an authority
    ///   goes to the client untouched (`Cache-Status: ...; detail=relative-uri`);
    /// - the mode is [`user_agent`](Self::user_agent) unless [`shared`](Self::shared),
    ///   [`per_user`](Self::per_user) or [`private`](Self::private) says otherwise (a
    ///   backend that calls APIs for many users wants one of those);
    /// - no tags are minted ([`mint_etags`](Self::mint_etags) is off unless turned on): the
    ///   application sees the origin's headers.
    ///
    /// Stale entries are revalidated with the origin (the application gets a `200` made
    /// from the stored response after a `304`), `stale-if-error` (and
    /// [`stale_if_unreachable`](Self::stale_if_unreachable)) cover a client that fails to
    /// connect, and concurrent calls for one URL are coalesced.
    pub fn client(mut self) -> Self {
        self.client = true;
        self
    }

    /// Overrides for one origin (`authority`: its host, lower-case, with its port unless it
    /// is the scheme's default, as the cache keys it: `api.example`, `api.example:8443`):
    /// see [`HostPolicy`]. Each override is off until set, and `Cache-Status` names the
    /// one that decided an answer (`detail=override-...`). Set again for the same
    /// authority, the last one counts.
    pub fn host_policy(mut self, authority: &str, policy: HostPolicy) -> Self {
        self.hosts.insert(authority, policy);
        self
    }

    /// Whether the cache gives stored responses that have no validator a strong `ETag` of
    /// its own (default: on), so that clients can revalidate them: a hit then answers a
    /// matching `If-None-Match` with `304 Not Modified` instead of the whole body.
    ///
    /// - The tag is the quoted base64url of the body's blake3 hash, as the ETag layer
    ///   makes ([`ConstLruProvider`](crate::ConstLruProvider)).
    /// - A body of known length up to [`MINT_READ_AHEAD_BYTES`](super::fill::MINT_READ_AHEAD_BYTES) (64 KiB) is read ahead,
    ///   for at most half a second, before the head goes out: the response carries the tag
    ///   and its `If-None-Match` is answered at once, and an entry is committed before the
    ///   head (`Cache-Status: ...; stored`). This holds for responses that are not stored
    ///   too (a `no-cache` response without a validator of its own is fetched again for
    ///   every request), as the ETag layer would tag them. Larger bodies, and bodies of unknown length, are hashed as they stream into
    ///   the store and the tag put on the stored head at commit: the response that filled
    ///   the entry goes out **untagged**, every response made from the entry carries it.
    /// - Only `200` responses without `ETag` and `Last-Modified`: an origin's validators
    ///   are never replaced.
    /// - The cache never sends a minted tag to the inner service as its own validator (the
    ///   origin never issued it): such an entry is revalidated with an unconditional
    ///   request. A tag that a *client* sends back on a request the cache forwards as it is
    ///   (an `If-Match` on a `PUT`, an `If-None-Match` on a bypassed request) does reach
    ///   the origin, and an origin without tags answers such an `If-Match` with `412`
    ///   (RFC 9110 §13.1.1): if clients make conditional updates against an origin that
    ///   does not tag, turn minting off (or tag in the application, with the ETag layer or
    ///   [`EtagCacheLayer::from_fn`](crate::EtagCacheLayer::from_fn) inside the cache).
    ///
    /// - With minting on, the cache speaks for the origin: it answers every precondition
    ///   itself, from its entry or the full response it fetches (the origin never issued
    ///   its tags). With it off, it keeps to RFC 9111 §4.3.2: a request with `If-Match` or
    ///   `If-Unmodified-Since` goes to the origin as it came, and on a miss the client's
    ///   `If-None-Match` / `If-Modified-Since` go on too, the origin's answer (a `304`
    ///   without a body, or the full response, which is stored) passed through.
    ///
    /// Leave it on where the cache is part of the application (it then speaks for the
    /// origin). Turn it off in a proxy in front of origins you do not control, whose clients
    /// should see the origin's headers only (the proxy example does, unless `--mint-etags`).
    pub fn mint_etags(mut self, on: bool) -> Self {
        self.mint_etags = Some(on);
        self
    }

    /// The targeted cache-control fields (RFC 9213) this cache follows, most applicable first
    /// (default: none). The first of them a response has with a valid, non-empty value
    /// decides this cache's policy (freshness, `no-store`, `private`, `no-cache`,
    /// `must-revalidate`, `stale-*`, ...) instead of `Cache-Control` and `Expires`, which
    /// still go on downstream unchanged; an invalid one (not a Structured Fields
    /// Dictionary) is ignored as a whole.
    ///
    /// A cache in front of origins, on their behalf, takes `CDN-Cache-Control` (the proxy
    /// example does); a cache inside one application usually takes none, or a name of its
    /// own (`Edge-Cache-Control`), so that it does not consume what is meant for a CDN in
    /// front of it.
    ///
    /// ```
    /// use http::{request, HeaderName};
    /// use tower_etag::{response_cache::ResponseCache, store::MemoryStore};
    ///
    /// let cache = ResponseCache::builder(MemoryStore::new())
    ///     .targeted_cache_control([HeaderName::from_static("cdn-cache-control")])
    ///     .build();
    /// # let _ = cache;
    /// ```
    pub fn targeted_cache_control(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.targets = names.into_iter().collect();
        self
    }

    /// Whether the targeted fields this cache follows go on in its responses (default:
    /// no, they are removed: they were for this cache). RFC 9213 §3 lets a CDN cache keep
    /// `CDN-Cache-Control` for CDN caches further downstream.
    pub fn forward_targeted(mut self, forward: bool) -> Self {
        self.forward_targeted = forward;
        self
    }

    /// A grace for an origin that cannot be reached (default: none): when the inner service
    /// fails, or a gateway answers `502 Bad Gateway` or `504 Gateway Timeout`, an entry is
    /// served for up to `grace` past its freshness even without `stale-if-error`
    /// (`Cache-Status: ...; detail=stale-if-unreachable`), as RFC 9111 §4.2.4 lets a
    /// disconnected cache do (Varnish calls it grace). Entries are kept that much longer.
    /// Never where a directive forbids stale (`must-revalidate`, `no-cache`, and in a shared
    /// cache `proxy-revalidate` or `s-maxage`), nor for a request with `no-cache`.
    pub fn stale_if_unreachable(mut self, grace: Duration) -> Self {
        self.unreachable_grace = grace;
        self
    }

    /// How long concurrent requests for a key being fetched wait for that fetch before
    /// going to the inner service on their own (default 10 s). Once the fetch's response
    /// turns out to be a stream of unknown length they wait half a second more at most, and
    /// not at all once its head says it will not be stored.
    pub fn coalesce_timeout(mut self, timeout: Duration) -> Self {
        self.coalesce_timeout = timeout;
        self
    }

    /// Refresh-ahead: a fresh entry requested when it has less than `window` left to live
    /// is served as a hit and revalidated in the background, so popular entries never go
    /// stale. Off by default.
    pub fn refresh_ahead(mut self, window: Duration) -> Self {
        self.refresh_ahead = Some(window);
        self
    }

    /// The most variants (`Vary` selections) kept per URL, and per user in private mode
    /// (default [`DEFAULT_MAX_VARIANTS`], from 1 to 4096): storing one more removes the
    /// least recently used.
    pub fn max_variants(mut self, max: usize) -> Self {
        self.max_variants = max.clamp(1, MAX_MAX_VARIANTS);
        self
    }

    /// The most background fills and refreshes at once (default
    /// [`DEFAULT_MAX_BACKGROUND_FILLS`]): a HEAD or a conditional miss whose full body would
    /// be read for the store only, a stale-while-revalidate or refresh-ahead revalidation.
    /// Past it the response is not stored (the client is answered all the same) and stale
    /// entries are served without a refresh.
    pub fn max_background_fills(mut self, max: usize) -> Self {
        self.max_background_fills = max;
        self
    }

    /// How long one background fill or refresh may take, origin and store together
    /// (default [`DEFAULT_BACKGROUND_TIMEOUT`]); past it, it is abandoned.
    pub fn background_timeout(mut self, timeout: Duration) -> Self {
        self.background_timeout = timeout;
        self
    }

    /// The clock the cache reads the time from (default: the system's): a
    /// [`ManualClock`](crate::clock::ManualClock) makes tests of freshness and expiry
    /// independent of real time. Stores keep real time for their own TTLs.
    pub fn clock(mut self, clock: impl Into<Clock>) -> Self {
        self.clock = clock.into();
        self
    }

    /// The cache.
    pub fn build(self) -> ResponseCache<St> {
        let read_ahead = self.store.remote_reads().then(|| {
            let urls =
                std::num::NonZeroUsize::new(READ_AHEAD_URLS).unwrap_or(std::num::NonZeroUsize::MIN);
            Mutex::new(lru::LruCache::new(urls))
        });
        let mode = self.mode.unwrap_or(if self.client {
            CacheMode::Private
        } else {
            CacheMode::Shared
        });
        let users = match (&self.user_key, self.per_user) {
            (None, _) => Users::None,
            (Some(_), true) => Users::PerUser,
            (Some(_), false) => Users::Private,
        };
        // The setters keep these together: shared entries of a per-user cache are a shared
        // cache's (a private cache's rules there would let `private` answers in).
        debug_assert!(users != Users::PerUser || mode == CacheMode::Shared);
        ResponseCache {
            shared: Arc::new(Shared {
                store: self.store,
                config: Config {
                    name: self.name,
                    user_key: self.user_key,
                    user_secret: self.user_secret,
                    client: self.client,
                    hosts: self.hosts,
                    mint_etags: self.mint_etags.unwrap_or(!self.client),
                    targets: self.targets.into(),
                    forward_targeted: self.forward_targeted,
                    unreachable_grace: self.unreachable_grace,
                    coalesce_timeout: self.coalesce_timeout,
                    refresh_ahead: self.refresh_ahead,
                    max_variants: self.max_variants,
                    background_timeout: self.background_timeout,
                    max_background_fills: self.max_background_fills,
                    filing: FilingRules { mode, users },
                    clock: self.clock,
                },
                coalescer: Coalescer::default(),
                background: Arc::new(Semaphore::new(self.max_background_fills)),
                filling: Arc::default(),
                read_ahead,
                heads: super::entry::Heads::new(),
            }),
        }
    }
}
