//! `EtagCacheLayer::from_fn` against a real axum server on 127.0.0.1: a closure that knows the
//! current entity tag is the whole provider, and the middleware answers the preconditions of
//! every provider against the validators it hands back (RFC 9110 §13.2.2).

use crate::common;
use axum::{http::Method, Router};
use common::{counted, response, Counter, TestServer};
use tower_etag::{etag::EntityTag, EtagCacheLayer};

/// `/doc` is at version `"v7"` (the closure knows it); `/own` is unknown to the closure and
/// its handler tags itself `"own"`; `/both` is `"v7"` to the closure and `"stale"` to its
/// handler; `/untagged` is unknown and untagged. `/missing` is a 404.
async fn server() -> (TestServer, Counter) {
    let counter = Counter::new();
    let app = Router::new()
        .route(
            "/doc",
            counted(&counter, |method, _| {
                if method == Method::PUT {
                    response(200, &[], "saved")
                } else {
                    response(200, &[], "version 7")
                }
            }),
        )
        .route(
            "/own",
            counted(&counter, |_, _| {
                response(200, &[("etag", "\"own\"")], "own")
            }),
        )
        .route(
            "/both",
            counted(&counter, |_, _| {
                response(200, &[("etag", "\"stale\"")], "both")
            }),
        )
        .route(
            "/untagged",
            counted(&counter, |_, _| response(200, &[], "plain")),
        )
        .route(
            "/missing",
            counted(&counter, |_, _| response(404, &[], "gone")),
        )
        .layer(EtagCacheLayer::from_fn(|req: &http::request::Parts| {
            matches!(req.uri.path(), "/doc" | "/both" | "/missing")
                .then(|| EntityTag::strong("v7").unwrap())
        }));
    (TestServer::start(app).await, counter)
}

#[tokio::test]
async fn a_matching_if_none_match_is_answered_without_the_handler() {
    let (server, counter) = server().await;
    let res = server.get("/doc", &[("if-none-match", "\"v7\"")]).await;
    assert_eq!(res.status, 304);
    assert_eq!(res.header("etag").as_deref(), Some("\"v7\""));
    assert!(res.body.is_empty());
    assert_eq!(counter.get(), 0, "the handler must not run");

    let res = server.head("/doc", &[("if-none-match", "W/\"v7\"")]).await;
    assert_eq!(res.status, 304, "If-None-Match compares weakly (§13.1.2)");
    assert_eq!(counter.get(), 0);
}

#[tokio::test]
async fn an_old_tag_gets_the_full_response_tagged_with_the_current_one() {
    let (server, counter) = server().await;
    let res = server.get("/doc", &[("if-none-match", "\"v6\"")]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "version 7");
    assert_eq!(res.header("etag").as_deref(), Some("\"v7\""));
    assert_eq!(counter.get(), 1);
}

#[tokio::test]
async fn a_stale_if_match_refuses_an_unsafe_method_before_it_runs() {
    let (server, counter) = server().await;
    // RFC 9110 §13.1.1: the lost-update check. The handler must not run.
    let res = server
        .request(Method::PUT, "/doc", &[("if-match", "\"v6\"")])
        .await;
    assert_eq!(res.status, 412);
    assert_eq!(counter.get(), 0, "a refused PUT must not be performed");
    assert_eq!(
        res.header("etag"),
        None,
        "a 412 does not tell the current tag"
    );
    // If-Match compares strongly: a weak tag never matches.
    let res = server
        .request(Method::PUT, "/doc", &[("if-match", "W/\"v7\"")])
        .await;
    assert_eq!(res.status, 412);
    assert_eq!(counter.get(), 0);

    let res = server
        .request(Method::PUT, "/doc", &[("if-match", "\"v7\"")])
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "saved");
    assert_eq!(counter.get(), 1);
    // The answer to a PUT is not the representation the tag names.
    assert_eq!(res.header("etag"), None);
}

#[tokio::test]
async fn a_response_keeps_its_own_tag_and_preconditions_are_answered_against_it() {
    let (server, counter) = server().await;
    // The closure knows nothing of /own: the handler runs, and the middleware answers
    // If-None-Match against the handler's own tag.
    let res = server.get("/own", &[("if-none-match", "\"own\"")]).await;
    assert_eq!(res.status, 304);
    assert!(res.body.is_empty());
    assert_eq!(res.header("etag").as_deref(), Some("\"own\""));
    assert_eq!(counter.get(), 1);

    let res = server.get("/own", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "own");

    let res = server.get("/own", &[("if-match", "\"other\"")]).await;
    assert_eq!(res.status, 412);
    assert!(res.body.is_empty());
}

#[tokio::test]
async fn the_closures_tag_is_the_one_clients_get() {
    let (server, _) = server().await;
    // The preconditions were checked against "v7": the response must say "v7" too, or a
    // client would revalidate with a tag that never matches.
    let res = server.get("/both", &[]).await;
    assert_eq!(res.header("etag").as_deref(), Some("\"v7\""));
    let res = server.get("/both", &[("if-none-match", "\"stale\"")]).await;
    assert_eq!(res.status, 200);
    let res = server.get("/both", &[("if-none-match", "\"v7\"")]).await;
    assert_eq!(res.status, 304);
}

#[tokio::test]
async fn nothing_is_tagged_or_answered_without_a_validator() {
    let (server, _) = server().await;
    let res = server
        .get("/untagged", &[("if-none-match", "\"v7\"")])
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "plain");
    assert_eq!(res.header("etag"), None);
    // §13.1.4: If-Unmodified-Since is ignored where no modification date is available.
    let res = server
        .get(
            "/untagged",
            &[("if-unmodified-since", "Sun, 06 Nov 1994 08:49:37 GMT")],
        )
        .await;
    assert_eq!(res.status, 200);
}

#[tokio::test]
async fn options_ignores_preconditions() {
    let (server, counter) = server().await;
    // RFC 9110 §13.2.1: OPTIONS selects no representation.
    let res = server
        .request(Method::OPTIONS, "/doc", &[("if-match", "\"v6\"")])
        .await;
    assert_ne!(res.status, 412);
    assert_eq!(counter.get(), 1);
}

#[tokio::test]
async fn an_error_response_is_not_tagged() {
    let (server, counter) = server().await;
    let res = server.get("/missing", &[]).await;
    assert_eq!(res.status, 404);
    assert_eq!(
        res.header("etag"),
        None,
        "a 404 is not the tagged representation"
    );
    assert_eq!(counter.get(), 1);
}
