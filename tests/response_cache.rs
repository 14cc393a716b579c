//! The response cache driven in process (tower `ServiceExt`) where the inner service must do
//! what a real origin cannot be made to do on cue: fail with an error, break a body
//! mid-stream, or sit behind a store that fails. Loopback tests of the same cache are in
//! `proxy_e2e.rs`.

use crate::common;
use bytes::Bytes;
use common::Counter;
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use std::{convert::Infallible, future::ready, time::Duration};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_etag::{
    clock::ManualClock,
    response_cache::{CacheBody, CacheBypass, HitBody, ResponseCache},
    store::{Expect, Key, MemoryStore, MemoryWriter, Meta, Store, StoreError, StoreWriter, Stored},
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "example.test")
        .body(Full::default())
        .unwrap()
}

/// Sends `req` and reads the whole body.
async fn send<S>(svc: &S, req: Request<Full<Bytes>>) -> (Response<()>, Bytes)
where
    S: Service<
            Request<Full<Bytes>>,
            Response = Response<
                tower_etag::ResponseBody<
                    Full<Bytes>,
                    HitBody,
                    CacheBody<Full<Bytes>, MemoryWriter>,
                >,
            >,
        > + Clone,
    S::Error: std::fmt::Debug,
{
    let res = svc.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    (
        Response::from_parts(parts, ()),
        body.collect().await.unwrap().to_bytes(),
    )
}

