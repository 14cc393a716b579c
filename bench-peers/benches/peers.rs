//! The peers of tower-etag, in the same scenarios and under the same group names as the
//! main crate's `benches/etag.rs` and `benches/response_cache.rs`, each group with its own
//! bare-service baseline measured in the same run.
//!
//! - tower-etag-cache 0.1 (http 0.2 / http-body 0.4 / tower 0.4): the ETag scenarios.
//! - tower-http-cache 0.6 and http-cache-tower-server 0.2 (http 1 / tower 0.5): the response
//!   cache scenarios.

#[path = "../../benches/common/mod.rs"]
mod common;

use bytes::{Buf, Bytes};
use common::{
    chunks, config, current_thread, full, get, multi_thread, origin, payload, run, run_concurrent,
    Handler, CHUNK, PER_TASK, TASKS,
};
use criterion::{
    black_box, criterion_group, criterion_main, measurement::WallTime, BenchmarkGroup, BenchmarkId,
    Criterion, Throughput,
};
use http::{
    header::{ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_TYPE, VARY},
    Request, Response,
};
use http_body_util::Full;
use http_cache_tower_server::{CustomKeyer, ServerCacheLayer};
use std::{
    convert::Infallible,
    future::{ready, Ready},
    pin::{pin, Pin},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tokio::runtime::Runtime;
use tower::{util::BoxCloneService, Layer};
use tower_etag_cache::{const_lru_provider::ConstLruProvider as OldProvider, EtagCacheLayer};
use tower_http_cache::prelude::{CacheLayer, InMemoryBackend};

const OLD: &str = "tower-etag-cache-0.1";
const OLD_BARE: &str = "bare-http02";
const THC: &str = "tower-http-cache-0.6";
const HCTS: &str = "http-cache-tower-server-0.2";
const BARE: &str = "bare-peers";

// ---------------------------------------------------------------------------------------
// http 0.2 / http-body 0.4 / tower 0.4 plumbing for tower-etag-cache 0.1

type Req02 = http02::Request<()>;

fn get02(path: &str) -> http02::request::Builder {
    http02::Request::builder()
        .uri(path)
        .header(http02::header::HOST, common::HOST_NAME)
}

fn origin02<B, F>(
    body: Bytes,
    make: F,
) -> impl tower04::Service<
    Req02,
    Response = http02::Response<B>,
    Error = Infallible,
    Future = Ready<Result<http02::Response<B>, Infallible>>,
> + Clone
       + Send
       + 'static
where
    F: Fn(&Bytes) -> http02::Response<B> + Clone + Send + 'static,
{
    tower04::service_fn(move |_req: Req02| ready(Ok(make(&body))))
}

fn full02(body: &Bytes) -> http02::Response<http_body04::Full<Bytes>> {
    http02::Response::builder()
        .header(http02::header::CONTENT_TYPE, "text/plain")
        .header(http02::header::CACHE_CONTROL, "max-age=3600")
        .body(http_body04::Full::new(body.clone()))
        .expect("response")
}

/// The http-body 0.4 twin of `common::ChunkedBody`.
struct ChunkedBody04 {
    chunks: Arc<[Bytes]>,
    next: usize,
    remaining: u64,
}

impl http_body04::Body for ChunkedBody04 {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_data(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Infallible>>> {
        let this = &mut *self;
        match this.chunks.get(this.next) {
            Some(chunk) => {
                this.next += 1;
                this.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk.clone())))
            }
            None => Poll::Ready(None),
        }
    }

    fn poll_trailers(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Result<Option<http02::HeaderMap>, Infallible>> {
        Poll::Ready(Ok(None))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body04::SizeHint {
        http_body04::SizeHint::with_exact(self.remaining)
    }
}

async fn drive02<S, B>(svc: &mut S, req: Req02) -> (u16, usize)
where
    S: tower04::Service<Req02, Response = http02::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body04::Body,
    B::Error: std::fmt::Debug,
{
    use http_body04::Body as _;
    use tower04::ServiceExt as _;
    let res = svc
        .ready()
        .await
        .expect("ready")
        .call(req)
        .await
        .expect("call");
    let status = res.status().as_u16();
    let mut body = pin!(res.into_body());
    let mut len = 0;
    while let Some(data) = body.data().await {
        len += data.expect("body").remaining();
    }
    (status, len)
}

fn run02<S, B>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    id: BenchmarkId,
    svc: &S,
    req: impl Fn(u64) -> Req02 + Clone + 'static,
) where
    S: tower04::Service<Req02, Response = http02::Response<B>> + Clone + 'static,
    S::Error: std::fmt::Debug,
    B: http_body04::Body,
    B::Error: std::fmt::Debug,
{
    let seq = Arc::new(AtomicU64::new(0));
    g.bench_function(id, |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (mut svc, req, seq) = (svc.clone(), req.clone(), Arc::clone(&seq));
            async move {
                let first = seq.fetch_add(iters, Ordering::Relaxed);
                let start = Instant::now();
                for n in first..first + iters {
                    black_box(drive02(&mut svc, req(n)).await);
                }
                start.elapsed()
            }
        });
    });
}

