//! A caching reverse proxy built from the crate (feature `proxy`): the service a user can
//! mount in their own server, and what the `tower-etag-proxy` binary runs.
//!
//! Every method, path, query and header is forwarded to one HTTP/1.1 upstream (`Host`
//! rewritten unless [`ProxyConfig::preserve_host`]; the client's `Forwarded`,
//! `X-Forwarded-*` and method-override fields dropped unless
//! [`ProxyConfig::trust_forwarded`], and `X-Forwarded-For` / `X-Forwarded-Proto` set),
//! bodies stream both ways, and responses are cached as a shared cache (RFC 9111) by a
//! [`ResponseCache`] over any store.
//!
//! ```no_run
//! use tower_etag::proxy::{caching_proxy, proxy_cache, serve, CacheFlags, ProxyConfig};
//! use tower_etag::store::MemoryStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ProxyConfig {
//!     upstream: "http://127.0.0.1:8000".parse()?,
//!     ..ProxyConfig::default()
//! };
//! let cache = proxy_cache(MemoryStore::new(), &CacheFlags::default());
//! let proxy = caching_proxy(&config, &cache)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! serve(listener, proxy).await;
//! # Ok(())
//! # }
//! ```
//!
//! [`Prepared`] and [`Forward`] are tower services: put the cache's layer (or any other)
//! between them to build another proxy.

mod fields;
mod forward;
mod serve;
mod stores;

pub use forward::Forward;
pub use serve::{serve, serve_with, Prepared, ServeOptions};
pub use stores::{open_store, StoreSizes};

use crate::{
    response_cache::{Everything, ResponseCache, ResponseCacheBuilder},
    store::Store,
    BoxError, EtagCache,
};
use bytes::Bytes;
use http::{HeaderName, Uri};
use std::{fmt, time::Duration};

/// The body of the proxy's requests to the upstream and of the responses it did not take
/// from its cache.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Where and how to forward.
#[derive(Clone, Debug, Default)]
pub struct ProxyConfig {
    /// The origin: `http://host:port`.
    pub upstream: Uri,
    /// Keep the client's `Host` instead of the upstream's.
    pub preserve_host: bool,
    /// Forward the client's `Forwarded`, `X-Forwarded-*` and method-override fields: only
    /// behind another proxy that sets them itself. Otherwise a client could make the origin
    /// build a page for another host or method, which the cache would then serve to
    /// everyone (unkeyed-header cache poisoning).
    pub trust_forwarded: bool,
}

/// A setting the proxy cannot run with (an upstream that is not `http://host:port`, a store
/// that cannot be opened), said as the command line would name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The proxy without a cache: every request is prepared and forwarded.
pub fn forwarder(config: &ProxyConfig) -> Result<Prepared<Forward>, ConfigError> {
    Ok(Prepared::new(Forward::new(config)?, config.trust_forwarded))
}

/// The caching proxy's service: requests prepared, then the cache, then [`Forward`].
pub type CachingProxy<St> = Prepared<EtagCache<Forward, ResponseCache<St>, Everything>>;

/// The caching reverse proxy: the forwarding behind `cache`'s layer, and the preparation of
/// requests in front of the cache (so the cache keys on what the origin gets).
pub fn caching_proxy<St: Store>(
    config: &ProxyConfig,
    cache: &ResponseCache<St>,
) -> Result<CachingProxy<St>, ConfigError> {
    let forward = Forward::new(config)?;
    Ok(Prepared::new(
        tower_layer::Layer::layer(&cache.layer(), forward),
        config.trust_forwarded,
    ))
}

/// How the proxy's cache reads responses.
#[derive(Clone, Debug)]
pub struct CacheFlags {
    /// Mint validators for responses without one (`--mint-etags`; off: in front of an
    /// origin it does not speak for, clients see the origin's validators only).
    pub mint_etags: bool,
    /// The targeted cache-control fields it follows (RFC 9213), most applicable first:
    /// `CDN-Cache-Control` unless `--targeted` names others (`--targeted none`: none).
    pub targeted: Vec<HeaderName>,
    /// Keep them in responses (`--forward-targeted`), for CDN caches further downstream.
    pub forward_targeted: bool,
    /// Serve entries this long past their freshness while the origin cannot be reached
    /// (`--stale-if-unreachable SECS`; none by default).
    pub grace: Duration,
}

impl Default for CacheFlags {
    fn default() -> Self {
        Self {
            mint_etags: false,
            targeted: vec![HeaderName::from_static("cdn-cache-control")],
            forward_targeted: false,
            grace: Duration::ZERO,
        }
    }
}

/// The proxy's cache over `store`: a shared cache, read as `flags` say.
pub fn proxy_cache<St: Store>(store: St, flags: &CacheFlags) -> ResponseCache<St> {
    proxy_cache_builder(store, flags).build()
}

/// [`proxy_cache`]'s builder, for settings the flags do not reach (a clock, say).
pub fn proxy_cache_builder<St: Store>(store: St, flags: &CacheFlags) -> ResponseCacheBuilder<St> {
    ResponseCache::builder(store)
        .mint_etags(flags.mint_etags)
        .targeted_cache_control(flags.targeted.iter().cloned())
        .forward_targeted(flags.forward_targeted)
        .stale_if_unreachable(flags.grace)
}
