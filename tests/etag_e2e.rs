//! End-to-end tests of `EtagCacheLayer` + `ConstLruProvider` against a real axum server on
//! 127.0.0.1: ETag generation, conditional requests (RFC 9110 §13), what the layer leaves
//! alone, the invalidation API, and plain axum integration.

use crate::common;
use axum::{http::Method, routing::get, Router};
use common::{counted, expected_etag, response, with_etag, Counter, Provider, TestServer};
use std::time::{Duration, SystemTime};
use tower_etag::{ConstLruProvider, EtagCacheLayer, SimpleEtagCacheKey};

const LAST_MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

/// A server with `/a` ("hello a") and `/b` ("hello b"), both counted, no Cache-Control.
async fn two_paths() -> (TestServer, Counter, Provider) {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = Router::new()
        .route(
            "/a",
            counted(&counter, |_, _| response(200, &[], "hello a")),
        )
        .route(
            "/b",
            counted(&counter, |_, _| response(200, &[], "hello b")),
        );
    (
        TestServer::start(with_etag(app, &provider)).await,
        counter,
        provider,
    )
}

// ---------------------------------------------------------------------------------------
// 1. ETag generation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn get_is_tagged_with_quoted_base64url_blake3_of_the_body() {
    let (server, counter, _) = two_paths().await;
    let res = server.get("/a", &[]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "hello a");
    let etag = res.etag();
    assert_eq!(etag, expected_etag(b"hello a"));
    // Strong, quoted, URL-safe alphabet, no padding.
    assert!(etag.starts_with('"') && etag.ends_with('"') && !etag.starts_with("W/"));
    let opaque = &etag[1..etag.len() - 1];
    assert_eq!(opaque.len(), 43, "32 bytes in unpadded base64 are 43 chars");
    assert!(opaque
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(counter.get(), 1);
}

#[tokio::test]
async fn different_bodies_get_different_etags_and_same_body_the_same() {
    let (server, _, _) = two_paths().await;
    let a = server.get("/a", &[]).await.etag();
    let b = server.get("/b", &[]).await.etag();
    assert_ne!(a, b);
    assert_eq!(b, expected_etag(b"hello b"));
    // Stable across requests.
    assert_eq!(server.get("/a", &[]).await.etag(), a);
}

#[tokio::test]
async fn etag_is_set_once_and_an_existing_one_is_kept() {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = Router::new()
        .route("/plain", counted(&counter, |_, _| response(200, &[], "x")))
        .route(
            "/own",
            counted(&counter, |_, _| {
                response(200, &[("etag", "\"handler-tag\"")], "body")
            }),
        );
    let server = TestServer::start(with_etag(app, &provider)).await;

    let plain = server.get("/plain", &[]).await;
    assert_eq!(plain.count("etag"), 1);

    let own = server.get("/own", &[]).await;
    assert_eq!(own.count("etag"), 1, "{:?}", own.headers);
    assert_eq!(own.etag(), "\"handler-tag\"");
    // The handler's tag is the one that conditional requests are checked against.
    let nm = server
        .get("/own", &[("if-none-match", "\"handler-tag\"")])
        .await;
    assert_eq!(nm.status, 304);
    let other = server
        .get("/own", &[("if-none-match", &expected_etag(b"body"))])
        .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.text(), "body");
}

// ---------------------------------------------------------------------------------------
// 2. If-None-Match
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn if_none_match_with_the_etag_gives_304_without_body() {
    let (server, counter, _) = two_paths().await;
    let etag = server.get("/a", &[]).await.etag();

    let res = server.get("/a", &[("if-none-match", &etag)]).await;
    assert_eq!(res.status, 304);
    assert!(res.body.is_empty());
    assert_eq!(res.etag(), etag);
    // No cache freshness: the handler ran for the conditional request too.
    assert_eq!(counter.get(), 2);

    // On the wire: no body bytes at all, and no Content-Length of the 200's body.
    let raw = server.raw("GET", "/a", &[("If-None-Match", &etag)]).await;
    assert_eq!(raw.status(), 304, "{raw:?}");
    assert!(raw.after_head.is_empty(), "{raw:?}");
    assert_eq!(raw.header("etag"), Some(etag.as_str()));
    assert_eq!(
        raw.header("content-length"),
        None,
        "a 304 must not carry a Content-Length other than the 200's: {raw:?}"
    );
    assert!(raw.header("transfer-encoding").is_none(), "{raw:?}");
}

