//! [`ResponseCache`]: an RFC 9111 HTTP cache as a [`CacheProvider`](crate::CacheProvider).
//!
//! It stores responses (status, headers, body) in a [`Store`] and answers fresh hits without
//! calling the inner service, revalidates stale entries with a conditional request, serves
//! stale content where `stale-while-revalidate` / `stale-if-error` allow, keeps one variant
//! per `Vary` selection side by side, coalesces concurrent misses and revalidations,
//! invalidates after unsafe methods, and says what it did in a `Cache-Status` field
//! (RFC 9211).
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_etag::{response_cache::ResponseCache, store::MemoryStore};
//!
//! let cache = ResponseCache::builder(MemoryStore::new()).name("edge").build();
//! let app: Router = Router::new()
//!     .route("/", get(|| async { ([("cache-control", "max-age=60")], "Hello") }))
//!     .layer(cache.layer());
//! # let _ = app;
//! ```
//!
//! The policy (what may be stored, for how long, what a request may be answered with) is the
//! pure [`policy`](crate::policy) module; this module is the plumbing around it:
//!
//! - `lookup`: a request is classified (bypass, invalidate, cacheable), its entry found
//!   (`keyspace`), the policy decides (hit, stale-while-revalidate, revalidate, miss), and
//!   misses and revalidations are coalesced (`coalesce`).
//! - `filer`: where a response is filed (shared entries, a user's own, nowhere) and
//!   whether its head is worth writing: every write asks it; `insert`.
//! - `fill`: the inner service's response is filed: stored while it streams (`tee`), or
//!   used to freshen the entry it revalidated, or replaced by the stale entry on errors; an
//!   unsafe method's response invalidates.
//! - `respond`: the responses made from entries, with their `Cache-Status` (`status`).
//!
//! # Safe in front of many users
//!
//! - Nothing stored for one user is served to another: in shared mode `private`,
//!   `Set-Cookie` and (without `public`, `s-maxage`, `must-revalidate`) answers to requests
//!   with `Authorization` are never stored, also when a `304` brings them: the `304`'s
//!   `Set-Cookie` goes to the client that asked only, and a `304` that makes the response
//!   unstorable removes the entry. With users ([`ResponseCacheBuilder::per_user`],
//!   [`ResponseCacheBuilder::private`]), one decision files every write, fills and
//!   [`ResponseCache::insert`] and `304`s alike: in the shared entries, in the user's own,
//!   or nowhere (`filer`; `docs/SECURITY.md` lists every path and who may see what).
//! - The key and what reaches the inner service name the same authority (see
//!   [`EtagCache`](crate::EtagCache)); a GET or HEAD with a body bypasses the cache.
//! - An invalidation wins over every fill that started before it; a late `304` never
//!   relabels a newer body.
//! - Bounded: variants per URL ([`ResponseCacheBuilder::max_variants`]), background work
//!   (HEAD fills, refreshes; [`ResponseCacheBuilder::max_background_fills`] and
//!   [`ResponseCacheBuilder::background_timeout`]), bytes buffered per entry (the store's
//!   [`Store::max_entry_bytes`]).
//!
//! # When an entry is stored
//!
//! A body is written to the store while it streams to the client and committed when it
//! ends cleanly: after the response head went out, so that head's `Cache-Status` does not
//! say `stored` (RFC 9211 lets it be omitted). When the client goes away first (or a test
//! that drives the cache in process with `ServiceExt::oneshot` drops the body unread), the
//! cache reads the rest into the store in the background, in the bounded background pool
//! (with the pool full, nothing is stored): the entry appears a little later.

mod body;
mod builder;
mod coalesce;
mod codec;
mod entry;
mod filer;
mod fill;
mod host;
mod keyspace;
mod lookup;
mod respond;
mod status;
mod tap;
mod tee;

pub use body::{CacheBody, HitBody};
pub(crate) use builder::Config;
pub use builder::ResponseCacheBuilder;
pub use fill::MINT_READ_AHEAD_BYTES;
pub use host::HostPolicy;
pub use lookup::ResponseCacheKey;
pub use tee::TeeBody;

