//! Two nodes of a fleet and their Redis, each on a host of its own (network namespaces made
//! by the test): the `tower-etag-proxy` binary on two hosts, `redis-server` on a third, the
//! origin in this process, all across a bridge. One node serves a hit of what the other
//! stored, and an invalidation through one reaches the other's memory L1 over the bus;
//! both are timed. Needs root and iproute2 (skipped, loudly, elsewhere) and redis-server.

use crate::{
    common::{self, counted, response, Counter, TestServer},
    netns::{wait_listening, Hosts},
    proxy_setup::status_of,
    redis_server::RedisServer,
};
use axum::{http::StatusCode, Router};
use std::{net::SocketAddr, time::Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_hits_and_invalidations_across_a_network() {
    const TEST: &str = "two_nodes_share_hits_and_invalidations_across_a_network";
    if !RedisServer::installed_or_skip(TEST) {
        return;
    }
    let Some(mut hosts) = Hosts::make_or_skip(TEST, 3) else {
        return;
    };
    let (node_a, node_b, redis) = (hosts.addr(0), hosts.addr(1), hosts.addr(2));

    let redis_ip = redis.to_string();
    hosts.spawn(
        2,
        "redis-server",
        &[
            "--bind",
            &redis_ip,
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ],
    );
    wait_listening(SocketAddr::from((redis, 6379)));

    // The origin, in this process, on the hosts' network.
    let calls = Counter::new();
    let app = Router::new().route(
        "/p",
        counted(&calls, |_, _| {
            response(200, &[("cache-control", "max-age=3600")], "page")
        }),
    );
    let listener = tokio::net::TcpListener::bind((hosts.gateway(), 0))
        .await
        .unwrap();
    let origin = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let proxy = env!("CARGO_BIN_EXE_tower-etag-proxy");
    let (upstream, store) = (format!("http://{origin}"), format!("redis://{redis}:6379"));
    let mut nodes = Vec::new();
    for (i, addr) in [(0, node_a), (1, node_b)] {
        let listen = SocketAddr::from((addr, 8080));
        let listen_arg = listen.to_string();
        hosts.spawn(
            i,
            proxy,
            &[
                "--upstream",
                &upstream,
                "--listen",
                &listen_arg,
                "--store",
                &store,
                "--l1-bytes",
                "1048576",
            ],
        );
        wait_listening(listen);
        nodes.push(TestServer::client_for(listen));
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    let host = [("host", "site.example")];
    let probe = [
        ("host", "site.example"),
        ("cache-control", "only-if-cached"),
    ];

    assert_eq!(a.get("/p", &host).await.text(), "page");
    // Stored after the response went out, in Redis before a's L1: once a has it, so does
    // Redis, and b's first request is a hit from there, across the network.
    let stored =
        common::eventually(|| async { a.get("/p", &probe).await.status == StatusCode::OK }).await;
    assert!(stored, "a never stored its entry");
    let started = Instant::now();
    let hit = b.get("/p", &host).await;
    let took = started.elapsed();
    assert_eq!(hit.text(), "page");
    assert!(status_of(&hit).contains("hit"), "{}", status_of(&hit));
    assert!(
        !status_of(&hit).contains("detail=l1"),
        "from Redis: {}",
        status_of(&hit)
    );
    assert_eq!(calls.get(), 1, "one origin call for both nodes");
    eprintln!("a hit on b, from Redis, of what a stored: {took:?}");
    // b's L1 has it now.
    let from_l1 =
        common::eventually(|| async { status_of(&b.get("/p", &host).await).contains("detail=l1") })
            .await;
    assert!(from_l1, "b never answered from its L1");

    // An invalidation through a: b's L1 stops serving the URL, told over the bus.
    let started = Instant::now();
    a.request(axum::http::Method::POST, "/p", &host).await;
    let dropped = common::eventually(|| async {
        b.get("/p", &probe).await.status == StatusCode::GATEWAY_TIMEOUT
    })
    .await;
    assert!(dropped, "b kept serving what a invalidated");
    eprintln!("a's invalidation reached b's L1 in {:?}", started.elapsed());
}