#[tokio::test]
async fn if_none_match_non_matching_tag_gives_200_with_body() {
    let (server, _, _) = two_paths().await;
    let etag_b = server.get("/b", &[]).await.etag();
    let res = server.get("/a", &[("if-none-match", &etag_b)]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "hello a");
    assert_eq!(res.etag(), expected_etag(b"hello a"));
}

#[tokio::test]
async fn if_none_match_uses_weak_comparison() {
    let (server, _, _) = two_paths().await;
    let etag = server.get("/a", &[]).await.etag();
    let weak = format!("W/{etag}");
    let res = server.get("/a", &[("if-none-match", &weak)]).await;
    assert_eq!(res.status, 304);
    assert!(res.body.is_empty());
    // A weak tag with other opaque data does not match.
    let res = server.get("/a", &[("if-none-match", "W/\"other\"")]).await;
    assert_eq!(res.status, 200);
}

#[tokio::test]
async fn if_none_match_lists_and_several_lines() {
    let (server, _, _) = two_paths().await;
    let etag = server.get("/a", &[]).await.etag();

    let list = format!("\"x\", {etag}, W/\"y\"");
    let res = server.get("/a", &[("if-none-match", &list)]).await;
    assert_eq!(res.status, 304, "tag in the middle of a list");

    let res = server
        .get(
            "/a",
            &[("if-none-match", "\"x\""), ("if-none-match", &etag)],
        )
        .await;
    assert_eq!(res.status, 304, "tag on the second of two lines");

    // Negative: a list and several lines without the tag.
    let res = server
        .get(
            "/a",
            &[
                ("if-none-match", "\"x\", W/\"y\""),
                ("if-none-match", "\"z\""),
            ],
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "hello a");
}

#[tokio::test]
async fn if_none_match_star_gives_304_and_unquoted_tag_is_ignored() {
    let (server, _, _) = two_paths().await;
    let res = server.get("/a", &[("if-none-match", "*")]).await;
    assert_eq!(res.status, 304);
    assert!(res.body.is_empty());
    assert_eq!(res.etag(), expected_etag(b"hello a"));

    // The same tag without quotes is not an entity tag.
    let etag = expected_etag(b"hello a");
    let unquoted = etag.trim_matches('"');
    let res = server.get("/a", &[("if-none-match", unquoted)]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "hello a");
}

/// The fields of the 200 that a 304 repeats (RFC 9110 §15.4.5).
const REPEATED: [&str; 5] = [
    "cache-control",
    "vary",
    "last-modified",
    "expires",
    "content-location",
];

async fn assert_304_repeats_fields(cache_control: &'static str, expect_handler_call: bool) {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = Router::new().route(
        "/r",
        counted(&counter, move |_, _| {
            response(
                200,
                &[
                    ("cache-control", cache_control),
                    ("vary", "accept-language"),
                    ("last-modified", LAST_MODIFIED),
                    ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
                    ("content-location", "/r.en"),
                    ("content-type", "text/plain"),
                ],
                "representation",
            )
        }),
    );
    let server = TestServer::start(with_etag(app, &provider)).await;
    let ok = server.get("/r", &[]).await;
    assert_eq!(ok.status, 200);
    let etag = ok.etag();

    let nm = server.get("/r", &[("if-none-match", &etag)]).await;
    assert_eq!(nm.status, 304);
    assert!(nm.body.is_empty());
    assert_eq!(nm.etag(), etag);
    for name in REPEATED {
        assert_eq!(
            nm.header(name),
            ok.header(name),
            "{name} differs between the 200 and the 304 ({cache_control})"
        );
        assert!(nm.header(name).is_some(), "{name} missing");
    }
    let cl = nm.header("content-length");
    assert!(cl.is_none() || cl.as_deref() == Some("0"), "{cl:?}");
    assert_eq!(
        counter.get(),
        if expect_handler_call { 2 } else { 1 },
        "handler calls ({cache_control})"
    );
}

#[tokio::test]
async fn not_modified_repeats_the_200_fields_when_revalidated_by_the_handler() {
    // no-cache: the handler runs, the 304 is made from its response.
    assert_304_repeats_fields("no-cache", true).await;
}

#[tokio::test]
async fn not_modified_repeats_the_200_fields_when_answered_from_a_fresh_entry() {
    // max-age: the 304 is made from the stored entry without calling the handler.
    assert_304_repeats_fields("max-age=60", false).await;
}