fn cache_status<B>(res: &Response<B>) -> String {
    res.headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// A clock that reads the system's time now and moves only when told: a test goes past a
/// response's freshness without sleeping.
fn clock_now() -> ManualClock {
    ManualClock::new(std::time::SystemTime::now())
}

/// An inner service that answers `cache-control` and counts calls; the `n`th call (1-based)
/// in `fail_on` returns an error instead.
fn origin(
    calls: &Counter,
    cache_control: &'static str,
    fail_from: usize,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = BoxError,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    let calls = calls.clone();
    service_fn(move |_req: Request<Full<Bytes>>| {
        let n = calls.inc();
        ready(if n >= fail_from {
            Err::<Response<Full<Bytes>>, BoxError>("origin unreachable".into())
        } else {
            Ok(Response::builder()
                .header("cache-control", cache_control)
                .body(Full::new(Bytes::from(format!("v{n}"))))
                .unwrap())
        })
    })
}

#[tokio::test]
async fn stale_if_error_answers_when_the_inner_service_errors() {
    let calls = Counter::new();
    let clock = clock_now();
    let cache = ResponseCache::builder(MemoryStore::new())
        .clock(clock.clone())
        .build();
    let svc = cache
        .layer()
        .layer(origin(&calls, "max-age=1, stale-if-error=60", 2));
    let (_, body) = send(&svc, get("/a")).await;
    assert_eq!(body, "v1");
    clock.advance(Duration::from_millis(1100));
    let (res, body) = send(&svc, get("/a")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body, "v1", "the stale entry instead of the error");
    assert!(
        cache_status(&res).contains("stale-if-error"),
        "{}",
        cache_status(&res)
    );
    assert_eq!(calls.get(), 2);
}

/// With a grace for an unreachable origin, an inner service that fails is covered even
/// without `stale-if-error` (RFC 9111 §4.2.4, a disconnected cache).
#[tokio::test]
async fn a_grace_answers_when_the_inner_service_errors() {
    let calls = Counter::new();
    let clock = clock_now();
    let cache = ResponseCache::builder(MemoryStore::new())
        .stale_if_unreachable(Duration::from_secs(60))
        .clock(clock.clone())
        .build();
    let svc = cache.layer().layer(origin(&calls, "max-age=1", 2));
    let (_, body) = send(&svc, get("/a")).await;
    assert_eq!(body, "v1");
    clock.advance(Duration::from_millis(1100));
    let (res, body) = send(&svc, get("/a")).await;
    assert_eq!(body, "v1", "the stale entry instead of the error");
    assert!(
        cache_status(&res).contains("detail=stale-if-unreachable"),
        "{}",
        cache_status(&res)
    );
    // A request that asks for the origin is not answered stale.
    let no_cache = Request::get("/a")
        .header("host", "example.test")
        .header("cache-control", "no-cache")
        .body(Full::default())
        .unwrap();
    assert!(svc.clone().oneshot(no_cache).await.is_err());
}

/// RFC 5861 §4: the stale response answers an error only within `stale-if-error`; an origin
/// that fails after the window closed (a slow one: the window closes while it is asked) gets
/// its error through, by the cache's own clock.
#[tokio::test]
async fn an_error_after_the_stale_if_error_window_is_returned() {
    let calls = Counter::new();
    let clock = clock_now();
    let cache = ResponseCache::builder(MemoryStore::new())
        .clock(clock.clone())
        .build();
    let slow_failure = {
        let (calls, clock) = (calls.clone(), clock.clone());
        service_fn(move |_req: Request<Full<Bytes>>| {
            let n = calls.inc();
            if n > 1 {
                // Asked within the window; it answers (with an error) after it.
                clock.advance(Duration::from_secs(120));
            }
            ready(if n > 1 {
                Err::<Response<Full<Bytes>>, BoxError>("origin unreachable".into())
            } else {
                Ok(Response::builder()
                    .header("cache-control", "max-age=1, stale-if-error=60")
                    .body(Full::new(Bytes::from("v1")))
                    .unwrap())
            })
        })
    };
    let svc = cache.layer().layer(slow_failure);
    let (_, body) = send(&svc, get("/a")).await;
    assert_eq!(body, "v1");
    clock.advance(Duration::from_secs(2));
    let err = svc.clone().oneshot(get("/a")).await;
    assert!(err.is_err(), "the window had closed when the origin failed");
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn without_stale_if_error_the_inner_error_is_returned() {
    let calls = Counter::new();
    let clock = clock_now();
    let cache = ResponseCache::builder(MemoryStore::new())
        .clock(clock.clone())
        .build();
    let svc = cache.layer().layer(origin(&calls, "max-age=1", 2));
    send(&svc, get("/a")).await;
    clock.advance(Duration::from_millis(1100));
    let err = svc.clone().oneshot(get("/a")).await;
    assert!(err.is_err(), "the middleware adds no error and hides none");
}

type Frames<E> = stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, E>>>;

/// A cacheable (`max-age=60`) response whose body streams `frames`, errors included.
fn cacheable_stream<E>(frames: Vec<Result<Frame<Bytes>, E>>) -> Response<StreamBody<Frames<E>>> {
    Response::builder()
        .header("cache-control", "max-age=60")
        .body(StreamBody::new(stream::iter(frames)))
        .unwrap()
}

#[tokio::test]
async fn a_body_that_fails_mid_stream_is_never_stored() {
    let calls = Counter::new();
    let inner = {
        let calls = calls.clone();
        service_fn(move |_req: Request<Full<Bytes>>| {
            let n = calls.inc();
            let frames: Vec<Result<Frame<Bytes>, BoxError>> = if n == 1 {
                vec![
                    Ok(Frame::data(Bytes::from_static(b"partial "))),
                    Err("connection reset".into()),
                ]
            } else {
                vec![Ok(Frame::data(Bytes::from_static(b"whole")))]
            };
            ready(Ok::<_, Infallible>(cacheable_stream(frames)))
        })
    };
    let cache = ResponseCache::new(MemoryStore::new());
    let svc = cache.layer().layer(inner);
    let res = svc.clone().oneshot(get("/a")).await.unwrap();
    assert!(
        res.into_body().collect().await.is_err(),
        "the client sees the body error"
    );
    let res = svc.clone().oneshot(get("/a")).await.unwrap();
    assert!(
        !cache_status(&res).contains("hit"),
        "{}",
        cache_status(&res)
    );
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "whole");
    assert_eq!(
        calls.get(),
        2,
        "nothing truncated was served from the cache"
    );
}

/// An inner service that counts its calls and streams "one " and "two" (cacheable).
fn one_two(
    calls: &Counter,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<StreamBody<Frames<Infallible>>>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + 'static {
    let calls = calls.clone();
    service_fn(move |_req: Request<Full<Bytes>>| {
        calls.inc();
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"one "))),
            Ok(Frame::data(Bytes::from_static(b"two"))),
        ];
        ready(Ok::<_, Infallible>(cacheable_stream(frames)))
    })
}