fn run02_concurrent<S, B>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    id: BenchmarkId,
    svc: &S,
    req: impl Fn(u64) -> Req02 + Clone + Send + 'static,
) where
    S: tower04::Service<Req02, Response = http02::Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
    B: http_body04::Body + Send,
    B::Data: Send,
    B::Error: std::fmt::Debug,
{
    g.bench_function(id, |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (svc, req) = (svc.clone(), req.clone());
            async move {
                let start = Instant::now();
                let tasks: Vec<_> = (0..TASKS)
                    .map(|t| {
                        let (mut svc, req) = (svc.clone(), req.clone());
                        tokio::spawn(async move {
                            for n in 0..iters * PER_TASK {
                                black_box(drive02(&mut svc, req(t * 1_000_003 + n)).await);
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task");
                }
                start.elapsed()
            }
        });
    });
}

/// The old crate's layer over `inner`; its provider is an actor task spawned on `rt`.
macro_rules! old_layer {
    ($rt:expr, $body:ty, $cap:literal, $inner:expr) => {{
        let _guard = $rt.enter();
        let provider = OldProvider::<(), $body, $cap>::init(1024);
        EtagCacheLayer::with_default_predicate(provider).layer($inner)
    }};
}

fn etag02<S, B>(rt: &Runtime, svc: &S, path: &str) -> http02::HeaderValue
where
    S: tower04::Service<Req02, Response = http02::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    use tower04::ServiceExt as _;
    rt.block_on(svc.clone().oneshot(get02(path).body(()).unwrap()))
        .expect("call")
        .headers()
        .get(http02::header::ETAG)
        .expect("an ETag")
        .clone()
}

fn conditional02(path: &'static str, etag: http02::HeaderValue) -> impl Fn(u64) -> Req02 + Clone {
    move |_| {
        get02(path)
            .header(http02::header::IF_NONE_MATCH, etag.clone())
            .body(())
            .unwrap()
    }
}

fn old_not_modified(c: &mut Criterion) {
    let rt = current_thread();
    let bare = origin02(payload(1024), full02 as fn(&Bytes) -> _);
    let old = old_layer!(rt, http_body04::Full<Bytes>, 1024, bare.clone());
    let req = conditional02("/resource", etag02(&rt, &old, "/resource"));
    assert_eq!(rt.block_on(drive02(&mut old.clone(), req(0))), (304, 0));
    let mut g = c.benchmark_group("etag_304_hit");
    g.throughput(Throughput::Elements(1));
    run02(
        &mut g,
        &rt,
        BenchmarkId::from_parameter(OLD_BARE),
        &bare,
        req.clone(),
    );
    run02(&mut g, &rt, BenchmarkId::from_parameter(OLD), &old, req);
    g.finish();
}

fn old_miss_1k(c: &mut Criterion) {
    let rt = current_thread();
    let bare = origin02(payload(1024), full02 as fn(&Bytes) -> _);
    let old = old_layer!(rt, http_body04::Full<Bytes>, 1024, bare.clone());
    let req = |_| get02("/resource").body(()).unwrap();
    assert_eq!(rt.block_on(drive02(&mut old.clone(), req(0))), (200, 1024));
    let mut g = c.benchmark_group("etag_miss_1k");
    g.throughput(Throughput::Elements(1));
    run02(
        &mut g,
        &rt,
        BenchmarkId::from_parameter(OLD_BARE),
        &bare,
        req,
    );
    run02(&mut g, &rt, BenchmarkId::from_parameter(OLD), &old, req);
    g.finish();
}

fn old_hash_large(c: &mut Criterion) {
    let rt = current_thread();
    let mut g = c.benchmark_group("etag_hash");
    g.sample_size(10);
    for (label, size) in [("1MiB", 1usize << 20), ("64MiB", 64 << 20)] {
        let frames = chunks(&payload(size));
        assert_eq!(frames[0].len(), CHUNK);
        g.throughput(Throughput::Bytes(size as u64));
        if size > 1 << 20 {
            g.measurement_time(Duration::from_secs(4));
        }
        let bare = tower04::service_fn(move |_req: Req02| {
            ready(Ok::<_, Infallible>(
                http02::Response::builder()
                    .header(http02::header::CONTENT_TYPE, "application/octet-stream")
                    .body(ChunkedBody04 {
                        chunks: Arc::clone(&frames),
                        next: 0,
                        remaining: size as u64,
                    })
                    .expect("response"),
            ))
        });
        let old = old_layer!(rt, ChunkedBody04, 16, bare.clone());
        let req = |_| get02("/large").body(()).unwrap();
        assert_eq!(rt.block_on(drive02(&mut old.clone(), req(0))), (200, size));
        run02(&mut g, &rt, BenchmarkId::new(OLD_BARE, label), &bare, req);
        run02(&mut g, &rt, BenchmarkId::new(OLD, label), &old, req);
    }
    g.finish();
}