use self::{
    coalesce::Coalescer,
    keyspace::{Keyspace, Place, Url},
};
use crate::{
    middleware::{layer::EtagCacheLayer, predicate::PassthroughPredicate},
    policy::{filing::Users, CacheMode, CachePolicy},
    semantics::request::RequestHead,
    store::{Store, StoreError},
    sync::lock,
};
use http::{request, Request, Uri};
use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};
use tokio::sync::Semaphore;

/// Decodes stored records as the cache does on a hit, for the fuzz targets (built with
/// `--cfg fuzzing` by cargo-fuzz only) and the replay of their corpus: an entry head and an
/// index. Each must decode to `None` or to a value that encodes back to the same bytes;
/// never panic.
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub fn fuzz_decode(bytes: &[u8]) {
    if let Some(policy) = entry::decode(bytes) {
        assert_eq!(entry::decode(&entry::encode(&policy)), Some(policy));
    }
    if let Some(index) = keyspace::Index::decode(bytes) {
        assert_eq!(keyspace::Index::decode(&index.encode()), Some(index));
    }
}

/// Put this in a request's extensions to have the cache step aside for it: the request goes
/// to the inner service and nothing is stored (`Cache-Status: ...; fwd=bypass`). A request
/// with an unsafe method still invalidates (RFC 9111 §4.4).
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheBypass;

/// Extracts the user a request is made for, in private mode.
pub type UserKey = Arc<dyn Fn(&request::Parts) -> Option<String> + Send + Sync>;

/// The default cap on the variants kept per URL (and per user in private mode): 32.
pub const DEFAULT_MAX_VARIANTS: usize = 32;

/// The largest [`ResponseCacheBuilder::max_variants`]: an index record lists them all.
const MAX_MAX_VARIANTS: usize = 4096;

/// The default bound on background fills and refreshes running at once: 32.
pub const DEFAULT_MAX_BACKGROUND_FILLS: usize = 32;

/// The default time a background fill or refresh may take: 30 s.
pub const DEFAULT_BACKGROUND_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Shared<St> {
    pub(crate) store: St,
    pub(crate) config: Config,
    pub(crate) coalescer: Coalescer,
    /// Permits for work no client waits for (HEAD and conditional-miss fills, refreshes).
    pub(crate) background: Arc<Semaphore>,
    /// The URLs with fills under way in this process, and how many.
    pub(crate) filling: Arc<Mutex<HashMap<Url, usize>>>,
    /// For a store whose reads cross a network ([`Store::remote_reads`]): what the last
    /// lookup of each URL found, so the next one reads its entry ahead.
    pub(crate) read_ahead: Option<Mutex<lru::LruCache<Url, lookup::Expected>>>,
    /// Entry heads decoded once, for stores that return them encoded.
    pub(crate) heads: entry::Heads,
}

/// The most URLs whose last lookup the cache remembers for reading ahead.
const READ_AHEAD_URLS: usize = 4096;

/// An HTTP cache (RFC 9111) over a [`Store`]. Clones share the store and settings.
///
/// Use it through [`ResponseCache::layer`]. Defaults: shared-cache mode (never stores
/// `private` responses, honours `s-maxage` and `proxy-revalidate`), `Cache-Status` name
/// `tower-etag`, validators minted for responses without one ([`ResponseCacheBuilder::mint_etags`]),
/// coalesced requests wait up to 10 s for the first one, no refresh-ahead, at
/// most [`DEFAULT_MAX_VARIANTS`] variants per URL, [`DEFAULT_MAX_BACKGROUND_FILLS`]
/// background fills at once, each for at most [`DEFAULT_BACKGROUND_TIMEOUT`].
pub struct ResponseCache<St> {
    shared: Arc<Shared<St>>,
}

impl<St> ResponseCache<St> {
    /// The time now, by the cache's clock.
    #[inline]
    pub(crate) fn now(&self) -> SystemTime {
        self.shared.config.clock.now()
    }

    /// Shared mode with users: each user's own entries beside the shared ones.
    pub(crate) fn per_user(&self) -> bool {
        self.shared.config.filing.users == Users::PerUser
    }
}