/// Issue 20: a client that goes away in the middle of a fill leaves the rest to the cache,
/// which reads it into the store in the background: the next request is a hit, and the
/// inner service was called once.
#[tokio::test]
async fn a_client_that_goes_away_mid_body_leaves_the_rest_to_the_cache() {
    let calls = Counter::new();
    let inner = one_two(&calls);
    let cache = ResponseCache::new(MemoryStore::new());
    let svc = cache.layer().layer(inner);
    let res = svc.clone().oneshot(get("/a")).await.unwrap();
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "one ");
    drop(body); // the client disconnects
    let stored = common::eventually(|| async {
        let res = svc.clone().oneshot(get("/a")).await.unwrap();
        let hit = cache_status(&res).contains("hit");
        hit && res.into_body().collect().await.unwrap().to_bytes() == "one two"
    })
    .await;
    assert!(stored, "the rest of the body was stored without the client");
    assert_eq!(calls.get(), 1);
}

/// A store whose every operation fails, as an unreachable backend would.
#[derive(Clone, Debug)]
struct BrokenStore;

#[derive(Debug)]
struct BrokenWriter;

fn broken() -> StoreError {
    StoreError::Backend("backend unreachable".into())
}

impl StoreWriter for BrokenWriter {
    async fn write(self, _: Bytes) -> Result<Self, StoreError> {
        Err(broken())
    }
    fn replace_meta(&mut self, _: Meta) {}
    async fn commit(self) -> Result<u64, StoreError> {
        Err(broken())
    }
}

impl Store for BrokenStore {
    type Writer = BrokenWriter;
    async fn get(&self, _: &Key) -> Result<Option<Stored>, StoreError> {
        Err(broken())
    }
    async fn writer(
        &self,
        _: &Key,
        _: Meta,
        _: Duration,
        _: Expect,
    ) -> Result<BrokenWriter, StoreError> {
        Err(broken())
    }
    async fn update_meta(
        &self,
        _: &Key,
        _: Expect,
        _: Meta,
        _: Duration,
    ) -> Result<bool, StoreError> {
        Err(broken())
    }
    async fn remove(&self, _: &Key, _: Expect) -> Result<bool, StoreError> {
        Err(broken())
    }
    async fn clear(&self) -> Result<(), StoreError> {
        Err(broken())
    }
}

#[tokio::test]
async fn a_failing_store_never_fails_a_request() {
    let calls = Counter::new();
    let cache = ResponseCache::new(BrokenStore);
    let svc = cache
        .layer()
        .layer(origin(&calls, "max-age=60", usize::MAX));
    for i in 1..=3 {
        let res = svc.clone().oneshot(get("/a")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            cache_status(&res).contains("store-error"),
            "{}",
            cache_status(&res)
        );
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes(),
            format!("v{i}")
        );
    }
    assert_eq!(calls.get(), 3);
    let post = Request::post("/a")
        .header("host", "example.test")
        .body(Full::default())
        .unwrap();
    assert_eq!(
        svc.clone().oneshot(post).await.unwrap().status(),
        StatusCode::OK
    );
    assert!(
        cache.purge().await.is_err(),
        "the API reports store errors to its caller"
    );
}

/// RFC 9111 §5.2.1.7: with `only-if-cached` a cache answers from its store or with a 504;
/// a store it cannot reach is no reason to go to the origin.
#[tokio::test]
async fn only_if_cached_with_a_failing_store_is_a_504_not_a_fetch() {
    let calls = Counter::new();
    let cache = ResponseCache::new(BrokenStore);
    let svc = cache
        .layer()
        .layer(origin(&calls, "max-age=60", usize::MAX));
    let probe = Request::get("/a")
        .header("host", "example.test")
        .header("cache-control", "only-if-cached")
        .body(Full::default())
        .unwrap();
    let res = svc.clone().oneshot(probe).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        cache_status(&res).contains("detail=store-error"),
        "{}",
        cache_status(&res)
    );
    assert_eq!(calls.get(), 0, "the origin was not asked");
}

#[tokio::test]
async fn bypass_extension_skips_the_cache() {
    let calls = Counter::new();
    let cache = ResponseCache::new(MemoryStore::new());
    let svc = cache
        .layer()
        .layer(origin(&calls, "max-age=60", usize::MAX));
    svc.clone().oneshot(get("/a")).await.unwrap();
    let mut req = get("/a");
    req.extensions_mut().insert(CacheBypass);
    let res = svc.clone().oneshot(req).await.unwrap();
    assert!(
        cache_status(&res).contains("fwd=bypass"),
        "{}",
        cache_status(&res)
    );
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "v2");
    assert_eq!(calls.get(), 2);
}

