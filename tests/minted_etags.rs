//! `ResponseCache` mints strong ETags for stored responses that have no validator, so clients
//! can revalidate with the cache: end to end, through a real axum server on 127.0.0.1.

use crate::common;
use axum::{http::HeaderMap, routing::get, Router};
use common::{expected_etag, response, Counter, TestServer};
use std::sync::{Arc, Mutex};
use tower_etag::{response_cache::ResponseCache, store::MemoryStore};

/// 100 KiB: more than `MINT_READ_AHEAD_BYTES`.
fn big() -> &'static str {
    static BIG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIG.get_or_init(|| "0123456789abcdef".repeat(100 * 1024 / 16))
}

/// What the handler saw of the conditionals that reached it.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// `/json` answers `{"n":1}` with `max-age=60` and no validator, `/always` the same with
/// `no-cache`, `/big` 100 KiB (more than is read ahead) with `max-age=60`, `/tagged` its own
/// `ETag`, `/dated` a `Last-Modified`; every handler records the `If-None-Match` it got.
async fn server(cache: ResponseCache<MemoryStore>) -> (TestServer, Counter, Seen) {
    let calls = Counter::new();
    let seen: Seen = Arc::default();
    let route = |headers: &'static [(&'static str, &'static str)], body: &'static str| {
        let (calls, seen) = (calls.clone(), seen.clone());
        get(move |req: HeaderMap| {
            calls.inc();
            let inm = req
                .get("if-none-match")
                .map(|v| v.to_str().unwrap().to_owned());
            seen.lock().unwrap().push(inm);
            async move { response(200, headers, body) }
        })
    };
    let app = Router::new()
        .route(
            "/json",
            route(&[("cache-control", "max-age=60")], "{\"n\":1}"),
        )
        .route(
            "/always",
            route(&[("cache-control", "no-cache")], "{\"n\":1}"),
        )
        .route("/big", route(&[("cache-control", "max-age=60")], big()))
        .route(
            "/tagged",
            route(
                &[("cache-control", "max-age=60"), ("etag", "\"origin\"")],
                "t",
            ),
        )
        .route(
            "/dated",
            route(
                &[
                    ("cache-control", "max-age=60"),
                    ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ],
                "d",
            ),
        )
        .layer(cache.layer());
    (TestServer::start(app).await, calls, seen)
}

#[tokio::test]
async fn a_stored_response_without_validator_is_tagged_and_answers_if_none_match() {
    let (server, calls, _) = server(ResponseCache::new(MemoryStore::new())).await;
    let tag = expected_etag(b"{\"n\":1}");
    // A small body is read ahead: the filling response carries the tag already, and the
    // entry is committed before its head went out.
    let first = server.get("/json", &[]).await;
    assert_eq!(first.text(), "{\"n\":1}");
    assert_eq!(
        first.header("etag"),
        Some(tag.clone()),
        "blake3, as the ETag layer"
    );
    let status = first.header("cache-status").unwrap();
    assert!(
        status.contains("fwd=uri-miss") && status.contains("stored"),
        "{status}"
    );

    let hit = server.get("/json", &[]).await;
    assert!(hit.header("cache-status").unwrap().contains("hit"));
    assert_eq!(hit.header("etag"), Some(tag.clone()));

    let revalidated = server.get("/json", &[("if-none-match", &tag)]).await;
    assert_eq!(revalidated.status, 304);
    assert!(revalidated.body.is_empty());
    assert_eq!(revalidated.header("etag"), Some(tag));
    let other = server.get("/json", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.text(), "{\"n\":1}");
    assert_eq!(calls.get(), 1, "all but the first answered from the cache");
}

#[tokio::test]
async fn a_large_body_is_tagged_as_it_is_stored() {
    let (server, _, _) = server(ResponseCache::new(MemoryStore::new())).await;
    let first = server.get("/big", &[]).await;
    assert_eq!(first.body.len(), big().len(), "{first:?}");
    assert_eq!(
        first.header("etag"),
        None,
        "too large to read ahead: the filling response goes out as the origin sent it"
    );
    let hit = server.get("/big", &[]).await;
    assert!(hit.header("cache-status").unwrap().contains("hit"));
    let tag = expected_etag(big().as_bytes());
    assert_eq!(hit.header("etag"), Some(tag.clone()));
    let res = server.get("/big", &[("if-none-match", &tag)]).await;
    assert_eq!(res.status, 304);
}