impl<St> Clone for ResponseCache<St> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<St: fmt::Debug> fmt::Debug for ResponseCache<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.shared.config;
        f.debug_struct("ResponseCache")
            .field("store", &self.shared.store)
            .field("name", &c.name)
            .field("mode", &c.filing.mode)
            .field("coalesce_timeout", &c.coalesce_timeout)
            .field("refresh_ahead", &c.refresh_ahead)
            .field("max_variants", &c.max_variants)
            .field("background_timeout", &c.background_timeout)
            .finish()
    }
}

/// The predicate of [`ResponseCache::layer`]: every request and response goes to the cache,
/// which applies RFC 9111 itself (unsafe methods invalidate, the rest is looked up).
#[derive(Clone, Copy, Debug, Default)]
pub struct Everything;

impl PassthroughPredicate for Everything {}

impl<St: Store> ResponseCache<St> {
    /// A cache with default settings over `store`.
    pub fn new(store: St) -> Self {
        Self::builder(store).build()
    }

    /// A builder for a cache over `store`.
    pub fn builder(store: St) -> ResponseCacheBuilder<St> {
        ResponseCacheBuilder::new(store)
    }

    /// The layer that puts this cache in front of a service.
    pub fn layer(&self) -> EtagCacheLayer<Self, Everything> {
        EtagCacheLayer::new(self.clone(), Everything)
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.shared.store
    }

    /// The background fills and refreshes running now (at most
    /// [`ResponseCacheBuilder::max_background_fills`]): HEAD and conditional-miss fills,
    /// stale-while-revalidate and refresh-ahead revalidations.
    pub fn background_in_flight(&self) -> usize {
        let max = self.shared.config.max_background_fills;
        max.saturating_sub(self.shared.background.available_permits())
    }

    /// The policy of a response from `authority` judged in `mode`, as this cache reads it:
    /// its target list, the authority's overrides. Where it is filed decides the mode
    /// (see `filer`).
    pub(crate) fn policy_in(
        &self,
        mode: CacheMode,
        authority: Option<&str>,
        request: &request::Parts,
        response: &http::response::Parts,
        times: (SystemTime, SystemTime),
    ) -> CachePolicy {
        let config = &self.shared.config;
        let options = config.hosts.options(authority);
        CachePolicy::with_targets(request, response, times, mode, options, &config.targets)
    }

    /// How long a response to `request` (an absolute URI) stays fresh from `times.1`, by
    /// this cache's policy for its origin: what a refresh cache schedules by.
    pub(crate) fn fresh_for(
        &self,
        request: &request::Parts,
        response: &http::response::Parts,
        times: (SystemTime, SystemTime),
    ) -> Duration {
        let authority = crate::semantics::request::uri_authority(&request.uri);
        let mode = self.shared.config.filing.mode;
        self.policy_in(mode, authority.as_deref(), request, response, times)
            .time_to_live(times.1)
    }

    /// The overrides of requests for `authority`, if it has any.
    pub(crate) fn host_policy(&self, authority: Option<&str>) -> Option<&HostPolicy> {
        self.shared.config.hosts.of(authority)
    }

    /// How long a response is kept in the store: its policy's storage time, and the grace
    /// for an unreachable origin.
    pub(crate) fn storage_ttl(&self, policy: &CachePolicy, now: SystemTime) -> Duration {
        policy.storage_ttl_with_grace(now, self.shared.config.unreachable_grace)
    }

