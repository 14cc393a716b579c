//! The safety proofs: a 304 without calling the handler is only ever sent from a fresh entry
//! the response allowed, never for a resource that changed once the entry is stale, and never
//! to a request whose credentials (or lack of them) would have got a different answer.

use crate::common;
use axum::{http::HeaderMap, Router};
use common::{counted, expected_etag, response, with_etag, Counter, Provider, TestServer};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};
use tower_etag::clock::ManualClock;

/// A server whose `/r` serves the current contents of `body` with `headers`.
async fn mutable_server(
    headers: &'static [(&'static str, &'static str)],
    provider: &Provider,
) -> (TestServer, Counter, Arc<Mutex<&'static str>>) {
    let counter = Counter::new();
    let body = Arc::new(Mutex::new("v1"));
    let current = body.clone();
    let app = Router::new().route(
        "/r",
        counted(&counter, move |_, _| {
            response(200, headers, *current.lock().unwrap())
        }),
    );
    (
        TestServer::start(with_etag(app, provider)).await,
        counter,
        body,
    )
}

// ---------------------------------------------------------------------------------------
// 5(a). Stale entries and responses that forbid answering from the cache
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn changed_resource_is_never_304_for_the_old_etag_once_stale() {
    let clock = ManualClock::new(SystemTime::now());
    let provider = Provider::builder().clock(clock.clone()).build();
    let (server, counter, body) =
        mutable_server(&[("cache-control", "max-age=2")], &provider).await;

    let first = server.get("/r", &[]).await;
    assert_eq!(first.text(), "v1");
    let etag1 = first.etag();
    assert_eq!(etag1, expected_etag(b"v1"));
    assert_eq!(counter.get(), 1);

    // Within max-age: 304 from the entry, the handler is not called.
    let res = server.get("/r", &[("if-none-match", &etag1)]).await;
    assert_eq!(res.status, 304);
    assert_eq!(res.etag(), etag1);
    assert!(res.header("age").is_some(), "served from the cache: Age");
    assert_eq!(counter.get(), 1, "fresh hit must not reach the handler");

    // The resource changes, and the entry goes stale.
    *body.lock().unwrap() = "v2";
    clock.advance(Duration::from_millis(2200));

    let res = server.get("/r", &[("if-none-match", &etag1)]).await;
    assert_eq!(res.status, 200, "stale entry must not answer 304");
    assert_eq!(res.text(), "v2");
    let etag2 = res.etag();
    assert_eq!(etag2, expected_etag(b"v2"));
    assert_ne!(etag2, etag1);
    assert_eq!(counter.get(), 2);

    // The new entry answers for the new tag, and the old tag is refused.
    let res = server.get("/r", &[("if-none-match", &etag2)]).await;
    assert_eq!(res.status, 304);
    assert_eq!(counter.get(), 2);
    let res = server.get("/r", &[("if-none-match", &etag1)]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "v2");
}

#[tokio::test]
async fn without_freshness_every_request_reaches_the_handler_but_still_gets_304() {
    let provider = Provider::init();
    let (server, counter, body) = mutable_server(&[], &provider).await;
    let etag1 = server.get("/r", &[]).await.etag();
    assert_eq!(counter.get(), 1);
    for i in 2..=4 {
        let res = server.get("/r", &[("if-none-match", &etag1)]).await;
        assert_eq!(res.status, 304);
        assert!(res.body.is_empty());
        assert_eq!(res.etag(), etag1);
        assert_eq!(counter.get(), i, "every request reaches the handler");
    }
    // And so a change is seen at once.
    *body.lock().unwrap() = "v2";
    let res = server.get("/r", &[("if-none-match", &etag1)]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "v2");
    assert_eq!(counter.get(), 5);
}

