//! `RefreshCache`: registered URLs kept fresh in the background, through the client cache.
//!
//! The schedule, error and stop tests run on tokio's paused clock with an in-process origin
//! (no sockets, so the clock only moves when every task waits on a timer); the end-to-end
//! tests use a real hyper-util client and a real origin on 127.0.0.1.

use crate::common;
#[cfg(feature = "redis")]
use crate::redis_server;
use bytes::Bytes;
use common::{response, Counter, TestServer};
use http::{HeaderMap, Request, Response};
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::time::Instant;
use tower_etag::{
    refresh::{RefreshCache, RefreshError, RefreshOptions},
    response_cache::ResponseCache,
    store::{MemoryStore, Store},
    BoxError,
};

const S: fn(u64) -> Duration = Duration::from_secs;

/// What the in-process origin saw: when each call came (on tokio's clock), to which path,
/// and whether it was a revalidation.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(Instant, String, bool)>>>);

impl Seen {
    fn times(&self, path: &str) -> Vec<Instant> {
        let seen = self.0.lock().unwrap();
        seen.iter().filter(|c| c.1 == path).map(|c| c.0).collect()
    }

    fn revalidations(&self, path: &str) -> usize {
        let seen = self.0.lock().unwrap();
        seen.iter().filter(|c| c.1 == path && c.2).count()
    }
}

/// An API in process: `/max-age/{n}` is fresh for `n` seconds, with a tag (a conditional
/// request gets a 304); `/status/{code}` answers `code` (the status changes with the
/// test's `status` cell); `/large` has a 1 MiB body.
fn api(
    seen: &Seen,
    status: Arc<Mutex<u16>>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<axum::body::Body>,
    Error = Infallible,
    Future = impl Send,
> + Clone
       + Send
       + Sync
       + 'static {
    let seen = seen.clone();
    tower::service_fn(move |req: Request<Full<Bytes>>| {
        let path = req.uri().path().to_owned();
        let revalidation = req.headers().contains_key("if-none-match");
        seen.0
            .lock()
            .unwrap()
            .push((Instant::now(), path.clone(), revalidation));
        let status = *status.lock().unwrap();
        let status_calls = seen.times("/status").len();
        async move {
            let res = if let Some(secs) = path.strip_prefix("/max-age/") {
                let cc = format!("max-age={secs}");
                let fields = [("cache-control", cc.as_str()), ("etag", "\"v1\"")];
                if revalidation {
                    response(304, &fields, "")
                } else {
                    response(200, &fields, format!("fresh for {secs}"))
                }
            } else if path == "/status" {
                response(
                    status,
                    &[("cache-control", "max-age=30")],
                    // Which call made it: a new value is told from the last good one.
                    format!("status {status} #{status_calls}"),
                )
            } else if path == "/large" {
                response(200, &[], vec![b'x'; 1 << 20])
            } else {
                response(404, &[], "")
            };
            Ok::<_, Infallible>(res)
        }
    })
}

fn text() -> RefreshOptions<String> {
    RefreshOptions::new(|_, body: &Bytes| Ok(String::from_utf8(body.to_vec())?))
        .min_interval(S(60))
        .max_interval(S(3600))
}

fn url(path: &str) -> String {
    format!("https://api.example{path}")
}

