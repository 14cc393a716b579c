//! Serving the proxy: [`Prepared`] (each request's fields made ready for the origin before
//! the cache sees it) and [`serve`] (a hyper server, a task per connection).

use super::fields::prepare;
use crate::BoxError;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
    service::TowerToHyperService,
};
use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tower_service::Service;

/// A proxy as it is served: requests prepared (hop-by-hop fields dropped, RFC 9110 §7.6.1;
/// a client's routing fields dropped unless trusted; `X-Forwarded-For` / `-Proto` set),
/// then `inner`. [`serve`] gives each connection a copy that knows its peer's address.
#[derive(Clone, Debug)]
pub struct Prepared<S> {
    inner: S,
    trust_forwarded: bool,
    /// The connection's peer address, as an `X-Forwarded-For` member.
    peer: Option<HeaderValue>,
}

impl<S> Prepared<S> {
    /// `inner` behind the preparation of requests; `trust_forwarded` keeps the client's
    /// `Forwarded`, `X-Forwarded-*` and method-override fields.
    pub fn new(inner: S, trust_forwarded: bool) -> Self {
        Self {
            inner,
            trust_forwarded,
            peer: None,
        }
    }

    /// This proxy for the connection from `peer`.
    pub fn for_peer(&self, peer: SocketAddr) -> Self
    where
        S: Clone,
    {
        Self {
            inner: self.inner.clone(),
            trust_forwarded: self.trust_forwarded,
            // Made once per connection, not per request.
            peer: HeaderValue::from_str(&peer.ip().to_string()).ok(),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Prepared<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Error = Infallible>,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        prepare(&mut request, self.peer.as_ref(), self.trust_forwarded);
        self.inner.call(request)
    }
}

/// How [`serve_with`] treats its clients' connections.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ServeOptions {
    /// How long a client has to send a request's whole head (HTTP/1.1) before its
    /// connection is closed: 30 s by default. A client that sends a head byte by byte, or
    /// never, holds a connection no longer than this (slowloris).
    pub header_read_timeout: Duration,
    /// The most connections open at once: 10 000 by default. At the bound the listener is
    /// not read, and new connections wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

impl ServeOptions {
    /// These options with another [`ServeOptions::header_read_timeout`].
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// These options with another [`ServeOptions::max_connections`] (at least one).
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }
}

/// Serves `proxy` on `listener` with the default [`ServeOptions`]: see [`serve_with`].
pub async fn serve<S, B>(listener: TcpListener, proxy: Prepared<S>)
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve_with(listener, proxy, ServeOptions::default()).await;
}

/// Serves `proxy` on `listener`, HTTP/1.1 and HTTP/2 (prior knowledge), a task per
/// connection, within `options`' bounds, until the returned future is dropped.
pub async fn serve_with<S, B>(listener: TcpListener, proxy: Prepared<S>, options: ServeOptions)
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let open = Arc::new(Semaphore::new(options.max_connections.max(1)));
    loop {
        // At the bound, wait for a connection to close before accepting another.
        let Ok(permit) = Arc::clone(&open).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: the listener is still good. Wait a little
                // rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(proxy.for_peer(peer));
        let http = http.clone();
        tokio::spawn(async move {
            if let Err(e) = http.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
}