/// A response with explicit freshness that nevertheless forbids answering without the origin.
async fn assert_never_answered_alone(headers: &'static [(&'static str, &'static str)]) {
    let provider = Provider::init();
    let (server, counter, body) = mutable_server(headers, &provider).await;
    let etag1 = server.get("/r", &[]).await.etag();
    assert_eq!(counter.get(), 1);

    // Matching tag: still a 304, but from the handler's fresh response.
    let res = server.get("/r", &[("if-none-match", &etag1)]).await;
    assert_eq!(res.status, 304, "{headers:?}");
    assert_eq!(counter.get(), 2, "{headers:?}: handler must run");

    // Changed resource: the old tag gets the new body immediately, despite max-age=60.
    *body.lock().unwrap() = "v2";
    let res = server.get("/r", &[("if-none-match", &etag1)]).await;
    assert_eq!(res.status, 200, "{headers:?}");
    assert_eq!(res.text(), "v2");
    assert_eq!(counter.get(), 3);
}

#[tokio::test]
async fn no_cache_is_never_answered_without_the_handler() {
    assert_never_answered_alone(&[("cache-control", "max-age=60, no-cache")]).await;
    assert_never_answered_alone(&[("cache-control", "max-age=60, no-cache=\"set-cookie\"")]).await;
}

#[tokio::test]
async fn no_store_is_never_answered_without_the_handler() {
    assert_never_answered_alone(&[("cache-control", "no-store, max-age=60")]).await;
}

#[tokio::test]
async fn no_store_leaves_no_entry() {
    let provider = Provider::init();
    let (server, _, _) =
        mutable_server(&[("cache-control", "no-store, max-age=60")], &provider).await;
    let res = server.get("/r", &[]).await;
    assert_eq!(res.etag(), expected_etag(b"v1"), "still tagged");
    assert_eq!(provider.etag(&server.key("/r")), None);
    assert!(provider.is_empty());
}

#[tokio::test]
async fn private_is_never_answered_without_the_handler() {
    assert_never_answered_alone(&[("cache-control", "private, max-age=60")]).await;
}

#[tokio::test]
async fn set_cookie_is_never_answered_without_the_handler() {
    assert_never_answered_alone(&[
        ("cache-control", "public, max-age=60"),
        ("set-cookie", "session=abc"),
    ])
    .await;
}

#[tokio::test]
async fn vary_outside_the_key_is_never_answered_without_the_handler() {
    assert_never_answered_alone(&[("cache-control", "max-age=60"), ("vary", "cookie")]).await;
    assert_never_answered_alone(&[("cache-control", "max-age=60"), ("vary", "*")]).await;
}

#[tokio::test]
async fn shared_cache_uses_s_maxage_over_max_age() {
    // s-maxage=0 makes the entry stale at once for a shared cache, whatever max-age says.
    assert_never_answered_alone(&[("cache-control", "max-age=60, s-maxage=0")]).await;
}

#[tokio::test]
async fn request_no_cache_forces_the_handler() {
    let provider = Provider::init();
    let (server, counter, _) = mutable_server(&[("cache-control", "max-age=60")], &provider).await;
    let etag = server.get("/r", &[]).await.etag();
    let res = server.get("/r", &[("if-none-match", &etag)]).await;
    assert_eq!(res.status, 304);
    assert_eq!(counter.get(), 1, "positive control: fresh hit");

    let res = server
        .get(
            "/r",
            &[("if-none-match", &etag), ("cache-control", "no-cache")],
        )
        .await;
    assert_eq!(res.status, 304);
    assert_eq!(counter.get(), 2, "request no-cache must reach the handler");
    let res = server
        .get("/r", &[("if-none-match", &etag), ("pragma", "no-cache")])
        .await;
    assert_eq!(res.status, 304);
    assert_eq!(counter.get(), 3, "Pragma: no-cache must reach the handler");
}

#[tokio::test]
async fn max_age_gives_handler_free_304_for_the_duration_only() {
    // Positive control for the tests above: the same setup without the forbidding directive.
    let provider = Provider::init();
    let (server, counter, _) = mutable_server(&[("cache-control", "max-age=60")], &provider).await;
    let etag = server.get("/r", &[]).await.etag();
    for _ in 0..3 {
        assert_eq!(
            server.get("/r", &[("if-none-match", &etag)]).await.status,
            304
        );
    }
    assert_eq!(counter.get(), 1);
    // A non-matching tag on a fresh entry: the handler runs and the body is sent.
    let res = server.get("/r", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "v1");
    assert_eq!(counter.get(), 2);
}