/// A background refresh (here of `stale-while-revalidate`, for a client with a tag of its
/// own) sends the entry's own validators, never the client's (the cache answers those
/// itself), so a `304` without validators (issue 20) freshens the entry instead of
/// removing it.
#[tokio::test]
async fn a_refresh_sends_the_entrys_validators_alone() {
    let calls = Counter::new();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let inner = {
        let (calls, seen) = (calls.clone(), seen.clone());
        service_fn(move |req: Request<Full<Bytes>>| {
            calls.inc();
            let inm = req.headers().get("if-none-match").cloned();
            seen.lock().unwrap().push(inm.clone());
            let res = match inm {
                // No ETag, no Last-Modified.
                Some(_) => Response::builder()
                    .status(304)
                    .header("cache-control", "max-age=60")
                    .body(Full::default()),
                None => Response::builder()
                    .header("cache-control", "max-age=1, stale-while-revalidate=60")
                    .header("etag", "\"v1\"")
                    .body(Full::new(Bytes::from_static(b"v1"))),
            };
            ready(Ok::<_, Infallible>(res.unwrap()))
        })
    };
    let clock = clock_now();
    let cache = ResponseCache::builder(MemoryStore::new())
        .clock(clock.clone())
        .build();
    let svc = cache.layer().layer(inner);
    send(&svc, get("/a")).await;
    clock.advance(Duration::from_secs(2));
    let mut conditional = get("/a");
    conditional
        .headers_mut()
        .insert("if-none-match", "\"other\"".parse().unwrap());
    let (res, body) = send(&svc, conditional).await;
    assert!(
        cache_status(&res).contains("stale-while-revalidate"),
        "{}",
        cache_status(&res)
    );
    assert_eq!(body, "v1");
    let refreshed = common::eventually(|| async { calls.get() == 2 }).await;
    assert!(refreshed, "the background refresh ran");
    assert_eq!(
        seen.lock().unwrap()[1].as_ref().unwrap(),
        "\"v1\"",
        "its own tag alone"
    );
    // Freshened by the 304: a hit, no third call.
    let fresh = common::eventually(|| async {
        let (res, _) = send(&svc, get("/a")).await;
        cache_status(&res).contains("hit") && !cache_status(&res).contains("stale")
    })
    .await;
    assert!(fresh, "the entry was freshened, not removed");
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn refresh_ahead_renews_an_entry_before_it_expires() {
    let calls = Counter::new();
    let clock = clock_now();
    let cache = ResponseCache::builder(MemoryStore::new())
        .refresh_ahead(Duration::from_secs(2))
        .clock(clock.clone())
        .build();
    let svc = cache.layer().layer(origin(&calls, "max-age=3", usize::MAX));
    send(&svc, get("/a")).await;
    clock.advance(Duration::from_millis(1200));
    // Less than 2 s left: a hit now, and a refresh in the background.
    let res = svc.clone().oneshot(get("/a")).await.unwrap();
    assert!(cache_status(&res).contains("hit"), "{}", cache_status(&res));
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "v1");
    // The refresh stores v2 in the background; until then v1 is served.
    let refreshed = common::eventually(|| async {
        let (_, body) = send(&svc, get("/a")).await;
        body == "v2"
    })
    .await;
    assert!(refreshed, "the background refresh stored v2");
    assert_eq!(calls.get(), 2, "one background refresh");
}

