//! The layer next to other parts of a real stack: HEAD requests, tower-http's `ServeDir`, and
//! tower-http's `CompressionLayer` placed inside or outside the cache.

use crate::common;
use axum::{
    http::{HeaderMap, Method},
    Router,
};
use common::{counted, expected_etag, response, with_etag, Counter, Provider, TestServer};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tower_etag::EtagCacheLayer;
use tower_http::{compression::CompressionLayer, services::ServeDir};

// ---------------------------------------------------------------------------------------
// 6. HEAD
// ---------------------------------------------------------------------------------------

const DOC: &str = "a document of some length";

/// `/doc` records the method each handler call saw.
async fn head_server(
    cache_control: Option<&'static str>,
) -> (TestServer, Counter, Arc<Mutex<Vec<Method>>>) {
    let counter = Counter::new();
    let provider = Provider::init();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = Router::new().route(
        "/doc",
        counted(&counter, move |method: &Method, _: &HeaderMap| {
            record.lock().unwrap().push(method.clone());
            match cache_control {
                Some(cc) => response(200, &[("cache-control", cc)], DOC),
                None => response(200, &[], DOC),
            }
        }),
    );
    (
        TestServer::start(with_etag(app, &provider)).await,
        counter,
        seen,
    )
}

#[tokio::test]
async fn head_carries_the_get_etag_and_content_length_without_body() {
    let (server, counter, seen) = head_server(None).await;
    let get = server.get("/doc", &[]).await;
    assert_eq!(get.text(), DOC);
    let get_len = get.header("content-length").unwrap();
    assert_eq!(get_len, DOC.len().to_string());

    let head = server.head("/doc", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.etag(), get.etag());
    assert_eq!(head.etag(), expected_etag(DOC.as_bytes()));
    assert_eq!(head.header("content-length"), Some(get_len.clone()));

    // On the wire: no body bytes after the head.
    let raw = server.raw("HEAD", "/doc", &[]).await;
    assert_eq!(raw.status(), 200);
    assert!(raw.after_head.is_empty(), "{raw:?}");
    assert_eq!(
        raw.header("etag"),
        Some(expected_etag(DOC.as_bytes()).as_str())
    );
    assert_eq!(raw.header("content-length"), Some(get_len.as_str()));

    // The provider fetched the GET representation for the HEADs.
    assert_eq!(counter.get(), 3);
    assert_eq!(
        *seen.lock().unwrap(),
        [Method::GET, Method::GET, Method::GET]
    );
}

#[tokio::test]
async fn head_with_matching_if_none_match_gets_304() {
    let (server, counter, _) = head_server(None).await;
    let etag = expected_etag(DOC.as_bytes());
    let res = server.head("/doc", &[("if-none-match", &etag)]).await;
    assert_eq!(res.status, 304);
    assert_eq!(res.etag(), etag);
    let raw = server
        .raw("HEAD", "/doc", &[("If-None-Match", &etag)])
        .await;
    assert_eq!(raw.status(), 304);
    assert!(raw.after_head.is_empty());
    // Never a wrong length (the next test checks that no `content-length: 0` is sent).
    assert_ne!(
        raw.header("content-length"),
        Some(DOC.len().to_string().as_str())
    );
    // Non-matching: 200 without body.
    let res = server.head("/doc", &[("if-none-match", "\"nope\"")]).await;
    assert_eq!(res.status, 200);
    assert!(res.body.is_empty());
    assert_eq!(counter.get(), 3);
    // If-Match with a wrong tag: 412.
    let res = server.head("/doc", &[("if-match", "\"nope\"")]).await;
    assert_eq!(res.status, 412);
}

