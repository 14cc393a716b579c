//! Bodies that are large, unbounded, slow or broken: they stream through untagged, nothing
//! truncated is ever stored or presented as complete, and one slow body does not hold up
//! other requests.

use crate::common;
use axum::{body::Body, http::Method, routing::get, Router};
use bytes::Bytes;
use common::{
    body_error, counted, expected_etag, response, with_etag, BoxError, Counter, HintedBody,
    Provider, TestServer, IO_TIMEOUT,
};
use futures_util::stream;
use http_body_util::BodyExt;
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::oneshot;

// ---------------------------------------------------------------------------------------
// 9. Large bodies
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn body_larger_than_max_body_size_streams_through_untagged() {
    let counter = Counter::new();
    let provider = Provider::builder().max_body_size(16).build();
    let big = "x".repeat(100);
    let exact = "y".repeat(16);
    let over_by_one = "z".repeat(17);
    let app = Router::new()
        .route("/big", {
            let big = big.clone();
            counted(&counter, move |_, _| response(200, &[], big.clone()))
        })
        .route("/exact", {
            let exact = exact.clone();
            counted(&counter, move |_, _| response(200, &[], exact.clone()))
        })
        .route("/over", {
            let over = over_by_one.clone();
            counted(&counter, move |_, _| response(200, &[], over.clone()))
        })
        .route(
            "/big-stream",
            // A body whose length is unknown up front and turns out too large while read.
            counted(&counter, |_, _| {
                let chunks = (0..10).map(|_| Ok::<_, BoxError>(Bytes::from_static(b"0123456789")));
                response(200, &[], Body::from_stream(stream::iter(chunks)))
            }),
        );
    let server = TestServer::start(with_etag(app, &provider)).await;

    let res = server.get("/big", &[]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body, big.as_bytes());
    assert_eq!(res.count("etag"), 0, "{:?}", res.headers);
    // Nothing stored, so a tag matches nothing. `*` matches any current representation
    // (RFC 9110 §13.1.2), and a 200 is one: 304, tag or not.
    let res = server.get("/big", &[("if-none-match", "*")]).await;
    assert_eq!(res.status, 304);
    assert!(res.body.is_empty());
    let res = server
        .get("/big", &[("if-none-match", &expected_etag(big.as_bytes()))])
        .await;
    assert_eq!(res.status, 200);

    let res = server.get("/over", &[]).await;
    assert_eq!(res.body, over_by_one.as_bytes());
    assert_eq!(res.count("etag"), 0);

    let res = server.get("/big-stream", &[]).await;
    assert_eq!(res.body.len(), 100);
    assert_eq!(res.count("etag"), 0);

    assert!(provider.is_empty(), "oversized bodies leave no entry");

    // Boundary: exactly max_body_size bytes is tagged.
    let res = server.get("/exact", &[]).await;
    assert_eq!(res.body, exact.as_bytes());
    assert_eq!(res.etag(), expected_etag(exact.as_bytes()));
    assert_eq!(provider.len(), 1);
}

#[tokio::test]
async fn body_that_grows_past_the_limit_drops_the_old_entry() {
    let provider = Provider::builder().max_body_size(16).build();
    let body = Arc::new(Mutex::new("small".to_owned()));
    let current = body.clone();
    let counter = Counter::new();
    let app = Router::new().route(
        "/r",
        counted(&counter, move |_, _| {
            response(
                200,
                &[("cache-control", "max-age=60")],
                current.lock().unwrap().clone(),
            )
        }),
    );
    let server = TestServer::start(with_etag(app, &provider)).await;
    let etag = server.get("/r", &[]).await.etag();
    assert!(provider.etag(&server.key("/r")).is_some());

    *body.lock().unwrap() = "large ".repeat(10);
    // A plain request (no precondition) reaches the handler and replaces the entry.
    let res = server.get("/r", &[]).await;
    assert_eq!(res.count("etag"), 0);
    assert_eq!(
        provider.etag(&server.key("/r")),
        None,
        "stale entry dropped"
    );
    // So the old tag is no longer answered 304 from the cache.
    let res = server.get("/r", &[("if-none-match", &etag)]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "large ".repeat(10));
}

