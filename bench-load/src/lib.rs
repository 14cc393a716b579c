//! Shared pieces of the loopback load, memory and coalescing harness (`bench-load/run.sh`).
//!
//! - [`origin_router`]: the bare axum origin every target is measured against.
//! - [`GenBody`]: a generated body of any length that holds one 64 KiB chunk, whatever the
//!   length.
//! - [`serve`], [`Args`], [`rss`]: small helpers for the binaries.

/// The caching proxy, as `tower-etag-proxy` runs it.
pub use tower_etag::proxy as app;

use axum::{
    body::Body,
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

/// The 1 KiB body (`text/plain`) of `/etag`, `/cached` and `/slow/{key}`.
pub static BODY_1K: [u8; 1024] = {
    let mut b = [0u8; 1024];
    let mut i = 0;
    while i < 1024 {
        b[i] = b"0123456789abcdefghijklmnopqrstuvwxyz"[i % 36];
        i += 1;
    }
    b
};

/// The fixed entity tag of `/cached` (so nginx and Varnish can answer `If-None-Match` too).
pub const CACHED_ETAG: &str = "\"cached-v1\"";

/// One GiB.
pub const GIB: u64 = 1 << 30;

/// What the origin counts: calls of `/slow/{key}` per key.
#[derive(Clone, Debug)]
pub struct Origin {
    slow_delay: Duration,
    slow_calls: Arc<Mutex<HashMap<String, u64>>>,
}

impl Origin {
    /// An origin whose `/slow/{key}` takes `slow_delay`.
    pub fn new(slow_delay: Duration) -> Self {
        Self {
            slow_delay,
            slow_calls: Arc::default(),
        }
    }

    /// How many times `/slow/{key}` was called.
    pub fn slow_calls(&self, key: &str) -> u64 {
        let calls = self.slow_calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.get(key).copied().unwrap_or(0)
    }
}

/// The bare origin:
///
/// - `GET /etag`: 1 KiB, no caching headers (the ETag layer hashes it on every request).
/// - `GET /cached`: 1 KiB, `Cache-Control: public, max-age=3600`, `ETag: "cached-v1"`.
/// - `GET /big?len=N&known=1`: N bytes (default 1 GiB) generated 64 KiB at a time,
///   `Cache-Control: public, max-age=3600`; with `known=1` the length is announced
///   (Content-Length), else the body is chunked.
/// - `GET /slow/{key}`: 1 KiB after `slow_delay`, cacheable for an hour, counted per key.
/// - `GET /stats/{key}`: how many times `/slow/{key}` was called, as a decimal number.
pub fn origin_router(origin: Origin) -> Router {
    Router::new()
        .route("/etag", get(etag))
        .route("/cached", get(cached))
        .route("/big", get(big))
        .route("/slow/{key}", get(slow))
        .route("/stats/{key}", get(stats))
        .with_state(origin)
}

async fn etag() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain")],
        Bytes::from_static(&BODY_1K),
    )
        .into_response()
}

async fn cached() -> Response {
    (
        [
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::ETAG, CACHED_ETAG),
            (header::CONTENT_TYPE, "text/plain"),
        ],
        Bytes::from_static(&BODY_1K),
    )
        .into_response()
}

async fn big(Query(q): Query<HashMap<String, String>>) -> Response {
    let len = q.get("len").and_then(|l| l.parse().ok()).unwrap_or(GIB);
    let known = q.get("known").is_some_and(|k| k == "1");
    (
        [
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::CONTENT_TYPE, "application/octet-stream"),
        ],
        Body::new(GenBody::new(len, known)),
    )
        .into_response()
}

async fn slow(State(origin): State<Origin>, Path(key): Path<String>) -> Response {
    *origin
        .slow_calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key)
        .or_default() += 1;
    tokio::time::sleep(origin.slow_delay).await;
    (
        [
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::CONTENT_TYPE, "text/plain"),
        ],
        Bytes::from_static(&BODY_1K),
    )
        .into_response()
}

async fn stats(State(origin): State<Origin>, Path(key): Path<String>) -> String {
    format!("{}\n", origin.slow_calls(&key))
}

/// A body of `len` bytes made 64 KiB at a time, each chunk a fresh allocation that is freed
/// once the consumer drops it: the body holds no more memory however long it is. With
/// `known`, its size hint is exact (a `Content-Length` goes out).
#[derive(Debug)]
pub struct GenBody {
    remaining: u64,
    known: bool,
    chunk: Bytes,
}

impl GenBody {
    /// The body.
    pub fn new(len: u64, known: bool) -> Self {
        Self {
            remaining: len,
            known,
            chunk: Bytes::from(vec![b'z'; 64 * 1024]),
        }
    }
}

impl http_body::Body for GenBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64);
        self.remaining -= n;
        // A fresh allocation per chunk, as a body read from a socket has: a layer that kept
        // chunks would hold real memory.
        Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(
            &self.chunk[..n as usize],
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.known && self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.known {
            SizeHint::with_exact(self.remaining)
        } else {
            SizeHint::default()
        }
    }
}

/// Serves `app` on `addr` (which must be on 127.0.0.1), or exits with a clear message when
/// the port is taken.
pub async fn serve(addr: SocketAddr, app: Router) {
    let listener = bind(addr).await;
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// A listener on `addr` (which must be on 127.0.0.1), or exits with a clear message when
/// the port is taken.
pub async fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    if !addr.ip().is_loopback() {
        eprintln!("error: {addr}: this harness only listens on loopback addresses");
        std::process::exit(2);
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| {
            eprintln!("error: cannot listen on {addr}: {e} (port taken? pick another)");
            std::process::exit(1);
        })
}

/// `--name value` command-line flags.
#[derive(Debug)]
pub struct Args(HashMap<String, String>);

impl Args {
    /// The flags of this process; `--flag` alone means `--flag 1`.
    pub fn parse() -> Self {
        let mut map = HashMap::new();
        let mut it = std::env::args().skip(1).peekable();
        while let Some(flag) = it.next() {
            let Some(name) = flag.strip_prefix("--") else {
                eprintln!("error: unexpected argument {flag}");
                std::process::exit(2);
            };
            let value = match it.peek() {
                Some(v) if !v.starts_with("--") => it.next().unwrap_or_default(),
                _ => "1".to_owned(),
            };
            map.insert(name.to_owned(), value);
        }
        Self(map)
    }

    /// The value of `--name`, parsed, or `default`.
    pub fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> T
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|e| {
                eprintln!("error: --{name} {v}: {e}");
                std::process::exit(2);
            }),
        }
    }

    /// The value of `--name` as a string, if given.
    pub fn opt(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value of `--name`, which must be given.
    pub fn required<T: std::str::FromStr>(&self, name: &str) -> T
    where
        T::Err: std::fmt::Display,
    {
        let Some(v) = self.0.get(name) else {
            eprintln!("error: --{name} is required");
            std::process::exit(2);
        };
        v.parse().unwrap_or_else(|e| {
            eprintln!("error: --{name} {v}: {e}");
            std::process::exit(2);
        })
    }
}

/// `VmRSS` and `VmHWM` (peak) of this process in KiB, from `/proc/self/status`.
pub fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