fn old_eviction_churn(c: &mut Criterion) {
    let rt = current_thread();
    let bare = origin02(payload(1024), full02 as fn(&Bytes) -> _);
    let old = old_layer!(rt, http_body04::Full<Bytes>, 1024, bare.clone());
    let paths: Arc<[String]> = (0..10_000).map(|i| format!("/item/{i}")).collect();
    let req = move |n: u64| {
        get02(&paths[(n % paths.len() as u64) as usize])
            .body(())
            .unwrap()
    };
    let mut g = c.benchmark_group("etag_keys_10k");
    g.throughput(Throughput::Elements(1));
    run02(
        &mut g,
        &rt,
        BenchmarkId::from_parameter(OLD_BARE),
        &bare,
        req.clone(),
    );
    run02(&mut g, &rt, BenchmarkId::from_parameter(OLD), &old, req);
    g.finish();
}

fn old_contention(c: &mut Criterion) {
    let rt = multi_thread();
    let bare = origin02(payload(1024), full02 as fn(&Bytes) -> _);
    let old = old_layer!(rt, http_body04::Full<Bytes>, 1024, bare.clone());
    let req = conditional02("/hot", etag02(&rt, &old, "/hot"));
    let mut g = c.benchmark_group("etag_contention");
    g.throughput(Throughput::Elements(TASKS * PER_TASK));
    run02_concurrent(
        &mut g,
        &rt,
        BenchmarkId::from_parameter(OLD_BARE),
        &bare,
        req.clone(),
    );
    run02_concurrent(&mut g, &rt, BenchmarkId::from_parameter(OLD), &old, req);
    g.finish();
}

// ---------------------------------------------------------------------------------------
// The http 1 response caches

fn thc_layer(capacity: u64) -> CacheLayer<InMemoryBackend> {
    CacheLayer::builder(InMemoryBackend::new(capacity))
        .ttl(Duration::from_secs(3600))
        .build()
}

fn hcts_layer(capacity: u64) -> ServerCacheLayer<http_cache::MokaManager> {
    ServerCacheLayer::new(http_cache::MokaManager::new(moka::future::Cache::new(
        capacity,
    )))
}

/// An origin that counts its calls (only to check that a layer answers from its cache).
fn counting(body: Bytes, make: Handler<Full<Bytes>>, calls: Arc<AtomicUsize>) -> Counting {
    BoxCloneService::new(tower::service_fn(move |_req: Request<()>| {
        calls.fetch_add(1, Ordering::Relaxed);
        ready(Ok::<_, Infallible>(make(&body)))
    }))
}