#[tokio::test]
async fn no_refresh_ahead_without_the_setting() {
    let calls = Counter::new();
    let clock = clock_now();
    let cache = ResponseCache::builder(MemoryStore::new())
        .clock(clock.clone())
        .build();
    let svc = cache.layer().layer(origin(&calls, "max-age=3", usize::MAX));
    send(&svc, get("/a")).await;
    clock.advance(Duration::from_millis(1200));
    let (res, _) = send(&svc, get("/a")).await;
    assert!(cache_status(&res).contains("hit"), "{}", cache_status(&res));
    // On this test's single thread, a refresh spawned by the hit would run (the origin
    // answers at once) while the test yields; the test above shows one does, with the
    // setting.
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn the_memory_store_stays_within_its_byte_bound() {
    let calls = Counter::new();
    let store = MemoryStore::builder().max_bytes(256 * 1024).build();
    let cache = ResponseCache::new(store.clone());
    let svc = cache
        .layer()
        .layer(origin(&calls, "max-age=60", usize::MAX));
    for i in 0..2_000 {
        let res = svc.clone().oneshot(get(&format!("/k{i}"))).await.unwrap();
        res.into_body().collect().await.unwrap();
        assert!(
            store.bytes() <= 256 * 1024,
            "{} bytes after {i} keys",
            store.bytes()
        );
    }
    assert!(store.len() < 2_000 * 2, "old entries were evicted");
}

/// RFC 9211: `Cache-Status` says what happened, not what was hoped. The head of a streamed
/// fill goes out before its body is written, so it never says `stored`; the entry is there
/// only once the body has been read into the store (here by the cache, the client having
/// gone away). An empty body is committed before its head goes out, and says `stored`.
#[tokio::test]
async fn cache_status_claims_only_what_the_store_holds() {
    let calls = Counter::new();
    let inner = one_two(&calls);
    let cache = ResponseCache::new(MemoryStore::new());
    let svc = cache.layer().layer(inner);

    let res = svc.clone().oneshot(get("/a")).await.unwrap();
    let status = cache_status(&res);
    assert!(status.contains("fwd=uri-miss"), "{status}");
    assert!(
        !status.contains("stored"),
        "nothing is committed yet: {status}"
    );
    drop(res); // the client goes away before the body: the cache reads it on

    let hit = common::eventually(|| async {
        let res = svc.clone().oneshot(get("/a")).await.unwrap();
        cache_status(&res).contains("hit")
    })
    .await;
    assert!(hit, "the body was committed: the next request is a hit");
    assert_eq!(calls.get(), 1);

    let empty = cache
        .layer()
        .layer(service_fn(|_req: Request<Full<Bytes>>| {
            let res = Response::builder()
                .header("cache-control", "max-age=60")
                .body(Full::<Bytes>::default())
                .unwrap();
            ready(Ok::<_, Infallible>(res))
        }));
    let res = empty.clone().oneshot(get("/empty")).await.unwrap();
    let status = cache_status(&res);
    assert!(
        status.contains("fwd=uri-miss") && status.contains("stored"),
        "{status}"
    );
    drop(res);
    let res = empty.clone().oneshot(get("/empty")).await.unwrap();
    assert!(cache_status(&res).contains("hit"), "{}", cache_status(&res));
}

/// RFC 9111 §3.1: trailer fields are never merged into a stored header section; this cache
/// does not store a body that has them at all (the client still gets them).
#[tokio::test]
async fn a_body_with_trailers_is_not_stored() {
    let calls = Counter::new();
    let inner = {
        let calls = calls.clone();
        service_fn(move |_req: Request<Full<Bytes>>| {
            calls.inc();
            let mut trailers = http::HeaderMap::new();
            trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
            let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
                Ok(Frame::data(Bytes::from_static(b"body"))),
                Ok(Frame::trailers(trailers)),
            ];
            ready(Ok::<_, Infallible>(cacheable_stream(frames)))
        })
    };
    let cache = ResponseCache::new(MemoryStore::new());
    let svc = cache.layer().layer(inner);
    for _ in 0..2 {
        let res = svc.clone().oneshot(get("/t")).await.unwrap();
        assert!(
            !cache_status(&res).contains("hit"),
            "{}",
            cache_status(&res)
        );
        let collected = res.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-checksum"], "abc");
        assert_eq!(collected.to_bytes(), "body");
    }
    assert_eq!(calls.get(), 2);
}

