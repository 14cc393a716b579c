//! The caching proxy of `tower_etag::proxy` on an `FsStore`, in front of a real origin on
//! 127.0.0.1: what it stores survives a restart of the proxy, large bodies and ranges are
//! read from their files, and nothing half-written is ever served.

use crate::{app, common, proxy_setup};
use app::{open_store, proxy_cache, CacheFlags, StoreSizes};
use axum::{http::StatusCode, Router};
use common::{counted, pattern, response, Counter};
use proxy_setup::{setup_with, status_of, stored, Setup};
use std::path::Path;
use tower_etag::store::{FsStore, Store};

fn origin(calls: &Counter) -> Router {
    Router::new()
        .route(
            "/small",
            counted(calls, |_, _| {
                response(200, &[("cache-control", "max-age=3600")], "small body")
            }),
        )
        .route(
            "/large",
            counted(calls, |_, _| {
                let h = [("cache-control", "max-age=3600"), ("etag", "\"l1\"")];
                response(200, &h, pattern(1 << 20))
            }),
        )
}

async fn proxy_on(dir: &Path, calls: &Counter) -> Setup<FsStore> {
    let store = FsStore::open(dir).await.unwrap();
    let cache = proxy_cache(store, &CacheFlags::default());
    setup_with(origin(calls), cache, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_proxy_stored_is_served_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Counter::new();
    // The cache keys by the client's `Host`; the restarted proxy listens on another port.
    let host = [("host", "site.example")];
    {
        let s = proxy_on(dir.path(), &calls).await;
        assert_eq!(s.proxy.get("/small", &host).await.text(), "small body");
        assert_eq!(s.proxy.get("/large", &host).await.body, pattern(1 << 20));
        for path in ["/small", "/large"] {
            assert!(
                stored(&s.proxy, path, &host).await,
                "{path} was never stored"
            );
        }
        assert_eq!(calls.get(), 2);
    }
    // A new proxy (a new process would do the same) on the same directory.
    let s = proxy_on(dir.path(), &calls).await;
    let small = s.proxy.get("/small", &host).await;
    assert_eq!(small.text(), "small body");
    assert!(status_of(&small).contains("hit"), "{}", status_of(&small));
    let large = s.proxy.get("/large", &host).await;
    assert!(
        large.body == pattern(1 << 20),
        "the whole body, read from its file"
    );
    assert!(status_of(&large).contains("hit"), "{}", status_of(&large));
    assert_eq!(
        calls.get(),
        2,
        "neither reached the origin after the restart"
    );
    // Negative: another host's URL was never stored.
    let other = s.proxy.get("/small", &[("host", "other.example")]).await;
    assert!(status_of(&other).contains("miss"), "{}", status_of(&other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_are_read_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Counter::new();
    let s = proxy_on(dir.path(), &calls).await;
    s.proxy.get("/large", &[]).await;
    assert!(stored(&s.proxy, "/large", &[]).await);
    let body = pattern(1 << 20);
    for (range, start, end) in [
        ("bytes=0-9", 0, 10),
        ("bytes=100000-300000", 100_000, 300_001),
        ("bytes=-5", (1 << 20) - 5, 1 << 20),
    ] {
        let part = s.proxy.get("/large", &[("range", range)]).await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert!(part.body == body[start..end], "{range}");
        assert_eq!(
            part.header("content-length").unwrap(),
            (end - start).to_string()
        );
    }
    // Negative: past the end is 416, not a short part.
    let none = s.proxy.get("/large", &[("range", "bytes=2000000-")]).await;
    assert_eq!(none.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(calls.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_file_damaged_on_disk_breaks_the_response_off() {
    // A body file cut short under a running store (disk trouble, someone's rm): the client
    // sees the response break off, never a short body that looks complete.
    let dir = tempfile::tempdir().unwrap();
    let calls = Counter::new();
    let s = proxy_on(dir.path(), &calls).await;
    s.proxy.get("/large", &[]).await;
    assert!(stored(&s.proxy, "/large", &[]).await);
    for e in std::fs::read_dir(dir.path().join("entries")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "body") {
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len(1000).unwrap();
        }
    }
    // The response may break off before its head is out, or in its body: never complete.
    match s
        .proxy
        .try_send_streaming(axum::http::Method::GET, "/large", &[])
        .await
    {
        Err(_) => {}
        Ok(res) => {
            let read = http_body_util::BodyExt::collect(res.into_body()).await;
            assert!(read.is_err(), "the body must fail, not end short");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_opens_the_stores_its_flags_name() {
    let dir = tempfile::tempdir().unwrap();
    let fs = format!("fs:{}", dir.path().display());
    // Bad values get a message that names them; nothing panics.
    for bad in ["disk", "fs", "mysql://x"] {
        let e = open_store(&[bad.to_owned()], StoreSizes::new(1 << 20))
            .await
            .unwrap_err();
        assert!(e.to_string().contains(bad), "{e}");
    }
    let twice = open_store(&[fs.clone(), fs.clone()], StoreSizes::new(1 << 20)).await;
    assert!(twice.unwrap_err().to_string().contains("two partitions"));
    // --max-entry-bytes reaches the memory and file stores.
    for spec in ["memory".to_owned(), fs.clone()] {
        let sizes = StoreSizes {
            max_entry_bytes: Some(3000),
            ..StoreSizes::new(1 << 20)
        };
        let store = open_store(&[spec], sizes).await.unwrap();
        assert_eq!(store.max_entry_bytes(), Some(3000));
    }
    // Memory and files, partitioned, behind a memory L1: hits say which tier answered.
    let specs = ["memory".to_owned(), fs];
    let sizes = StoreSizes {
        l1_bytes: Some(8 << 20),
        ..StoreSizes::new(64 << 20)
    };
    let store = open_store(&specs, sizes).await.unwrap();
    let calls = Counter::new();
    let s = setup_with(
        origin(&calls),
        proxy_cache(store, &CacheFlags::default()),
        false,
    )
    .await;
    s.proxy.get("/small", &[]).await;
    let from_l1 = common::eventually(|| async {
        status_of(&s.proxy.get("/small", &[]).await).contains("detail=l1")
    })
    .await;
    assert!(from_l1);
    assert_eq!(calls.get(), 1);
}
