//! Shared helpers for the end-to-end tests: a real axum server on 127.0.0.1 (ephemeral port),
//! a real HTTP client (hyper-util's legacy client, or a raw `TcpStream` where the bytes on the
//! wire matter), call counters for handlers, and the expected ETag of a body.
//!
//! Every network operation is bounded by a timeout so that a hanging test fails instead of
//! blocking the suite.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use axum::{
    body::Body,
    http::{HeaderMap, Method, Request, Response, StatusCode},
    routing::{any, MethodRouter},
    Router,
};
use base64::Engine as _;
use bytes::Bytes;
use futures_util::Stream;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tower_etag::{ConstLruProvider, EtagCacheLayer, SimpleEtagCacheKey};

/// The provider type used throughout the tests.
pub type Provider = ConstLruProvider<64>;

/// Upper bound for any single network operation in a test.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `check` every 10 ms until it holds or [`IO_TIMEOUT`] has passed; returns whether it
/// held. For effects that happen in the background (a store committed after the response was
/// sent, a refresh): waiting a fixed time instead would make the test flaky on a busy machine.
pub async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// For a test that needs a process of its own (it checks something kept once per process):
/// in the test binary's process, runs the test `name` (its full path, `module::test`) in a
/// child process of the same binary, asserts that it passed, and returns `false`; in that
/// child, returns `true`, and the test goes on.
pub fn in_own_process(name: &str) -> bool {
    const VAR: &str = "TOWER_ETAG_OWN_PROCESS";
    if std::env::var(VAR).is_ok_and(|v| v == name) {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(VAR, name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} in its own process: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// The strong ETag the crate must compute for `body`: the quoted, unpadded URL-safe base64
/// of its blake3 hash. Computed independently of the crate.
pub fn expected_etag(body: &[u8]) -> String {
    let hash = blake3::hash(body);
    format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash.as_bytes())
    )
}

/// Counts how many times a handler ran.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one call; returns the new count.
    pub fn inc(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A route (any method) whose handler increments `counter` and then builds its response
/// with `f` from the request's method and headers.
pub fn counted<F>(counter: &Counter, f: F) -> MethodRouter
where
    F: Fn(&Method, &HeaderMap) -> Response<Body> + Clone + Send + Sync + 'static,
{
    let counter = counter.clone();
    any(move |method: Method, headers: HeaderMap| {
        let counter = counter.clone();
        let f = f.clone();
        async move {
            counter.inc();
            f(&method, &headers)
        }
    })
}

/// `len` bytes that tell their offsets apart (byte `i` is `i % 251`), for bodies whose every
/// byte a test checks.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The conditional fields and `Range` a handler received, as `seen:name=value` lines: what
/// a handler answers to show what reached it.
pub fn seen_conditionals(headers: &HeaderMap) -> String {
    let seen: Vec<String> = ["if-match", "if-none-match", "if-range", "range"]
        .iter()
        .filter_map(|n| Some(format!("{n}={}", headers.get(*n)?.to_str().ok()?)))
        .collect();
    format!("seen:{}", seen.join("\n"))
}

/// A response with `status`, `headers` and `body`.
pub fn response(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).unwrap()
}

/// `router` behind `EtagCacheLayer::with_default_predicate(provider)`.
pub fn with_etag(router: Router, provider: &Provider) -> Router {
    router.layer(EtagCacheLayer::with_default_predicate(provider.clone()))
}