/// RFC 9110 §8.6: a 304 carries no Content-Length unless it equals the length the 200 would
/// have had. For HEAD through axum, the 304 goes out with `content-length: 0` (hyper strips
/// it for GET, not for HEAD): the bodiless answer's body reports an exact size of 0, and
/// axum's top-level route turns that into a header.
#[tokio::test]
async fn head_304_has_no_wrong_content_length() {
    let (server, _, _) = head_server(Some("max-age=60")).await;
    let etag = expected_etag(DOC.as_bytes());
    // Store path (the handler answers) and hit path (the fresh entry answers).
    for _ in 0..2 {
        let raw = server
            .raw("HEAD", "/doc", &[("If-None-Match", &etag)])
            .await;
        assert_eq!(raw.status(), 304);
        let cl = raw.header("content-length");
        assert!(
            cl.is_none() || cl == Some(DOC.len().to_string().as_str()),
            "{raw:?}"
        );
    }
}

#[tokio::test]
async fn head_answered_from_a_fresh_entry_left_by_get() {
    let (server, counter, _) = head_server(Some("max-age=60")).await;
    let etag = server.get("/doc", &[]).await.etag();
    let res = server.head("/doc", &[("if-none-match", &etag)]).await;
    assert_eq!(res.status, 304);
    assert_eq!(res.etag(), etag);
    assert_eq!(counter.get(), 1, "HEAD shares the GET's entry");
    // And the other way round: a HEAD leaves an entry a GET can use.
    let (server, counter, _) = head_server(Some("max-age=60")).await;
    let etag = server.head("/doc", &[]).await.etag();
    let res = server.get("/doc", &[("if-none-match", &etag)]).await;
    assert_eq!(res.status, 304);
    assert_eq!(counter.get(), 1);
}

/// HEAD of representations the layer does not tag (larger than `max_body_size`, or a 404):
/// the HEAD answer must still describe the GET response's length — or say nothing — never
/// `content-length: 0` for a non-empty body (RFC 9110 §8.6, §9.3.2).
async fn head_lengths(with_layer: bool) -> Vec<(u16, Option<String>)> {
    let provider = Provider::builder().max_body_size(16).build();
    let counter = Counter::new();
    let app = Router::new()
        .route(
            "/big",
            counted(&counter, |_, _| response(200, &[], "b".repeat(100))),
        )
        .route(
            "/gone",
            counted(&counter, |_, _| response(404, &[], "not here")),
        );
    let app = if with_layer {
        with_etag(app, &provider)
    } else {
        app
    };
    let server = TestServer::start(app).await;
    let mut out = Vec::new();
    for path in ["/big", "/gone"] {
        let raw = server.raw("HEAD", path, &[]).await;
        assert!(raw.after_head.is_empty());
        assert!(raw.header("etag").is_none());
        out.push((
            raw.status(),
            raw.header("content-length").map(str::to_owned),
        ));
    }
    out
}

#[tokio::test]
async fn head_of_untagged_responses_without_the_layer() {
    // Control: what axum alone sends.
    assert_eq!(
        head_lengths(false).await,
        [(200, Some("100".to_owned())), (404, Some("8".to_owned()))]
    );
}

#[tokio::test]
async fn head_of_untagged_responses_keeps_the_get_length() {
    let lengths = head_lengths(true).await;
    for (status, cl) in &lengths {
        assert!(
            cl.is_none() || cl.as_deref() == Some(if *status == 200 { "100" } else { "8" }),
            "(status, content-length) of HEAD /big and HEAD /gone: {lengths:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 7. ServeDir
// ---------------------------------------------------------------------------------------

const FILE: &str = "file contents served by ServeDir\n";

fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.txt"), FILE).unwrap();
    dir
}

/// ServeDir without the layer: the ETag it makes itself.
async fn serve_dir_own_etag(dir: &tempfile::TempDir) -> String {
    let plain = TestServer::start(Router::new().fallback_service(ServeDir::new(dir.path()))).await;
    let res = plain.get("/index.txt", &[]).await;
    assert_eq!(res.status, 200);
    res.etag()
}

#[tokio::test]
async fn serve_dir_etag_is_kept_and_not_rehashed() {
    let dir = site();
    let own = serve_dir_own_etag(&dir).await;
    assert_ne!(own, expected_etag(FILE.as_bytes()));

    let provider = Provider::init();
    let app = with_etag(
        Router::new().fallback_service(ServeDir::new(dir.path())),
        &provider,
    );
    let server = TestServer::start(app).await;
    let res = server.get("/index.txt", &[]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), FILE);
    assert_eq!(res.etag(), own, "the layer keeps ServeDir's tag");
    assert!(res.header("last-modified").is_some());
    assert_eq!(
        provider
            .etag(&server.key("/index.txt"))
            .map(|t| t.to_string()),
        Some(own.clone())
    );

    let res = server.get("/index.txt", &[("if-none-match", &own)]).await;
    assert_eq!(res.status, 304);
    assert!(res.body.is_empty());
    assert_eq!(res.etag(), own);
    // The content hash is not a current tag.
    let res = server
        .get(
            "/index.txt",
            &[("if-none-match", &expected_etag(FILE.as_bytes()))],
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), FILE);
    // HEAD through ServeDir too.
    let res = server.head("/index.txt", &[]).await;
    assert_eq!(res.etag(), own);
    assert_eq!(res.header("content-length"), Some(FILE.len().to_string()));
}

