//! Memory of a bounded `MemoryStore` after many distinct keys:
//! `mem_keys [--keys 100000] [--max-bytes 67108864] [--body 1024] [--via inproc|proxy]
//! [--copy-bodies]`.
//!
//! Requests `GET /k/{i}` for `keys` distinct `i` through `ResponseCache::layer()` over
//! `MemoryStore::builder().max_bytes(max_bytes)`. Every response is 1 KiB (`--body`),
//! `Cache-Control: public, max-age=3600`, so every one is stored and the store must evict to
//! stay within its bound.
//!
//! - `--via inproc` (default): the handler is in process; each body is a fresh allocation.
//! - `--via proxy`: the cache is the one of `tower_etag::proxy` and the handler is an origin on
//!   127.0.0.1 reached through hyper, so stored bodies are the slices hyper reads from the
//!   socket (as in production). `--copy-bodies` copies each upstream body into an allocation
//!   of its own before the cache sees it, to tell the cost of those slices apart.
//!
//! Prints `store.bytes()`, `store.len()` and `VmRSS` (from `/proc/self/status`) before and
//! after.

use axum::{
    body::Body,
    extract::Path,
    http::{header, Request},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use bench_load::{
    app::{caching_proxy, forwarder, ProxyConfig},
    rss, Args,
};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::time::Instant;
use tower::ServiceExt;
use tower_etag::{response_cache::ResponseCache, store::MemoryStore};

async fn copy_body(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Response::from_parts(parts, Body::from(Bytes::copy_from_slice(&bytes)))
}

fn handler_router(body: Bytes) -> Router {
    Router::new().route(
        "/k/{i}",
        get(move |Path(i): Path<u64>| {
            // A fresh allocation per response, as a handler that renders something has.
            let body = Bytes::copy_from_slice(&body);
            async move {
                (
                    [
                        (header::CACHE_CONTROL, "public, max-age=3600".to_owned()),
                        (header::CONTENT_TYPE, "text/plain".to_owned()),
                        (header::ETAG, format!("\"k{i}\"")),
                    ],
                    body,
                )
                    .into_response()
            }
        }),
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let keys: u64 = args.get("keys", 100_000);
    let max_bytes: u64 = args.get("max-bytes", 64 << 20);
    let body_len: usize = args.get("body", 1024);
    let via: String = args.get("via", "inproc".to_owned());
    let body = Bytes::from(vec![b'k'; body_len]);
    let store = MemoryStore::builder().max_bytes(max_bytes).build();
    let cache = ResponseCache::new(store.clone());
    let app: Router = match via.as_str() {
        "inproc" => handler_router(body).layer(cache.layer()),
        "proxy" => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0");
            let addr = listener.local_addr().expect("local addr");
            tokio::spawn(async move { axum::serve(listener, handler_router(body)).await });
            let config = ProxyConfig {
                upstream: format!("http://{addr}").parse().expect("valid URI"),
                preserve_host: false,
                trust_forwarded: false,
            };
            if args.opt("copy-bodies").is_some() {
                // The same proxy, but each upstream body copied into an allocation of its
                // own before the cache sees it: isolates what the slices of hyper's read
                // buffer cost.
                axum::Router::new()
                    .fallback_service(forwarder(&config).expect("proxy"))
                    .layer(axum::middleware::map_response(copy_body))
                    .layer(cache.layer())
            } else {
                axum::Router::new().fallback_service(caching_proxy(&config, &cache).expect("proxy"))
            }
        }
        other => {
            eprintln!("error: --via {other}: inproc or proxy");
            std::process::exit(2);
        }
    };
    let (rss_before, _) = rss();
    let started = Instant::now();
    let mut stored = 0u64;
    for i in 0..keys {
        let request = Request::get(format!("/k/{i}"))
            .header("host", "bench")
            .body(Body::empty())
            .expect("valid request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        if response
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|s| s.contains("stored"))
        {
            stored += 1;
        }
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(bytes.len(), body_len, "key {i}");
    }
    let elapsed = started.elapsed();
    let (rss_after, peak) = rss();
    let held = store.bytes();
    println!(
        "via={via}{} keys={keys} body={body_len} stored_responses={stored} secs={:.2} \
         max_bytes={max_bytes} store_bytes={held} store_len={} within_bound={} \
         rss_before_kib={rss_before} rss_after_kib={rss_after} rss_growth_kib={} peak_kib={peak}",
        if args.opt("copy-bodies").is_some() {
            "+copy-bodies"
        } else {
            ""
        },
        elapsed.as_secs_f64(),
        store.len(),
        held <= max_bytes,
        rss_after.saturating_sub(rss_before),
    );
}
