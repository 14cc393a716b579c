//! Requests coalesced on a fill read its body as it streams into the store, instead of
//! waiting for the commit; a fill that fails mid-body fails theirs too. Through the proxy
//! of `tower_etag::proxy`, on each store, against a real origin on 127.0.0.1 whose body the
//! test releases piece by piece.

use crate::{app, common, proxy_setup, redis_server};
use app::{proxy_cache, CacheFlags};
use axum::{http::StatusCode, Router};
use bytes::Bytes;
use common::{counted, BoxError, Counter, HintedBody};
use http_body_util::BodyExt as _;
use proxy_setup::{setup_with, Setup};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tower_etag::store::{FsStore, MemoryStore, Store};

const PIECE: usize = 100_000;
const PIECES: usize = 4;

type Feed = mpsc::Sender<Result<Bytes, BoxError>>;

/// An origin whose `/slow` body (`PIECES` pieces, length declared) comes as the test feeds
/// it; every call after the first gets it whole at once.
fn origin(calls: &Counter) -> (Router, Feed) {
    let (feed, rx) = mpsc::channel::<Result<Bytes, BoxError>>(PIECES);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let app = Router::new().route(
        "/slow",
        counted(calls, move |_, _| {
            let len = (PIECE * PIECES) as u64;
            let body = match rx.lock().unwrap().take() {
                Some(mut rx) => HintedBody::exact(
                    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)),
                    len,
                ),
                None => HintedBody::exact(
                    futures_util::stream::iter((0..PIECES).map(|i| Ok(piece(i)))),
                    len,
                ),
            };
            axum::http::Response::builder()
                .header("cache-control", "max-age=3600")
                .body(body)
                .unwrap()
        }),
    );
    (app, feed)
}

fn piece(i: usize) -> Bytes {
    Bytes::from(vec![b'a' + i as u8; PIECE])
}

fn whole() -> Vec<u8> {
    (0..PIECES).flat_map(|i| piece(i).to_vec()).collect()
}

/// Reads `n` bytes of `body` (or fails), within the test's deadline.
async fn read_n(body: &mut hyper::body::Incoming, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let frame = tokio::time::timeout(common::IO_TIMEOUT, body.frame())
            .await
            .expect("bytes came in time")
            .expect("the body goes on")
            .expect("the body reads");
        got.extend_from_slice(&frame.into_data().unwrap());
    }
    got
}

async fn follower_streams_the_fill<St: Store>(name: &str, store: St) {
    let calls = Counter::new();
    let (app, feed) = origin(&calls);
    let s: Setup<St> = setup_with(app, proxy_cache(store, &CacheFlags::default()), false).await;
    feed.send(Ok(piece(0))).await.unwrap();
    let leader = s
        .proxy
        .send_streaming(axum::http::Method::GET, "/slow", &[])
        .await;
    let mut leader_body = leader.into_body();
    assert_eq!(read_n(&mut leader_body, PIECE).await, piece(0), "{name}");
    feed.send(Ok(piece(1))).await.unwrap();
    assert_eq!(read_n(&mut leader_body, PIECE).await, piece(1), "{name}");

    // The follower gets the head and what was written so far while the origin still holds
    // the rest back: it does not wait for the commit.
    let follower = s
        .proxy
        .send_streaming(axum::http::Method::GET, "/slow", &[])
        .await;
    assert_eq!(follower.status(), StatusCode::OK);
    let status = follower.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        status.contains("hit") && status.contains("collapsed"),
        "{name}: {status}"
    );
    assert_eq!(
        follower.headers()["content-length"],
        (PIECE * PIECES).to_string()
    );
    let mut follower_body = follower.into_body();
    // What the store has (a file store writes in 64 KiB pieces, Redis in 128 KiB chunks):
    // at least the first piece's worth, before anything more is released.
    let early = read_n(&mut follower_body, 64 * 1024).await;
    assert_eq!(&early[..], &whole()[..early.len()], "{name}");

    for i in 2..PIECES {
        feed.send(Ok(piece(i))).await.unwrap();
    }
    drop(feed);
    let rest = leader_body.collect().await.unwrap().to_bytes();
    assert_eq!(rest.len(), PIECE * (PIECES - 2), "{name}");
    let mut followed = early;
    followed.extend_from_slice(&follower_body.collect().await.unwrap().to_bytes());
    assert!(followed == whole(), "{name}: the follower's body, whole");
    assert_eq!(calls.get(), 1, "{name}: one origin call");
}

