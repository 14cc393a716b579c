//! The response cache in front of an HTTP client (`ResponseCacheBuilder::client`): a real
//! hyper-util `Client` under the layer, real origins on 127.0.0.1, the memory and Redis
//! stores.

use crate::common;
#[cfg(feature = "redis")]
use crate::redis_server;
use axum::{
    http::{HeaderMap, Method, StatusCode},
    routing, Router,
};
use bytes::Bytes;
use common::{counted, response, Counter, TestServer};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_etag::{
    response_cache::{Everything, ResponseCache},
    store::{MemoryStore, Store},
};

/// What a call through the cached client gave.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn cache_status(&self) -> &str {
        self.headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// A hyper-util client that opens a connection per request (so an origin that stops is
/// refused at once), as the cached service sees it.
fn upstream() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

/// `GET url` with `headers` through `svc`, the body read whole.
async fn call<S, B>(svc: &S, method: Method, url: &str, headers: &[(&str, &str)]) -> Answer
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::default()).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), svc.clone().oneshot(request))
        .await
        .expect("an answer in time")
        .expect("the call succeeded");
    let (parts, body) = res.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn get<S, B>(svc: &S, url: &str) -> Answer
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    call(svc, Method::GET, url, &[]).await
}

/// A Redis store on a `redis-server` of its own (kept running while the server value lives),
/// or `None` when the machine has none and the run does not require it.
#[cfg(feature = "redis")]
async fn redis_store(
    test: &str,
) -> Option<(redis_server::RedisServer, tower_etag::store::RedisStore)> {
    let server = redis_server::RedisServer::start_or_skip(test)?;
    let store = server.store("client").await;
    Some((server, store))
}

/// Tests `$module::memory` and `$module::redis`: `$body` run on a memory store and on a
/// Redis store (the latter skipped, and saying so, without `redis-server`).
macro_rules! on_memory_and_redis {
    ($module:ident, $body:ident) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                $body(MemoryStore::new()).await;
            }

            #[cfg(feature = "redis")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                let Some((_server, store)) = redis_store(stringify!($module)).await else {
                    return;
                };
                $body(store).await;
            }
        }
    };
}

/// An API with the cache headers the tests need, counting every call.
fn api(calls: &Counter, conditional: &Counter) -> Router {
    let conditional = conditional.clone();
    Router::new()
        .route(
            "/data",
            counted(calls, |_, _| {
                response(200, &[("cache-control", "max-age=60")], "data")
            }),
        )
        .route(
            "/private",
            counted(calls, |_, _| {
                response(200, &[("cache-control", "private, max-age=60")], "mine")
            }),
        )
        .route(
            "/tagged",
            counted(calls, move |_, headers| {
                if headers.get("if-none-match").is_some_and(|v| v == "\"v1\"") {
                    conditional.inc();
                    return response(
                        304,
                        &[("etag", "\"v1\""), ("cache-control", "max-age=0")],
                        "",
                    );
                }
                response(
                    200,
                    &[("etag", "\"v1\""), ("cache-control", "max-age=0")],
                    "tagged",
                )
            }),
        )
        .route(
            "/kept",
            counted(calls, |_, _| {
                response(
                    200,
                    &[
                        ("cache-control", "max-age=0, stale-if-error=60"),
                        ("etag", "\"k\""),
                    ],
                    "kept",
                )
            }),
        )
        .route(
            "/slow",
            routing::get({
                let calls = calls.clone();
                move || {
                    let calls = calls.clone();
                    async move {
                        calls.inc();
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        response(200, &[("cache-control", "max-age=60")], "slow")
                    }
                }
            }),
        )
}

