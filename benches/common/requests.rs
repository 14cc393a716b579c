//! Requests, responses and bodies for the in-process benchmarks, without criterion: the
//! instruction-count scenarios (`bench-ir`) use them too.

#![allow(dead_code)]

use bytes::Bytes;
use http::{
    header::{CACHE_CONTROL, CONTENT_TYPE, HOST},
    HeaderValue, Request, Response,
};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use std::{
    convert::Infallible,
    future::{ready, Ready},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tower::{service_fn, Service, ServiceExt};

pub const HOST_NAME: &str = "bench.example";
pub const CHUNK: usize = 64 * 1024;

pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Deterministic, incompressible-looking bytes.
pub fn payload(len: usize) -> Bytes {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// `payload` cut into `CHUNK`-sized frames (slices of one buffer: no copies).
pub fn chunks(body: &Bytes) -> Arc<[Bytes]> {
    (0..body.len())
        .step_by(CHUNK)
        .map(|start| body.slice(start..(start + CHUNK).min(body.len())))
        .collect()
}

/// The body of the requests the benchmarks send through our middleware (which needs a
/// `Body`): none.
pub type NoReqBody = http_body_util::Empty<Bytes>;

/// A request without a body.
pub fn no_body() -> NoReqBody {
    NoReqBody::new()
}

/// A GET for `path` as a server sees it (origin-form target plus `Host`).
pub fn get(path: &str) -> http::request::Builder {
    Request::builder()
        .uri(path)
        .header(HOST, HeaderValue::from_static(HOST_NAME))
}

/// A body that yields pre-cut frames and knows its exact length, as a file or a
/// `Content-Length` upstream body does.
pub struct ChunkedBody {
    chunks: Arc<[Bytes]>,
    next: usize,
    remaining: u64,
}

impl ChunkedBody {
    pub fn new(chunks: Arc<[Bytes]>) -> Self {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        Self {
            chunks,
            next: 0,
            remaining,
        }
    }
}

impl Body for ChunkedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        match this.chunks.get(this.next) {
            Some(chunk) => {
                this.next += 1;
                this.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk.clone()))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// One request through `svc`, body read to its end; returns the status and the body length.
pub async fn drive<S, ReqB, ResB>(svc: &mut S, req: Request<ReqB>) -> (u16, usize)
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: std::fmt::Debug,
    ResB: Body,
    ResB::Error: std::fmt::Debug,
{
    let res = svc
        .ready()
        .await
        .expect("ready")
        .call(req)
        .await
        .expect("call");
    let status = res.status().as_u16();
    let collected = res.into_body().collect().await.expect("body");
    let len = bytes::Buf::remaining(&collected.aggregate());
    (status, len)
}

pub type Handler<B> = fn(&Bytes) -> Response<B>;

/// The inner service: answers every request with the same representation (`text/plain`:
/// tower-http-cache will not store `application/octet-stream` by default).
pub fn origin<R, B, F>(
    body: Bytes,
    make: F,
) -> impl Service<
    Request<R>,
    Response = Response<B>,
    Error = Infallible,
    Future = Ready<Result<Response<B>, Infallible>>,
> + Clone
       + Send
       + 'static
where
    F: Fn(&Bytes) -> Response<B> + Clone + Send + 'static,
{
    service_fn(move |_req: Request<R>| ready(Ok(make(&body))))
}

pub fn full(body: &Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .header(CONTENT_TYPE, "text/plain")
        .header(CACHE_CONTROL, "max-age=3600")
        .body(Full::new(body.clone()))
        .expect("response")
}
