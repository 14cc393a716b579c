//! End-to-end tests of the response cache: the caching reverse proxy of `tower_etag::proxy`
//! (its own code) in front of a real origin server, both on 127.0.0.1, driven by a real
//! client. Each test proves where a response came from by counting origin calls.

use crate::{app, common, proxy_setup};
use app::{forwarder, ProxyConfig};
use axum::{
    body::Body,
    http::{HeaderMap, Method, StatusCode},
    routing::any,
    Router,
};
use common::{counted, response, Counter, TestServer};
use proxy_setup::{setup, setup_clocked, setup_with, status_of, stored, wait_until_stored, Setup};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};
use tower_etag::{clock::ManualClock, response_cache::ResponseCache, store::MemoryStore};

/// The proxy in front of an origin whose `/a` answers `headers` and `body`, counting calls.
async fn setup_a(
    counter: &Counter,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
) -> Setup {
    setup(Router::new().route("/a", route(counter, headers, body))).await
}

/// A route answering `headers` and `body`, counting calls.
fn route(
    counter: &Counter,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
) -> axum::routing::MethodRouter {
    counted(counter, move |_, _| response(200, headers, body))
}

#[tokio::test]
async fn fresh_hit_never_reaches_the_origin() {
    let calls = Counter::new();
    let s = setup_a(&calls, &[("cache-control", "max-age=60")], "hello").await;
    let first = s.proxy.get("/a", &[]).await;
    assert_eq!(first.text(), "hello");
    assert!(
        status_of(&first).contains("fwd=uri-miss"),
        "{}",
        status_of(&first)
    );
    // The head went out before the body was written: it does not claim `stored` (RFC 9211
    // §2.6), the next request shows it.
    assert!(
        !status_of(&first).contains("stored") && status_of(&first).contains("ttl="),
        "{}",
        status_of(&first)
    );
    let second = s.proxy.get("/a", &[]).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.text(), "hello");
    assert!(
        status_of(&second).starts_with("tower-etag; hit"),
        "{}",
        status_of(&second)
    );
    assert!(
        second.header("age").is_some(),
        "Age on a stored response (RFC 9111 §5.1)"
    );
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn client_preconditions_are_answered_from_the_stored_entry() {
    let calls = Counter::new();
    let s = setup_a(
        &calls,
        &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
        "hello",
    )
    .await;
    s.proxy.get("/a", &[]).await;
    let cond = s.proxy.get("/a", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(cond.status, StatusCode::NOT_MODIFIED);
    assert!(cond.body.is_empty());
    let other = s.proxy.get("/a", &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(calls.get(), 1);
    // `If-Match` is the origin's to evaluate (RFC 9111 §4.3.2): the proxy, which does not
    // speak for it, sends the request on as it came (this origin ignores the field).
    let origins = s.proxy.get("/a", &[("if-match", "\"v0\"")]).await;
    assert_eq!(origins.status, StatusCode::OK);
    assert!(
        status_of(&origins).contains("detail=origin-precondition"),
        "{}",
        status_of(&origins)
    );
    assert_eq!(calls.get(), 2);
}

/// RFC 9111 §4.3.2: nothing stored, the client's `If-None-Match` is not the cache's to
/// evaluate: it goes on, and the origin's answer (here a 200: this origin ignores it) goes
/// to the client and fills the cache; the next conditional request is answered from it.
#[tokio::test]
async fn a_conditional_miss_goes_to_the_origin_and_fills_the_cache() {
    let calls = Counter::new();
    let s = setup_a(
        &calls,
        &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
        "hello",
    )
    .await;
    let cond = s.proxy.get("/a", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(cond.status, StatusCode::OK, "the origin's answer");
    assert_eq!(cond.text(), "hello");
    let again = s.proxy.get("/a", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(status_of(&again).contains("hit"), "{}", status_of(&again));
    assert_eq!(calls.get(), 1);
}

/// An origin whose `/a` is `body-v1` with `ETag: "v1"` and `max-age=1`, counted in `full`,
/// and which answers a request for `"v1"` with a 304 of `not_modified` fields, counted in
/// `revalidated`.
fn revalidated_origin(
    full: &Counter,
    revalidated: &Counter,
    not_modified: &'static [(&'static str, &'static str)],
) -> Router {
    let (full, revalidated) = (full.clone(), revalidated.clone());
    Router::new().route(
        "/a",
        any(move |headers: HeaderMap| {
            let (full, revalidated) = (full.clone(), revalidated.clone());
            async move {
                if headers.get("if-none-match").is_some_and(|v| v == "\"v1\"") {
                    revalidated.inc();
                    response(304, not_modified, Body::empty())
                } else {
                    full.inc();
                    let h = [("cache-control", "max-age=1"), ("etag", "\"v1\"")];
                    response(200, &h, "body-v1")
                }
            }
        }),
    )
}

#[tokio::test]
async fn stale_entry_is_revalidated_and_a_304_freshens_it() {
    let (full, revalidated) = (Counter::new(), Counter::new());
    // The 304's own freshness replaces the stored one (RFC 9111 §4.3.4). A long max-age:
    // with `max-age=1` the entry could go stale again before the next request, `Date` being
    // rounded down to the second.
    let not_modified = &[("cache-control", "max-age=60"), ("etag", "\"v1\"")];
    let app = revalidated_origin(&full, &revalidated, not_modified);
    let (s, clock) = setup_clocked(app).await;
    s.proxy.get("/a", &[]).await;
    clock.advance(Duration::from_millis(1100));
    let stale = s.proxy.get("/a", &[]).await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.text(), "body-v1", "served from the freshened entry");
    assert!(
        status_of(&stale).contains("fwd=stale"),
        "{}",
        status_of(&stale)
    );
    assert!(
        status_of(&stale).contains("fwd-status=304"),
        "{}",
        status_of(&stale)
    );
    assert_eq!((full.get(), revalidated.get()), (1, 1));
    let again = s.proxy.get("/a", &[]).await;
    assert!(
        status_of(&again).contains("hit"),
        "freshened: {}",
        status_of(&again)
    );
    assert_eq!((full.get(), revalidated.get()), (1, 1));
}

/// Issue 20: an origin that leaves the validators off its `304` (common; the HTTP
/// cache-tests' origin does) is not an error. The cache's revalidation named the stored
/// response's validators and nothing else, so the `304` is about that response (RFC 9111
/// §4.3.4 as browsers and Varnish read it): the client gets the stored 200, never a 504.
#[tokio::test]
async fn a_304_without_validators_freshens_the_entry_the_revalidation_named() {
    let (full, revalidated) = (Counter::new(), Counter::new());
    // No ETag, no Last-Modified.
    let app = revalidated_origin(&full, &revalidated, &[("cache-control", "max-age=60")]);
    let (s, clock) = setup_clocked(app).await;
    s.proxy.get("/a", &[]).await;
    clock.advance(Duration::from_millis(1100));
    let res = s.proxy.get("/a", &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", status_of(&res));
    assert_eq!(res.text(), "body-v1");
    assert_eq!(res.header("etag").as_deref(), Some("\"v1\""));
    assert!(
        status_of(&res).contains("fwd-status=304"),
        "{}",
        status_of(&res)
    );
    assert!(
        !status_of(&res).contains("validator-mismatch"),
        "{}",
        status_of(&res)
    );
    assert_eq!((full.get(), revalidated.get()), (1, 1));
    // Freshened by the 304's max-age=60: a hit.
    let again = s.proxy.get("/a", &[]).await;
    assert!(status_of(&again).contains("hit"), "{}", status_of(&again));
    assert_eq!((full.get(), revalidated.get()), (1, 1));
}

#[tokio::test]
async fn changed_resource_replaces_the_stale_entry() {
    let version = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let app = {
        let version = version.clone();
        Router::new().route(
            "/a",
            any(move || {
                let v = version.load(Ordering::SeqCst);
                async move {
                    let etag = format!("\"v{v}\"");
                    let mut res =
                        response(200, &[("cache-control", "max-age=1")], format!("body-v{v}"));
                    res.headers_mut().insert("etag", etag.parse().unwrap());
                    res
                }
            }),
        )
    };
    let (s, clock) = setup_clocked(app).await;
    assert_eq!(s.proxy.get("/a", &[]).await.text(), "body-v1");
    version.store(2, Ordering::SeqCst);
    clock.advance(Duration::from_millis(1100));
    let fresh = s.proxy.get("/a", &[]).await;
    assert_eq!(fresh.text(), "body-v2");
    assert_eq!(s.proxy.get("/a", &[]).await.text(), "body-v2");
}

#[tokio::test]
async fn vary_variants_are_stored_side_by_side() {
    let calls = Counter::new();
    let app = Router::new().route(
        "/a",
        counted(&calls, |_, headers| {
            let lang = headers
                .get("accept-language")
                .map_or("none", |v| v.to_str().unwrap());
            let h = [("cache-control", "max-age=60"), ("vary", "Accept-Language")];
            response(200, &h, lang.to_owned())
        }),
    );
    let s = setup(app).await;
    assert_eq!(
        s.proxy.get("/a", &[("accept-language", "en")]).await.text(),
        "en"
    );
    let fr = s.proxy.get("/a", &[("accept-language", "fr")]).await;
    assert_eq!(fr.text(), "fr");
    assert!(
        status_of(&fr).contains("fwd=vary-miss"),
        "{}",
        status_of(&fr)
    );
    assert_eq!(calls.get(), 2);
    assert_eq!(
        s.proxy.get("/a", &[("accept-language", "en")]).await.text(),
        "en"
    );
    assert_eq!(
        s.proxy.get("/a", &[("accept-language", "fr")]).await.text(),
        "fr"
    );
    // Normalised: extra white space selects the same variant.
    assert_eq!(
        s.proxy
            .get("/a", &[("accept-language", "  fr ")])
            .await
            .text(),
        "fr"
    );
    assert_eq!(calls.get(), 2);
    assert_eq!(s.proxy.get("/a", &[]).await.text(), "none");
    assert_eq!(calls.get(), 3);
}

#[tokio::test]
async fn vary_star_is_never_served_from_the_cache() {
    let calls = Counter::new();
    let s = setup_a(
        &calls,
        &[("cache-control", "max-age=60"), ("vary", "*")],
        "x",
    )
    .await;
    s.proxy.get("/a", &[]).await;
    s.proxy.get("/a", &[]).await;
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn unsafe_methods_invalidate_the_target_and_same_origin_location() {
    let gets = Counter::new();
    let other_gets = Counter::new();
    let posts = Counter::new();
    let app = {
        let (gets, posts) = (gets.clone(), posts.clone());
        Router::new()
            .route(
                "/a",
                any(move |method: Method| {
                    let (gets, posts) = (gets.clone(), posts.clone());
                    async move {
                        if method == Method::POST {
                            posts.inc();
                            response(200, &[("location", "/b")], "posted")
                        } else {
                            let n = gets.inc();
                            response(200, &[("cache-control", "max-age=60")], format!("a{n}"))
                        }
                    }
                }),
            )
            .route(
                "/b",
                route(&other_gets, &[("cache-control", "max-age=60")], "b"),
            )
    };
    let s = setup(app).await;
    assert_eq!(s.proxy.get("/a", &[]).await.text(), "a1");
    s.proxy.get("/b", &[]).await;
    assert_eq!(s.proxy.get("/a", &[]).await.text(), "a1");
    let post = s.proxy.request(Method::POST, "/a", &[]).await;
    assert_eq!(post.text(), "posted");
    assert_eq!(posts.get(), 1);
    assert!(
        status_of(&post).contains("detail=invalidated"),
        "{}",
        status_of(&post)
    );
    // Nothing stored for /c: a POST there invalidated nothing, and says so.
    let post = s.proxy.request(Method::POST, "/c", &[]).await;
    assert!(
        status_of(&post).contains("detail=method"),
        "{}",
        status_of(&post)
    );
    assert_eq!(
        s.proxy.get("/a", &[]).await.text(),
        "a2",
        "invalidated by the POST"
    );
    s.proxy.get("/b", &[]).await;
    assert_eq!(other_gets.get(), 2, "Location /b invalidated too");
}

#[tokio::test]
async fn error_responses_to_unsafe_methods_do_not_invalidate() {
    let gets = Counter::new();
    let app = {
        let gets = gets.clone();
        Router::new().route(
            "/a",
            any(move |method: Method| {
                let gets = gets.clone();
                async move {
                    if method == Method::DELETE {
                        response(500, &[], "nope")
                    } else {
                        gets.inc();
                        response(200, &[("cache-control", "max-age=60")], "a")
                    }
                }
            }),
        )
    };
    let s = setup(app).await;
    s.proxy.get("/a", &[]).await;
    assert_eq!(
        s.proxy.request(Method::DELETE, "/a", &[]).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    s.proxy.get("/a", &[]).await;
    assert_eq!(gets.get(), 1);
}

#[tokio::test]
async fn one_hundred_concurrent_cold_requests_make_one_origin_call() {
    let calls = Counter::new();
    let app = {
        let calls = calls.clone();
        Router::new().route(
            "/slow",
            any(move || {
                let calls = calls.clone();
                async move {
                    calls.inc();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    response(200, &[("cache-control", "max-age=60")], "slow body")
                }
            }),
        )
    };
    let s = setup(app).await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let proxy = s.proxy.clone();
        tasks.push(tokio::spawn(async move { proxy.get("/slow", &[]).await }));
    }
    let (mut collapsed, mut forwarded) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.text(), "slow body");
        let status = status_of(&r);
        collapsed += usize::from(status.contains("collapsed"));
        forwarded += usize::from(status.contains("fwd="));
    }
    assert_eq!(calls.get(), 1, "one origin call for 100 concurrent misses");
    // Requests that arrived while the first was at the origin waited for it (`collapsed`);
    // any that arrived after it was stored (a slow machine) are plain hits.
    assert_eq!(forwarded, 1, "only the first request was forwarded");
    assert!(collapsed >= 1, "concurrent requests waited for the first");
}

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let calls = Counter::new();
    // The revalidation is held at the origin until the test has its stale answer: if that
    // answer waited for the origin, the test would time out instead of passing.
    let release = Arc::new(tokio::sync::Notify::new());
    let app = {
        let (calls, release) = (calls.clone(), release.clone());
        Router::new().route(
            "/a",
            any(move || {
                let (calls, release) = (calls.clone(), release.clone());
                async move {
                    let n = calls.inc();
                    if n > 1 {
                        release.notified().await;
                    }
                    // v1 goes stale after a second; the refreshed v2 stays fresh for the rest
                    // of the test (with `max-age=1` it could go stale, and be revalidated
                    // again, while the test polls for it).
                    let cache_control = if n == 1 {
                        "max-age=1, stale-while-revalidate=30"
                    } else {
                        "max-age=60"
                    };
                    response(200, &[("cache-control", cache_control)], format!("v{n}"))
                }
            }),
        )
    };
    let (s, clock) = setup_clocked(app).await;
    assert_eq!(s.proxy.get("/a", &[]).await.text(), "v1");
    clock.advance(Duration::from_millis(1100));
    let stale = s.proxy.get("/a", &[]).await;
    assert_eq!(stale.text(), "v1");
    assert!(
        status_of(&stale).contains("stale-while-revalidate"),
        "{}",
        status_of(&stale)
    );
    // While the revalidation is held, more requests get the stale entry, without another
    // revalidation.
    assert_eq!(s.proxy.get("/a", &[]).await.text(), "v1");
    release.notify_one();
    // The background revalidation stores v2.
    let refreshed =
        common::eventually(|| async { s.proxy.get("/a", &[]).await.text() == "v2" }).await;
    assert!(refreshed, "the background revalidation stored v2");
    assert_eq!(calls.get(), 2, "one background revalidation");
}

#[tokio::test]
async fn stale_if_error_serves_the_stale_entry_on_a_5xx() {
    let failing = Arc::new(AtomicBool::new(false));
    let app = {
        let failing = failing.clone();
        Router::new().route(
            "/a",
            any(move || {
                let fail = failing.load(Ordering::SeqCst);
                async move {
                    if fail {
                        response(503, &[], "down")
                    } else {
                        response(
                            200,
                            &[("cache-control", "max-age=1, stale-if-error=60")],
                            "good",
                        )
                    }
                }
            }),
        )
    };
    let (s, clock) = setup_clocked(app).await;
    s.proxy.get("/a", &[]).await;
    failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_millis(1100));
    let r = s.proxy.get("/a", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "good");
    assert!(
        status_of(&r).contains("fwd-status=503"),
        "{}",
        status_of(&r)
    );
    assert!(
        status_of(&r).contains("stale-if-error"),
        "{}",
        status_of(&r)
    );
}

#[tokio::test]
async fn without_stale_if_error_the_5xx_goes_through() {
    let failing = Arc::new(AtomicBool::new(false));
    let app = {
        let failing = failing.clone();
        Router::new().route(
            "/a",
            any(move || {
                let fail = failing.load(Ordering::SeqCst);
                async move {
                    if fail {
                        response(503, &[], "down")
                    } else {
                        response(200, &[("cache-control", "max-age=1")], "good")
                    }
                }
            }),
        )
    };
    let (s, clock) = setup_clocked(app).await;
    s.proxy.get("/a", &[]).await;
    failing.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_millis(1100));
    assert_eq!(
        s.proxy.get("/a", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// An origin that answers with the `x-user` of the request.
fn per_user(calls: &Counter, cache_control: &'static str) -> Router {
    Router::new().route(
        "/me",
        counted(calls, move |_, headers| {
            let user = headers
                .get("x-user")
                .map_or("anon", |v| v.to_str().unwrap());
            response(
                200,
                &[("cache-control", cache_control)],
                format!("hello {user}"),
            )
        }),
    )
}

#[tokio::test]
async fn private_responses_are_never_stored_by_a_shared_cache() {
    let calls = Counter::new();
    let s = setup(per_user(&calls, "private, max-age=60")).await;
    assert_eq!(
        s.proxy.get("/me", &[("x-user", "alice")]).await.text(),
        "hello alice"
    );
    let bob = s.proxy.get("/me", &[("x-user", "bob")]).await;
    assert_eq!(bob.text(), "hello bob");
    assert!(status_of(&bob).contains("detail="), "{}", status_of(&bob));
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn private_mode_caches_per_user_and_never_across_users() {
    let calls = Counter::new();
    let cache = ResponseCache::builder(MemoryStore::new())
        .private(|parts| {
            parts
                .headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .build();
    let s = setup_with(per_user(&calls, "private, max-age=60"), cache, false).await;
    assert_eq!(
        s.proxy.get("/me", &[("x-user", "alice")]).await.text(),
        "hello alice"
    );
    assert_eq!(
        s.proxy.get("/me", &[("x-user", "alice")]).await.text(),
        "hello alice"
    );
    assert_eq!(calls.get(), 1, "alice's entry served to alice");
    assert_eq!(
        s.proxy.get("/me", &[("x-user", "bob")]).await.text(),
        "hello bob"
    );
    assert_eq!(calls.get(), 2, "never alice's entry to bob");
    assert_eq!(s.proxy.get("/me", &[]).await.text(), "hello anon");
    assert_eq!(s.proxy.get("/me", &[]).await.text(), "hello anon");
    assert_eq!(calls.get(), 4, "requests without a user bypass the cache");
}

/// An origin whose `/secret` needs `Authorization: Bearer good`.
fn protected(calls: &Counter, cache_control: &'static str) -> Router {
    Router::new().route(
        "/secret",
        counted(calls, move |_, headers| {
            if headers
                .get("authorization")
                .is_some_and(|v| v == "Bearer good")
            {
                response(200, &[("cache-control", cache_control)], "secret")
            } else {
                response(401, &[], "who are you")
            }
        }),
    )
}

#[tokio::test]
async fn authorized_responses_are_not_shared_without_public() {
    let calls = Counter::new();
    let s = setup(protected(&calls, "max-age=60")).await;
    assert_eq!(
        s.proxy
            .get("/secret", &[("authorization", "Bearer good")])
            .await
            .text(),
        "secret"
    );
    let anon = s.proxy.get("/secret", &[]).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.proxy
            .get("/secret", &[("authorization", "Bearer good")])
            .await
            .text(),
        "secret"
    );
    assert_eq!(calls.get(), 3);
}

#[tokio::test]
async fn authorized_responses_marked_public_are_shared() {
    let calls = Counter::new();
    let s = setup(protected(&calls, "public, max-age=60")).await;
    s.proxy
        .get("/secret", &[("authorization", "Bearer good")])
        .await;
    let again = s
        .proxy
        .get("/secret", &[("authorization", "Bearer good")])
        .await;
    assert_eq!(again.text(), "secret");
    assert_eq!(calls.get(), 1, "RFC 9111 §3.5: public allows storing");
}

#[tokio::test]
async fn set_cookie_responses_are_not_stored() {
    let calls = Counter::new();
    let s = setup_a(
        &calls,
        &[
            ("cache-control", "max-age=60"),
            ("set-cookie", "session=abc"),
        ],
        "x",
    )
    .await;
    s.proxy.get("/a", &[]).await;
    let second = s.proxy.get("/a", &[]).await;
    assert_eq!(second.header("set-cookie").as_deref(), Some("session=abc"));
    assert_eq!(calls.get(), 2);
}

#[tokio::test]
async fn no_store_and_request_no_cache() {
    let calls = Counter::new();
    let other = Counter::new();
    let s = setup(
        Router::new()
            .route(
                "/ns",
                route(&calls, &[("cache-control", "no-store, max-age=60")], "x"),
            )
            .route("/a", route(&other, &[("cache-control", "max-age=60")], "y")),
    )
    .await;
    s.proxy.get("/ns", &[]).await;
    s.proxy.get("/ns", &[]).await;
    assert_eq!(calls.get(), 2);
    s.proxy.get("/a", &[]).await;
    let forced = s.proxy.get("/a", &[("cache-control", "no-cache")]).await;
    assert!(
        status_of(&forced).contains("fwd=request"),
        "{}",
        status_of(&forced)
    );
    let pragma = s.proxy.get("/a", &[("pragma", "no-cache")]).await;
    assert!(
        !status_of(&pragma).contains("hit"),
        "{}",
        status_of(&pragma)
    );
    assert_eq!(other.get(), 3);
}

#[tokio::test]
async fn only_if_cached_gives_504_when_nothing_is_stored() {
    let calls = Counter::new();
    let s = setup_a(&calls, &[("cache-control", "max-age=60")], "x").await;
    let cold = s
        .proxy
        .get("/a", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(cold.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(calls.get(), 0);
    s.proxy.get("/a", &[]).await;
    let warm = s
        .proxy
        .get("/a", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(warm.status, StatusCode::OK);
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn head_is_answered_from_the_get_entry() {
    let calls = Counter::new();
    let s = setup_a(&calls, &[("cache-control", "max-age=60")], "hello").await;
    let head = s.proxy.head("/a", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    let get = s.proxy.get("/a", &[]).await;
    assert_eq!(get.text(), "hello");
    wait_until_stored(&s, "/a").await;
    let head2 = s.proxy.head("/a", &[]).await;
    assert_eq!(head2.header("content-length").as_deref(), Some("5"));
    assert!(head2.body.is_empty());
    assert_eq!(calls.get(), 1, "the HEAD miss fetched and stored the GET");
}

#[tokio::test]
async fn bypass_extension_and_invalidation_api() {
    let calls = Counter::new();
    let s = setup_a(&calls, &[("cache-control", "max-age=60")], "x").await;
    s.proxy.get("/a", &[]).await;
    let host = s.proxy.host(); // the cache keys by the Host the proxy was asked for;
    assert!(s
        .cache
        .invalidate_url(&format!("http://{host}/a").parse().unwrap())
        .await
        .unwrap());
    s.proxy.get("/a", &[]).await;
    assert_eq!(calls.get(), 2);
    s.cache.purge().await.unwrap();
    s.proxy.get("/a", &[]).await;
    assert_eq!(calls.get(), 3);
}

#[tokio::test]
async fn insert_stores_a_response_without_the_origin() {
    let calls = Counter::new();
    let s = setup_a(&calls, &[("cache-control", "max-age=60")], "origin").await;
    let host = s.proxy.host();
    let request = axum::http::Request::get(format!("http://{host}/a"))
        .body(())
        .unwrap();
    let response = axum::http::Response::builder()
        .header("cache-control", "max-age=60")
        .body(bytes::Bytes::from_static(b"inserted"))
        .unwrap();
    assert!(s.cache.insert(request, response).await.unwrap());
    assert_eq!(s.proxy.get("/a", &[]).await.text(), "inserted");
    assert_eq!(calls.get(), 0);
}

#[tokio::test]
async fn proxy_forwards_method_path_query_headers_and_body() {
    let app = Router::new().route(
        "/echo",
        any(|method: Method, uri: axum::http::Uri, headers: HeaderMap, body: bytes::Bytes| async move {
            let host = headers.get("host").map_or("", |v| v.to_str().unwrap()).to_owned();
            let custom = headers.get("x-custom").map_or("", |v| v.to_str().unwrap()).to_owned();
            let text = format!("{method} {uri} host={host} custom={custom} body={}", String::from_utf8_lossy(&body));
            response(200, &[], text)
        }),
    );
    let s = setup(app).await;
    let r = s
        .proxy
        .request(Method::PUT, "/echo?x=1&y=2", &[("x-custom", "v")])
        .await;
    let origin_host = s.origin.host();
    assert_eq!(
        r.text(),
        format!("PUT /echo?x=1&y=2 host={origin_host} custom=v body=")
    );

    let config = ProxyConfig {
        upstream: format!("http://{}", s.origin.addr).parse().unwrap(),
        preserve_host: true,
        trust_forwarded: false,
    };
    let preserving =
        TestServer::spawn(|listener| crate::app::serve(listener, forwarder(&config).unwrap()))
            .await;
    let r = preserving.get("/echo", &[]).await;
    assert!(
        r.text().contains(&format!("host={}", preserving.host())),
        "{}",
        r.text()
    );
}

/// The proxy does not speak for the origin: it mints no validators unless `--mint-etags`.
#[tokio::test]
async fn the_proxy_mints_etags_only_when_asked() {
    let calls = Counter::new();
    let app = Router::new().route("/a", route(&calls, &[("cache-control", "max-age=60")], "a"));
    let s = setup(app.clone()).await;
    s.proxy.get("/a", &[]).await;
    let hit = s.proxy.get("/a", &[]).await;
    assert!(status_of(&hit).contains("hit"), "{}", status_of(&hit));
    assert_eq!(hit.header("etag"), None);

    let flags = app::CacheFlags {
        mint_etags: true,
        ..Default::default()
    };
    let s = setup_with(app, app::proxy_cache(MemoryStore::new(), &flags), false).await;
    s.proxy.get("/a", &[]).await;
    let hit = s.proxy.get("/a", &[]).await;
    assert_eq!(hit.header("etag"), Some(common::expected_etag(b"a")));
}

/// RFC 9213: the proxy follows `CDN-Cache-Control` over `Cache-Control` and `Expires`, and
/// does not pass it on; other caches downstream still get `Cache-Control` as it was.
#[tokio::test]
async fn cdn_cache_control_decides_for_the_proxy_and_goes_no_further() {
    let calls = Counter::new();
    let app = Router::new()
        .route(
            "/longer",
            route(
                &calls,
                &[
                    ("cache-control", "no-store"),
                    ("expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
                    ("cdn-cache-control", "max-age=600"),
                ],
                "longer",
            ),
        )
        .route(
            "/shorter",
            route(
                &calls,
                &[
                    ("cache-control", "max-age=600"),
                    ("cdn-cache-control", "no-store"),
                ],
                "shorter",
            ),
        )
        .route(
            "/invalid",
            route(
                &calls,
                // Not a Dictionary (upper case): ignored as a whole, Cache-Control decides.
                &[
                    ("cache-control", "max-age=600"),
                    ("cdn-cache-control", "Max-Age=0, no-store"),
                ],
                "invalid",
            ),
        );
    let s = setup(app).await;

    let first = s.proxy.get("/longer", &[]).await;
    assert_eq!(
        first.header("cdn-cache-control"),
        None,
        "consumed by this cache"
    );
    assert_eq!(
        first.header("cache-control").as_deref(),
        Some("no-store"),
        "unchanged downstream"
    );
    let hit = s.proxy.get("/longer", &[]).await;
    assert!(status_of(&hit).contains("hit"), "{}", status_of(&hit));
    assert_eq!(hit.text(), "longer");
    assert!(
        status_of(&hit).contains("ttl=59") || status_of(&hit).contains("ttl=600"),
        "{}",
        status_of(&hit)
    );
    assert_eq!(hit.header("cdn-cache-control"), None);
    assert_eq!(
        calls.get(),
        1,
        "Cache-Control: no-store and a past Expires were ignored"
    );

    // The targeted no-store wins over a generous Cache-Control: never stored.
    for _ in 0..2 {
        let res = s.proxy.get("/shorter", &[]).await;
        assert!(!status_of(&res).contains("hit"), "{}", status_of(&res));
        assert_eq!(res.header("cache-control").as_deref(), Some("max-age=600"));
    }
    assert_eq!(calls.get(), 3);

    s.proxy.get("/invalid", &[]).await;
    let hit = s.proxy.get("/invalid", &[]).await;
    assert!(status_of(&hit).contains("hit"), "{}", status_of(&hit));
    assert_eq!(calls.get(), 4);
}

/// `--forward-targeted` keeps the field for CDN caches further downstream; `--targeted none`
/// makes the proxy read `Cache-Control` only.
#[tokio::test]
async fn targeted_fields_can_be_forwarded_or_not_followed() {
    let calls = Counter::new();
    let headers: &'static [(&'static str, &'static str)] = &[
        ("cache-control", "no-store"),
        ("cdn-cache-control", "max-age=600"),
    ];
    let app = Router::new().route("/a", route(&calls, headers, "a"));

    let forward = app::CacheFlags {
        forward_targeted: true,
        ..Default::default()
    };
    let s = setup_with(
        app.clone(),
        app::proxy_cache(MemoryStore::new(), &forward),
        false,
    )
    .await;
    s.proxy.get("/a", &[]).await;
    let hit = s.proxy.get("/a", &[]).await;
    assert!(status_of(&hit).contains("hit"), "{}", status_of(&hit));
    assert_eq!(
        hit.header("cdn-cache-control").as_deref(),
        Some("max-age=600")
    );

    let none = app::CacheFlags {
        targeted: Vec::new(),
        ..Default::default()
    };
    let s = setup_with(app, app::proxy_cache(MemoryStore::new(), &none), false).await;
    for _ in 0..2 {
        let res = s.proxy.get("/a", &[]).await;
        assert!(
            status_of(&res).contains("detail=no-store"),
            "{}",
            status_of(&res)
        );
        assert_eq!(
            res.header("cdn-cache-control").as_deref(),
            Some("max-age=600"),
            "not ours: passed on"
        );
    }
}

/// RFC 9111 §4.2.4: a cache cut off from its origin may serve stale. With a grace
/// (`--stale-if-unreachable`), the proxy serves an entry past its freshness when it cannot
/// connect (it answers 502 itself then), not where `must-revalidate` forbids it; without
/// one, the client gets the 502.
#[tokio::test]
async fn a_grace_covers_an_origin_that_cannot_be_reached() {
    let calls = Counter::new();
    let app = Router::new()
        .route("/a", route(&calls, &[("cache-control", "max-age=1")], "a"))
        .route(
            "/strict",
            route(
                &calls,
                &[("cache-control", "max-age=1, must-revalidate")],
                "strict",
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let config = ProxyConfig {
        upstream: format!("http://{origin}").parse().unwrap(),
        ..ProxyConfig::default()
    };
    let graced = app::CacheFlags {
        grace: Duration::from_secs(60),
        ..Default::default()
    };
    let clock = ManualClock::new(SystemTime::now());
    let with_grace = app::proxy_cache_builder(MemoryStore::new(), &graced)
        .clock(clock.clone())
        .build();
    let without = app::proxy_cache_builder(MemoryStore::new(), &app::CacheFlags::default())
        .clock(clock.clone())
        .build();
    let proxies = [
        TestServer::spawn(|listener| {
            crate::app::serve(listener, app::caching_proxy(&config, &with_grace).unwrap())
        })
        .await,
        TestServer::spawn(|listener| {
            crate::app::serve(listener, app::caching_proxy(&config, &without).unwrap())
        })
        .await,
    ];
    for proxy in &proxies {
        assert_eq!(proxy.get("/a", &[]).await.text(), "a");
        assert_eq!(proxy.get("/strict", &[]).await.text(), "strict");
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    // The entries go stale (max-age=1).
    clock.advance(Duration::from_millis(1100));

    let res = proxies[0].get("/a", &[]).await;
    assert_eq!(res.status, StatusCode::OK, "{}", status_of(&res));
    assert_eq!(res.text(), "a");
    assert!(
        status_of(&res).contains("detail=stale-if-unreachable"),
        "{}",
        status_of(&res)
    );
    assert!(
        status_of(&res).contains("fwd-status=502"),
        "{}",
        status_of(&res)
    );
    let res = proxies[0].get("/strict", &[]).await;
    assert_eq!(
        res.status,
        StatusCode::BAD_GATEWAY,
        "must-revalidate: never stale"
    );
    let res = proxies[1].get("/a", &[]).await;
    assert_eq!(
        res.status,
        StatusCode::BAD_GATEWAY,
        "no grace, no stale-if-error"
    );
    assert_eq!(calls.get(), 4);
}

/// RFC 9111 §4.3.2: with nothing stored, the client's own `If-None-Match` may go on, so an
/// origin's 304 reaches it without a body; nothing is stored from it, and the next request
/// fills the cache as usual. `If-Match` is the origin's too. (The proxy mints no tags: a
/// cache that does speaks for the origin and answers them, see `minted_etags.rs`.)
#[tokio::test]
async fn a_conditional_miss_lets_the_origin_answer_304() {
    let calls = Counter::new();
    type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;
    let seen: Seen = Arc::default();
    let app = {
        let (calls, seen) = (calls.clone(), seen.clone());
        Router::new().route(
            "/a",
            axum::routing::get(move |headers: HeaderMap| {
                calls.inc();
                let field = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
                let inm = field("if-none-match");
                seen.lock().unwrap().push((inm.clone(), field("if-match")));
                async move {
                    let h = [("cache-control", "max-age=60"), ("etag", "\"v1\"")];
                    if inm.as_deref() == Some("\"v1\"") {
                        response(304, &h, "")
                    } else {
                        response(200, &h, "a")
                    }
                }
            }),
        )
    };
    let s = setup(app).await;
    let res = s.proxy.get("/a", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    assert!(res.body.is_empty());
    assert!(
        status_of(&res).contains("detail=client-conditional"),
        "{}",
        status_of(&res)
    );
    assert_eq!(seen.lock().unwrap()[0].0.as_deref(), Some("\"v1\""));

    // Nothing was stored, and nothing holds the next request back.
    let res = s.proxy.get("/a", &[]).await;
    assert_eq!(res.text(), "a");
    assert!(
        status_of(&res).contains("fwd=uri-miss"),
        "{}",
        status_of(&res)
    );
    let res = s.proxy.get("/a", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    assert!(
        status_of(&res).contains("hit"),
        "now from the cache: {}",
        status_of(&res)
    );
    assert_eq!(calls.get(), 2);

    // If-Match is the origin's (RFC 9111 §4.3.2): sent on as it came.
    let res = s.proxy.get("/a", &[("if-match", "\"v1\"")]).await;
    assert_eq!(res.status, StatusCode::OK);
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1.as_deref(), Some("\"v1\""));
}

/// RFC 9110 §14: a fresh stored full response answers a single `Range` with a 206 from its
/// bytes; `If-Range` must match strongly; nothing asked for of the body is a 416; several
/// ranges, or one that cannot be read, get the whole 200. Without a fresh entry the request
/// goes on as it came, and nothing partial is stored.
#[tokio::test]
async fn ranges_are_answered_from_a_stored_full_response() {
    let calls = Counter::new();
    let ranges_seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = {
        let (calls, seen) = (calls.clone(), ranges_seen.clone());
        Router::new().route(
            "/r",
            axum::routing::get(move |headers: HeaderMap| {
                calls.inc();
                let range = headers.get("range").map(|v| v.to_str().unwrap().to_owned());
                if let Some(r) = &range {
                    seen.lock().unwrap().push(r.clone());
                }
                async move {
                    let h = [("cache-control", "max-age=60"), ("etag", "\"v1\"")];
                    match range.as_deref() {
                        Some("bytes=0-1") => {
                            let mut r = response(206, &h, "01");
                            r.headers_mut()
                                .insert("content-range", "bytes 0-1/10".parse().unwrap());
                            r
                        }
                        _ => response(200, &h, "0123456789"),
                    }
                }
            }),
        )
    };
    let s = setup(app).await;
    // Nothing stored: the range goes to the origin, and its 206 is not stored.
    let res = s.proxy.get("/r", &[("range", "bytes=0-1")]).await;
    assert_eq!(res.status, StatusCode::PARTIAL_CONTENT);
    assert!(
        status_of(&res).contains("detail=range"),
        "{}",
        status_of(&res)
    );
    assert_eq!(*ranges_seen.lock().unwrap(), vec!["bytes=0-1".to_owned()]);
    let full = s.proxy.get("/r", &[]).await;
    assert_eq!(full.text(), "0123456789");
    assert!(
        status_of(&full).contains("fwd=uri-miss"),
        "{}",
        status_of(&full)
    );

    let partial = |range: &'static str, want: &'static str, content_range: &'static str| {
        let proxy = s.proxy.clone();
        async move {
            let res = proxy.get("/r", &[("range", range)]).await;
            assert_eq!(res.status, StatusCode::PARTIAL_CONTENT, "{range}");
            assert_eq!(res.text(), want, "{range}");
            assert_eq!(res.header("content-range").as_deref(), Some(content_range));
            assert_eq!(res.header("content-length"), Some(want.len().to_string()));
            assert!(status_of(&res).contains("hit"), "{}", status_of(&res));
        }
    };
    partial("bytes=2-4", "234", "bytes 2-4/10").await;
    // RFC 9110 §15.3.7: a 206 carries the fields a 200 would (here ETag, Cache-Control).
    let res = s.proxy.get("/r", &[("range", "bytes=2-4")]).await;
    assert_eq!(res.header("etag").as_deref(), Some("\"v1\""));
    assert_eq!(res.header("cache-control").as_deref(), Some("max-age=60"));
    partial("bytes=7-", "789", "bytes 7-9/10").await;
    partial("bytes=-3", "789", "bytes 7-9/10").await;
    partial("bytes=-30", "0123456789", "bytes 0-9/10").await;

    let res = s.proxy.get("/r", &[("range", "bytes=10-")]).await;
    assert_eq!(res.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(res.header("content-range").as_deref(), Some("bytes */10"));
    assert!(res.body.is_empty());
    assert_eq!(res.header("cache-control"), None, "a 416 is not for caches");

    for whole in ["bytes=0-1,4-5", "bytes=5-2", "items=0-1"] {
        let res = s.proxy.get("/r", &[("range", whole)]).await;
        assert_eq!(res.status, StatusCode::OK, "{whole}");
        assert_eq!(res.text(), "0123456789");
    }

    // If-Range: a strong match lets the range apply; anything else gets the whole.
    let res = s
        .proxy
        .get("/r", &[("range", "bytes=0-0"), ("if-range", "\"v1\"")])
        .await;
    assert_eq!((res.status, res.text()), (StatusCode::PARTIAL_CONTENT, "0"));
    for stale in ["\"v2\"", "W/\"v1\""] {
        let res = s
            .proxy
            .get("/r", &[("range", "bytes=0-0"), ("if-range", stale)])
            .await;
        assert_eq!(
            (res.status, res.text()),
            (StatusCode::OK, "0123456789"),
            "{stale}"
        );
    }
    // Two If-Range lines are no validator that holds: the whole.
    let res = s
        .proxy
        .get(
            "/r",
            &[
                ("range", "bytes=0-0"),
                ("if-range", "\"v1\""),
                ("if-range", "\"v1\""),
            ],
        )
        .await;
    assert_eq!((res.status, res.text()), (StatusCode::OK, "0123456789"));
    // Preconditions come before the range (§13.2.2); the 304 keeps the 200's fields
    // (§15.4.5).
    let res = s
        .proxy
        .get("/r", &[("range", "bytes=0-0"), ("if-none-match", "\"v1\"")])
        .await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    assert_eq!(res.header("etag").as_deref(), Some("\"v1\""));
    assert_eq!(res.header("cache-control").as_deref(), Some("max-age=60"));
    // HEAD ignores Range (§14.2).
    let res = s.proxy.head("/r", &[("range", "bytes=0-0")]).await;
    assert_eq!(res.status, StatusCode::OK);

    assert_eq!(
        calls.get(),
        2,
        "every range after the fill came from the cache"
    );
}

/// RFC 9211 §2: a cache adds its member after those of the caches before it, keeping them.
#[tokio::test]
async fn cache_status_keeps_the_members_of_caches_upstream() {
    let calls = Counter::new();
    let headers: &'static [(&'static str, &'static str)] = &[
        ("cache-control", "max-age=60"),
        ("cache-status", "origin-cache; hit"),
    ];
    let s = setup(Router::new().route("/a", route(&calls, headers, "a"))).await;
    for expected in ["fwd=uri-miss", "hit"] {
        let res = s.proxy.get("/a", &[]).await;
        let members: Vec<String> = res
            .headers
            .get_all("cache-status")
            .iter()
            .flat_map(|v| {
                v.to_str()
                    .unwrap()
                    .split(',')
                    .map(|m| m.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(members.len(), 2, "{members:?}");
        assert_eq!(members[0], "origin-cache; hit");
        assert!(
            members[1].starts_with("tower-etag") && members[1].contains(expected),
            "{members:?}"
        );
    }
}

/// A cache that does not speak for the origin leaves it what is the origin's (RFC 9111
/// §4.3.2: a conditional with `If-Match` goes on whole), and never sends it what is not: the
/// `Range` of a HEAD (§14.2: ignored).
#[tokio::test]
async fn the_origins_preconditions_go_to_it_and_a_heads_range_never_does() {
    type Seen = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;
    let seen: Seen = Arc::default();
    let app = {
        let seen = seen.clone();
        Router::new().route(
            "/{name}",
            axum::routing::get(move |headers: HeaderMap| {
                let field = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
                seen.lock()
                    .unwrap()
                    .push((field("if-none-match"), field("range")));
                async move {
                    let h = [("cache-control", "max-age=60"), ("etag", "\"v1\"")];
                    response(200, &h, "0123456789")
                }
            }),
        )
    };
    let s = setup(app).await;
    let res = s
        .proxy
        .get("/x", &[("if-match", "\"a\""), ("if-none-match", "\"v1\"")])
        .await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "the origin's answer (it ignores both)"
    );
    let res = s.proxy.head("/y", &[("range", "bytes=0-1")]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(Some("\"v1\"".to_owned()), None), (None, None)]
    );
}

/// RFC 9111 §4.3.2: a 304 to the cache's own revalidation freshens the entry, and the
/// client, whose `If-None-Match` names another tag, gets the full stored response (never
/// the 304 meant for the cache).
#[tokio::test]
async fn a_revalidation_304_reaches_a_client_with_another_tag_as_the_full_response() {
    let calls = Counter::new();
    let app = {
        let calls = calls.clone();
        Router::new().route(
            "/a",
            axum::routing::get(move |headers: HeaderMap| {
                calls.inc();
                let revalidating = headers.get("if-none-match").is_some_and(|v| v == "\"v1\"");
                async move {
                    if revalidating {
                        response(
                            304,
                            &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
                            "",
                        )
                    } else {
                        response(
                            200,
                            &[("cache-control", "max-age=1"), ("etag", "\"v1\"")],
                            "v1",
                        )
                    }
                }
            }),
        )
    };
    let (s, clock) = setup_clocked(app).await;
    s.proxy.get("/a", &[]).await;
    clock.advance(Duration::from_millis(1100));
    let res = s.proxy.get("/a", &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.text(), "v1");
    assert!(
        status_of(&res).contains("fwd-status=304"),
        "{}",
        status_of(&res)
    );
    assert_eq!(calls.get(), 2);
}

/// RFC 9111 §5.2.1.7: `only-if-cached` takes what is stored and fresh, or a 504: a stale
/// entry is not served by it (nor revalidated). §5.2.1.5: a request's `no-store` goes on
/// and nothing of its exchange is stored. RFC 9110 §13.1.5: `If-Range` without `Range` is
/// ignored.
#[tokio::test]
async fn request_directives_through_the_lookup() {
    let calls = Counter::new();
    let app = Router::new()
        .route(
            "/stale",
            route(&calls, &[("cache-control", "max-age=1")], "s"),
        )
        .route(
            "/fresh",
            route(
                &calls,
                &[("cache-control", "max-age=60"), ("etag", "\"v1\"")],
                "f",
            ),
        )
        .route(
            "/ns",
            route(&calls, &[("cache-control", "max-age=60")], "n"),
        );
    let (s, clock) = setup_clocked(app).await;
    s.proxy.get("/stale", &[]).await;
    clock.advance(Duration::from_millis(1100));
    let res = s
        .proxy
        .get("/stale", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(
        res.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        status_of(&res)
    );
    assert_eq!(calls.get(), 1, "only-if-cached never reaches the origin");

    let res = s.proxy.get("/ns", &[("cache-control", "no-store")]).await;
    assert!(
        status_of(&res).contains("detail=request-no-store"),
        "{}",
        status_of(&res)
    );
    let res = s.proxy.get("/ns", &[]).await;
    assert!(
        status_of(&res).contains("fwd=uri-miss"),
        "nothing was stored: {}",
        status_of(&res)
    );
    assert_eq!(calls.get(), 3);

    s.proxy.get("/fresh", &[]).await;
    let res = s.proxy.get("/fresh", &[("if-range", "\"v0\"")]).await;
    assert_eq!((res.status, res.text()), (StatusCode::OK, "f"));
    assert!(status_of(&res).contains("hit"), "{}", status_of(&res));
}

/// RFC 9110 §13.2.1: a stored response that is not a 2xx ignores the client's
/// preconditions; §14.2: a Range on it gets it whole. RFC 9111 §5.2: request directives
/// go on to the origin.
#[tokio::test]
async fn stored_errors_ignore_preconditions_and_ranges() {
    let calls = Counter::new();
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let app = {
        let (calls, seen) = (calls.clone(), seen.clone());
        Router::new().route(
            "/{name}",
            axum::routing::get(move |uri: axum::http::Uri, headers: HeaderMap| {
                calls.inc();
                let cc = headers
                    .get("cache-control")
                    .map(|v| v.to_str().unwrap().to_owned());
                seen.lock().unwrap().push(cc);
                async move {
                    let h = [("cache-control", "max-age=60"), ("etag", "\"v1\"")];
                    if uri.path() == "/gone" {
                        response(404, &h, "gone")
                    } else {
                        response(200, &h, "here")
                    }
                }
            }),
        )
    };
    let s = setup(app).await;
    s.proxy
        .get("/gone", &[("cache-control", "min-fresh=1")])
        .await;
    assert_eq!(
        seen.lock().unwrap()[0].as_deref(),
        Some("min-fresh=1"),
        "passed on"
    );
    let res = s.proxy.get("/gone", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!((res.status, res.text()), (StatusCode::NOT_FOUND, "gone"));
    assert!(status_of(&res).contains("hit"), "{}", status_of(&res));
    let res = s.proxy.get("/gone", &[("range", "bytes=0-0")]).await;
    assert_eq!((res.status, res.text()), (StatusCode::NOT_FOUND, "gone"));

    assert_eq!(calls.get(), 1);
}

/// RFC 9111 §4.3.2: for a stored response without `Last-Modified`, the cache reads a
/// client's `If-Modified-Since` against its `Date`.
#[tokio::test]
async fn if_modified_since_is_read_against_the_stored_date() {
    let calls = Counter::new();
    let s = setup_a(&calls, &[("cache-control", "max-age=60")], "a").await;
    let first = s.proxy.get("/a", &[]).await;
    let date = first.header("date").expect("the origin's Date");
    let res = s.proxy.get("/a", &[("if-modified-since", &date)]).await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED, "{}", status_of(&res));
    let earlier = httpdate::fmt_http_date(
        httpdate::parse_http_date(&date).unwrap() - Duration::from_secs(3600),
    );
    let res = s.proxy.get("/a", &[("if-modified-since", &earlier)]).await;
    assert_eq!((res.status, res.text()), (StatusCode::OK, "a"));
    assert_eq!(calls.get(), 1);
}

#[tokio::test]
async fn an_origins_unquoted_etag_is_compared_as_its_recipients_compare_it() {
    // RFC 9110 §8.8.3 gives `ETag: v1` no meaning; browsers echo it verbatim and the origin
    // that sent it recognises it. The cache does the same, weakly and byte for byte.
    let full = Counter::new();
    let revalidated = Counter::new();
    let app = {
        let (full, revalidated) = (full.clone(), revalidated.clone());
        Router::new().route(
            "/a",
            any(move |headers: HeaderMap| {
                let (full, revalidated) = (full.clone(), revalidated.clone());
                async move {
                    let h = [("cache-control", "max-age=60"), ("etag", "v1")];
                    if headers.get("if-none-match").is_some_and(|v| v == "v1") {
                        revalidated.inc();
                        response(304, &h, Body::empty())
                    } else {
                        full.inc();
                        response(200, &h, "body-v1")
                    }
                }
            }),
        )
    };
    let s = setup(app).await;
    let first = s.proxy.get("/a", &[]).await;
    assert_eq!(
        first.header("etag").as_deref(),
        Some("v1"),
        "sent as it came"
    );
    wait_until_stored(&s, "/a").await;

    // A request's `no-cache` makes the cache revalidate, with the origin's own text; its
    // 304 (same text) freshens the entry.
    let again = s.proxy.get("/a", &[("cache-control", "no-cache")]).await;
    assert_eq!((again.status, again.text()), (StatusCode::OK, "body-v1"));
    assert!(
        status_of(&again).contains("fwd-status=304"),
        "{}",
        status_of(&again)
    );
    assert_eq!((full.get(), revalidated.get()), (1, 1));

    // The client's echo gets a 304 from the cache.
    let echoed = s.proxy.get("/a", &[("if-none-match", "v1")]).await;
    assert_eq!(echoed.status, StatusCode::NOT_MODIFIED);
    // Negative cases: a quoted tag with the same text is another tag, and an unquoted tag
    // never passes a strong comparison (If-Range): the full body both times.
    let quoted = s.proxy.get("/a", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!((quoted.status, quoted.text()), (StatusCode::OK, "body-v1"));
    let ranged = s
        .proxy
        .get("/a", &[("range", "bytes=0-3"), ("if-range", "v1")])
        .await;
    assert_eq!((ranged.status, ranged.text()), (StatusCode::OK, "body-v1"));
    assert_eq!(full.get(), 1, "every answer came from the one stored body");
}

#[tokio::test]
async fn of_two_stored_responses_that_fit_the_most_recent_by_date_is_used() {
    // RFC 9111 §4 (MUST) and §4.1: when the origin's `Vary` changed, a request can match a
    // stored response under each `Vary` set; the one with the latest `Date` answers, even
    // when it was stored first.
    let calls = Counter::new();
    let app = Router::new().route(
        "/v",
        counted(&calls, |_, headers| {
            if headers.contains_key("accept-language") {
                let h = [
                    ("cache-control", "max-age=3600"),
                    ("vary", "accept-language"),
                ];
                response(200, &h, "by-language")
            } else {
                // An older Date (a copy from a cache upstream, say), stored later.
                let older =
                    httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(30));
                let h = [
                    ("cache-control", "max-age=3600"),
                    ("vary", "accept-encoding"),
                    ("date", older.as_str()),
                ];
                response(200, &h, "by-encoding")
            }
        }),
    );
    let s = setup(app).await;
    let language = [("accept-language", "en")];
    assert_eq!(s.proxy.get("/v", &language).await.text(), "by-language");
    assert!(stored(&s.proxy, "/v", &language).await, "never stored");
    let encoding = [("accept-encoding", "gzip")];
    assert_eq!(s.proxy.get("/v", &encoding).await.text(), "by-encoding");
    assert!(stored(&s.proxy, "/v", &encoding).await, "never stored");
    assert_eq!(calls.get(), 2);

    // Both stored responses fit this request; the first one stored has the later Date.
    let both = s
        .proxy
        .get(
            "/v",
            &[("accept-language", "en"), ("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(both.text(), "by-language", "{}", status_of(&both));
    assert!(status_of(&both).contains("hit"), "{}", status_of(&both));
    // Negative: a request only the older one fits still gets it.
    assert_eq!(s.proxy.get("/v", &encoding).await.text(), "by-encoding");
    assert_eq!(calls.get(), 2, "all from the cache");
}

#[tokio::test]
async fn conditionals_the_cache_does_not_evaluate_reach_the_origin() {
    // RFC 9110 §13.2.1: a request the cache writes through or passes on keeps its
    // conditional fields (RFC 9111 §4.3.2: a range that goes on keeps its conditionals).
    let calls = Counter::new();
    let app = Router::new().route(
        "/c",
        counted(&calls, |_, headers| {
            let seen = common::seen_conditionals(headers);
            response(200, &[("cache-control", "no-store")], seen)
        }),
    );
    let s = setup(app).await;
    let put = s
        .proxy
        .request(
            Method::PUT,
            "/c",
            &[("if-match", "\"a\""), ("if-unmodified-since", "x")],
        )
        .await;
    assert_eq!(put.text(), "seen:if-match=\"a\"");
    let ranged = s
        .proxy
        .get(
            "/c",
            &[
                ("range", "bytes=0-1"),
                ("if-range", "\"r\""),
                ("if-none-match", "\"n\""),
            ],
        )
        .await;
    assert_eq!(
        ranged.text(),
        "seen:if-none-match=\"n\"\nif-range=\"r\"\nrange=bytes=0-1"
    );
    let get_if_match = s.proxy.get("/c", &[("if-match", "\"m\"")]).await;
    assert_eq!(get_if_match.text(), "seen:if-match=\"m\"");
    assert!(
        status_of(&get_if_match).contains("origin-precondition"),
        "{}",
        status_of(&get_if_match)
    );
    assert_eq!(calls.get(), 3);
}

#[tokio::test]
async fn a_body_that_arrives_in_many_chunks_is_stored_whole() {
    // Through the proxy the origin's body arrives in many reads: each goes to the store
    // in turn, and the entry is committed after the last.
    let calls = Counter::new();
    let body = common::pattern(1 << 20);
    let served = body.clone();
    let app = Router::new().route(
        "/big",
        counted(&calls, move |_, _| {
            response(200, &[("cache-control", "max-age=60")], served.clone())
        }),
    );
    let s = setup(app).await;
    assert!(s.proxy.get("/big", &[]).await.body == body);
    wait_until_stored(&s, "/big").await;
    let hit = s.proxy.get("/big", &[]).await;
    assert!(hit.body == body, "the whole body");
    assert!(status_of(&hit).contains("hit"), "{}", status_of(&hit));
    assert_eq!(calls.get(), 1);
}