#[tokio::test]
async fn serve_dir_304_comes_from_the_layer_when_the_entry_is_fresh() {
    let dir = site();
    let provider = Provider::builder().ttl(Duration::from_secs(60)).build();
    let app = with_etag(
        Router::new().fallback_service(ServeDir::new(dir.path())),
        &provider,
    );
    let server = TestServer::start(app).await;
    let etag = server.get("/index.txt", &[]).await.etag();

    // Remove the file: ServeDir itself would now answer 404.
    std::fs::remove_file(dir.path().join("index.txt")).unwrap();
    let res = server.get("/index.txt", &[("if-none-match", &etag)]).await;
    assert_eq!(res.status, 304, "answered by the layer from its entry");
    assert_eq!(res.etag(), etag);
    assert!(res.header("age").is_some(), "served from the cache: Age");

    // Negative: an unconditional request goes to ServeDir, which has lost the file.
    let res = server.get("/index.txt", &[]).await;
    assert_eq!(res.status, 404);
}

// ---------------------------------------------------------------------------------------
// 8. Compression placement
// ---------------------------------------------------------------------------------------

/// Long and repetitive enough for tower-http's default compression predicate (>= 32 bytes).
fn text() -> String {
    "compress me, compress me, compress me! ".repeat(20)
}

fn text_route(counter: &Counter) -> Router {
    Router::new().route(
        "/text",
        counted(counter, |_, _| {
            response(200, &[("content-type", "text/plain")], text())
        }),
    )
}

const GZIP: (&str, &str) = ("accept-encoding", "gzip");

fn vary_has_accept_encoding(res: &common::Resp) -> bool {
    res.headers.get_all("vary").iter().any(|v| {
        v.to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("accept-encoding")
    })
}

/// Compression INSIDE the cache (the right placement): `.layer(Compression)` first, then
/// `.layer(EtagCache)` — in axum the last `.layer` is the outermost. The cache sees and
/// hashes each encoding as it is sent, keys entries by `Accept-Encoding`, and the
/// compression layer adds `Vary: accept-encoding`.
#[tokio::test]
async fn compression_inside_gives_each_encoding_its_own_etag() {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = text_route(&counter)
        .layer(CompressionLayer::new())
        .layer(EtagCacheLayer::with_default_predicate(provider.clone()));
    let server = TestServer::start(app).await;

    let identity = server.get("/text", &[]).await;
    assert_eq!(identity.status, 200);
    assert_eq!(identity.text(), text());
    assert!(identity.header("content-encoding").is_none());
    assert_eq!(identity.etag(), expected_etag(text().as_bytes()));
    assert!(
        vary_has_accept_encoding(&identity),
        "{:?}",
        identity.headers
    );

    let gzip = server.get("/text", &[GZIP]).await;
    assert_eq!(gzip.status, 200);
    assert_eq!(gzip.header("content-encoding").as_deref(), Some("gzip"));
    assert_eq!(&gzip.body[..2], &[0x1f, 0x8b], "gzip magic");
    assert!(vary_has_accept_encoding(&gzip), "{:?}", gzip.headers);
    let gzip_tag = gzip.etag();
    assert_eq!(gzip_tag, expected_etag(&gzip.body), "hashed as sent");
    assert_ne!(gzip_tag, identity.etag());

    // The gzip tag gives a 304 only to a request that selects gzip.
    let res = server
        .get("/text", &[GZIP, ("if-none-match", &gzip_tag)])
        .await;
    assert_eq!(res.status, 304);
    assert_eq!(res.etag(), gzip_tag);
    assert!(vary_has_accept_encoding(&res));
    let res = server.get("/text", &[("if-none-match", &gzip_tag)]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), text());
    // And the identity tag does not validate the gzip variant.
    let res = server
        .get("/text", &[GZIP, ("if-none-match", &identity.etag())])
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-encoding").as_deref(), Some("gzip"));
}