    pub(crate) fn keyspace(&self) -> Keyspace<'_, St> {
        Keyspace {
            store: &self.shared.store,
            // Where users have entries of their own, the URL's epoch is a record of its own.
            private: self.shared.config.filing.mode == CacheMode::Private || self.per_user(),
            max_variants: self.shared.config.max_variants,
        }
    }

    /// Forgets every stored variant of a URL (`http://host/path?query`; the host compared
    /// without case and default port), of every user in private mode. Returns whether
    /// anything was stored for it.
    pub async fn invalidate_url(&self, uri: &Uri) -> Result<bool, StoreError> {
        let scheme = self.shared.config.client.then_some("http");
        let Some(url) = Url::of_uri(uri, scheme, None) else {
            return Ok(false);
        };
        self.invalidate(url).await
    }

    pub(crate) async fn invalidate(&self, url: Url) -> Result<bool, StoreError> {
        let filling = self.is_filling(&url);
        let place = Place { url, user: None };
        self.keyspace().invalidate(&place, filling).await
    }

    /// Forgets every entry of `user` (as the [`private`](ResponseCacheBuilder::private) or
    /// [`per_user`](ResponseCacheBuilder::per_user) extractor names users), of every URL,
    /// on every node that shares the store: the user gets a new generation, and what was
    /// stored under the old one is never served again (it expires in the store). A fill
    /// that started before stores nothing. Returns whether the user had entries (a record);
    /// `false` in a cache without users.
    pub async fn purge_user(&self, user: &str) -> Result<bool, StoreError> {
        if self.shared.config.user_key.is_none() || user.is_empty() || user.contains('\0') {
            return Ok(false);
        }
        let id = keyspace::user_id(user, self.shared.config.user_secret.as_ref());
        self.keyspace().purge_user(&id).await
    }

    /// Forgets everything.
    pub async fn purge(&self) -> Result<(), StoreError> {
        self.shared.store.clear().await
    }

    /// Where the entries of a request live, or why it has no place: `no-user` in private
    /// mode when it names no user, `relative-uri` in a client cache when it names no scheme
    /// and authority.
    pub(crate) fn place(
        &self,
        head: &RequestHead,
        parts: &request::Parts,
    ) -> Result<Place, &'static str> {
        let user = match &self.shared.config.user_key {
            // A NUL is the keys' separator: a user name holding one could pose as another;
            // an empty one is the shared place's.
            Some(user_key) => {
                match user_key(parts).filter(|u| !u.is_empty() && !u.contains('\0')) {
                    Some(user) => Some(keyspace::user_id(
                        &user,
                        self.shared.config.user_secret.as_ref(),
                    )),
                    None if self.per_user() => None,
                    None => return Err("no-user"),
                }
            }
            None => None,
        };
        let scheme = match (self.shared.config.client, &head.scheme, &head.authority) {
            (false, _, _) => None,
            (true, Some(scheme), Some(_)) => Some(scheme.as_str()),
            (true, _, _) => return Err("relative-uri"),
        };
        Ok(Place {
            url: Url::new(scheme, head.authority.as_deref(), &parts.uri),
            user,
        })
    }

    /// The scheme that goes into the keys of URLs `head` refers to: the request's, in a
    /// client cache.
    pub(crate) fn key_scheme<'h>(&self, head: &'h RequestHead) -> Option<&'h str> {
        if self.shared.config.client {
            Some(head.scheme.as_ref().map_or("http", |s| s.as_str()))
        } else {
            None
        }
    }

    fn is_filling(&self, url: &Url) -> bool {
        lock(&self.shared.filling).contains_key(url)
    }
}

/// Registers a fill of a URL for as long as it lives, so an invalidation of the URL while
/// it runs leaves a new epoch behind even when nothing was stored yet.
#[derive(Debug)]
pub(crate) struct FillingUrl {
    filling: Arc<Mutex<HashMap<Url, usize>>>,
    url: Url,
}

impl FillingUrl {
    pub(crate) fn new(filling: &Arc<Mutex<HashMap<Url, usize>>>, url: Url) -> Self {
        *lock(filling).entry(url.clone()).or_default() += 1;
        Self {
            filling: Arc::clone(filling),
            url,
        }
    }
}

impl Drop for FillingUrl {
    fn drop(&mut self) {
        let mut map = lock(&self.filling);
        if let Some(n) = map.get_mut(&self.url) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.url);
            }
        }
    }
}

/// A copy of a request head's method, URI, version and headers (extensions are not
/// cloneable, and the cache has no use for them).
pub(crate) fn copy_head(parts: &request::Parts) -> request::Parts {
    let mut copy = Request::new(());
    *copy.method_mut() = parts.method.clone();
    *copy.uri_mut() = parts.uri.clone();
    *copy.version_mut() = parts.version;
    *copy.headers_mut() = parts.headers.clone();
    copy.into_parts().0
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_stored_entry_fuzz_corpus_decodes_or_is_refused() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/stored_entry");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            super::fuzz_decode(&std::fs::read(&path).unwrap());
            n += 1;
        }
        assert!(n >= 2, "the seeds at least");
    }
}