/// RFC 9110 §15.4.5 and §15.3.7: a 304 and a 206 made from an entry carry the `Date` (and
/// the other fields) a 200 would: the stored ones. In process, so that no server adds a
/// `Date` of its own.
#[tokio::test]
async fn answers_made_from_an_entry_carry_its_date() {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let inner = {
        let date = date.clone();
        service_fn(move |_req: Request<Full<Bytes>>| {
            let res = Response::builder()
                .header("date", date.as_str())
                .header("cache-control", "max-age=60")
                .header("etag", "\"v1\"")
                .header("vary", "accept-language")
                .header("content-location", "/a.txt")
                .body(Full::new(Bytes::from_static(b"0123456789")))
                .unwrap();
            ready(Ok::<_, Infallible>(res))
        })
    };
    let cache = ResponseCache::new(MemoryStore::new());
    let svc = cache.layer().layer(inner);
    send(&svc, get("/a")).await;
    let conditional = Request::get("/a")
        .header("host", "example.test")
        .header("if-none-match", "\"v1\"")
        .body(Full::default())
        .unwrap();
    let ranged = Request::get("/a")
        .header("host", "example.test")
        .header("range", "bytes=0-1")
        .body(Full::default())
        .unwrap();
    for (req, status) in [
        (conditional, StatusCode::NOT_MODIFIED),
        (ranged, StatusCode::PARTIAL_CONTENT),
    ] {
        let (res, _) = send(&svc, req).await;
        assert_eq!(res.status(), status);
        let h = res.headers();
        assert_eq!(h["date"], date.as_str(), "{status}");
        assert_eq!(h["etag"], "\"v1\"");
        assert_eq!(h["cache-control"], "max-age=60");
        assert_eq!(h["vary"], "accept-language");
        assert_eq!(h["content-location"], "/a.txt");
    }
}

/// A body that announces `len` bytes and ends cleanly after `chunks` (too few of them).
struct ShortBody {
    chunks: Vec<Bytes>,
    len: u64,
}

impl http_body::Body for ShortBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let next = (!self.chunks.is_empty()).then(|| self.chunks.remove(0));
        std::task::Poll::Ready(next.map(|c| Ok(http_body::Frame::data(c))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.len)
    }
}

#[tokio::test]
async fn a_body_that_ends_before_its_declared_length_is_not_stored() {
    // Hyper calls such a body an error; a body of any inner service may just end. What was
    // cut short is not the representation: never stored, never served as whole.
    let calls = Counter::new();
    let counted = calls.clone();
    let inner = service_fn(move |_req: Request<Full<Bytes>>| {
        counted.inc();
        let body = ShortBody {
            chunks: vec![
                Bytes::from(vec![b'x'; 100_000]),
                Bytes::from(vec![b'y'; 100_000]),
            ],
            len: 300_000,
        };
        ready(Ok::<_, BoxError>(
            Response::builder()
                .header("cache-control", "max-age=60")
                .body(body)
                .unwrap(),
        ))
    });
    let cache = ResponseCache::new(MemoryStore::new());
    let svc = cache.layer().layer(inner);
    for _ in 0..2 {
        let res = svc.clone().oneshot(get("/short")).await.unwrap();
        let read = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(read.len(), 200_000);
    }
    assert_eq!(
        calls.get(),
        2,
        "the second request went to the inner service again"
    );
}

