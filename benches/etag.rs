//! In-process benchmarks of `EtagCacheLayer` + `ConstLruProvider` against the bare inner
//! service (and raw `blake3` for hashing). Every group holds the baseline and ours side by
//! side; `benches/run.sh` turns the medians into ratios.

mod common;

use common::{
    chunks, config, current_thread, drive, full, get, multi_thread, no_body, origin, payload, run,
    run_concurrent, ChunkedBody, Handler, NoReqBody, PER_TASK, TASKS,
};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{
    header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH},
    HeaderValue, Request, Response,
};
use http_body::Body;
use std::{convert::Infallible, future::ready, sync::Arc, time::Duration};
use tokio::runtime::Runtime;
use tower::{service_fn, Layer, Service};
use tower_etag::{ConstLruProvider, EtagCacheLayer};

fn etag_of<S, B>(rt: &Runtime, svc: &S, path: &str) -> HeaderValue
where
    S: Service<Request<NoReqBody>, Response = Response<B>, Error = Infallible> + Clone,
    B: Body,
{
    let mut svc = svc.clone();
    rt.block_on(async {
        use tower::ServiceExt;
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(get(path).body(no_body()).unwrap())
            .await
            .unwrap();
        res.headers().get(ETAG).expect("an ETag").clone()
    })
}

fn conditional(
    path: &'static str,
    etag: HeaderValue,
) -> impl Fn(u64) -> Request<NoReqBody> + Clone {
    move |_| {
        get(path)
            .header(IF_NONE_MATCH, etag.clone())
            .body(no_body())
            .unwrap()
    }
}

fn plain(path: &'static str) -> impl Fn(u64) -> Request<NoReqBody> + Clone {
    move |_| get(path).body(no_body()).unwrap()
}

/// 304 on a matching `If-None-Match`, answered from a fresh entry.
fn not_modified(c: &mut Criterion) {
    let rt = current_thread();
    let bare = origin(payload(1024), full as Handler<_>);
    let ours = EtagCacheLayer::with_default_predicate(ConstLruProvider::<1024>::init())
        .layer(bare.clone());
    let etag = etag_of(&rt, &ours, "/resource");
    let req = conditional("/resource", etag);
    assert_eq!(rt.block_on(drive(&mut ours.clone(), req(0))), (304, 0));
    let mut g = c.benchmark_group("etag_304_hit");
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

/// A miss: the inner service runs, its 1 KiB body is hashed, the tag stored.
fn miss_1k(c: &mut Criterion) {
    let rt = current_thread();
    let bare = origin(payload(1024), full as Handler<_>);
    let ours = EtagCacheLayer::with_default_predicate(ConstLruProvider::<1024>::init())
        .layer(bare.clone());
    let req = plain("/resource");
    assert_eq!(rt.block_on(drive(&mut ours.clone(), req(0))), (200, 1024));
    let mut g = c.benchmark_group("etag_miss_1k");
    g.throughput(Throughput::Elements(1));
    // The physical floor of what a miss adds: hashing the same 1 KiB.
    let body = payload(1024);
    g.bench_function("blake3", |b| b.iter(|| blake3::hash(black_box(&body))));
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

/// Hash throughput on large bodies delivered in 64 KiB frames, against `blake3::hash` on
/// the same bytes.
fn hash_large(c: &mut Criterion) {
    let rt = current_thread();
    let mut g = c.benchmark_group("etag_hash");
    g.sample_size(10);
    for (label, size) in [("1MiB", 1usize << 20), ("64MiB", 64 << 20)] {
        let body = payload(size);
        let frames = chunks(&body);
        g.throughput(Throughput::Bytes(size as u64));
        if size > 1 << 20 {
            g.measurement_time(Duration::from_secs(4));
        }
        g.bench_with_input(BenchmarkId::new("blake3", label), &body, |b, body| {
            b.iter(|| blake3::hash(black_box(body)));
        });
        let bare = service_fn(move |_req: Request<NoReqBody>| {
            ready(Ok::<_, Infallible>(
                Response::builder()
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(ChunkedBody::new(Arc::clone(&frames)))
                    .expect("response"),
            ))
        });
        let provider = ConstLruProvider::<16>::builder()
            .max_body_size(128 << 20)
            .build();
        let ours = EtagCacheLayer::with_default_predicate(provider).layer(bare.clone());
        let req = plain("/large");
        assert_eq!(rt.block_on(drive(&mut ours.clone(), req(0))), (200, size));
        assert!(ours.provider().len() == 1, "the large body was not tagged");
        run(
            &mut g,
            &rt,
            BenchmarkId::new("bare", label),
            &bare,
            req.clone(),
        );
        run(&mut g, &rt, BenchmarkId::new("ours", label), &ours, req);
    }
    g.finish();
}

/// 10 000 distinct keys through a 1024-entry cache: every request misses, hashes, stores
/// and evicts.
fn eviction_churn(c: &mut Criterion) {
    let rt = current_thread();
    let bare = origin(payload(1024), full as Handler<_>);
    let ours = EtagCacheLayer::with_default_predicate(ConstLruProvider::<1024>::init())
        .layer(bare.clone());
    let paths: Arc<[String]> = (0..10_000).map(|i| format!("/item/{i}")).collect();
    let req = move |n: u64| {
        get(&paths[(n % paths.len() as u64) as usize])
            .body(no_body())
            .unwrap()
    };
    let mut g = c.benchmark_group("etag_keys_10k");
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

/// Concurrent 304 lookups of one hot entry from four tasks on two workers.
fn contention(c: &mut Criterion) {
    let rt = multi_thread();
    let bare = origin(payload(1024), full as Handler<_>);
    let ours = EtagCacheLayer::with_default_predicate(ConstLruProvider::<1024>::init())
        .layer(bare.clone());
    let etag = etag_of(&rt, &ours, "/hot");
    let req = conditional("/hot", etag);
    let mut g = c.benchmark_group("etag_contention");
    g.throughput(Throughput::Elements(TASKS * PER_TASK));
    run_concurrent(
        &mut g,
        &rt,
        BenchmarkId::from_parameter("bare"),
        &bare,
        req.clone(),
    );
    run_concurrent(&mut g, &rt, BenchmarkId::from_parameter("ours"), &ours, req);
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = not_modified, miss_1k, hash_large, eviction_churn, contention
}
criterion_main!(benches);
