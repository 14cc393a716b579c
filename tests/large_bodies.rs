//! A 1 GiB body through the caching proxy into a store and back out of it, with bounded
//! memory: the file store, then (when `redis-server` is there) the Redis store. Its own test
//! binary, one test, so that the process's peak RSS is this test's alone.

use tower_etag::proxy as app;
mod common;
#[path = "common/proxy_setup.rs"]
mod proxy_setup;
#[path = "common/redis_server.rs"]
mod redis_server;

use app::{proxy_cache, CacheFlags};
use axum::{http::StatusCode, routing::get, Router};
use bytes::Bytes;
use common::{HintedBody, TestServer};
use http_body_util::BodyExt as _;
use proxy_setup::setup_with;
use tower_etag::store::{FsStore, Store};

const GIB: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;

/// The peak RSS (VmHWM) in KiB, after resetting it when `reset`.
fn peak_rss_kib(reset: bool) -> u64 {
    if reset {
        // Linux: "5" resets the peak resident set size to the current one.
        std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// An origin whose `/huge` is 1 GiB of one repeated 64 KiB chunk, streamed.
fn origin() -> Router {
    let chunk = Bytes::from(pattern()[..CHUNK].to_vec());
    Router::new().route(
        "/huge",
        get(move || {
            let chunk = chunk.clone();
            async move {
                let chunks = (GIB / CHUNK as u64) as usize;
                let stream = futures_util::stream::iter(
                    std::iter::repeat_n(chunk, chunks).map(Ok::<_, common::BoxError>),
                );
                axum::http::Response::builder()
                    .header("cache-control", "max-age=3600")
                    .header("etag", "\"huge\"")
                    .body(HintedBody::exact(stream, GIB))
                    .unwrap()
            }
        }),
    )
}

/// Reads the whole body, checking each byte against the pattern, holding one chunk at most.
async fn read_and_check(proxy: &TestServer) -> (u64, String) {
    let res = proxy
        .send_streaming(axum::http::Method::GET, "/huge", &[])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let status = res
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let pattern = pattern();
    let mut body = res.into_body();
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        let data = frame
            .expect("the body reads to its end")
            .into_data()
            .unwrap();
        // Compared a slice at a time (a memcmp even in a debug build), a piece of at most
        // one chunk against the pattern from where the piece starts in its chunk.
        for (n, piece) in data.chunks(CHUNK).enumerate() {
            let at = seen + (n * CHUNK) as u64;
            let from = (at % CHUNK as u64) as usize;
            assert!(
                piece == &pattern[from..from + piece.len()],
                "bytes from {at} differ from the origin's"
            );
        }
        seen += data.len() as u64;
    }
    (seen, status)
}

/// The origin's chunk twice over: any run of at most one chunk's length, starting anywhere
/// in a chunk, is a slice of it.
fn pattern() -> Vec<u8> {
    (0..2 * CHUNK).map(|i| ((i % CHUNK) % 251) as u8).collect()
}

/// Stores the body through a proxy on `store`, then serves it from there; returns the peak
/// RSS growth in MiB.
async fn through<St: Store>(name: &str, store: St) -> u64 {
    let s = setup_with(origin(), proxy_cache(store, &CacheFlags::default()), false).await;
    let before = peak_rss_kib(true);
    let (len, status) = read_and_check(&s.proxy).await;
    assert_eq!(len, GIB, "{name}: the whole body on the miss");
    assert!(status.contains("miss"), "{name}: {status}");
    let stored = common::eventually(|| async {
        let probe = [("cache-control", "only-if-cached")];
        let res = s
            .proxy
            .send_streaming(axum::http::Method::HEAD, "/huge", &probe)
            .await;
        res.status() == StatusCode::OK
    })
    .await;
    assert!(stored, "{name}: the 1 GiB body was never stored");
    let (len, status) = read_and_check(&s.proxy).await;
    assert_eq!(len, GIB, "{name}: the whole body on the hit");
    assert!(status.contains("hit"), "{name}: {status}");
    let growth = peak_rss_kib(false).saturating_sub(before) / 1024;
    eprintln!("{name}: 1 GiB stored and served; peak RSS grew {growth} MiB");
    growth
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gib_body_is_stored_and_served_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::builder()
        .max_bytes(2 * GIB)
        .max_entry_bytes(2 * GIB)
        .open(dir.path())
        .await
        .unwrap();
    let growth = through("FsStore", fs).await;
    assert!(growth <= 32, "FsStore: peak RSS grew {growth} MiB");

    #[cfg(feature = "redis")]
    {
        let Some(server) = redis_server::RedisServer::start_or_skip("a_gib_body (Redis part)")
        else {
            return;
        };
        let redis = tower_etag::store::RedisStore::builder()
            .deadline(std::time::Duration::from_secs(5))
            .max_entry_bytes(2 * GIB)
            .connect(&server.url())
            .await
            .unwrap();
        let growth = through("RedisStore", redis).await;
        assert!(growth <= 32, "RedisStore: peak RSS grew {growth} MiB");
    }
}