/// A response as the client saw it, body read to its end.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The single value of header `name`; panics if it is repeated.
    pub fn header(&self, name: &str) -> Option<String> {
        let mut values = self.headers.get_all(name).iter();
        let first = values.next()?;
        assert!(
            values.next().is_none(),
            "header {name} is repeated: {:?}",
            self.headers.get_all(name).iter().collect::<Vec<_>>()
        );
        Some(first.to_str().unwrap().to_owned())
    }

    /// How many lines of header `name` the response carries.
    pub fn count(&self, name: &str) -> usize {
        self.headers.get_all(name).iter().count()
    }

    /// The ETag, which must be present exactly once.
    pub fn etag(&self) -> String {
        assert_eq!(
            self.count("etag"),
            1,
            "expected exactly one ETag, got {:?}",
            self.headers
        );
        self.header("etag").unwrap()
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// A server under test and a client for it.
#[derive(Clone)]
pub struct TestServer {
    pub addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl TestServer {
    /// Serves `app` with `axum::serve` on 127.0.0.1, on an ephemeral port.
    pub async fn start(app: Router) -> Self {
        Self::spawn(|listener| async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await.unwrap();
        })
        .await
    }

    /// Serves with `serve` (the proxy example's `app::serve`, say), given a listener on
    /// 127.0.0.1 on an ephemeral port.
    pub async fn spawn<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(TcpListener) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(addr.ip().is_loopback());
        tokio::spawn(serve(listener));
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { addr, client }
    }

    /// A client for a server started elsewhere (another process, another host), at `addr`.
    pub fn client_for(addr: SocketAddr) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { addr, client }
    }

    /// The `Host` value the client sends, which is the `host` of the provider's keys.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The cache key of a plain GET of `path` from this client (no Accept* fields).
    pub fn key(&self, path: &str) -> SimpleEtagCacheKey {
        SimpleEtagCacheKey {
            host: self.host(),
            path_and_query: path.to_owned(),
            ..Default::default()
        }
    }

    /// Sends a request and returns the response with its body not yet read.
    pub async fn send_streaming(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response<Incoming> {
        self.try_send_streaming(method, path, headers)
            .await
            .expect("request failed")
    }

    /// Like [`TestServer::send_streaming`], but a failed exchange (e.g. the connection
    /// closed before the response head arrived) is returned, not a panic.
    pub async fn try_send_streaming(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(Bytes::new())).unwrap();
        tokio::time::timeout(IO_TIMEOUT, self.client.request(request))
            .await
            .expect("timed out waiting for the response head")
    }

    /// Sends a request and reads the whole response.
    pub async fn request(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Resp {
        let res = self.send_streaming(method, path, headers).await;
        let (parts, body) = res.into_parts();
        let body = tokio::time::timeout(IO_TIMEOUT, body.collect())
            .await
            .expect("timed out reading the body")
            .expect("reading the body failed")
            .to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(Method::GET, path, headers).await
    }

    pub async fn head(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(Method::HEAD, path, headers).await
    }

    /// Sends `method path` with `headers` on a fresh TCP connection (with `Connection:
    /// close`) and returns exactly the bytes the server wrote, split into head and body.
    pub async fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> RawResp {
        let mut text = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.host()
        );
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        let bytes = tokio::time::timeout(IO_TIMEOUT, async {
            let mut stream = TcpStream::connect(self.addr).await.unwrap();
            stream.write_all(text.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            stream.read_to_end(&mut out).await.unwrap();
            out
        })
        .await
        .expect("timed out reading the raw response");
        RawResp::parse(&bytes)
    }
}

/// Sends `bytes` as they are on a fresh TCP connection to `addr` and reads until the server
/// closes it (send `Connection: close`): for requests a client library would not send
/// (absolute-form targets, a `Host` that differs, bodies on GET).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> RawResp {
    let out = tokio::time::timeout(IO_TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        out
    })
    .await
    .expect("timed out reading the raw response");
    RawResp::parse(&out)
}

/// A response as raw bytes off the wire.
#[derive(Debug)]
pub struct RawResp {
    pub status_line: String,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Every byte after the blank line that ends the head.
    pub after_head: Vec<u8>,
}

impl RawResp {
    fn parse(bytes: &[u8]) -> Self {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(bytes)));
        let head = std::str::from_utf8(&bytes[..end]).unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_owned();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.trim().to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        Self {
            status_line,
            headers,
            after_head: bytes[end + 4..].to_vec(),
        }
    }

    pub fn status(&self) -> u16 {
        self.status_line.split(' ').nth(1).unwrap().parse().unwrap()
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "header {name} is repeated: {all:?}");
        all.first().copied()
    }
}

/// A body made of a stream of frames with a size hint of our choosing: lets a test give a
/// streaming body a known (exact) length, so that the provider reads it ahead.
pub struct HintedBody<S> {
    stream: Pin<Box<S>>,
    hint: SizeHint,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S> HintedBody<S>
where
    S: Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
{
    /// A body of `stream` that claims exactly `len` bytes.
    pub fn exact(stream: S, len: u64) -> Body {
        Body::new(Self {
            stream: Box::pin(stream),
            hint: SizeHint::with_exact(len),
        })
    }
}

impl<S> http_body::Body for HintedBody<S>
where
    S: Stream<Item = Result<Bytes, BoxError>>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = self.stream.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(data))) = &polled {
            // What is left shrinks as data flows, as with a real body.
            let left = self.hint.lower().saturating_sub(data.len() as u64);
            self.hint = SizeHint::with_exact(left);
        }
        polled.map(|item| item.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

/// A simple error for bodies that fail on purpose.
pub fn body_error(msg: &'static str) -> BoxError {
    Box::new(std::io::Error::other(msg))
}
