//! [`ResponseCache`]: an RFC 9111 HTTP cache as a [`CacheProvider`](crate::CacheProvider).
//!
//! It stores responses (status, headers, body) in a [`Store`] and answers fresh hits without
//! calling the inner service, revalidates stale entries with a conditional request, serves
//! stale content where `stale-while-revalidate` / `stale-if-error` allow, keeps one variant
//! per `Vary` selection side by side, coalesces concurrent misses, invalidates after unsafe
//! methods, and says what it did in a `Cache-Status` field (RFC 9211).
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
//! pure [`policy`](crate::policy) module; this module is the plumbing around it.

mod body;
mod coalesce;
mod entry;
mod lookup;
mod status;
mod store_service;
mod tee;

pub use body::{CacheBody, HitBody};
pub use lookup::ResponseCacheKey;
pub use tee::TeeBody;

use self::{coalesce::Coalescer, status::cache_name};
use crate::{
    middleware::layer::EtagCacheLayer,
    middleware::predicate::PassthroughPredicate,
    policy::{CacheMode, CachePolicy},
    store::{Store, StoreError, StoreWriter},
};
use bytes::Bytes;
use http::{request, Request, Response, Uri};
use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

/// Put this in a request's extensions to have the cache step aside for it: the request goes
/// to the inner service and nothing is stored (`Cache-Status: ...; fwd=bypass`).
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheBypass;

/// Extracts the user a request is made for, in private mode.
pub type UserKey = Arc<dyn Fn(&request::Parts) -> Option<String> + Send + Sync>;

pub(crate) struct Config {
    pub(crate) name: String,
    pub(crate) mode: CacheMode,
    pub(crate) user_key: Option<UserKey>,
    pub(crate) coalesce_timeout: Duration,
    pub(crate) refresh_ahead: Option<Duration>,
}

pub(crate) struct Shared<St> {
    pub(crate) store: St,
    pub(crate) config: Config,
    pub(crate) coalescer: Coalescer,
}

/// An HTTP cache (RFC 9111) over a [`Store`]. Clones share the store and settings.
///
/// Use it through [`ResponseCache::layer`]. Defaults: shared-cache mode (never stores
/// `private` responses, honours `s-maxage` and `proxy-revalidate`), `Cache-Status` name
/// `tower-etag`, coalesced requests wait up to 10 s for the first one, no refresh-ahead.
pub struct ResponseCache<St> {
    shared: Arc<Shared<St>>,
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
            .field("mode", &c.mode)
            .field("coalesce_timeout", &c.coalesce_timeout)
            .field("refresh_ahead", &c.refresh_ahead)
            .finish()
    }
}

/// Builds a [`ResponseCache`].
#[must_use]
pub struct ResponseCacheBuilder<St> {
    store: St,
    name: String,
    mode: CacheMode,
    user_key: Option<UserKey>,
    coalesce_timeout: Duration,
    refresh_ahead: Option<Duration>,
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
    /// The cache's name in `Cache-Status` (default `tower-etag`). A name that is not a
    /// Structured Fields token is written as a quoted string.
    pub fn name(mut self, name: &str) -> Self {
        self.name = cache_name(name);
        self
    }

    /// Private-cache mode: responses marked `private` are stored, per user. `user_key`
    /// names the user of a request (a session id, an account id); requests for which it
    /// returns `None` bypass the cache. Entries of one user are never served to another.
    pub fn private<F>(mut self, user_key: F) -> Self
    where
        F: Fn(&request::Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.mode = CacheMode::Private;
        self.user_key = Some(Arc::new(user_key));
        self
    }

    /// How long concurrent requests for a key being fetched wait for that fetch before
    /// going to the inner service on their own (default 10 s).
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

    /// The cache.
    pub fn build(self) -> ResponseCache<St> {
        ResponseCache {
            shared: Arc::new(Shared {
                store: self.store,
                config: Config {
                    name: self.name,
                    mode: self.mode,
                    user_key: self.user_key,
                    coalesce_timeout: self.coalesce_timeout,
                    refresh_ahead: self.refresh_ahead,
                },
                coalescer: Coalescer::default(),
            }),
        }
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
        ResponseCacheBuilder {
            store,
            name: "tower-etag".to_owned(),
            mode: CacheMode::Shared,
            user_key: None,
            coalesce_timeout: Duration::from_secs(10),
            refresh_ahead: None,
        }
    }