// ---------------------------------------------------------------------------------------
// 9. Unbounded streams
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn unbounded_stream_is_untagged_and_its_first_chunk_arrives_before_it_ends() {
    let provider = Provider::init();
    let gate: Arc<Mutex<Option<oneshot::Receiver<()>>>> = Arc::new(Mutex::new(None));
    let (tx, rx) = oneshot::channel::<()>();
    *gate.lock().unwrap() = Some(rx);
    let handler_gate = gate.clone();
    let app = Router::new().route(
        "/stream",
        get(move || {
            let rx = handler_gate
                .lock()
                .unwrap()
                .take()
                .expect("one request only");
            async move {
                let first =
                    stream::once(async { Ok::<_, BoxError>(Bytes::from_static(b"first;")) });
                let second = stream::once(async move {
                    rx.await.map_err(|e| Box::new(e) as BoxError)?;
                    Ok::<_, BoxError>(Bytes::from_static(b"second"))
                });
                Body::from_stream(futures_util::StreamExt::chain(first, second))
            }
        }),
    );
    let server = TestServer::start(with_etag(app, &provider)).await;

    let res = server.send_streaming(Method::GET, "/stream", &[]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers().get_all("etag").iter().count(), 0);
    let mut body = res.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the first chunk must arrive while the stream is still open")
        .expect("body ended early")
        .expect("body error");
    assert_eq!(frame.into_data().unwrap(), "first;");
    tx.send(()).unwrap();
    let rest = tokio::time::timeout(IO_TIMEOUT, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(rest, "second");
    assert!(provider.is_empty());
}

// ---------------------------------------------------------------------------------------
// 9. Bodies that fail mid-stream
// ---------------------------------------------------------------------------------------

/// Reads a response whose body is expected to break. Whether the client sees the failure
/// before the head (hyper closes the connection while the head is still buffered) or while
/// reading the body, it must never see a 5xx (the status was decided before the error) nor a
/// body that looks complete.
async fn assert_broken_body(server: &TestServer, path: &str, headers: &[(&str, &str)]) {
    let res = match server.try_send_streaming(Method::GET, path, headers).await {
        Err(e) => {
            assert!(!e.is_connect(), "{path}: could not connect: {e:?}");
            return;
        }
        Ok(res) => res,
    };
    assert_eq!(
        res.status(),
        200,
        "{path}: not a 500: the head went out before the error"
    );
    let read = tokio::time::timeout(IO_TIMEOUT, res.into_body().collect())
        .await
        .expect("timed out reading the broken body");
    if let Ok(body) = read {
        panic!(
            "{path}: a body that failed mid-stream was delivered as complete: {:?}",
            body.to_bytes()
        );
    }
}

fn failing_chunks() -> impl futures_util::Stream<Item = Result<Bytes, BoxError>> + Send {
    stream::iter(vec![
        Ok(Bytes::from_static(b"hello ")),
        Err(body_error("backend went away")),
    ])
}

#[tokio::test]
async fn unbounded_body_failing_mid_stream_is_broken_for_the_client_and_not_stored() {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = Router::new().route(
        "/fail",
        counted(&counter, |_, _| {
            response(200, &[], Body::from_stream(failing_chunks()))
        }),
    );
    let server = TestServer::start(with_etag(app, &provider)).await;
    assert_broken_body(&server, "/fail", &[]).await;
    assert!(provider.is_empty());
    assert_eq!(provider.etag(&server.key("/fail")), None);
    // The tag of what was sent (or of the intended whole) gives no 304.
    for tag in [expected_etag(b"hello "), expected_etag(b"hello world")] {
        assert_broken_body(&server, "/fail", &[("if-none-match", &tag)]).await;
    }
    assert_eq!(counter.get(), 3);
    assert!(provider.is_empty());
}

/// The same with a body that declares its length (so the provider reads it ahead to hash
/// it): the error must still reach the client as a broken body.
#[tokio::test]
async fn sized_body_failing_mid_stream_is_broken_for_the_client_and_not_stored() {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = Router::new().route(
        "/fail",
        counted(&counter, |_, _| {
            let mut res = response(200, &[], "");
            *res.body_mut() = HintedBody::exact(failing_chunks(), 11);
            res
        }),
    );
    let server = TestServer::start(with_etag(app, &provider)).await;
    assert_broken_body(&server, "/fail", &[]).await;
    assert!(provider.is_empty());
    assert_eq!(provider.etag(&server.key("/fail")), None);
    for tag in [expected_etag(b"hello "), expected_etag(b"hello world")] {
        assert_broken_body(&server, "/fail", &[("if-none-match", &tag)]).await;
    }
    assert_eq!(counter.get(), 3);
}

/// Control for the test above: without the layer, the same handler gives the client a broken
/// body (so that test's expectation is about the layer, not about axum or hyper).
#[tokio::test]
async fn sized_body_failing_mid_stream_without_the_layer_is_broken() {
    let counter = Counter::new();
    let app = Router::new().route(
        "/fail",
        counted(&counter, |_, _| {
            let mut res = response(200, &[], "");
            *res.body_mut() = HintedBody::exact(failing_chunks(), 11);
            res
        }),
    );
    let server = TestServer::start(app).await;
    assert_broken_body(&server, "/fail", &[]).await;
}

/// Whatever the client sees of a sized body that fails, it carries no tag, nothing is
/// stored, and the tag of the bytes that did get out never yields a 304.
#[tokio::test]
async fn sized_body_failing_mid_stream_is_not_tagged_or_stored() {
    let provider = Provider::init();
    let app = Router::new().route(
        "/fail",
        get(|| async { HintedBody::exact(failing_chunks(), 11) }),
    );
    let server = TestServer::start(with_etag(app, &provider)).await;
    let prefix_tag = expected_etag(b"hello ");
    for headers in [vec![], vec![("if-none-match", prefix_tag.as_str())]] {
        if let Ok(res) = server
            .try_send_streaming(Method::GET, "/fail", &headers)
            .await
        {
            assert_eq!(res.status(), 200, "{headers:?}");
            assert_eq!(res.headers().get_all("etag").iter().count(), 0);
            let _ = tokio::time::timeout(IO_TIMEOUT, res.into_body().collect()).await;
        }
        assert!(provider.is_empty());
        assert_eq!(provider.etag(&server.key("/fail")), None);
    }
}

// ---------------------------------------------------------------------------------------
// 10. Concurrency
// ---------------------------------------------------------------------------------------

const SLOW: Duration = Duration::from_secs(2);

async fn assert_fast_path_not_delayed(app: Router, provider: &Provider) {
    let server = TestServer::start(with_etag(app, provider)).await;
    let slow_server = server.clone();
    let slow = tokio::spawn(async move {
        let started = Instant::now();
        let res = slow_server.get("/slow", &[]).await;
        (res, started.elapsed())
    });
    // Let the slow request get into the layer first.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let fast = server.get("/fast", &[]).await;
    let fast_elapsed = started.elapsed();
    assert_eq!(fast.status, 200);
    assert_eq!(fast.etag(), expected_etag(b"fast"));
    assert!(
        fast_elapsed < Duration::from_millis(1000),
        "fast request took {fast_elapsed:?} while a slow one was in flight"
    );

    let (slow_res, slow_elapsed) = tokio::time::timeout(IO_TIMEOUT, slow)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(slow_res.status, 200);
    assert_eq!(slow_res.text(), "slow body");
    assert_eq!(slow_res.etag(), expected_etag(b"slow body"));
    assert!(slow_elapsed >= SLOW, "the slow request really was slow");
}

#[tokio::test]
async fn slow_handler_does_not_delay_a_concurrent_fast_request() {
    let provider = Provider::init();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(SLOW).await;
                "slow body"
            }),
        )
        .route("/fast", get(|| async { "fast" }));
    assert_fast_path_not_delayed(app, &provider).await;
}