#[tokio::test]
async fn configured_ttl_gives_handler_free_304_without_cache_control() {
    let clock = ManualClock::new(SystemTime::now());
    let provider = Provider::builder()
        .ttl(Duration::from_secs(2))
        .clock(clock.clone())
        .build();
    let (server, counter, body) = mutable_server(&[], &provider).await;
    let etag1 = server.get("/r", &[]).await.etag();
    assert_eq!(counter.get(), 1);
    for _ in 0..3 {
        let res = server.get("/r", &[("if-none-match", &etag1)]).await;
        assert_eq!(res.status, 304);
    }
    assert_eq!(counter.get(), 1, "TTL: no handler call while fresh");

    // After the TTL the handler is asked again, and a change is seen.
    *body.lock().unwrap() = "v2";
    clock.advance(Duration::from_millis(2200));
    let res = server.get("/r", &[("if-none-match", &etag1)]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "v2");
    assert_eq!(counter.get(), 2);
}

#[tokio::test]
async fn configured_ttl_does_not_override_no_cache() {
    let provider = Provider::builder().ttl(Duration::from_secs(60)).build();
    let (server, counter, _) = mutable_server(&[("cache-control", "no-cache")], &provider).await;
    let etag = server.get("/r", &[]).await.etag();
    assert_eq!(
        server.get("/r", &[("if-none-match", &etag)]).await.status,
        304
    );
    assert_eq!(counter.get(), 2);
}

/// RFC 9111 §4.4: a non-error response to an unsafe method invalidates the stored responses
/// of the target URI. Here a PUT changes `/r` (200) within the max-age of its entry; the
/// client's next conditional GET with the old tag must not be answered 304 from the entry.
#[tokio::test]
async fn successful_unsafe_request_invalidates_the_entry() {
    let provider = Provider::init();
    let counter = Counter::new();
    let body = Arc::new(Mutex::new("v1"));
    let current = body.clone();
    let app = Router::new().route(
        "/r",
        counted(&counter, move |method, _| {
            if method == axum::http::Method::PUT {
                *current.lock().unwrap() = "v2";
                return response(204, &[], "");
            }
            response(
                200,
                &[("cache-control", "max-age=60")],
                *current.lock().unwrap(),
            )
        }),
    );
    let server = TestServer::start(with_etag(app, &provider)).await;
    let etag1 = server.get("/r", &[]).await.etag();
    assert_eq!(
        server.get("/r", &[("if-none-match", &etag1)]).await.status,
        304
    );
    assert_eq!(counter.get(), 1, "positive control: fresh hit");

    let put = server.request(axum::http::Method::PUT, "/r", &[]).await;
    assert_eq!(put.status, 204);
    assert_eq!(*body.lock().unwrap(), "v2");

    let res = server.get("/r", &[("if-none-match", &etag1)]).await;
    assert_eq!(res.status, 200, "the PUT must have invalidated the entry");
    assert_eq!(res.text(), "v2");
}

// ---------------------------------------------------------------------------------------
// 5(b). Authorization
// ---------------------------------------------------------------------------------------

/// `/secret` answers 200 + body with `Authorization: Bearer good`, else 401.
async fn auth_server(cache_control: Option<&'static str>) -> (TestServer, Counter, Provider) {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = Router::new().route(
        "/secret",
        counted(&counter, move |_, headers: &HeaderMap| {
            let authorized = headers
                .get("authorization")
                .is_some_and(|v| v == "Bearer good");
            if !authorized {
                return response(401, &[("www-authenticate", "Bearer")], "unauthorized");
            }
            match cache_control {
                Some(cc) => response(200, &[("cache-control", cc)], "secret data"),
                None => response(200, &[], "secret data"),
            }
        }),
    );
    (
        TestServer::start(with_etag(app, &provider)).await,
        counter,
        provider,
    )
}