    /// The layer that puts this cache in front of a service.
    pub fn layer(&self) -> EtagCacheLayer<Self, Everything> {
        EtagCacheLayer::new(self.clone(), Everything)
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.shared.store
    }

    /// Stores `response` as the answer to `request` without asking the inner service
    /// ("delayed caching": a response computed elsewhere). The response must be storable
    /// under RFC 9111 (see [`CachePolicy::storable`]); returns whether it was stored.
    pub async fn insert(
        &self,
        request: Request<()>,
        response: Response<Bytes>,
    ) -> Result<bool, StoreError> {
        let (req_parts, ()) = request.into_parts();
        let (res_parts, body) = response.into_parts();
        let now = SystemTime::now();
        let policy = CachePolicy::new(&req_parts, &res_parts, now, now, self.shared.config.mode);
        if policy.storable().is_err() {
            return Ok(false);
        }
        let Some(primary) = self.primary_key(&req_parts) else {
            return Ok(false);
        };
        let index = self.read_index(&primary).await.ok().flatten();
        let policy = Arc::new(policy);
        let mut writer = self
            .variant_writer(&primary, index.as_ref(), &req_parts.headers, &policy, now)
            .await?;
        writer.write(&body)?;
        writer.commit()?;
        Ok(true)
    }

    /// Forgets every stored variant of a URL (`http://host/path?query`, or a path with the
    /// host given by the URI's authority). Returns whether anything was stored for it.
    pub async fn invalidate_url(&self, uri: &Uri) -> Result<bool, StoreError> {
        let request = Request::builder()
            .uri(uri.clone())
            .body(())
            .map_err(|e| StoreError::Backend(e.into()))?;
        let (parts, ()) = request.into_parts();
        match self.primary_key(&parts) {
            Some(primary) => self.invalidate_key(&primary).await,
            None => Ok(false),
        }
    }

    /// Forgets every stored variant under a primary key as the cache computes it
    /// (`host` + path and query, plus the user in private mode).
    pub async fn invalidate_key(&self, primary: &str) -> Result<bool, StoreError> {
        // Variants hang off the index's generation: without the index they are unreachable
        // and age out of the store.
        self.shared.store.remove(&entry::index_key(primary)).await
    }

    /// Forgets everything.
    pub async fn purge(&self) -> Result<(), StoreError> {
        self.shared.store.clear().await
    }

    /// The primary key of a request: host, path and query, and the user in private mode.
    /// `None` in private mode when the request has no user.
    pub(crate) fn primary_key(&self, parts: &request::Parts) -> Option<String> {
        let host = match parts.uri.authority() {
            Some(a) => std::borrow::Cow::Borrowed(a.as_str()),
            None => parts
                .headers
                .get(http::header::HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()))
                .unwrap_or_default(),
        };
        let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut key = String::with_capacity(host.len() + pq.len() + 64);
        key.push_str(&host);
        key.make_ascii_lowercase();
        key.push_str(pq);
        if let Some(user_key) = &self.shared.config.user_key {
            let user = user_key(parts)?;
            key.push_str("\u{0}user:");
            key.push_str(&user);
        }
        Some(key)
    }

    /// A writer for the variant of `policy` under `primary`, selected by `request_headers`:
    /// under the existing index when the response varies on the same fields, else under a
    /// new index (whose generation makes the old variants unreachable).
    pub(crate) async fn variant_writer(
        &self,
        primary: &str,
        existing: Option<&Arc<entry::Index>>,
        request_headers: &http::HeaderMap,
        policy: &Arc<CachePolicy>,
        now: SystemTime,
    ) -> Result<St::Writer, StoreError> {
        let ttl = policy.storage_ttl(now);
        let index = match existing {
            Some(i) if i.matches(policy) => Arc::clone(i),
            _ => {
                let i = Arc::new(entry::Index::new(policy));
                let index_ttl = ttl.max(Duration::from_secs(3600));
                let w =
                    self.shared
                        .store
                        .writer(&entry::index_key(primary), i.meta(), index_ttl)?;
                w.commit()?;
                i
            }
        };
        let variant = index.variant_key(primary, request_headers);
        self.shared.store.writer(&variant, entry::meta(policy), ttl)
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