/// A memory store that says its reads are remote ([`Store::remote_reads`]) unless made
/// [`local`](Remote::local), and counts how many reads run at once.
#[derive(Clone, Debug, Default)]
struct Remote {
    local: bool,
    inner: MemoryStore,
    reads: Counter,
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Remote {
    /// The same store, saying its reads are local (the default of [`Store`]).
    fn local() -> Self {
        Self {
            local: true,
            ..Self::default()
        }
    }

    fn most_at_once(&self) -> usize {
        self.most.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

impl Store for Remote {
    type Writer = MemoryWriter;
    async fn get(&self, key: &Key) -> Result<Option<Stored>, StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.reads.inc();
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        // A round trip: the other read of a lookup may start meanwhile.
        tokio::task::yield_now().await;
        let got = self.inner.get(key).await;
        self.in_flight.fetch_sub(1, SeqCst);
        got
    }
    async fn writer(
        &self,
        key: &Key,
        meta: Meta,
        ttl: Duration,
        expect: Expect,
    ) -> Result<MemoryWriter, StoreError> {
        self.inner.writer(key, meta, ttl, expect).await
    }
    fn max_entry_bytes(&self) -> Option<u64> {
        self.inner.max_entry_bytes()
    }
    fn remote_reads(&self) -> bool {
        !self.local
    }
    async fn update_meta(
        &self,
        key: &Key,
        expect: Expect,
        meta: Meta,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.inner.update_meta(key, expect, meta, ttl).await
    }
    async fn remove(&self, key: &Key, expect: Expect) -> Result<bool, StoreError> {
        self.inner.remove(key, expect).await
    }
    async fn clear(&self) -> Result<(), StoreError> {
        self.inner.clear().await
    }
}

#[tokio::test]
async fn over_a_remote_store_a_hit_reads_its_record_and_entry_at_once_and_stays_right() {
    // The origin varies on Accept-Language, then (version 3) on nothing, and says which
    // version and language each response is.
    let version = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let origin = {
        let version = std::sync::Arc::clone(&version);
        service_fn(move |req: Request<Full<Bytes>>| {
            let v = version.load(std::sync::atomic::Ordering::SeqCst);
            let lang = req
                .headers()
                .get("accept-language")
                .map(|l| l.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let mut res = Response::builder().header("cache-control", "max-age=60");
            if v != 3 {
                res = res.header("vary", "accept-language");
            }
            ready(Ok::<_, Infallible>(
                res.body(Full::new(Bytes::from(format!("v{v} {lang}"))))
                    .unwrap(),
            ))
        })
    };
    let store = Remote::default();
    let cache = ResponseCache::new(store.clone());
    let svc = cache.layer().layer(origin.clone());
    let get_in = |lang: &str| {
        Request::get("/a")
            .header("host", "example.test")
            .header("accept-language", lang)
            .body(Full::default())
            .unwrap()
    };
    let post = || {
        Request::post("/a")
            .header("host", "example.test")
            .body(Full::default())
            .unwrap()
    };
    for lang in ["en", "de"] {
        assert_eq!(send(&svc, get_in(lang)).await.1, format!("v1 {lang}"));
    }
    store.most_at_once();
    for lang in ["en", "de", "en"] {
        let reads = store.reads.get();
        let (res, body) = send(&svc, get_in(lang)).await;
        assert_eq!(body, format!("v1 {lang}"), "each language its own variant");
        assert!(cache_status(&res).contains("hit"), "{}", cache_status(&res));
        assert_eq!(
            store.reads.get() - reads,
            2,
            "the record and the entry, no more"
        );
        assert_eq!(store.most_at_once(), 2, "read at once");
    }
    // An invalidation gives the URL a new epoch: what is read ahead under the old one is
    // not used, and the fresh answer is.
    version.store(2, std::sync::atomic::Ordering::SeqCst);
    send(&svc, post()).await;
    assert_eq!(send(&svc, get_in("en")).await.1, "v2 en");
    let (res, body) = send(&svc, get_in("en")).await;
    assert_eq!(
        (body, cache_status(&res).contains("hit")),
        (Bytes::from("v2 en"), true)
    );
    // Another node on the same store invalidates and fills the URL again: this node's
    // expectation (the old epoch) reads an entry that is still in the store, and must not
    // use it.
    let other = ResponseCache::new(store.clone());
    let other_svc = other.layer().layer(origin.clone());
    version.store(22, std::sync::atomic::Ordering::SeqCst);
    send(&other_svc, post()).await;
    assert_eq!(send(&other_svc, get_in("en")).await.1, "v22 en");
    let (res, body) = send(&svc, get_in("en")).await;
    assert_eq!(
        body,
        "v22 en",
        "never the old epoch's entry: {}",
        cache_status(&res)
    );
    // The origin stops varying: a new `Vary` set, read ahead under the old one at first.
    version.store(3, std::sync::atomic::Ordering::SeqCst);
    send(&svc, post()).await;
    assert_eq!(send(&svc, get_in("fr")).await.1, "v3 fr");
    let (res, body) = send(&svc, get_in("en")).await;
    assert_eq!(body, "v3 fr", "one variant for everyone now");
    assert!(cache_status(&res).contains("hit"), "{}", cache_status(&res));
}

#[tokio::test]
async fn over_a_local_store_reads_are_one_at_a_time() {
    let calls = Counter::new();
    let store = Remote::local();
    let cache = ResponseCache::new(store.clone());
    let svc = cache
        .layer()
        .layer(origin(&calls, "max-age=60", usize::MAX));
    send(&svc, get("/a")).await;
    store.most_at_once();
    let (res, _) = send(&svc, get("/a")).await;
    assert!(cache_status(&res).contains("hit"));
    assert_eq!(
        store.most_at_once(),
        1,
        "no read ahead where reads are cheap"
    );
}