// ---------------------------------------------------------------------------------------
// 3. If-Match, If-Modified-Since, If-Unmodified-Since
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn if_match_wrong_tag_gives_412_right_tag_gives_200() {
    let (server, _, _) = two_paths().await;
    let etag = server.get("/a", &[]).await.etag();

    let res = server.get("/a", &[("if-match", "\"wrong\"")]).await;
    assert_eq!(res.status, 412);
    assert!(res.body.is_empty());

    let res = server.get("/a", &[("if-match", &etag)]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "hello a");

    let res = server.get("/a", &[("if-match", "*")]).await;
    assert_eq!(res.status, 200);

    // If-Match uses strong comparison: the weak form of the right tag fails.
    let res = server
        .get("/a", &[("if-match", &format!("W/{etag}"))])
        .await;
    assert_eq!(res.status, 412);
}

fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

async fn last_modified_server() -> (TestServer, Counter) {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = Router::new().route(
        "/lm",
        counted(&counter, |_, _| {
            response(200, &[("last-modified", LAST_MODIFIED)], "dated")
        }),
    );
    (TestServer::start(with_etag(app, &provider)).await, counter)
}

#[tokio::test]
async fn if_modified_since() {
    let (server, _) = last_modified_server().await;
    let lm = httpdate::parse_http_date(LAST_MODIFIED).unwrap();

    // Not modified since the Last-Modified date, or since a later one.
    for date in [
        LAST_MODIFIED.to_owned(),
        http_date(lm + Duration::from_secs(60)),
    ] {
        let res = server.get("/lm", &[("if-modified-since", &date)]).await;
        assert_eq!(res.status, 304, "{date}");
        assert!(res.body.is_empty());
        assert_eq!(res.header("last-modified").as_deref(), Some(LAST_MODIFIED));
    }
    // Modified since an earlier date.
    let earlier = http_date(lm - Duration::from_secs(60));
    let res = server.get("/lm", &[("if-modified-since", &earlier)]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "dated");
    // An invalid date is ignored.
    let res = server
        .get("/lm", &[("if-modified-since", "yesterday")])
        .await;
    assert_eq!(res.status, 200);
    // Ignored when If-None-Match is present (§13.1.3): a non-matching tag wins.
    let res = server
        .get(
            "/lm",
            &[
                ("if-none-match", "\"other\""),
                ("if-modified-since", LAST_MODIFIED),
            ],
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "dated");
}

#[tokio::test]
async fn if_unmodified_since() {
    let (server, _) = last_modified_server().await;
    let lm = httpdate::parse_http_date(LAST_MODIFIED).unwrap();

    let earlier = http_date(lm - Duration::from_secs(60));
    let res = server
        .get("/lm", &[("if-unmodified-since", &earlier)])
        .await;
    assert_eq!(res.status, 412);
    assert!(res.body.is_empty());

    let res = server
        .get("/lm", &[("if-unmodified-since", LAST_MODIFIED)])
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "dated");

    // Ignored when If-Match is present (§13.1.4): a matching If-Match wins.
    let etag = expected_etag(b"dated");
    let res = server
        .get(
            "/lm",
            &[("if-match", &etag), ("if-unmodified-since", &earlier)],
        )
        .await;
    assert_eq!(res.status, 200);
}

// ---------------------------------------------------------------------------------------
// 4. What the layer leaves alone
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn preconditions_only_apply_to_2xx() {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = Router::new()
        .route(
            "/missing",
            counted(&counter, |_, _| response(404, &[], "not here")),
        )
        .route(
            "/error",
            counted(&counter, |_, _| response(500, &[], "boom")),
        );
    let server = TestServer::start(with_etag(app, &provider)).await;

    let res = server.get("/missing", &[("if-none-match", "*")]).await;
    assert_eq!(res.status, 404);
    assert_eq!(res.text(), "not here");
    assert_eq!(res.count("etag"), 0);

    let res = server.get("/missing", &[("if-match", "\"x\"")]).await;
    assert_eq!(res.status, 404, "If-Match must not turn a 404 into a 412");

    let res = server.get("/error", &[("if-none-match", "*")]).await;
    assert_eq!(res.status, 500);
    assert_eq!(res.text(), "boom");
    assert_eq!(res.count("etag"), 0);
    assert_eq!(counter.get(), 3);
    assert!(provider.is_empty());

    // An unrouted path (axum's fallback 404) too.
    let res = server.get("/nowhere", &[("if-none-match", "*")]).await;
    assert_eq!(res.status, 404);
}

