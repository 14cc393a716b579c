//! `RedisStore` on a real `redis-server` started on a free loopback port: the store contract,
//! its key layout (a TTL on every key, `clear` within its prefix), a fleet of two proxies on
//! one Redis, and Redis killed under load.
#![cfg(feature = "redis")]

use crate::{app, common, contract, proxy_setup, redis_server};
use app::{caching_proxy, proxy_cache, CacheFlags, ProxyConfig};
use axum::{http::StatusCode, Router};
use common::{counted, response, Counter, TestServer};
use contract::{key, put, read_all, HOUR};
use proxy_setup::{status_of, stored, stored_now};
use redis_server::RedisServer;
use std::time::{Duration, Instant};
use tower_etag::store::{Expect, Layered, MemoryStore, RedisStore, Store};

/// A store on `server`, with a deadline a loaded debug build keeps.
async fn store(server: &RedisServer, prefix: &str) -> RedisStore {
    RedisStore::builder()
        .prefix(prefix)
        .deadline(Duration::from_secs(2))
        .max_entry_bytes(1 << 30)
        .connect(&server.url())
        .await
        .unwrap()
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Every key on the server.
async fn all_keys(server: &RedisServer) -> Vec<String> {
    let mut conn = raw(server).await;
    redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_keeps_the_contract() {
    let Some(server) = RedisServer::start_or_skip("the_redis_store_keeps_the_contract") else {
        return;
    };
    contract::run(&store(&server, "contract").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_has_a_ttl_and_clear_stays_in_its_prefix() {
    let Some(server) = RedisServer::start_or_skip("every_key_has_a_ttl") else {
        return;
    };
    let ours = store(&server, "ours").await;
    let theirs = store(&server, "theirs").await;
    // A prefix that begins with ours is another cache's all the same.
    let longer = store(&server, "ours:v2").await;
    put(&longer, &key("kept"), "k", b"kept", 1, HOUR, Expect::Any)
        .await
        .unwrap();
    let big: Vec<u8> = (0..400_000u32).map(|i| (i % 13) as u8).collect();
    put(&ours, &key("big"), "b", &big, 50_000, HOUR, Expect::Any)
        .await
        .unwrap();
    put(&ours, &key("small"), "s", b"s", 1, HOUR, Expect::Any)
        .await
        .unwrap();
    assert!(ours
        .update_meta(&key("rec"), Expect::Absent, contract::meta("r"), HOUR)
        .await
        .unwrap());
    put(&theirs, &key("big"), "t", b"theirs", 2, HOUR, Expect::Any)
        .await
        .unwrap();
    // A replaced body's chunks stay a little for readers, then go.
    put(
        &ours,
        &key("big"),
        "b2",
        &big[..300_000],
        50_000,
        HOUR,
        Expect::Any,
    )
    .await
    .unwrap();
    let mut conn = raw(&server).await;
    let keys = all_keys(&server).await;
    assert!(keys.len() >= 8, "{keys:?}");
    for k in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "{k} has no TTL ({ttl})");
        assert!(
            k.starts_with("ours:{") || k.starts_with("theirs:{") || k.starts_with("ours:v2:{"),
            "{k}"
        );
    }
    // One URL, one hash tag: every key of a URL is in one Redis Cluster slot.
    let tags: std::collections::HashSet<&str> = keys
        .iter()
        .filter(|k| k.starts_with("ours:{"))
        .map(|k| &k[k.find('{').unwrap()..=k.find('}').unwrap()])
        .collect();
    assert_eq!(tags.len(), 1, "{tags:?}");
    ours.clear().await.unwrap();
    let left = all_keys(&server).await;
    assert!(
        left.iter()
            .all(|k| k.starts_with("theirs:") || k.starts_with("ours:v2:")),
        "{left:?}"
    );
    assert!(
        longer.get(&key("kept")).await.unwrap().is_some(),
        "ours:v2 is not ours"
    );
    assert!(!left.is_empty(), "the other cache's keys are kept");
    let theirs_entry = theirs.get(&key("big")).await.unwrap().unwrap();
    assert_eq!(read_all(&theirs_entry.body).await.unwrap(), b"theirs");
}

/// An origin whose `/p` is public for an hour, counting calls.
fn origin(calls: &Counter) -> Router {
    Router::new()
        .route(
            "/p",
            counted(calls, |_, _| {
                response(200, &[("cache-control", "max-age=3600")], "public page")
            }),
        )
        .route(
            "/big",
            counted(calls, |_, _| {
                let body = common::pattern(600_000);
                response(200, &[("cache-control", "max-age=3600")], body)
            }),
        )
}

/// A proxy in front of `origin` on `store`.
async fn proxy(origin: &TestServer, store: RedisStore) -> TestServer {
    let config = ProxyConfig {
        upstream: format!("http://{}", origin.addr).parse().unwrap(),
        preserve_host: false,
        trust_forwarded: false,
    };
    let cache = proxy_cache(store, &CacheFlags::default());
    TestServer::spawn(|listener| {
        crate::app::serve(listener, caching_proxy(&config, &cache).unwrap())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_on_one_redis_share_entries_and_invalidations() {
    let Some(server) = RedisServer::start_or_skip("two_proxies_on_one_redis") else {
        return;
    };
    let calls = Counter::new();
    let origin_server = TestServer::start(origin(&calls)).await;
    let a = proxy(&origin_server, store(&server, "fleet").await).await;
    let b = proxy(&origin_server, store(&server, "fleet").await).await;
    // Both proxies are reached under one name, as behind a load balancer.
    let host = [("host", "site.example")];
    assert_eq!(a.get("/p", &host).await.text(), "public page");
    let big = a.get("/big", &host).await.body;
    let seen = stored(&b, "/p", &host).await && stored(&b, "/big", &host).await;
    assert!(seen, "stored through a, never seen by b");
    let hit = b.get("/p", &host).await;
    assert!(status_of(&hit).contains("hit"), "{}", status_of(&hit));
    assert!(
        b.get("/big", &host).await.body == big,
        "the streamed body, whole"
    );
    assert_eq!(calls.get(), 2, "b answered from what a stored");
    // An unsafe request through b invalidates the URL for a too, at once.
    let post = b.request(axum::http::Method::POST, "/p", &host).await;
    assert_eq!(post.status, StatusCode::OK);
    let after = a.get("/p", &host).await;
    assert!(status_of(&after).contains("miss"), "{}", status_of(&after));
    assert_eq!(
        calls.get(),
        4,
        "the POST and a's refetch reached the origin"
    );
}

/// The scripted calls (`EVALSHA`, `EVAL`) `server` has answered so far.
async fn scripted_calls(server: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut raw(server).await)
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split(&[':', '=', ','][..]).nth(2)?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_on_a_url_seen_before_is_one_call_to_redis() {
    let Some(server) = RedisServer::start_or_skip("a_hit_is_one_call_to_redis") else {
        return;
    };
    let calls = Counter::new();
    let origin_server = TestServer::start(origin(&calls)).await;
    let node = proxy(&origin_server, store(&server, "calls").await).await;
    let host = [("host", "site.example")];
    assert_eq!(node.get("/p", &host).await.text(), "public page");
    // Stored, and looked up since: the node knows which entry the URL's record names.
    assert!(stored(&node, "/p", &host).await, "the miss was stored");
    // Once more: the first run of a script on a server is two calls (`NOSCRIPT`, then
    // loaded), and the probes above may or may not have run the one a hit uses.
    assert!(status_of(&node.get("/p", &host).await).contains("hit"));
    for _ in 0..3 {
        let before = scripted_calls(&server).await;
        let hit = node.get("/p", &host).await;
        let after = scripted_calls(&server).await;
        assert!(status_of(&hit).contains("hit"), "{}", status_of(&hit));
        assert_eq!(hit.text(), "public page");
        assert_eq!(
            after - before,
            1,
            "the URL's record and its entry are read in one script ({})",
            status_of(&hit)
        );
    }
    assert_eq!(calls.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_load_fails_open_and_the_cache_resumes() {
    let Some(mut server) = RedisServer::start_or_skip("redis_killed_under_load") else {
        return;
    };
    let calls = Counter::new();
    let origin_server = TestServer::start(origin(&calls)).await;
    let deadline = Duration::from_millis(100);
    let store = RedisStore::builder()
        .prefix("kill")
        .deadline(deadline)
        .breaker_cooldown(Duration::from_millis(300))
        .connect(&server.url())
        .await
        .unwrap();
    let proxy = proxy(&origin_server, store.clone()).await;
    let host = [("host", "site.example")];
    assert_eq!(proxy.get("/p", &host).await.text(), "public page");
    server.kill();
    // 200 requests while Redis is gone: every one answered with the page, none waiting long.
    let started = Instant::now();
    let requests = (0..200).map(|i| {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let path = if i % 2 == 0 { "/p" } else { "/big" };
            let t = Instant::now();
            let res = proxy.get(path, &[("host", "site.example")]).await;
            (
                path,
                res.status,
                res.body.len(),
                t.elapsed(),
                status_of(&res),
            )
        })
    });
    let mut slowest = Duration::ZERO;
    for r in requests {
        let (path, status, len, took, cache_status) = r.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{path}: {cache_status}");
        assert_eq!(
            len,
            if path == "/p" { 11 } else { 600_000 },
            "{path}: the whole body"
        );
        slowest = slowest.max(took);
    }
    // Each request waits at most a few deadlines for Redis (a lookup, an index read, a
    // write), and once the breaker is open not at all.
    assert!(
        slowest < Duration::from_secs(3),
        "slowest request took {slowest:?}"
    );
    eprintln!(
        "200 requests with Redis down in {:?}, slowest {slowest:?}",
        started.elapsed()
    );
    let status = proxy.get("/p", &host).await;
    assert!(
        status_of(&status).contains("store-error") || store.is_stepping_aside(),
        "{}",
        status_of(&status)
    );
    // Back up: the store reconnects by itself and the cache stores again.
    server.restart();
    let resumed = common::eventually(|| async {
        proxy.get("/p", &host).await;
        stored_now(&proxy, "/p", &host).await
    })
    .await;
    assert!(resumed, "the cache never used Redis again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_while_redis_is_down_serves_and_connects_when_it_is_up() {
    let Some(mut server) = RedisServer::start_or_skip("a_node_started_while_redis_is_down") else {
        return;
    };
    server.kill();
    // `connect` says Redis is not there; `connect_in_background` starts anyway.
    let strict = RedisStore::builder()
        .connect_timeout(Duration::from_millis(300))
        .connect(&server.url())
        .await;
    assert!(strict.is_err(), "connected to nothing");
    let store = RedisStore::builder()
        .prefix("late")
        .connect_timeout(Duration::from_millis(300))
        .connect_in_background(&server.url())
        .unwrap();
    let calls = Counter::new();
    let origin_server = TestServer::start(origin(&calls)).await;
    let proxy = proxy(&origin_server, store.clone()).await;
    let host = [("host", "site.example")];
    for _ in 0..3 {
        let res = proxy.get("/p", &host).await;
        assert_eq!(res.text(), "public page");
        assert!(status_of(&res).contains("fwd="), "{}", status_of(&res));
    }
    assert_eq!(calls.get(), 3, "nothing stored without Redis");
    // Redis comes up: the store connects by itself and the cache stores through it.
    server.restart();
    let connected = common::eventually(|| async {
        proxy.get("/p", &host).await;
        stored_now(&proxy, "/p", &host).await
    })
    .await;
    assert!(connected, "the store never connected");
    assert!(
        all_keys(&server)
            .await
            .iter()
            .any(|k| k.starts_with("late:")),
        "the entry is in Redis: {:?}",
        all_keys(&server).await
    );
}

/// A node of a fleet: a memory L1 over the shared Redis, hearing the others on the bus.
async fn node(server: &RedisServer) -> Layered<MemoryStore, RedisStore> {
    let l2 = store(server, "l1fleet").await;
    let bus = l2.bus();
    Layered::builder(MemoryStore::new(), l2).bus(bus).build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_nodes_l1_drops_what_another_node_invalidated_or_purged() {
    let Some(server) = RedisServer::start_or_skip("each_nodes_l1_drops") else {
        return;
    };
    let calls = Counter::new();
    let origin_server = TestServer::start(origin(&calls)).await;
    let config = ProxyConfig {
        upstream: format!("http://{}", origin_server.addr).parse().unwrap(),
        preserve_host: false,
        trust_forwarded: false,
    };
    let cache_a = proxy_cache(node(&server).await, &CacheFlags::default());
    let cache_b = proxy_cache(node(&server).await, &CacheFlags::default());
    let a = TestServer::spawn(|listener| {
        crate::app::serve(listener, caching_proxy(&config, &cache_a).unwrap())
    })
    .await;
    let b = TestServer::spawn(|listener| {
        crate::app::serve(listener, caching_proxy(&config, &cache_b).unwrap())
    })
    .await;
    let host = [("host", "site.example")];
    let probe = [
        ("host", "site.example"),
        ("cache-control", "only-if-cached"),
    ];
    a.get("/p", &host).await;
    assert!(stored(&b, "/p", &host).await);
    // b's first hit came from Redis and was copied into its L1; the next is from its L1.
    let from_l1 =
        common::eventually(|| async { status_of(&b.get("/p", &host).await).contains("detail=l1") })
            .await;
    assert!(from_l1, "b never answered from its L1");
    assert_eq!(calls.get(), 1);

    // a invalidates the URL: b's L1 must stop serving it, without waiting for its TTL.
    let started = Instant::now();
    a.request(axum::http::Method::POST, "/p", &host).await;
    let dropped = common::eventually(|| async {
        b.get("/p", &probe).await.status == StatusCode::GATEWAY_TIMEOUT
    })
    .await;
    assert!(dropped, "b's L1 kept serving what a invalidated");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
    eprintln!("invalidation through a reached b's L1 in {took:?}");

    // Refill through b, then a purge through a empties b's L1 too.
    b.get("/p", &host).await;
    assert!(
        common::eventually(|| async { status_of(&b.get("/p", &host).await).contains("detail=l1") })
            .await
    );
    cache_a.purge().await.unwrap();
    let purged = common::eventually(|| async {
        b.get("/p", &probe).await.status == StatusCode::GATEWAY_TIMEOUT
    })
    .await;
    assert!(purged, "b's L1 kept serving after a purge through a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_fails_fails_its_own_keys_only() {
    let Some(mut server) = RedisServer::start_or_skip("a_partition_that_fails") else {
        return;
    };
    let redis = RedisStore::builder()
        .prefix("part")
        .deadline(Duration::from_millis(200))
        .connect(&server.url())
        .await
        .unwrap();
    let store = tower_etag::store::Partitioned::new([
        (
            "memory",
            tower_etag::store::AnyStore::new(MemoryStore::new()),
        ),
        ("redis", tower_etag::store::AnyStore::new(redis)),
    ])
    .unwrap();
    // One URL of each partition (the cache keys a URL by its authority, path and query).
    let path_in = |wanted: &str| {
        (0..100)
            .map(|i| format!("/p?{i}"))
            .find(|p| store.partition_name(&format!("site.example{p}")) == wanted)
            .unwrap()
    };
    let (on_memory, on_redis) = (path_in("memory"), path_in("redis"));
    let calls = Counter::new();
    let origin_server = TestServer::start(origin(&calls)).await;
    let config = ProxyConfig {
        upstream: format!("http://{}", origin_server.addr).parse().unwrap(),
        preserve_host: false,
        trust_forwarded: false,
    };
    let cache = proxy_cache(store, &CacheFlags::default());
    let proxy = TestServer::spawn(|listener| {
        crate::app::serve(listener, caching_proxy(&config, &cache).unwrap())
    })
    .await;
    let host = [("host", "site.example")];
    for path in [&on_memory, &on_redis] {
        proxy.get(path, &host).await;
        assert!(stored(&proxy, path, &host).await, "{path}");
    }
    server.kill();
    // The memory partition's URL is still a hit; the Redis one's is served without a store.
    let hit = proxy.get(&on_memory, &host).await;
    assert!(status_of(&hit).contains("hit"), "{}", status_of(&hit));
    let failed_open = proxy.get(&on_redis, &host).await;
    assert_eq!(failed_open.text(), "public page");
    assert!(
        status_of(&failed_open).contains("store-error"),
        "{}",
        status_of(&failed_open)
    );
    assert_eq!(
        calls.get(),
        3,
        "only the failed partition's URL went to the origin again"
    );
}