/// Sends requests `0..n` through `svc` (bodies read to the end), then lets spawned
/// write-behind stores finish.
fn prime<S, B>(rt: &Runtime, svc: &S, req: impl Fn(u64) -> Request<()>, n: u64)
where
    S: tower::Service<Request<()>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut svc = svc.clone();
    rt.block_on(async {
        for i in 0..n {
            common::drive(&mut svc, req(i)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
}

/// Checks that `layer` answers requests `0..variants` from its cache once primed: the inner
/// service is not called again.
fn assert_hits<L, B>(
    rt: &Runtime,
    layer: &L,
    make: Handler<Full<Bytes>>,
    size: usize,
    req: impl Fn(u64) -> Request<()> + Copy,
    variants: u64,
) where
    L: Layer<Counting>,
    L::Service: tower::Service<Request<()>, Response = Response<B>> + Clone,
    <L::Service as tower::Service<Request<()>>>::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = layer.layer(counting(payload(size), make, Arc::clone(&calls)));
    prime(rt, &svc, req, variants);
    let before = calls.load(Ordering::Relaxed);
    prime(rt, &svc, req, variants);
    assert_eq!(
        calls.load(Ordering::Relaxed),
        before,
        "{} did not answer from its cache",
        std::any::type_name::<L>()
    );
}

type Counting = BoxCloneService<Request<()>, Response<Full<Bytes>>, Infallible>;

fn rc_hit(c: &mut Criterion) {
    let rt = current_thread();
    for (group, size) in [("rc_hit_1k", 1024), ("rc_hit_64k", 64 * 1024)] {
        let req = |_| get("/resource").body(()).unwrap();
        let bare = origin(payload(size), full as Handler<_>);
        let thc = thc_layer(10_000);
        let hcts = hcts_layer(10_000);
        assert_hits(&rt, &thc, full, size, req, 1);
        assert_hits(&rt, &hcts, full, size, req, 1);
        let thc = thc.layer(bare.clone());
        let hcts = hcts.layer(bare.clone());
        prime(&rt, &thc, req, 1);
        prime(&rt, &hcts, req, 1);
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Bytes(size as u64));
        run(&mut g, &rt, BenchmarkId::from_parameter(BARE), &bare, req);
        run(&mut g, &rt, BenchmarkId::from_parameter(THC), &thc, req);
        run(&mut g, &rt, BenchmarkId::from_parameter(HCTS), &hcts, req);
        g.finish();
    }
}

const LANGUAGES: [&str; 8] = ["en", "de", "fr", "es", "it", "nl", "pt", "ja"];

fn full_vary(body: &Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .header(CONTENT_TYPE, "text/plain")
        .header(CACHE_CONTROL, "max-age=3600")
        .header(VARY, "accept-language")
        .body(Full::new(body.clone()))
        .expect("response")
}

/// Only http-cache-tower-server, with a keyer that adds the `Vary`ed field to the key (it
/// keeps one response per key). tower-http-cache's key sees only the method and URI.
fn rc_vary(c: &mut Criterion) {
    let rt = current_thread();
    let req = |n: u64| {
        get("/negotiated")
            .header(ACCEPT_LANGUAGE, LANGUAGES[(n % 8) as usize])
            .body(())
            .unwrap()
    };
    let keyer = CustomKeyer::new(|req: &Request<()>| {
        let lang = req
            .headers()
            .get(ACCEPT_LANGUAGE)
            .map_or("", |v| v.to_str().unwrap_or(""));
        format!("{} {} {lang}", req.method(), req.uri().path())
    });
    let manager = || http_cache::MokaManager::new(moka::future::Cache::new(10_000));
    let bare = origin(payload(1024), full_vary as Handler<_>);
    assert_hits(
        &rt,
        &ServerCacheLayer::with_keyer(manager(), keyer.clone()),
        full_vary,
        1024,
        req,
        8,
    );
    let hcts = ServerCacheLayer::with_keyer(manager(), keyer).layer(bare.clone());
    prime(&rt, &hcts, req, 8);
    let mut g = c.benchmark_group("rc_vary_8");
    g.throughput(Throughput::Elements(1));
    run(&mut g, &rt, BenchmarkId::from_parameter(BARE), &bare, req);
    run(&mut g, &rt, BenchmarkId::from_parameter(HCTS), &hcts, req);
    g.finish();
}

fn rc_eviction_churn(c: &mut Criterion) {
    let rt = current_thread();
    let bare = origin(payload(1024), full as Handler<_>);
    let thc = thc_layer(1024).layer(bare.clone());
    let hcts = hcts_layer(1024).layer(bare.clone());
    let paths: Arc<[String]> = (0..10_000).map(|i| format!("/item/{i}")).collect();
    let req = move |n: u64| {
        get(&paths[(n % paths.len() as u64) as usize])
            .body(())
            .unwrap()
    };
    let mut g = c.benchmark_group("rc_keys_10k");
    g.throughput(Throughput::Elements(1));
    run(
        &mut g,
        &rt,
        BenchmarkId::from_parameter(BARE),
        &bare,
        req.clone(),
    );
    run(
        &mut g,
        &rt,
        BenchmarkId::from_parameter(THC),
        &thc,
        req.clone(),
    );
    run(&mut g, &rt, BenchmarkId::from_parameter(HCTS), &hcts, req);
    g.finish();
}

fn rc_contention(c: &mut Criterion) {
    let rt = multi_thread();
    let bare = origin(payload(1024), full as Handler<_>);
    let req = |_| get("/hot").body(()).unwrap();
    let thc = thc_layer(10_000).layer(bare.clone());
    let hcts = hcts_layer(10_000).layer(bare.clone());
    prime(&rt, &thc, req, 1);
    prime(&rt, &hcts, req, 1);
    let mut g = c.benchmark_group("rc_contention");
    g.throughput(Throughput::Elements(TASKS * PER_TASK));
    run_concurrent(&mut g, &rt, BenchmarkId::from_parameter(BARE), &bare, req);
    run_concurrent(&mut g, &rt, BenchmarkId::from_parameter(THC), &thc, req);
    run_concurrent(&mut g, &rt, BenchmarkId::from_parameter(HCTS), &hcts, req);
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = old_not_modified, old_miss_1k, old_hash_large, old_eviction_churn, old_contention,
        rc_hit, rc_vary, rc_eviction_churn, rc_contention
}
criterion_main!(benches);