#[tokio::test]
async fn post_passes_through_untouched() {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = Router::new().route(
        "/p",
        counted(&counter, |m, _| response(200, &[], format!("{m} body"))),
    );
    let server = TestServer::start(with_etag(app, &provider)).await;

    let res = server.request(Method::POST, "/p", &[]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "POST body");
    assert_eq!(res.count("etag"), 0);

    // Preconditions on POST are not the layer's business: the handler's answer goes out.
    let res = server
        .request(Method::POST, "/p", &[("if-none-match", "*")])
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.count("etag"), 0);
    assert_eq!(counter.get(), 2);
    assert!(provider.is_empty());

    // Negative: GET on the same route is tagged.
    let res = server.get("/p", &[]).await;
    assert_eq!(res.etag(), expected_etag(b"GET body"));
}

/// A handler that answers with the conditional fields it received, one per line of `seen`.
fn echo_conditionals(counter: &Counter) -> axum::routing::MethodRouter {
    counted(counter, |_, headers| {
        response(200, &[], common::seen_conditionals(headers))
    })
}

#[tokio::test]
async fn conditionals_the_layer_does_not_evaluate_reach_the_handler() {
    // RFC 9110 §13.2.1: what the layer does not evaluate, it forwards untouched.
    let counter = Counter::new();
    let provider = Provider::init();
    let plain_calls = Counter::new();
    let app = Router::new()
        .route("/c", echo_conditionals(&counter))
        .route(
            "/plain",
            counted(&plain_calls, |_, _| response(200, &[], "plain")),
        );
    let server = TestServer::start(with_etag(app, &provider)).await;

    let post = server
        .request(
            Method::POST,
            "/c",
            &[("if-match", "\"a\""), ("if-none-match", "*")],
        )
        .await;
    assert_eq!(post.status, 200);
    assert_eq!(post.text(), "seen:if-match=\"a\"\nif-none-match=*");

    let ranged = server
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
    assert_eq!(counter.get(), 2);
    // Negative: where the layer does evaluate (a GET it tags), the handler's answer is not
    // what goes out: the handler never answers 304.
    let plain = server.get("/plain", &[]).await;
    let again = server
        .get("/plain", &[("if-none-match", &plain.etag())])
        .await;
    assert_eq!(again.status, 304);
}

#[tokio::test]
async fn empty_responses_get_no_etag() {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = Router::new()
        .route(
            "/no-content",
            counted(&counter, |_, _| response(204, &[], "")),
        )
        .route(
            "/explicit-zero",
            counted(&counter, |_, _| {
                response(200, &[("content-length", "0")], "")
            }),
        );
    let server = TestServer::start(with_etag(app, &provider)).await;

    for path in ["/no-content", "/explicit-zero"] {
        let res = server.get(path, &[]).await;
        assert!(res.status.is_success(), "{path}");
        assert_eq!(res.count("etag"), 0, "{path}: {:?}", res.headers);
        assert!(res.body.is_empty());
        // With no tag there is nothing to match: no 304.
        let res = server.get(path, &[("if-none-match", "*")]).await;
        assert_ne!(res.status, 304, "{path}");
    }
    assert!(provider.is_empty());
    assert_eq!(counter.get(), 4);
}

/// A handler that returns an empty body without writing `Content-Length` itself: axum adds
/// `content-length: 0` only at the top-level route, i.e. outside the layer, so the predicate
/// never sees it. On the wire the client gets `content-length: 0` *and* an ETag.
#[tokio::test]
async fn empty_body_without_content_length_header_gets_no_etag() {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = Router::new().route("/empty", counted(&counter, |_, _| response(200, &[], "")));
    let server = TestServer::start(with_etag(app, &provider)).await;
    let raw = server.raw("GET", "/empty", &[]).await;
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.header("content-length"), Some("0"));
    assert_eq!(raw.header("etag"), None, "{raw:?}");
    assert!(provider.is_empty());
}