/// A body of a known size (9 bytes) whose second chunk comes after [`SLOW`].
fn slow_sized_body() -> Router {
    Router::new()
        .route(
            "/slow",
            get(|| async {
                let chunks = futures_util::StreamExt::chain(
                    stream::once(async { Ok::<_, BoxError>(Bytes::from_static(b"slow ")) }),
                    stream::once(async {
                        tokio::time::sleep(SLOW).await;
                        Ok::<_, BoxError>(Bytes::from_static(b"body"))
                    }),
                );
                HintedBody::exact(chunks, 9)
            }),
        )
        .route("/fast", get(|| async { "fast" }))
}

#[tokio::test]
async fn slow_sized_body_being_hashed_does_not_delay_a_concurrent_fast_request() {
    // The provider reads this body ahead to hash it (it may take up to 5 s); the read takes
    // 2 s.
    let provider = Provider::builder()
        .read_ahead_timeout(Duration::from_secs(5))
        .build();
    assert_fast_path_not_delayed(slow_sized_body(), &provider).await;
}

#[tokio::test]
async fn a_slow_body_does_not_hold_its_head_back_past_the_read_ahead_timeout() {
    // By default a body is read ahead for at most 500 ms: then its head goes out, untagged,
    // and the body streams as it comes.
    let provider = Provider::init();
    let server = TestServer::start(with_etag(slow_sized_body(), &provider)).await;
    let started = Instant::now();
    let res = server.send_streaming(Method::GET, "/slow", &[]).await;
    let head_after = started.elapsed();
    assert!(
        head_after < SLOW,
        "the head waited {head_after:?} for the body"
    );
    assert!(
        res.headers().get("etag").is_none(),
        "a body not read whole was tagged"
    );
    let body = tokio::time::timeout(IO_TIMEOUT, res.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(body, "slow body");
    assert!(provider.is_empty(), "nothing stored for an untagged body");
}
