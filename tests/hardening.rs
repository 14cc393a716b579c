//! End-to-end tests of the defects a hostile client or a multi-user origin could exploit in
//! the response cache and the caching proxy (issue "Hardening"): the proxy example's own
//! code in front of a real origin, both on 127.0.0.1. Each test names the defect it proves
//! fixed and asserts what must NOT be served.

use crate::{common, proxy_setup};
use axum::{
    body::Body,
    http::{HeaderMap, Method, StatusCode},
    routing::any,
    Router,
};
use bytes::Bytes;
use common::{counted, raw_exchange, response, Counter, TestServer};
use futures_util::StreamExt as _;
use proxy_setup::{setup, setup_with, status_of, Setup};
use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::Notify;
use tower_etag::{response_cache::ResponseCache, store::MemoryStore};

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).map_or("", |v| v.to_str().unwrap())
}

/// An origin for `/a` whose first answer is a stale-at-once `200` with `ETag: "v1"` and whose
/// revalidations (`If-None-Match: "v1"`) get a `304` with `revalidation` headers.
fn revalidating_origin(
    full: &Counter,
    revalidation: &'static [(&'static str, &'static str)],
) -> Router {
    Router::new().route(
        "/a",
        counted(full, move |_, headers| {
            if header(headers, "if-none-match") == "\"v1\"" {
                let mut h = vec![("etag", "\"v1\"")];
                h.extend_from_slice(revalidation);
                response(304, &h, Body::empty())
            } else {
                let h = [("cache-control", "max-age=0"), ("etag", "\"v1\"")];
                response(200, &h, "page")
            }
        }),
    )
}

// 1. Session replay through revalidation ------------------------------------------------

#[tokio::test]
async fn set_cookie_on_a_304_goes_to_that_client_only() {
    let calls = Counter::new();
    let s = setup(revalidating_origin(
        &calls,
        &[
            ("cache-control", "max-age=60"),
            ("set-cookie", "session=alice"),
        ],
    ))
    .await;
    s.proxy.get("/a", &[]).await;
    // Alice's request revalidates; the origin's 304 rolls her session.
    let alice = s.proxy.get("/a", &[("cookie", "session=alice-old")]).await;
    assert_eq!(alice.text(), "page");
    assert_eq!(alice.header("set-cookie").as_deref(), Some("session=alice"));
    // Bob is served the freshened entry: never Alice's cookie.
    let bob = s.proxy.get("/a", &[]).await;
    assert_eq!(bob.text(), "page");
    assert!(status_of(&bob).contains("hit"), "{}", status_of(&bob));
    assert_eq!(bob.header("set-cookie"), None, "{:?}", bob.headers);
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn a_304_that_says_private_removes_the_shared_entry() {
    const PRIVATE: &[(&str, &str)] = &[("cache-control", "private, max-age=60")];
    const NO_STORE: &[(&str, &str)] = &[("cache-control", "no-store")];
    for revalidation in [PRIVATE, NO_STORE] {
        let cache_control = revalidation[0].1;
        let calls = Counter::new();
        let s = setup(revalidating_origin(&calls, revalidation)).await;
        s.proxy.get("/a", &[]).await;
        let first = s.proxy.get("/a", &[("cookie", "u=alice")]).await;
        assert_eq!(first.text(), "page", "{cache_control}");
        assert_eq!(calls.get(), 2);
        // The next client is not served what the origin now calls private or unstorable.
        let next = s.proxy.get("/a", &[]).await;
        assert!(
            !status_of(&next).contains("hit"),
            "{cache_control}: {}",
            status_of(&next)
        );
        assert_eq!(calls.get(), 3, "{cache_control}: the entry was removed");
    }
}

// 2. Unbounded background drains ---------------------------------------------------------

/// A chunked body of up to `limit` bytes in 64 KiB chunks that counts what it produced and
/// says when it was dropped (the connection to the origin closed).
fn counted_stream(produced: Arc<AtomicU64>, dropped: Arc<Notify>, limit: u64) -> Body {
    struct OnDrop(Arc<Notify>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.notify_one();
        }
    }
    let guard = OnDrop(dropped);
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let stream = futures_util::stream::unfold(0u64, move |sent| {
        let (chunk, produced) = (chunk.clone(), produced.clone());
        let _keep = &guard;
        async move {
            if sent >= limit {
                return None;
            }
            produced.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Some((
                Ok::<_, std::io::Error>(chunk.clone()),
                sent + chunk.len() as u64,
            ))
        }
    });
    Body::from_stream(stream)
}

