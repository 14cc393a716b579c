//! Peak memory while a large generated body passes through a layer, in process:
//! `mem_stream --mode none|etag|cache [--bytes 1073741824] [--known] [--store-max-bytes N]`.
//!
//! The origin's `/big` makes the body 64 KiB at a time, each chunk a fresh allocation (as
//! from a socket), so a layer that kept chunks would show; the body is consumed and
//! discarded here. `none` is the baseline
//! (the same router without middleware); `etag` puts
//! `EtagCacheLayer::with_default_predicate(ConstLruProvider::<4096>::init())` in front;
//! `cache` puts a `ResponseCache` over a `MemoryStore` (default bounds, or
//! `--store-max-bytes`) in front (the response says
//! `public, max-age=3600`, so the cache tries to store it). With `--known` the body
//! announces its length (`Content-Length`), else its length is unknown (chunked).
//!
//! Prints one `key=value` line; run it under `/usr/bin/time -v` for "Maximum resident set
//! size" (the `peak_kib` printed here is the same number, `VmHWM`).

use axum::{body::Body, http::Request, Router};
use bench_load::{origin_router, rss, Args, Origin, GIB};
use http_body_util::BodyExt;
use std::time::{Duration, Instant};
use tower::ServiceExt;
use tower_etag::{
    response_cache::ResponseCache,
    store::{MemoryStore, DEFAULT_MAX_BYTES},
    ConstLruProvider, EtagCacheLayer,
};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let mode: String = args.get("mode", "none".to_owned());
    let len: u64 = args.get("bytes", GIB);
    let known = args.opt("known").is_some();
    let origin = origin_router(Origin::new(Duration::ZERO));
    let store = MemoryStore::builder()
        .max_bytes(args.get("store-max-bytes", DEFAULT_MAX_BYTES))
        .build();
    let app: Router = match mode.as_str() {
        "none" => origin,
        "etag" => origin.layer(EtagCacheLayer::with_default_predicate(ConstLruProvider::<
            4096,
        >::init())),
        "cache" => origin.layer(ResponseCache::new(store.clone()).layer()),
        other => {
            eprintln!("error: --mode {other}: none, etag or cache");
            std::process::exit(2);
        }
    };
    let (rss_before, peak_before) = rss();
    let uri = format!("/big?len={len}&known={}", u8::from(known));
    let request = Request::get(uri)
        .header("host", "bench")
        .body(Body::empty())
        .expect("valid request");
    let started = Instant::now();
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status();
    let etag = response.headers().contains_key("etag");
    let cache_status = response
        .headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .replace(' ', "");
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("body error");
        if let Some(data) = frame.data_ref() {
            received += data.len() as u64;
        }
    }
    let elapsed = started.elapsed();
    let (rss_after, peak) = rss();
    println!(
        "mode={mode} known_length={known} status={} bytes={received} expected={len} \
         secs={:.2} gib_per_s={:.2} etag={etag} cache_status={cache_status} \
         store_bytes={} rss_before_kib={rss_before} peak_before_kib={peak_before} \
         rss_after_kib={rss_after} peak_kib={peak} peak_growth_kib={}",
        status.as_u16(),
        elapsed.as_secs_f64(),
        received as f64 / GIB as f64 / elapsed.as_secs_f64(),
        store.bytes(),
        peak.saturating_sub(rss_before),
    );
    if received != len {
        eprintln!("error: received {received} bytes, expected {len}");
        std::process::exit(1);
    }
}
