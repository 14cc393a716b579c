//! In-process benchmarks of `ResponseCache<MemoryStore>` (`cache.layer()`) against the bare
//! inner service. Every group holds the baseline and ours side by side; `benches/run.sh`
//! turns the medians into ratios.

mod common;

use bytes::Bytes;
use common::{
    config, current_thread, full, get, multi_thread, no_body, origin, payload, run, run_concurrent,
    Handler, NoReqBody, PER_TASK, TASKS,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{
    header::{ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_TYPE, VARY},
    Request, Response,
};
use http_body_util::{BodyExt, Full};
use std::{convert::Infallible, sync::Arc};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};
use tower_etag::{response_cache::ResponseCache, store::MemoryStore};

const LANGUAGES: [&str; 8] = ["en", "de", "fr", "es", "it", "nl", "pt", "ja"];

fn full_vary(body: &Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .header(CONTENT_TYPE, "text/plain")
        .header(CACHE_CONTROL, "max-age=3600")
        .header(VARY, "accept-language")
        .body(Full::new(body.clone()))
        .expect("response")
}

/// Sends `req` once and returns the status and `Cache-Status` of the answer.
fn probe<S, B>(rt: &Runtime, svc: &S, req: Request<NoReqBody>) -> (u16, String)
where
    S: Service<Request<NoReqBody>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut svc = svc.clone();
    rt.block_on(async {
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        let status = res
            .headers()
            .get("cache-status")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let code = res.status().as_u16();
        // The body is read to its end: a response is committed to the store only then.
        res.into_body().collect().await.expect("body");
        (code, status)
    })
}

/// Fresh hits of a 1 KiB and a 64 KiB body: the inner service is not called.
fn hit(c: &mut Criterion) {
    let rt = current_thread();
    for (group, size) in [("rc_hit_1k", 1024), ("rc_hit_64k", 64 * 1024)] {
        let bare = origin(payload(size), full as Handler<_>);
        let ours = ResponseCache::new(MemoryStore::new())
            .layer()
            .layer(bare.clone());
        let req = |_| get("/resource").body(no_body()).unwrap();
        probe(&rt, &ours, req(0));
        let (status, cache_status) = probe(&rt, &ours, req(0));
        assert!(
            status == 200 && cache_status.contains("hit"),
            "{cache_status}"
        );
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Bytes(size as u64));
        run(&mut g, &rt, BenchmarkId::from_parameter("bare"), &bare, req);
        run(&mut g, &rt, BenchmarkId::from_parameter("ours"), &ours, req);
        g.finish();
    }
}

/// One URL, `Vary: accept-language`, 8 variants stored side by side; requests rotate over
/// them, every one a hit.
fn vary(c: &mut Criterion) {
    let rt = current_thread();
    let bare = origin(payload(1024), full_vary as Handler<_>);
    let ours = ResponseCache::new(MemoryStore::new())
        .layer()
        .layer(bare.clone());
    let req = |n: u64| {
        get("/negotiated")
            .header(ACCEPT_LANGUAGE, LANGUAGES[(n % 8) as usize])
            .body(no_body())
            .unwrap()
    };
    for n in 0..8 {
        probe(&rt, &ours, req(n));
    }
    for n in 0..8 {
        let (_, cache_status) = probe(&rt, &ours, req(n));
        assert!(cache_status.contains("hit"), "variant {n}: {cache_status}");
    }
    let mut g = c.benchmark_group("rc_vary_8");
    g.throughput(Throughput::Elements(1));
    run(&mut g, &rt, BenchmarkId::from_parameter("bare"), &bare, req);
    run(&mut g, &rt, BenchmarkId::from_parameter("ours"), &ours, req);
    g.finish();
}

/// 10 000 distinct keys through a store bounded to 1024 entries: every request misses,
/// stores its 1 KiB response and evicts.
fn eviction_churn(c: &mut Criterion) {
    let rt = current_thread();
    let bare = origin(payload(1024), full as Handler<_>);
    let store = MemoryStore::builder().max_entries(1024).build();
    let ours = ResponseCache::new(store).layer().layer(bare.clone());
    let paths: Arc<[String]> = (0..10_000).map(|i| format!("/item/{i}")).collect();
    let req = move |n: u64| {
        get(&paths[(n % paths.len() as u64) as usize])
            .body(no_body())
            .unwrap()
    };
    let (_, cache_status) = probe(&rt, &ours, req(0));
    assert!(cache_status.contains("stored"), "{cache_status}");
    let mut g = c.benchmark_group("rc_keys_10k");
    g.throughput(Throughput::Elements(1));
    run(
        &mut g,
        &rt,
        BenchmarkId::from_parameter("bare"),
        &bare,
        req.clone(),
    );
    run(&mut g, &rt, BenchmarkId::from_parameter("ours"), &ours, req);
    g.finish();
}

/// Concurrent hits of one hot 1 KiB entry from four tasks on two workers.
fn contention(c: &mut Criterion) {
    let rt = multi_thread();
    let bare = origin(payload(1024), full as Handler<_>);
    let ours = ResponseCache::new(MemoryStore::new())
        .layer()
        .layer(bare.clone());
    let req = |_| get("/hot").body(no_body()).unwrap();
    probe(&rt, &ours, req(0));
    let mut g = c.benchmark_group("rc_contention");
    g.throughput(Throughput::Elements(TASKS * PER_TASK));
    run_concurrent(&mut g, &rt, BenchmarkId::from_parameter("bare"), &bare, req);
    run_concurrent(&mut g, &rt, BenchmarkId::from_parameter("ours"), &ours, req);
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = hit, vary, eviction_churn, contention
}
criterion_main!(benches);