/// A `no-cache` response without a validator is fetched again for every request (and not
/// stored: it could only be revalidated with a tag the origin never issued). Each response
/// still carries the tag, so a client's `If-None-Match` saves it the body.
#[tokio::test]
async fn a_no_cache_response_still_answers_304s() {
    let (server, calls, seen) = server(ResponseCache::new(MemoryStore::new())).await;
    let tag = server.get("/always", &[]).await.header("etag").unwrap();
    for _ in 0..2 {
        let res = server.get("/always", &[("if-none-match", &tag)]).await;
        assert_eq!(res.status, 304);
        assert_eq!(res.header("etag"), Some(tag.clone()));
    }
    assert_eq!(calls.get(), 3, "no-cache: the origin is asked every time");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![None, None, None],
        "never with the minted tag"
    );
}

#[tokio::test]
async fn an_origins_validators_are_never_replaced() {
    let (server, _, _) = server(ResponseCache::new(MemoryStore::new())).await;
    for _ in 0..2 {
        let tagged = server.get("/tagged", &[]).await;
        assert_eq!(tagged.header("etag").as_deref(), Some("\"origin\""));
        let dated = server.get("/dated", &[]).await;
        assert_eq!(
            dated.header("etag"),
            None,
            "Last-Modified is a validator already"
        );
    }
}

#[tokio::test]
async fn a_minted_tag_is_never_sent_upstream() {
    let (server, calls, seen) = server(ResponseCache::new(MemoryStore::new())).await;
    server.get("/json", &[]).await;
    let tag = server.get("/json", &[]).await.header("etag").unwrap();
    // The client asks for revalidation (`max-age=0`) with the minted tag: the cache must
    // revalidate with the origin, and not with a validator the origin never issued.
    let res = server
        .get(
            "/json",
            &[("cache-control", "max-age=0"), ("if-none-match", &tag)],
        )
        .await;
    assert_eq!(calls.get(), 2);
    assert_eq!(*seen.lock().unwrap(), vec![None, None]);
    // The same bytes came back: the client's tag still matches.
    assert_eq!(res.status, 304);
}

#[tokio::test]
async fn minting_can_be_turned_off() {
    let cache = ResponseCache::builder(MemoryStore::new())
        .mint_etags(false)
        .build();
    let (server, calls, _) = server(cache).await;
    server.get("/json", &[]).await;
    let hit = server.get("/json", &[]).await;
    assert!(hit.header("cache-status").unwrap().contains("hit"));
    assert_eq!(hit.header("etag"), None);
    let res = server.get("/json", &[("if-none-match", "*")]).await;
    assert_eq!(calls.get(), 1);
    // `*` matches any current representation (RFC 9110 §13.1.2), tag or none.
    assert_eq!(res.status, 304);
}

#[tokio::test]
async fn an_inserted_response_is_tagged_at_once() {
    let cache = ResponseCache::new(MemoryStore::new());
    let (server, calls, _) = server(cache.clone()).await;
    let request = axum::http::Request::get(format!("http://{}/json", server.host()))
        .body(())
        .unwrap();
    let response = axum::http::Response::builder()
        .header("cache-control", "max-age=60")
        .body(bytes::Bytes::from_static(b"inserted"))
        .unwrap();
    assert!(cache.insert(request, response).await.unwrap());
    let tag = expected_etag(b"inserted");
    let res = server.get("/json", &[("if-none-match", &tag)]).await;
    assert_eq!(res.status, 304);
    assert_eq!(res.header("etag"), Some(tag));
    assert_eq!(calls.get(), 0);
}

/// A cache that mints tags speaks for the origin: it answers `If-Match` from its entry
/// (the origin could not: it never issued the tag).
#[tokio::test]
async fn if_match_is_answered_against_the_minted_tag() {
    let (server, calls, _) = server(ResponseCache::new(MemoryStore::new())).await;
    let tag = server.get("/json", &[]).await.header("etag").unwrap();
    let res = server.get("/json", &[("if-match", &tag)]).await;
    assert_eq!(res.status, 200);
    let res = server.get("/json", &[("if-match", "\"other\"")]).await;
    assert_eq!(res.status, 412);
    assert_eq!(calls.get(), 1, "both answered by the cache");
}