/// What inside placement does today (see the ignored test above): the identity variant is
/// tagged, the gzip variant streams through untagged, so no client ever gets a 304 for a
/// representation it does not have.
#[tokio::test]
async fn compression_inside_never_validates_one_encoding_with_the_other_tag() {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = text_route(&counter)
        .layer(CompressionLayer::new())
        .layer(EtagCacheLayer::with_default_predicate(provider.clone()));
    let server = TestServer::start(app).await;

    let identity = server.get("/text", &[]).await;
    let identity_tag = identity.etag();
    assert_eq!(identity_tag, expected_etag(text().as_bytes()));
    assert!(vary_has_accept_encoding(&identity));

    let gzip = server.get("/text", &[GZIP]).await;
    assert_eq!(gzip.header("content-encoding").as_deref(), Some("gzip"));
    assert_ne!(gzip.header("etag"), Some(identity_tag.clone()));

    let res = server
        .get("/text", &[GZIP, ("if-none-match", &identity_tag)])
        .await;
    assert_eq!(
        res.status, 200,
        "identity tag must not validate the gzip body"
    );
    assert_eq!(res.header("content-encoding").as_deref(), Some("gzip"));
    let res = server
        .get("/text", &[("if-none-match", &identity_tag)])
        .await;
    assert_eq!(res.status, 304);
}

/// Compression OUTSIDE the cache (the wrong placement): `.layer(EtagCache)` first, then
/// `.layer(Compression)`. The cache only ever sees the identity bytes, so the plain and the
/// gzip responses carry the same strong ETag although their bytes differ — which RFC 9110
/// §8.8.3 forbids for a strong validator (a range request or a cache combining the two would
/// mix bytes of different representations). That is why compression belongs inside.
#[tokio::test]
async fn compression_outside_gives_both_encodings_the_same_strong_etag() {
    let counter = Counter::new();
    let provider = Provider::init();
    let app = text_route(&counter)
        .layer(EtagCacheLayer::with_default_predicate(provider.clone()))
        .layer(CompressionLayer::new());
    let server = TestServer::start(app).await;

    let identity = server.get("/text", &[]).await;
    assert!(identity.header("content-encoding").is_none());
    let gzip = server.get("/text", &[GZIP]).await;
    assert_eq!(gzip.header("content-encoding").as_deref(), Some("gzip"));
    assert_ne!(gzip.body, identity.body);

    // Observed: one strong tag, the hash of the identity bytes, for both.
    let tag = identity.etag();
    assert_eq!(tag, expected_etag(text().as_bytes()));
    assert_eq!(gzip.etag(), tag);
    assert!(!tag.starts_with("W/"));
    assert_ne!(gzip.etag(), expected_etag(&gzip.body));

    // And the identity tag validates the gzip variant.
    let res = server.get("/text", &[GZIP, ("if-none-match", &tag)]).await;
    assert_eq!(res.status, 304);
    assert_eq!(res.etag(), tag);
}