async fn assert_no_304_without_credentials(cache_control: Option<&'static str>) {
    let (server, counter, _) = auth_server(cache_control).await;
    let auth = ("authorization", "Bearer good");

    // Client A, authorised.
    let a = server.get("/secret", &[auth]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.text(), "secret data");
    let etag = a.etag();
    // A's own conditional request gets its 304.
    let a2 = server
        .get("/secret", &[auth, ("if-none-match", &etag)])
        .await;
    assert_eq!(a2.status, 304, "{cache_control:?}");

    // Client B, no credentials, knows the tag.
    let calls = counter.get();
    let b = server.get("/secret", &[("if-none-match", &etag)]).await;
    assert_eq!(b.status, 401, "{cache_control:?}: must not be 304");
    assert_eq!(b.text(), "unauthorized");
    assert_eq!(b.count("etag"), 0);
    assert_eq!(counter.get(), calls + 1, "B's request reached the handler");

    // Client C, wrong credentials.
    let c = server
        .get(
            "/secret",
            &[("authorization", "Bearer bad"), ("if-none-match", &etag)],
        )
        .await;
    assert_eq!(c.status, 401, "{cache_control:?}");
    let c = server.get("/secret", &[("if-none-match", "*")]).await;
    assert_eq!(c.status, 401, "{cache_control:?}");
}

#[tokio::test]
async fn request_without_credentials_never_gets_304_for_a_401_resource_with_max_age() {
    assert_no_304_without_credentials(Some("max-age=60")).await;
}

#[tokio::test]
async fn request_without_credentials_never_gets_304_for_a_401_resource_without_cache_control() {
    assert_no_304_without_credentials(None).await;
}

/// `/doc` answers everyone with the same body and `cache_control`; stored first by an
/// unauthenticated request, then asked for with `Authorization`.
async fn authorization_request_hits(cache_control: &'static str) -> (u16, usize) {
    let provider = Provider::init();
    let counter = Counter::new();
    let app = Router::new().route(
        "/doc",
        counted(&counter, move |_, _| {
            response(200, &[("cache-control", cache_control)], "doc")
        }),
    );
    let server = TestServer::start(with_etag(app, &provider)).await;
    let etag = server.get("/doc", &[]).await.etag();
    // Positive control: without Authorization the fresh entry answers alone.
    assert_eq!(
        server.get("/doc", &[("if-none-match", &etag)]).await.status,
        304
    );
    assert_eq!(counter.get(), 1, "{cache_control}");
    let res = server
        .get(
            "/doc",
            &[("authorization", "Bearer x"), ("if-none-match", &etag)],
        )
        .await;
    (res.status.as_u16(), counter.get())
}

#[tokio::test]
async fn authorization_request_is_not_answered_from_an_entry_unless_shareable() {
    // max-age alone: the handler decides (it might answer 401 or another body).
    assert_eq!(authorization_request_hits("max-age=60").await, (304, 2));
    // public or s-maxage: the response allowed a shared cache to reuse it.
    assert_eq!(
        authorization_request_hits("public, max-age=60").await,
        (304, 1)
    );
    assert_eq!(authorization_request_hits("s-maxage=60").await, (304, 1));
}

#[tokio::test]
async fn entry_stored_for_an_authorized_request_is_not_reused_unless_shareable() {
    // Stored from an authorised request with max-age: never answered alone, even for the
    // same credentials.
    let (server, counter, _) = auth_server(Some("max-age=60")).await;
    let auth = ("authorization", "Bearer good");
    let etag = server.get("/secret", &[auth]).await.etag();
    server
        .get("/secret", &[auth, ("if-none-match", &etag)])
        .await;
    assert_eq!(counter.get(), 2);

    // With `public`, the same exchange is answered alone.
    let (server, counter, _) = auth_server(Some("public, max-age=60")).await;
    let etag = server.get("/secret", &[auth]).await.etag();
    let res = server
        .get("/secret", &[auth, ("if-none-match", &etag)])
        .await;
    assert_eq!(res.status, 304);
    assert_eq!(counter.get(), 1);
}
