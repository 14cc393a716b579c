//! The response cache in front of an HTTP client: hyper-util's `Client` under
//! `ResponseCache::layer`, calling an API that this example runs on 127.0.0.1.
//!
//! ```sh
//! cargo run --example client
//! ```
//!
//! It calls `/config` (fresh for a minute: one origin call, then hits) and `/prices`
//! (`max-age=0` with an `ETag`: every call is revalidated, the origin answers `304`, the
//! application still gets the whole `200`), and prints what each call was.

use axum::{http::HeaderMap, routing::get, Router};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};
use tower::{ServiceBuilder, ServiceExt};
use tower_etag::{response_cache::ResponseCache, store::MemoryStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let origin_calls = Arc::new(AtomicUsize::new(0));
    let addr = serve_api(Arc::clone(&origin_calls)).await?;

    // The cache of this application's calls: a user agent's private cache (one user: a
    // backend calling for many users adds `.per_user(..)`), keyed by the absolute URL, in
    // memory.
    let cache = ResponseCache::builder(MemoryStore::new()).client().build();
    let client = ServiceBuilder::new()
        .layer(cache.layer())
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    for path in ["/config", "/config", "/config", "/prices", "/prices"] {
        let request = Request::get(format!("http://{addr}{path}")).body(Full::default())?;
        let response = client.clone().oneshot(request).await?;
        let status = response.status();
        let cache_status = response
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "GET {path}: {status} {:?} (Cache-Status: {cache_status})",
            String::from_utf8_lossy(&body)
        );
    }
    println!(
        "the origin was called {} times for 5 calls",
        origin_calls.load(Ordering::Relaxed)
    );
    Ok(())
}

/// A small API on a free loopback port: `/config` fresh for a minute, `/prices` always
/// revalidated.
async fn serve_api(calls: Arc<AtomicUsize>) -> std::io::Result<std::net::SocketAddr> {
    let counted = move || {
        let calls = Arc::clone(&calls);
        move || {
            calls.fetch_add(1, Ordering::Relaxed);
        }
    };
    let (config_call, prices_call) = (counted(), counted());
    let app = Router::new()
        .route(
            "/config",
            get(move || async move {
                config_call();
                ([("cache-control", "max-age=60")], "{\"feature\":true}")
            }),
        )
        .route(
            "/prices",
            get(move |headers: HeaderMap| async move {
                prices_call();
                let tag = "\"prices-v1\"";
                let cached = headers.get("if-none-match").is_some_and(|v| v == tag);
                let status = if cached {
                    http::StatusCode::NOT_MODIFIED
                } else {
                    http::StatusCode::OK
                };
                let body = if cached { "" } else { "{\"eur\":1.0}" };
                (
                    status,
                    [("cache-control", "max-age=0"), ("etag", tag)],
                    body,
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