async fn a_failed_fill_fails_its_followers<St: Store>(name: &str, store: St) {
    let calls = Counter::new();
    let (app, feed) = origin(&calls);
    let s: Setup<St> = setup_with(app, proxy_cache(store, &CacheFlags::default()), false).await;
    feed.send(Ok(piece(0))).await.unwrap();
    feed.send(Ok(piece(1))).await.unwrap();
    let leader = s
        .proxy
        .send_streaming(axum::http::Method::GET, "/slow", &[])
        .await;
    let mut leader_body = leader.into_body();
    read_n(&mut leader_body, 2 * PIECE).await;
    let follower = s
        .proxy
        .send_streaming(axum::http::Method::GET, "/slow", &[])
        .await;
    let mut follower_body = follower.into_body();
    read_n(&mut follower_body, 64 * 1024).await;
    // The origin's body fails halfway.
    feed.send(Err(common::body_error("origin gone")))
        .await
        .unwrap();
    drop(feed);
    assert!(
        leader_body.collect().await.is_err(),
        "{name}: the leader's body fails"
    );
    let followed = tokio::time::timeout(common::IO_TIMEOUT, follower_body.collect())
        .await
        .expect("the follower is not left waiting");
    assert!(
        followed.is_err(),
        "{name}: the follower's body fails too, never ends short"
    );
    // Nothing half-written was stored: the next request goes to the origin.
    let next = s.proxy.get("/slow", &[]).await;
    assert!(next.body == whole());
    assert_eq!(calls.get(), 2, "{name}");
}

/// A large body (more than the socket buffers hold), all there at once, length declared.
const LARGE: usize = 4 * 1024 * 1024;

fn large() -> Bytes {
    Bytes::from((0..LARGE).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

fn large_origin(calls: &Counter) -> Router {
    let body = large();
    Router::new().route(
        "/large",
        counted(calls, move |_, _| {
            let chunks: Vec<Result<Bytes, BoxError>> = body
                .chunks(64 * 1024)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let body = HintedBody::exact(futures_util::stream::iter(chunks), LARGE as u64);
            axum::http::Response::builder()
                .header("cache-control", "max-age=3600")
                .body(body)
                .unwrap()
        }),
    )
}

/// Issue 20: a client that goes away in the middle of a fill leaves the rest to the cache:
/// the entry is stored all the same, and the next client gets the whole body from one
/// origin call. (The fill used to be thrown away with the client's connection.)
async fn a_fill_outlives_a_client_that_leaves<St: Store>(name: &str, store: St) {
    let calls = Counter::new();
    let s: Setup<St> = setup_with(
        large_origin(&calls),
        proxy_cache(store, &CacheFlags::default()),
        false,
    )
    .await;
    let first = s
        .proxy
        .send_streaming(axum::http::Method::GET, "/large", &[])
        .await;
    let mut first_body = first.into_body();
    read_n(&mut first_body, 1).await;
    drop(first_body);
    assert!(
        proxy_setup::stored(&s.proxy, "/large", &[]).await,
        "{name}: the fill its client left was stored"
    );
    let got = s.proxy.get("/large", &[]).await;
    assert!(got.body == large(), "{name}: the next client's body, whole");
    assert_eq!(calls.get(), 1, "{name}: one origin call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_goes_on_when_its_client_leaves() {
    a_fill_outlives_a_client_that_leaves("memory", MemoryStore::new()).await;
    let dir = tempfile::tempdir().unwrap();
    a_fill_outlives_a_client_that_leaves("fs", FsStore::open(dir.path()).await.unwrap()).await;
    #[cfg(feature = "redis")]
    {
        let Some(server) = redis_server::RedisServer::start_or_skip("a fill outlives (Redis)")
        else {
            return;
        };
        a_fill_outlives_a_client_that_leaves("redis", server.store("leave").await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_stream_a_fill_in_every_store() {
    follower_streams_the_fill("memory", MemoryStore::new()).await;
    a_failed_fill_fails_its_followers("memory", MemoryStore::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(dir.path()).await.unwrap();
    follower_streams_the_fill("fs", fs.clone()).await;
    fs.clear().await.unwrap();
    a_failed_fill_fails_its_followers("fs", fs).await;
    #[cfg(feature = "redis")]
    {
        let Some(server) = redis_server::RedisServer::start_or_skip("followers (Redis part)")
        else {
            return;
        };
        let redis = || server.store("follow");
        follower_streams_the_fill("redis", redis().await).await;
        redis().await.clear().await.unwrap();
        a_failed_fill_fails_its_followers("redis", redis().await).await;
    }
}