/// Repeated GETs of one URL reach the origin once; the second and third are hits.
async fn repeated_gets_are_answered_from<St: Store + Clone>(store: St) {
    let (calls, conditional) = (Counter::new(), Counter::new());
    let origin = TestServer::start(api(&calls, &conditional)).await;
    let cache = ResponseCache::builder(store).client().build();
    let client = ServiceBuilder::new()
        .layer(cache.layer())
        .service(upstream());
    let url = format!("http://{}/data", origin.addr);
    let first = get(&client, &url).await;
    assert_eq!(first.body, "data");
    assert!(
        first.cache_status().contains("fwd=uri-miss"),
        "{}",
        first.cache_status()
    );
    for _ in 0..2 {
        let again = get(&client, &url).await;
        assert_eq!(
            (again.status, &again.body[..]),
            (StatusCode::OK, &b"data"[..])
        );
        assert!(
            again.cache_status().contains("hit"),
            "{}",
            again.cache_status()
        );
    }
    assert_eq!(calls.get(), 1, "one call reached the origin");
    // A client cache names the origin's headers only: no tag of its own.
    assert!(first.headers.get("etag").is_none());
}

on_memory_and_redis!(
    repeated_gets_through_a_client_are_hits,
    repeated_gets_are_answered_from
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_origin_has_its_own_entries() {
    // Two origins with the same path: the key is the whole URL, authority and port too.
    let (a_calls, b_calls) = (Counter::new(), Counter::new());
    let a = TestServer::start(Router::new().route(
        "/same",
        counted(&a_calls, |_, _| {
            response(200, &[("cache-control", "max-age=60")], "from a")
        }),
    ))
    .await;
    let b = TestServer::start(Router::new().route(
        "/same",
        counted(&b_calls, |_, _| {
            response(200, &[("cache-control", "max-age=60")], "from b")
        }),
    ))
    .await;
    let cache = ResponseCache::builder(MemoryStore::new()).client().build();
    let client = ServiceBuilder::new()
        .layer(cache.layer())
        .service(upstream());
    for _ in 0..2 {
        assert_eq!(
            get(&client, &format!("http://{}/same", a.addr)).await.body,
            "from a"
        );
        assert_eq!(
            get(&client, &format!("http://{}/same", b.addr)).await.body,
            "from b"
        );
    }
    assert_eq!((a_calls.get(), b_calls.get()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_agent_cache_stores_private_responses_and_a_shared_one_does_not() {
    let (calls, conditional) = (Counter::new(), Counter::new());
    let origin = TestServer::start(api(&calls, &conditional)).await;
    let url = format!("http://{}/private", origin.addr);
    // The default in front of a client: the cache of one user agent.
    let mine = ResponseCache::builder(MemoryStore::new()).client().build();
    let client = ServiceBuilder::new()
        .layer(mine.layer())
        .service(upstream());
    get(&client, &url).await;
    assert!(get(&client, &url).await.cache_status().contains("hit"));
    assert_eq!(calls.get(), 1);
    // A backend calling for many users: `private` is not stored (RFC 9111 §5.2.2.7).
    let shared = ResponseCache::builder(MemoryStore::new())
        .client()
        .shared()
        .build();
    let client = ServiceBuilder::new()
        .layer(shared.layer())
        .service(upstream());
    for _ in 0..2 {
        let res = get(&client, &url).await;
        assert_eq!(res.body, "mine");
        assert!(
            !res.cache_status().contains("hit"),
            "{}",
            res.cache_status()
        );
    }
    assert_eq!(calls.get(), 3, "both went to the origin");
}

async fn a_stale_entry_is_revalidated_and_the_client_gets_the_stored_body_on<St: Store + Clone>(
    store: St,
) {
    let (calls, conditional) = (Counter::new(), Counter::new());
    let origin = TestServer::start(api(&calls, &conditional)).await;
    let cache = ResponseCache::builder(store).client().build();
    let client = ServiceBuilder::new()
        .layer(cache.layer())
        .service(upstream());
    let url = format!("http://{}/tagged", origin.addr);
    assert_eq!(get(&client, &url).await.body, "tagged");
    // `max-age=0`: stale at once, so the next call asks with the stored tag; the origin's
    // 304 freshens the entry and the application gets a whole 200 (RFC 9111 §4.3.4).
    let again = get(&client, &url).await;
    assert_eq!(
        (again.status, &again.body[..]),
        (StatusCode::OK, &b"tagged"[..])
    );
    assert!(
        again.cache_status().contains("fwd=stale"),
        "{}",
        again.cache_status()
    );
    assert!(
        again.cache_status().contains("fwd-status=304"),
        "{}",
        again.cache_status()
    );
    assert_eq!((calls.get(), conditional.get()), (2, 1));
}

on_memory_and_redis!(
    a_stale_entry_is_revalidated_and_the_client_gets_the_stored_body,
    a_stale_entry_is_revalidated_and_the_client_gets_the_stored_body_on
);

async fn stale_if_error_covers_a_refused_connection_on<St: Store + Clone>(store: St) {
    let (calls, conditional) = (Counter::new(), Counter::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = api(&calls, &conditional);
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let cache = ResponseCache::builder(store).client().build();
    let client = ServiceBuilder::new()
        .layer(cache.layer())
        .service(upstream());
    let url = format!("http://{addr}/kept");
    assert_eq!(get(&client, &url).await.body, "kept");
    // The origin goes away: connecting is refused (the client keeps no idle connection).
    server.abort();
    let _ = server.await;
    let refused = upstream()
        .request(Request::get(&url).body(Full::default()).unwrap())
        .await;
    assert!(refused.is_err(), "the origin still answers");
    // RFC 5861 §4: within stale-if-error the stored response stands in for the error.
    let res = get(&client, &url).await;
    assert_eq!((res.status, &res.body[..]), (StatusCode::OK, &b"kept"[..]));
    // Without an entry the client's error comes through, untouched.
    let unknown = ServiceBuilder::new()
        .layer(cache.layer())
        .service(upstream())
        .oneshot(
            Request::get(format!("http://{addr}/data"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert!(unknown.is_err(), "nothing stored stands in for /data");
}

on_memory_and_redis!(
    stale_if_error_covers_a_refused_connection,
    stale_if_error_covers_a_refused_connection_on
);

async fn concurrent_calls_for_one_url_are_coalesced_on<St: Store + Clone>(store: St) {
    let (calls, conditional) = (Counter::new(), Counter::new());
    let origin = TestServer::start(api(&calls, &conditional)).await;
    let cache = ResponseCache::builder(store).client().build();
    let client = ServiceBuilder::new()
        .layer(cache.layer())
        .service(upstream());
    let url = format!("http://{}/slow", origin.addr);
    let calls_at_once = (0..10).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { get(&client, &url).await.body })
    });
    for body in calls_at_once {
        assert_eq!(body.await.unwrap(), "slow");
    }
    assert_eq!(calls.get(), 1, "ten calls, one reached the origin");
}

on_memory_and_redis!(
    concurrent_calls_for_one_url_are_coalesced,
    concurrent_calls_for_one_url_are_coalesced_on
);

/// A client stand-in that counts its calls in `seen` and answers each, fresh for a
/// minute, with what `say` makes of the request it got.
fn saying(
    seen: &Counter,
    say: fn(&Request<Full<Bytes>>) -> String,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<axum::body::Body>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    let seen = seen.clone();
    tower::service_fn(move |req: Request<Full<Bytes>>| {
        seen.inc();
        let said = say(&req);
        async move { Ok(response(200, &[("cache-control", "max-age=60")], said)) }
    })
}

#[tokio::test]
async fn a_request_without_an_absolute_uri_goes_to_the_client_untouched() {
    let seen = Counter::new();
    let inner = saying(&seen, |req| req.uri().to_string());
    let cache = ResponseCache::builder(MemoryStore::new()).client().build();
    let client = ServiceBuilder::new().layer(cache.layer()).service(inner);
    for _ in 0..2 {
        let res = call(
            &client,
            Method::GET,
            "/relative",
            &[("host", "api.example")],
        )
        .await;
        assert_eq!(res.body, "/relative");
        assert!(
            res.cache_status().contains("detail=relative-uri"),
            "{}",
            res.cache_status()
        );
    }
    assert_eq!(seen.get(), 2, "never stored");
}

#[tokio::test]
async fn http_and_https_urls_are_apart_and_host_comes_from_the_uri() {
    let seen = Counter::new();
    let inner = saying(&seen, |req| {
        let host = req.headers().get("host").cloned();
        format!("{} host={host:?}", req.uri())
    });
    let cache = ResponseCache::builder(MemoryStore::new()).client().build();
    let client = ServiceBuilder::new().layer(cache.layer()).service(inner);
    for _ in 0..2 {
        let plain = call(&client, Method::GET, "http://API.example/x", &[]).await;
        assert_eq!(
            plain.body,
            "http://API.example/x host=Some(\"api.example\")"
        );
        // Same authority and path, another scheme: another resource (and its default port
        // is left out of the key as 443 is for https).
        let tls = call(&client, Method::GET, "https://api.example:443/x", &[]).await;
        assert_eq!(
            tls.body,
            "https://api.example:443/x host=Some(\"api.example\")"
        );
    }
    assert_eq!(seen.get(), 2, "one call per scheme, then hits");
    // An invalidation names the scheme too.
    let https: http::Uri = "https://api.example/x".parse().unwrap();
    assert!(cache.invalidate_url(&https).await.unwrap());
    let tls = call(&client, Method::GET, "https://api.example/x", &[]).await;
    assert!(
        tls.cache_status().contains("fwd=uri-miss"),
        "{}",
        tls.cache_status()
    );
    let plain = call(&client, Method::GET, "http://api.example/x", &[]).await;
    assert!(
        plain.cache_status().contains("hit"),
        "{}",
        plain.cache_status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_inserted_later_answers_the_next_call() {
    // Delayed caching: the application combines two calls into one answer and stores it
    // under a URL of its own choosing, later; the next call for that URL is a hit.
    let (calls, conditional) = (Counter::new(), Counter::new());
    let origin = TestServer::start(api(&calls, &conditional)).await;
    let cache = ResponseCache::builder(MemoryStore::new()).client().build();
    let client = ServiceBuilder::new()
        .layer(cache.layer())
        .service(upstream());
    let data = get(&client, &format!("http://{}/data", origin.addr)).await;
    let tagged = get(&client, &format!("http://{}/tagged", origin.addr)).await;
    let combined = [data.body, tagged.body].concat();
    let url = format!("http://{}/combined", origin.addr);
    let response = Response::builder()
        .header("cache-control", "max-age=60")
        .body(Bytes::from(combined))
        .unwrap();
    let request = Request::get(&url).body(()).unwrap();
    assert!(cache.insert(request, response).await.unwrap(), "stored");
    let res = get(&client, &url).await;
    assert_eq!(res.body, "datatagged");
    assert!(res.cache_status().contains("hit"), "{}", res.cache_status());
    assert_eq!(calls.get(), 2, "/combined never reached the origin");
    // What may not be stored is refused, not stored: `no-store`.
    let refused = Response::builder()
        .header("cache-control", "no-store")
        .body(Bytes::from_static(b"x"))
        .unwrap();
    let request = Request::get(format!("http://{}/never", origin.addr))
        .body(())
        .unwrap();
    assert!(!cache.insert(request, refused).await.unwrap());
}

/// The user a request is made for, as a backend names its callers: its bearer token, else
/// its `X-User` (a user known by a session, sending no `Authorization`), else nobody.
fn user_of(parts: &http::request::Parts) -> Option<String> {
    let header = |name| parts.headers.get(name)?.to_str().ok().map(str::to_owned);
    header("authorization")
        .and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned))
        .or_else(|| header("x-user"))
}

/// A route answering with its `cache-control` (and `extra` fields) a body that says which
/// fetch it is and who it was made for: `{path} #{n} for={who}`.
fn made_for(
    path: &'static str,
    cache_control: &'static str,
    extra: &'static [(&'static str, &'static str)],
    calls: &Counter,
) -> Router {
    let calls = calls.clone();
    Router::new().route(
        path,
        routing::any(move |headers: HeaderMap| {
            let n = calls.inc();
            async move {
                let who = headers
                    .get("authorization")
                    .or_else(|| headers.get("x-user"))
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("anonymous")
                    .trim_start_matches("Bearer ")
                    .to_owned();
                let mut fields = vec![("cache-control", cache_control)];
                fields.extend_from_slice(extra);
                response(200, &fields, format!("{path} #{n} for={who}"))
            }
        }),
    )
}

/// A client through a response cache on `St`.
type Cached<St> =
    tower_etag::EtagCache<Client<HttpConnector, Full<Bytes>>, ResponseCache<St>, Everything>;

/// A per-user client cache on `store` (users named by [`user_of`]), and the client
/// through it.
fn per_user_client<St: Store>(store: St) -> (ResponseCache<St>, Cached<St>) {
    let cache = ResponseCache::builder(store)
        .client()
        .per_user(user_of)
        .build();
    let client = ServiceBuilder::new()
        .layer(cache.layer())
        .service(upstream());
    (cache, client)
}

/// Who asks in the matrix, and how.
const CALLERS: [(&str, &[(&str, &str)]); 4] = [
    ("alice", &[("authorization", "Bearer alice")]),
    ("bob", &[("authorization", "Bearer bob")]),
    ("carol", &[("x-user", "carol")]),
    ("anonymous", &[]),
];

/// Users × private/public × Authorization, through a per-user client cache on `store`.
async fn per_user_matrix<St: Store + Clone>(store: St) {
    let counters: Vec<Counter> = (0..4).map(|_| Counter::new()).collect();
    let app = made_for("/public", "public, max-age=60", &[], &counters[0])
        .merge(made_for("/plain", "max-age=60", &[], &counters[1]))
        .merge(made_for(
            "/private",
            "private, max-age=60",
            &[],
            &counters[2],
        ))
        .merge(made_for(
            "/cookie",
            "private, max-age=60",
            &[("set-cookie", "s=1")],
            &counters[3],
        ));
    let origin = TestServer::start(app).await;
    let (cache, client) = per_user_client(store);
    let url = |path: &str| format!("http://{}{path}", origin.addr);
    let mut first_round = std::collections::HashMap::new();
    for round in 0..2 {
        for path in ["/public", "/plain", "/private", "/cookie"] {
            for (who, headers) in CALLERS {
                let res = call(&client, Method::GET, &url(path), headers).await;
                let body = String::from_utf8(res.body.to_vec()).unwrap();
                let made_for = body.rsplit("for=").next().unwrap().to_owned();
                // Never another user's: only `public` (the origin allowed a shared cache to
                // keep it for anyone) is; a user known by `X-User` alone (carol) is no less
                // a user than one with credentials.
                let anyones = path == "/public";
                assert!(
                    made_for == who || anyones,
                    "{who} got {body:?} ({})",
                    res.cache_status()
                );
                if round == 0 {
                    first_round.insert((path, who), body);
                    continue;
                }
                let stored = match path {
                    "/public" => true,
                    "/plain" | "/private" => who != "anonymous" || path == "/plain",
                    _ => false,
                };
                let before = &first_round[&(path, who)];
                if stored {
                    assert_eq!(&body, before, "{who} {path}: answered from the cache");
                    assert!(
                        res.cache_status().contains("hit"),
                        "{who} {path}: {}",
                        res.cache_status()
                    );
                } else {
                    assert_ne!(&body, before, "{who} {path}: fetched again");
                }
            }
        }
    }
    // One fetch of /public for everyone; /plain: one per user (their own) and one for the
    // anonymous caller (stored shared); /private: one per user, the anonymous caller twice;
    // /cookie: every call.
    let calls: Vec<usize> = counters.iter().map(Counter::get).collect();
    assert_eq!(calls, [1, 4, 5, 8], "origin calls per path");

    // A purge of alice forgets her entries only.
    assert!(cache.purge_user("alice").await.unwrap());
    let alice = call(&client, Method::GET, &url("/private"), CALLERS[0].1).await;
    assert!(
        alice.cache_status().contains("fwd="),
        "{}",
        alice.cache_status()
    );
    assert!(alice.body.ends_with(b"for=alice"));
    let bob = call(&client, Method::GET, &url("/private"), CALLERS[1].1).await;
    assert!(bob.cache_status().contains("hit"), "{}", bob.cache_status());
    assert!(get(&client, &url("/public"))
        .await
        .cache_status()
        .contains("hit"));
    // An unsafe request reaches every user's entries of its URL.
    call(&client, Method::POST, &url("/private"), CALLERS[1].1).await;
    for (who, headers) in &CALLERS[..3] {
        let res = call(&client, Method::GET, &url("/private"), headers).await;
        assert!(
            !res.cache_status().contains("hit"),
            "{who}: {}",
            res.cache_status()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_entries_never_reach_another_user_on_the_memory_store() {
    per_user_matrix(MemoryStore::new()).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_entries_never_reach_another_user_on_the_redis_store() {
    let Some((server, store)) = redis_store("per_user_on_redis").await else {
        return;
    };
    per_user_matrix(store).await;
    // Users are named in keys by a digest: no token or user name is readable in Redis's
    // keys, nor in the full key each entry keeps.
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("client:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.len() > 10, "{keys:?}");
    for key in keys {
        let full: Option<String> = if key.contains(":e:") {
            redis::cmd("HGET")
                .arg(&key)
                .arg("key")
                .query_async(&mut conn)
                .await
                .unwrap()
        } else {
            None
        };
        for name in ["alice", "bob", "carol"] {
            assert!(!key.contains(name), "{key}");
            assert!(!full.as_deref().unwrap_or("").contains(name), "{full:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_of_two_users_never_share_a_fill() {
    // A slow private answer: alice's calls wait on alice's fetch, bob's on bob's; nobody
    // reads the other's body while it streams into the store.
    let calls = Counter::new();
    let app = Router::new().route(
        "/slow-private",
        routing::get({
            let calls = calls.clone();
            move |headers: HeaderMap| {
                let calls = calls.clone();
                async move {
                    calls.inc();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let who = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("anonymous")
                        .to_owned();
                    response(
                        200,
                        &[("cache-control", "private, max-age=60")],
                        format!("for {who}"),
                    )
                }
            }
        }),
    );
    let origin = TestServer::start(app).await;
    let (_cache, client) = per_user_client(MemoryStore::new());
    let url = format!("http://{}/slow-private", origin.addr);
    let calls_at_once = (0..12).map(|i| {
        let (client, url) = (client.clone(), url.clone());
        let who = ["alice", "bob", ""][i % 3];
        tokio::spawn(async move {
            let bearer = format!("Bearer {who}");
            let headers: Vec<(&str, &str)> = if who.is_empty() {
                vec![]
            } else {
                vec![("authorization", bearer.as_str())]
            };
            let res = call(&client, Method::GET, &url, &headers).await;
            (who, String::from_utf8(res.body.to_vec()).unwrap())
        })
    });
    for call in calls_at_once {
        let (who, body) = call.await.unwrap();
        let expected = if who.is_empty() {
            "for anonymous".to_owned()
        } else {
            format!("for Bearer {who}")
        };
        assert_eq!(body, expected);
    }
    // Alice's four calls made one fetch, so did Bob's; the four anonymous ones are not
    // stored (`private`), so each reached the origin.
    assert_eq!(calls.get(), 1 + 1 + 4, "origin calls");
}

/// An API with poor cache headers: none at all, `max-age=0`, a day.
fn sloppy_api(calls: &Counter) -> Router {
    Router::new()
        .route("/bare", counted(calls, |_, _| response(200, &[], "bare")))
        .route(
            "/zero",
            counted(calls, |_, _| {
                response(200, &[("cache-control", "max-age=0")], "zero")
            }),
        )
        .route(
            "/day",
            counted(calls, |_, _| {
                response(200, &[("cache-control", "max-age=86400")], "day")
            }),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_policies_apply_to_their_host_only_and_say_so() {
    use tower_etag::response_cache::HostPolicy;
    let (a_calls, b_calls) = (Counter::new(), Counter::new());
    let a = TestServer::start(sloppy_api(&a_calls)).await;
    let b = TestServer::start(sloppy_api(&b_calls)).await;
    let cache = ResponseCache::builder(MemoryStore::new())
        .client()
        .host_policy(
            &a.addr.to_string(),
            HostPolicy::new()
                .default_ttl(Duration::from_secs(300))
                .min_ttl(Duration::from_secs(60))
                .max_ttl(Duration::from_secs(600))
                .ignore_request_no_cache(true),
        )
        .build();
    let client = ServiceBuilder::new()
        .layer(cache.layer())
        .service(upstream());
    let on = |server: &TestServer, path: &str| format!("http://{}{path}", server.addr);
    for (path, detail) in [
        ("/bare", "override-default-ttl"),
        ("/zero", "override-min-ttl"),
        ("/day", "override-max-ttl"),
    ] {
        let first = get(&client, &on(&a, path)).await;
        assert!(
            first.cache_status().contains(detail),
            "{path}: {}",
            first.cache_status()
        );
        let again = get(&client, &on(&a, path)).await;
        let status = again.cache_status();
        assert!(status.contains("hit"), "{path}: {status}");
        // A hit says the override that made it one; a maximum only shortens.
        assert_eq!(status.contains(detail), path != "/day", "{path}: {status}");
        if path == "/day" {
            let ttl: u64 = status
                .rsplit("ttl=")
                .next()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(ttl <= 600, "{status}");
        }
        // The same API on another host: its own headers decide.
        for _ in 0..2 {
            let other = get(&client, &on(&b, path)).await;
            assert!(
                !other.cache_status().contains("override"),
                "{path}: {}",
                other.cache_status()
            );
        }
    }
    assert_eq!(
        a_calls.get(),
        3,
        "one fetch per path on the host with overrides"
    );
    // /bare and /zero are fetched each time from b; /day is a hit the second time.
    assert_eq!(b_calls.get(), 5);
    // A client's `no-cache` is ignored on a only, and a fresh entry answers it.
    let no_cache = [("cache-control", "no-cache")];
    let ignored = call(&client, Method::GET, &on(&a, "/day"), &no_cache).await;
    assert!(
        ignored.cache_status().contains("hit"),
        "{}",
        ignored.cache_status()
    );
    assert!(ignored
        .cache_status()
        .contains("detail=override-ignore-no-cache"));
    let honoured = call(&client, Method::GET, &on(&b, "/day"), &no_cache).await;
    assert!(
        !honoured.cache_status().contains("hit"),
        "{}",
        honoured.cache_status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_own_entry_is_revalidated_and_replaced_in_the_users_entries() {
    // `private, max-age=0` with a tag: every call revalidates alice's own entry.
    let version = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let seen_tags = Arc::new(Mutex::new(Vec::<String>::new()));
    let app = Router::new().route(
        "/mine",
        routing::get({
            let (version, seen_tags) = (Arc::clone(&version), Arc::clone(&seen_tags));
            move |headers: HeaderMap| {
                let v = version.load(std::sync::atomic::Ordering::SeqCst);
                let asked = headers
                    .get("if-none-match")
                    .map(|t| t.to_str().unwrap().to_owned());
                seen_tags
                    .lock()
                    .unwrap()
                    .push(asked.clone().unwrap_or_default());
                async move {
                    let tag = format!("\"m{v}\"");
                    let fields = [
                        ("cache-control", "private, max-age=0"),
                        ("etag", tag.as_str()),
                    ];
                    if asked.as_deref() == Some(tag.as_str()) {
                        response(304, &fields, "")
                    } else {
                        response(200, &fields, format!("mine v{v}"))
                    }
                }
            }
        }),
    );
    let origin = TestServer::start(app).await;
    let (_cache, client) = per_user_client(MemoryStore::new());
    let url = format!("http://{}/mine", origin.addr);
    let alice = [("authorization", "Bearer alice")];
    assert_eq!(
        call(&client, Method::GET, &url, &alice).await.body,
        "mine v1"
    );
    let again = call(&client, Method::GET, &url, &alice).await;
    assert_eq!(again.body, "mine v1");
    assert!(
        again.cache_status().contains("fwd-status=304"),
        "{}",
        again.cache_status()
    );
    // The origin changes: alice's revalidation brings a 200, which replaces her entry (a
    // private cache's rules at her own place), so the next call revalidates with its tag.
    version.store(2, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        call(&client, Method::GET, &url, &alice).await.body,
        "mine v2"
    );
    let fourth = call(&client, Method::GET, &url, &alice).await;
    assert_eq!(fourth.body, "mine v2");
    assert!(
        fourth.cache_status().contains("fwd-status=304"),
        "{}",
        fourth.cache_status()
    );
    assert_eq!(
        *seen_tags.lock().unwrap(),
        ["", "\"m1\"", "\"m1\"", "\"m2\""],
        "what the origin was asked with"
    );
    // Bob never sees alice's.
    let bob = call(
        &client,
        Method::GET,
        &url,
        &[("authorization", "Bearer bob")],
    )
    .await;
    assert_eq!(bob.body, "mine v2");
    assert_eq!(
        seen_tags.lock().unwrap().last().unwrap(),
        "",
        "bob's call was his own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_the_same_user_key_secret_share_a_users_entries() {
    let (calls, conditional) = (Counter::new(), Counter::new());
    let origin = TestServer::start(api(&calls, &conditional)).await;
    let store = MemoryStore::new();
    let node = |secret: [u8; 32]| {
        let cache = ResponseCache::builder(store.clone())
            .client()
            .per_user(user_of)
            .user_key_secret(secret)
            .build();
        let client = ServiceBuilder::new()
            .layer(cache.layer())
            .service(upstream());
        (cache, client)
    };
    let ((a, a_client), (_b, b_client), (_c, c_client)) =
        (node([1; 32]), node([1; 32]), node([2; 32]));
    let url = format!("http://{}/private", origin.addr);
    let alice = [("authorization", "Bearer alice")];
    call(&a_client, Method::GET, &url, &alice).await;
    let on_b = call(&b_client, Method::GET, &url, &alice).await;
    assert!(
        on_b.cache_status().contains("hit"),
        "{}",
        on_b.cache_status()
    );
    let on_c = call(&c_client, Method::GET, &url, &alice).await;
    assert!(
        !on_c.cache_status().contains("hit"),
        "another secret: {}",
        on_c.cache_status()
    );
    // A purge through a reaches b (the same id), not what c stored under its own.
    assert!(a.purge_user("alice").await.unwrap());
    let after = call(&b_client, Method::GET, &url, &alice).await;
    assert!(
        !after.cache_status().contains("hit"),
        "{}",
        after.cache_status()
    );
    assert!(call(&c_client, Method::GET, &url, &alice)
        .await
        .cache_status()
        .contains("hit"));
}

/// Issue 18: `insert` for a user of a per-user cache files the response where a fill would:
/// what only the user may have (`private`, a plain `max-age` to a user's request) and
/// anything with `Set-Cookie` never answers another user or an anonymous request; a
/// `public` response without `Set-Cookie` is still shared.
async fn inserted_for_a_user_answers_as_a_fill_would<St: Store + Clone>(store: St) {
    // The origin's own answers are never stored, so each call that reaches it says so.
    let calls = Counter::new();
    let origin = TestServer::start(made_for("/x", "no-store", &[], &calls)).await;
    let (cache, client) = per_user_client(store);
    let alice = CALLERS[0].1;
    // The response's `Cache-Control`, its other fields, and whether it answers everyone.
    type Inserted = (&'static str, &'static [(&'static str, &'static str)], bool);
    let cases: [Inserted; 4] = [
        ("private, max-age=60", &[], false),
        ("max-age=60", &[], false),
        (
            "public, max-age=60",
            &[("set-cookie", "session=alice")],
            false,
        ),
        ("public, max-age=60", &[], true),
    ];
    for (i, (cache_control, extra, shared)) in cases.into_iter().enumerate() {
        let url = format!("http://{}/x?case={i}", origin.addr);
        let mut response = Response::builder().header("cache-control", cache_control);
        for (name, value) in extra {
            response = response.header(*name, *value);
        }
        let response = response.body(Bytes::from("inserted for=alice")).unwrap();
        let mut request = Request::get(&url);
        for (name, value) in alice {
            request = request.header(*name, *value);
        }
        let stored = cache
            .insert(request.body(()).unwrap(), response)
            .await
            .unwrap();
        assert_eq!(
            stored,
            extra.is_empty(),
            "{cache_control} {extra:?}: stored"
        );
        for (who, headers) in CALLERS {
            let res = call(&client, Method::GET, &url, headers).await;
            let body = String::from_utf8(res.body.to_vec()).unwrap();
            let from_insert = body == "inserted for=alice";
            let expected = stored && (who == "alice" || shared);
            assert_eq!(
                from_insert,
                expected,
                "{cache_control} {extra:?}: {who} got {body:?} ({})",
                res.cache_status()
            );
            if !from_insert {
                assert!(body.ends_with(&format!("for={who}")), "{who}: {body:?}");
            }
        }
    }
}

on_memory_and_redis!(
    an_insert_for_a_user_never_answers_another_user,
    inserted_for_a_user_answers_as_a_fill_would
);
