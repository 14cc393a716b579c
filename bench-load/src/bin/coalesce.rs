//! Request coalescing: many concurrent requests for one cold key, and the number of calls
//! that reach the origin.
//!
//! `coalesce [--requests 1000] [--delay-ms 200] [--label ours]` runs it self-contained: an
//! origin whose `/slow/{key}` takes `delay-ms` and counts its calls, and our caching proxy
//! (`tower_etag::proxy`) in front of it, both on 127.0.0.1 ports of their own.
//!
//! `coalesce --url http://127.0.0.1:P/slow/KEY --stats http://127.0.0.1:O/stats/KEY` fires
//! at another cache (nginx, Varnish, ...) in front of a running `origin` and reads the
//! origin's count for KEY afterwards (use a fresh KEY per run: the key must be cold).
//!
//! Each request has its own HTTP/1.1 connection (one hyper client connection per task, all
//! opened before the first request is sent), so they really are concurrent. Prints one
//! `key=value` line with the origin call count, the status codes and the cache's verdicts.

use bench_load::{
    app::{caching_proxy, ProxyConfig},
    origin_router, Args, Origin,
};
use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::net::{TcpListener, TcpStream};
use tower_etag::{response_cache::ResponseCache, store::MemoryStore};

async fn local(app: axum::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn get_text(uri: &Uri) -> String {
    let addr = format!(
        "{}:{}",
        uri.host().unwrap_or("127.0.0.1"),
        uri.port_u16().unwrap_or(80)
    );
    let stream = TcpStream::connect(&addr).await.expect("connect for stats");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let request = Request::get(uri.path())
        .header("host", addr)
        .body(Empty::<Bytes>::new())
        .expect("valid request");
    let response = sender.send_request(request).await.expect("stats request");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&body).trim().to_owned()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let n: usize = args.get("requests", 1000);
    let delay = Duration::from_millis(args.get("delay-ms", 200));
    let label: String = args.get("label", "ours".to_owned());
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());

    // Where to send the requests, and how to count the origin's calls afterwards.
    let mut own_origin = None;
    let (target, stats): (Uri, Option<Uri>) = match args.opt("url") {
        Some(url) => (
            url.parse().expect("--url: a URI"),
            Some(args.required("stats")),
        ),
        None => {
            let origin = Origin::new(delay);
            let origin_addr = local(origin_router(origin.clone())).await;
            let config = ProxyConfig {
                upstream: format!("http://{origin_addr}").parse().expect("valid URI"),
                preserve_host: false,
                trust_forwarded: false,
            };
            let cache = ResponseCache::new(MemoryStore::new());
            let proxy_addr = local(
                axum::Router::new()
                    .fallback_service(caching_proxy(&config, &cache).expect("proxy")),
            )
            .await;
            let key = format!("cold-{nonce}");
            own_origin = Some((origin, key.clone()));
            let url = format!("http://{proxy_addr}/slow/{key}");
            (url.parse().expect("valid URI"), None)
        }
    };
    let addr = format!(
        "{}:{}",
        target.host().unwrap_or("127.0.0.1"),
        target.port_u16().unwrap_or(80)
    );

    // Open every connection first.
    let mut senders = Vec::with_capacity(n);
    for _ in 0..n {
        let stream = TcpStream::connect(&addr).await.unwrap_or_else(|e| {
            eprintln!("error: connect {addr}: {e} (raise `ulimit -n`?)");
            std::process::exit(1);
        });
        stream.set_nodelay(true).ok();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        senders.push(sender);
    }

    // Then send all requests at once.
    let started = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            let request = Request::get(target.path())
                .header("host", addr.clone())
                .body(Empty::<Bytes>::new())
                .expect("valid request");
            tokio::spawn(async move {
                let sent = Instant::now();
                let response = sender.send_request(request).await?;
                let status = response.status().as_u16();
                let verdict = ["cache-status", "x-cache", "x-cache-status"]
                    .iter()
                    .find_map(|h| response.headers().get(*h))
                    .and_then(|v| v.to_str().ok())
                    .map_or_else(|| "-".to_owned(), str::to_owned);
                let len = response.into_body().collect().await?.to_bytes().len();
                Ok::<_, hyper::Error>((status, verdict, len, sent.elapsed()))
            })
        })
        .collect();
    let mut statuses = BTreeMap::<u16, usize>::new();
    let mut verdicts = BTreeMap::<String, usize>::new();
    let mut latencies = Vec::with_capacity(n);
    let mut errors = 0usize;
    let mut short_bodies = 0usize;
    for task in tasks {
        match task.await {
            Ok(Ok((status, verdict, len, latency))) => {
                *statuses.entry(status).or_default() += 1;
                // Keep the verdict's words, not its ttl/age numbers.
                let verdict: Vec<&str> = verdict
                    .split(';')
                    .map(str::trim)
                    .filter(|p| !p.starts_with("ttl=") && !p.starts_with("age="))
                    .collect();
                *verdicts.entry(verdict.join(";")).or_default() += 1;
                if len != 1024 {
                    short_bodies += 1;
                }
                latencies.push(latency);
            }
            _ => errors += 1,
        }
    }
    let wall = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let origin_calls: String = match (&own_origin, &stats) {
        (Some((origin, key)), _) => origin.slow_calls(key).to_string(),
        (None, Some(stats)) => get_text(stats).await,
        (None, None) => unreachable!("either our own origin or --stats"),
    };
    let fmt_map = |m: &BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, v)| format!("{v}x[{k}]"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let statuses: BTreeMap<String, usize> = statuses
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    println!(
        "label={label} requests={n} origin_calls={origin_calls} errors={errors} \
         wrong_length={short_bodies} statuses={} verdicts={} wall_ms={:.0} p50_ms={:.0} \
         max_ms={:.0}",
        fmt_map(&statuses),
        fmt_map(&verdicts).replace(' ', "_"),
        wall.as_secs_f64() * 1000.0,
        pct(0.5),
        pct(1.0),
    );
}