// ---------------------------------------------------------------------------------------
// 11. Invalidation API
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn invalidation_api_forgets_entries() {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = Router::new().route(
        "/inv",
        counted(&counter, |_, _| {
            response(200, &[("cache-control", "max-age=60")], "cached")
        }),
    );
    let server = TestServer::start(with_etag(app, &provider)).await;
    let key = server.key("/inv");
    let etag = server.get("/inv", &[]).await.etag();
    assert_eq!(counter.get(), 1);
    assert_eq!(
        provider.etag(&key).map(|t| t.to_string()),
        Some(etag.clone())
    );
    let inm = [("if-none-match", etag.as_str())];

    // Fresh entry: 304 without the handler.
    assert_eq!(server.get("/inv", &inm).await.status, 304);
    assert_eq!(counter.get(), 1);

    // invalidate(key)
    assert!(provider.invalidate(&key));
    assert!(!provider.invalidate(&key), "already gone");
    assert_eq!(provider.etag(&key), None);
    assert_eq!(server.get("/inv", &inm).await.status, 304);
    assert_eq!(counter.get(), 2, "after invalidate the handler runs again");
    // ...and the entry is back.
    assert_eq!(server.get("/inv", &inm).await.status, 304);
    assert_eq!(counter.get(), 2);

    // invalidate_target(host, path): every variant of the target.
    let gz = [
        ("if-none-match", etag.as_str()),
        ("accept-encoding", "gzip"),
    ];
    assert_eq!(server.get("/inv", &gz).await.status, 304);
    assert_eq!(counter.get(), 3, "another variant is another key");
    assert_eq!(provider.len(), 2);
    assert_eq!(provider.invalidate_target(&server.host(), "/other"), 0);
    assert_eq!(provider.invalidate_target("example.com", "/inv"), 0);
    assert_eq!(provider.invalidate_target(&server.host(), "/inv"), 2);
    assert!(provider.is_empty());
    assert_eq!(server.get("/inv", &inm).await.status, 304);
    assert_eq!(counter.get(), 4);

    // clear()
    assert_eq!(server.get("/inv", &inm).await.status, 304);
    assert_eq!(counter.get(), 4);
    provider.clear();
    assert!(provider.is_empty());
    assert_eq!(server.get("/inv", &inm).await.status, 304);
    assert_eq!(counter.get(), 5);
}

#[tokio::test]
async fn cache_key_matches_simple_etag_cache_key_from_request() {
    // The key the tests build by hand is the one the provider uses for the client's request.
    let (server, _, provider) = two_paths().await;
    server.get("/a?q=1", &[("accept", "text/plain")]).await;
    let request = axum::http::Request::builder()
        .uri("/a?q=1")
        .header("host", server.host())
        .header("accept", "text/plain")
        .body(())
        .unwrap();
    let key = SimpleEtagCacheKey::from_request(&request);
    assert_eq!(
        provider.etag(&key).map(|t| t.to_string()),
        Some(expected_etag(b"hello a"))
    );
    assert_eq!(
        provider.etag(&server.key("/a?q=1")),
        None,
        "Accept is part of the key"
    );
}

// ---------------------------------------------------------------------------------------
// 12. axum integration
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn axum_router_layer_compiles_and_serves_without_handle_error_layer() {
    let app = Router::new()
        .route("/", get(|| async { "Hello, World!" }))
        .layer(EtagCacheLayer::with_default_predicate(
            ConstLruProvider::<64>::init(),
        ));
    // `TestServer::start` runs `axum::serve(listener, app)` on 127.0.0.1:0.
    let server = TestServer::start(app).await;
    let raw = server.raw("GET", "/", &[]).await;
    assert_eq!(raw.status(), 200, "{raw:?}");
    assert_eq!(
        raw.header("etag"),
        Some(expected_etag(b"Hello, World!").as_str())
    );
    assert_eq!(raw.after_head, b"Hello, World!");
    let raw = server
        .raw(
            "GET",
            "/",
            &[("If-None-Match", &expected_etag(b"Hello, World!"))],
        )
        .await;
    assert_eq!(raw.status(), 304, "{raw:?}");
    assert!(raw.after_head.is_empty());
}

/// A 412 answers this request's preconditions only: with the 200's freshness a cache
/// downstream could store it and serve it to requests without them.
#[tokio::test]
async fn a_412_carries_no_freshness() {
    let provider = Provider::init();
    let counter = Counter::new();
    let app = Router::new().route(
        "/fresh",
        counted(&counter, |_, _| {
            response(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("expires", "Sun, 06 Nov 2044 08:49:37 GMT"),
                ],
                "f",
            )
        }),
    );
    let server = TestServer::start(with_etag(app, &provider)).await;
    // From the inner service's response, then from the fresh entry alone.
    for _ in 0..2 {
        let res = server.get("/fresh", &[("if-match", "\"other\"")]).await;
        assert_eq!(res.status, 412);
        assert_eq!(res.header("cache-control"), None);
        assert_eq!(res.header("expires"), None);
    }
    assert_eq!(counter.get(), 1, "the second 412 came from the entry");
    // A 304 keeps them (RFC 9110 §15.4.5).
    let tag = expected_etag(b"f");
    let res = server.get("/fresh", &[("if-none-match", &tag)]).await;
    assert_eq!(res.status, 304);
    assert_eq!(res.header("cache-control").as_deref(), Some("max-age=60"));
}
