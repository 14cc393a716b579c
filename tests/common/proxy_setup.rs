//! The caching proxy of `tower_etag::proxy` (the binary's own code, `crate::app`) in front of a real
//! origin, both on 127.0.0.1: what the proxy's end-to-end tests start from.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use crate::app::{caching_proxy, proxy_cache_builder, CacheFlags, ProxyConfig};
use crate::common::{eventually, Resp, TestServer};
use axum::{http::StatusCode, Router};
use std::time::SystemTime;
use tower_etag::{
    clock::ManualClock,
    response_cache::ResponseCache,
    store::{MemoryStore, Store},
};

/// An origin on 127.0.0.1 and the caching proxy in front of it.
pub struct Setup<St = MemoryStore> {
    pub origin: TestServer,
    pub proxy: TestServer,
    pub cache: ResponseCache<St>,
}

/// `app` as the origin behind a proxy with `cache`, keeping the client's `Host` if
/// `preserve_host`.
pub async fn setup_with<St: Store>(
    app: Router,
    cache: ResponseCache<St>,
    preserve_host: bool,
) -> Setup<St> {
    let origin = TestServer::start(app).await;
    let config = ProxyConfig {
        upstream: format!("http://{}", origin.addr).parse().unwrap(),
        preserve_host,
        trust_forwarded: false,
    };
    let proxy = TestServer::spawn(|listener| {
        crate::app::serve(listener, caching_proxy(&config, &cache).unwrap())
    })
    .await;
    Setup {
        origin,
        proxy,
        cache,
    }
}

/// `app` behind a proxy with the cache the proxy example makes by default.
pub async fn setup(app: Router) -> Setup {
    setup_with(
        app,
        proxy_cache_builder(MemoryStore::new(), &CacheFlags::default()).build(),
        false,
    )
    .await
}

/// [`setup`], with the cache reading a clock that moves only when the test moves it (from
/// the real time now): entries go stale without sleeping.
pub async fn setup_clocked(app: Router) -> (Setup, ManualClock) {
    let clock = ManualClock::new(SystemTime::now());
    let cache = proxy_cache_builder(MemoryStore::new(), &CacheFlags::default())
        .clock(clock.clone())
        .build();
    (setup_with(app, cache, false).await, clock)
}

/// Waits until the proxy has `path` stored, probing with `only-if-cached` (which never
/// reaches the origin): stores commit in the background after the response was sent.
pub async fn wait_until_stored<St>(s: &Setup<St>, path: &str) {
    assert!(stored(&s.proxy, path, &[]).await, "{path} was never stored");
}

/// Whether `proxy` comes to answer `path` from its store for a request with `headers`
/// (the `Host`, the fields a `Vary` selects on), polled with `only-if-cached` probes until
/// one is answered from the store (anything but a 504) or the deadline passes.
pub async fn stored(proxy: &TestServer, path: &str, headers: &[(&str, &str)]) -> bool {
    eventually(|| stored_now(proxy, path, headers)).await
}

/// Whether `proxy` answers `path` from its store now: one `only-if-cached` probe.
pub async fn stored_now(proxy: &TestServer, path: &str, headers: &[(&str, &str)]) -> bool {
    let mut probe = headers.to_vec();
    probe.push(("cache-control", "only-if-cached"));
    proxy.get(path, &probe).await.status != StatusCode::GATEWAY_TIMEOUT
}

/// The response's `Cache-Status`, or "".
pub fn status_of(r: &Resp) -> String {
    r.header("cache-status").unwrap_or_default()
}