#[tokio::test]
async fn a_head_of_a_large_chunked_response_stops_reading_once_the_store_gives_up() {
    let produced = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(Notify::new());
    let app = {
        let (produced, dropped) = (produced.clone(), dropped.clone());
        Router::new().route(
            "/big",
            any(move || {
                let (produced, dropped) = (produced.clone(), dropped.clone());
                async move {
                    let mut res =
                        axum::response::Response::new(counted_stream(produced, dropped, 256 << 20));
                    res.headers_mut()
                        .insert("cache-control", "max-age=60".parse().unwrap());
                    res
                }
            }),
        )
    };
    let store = MemoryStore::builder().max_entry_bytes(1 << 20).build();
    let s = setup_with(app, ResponseCache::new(store), false).await;
    let head = s.proxy.head("/big", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    // The drain stops once the store refuses the entry (1 MiB), and the upstream body is
    // closed: the origin's stream is dropped long before its 256 MiB.
    tokio::time::timeout(Duration::from_secs(10), dropped.notified())
        .await
        .expect("the upstream body was never closed");
    let read = produced.load(Ordering::SeqCst);
    assert!(read < 32 << 20, "read {read} bytes for a HEAD");
}

#[tokio::test]
async fn background_fills_are_bounded() {
    // Every HEAD miss would become a background GET fill; these bodies end only once the
    // test opens the gate, so every fill that was started is still running then.
    let gate = Arc::new(Notify::new());
    let app = {
        let gate = gate.clone();
        Router::new().route(
            "/s/{n}",
            any(move || {
                let gate = gate.clone();
                async move {
                    let body = futures_util::stream::once(async move {
                        gate.notified().await;
                        Ok::<_, std::io::Error>(Bytes::from_static(b"done"))
                    });
                    let mut res = axum::response::Response::new(Body::from_stream(body));
                    res.headers_mut()
                        .insert("cache-control", "max-age=60".parse().unwrap());
                    res
                }
            }),
        )
    };
    let cache = ResponseCache::builder(MemoryStore::new())
        .max_background_fills(8)
        .build();
    let s = setup_with(app, cache, false).await;
    let mut heads = Vec::new();
    for n in 0..40 {
        let proxy = s.proxy.clone();
        heads.push(tokio::spawn(async move {
            proxy.head(&format!("/s/{n}"), &[]).await
        }));
    }
    for h in heads {
        assert_eq!(
            h.await.unwrap().status,
            StatusCode::OK,
            "every HEAD is answered"
        );
    }
    // Only the fills that got a place in the background pool wrote anything (their index,
    // at the head); the others were not started.
    let started = s.cache.store().len();
    assert!(started <= 8, "{started} background fills at once");
    gate.notify_waiters();
    // Those finish and are stored.
    let store = s.cache.store();
    assert!(common::eventually(|| async { store.len() == 2 * started }).await);
}

// 3. Host / authority confusion ----------------------------------------------------------

fn echo_host() -> Router {
    Router::new().route(
        "/x",
        any(|headers: HeaderMap| async move {
            let text = format!(
                "host={} xfh={} fwd={} xff={} xfp={} override={}",
                header(&headers, "host"),
                header(&headers, "x-forwarded-host"),
                header(&headers, "forwarded"),
                header(&headers, "x-forwarded-for"),
                header(&headers, "x-forwarded-proto"),
                header(&headers, "x-http-method-override"),
            );
            response(200, &[("cache-control", "max-age=60")], text)
        }),
    )
}

#[tokio::test]
async fn an_absolute_form_target_and_the_host_field_never_name_two_hosts() {
    let s = setup_with(echo_host(), ResponseCache::new(MemoryStore::new()), true).await;
    // Keyed under a.test, while the origin would see b.test.
    let poison = raw_exchange(
        s.proxy.addr,
        b"GET http://a.test/x HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&poison.after_head).into_owned();
    assert!(
        poison.status() == 400 || text.starts_with("host=a.test "),
        "the origin was asked for another host than the key: {} {text}",
        poison.status()
    );
    let victim = raw_exchange(
        s.proxy.addr,
        b"GET /x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&victim.after_head).into_owned();
    assert!(
        text.starts_with("host=a.test "),
        "a.test was served: {text}"
    );
}

#[tokio::test]
async fn default_ports_and_case_share_one_key() {
    let calls = Counter::new();
    let app = Router::new().route(
        "/p",
        counted(&calls, |_, _| {
            response(200, &[("cache-control", "max-age=60")], "p")
        }),
    );
    let s = setup_with(app, ResponseCache::new(MemoryStore::new()), true).await;
    for host in ["Example.TEST", "example.test:80", "example.test"] {
        let req = format!("GET /p HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        assert_eq!(
            raw_exchange(s.proxy.addr, req.as_bytes()).await.status(),
            200
        );
    }
    assert_eq!(calls.get(), 1, "one entry for one origin");
}

#[tokio::test]
async fn the_origin_is_asked_for_exactly_the_host_the_key_names() {
    // An origin that builds links from `Host` must never put another spelling of the host
    // into the entry everyone is served.
    let s = setup_with(echo_host(), ResponseCache::new(MemoryStore::new()), true).await;
    let first = raw_exchange(
        s.proxy.addr,
        b"GET /x HTTP/1.1\r\nHost: Example.TEST:80\r\nConnection: close\r\n\r\n",
    )
    .await;
    let text = String::from_utf8_lossy(&first.after_head).into_owned();
    assert!(text.starts_with("host=example.test "), "{text}");
}

#[tokio::test]
async fn two_host_fields_are_rejected() {
    let s = setup_with(echo_host(), ResponseCache::new(MemoryStore::new()), true).await;
    let r = raw_exchange(
        s.proxy.addr,
        b"GET /x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        r.status(),
        400,
        "{:?}",
        String::from_utf8_lossy(&r.after_head)
    );
}

#[tokio::test]
async fn the_proxy_does_not_forward_client_forwarding_headers() {
    let s = setup(echo_host()).await;
    let r = s
        .proxy
        .get(
            "/x",
            &[
                ("x-forwarded-host", "evil.test"),
                ("forwarded", "host=evil.test"),
                ("x-http-method-override", "DELETE"),
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
    let text = r.text();
    assert!(!text.contains("evil.test"), "{text}");
    assert!(!text.contains("DELETE"), "{text}");
    assert!(!text.contains("6.6.6.6"), "{text}");
    // The proxy says who the client is and how it came.
    assert!(text.contains("xff=127.0.0.1 "), "{text}");
    assert!(text.contains("xfp=http "), "{text}");
}

#[tokio::test]
async fn the_cache_keys_on_what_the_origin_gets() {
    // A client names `Accept-Language` hop-by-hop: the proxy drops it, so the origin never
    // sees it. Had the cache keyed on it, German users would get the page made without it.
    let app = Router::new().route(
        "/l",
        any(|headers: HeaderMap| async move {
            let lang = header(&headers, "accept-language").to_owned();
            let h = [("cache-control", "max-age=60"), ("vary", "accept-language")];
            response(200, &h, format!("lang={lang}"))
        }),
    );
    let s = setup(app).await;
    let hop = s
        .proxy
        .get(
            "/l",
            &[("accept-language", "de"), ("connection", "accept-language")],
        )
        .await;
    assert_eq!(hop.text(), "lang=");
    let german = s.proxy.get("/l", &[("accept-language", "de")]).await;
    assert_eq!(german.text(), "lang=de");
}

// 4. Fat GET poisoning -------------------------------------------------------------------

#[tokio::test]
async fn a_get_with_a_body_bypasses_the_cache() {
    let app = Router::new().route(
        "/f",
        any(|body: Bytes| async move {
            let text = format!("body={}", String::from_utf8_lossy(&body));
            response(200, &[("cache-control", "max-age=60")], text)
        }),
    );
    let s = setup(app).await;
    let fat = raw_exchange(
        s.proxy.addr,
        b"GET /f HTTP/1.1\r\nHost: h.test\r\nContent-Length: 6\r\nConnection: close\r\n\r\npoison",
    )
    .await;
    let status = fat.header("cache-status").unwrap_or_default().to_owned();
    assert!(status.contains("fwd=bypass"), "{status}");
    assert!(status.contains("detail=request-body"), "{status}");
    let clean = raw_exchange(
        s.proxy.addr,
        b"GET /f HTTP/1.1\r\nHost: h.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&clean.after_head), "body=");
}

#[tokio::test]
async fn an_origins_412_to_its_own_precondition_is_never_stored() {
    // An origin that answers an `If-Unmodified-Since` (here two lines, no valid date to the
    // cache: RFC 9110 §13.1.4) with a 412 that has freshness: stored, it would be served
    // to everyone.
    let calls = Counter::new();
    let app = Router::new().route(
        "/c",
        counted(&calls, |_, headers| {
            let h = [("cache-control", "public, max-age=3600")];
            if headers.contains_key("if-unmodified-since") {
                response(412, &h, "precondition failed")
            } else {
                response(200, &h, "content")
            }
        }),
    );
    let s = setup(app).await;
    let date = "Thu, 01 Jan 1970 00:00:00 GMT";
    // The proxy does not speak for the origin: an `If-Unmodified-Since` is the origin's to
    // evaluate (RFC 9111 §4.3.2), so it goes there, and its 412 to this client only.
    let odd = s
        .proxy
        .get(
            "/c",
            &[("if-unmodified-since", date), ("if-unmodified-since", date)],
        )
        .await;
    assert_eq!(odd.status, StatusCode::PRECONDITION_FAILED);
    assert!(
        odd.header("cache-status")
            .unwrap()
            .contains("detail=origin-precondition"),
        "{:?}",
        odd.header("cache-status")
    );
    let clean = s.proxy.get("/c", &[]).await;
    assert_eq!(
        clean.status,
        StatusCode::OK,
        "a 412 was stored for everyone"
    );
    assert_eq!(clean.text(), "content");
}

// 5. Invalidation racing a fill -----------------------------------------------------------

#[tokio::test]
async fn an_invalidation_wins_over_a_fill_that_started_before_it() {
    let version = Arc::new(AtomicUsize::new(1));
    let gate = Arc::new(Notify::new());
    let at_origin = Arc::new(Notify::new());
    let app = {
        let (version, gate, at_origin) = (version.clone(), gate.clone(), at_origin.clone());
        Router::new().route(
            "/r",
            any(move |method: Method| {
                let (version, gate, at_origin) = (version.clone(), gate.clone(), at_origin.clone());
                async move {
                    if method == Method::POST {
                        version.fetch_add(1, Ordering::SeqCst);
                        return response(204, &[], Body::empty());
                    }
                    let v = version.load(Ordering::SeqCst);
                    if v == 1 {
                        // The pre-POST fill is held at the origin until the POST is done.
                        at_origin.notify_one();
                        gate.notified().await;
                    }
                    response(200, &[("cache-control", "max-age=60")], format!("v{v}"))
                }
            }),
        )
    };
    let s = setup(app).await;
    let proxy = s.proxy.clone();
    let slow = tokio::spawn(async move { proxy.get("/r", &[]).await });
    at_origin.notified().await;
    let post = s.proxy.request(Method::POST, "/r", &[]).await;
    assert_eq!(post.status, StatusCode::NO_CONTENT);
    gate.notify_one();
    assert_eq!(slow.await.unwrap().text(), "v1");
    let after = s.proxy.get("/r", &[]).await;
    assert_eq!(
        after.text(),
        "v2",
        "the pre-POST response outlived the invalidation"
    );
}

// 6. Freshening the wrong body -------------------------------------------------------------

#[tokio::test]
async fn concurrent_revalidations_of_one_entry_make_one_origin_call() {
    let revalidations = Counter::new();
    let gate = Arc::new(Notify::new());
    let app = {
        let (revalidations, gate) = (revalidations.clone(), gate.clone());
        Router::new().route(
            "/a",
            any(move |headers: HeaderMap| {
                let (revalidations, gate) = (revalidations.clone(), gate.clone());
                async move {
                    if header(&headers, "if-none-match") == "\"v1\"" {
                        revalidations.inc();
                        gate.notified().await;
                        let h = [("cache-control", "max-age=60"), ("etag", "\"v1\"")];
                        return response(304, &h, Body::empty());
                    }
                    let h = [("cache-control", "max-age=0"), ("etag", "\"v1\"")];
                    response(200, &h, "page")
                }
            }),
        )
    };
    let s = setup(app).await;
    s.proxy.get("/a", &[]).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let proxy = s.proxy.clone();
        tasks.push(tokio::spawn(async move { proxy.get("/a", &[]).await }));
    }
    assert!(common::eventually(|| async { revalidations.get() >= 1 }).await);
    // Let the other requests reach the cache while the first revalidation is held.
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.notify_waiters();
    for t in tasks {
        assert_eq!(t.await.unwrap().text(), "page");
    }
    assert_eq!(revalidations.get(), 1, "revalidations are coalesced");
}

#[tokio::test]
async fn a_late_304_never_relabels_a_newer_body() {
    let gate = Arc::new(Notify::new());
    let at_origin = Arc::new(Notify::new());
    let app = {
        let (gate, at_origin) = (gate.clone(), at_origin.clone());
        Router::new().route(
            "/a",
            any(move |headers: HeaderMap| {
                let (gate, at_origin) = (gate.clone(), at_origin.clone());
                async move {
                    if header(&headers, "if-none-match") == "\"v1\"" {
                        at_origin.notify_one();
                        gate.notified().await;
                        let h = [("cache-control", "max-age=60"), ("etag", "\"v1\"")];
                        return response(304, &h, Body::empty());
                    }
                    let h = [("cache-control", "max-age=0"), ("etag", "\"v1\"")];
                    response(200, &h, "body-v1")
                }
            }),
        )
    };
    let s = setup(app).await;
    s.proxy.get("/a", &[]).await;
    let proxy = s.proxy.clone();
    let revalidation = tokio::spawn(async move { proxy.get("/a", &[]).await });
    at_origin.notified().await;
    // While the revalidation of v1 is at the origin, a newer body is stored.
    let host = s.proxy.host();
    let request = axum::http::Request::get(format!("http://{host}/a"))
        .body(())
        .unwrap();
    let newer = axum::http::Response::builder()
        .header("cache-control", "max-age=60")
        .header("etag", "\"v2\"")
        .body(Bytes::from_static(b"body-v2"))
        .unwrap();
    assert!(s.cache.insert(request, newer).await.unwrap());
    gate.notify_one();
    assert_eq!(revalidation.await.unwrap().text(), "body-v1");
    let now = s.proxy.get("/a", &[]).await;
    assert_eq!(now.text(), "body-v2");
    assert_eq!(now.etag(), "\"v2\"", "the 304 for v1 relabelled v2");
}

// 7. Streams behind coalescing ----------------------------------------------------------

/// An origin for `/live` whose answer is a never-ending stream with `headers`, sent after a
/// short delay (so that a second request arrives while the first is at the origin).
fn live_stream(calls: &Counter, headers: &'static [(&'static str, &'static str)]) -> Router {
    let calls = calls.clone();
    Router::new().route(
        "/live",
        any(move || {
            let calls = calls.clone();
            async move {
                calls.inc();
                tokio::time::sleep(Duration::from_millis(300)).await;
                let stream = futures_util::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some((
                        Ok::<_, std::io::Error>(Bytes::from_static(b"data: x\n\n")),
                        (),
                    ))
                });
                let mut res = axum::response::Response::new(Body::from_stream(stream));
                for (name, value) in headers {
                    res.headers_mut().insert(*name, value.parse().unwrap());
                }
                res
            }
        }),
    )
}

/// Sends a GET for `/live` and returns how long its head took, with the response (whose body
/// is still streaming).
async fn head_time(s: &Setup) -> (Duration, axum::http::Response<hyper::body::Incoming>) {
    let start = Instant::now();
    let res = s.proxy.send_streaming(Method::GET, "/live", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    (start.elapsed(), res)
}

#[tokio::test]
async fn followers_are_released_when_the_head_says_the_stream_is_not_stored() {
    for headers in [
        &[
            ("content-type", "text/event-stream"),
            ("cache-control", "max-age=60"),
        ][..],
        &[("cache-control", "max-age=0")][..],
    ] {
        let calls = Counter::new();
        let cache = ResponseCache::builder(MemoryStore::new())
            .coalesce_timeout(Duration::from_secs(8))
            .build();
        let s = Arc::new(setup_with(live_stream(&calls, headers), cache, false).await);
        // The first request reads its live stream for as long as the test runs.
        let leader = {
            let s = s.clone();
            tokio::spawn(async move {
                let (_, res) = head_time(&s).await;
                let _ = http_body_util::BodyExt::collect(res.into_body()).await;
            })
        };
        assert!(common::eventually(|| async { calls.get() == 1 }).await);
        let (follower, _res) = head_time(&s).await;
        leader.abort();
        assert!(
            follower < Duration::from_secs(4),
            "{headers:?}: a follower waited {follower:?} behind a live stream"
        );
    }
}

#[tokio::test]
async fn a_304_answer_does_not_hide_what_the_response_is() {
    // `If-None-Match: *` turns the client's answer into a 304, which has no Content-Type:
    // the event stream behind it must still be known for one (and not read for the store).
    let calls = Counter::new();
    let headers = &[
        ("content-type", "text/event-stream"),
        ("cache-control", "max-age=60"),
    ];
    // A cache that speaks for the origin (it mints tags) answers the client's `*` itself;
    // the proxy, which does not, sends it on (RFC 9111 §4.3.2).
    let cache = ResponseCache::new(MemoryStore::new());
    let s = setup_with(live_stream(&calls, headers), cache, false).await;
    let r = s
        .proxy
        .send_streaming(Method::GET, "/live", &[("if-none-match", "*")])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let status = r.headers()["cache-status"].to_str().unwrap().to_owned();
    assert!(status.contains("detail=event-stream"), "{status}");
    assert!(!status.contains("stored"), "{status}");
}

// 8. Variant and index growth ------------------------------------------------------------

#[tokio::test]
async fn variants_per_url_are_capped() {
    let calls = Counter::new();
    let app = Router::new().route(
        "/v",
        counted(&calls, |_, headers| {
            let h = [("cache-control", "max-age=60"), ("vary", "accept-language")];
            response(200, &h, header(headers, "accept-language").to_owned())
        }),
    );
    let s = setup(app).await;
    for i in 0..300 {
        let lang = format!("x-{i}");
        assert_eq!(
            s.proxy
                .get("/v", &[("accept-language", &lang)])
                .await
                .text(),
            lang
        );
    }
    // A bounded number of variants, however many values clients send.
    let held = s.cache.store().len();
    assert!(held <= 40, "{held} entries for one URL");
}

#[tokio::test]
async fn a_flipping_vary_keeps_both_variant_sets_reachable() {
    let calls = Counter::new();
    let app = Router::new().route(
        "/f",
        counted(&calls, |_, headers| {
            let lang = header(headers, "accept-language");
            let vary = if lang == "de" {
                "accept-language, accept-encoding"
            } else {
                "accept-language"
            };
            response(
                200,
                &[("cache-control", "max-age=60"), ("vary", vary)],
                lang.to_owned(),
            )
        }),
    );
    let s = setup(app).await;
    assert_eq!(
        s.proxy.get("/f", &[("accept-language", "en")]).await.text(),
        "en"
    );
    assert_eq!(
        s.proxy.get("/f", &[("accept-language", "de")]).await.text(),
        "de"
    );
    assert_eq!(calls.get(), 2);
    let en = s.proxy.get("/f", &[("accept-language", "en")]).await;
    assert_eq!(en.text(), "en");
    assert!(status_of(&en).contains("hit"), "{}", status_of(&en));
    let de = s.proxy.get("/f", &[("accept-language", "de")]).await;
    assert_eq!(de.text(), "de");
    assert!(status_of(&de).contains("hit"), "{}", status_of(&de));
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn responses_with_a_storage_ttl_of_zero_are_not_written() {
    let calls = Counter::new();
    let app = Router::new().route(
        "/z",
        counted(&calls, |_, _| {
            response(200, &[("cache-control", "max-age=0")], "z")
        }),
    );
    let s = setup(app).await;
    s.proxy.get("/z", &[]).await;
    s.proxy.get("/z", &[]).await;
    assert_eq!(calls.get(), 2);
    assert_eq!(s.cache.store().len(), 0, "nothing written for a TTL of 0");
}

// 10. must-revalidate and invalidation by URL --------------------------------------------

#[tokio::test]
async fn a_stale_entry_is_never_served_after_a_mismatched_304_unless_permitted() {
    // RFC 9111 §4.2.4: stale only where explicitly permitted; must-revalidate never.
    const MUST: &str = "max-age=0, must-revalidate";
    const PLAIN: &str = "max-age=0";
    for cache_control in [MUST, PLAIN] {
        let calls = Counter::new();
        let app = Router::new().route(
            "/m",
            counted(&calls, move |_, headers| {
                if headers.contains_key("if-none-match") {
                    // A 304 for another representation than the stored one.
                    return response(304, &[("etag", "\"other\"")], Body::empty());
                }
                let h = [("cache-control", cache_control), ("etag", "\"v1\"")];
                response(200, &h, "old")
            }),
        );
        let s = setup(app).await;
        assert_eq!(s.proxy.get("/m", &[]).await.text(), "old");
        let r = s.proxy.get("/m", &[]).await;
        assert_eq!(
            r.status,
            StatusCode::GATEWAY_TIMEOUT,
            "{cache_control}: {}",
            r.text()
        );
        assert!(
            status_of(&r).contains("validator-mismatch"),
            "{}",
            status_of(&r)
        );
        // The outdated entry is gone: the next request fetches anew.
        assert_eq!(s.proxy.get("/m", &[]).await.text(), "old");
        assert_eq!(calls.get(), 3, "{cache_control}");
    }
}

#[tokio::test]
async fn invalidate_url_reaches_every_user_in_private_mode() {
    let calls = Counter::new();
    let app = Router::new().route(
        "/me",
        counted(&calls, |_, headers| {
            let user = header(headers, "x-user").to_owned();
            response(200, &[("cache-control", "private, max-age=60")], user)
        }),
    );
    let cache = ResponseCache::builder(MemoryStore::new())
        .private(|parts| {
            parts
                .headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .build();
    let s = setup_with(app, cache, false).await;
    for user in ["alice", "bob", "alice", "bob"] {
        assert_eq!(s.proxy.get("/me", &[("x-user", user)]).await.text(), user);
    }
    assert_eq!(calls.get(), 2);
    let url = format!("http://{}/me", s.proxy.host()).parse().unwrap();
    assert!(s.cache.invalidate_url(&url).await.unwrap());
    for user in ["alice", "bob"] {
        assert_eq!(s.proxy.get("/me", &[("x-user", user)]).await.text(), user);
    }
    assert_eq!(calls.get(), 4, "every user's entry was invalidated");
}

#[tokio::test]
async fn invalidate_url_matches_default_ports() {
    let calls = Counter::new();
    let app = Router::new().route(
        "/p",
        counted(&calls, |_, _| {
            response(200, &[("cache-control", "max-age=60")], "p")
        }),
    );
    let s = setup_with(app, ResponseCache::new(MemoryStore::new()), true).await;
    let get = b"GET /p HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n";
    raw_exchange(s.proxy.addr, get).await;
    let url = "http://EXAMPLE.test:80/p".parse().unwrap();
    assert!(s.cache.invalidate_url(&url).await.unwrap(), "nothing found");
    raw_exchange(s.proxy.addr, get).await;
    assert_eq!(calls.get(), 2);
    let _ = &s.origin;
}

// 9. The ETag layer -----------------------------------------------------------------------

#[tokio::test]
async fn a_compressed_stream_of_unknown_length_is_not_held_back() {
    // A compressed body (as CompressionLayer makes it) that sends one chunk and then stalls.
    let app = Router::new().route(
        "/gz",
        any(|| async {
            let stalled = futures_util::stream::once(async {
                Ok::<_, std::io::Error>(Bytes::from_static(b"\x1f\x8b first chunk"))
            })
            .chain(futures_util::stream::pending());
            let mut res = axum::response::Response::new(Body::from_stream(stalled));
            res.headers_mut()
                .insert("content-encoding", "gzip".parse().unwrap());
            res
        }),
    );
    let server = TestServer::start(common::with_etag(app, &common::Provider::init())).await;
    let start = Instant::now();
    let res = server.send_streaming(Method::GET, "/gz", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the head waited {:?} for a body that never ends",
        start.elapsed()
    );
    assert!(
        res.headers().get("etag").is_none(),
        "an unfinished body was tagged"
    );
}

#[tokio::test]
async fn http2_host_and_authority_must_name_one_host() {
    use http_body_util::Empty;
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    let s = setup_with(echo_host(), ResponseCache::new(MemoryStore::new()), true).await;
    // HTTP/2 with prior knowledge (h2c): `:authority` comes from the URI.
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let uri = format!("http://{}/x", s.proxy.addr);
    let send = |host: Option<&'static str>| {
        let mut req = axum::http::Request::get(uri.as_str());
        if let Some(host) = host {
            req = req.header("host", host);
        }
        let req = req.body(Empty::new()).unwrap();
        let client = client.clone();
        async move {
            tokio::time::timeout(common::IO_TIMEOUT, client.request(req))
                .await
                .unwrap()
                .unwrap()
        }
    };
    let mismatch = send(Some("b.test")).await;
    assert_eq!(mismatch.version(), axum::http::Version::HTTP_2);
    assert_eq!(
        mismatch.status(),
        StatusCode::BAD_REQUEST,
        "RFC 9113 §8.3.1"
    );
    let agreeing = send(None).await;
    assert_eq!(agreeing.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(agreeing.into_body())
        .await
        .unwrap()
        .to_bytes();
    // The origin (HTTP/1.1 behind the proxy) is asked for the client's `:authority`.
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(
        text.starts_with(&format!("host={} ", s.proxy.addr)),
        "{text}"
    );
}

// 11. The proxy's own server: slow clients and too many connections ---------------------

/// The proxy in front of an origin whose `/a` answers `a`, served with `options`.
async fn proxy_served_with(options: tower_etag::proxy::ServeOptions) -> (TestServer, TestServer) {
    let calls = Counter::new();
    let origin = TestServer::start(
        Router::new().route("/a", counted(&calls, |_, _| response(200, &[], "a"))),
    )
    .await;
    let config = tower_etag::proxy::ProxyConfig {
        upstream: format!("http://{}", origin.addr).parse().unwrap(),
        ..Default::default()
    };
    let proxy = TestServer::spawn(|listener| {
        tower_etag::proxy::serve_with(
            listener,
            tower_etag::proxy::forwarder(&config).unwrap(),
            options,
        )
    })
    .await;
    (origin, proxy)
}

/// Reads until the server closes the connection (or resets it), for at most `limit`;
/// returns whether it did.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Slowloris: a client that never finishes its request head loses its connection after
/// the header-read timeout; without that timeout it would hold it for ever.
#[tokio::test]
async fn a_client_that_never_finishes_its_head_is_cut_off() {
    use tokio::io::AsyncWriteExt as _;
    let options =
        tower_etag::proxy::ServeOptions::default().header_read_timeout(Duration::from_millis(200));
    let (_origin, proxy) = proxy_served_with(options).await;
    let mut slow = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    slow.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)).await,
        "the connection was never closed"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "closed before the timeout"
    );

    // With the default (30 s), the same client still holds its connection a while later.
    let (_origin, patient) = proxy_served_with(Default::default()).await;
    let mut slow = tokio::net::TcpStream::connect(patient.addr).await.unwrap();
    slow.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(!closed_within(&mut slow, Duration::from_millis(400)).await);
}

/// At the connection bound, a new connection is not served until one closes.
#[tokio::test]
async fn connections_past_the_bound_wait_for_one_to_close() {
    let options = tower_etag::proxy::ServeOptions::default().max_connections(1);
    let (_origin, proxy) = proxy_served_with(options).await;
    // The first connection is open (keep-alive) after its answer.
    let first = raw_keep_alive(proxy.addr).await;
    let second = tokio::spawn(async move { proxy.get("/a", &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "served past the bound");
    drop(first);
    let res = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("served once the first connection closed")
        .unwrap();
    assert_eq!(res.text(), "a");
}

/// A connection that got one answer and stays open (HTTP/1.1 keep-alive).
async fn raw_keep_alive(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\na") {
        let n = tokio::time::timeout(common::IO_TIMEOUT, stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
    }
    stream
}
