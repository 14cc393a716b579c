//! A deterministic request loop for instruction counts: `benches/ir.sh` runs it under
//! `valgrind --tool=callgrind` twice per scenario (N and 5 N requests) and divides the
//! difference in instructions by the difference in requests, so set-up cost cancels out.
//!
//! ```sh
//! cargo build --release -p bench-ir
//! target/release/bench-ir <scenario> <requests>
//! ```
//!
//! Its own crate, without criterion: the budget in CI builds it in release mode, and the
//! benchmarks' dev-dependencies would triple that build.
//!
//! Not timed: wall-clock numbers come from criterion (`benches/run.sh`).

#[path = "../../benches/common/requests.rs"]
mod common;

use common::{current_thread, drive, full, get, no_body, origin, payload, Handler, NoReqBody};
use http::{header::IF_NONE_MATCH, Request};
use std::hint::black_box;
use tower::{Layer, Service};
use tower_etag::EtagCacheLayer;
use tower_etag::{response_cache::ResponseCache, store::MemoryStore, ConstLruProvider};

const SCENARIOS: &str =
    "bare | etag_304 | etag_miss_1k | etag_invalidate | rc_hit_1k | rc_304 | rc_miss_1k";

fn main() {
    // `cargo bench` passes `--bench`; everything that is not a flag is ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(scenario), Some(n)) = (args.first(), args.get(1).and_then(|n| n.parse().ok())) else {
        eprintln!("usage: ir <{SCENARIOS}> <requests>");
        std::process::exit(2);
    };
    let rt = current_thread();
    let bare = origin(payload(1024), full as Handler<_>);
    let plain = |_: u64| get("/resource").body(no_body()).unwrap();
    match scenario.as_str() {
        "bare" => rt.block_on(run(bare, n, plain, 200)),
        "etag_304" => {
            let svc = EtagCacheLayer::with_default_predicate(ConstLruProvider::<1024>::init())
                .layer(bare);
            let etag = rt.block_on(first_etag(svc.clone()));
            let req = move |_| {
                get("/resource")
                    .header(IF_NONE_MATCH, etag.clone())
                    .body(no_body())
                    .unwrap()
            };
            rt.block_on(run(svc, n, req, 304));
        }
        "etag_miss_1k" => {
            // The same key every time: hashed and stored on each request.
            let svc = EtagCacheLayer::with_default_predicate(ConstLruProvider::<1024>::init())
                .layer(bare);
            rt.block_on(run(svc, n, plain, 200));
        }
        "etag_invalidate" => {
            // 1024 entries stored, then unsafe requests to one target: each invalidates it.
            let svc = EtagCacheLayer::with_default_predicate(ConstLruProvider::<1024>::init())
                .layer(bare);
            let fill = |i: u64| get(&format!("/r/{i}")).body(no_body()).unwrap();
            rt.block_on(run(svc.clone(), 1024, fill, 200));
            let post = |_| {
                get("/r/7")
                    .method(http::Method::POST)
                    .body(no_body())
                    .unwrap()
            };
            rt.block_on(run(svc, n, post, 200));
        }
        "rc_hit_1k" => {
            let svc = ResponseCache::new(MemoryStore::new()).layer().layer(bare);
            rt.block_on(run(svc.clone(), 1, plain, 200));
            rt.block_on(run(svc, n, plain, 200));
        }
        "rc_304" => {
            let svc = ResponseCache::new(MemoryStore::new()).layer().layer(
                EtagCacheLayer::with_default_predicate(ConstLruProvider::<16>::init()).layer(bare),
            );
            let etag = rt.block_on(first_etag(svc.clone()));
            let req = move |_| {
                get("/resource")
                    .header(IF_NONE_MATCH, etag.clone())
                    .body(no_body())
                    .unwrap()
            };
            rt.block_on(run(svc, n, req, 304));
        }
        "rc_miss_1k" => {
            // A new URL every time: look-up, inner call, store (and, past the bound,
            // eviction).
            let svc = ResponseCache::new(MemoryStore::builder().max_entries(1024).build())
                .layer()
                .layer(bare);
            let req = |i: u64| get(&format!("/r/{i}")).body(no_body()).unwrap();
            rt.block_on(run(svc, n, req, 200));
        }
        other => {
            eprintln!("unknown scenario {other}; one of {SCENARIOS}");
            std::process::exit(2);
        }
    }
}

async fn first_etag<S, B>(mut svc: S) -> http::HeaderValue
where
    S: Service<Request<NoReqBody>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    use tower::ServiceExt;
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(get("/resource").body(no_body()).unwrap())
        .await
        .unwrap();
    let etag = res.headers().get("etag").expect("an ETag").clone();
    http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap();
    etag
}

async fn run<S, B>(mut svc: S, n: u64, req: impl Fn(u64) -> Request<NoReqBody>, status: u16)
where
    S: Service<Request<NoReqBody>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    for i in 0..n {
        let (got, _) = black_box(drive(&mut svc, req(i)).await);
        assert_eq!(got, status, "request {i}");
    }
}