#[tokio::test(start_paused = true)]
async fn each_url_is_refreshed_on_its_clamped_schedule_by_revalidation() {
    let seen = Seen::default();
    let cache = ResponseCache::builder(MemoryStore::new()).client().build();
    let refresh: RefreshCache<String> =
        RefreshCache::builder(api(&seen, Arc::default()), &cache).build();
    for path in ["/max-age/300", "/max-age/5", "/max-age/86400"] {
        refresh.register(&url(path), text()).unwrap();
    }
    assert_eq!(
        *refresh.get(&url("/max-age/300")).await.unwrap(),
        "fresh for 300"
    );
    let start = Instant::now();
    // Two hours on the paused clock: it moves from one task's timer to the next.
    tokio::time::sleep(S(7200)).await;
    for (path, every) in [
        ("/max-age/300", 300),
        ("/max-age/5", 60),
        ("/max-age/86400", 3600),
    ] {
        let times = seen.times(path);
        let gaps: Vec<u64> = times.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        assert!(
            gaps.iter().all(|g| (every - 1..=every).contains(g)),
            "{path}: fetched every {gaps:?} s, not every {every} s"
        );
        let expected = 7200 / every as usize + 1;
        assert!(
            (expected - 1..=expected).contains(&times.len()),
            "{path}: {} fetches in two hours (after {:?})",
            times.len(),
            times.first().map(|t| *t - start)
        );
        // Every refresh after the first was a revalidation (a 304), and the value stayed
        // the stored body's.
        assert_eq!(seen.revalidations(path), times.len() - 1, "{path}");
        let value = refresh.get(&url(path)).await.unwrap();
        assert_eq!(*value, format!("fresh for {}", &path[9..]));
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_the_last_good_value_and_reports_the_error() {
    let seen = Seen::default();
    let status = Arc::new(Mutex::new(200));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let cache = ResponseCache::builder(MemoryStore::new()).client().build();
    let refresh: RefreshCache<String> =
        RefreshCache::builder(api(&seen, Arc::clone(&status)), &cache)
            .on_error({
                let errors = Arc::clone(&errors);
                move |url, e| errors.lock().unwrap().push(format!("{url}: {e}"))
            })
            .build();
    let target = url("/status");
    refresh
        .register(&target, text().min_interval(S(10)).max_interval(S(30)))
        .unwrap();
    assert_eq!(*refresh.get(&target).await.unwrap(), "status 200 #1");
    *status.lock().unwrap() = 503;
    tokio::time::sleep(S(100)).await;
    let failures = errors.lock().unwrap().len();
    assert!(failures >= 3, "{failures} errors reported in 100 s");
    assert!(
        errors.lock().unwrap()[0].contains("503"),
        "{:?}",
        errors.lock().unwrap()
    );
    assert_eq!(
        *refresh.get(&target).await.unwrap(),
        "status 200 #1",
        "the last good value"
    );
    // After an error the URL is tried again after its minimum interval, not its maximum.
    let times = seen.times("/status");
    let last_gaps: Vec<u64> = times
        .windows(2)
        .skip(1)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert!(last_gaps.iter().all(|g| *g == 10), "{last_gaps:?}");
    // It comes back: the next refresh brings the new value, and so does one on demand.
    *status.lock().unwrap() = 200;
    tokio::time::sleep(S(11)).await;
    let calls = seen.times("/status").len();
    assert_eq!(
        *refresh.get(&target).await.unwrap(),
        format!("status 200 #{calls}")
    );
    let now = refresh.refresh(&target).await.unwrap();
    assert_eq!(*now, format!("status 200 #{}", calls + 1));
    // A transform that panics fails its fetch only; the task goes on.
    let panicky = url("/max-age/30");
    refresh
        .register(
            &panicky,
            RefreshOptions::new(|_, _| -> Result<String, BoxError> { panic!("boom") })
                .min_interval(S(10)),
        )
        .unwrap();
    assert!(matches!(
        refresh.get(&panicky).await,
        Err(RefreshError::Fetch(_))
    ));
    let before = seen.times("/max-age/30").len();
    tokio::time::sleep(S(25)).await;
    assert!(
        seen.times("/max-age/30").len() > before,
        "the task died with the panic"
    );
    // A transform that fails is a failed refresh too; before any good value `get` says why.
    let bad = url("/max-age/60");
    refresh
        .register(
            &bad,
            RefreshOptions::new(|_, _| Err::<String, BoxError>("not json".into())),
        )
        .unwrap();
    match refresh.get(&bad).await {
        Err(RefreshError::Fetch(e)) => assert!(e.to_string().contains("not json"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn fetches_are_bounded_in_number_and_bytes() {
    // A slow origin that counts how many calls it has at once.
    let (now, most) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
    let origin = {
        let (now, most) = (Arc::clone(&now), Arc::clone(&most));
        tower::service_fn(move |req: Request<Full<Bytes>>| {
            let (now, most) = (Arc::clone(&now), Arc::clone(&most));
            async move {
                {
                    let mut n = now.lock().unwrap();
                    *n += 1;
                    let mut m = most.lock().unwrap();
                    *m = (*m).max(*n);
                }
                tokio::time::sleep(S(5)).await;
                *now.lock().unwrap() -= 1;
                let body = if req.uri().path() == "/large" {
                    vec![b'x'; 1 << 20]
                } else {
                    b"ok".to_vec()
                };
                Ok::<_, Infallible>(response(200, &[("cache-control", "max-age=600")], body))
            }
        })
    };
    let cache = ResponseCache::builder(MemoryStore::new()).client().build();
    let refresh: RefreshCache<String> = RefreshCache::builder(origin, &cache)
        .max_concurrency(2)
        .max_body_bytes(64 * 1024)
        .build();
    for i in 0..8 {
        refresh.register(&url(&format!("/n/{i}")), text()).unwrap();
    }
    for i in 0..8 {
        assert_eq!(*refresh.get(&url(&format!("/n/{i}"))).await.unwrap(), "ok");
    }
    assert_eq!(*most.lock().unwrap(), 2, "at most two fetches at once");
    // A body over the limit fails the fetch; nothing is kept.
    refresh.register(&url("/large"), text()).unwrap();
    match refresh.get(&url("/large")).await {
        Err(RefreshError::Fetch(e)) => assert!(e.to_string().contains("length limit"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Bad input is refused, never a panic.
    assert!(refresh.register("/relative", text()).is_err());
    assert!(refresh.register("ftp://x/y", text()).is_err());
    assert!(matches!(
        refresh.get("https://never.example/").await,
        Err(RefreshError::NotRegistered)
    ));
}

#[tokio::test(start_paused = true)]
async fn it_stops_when_dropped_or_told_and_nothing_is_fetched_after() {
    let seen = Seen::default();
    let origin = api(&seen, Arc::default());
    let alive = Arc::new(());
    let witness = Arc::downgrade(&alive);
    let cache = ResponseCache::builder(MemoryStore::new()).client().build();
    // The origin holds `alive`: once every task and the refresh cache are gone, so is it.
    let holding = tower::ServiceExt::map_request(origin, move |r: Request<Full<Bytes>>| {
        let _ = &alive;
        r
    });
    let refresh: RefreshCache<String> = RefreshCache::builder(holding, &cache).build();
    refresh.register(&url("/max-age/60"), text()).unwrap();
    refresh.get(&url("/max-age/60")).await.unwrap();
    drop(refresh);
    tokio::time::sleep(S(3600)).await;
    assert_eq!(seen.times("/max-age/60").len(), 1, "fetched after the drop");
    assert!(witness.upgrade().is_none(), "a task still holds the client");

    // With a stop signal (a CancellationToken's `cancelled_owned()` works the same).
    let seen = Seen::default();
    let (tell, told) = tokio::sync::oneshot::channel::<()>();
    let refresh: RefreshCache<String> = RefreshCache::builder(api(&seen, Arc::default()), &cache)
        .stop_when(async move {
            let _ = told.await;
        })
        .build();
    refresh.register(&url("/max-age/60"), text()).unwrap();
    refresh.get(&url("/max-age/60")).await.unwrap();
    tell.send(()).unwrap();
    tokio::time::sleep(S(3600)).await;
    assert_eq!(seen.times("/max-age/60").len(), 1, "fetched after the stop");
    assert!(matches!(
        refresh.refresh(&url("/max-age/60")).await,
        Err(RefreshError::Stopped)
    ));
    // What it had stays readable.
    assert_eq!(
        *refresh.get(&url("/max-age/60")).await.unwrap(),
        "fresh for 60"
    );
}

/// A real origin on 127.0.0.1 behind a real hyper-util client: the first value, then an
/// on-demand refresh that revalidates (the origin answers 304, the value is the stored
/// body's).
async fn end_to_end<St: Store + Clone>(store: St) {
    let (calls, conditional) = (Counter::new(), Counter::new());
    let origin = TestServer::start(axum::Router::new().route(
        "/jwks",
        axum::routing::get({
            let (calls, conditional) = (calls.clone(), conditional.clone());
            move |headers: HeaderMap| {
                calls.inc();
                let revalidation = headers.get("if-none-match").is_some_and(|v| v == "\"k1\"");
                if revalidation {
                    conditional.inc();
                }
                async move {
                    let fields = [("cache-control", "max-age=600"), ("etag", "\"k1\"")];
                    if revalidation {
                        response(304, &fields, "")
                    } else {
                        response(200, &fields, "{\"keys\":[1]}")
                    }
                }
            }
        }),
    ))
    .await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let cache = ResponseCache::builder(store).client().build();
    let refresh: RefreshCache<String> = RefreshCache::builder(client, &cache).build();
    let jwks = format!("http://{}/jwks", origin.addr);
    refresh.register(&jwks, text()).unwrap();
    assert_eq!(*refresh.get(&jwks).await.unwrap(), "{\"keys\":[1]}");
    assert_eq!(*refresh.refresh(&jwks).await.unwrap(), "{\"keys\":[1]}");
    assert_eq!(
        (calls.get(), conditional.get()),
        (2, 1),
        "the refresh was a revalidation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_refreshes_by_revalidation_on_the_memory_store() {
    end_to_end(MemoryStore::new()).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_refreshes_by_revalidation_on_the_redis_store() {
    let Some(server) = redis_server::RedisServer::start_or_skip("refresh_cache_on_redis") else {
        return;
    };
    end_to_end(server.store("refresh").await).await;
}

#[tokio::test(start_paused = true)]
async fn unregistered_urls_are_not_fetched_and_huge_intervals_are_never_a_panic() {
    let seen = Seen::default();
    let cache = ResponseCache::builder(MemoryStore::new()).client().build();
    let refresh: RefreshCache<String> =
        RefreshCache::builder(api(&seen, Arc::default()), &cache).build();
    let (gone, never) = (url("/max-age/10"), url("/max-age/20"));
    refresh.register(&gone, text().min_interval(S(10))).unwrap();
    refresh
        .register(
            &never,
            text()
                .min_interval(Duration::MAX)
                .max_interval(Duration::MAX),
        )
        .unwrap();
    refresh.get(&gone).await.unwrap();
    refresh.get(&never).await.unwrap();
    assert!(refresh.unregister(&gone));
    assert!(!refresh.unregister(&gone));
    tokio::time::sleep(S(3600)).await;
    assert_eq!(
        seen.times("/max-age/10").len(),
        1,
        "fetched after unregister"
    );
    assert_eq!(seen.times("/max-age/20").len(), 1, "\"never\" means never");
    assert!(matches!(
        refresh.get(&gone).await,
        Err(RefreshError::NotRegistered)
    ));
    // Still answered, and refreshed on demand.
    assert_eq!(*refresh.refresh(&never).await.unwrap(), "fresh for 20");
}

#[tokio::test(start_paused = true)]
async fn an_origin_error_is_a_failed_refresh_even_with_stale_if_error() {
    // The response allows stale-if-error, but a refresh asks with `no-cache`: the cache
    // does not stand its entry in for the origin's 500, which is reported as a failure.
    let calls = Counter::new();
    let origin = {
        let calls = calls.clone();
        tower::service_fn(move |_req: Request<Full<Bytes>>| {
            let n = calls.inc();
            async move {
                let res = if n == 1 {
                    response(
                        200,
                        &[("cache-control", "max-age=10, stale-if-error=3600")],
                        "good",
                    )
                } else {
                    response(500, &[], "down")
                };
                Ok::<_, Infallible>(res)
            }
        })
    };
    let errors = Arc::new(Mutex::new(Vec::new()));
    let cache = ResponseCache::builder(MemoryStore::new()).client().build();
    let refresh: RefreshCache<String> = RefreshCache::builder(origin, &cache)
        .on_error({
            let errors = Arc::clone(&errors);
            move |_, e| errors.lock().unwrap().push(e.to_string())
        })
        .build();
    let target = url("/sie");
    refresh
        .register(&target, text().min_interval(S(10)))
        .unwrap();
    assert_eq!(*refresh.get(&target).await.unwrap(), "good");
    let refreshed = refresh.refresh(&target).await;
    assert!(
        matches!(refreshed, Err(RefreshError::Fetch(_))),
        "{refreshed:?}"
    );
    assert!(
        errors.lock().unwrap()[0].contains("500"),
        "{:?}",
        errors.lock().unwrap()
    );
    assert_eq!(*refresh.get(&target).await.unwrap(), "good");
}
