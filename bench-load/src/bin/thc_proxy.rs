//! The same forwarder as `proxy`, with tower-http-cache 0.6 (in-memory moka backend) as the
//! cache instead of ours:
//! `thc_proxy --listen 127.0.0.1:PORT --upstream http://127.0.0.1:ORIGIN`.
//!
//! Its policy honours `Cache-Control` (the default); the TTL is set to the origin's hour.

use axum::{body::Body, extract::Request, http::StatusCode, response::IntoResponse, Router};
use bench_load::{
    app::{forwarder, ProxyConfig},
    serve, Args,
};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::Mutex,
    task::{Context, Poll},
    time::Duration,
};
use tower::ServiceExt;
use tower_http_cache::prelude::*;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listen: SocketAddr = args.required("listen");
    let config = ProxyConfig {
        upstream: args.required("upstream"),
        preserve_host: false,
        trust_forwarded: false,
    };
    let forward = forwarder(&config).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    let cache = CacheLayer::builder(InMemoryBackend::new(100_000))
        .ttl(Duration::from_secs(3600))
        .respect_cache_control(true)
        .build();
    // tower-http-cache wants a `Sync` response body; axum's is not.
    let forward = ServiceExt::<Request>::map_response(forward, sync_response);
    let cached = tower::Layer::layer(&cache, forward);
    let service = tower::service_fn(move |request: Request| {
        let cached = cached.clone();
        async move {
            Ok::<_, Infallible>(match cached.oneshot(request).await {
                Ok(response) => response.map(Body::new),
                Err(e) => (StatusCode::BAD_GATEWAY, format!("cache error: {e}\n")).into_response(),
            })
        }
    });
    serve(listen, Router::new().fallback_service(service)).await;
}

fn sync_response(r: http::Response<bench_load::app::ProxyBody>) -> http::Response<SyncBody> {
    r.map(|b| SyncBody::new(Body::new(b)))
}

/// An axum body made `Sync` (it is only ever polled through `&mut`, so the mutex is never
/// contended: `get_mut` takes no lock).
struct SyncBody(Mutex<Body>);

impl SyncBody {
    fn new(body: Body) -> Self {
        Self(Mutex::new(body))
    }

    fn body(&mut self) -> &mut Body {
        self.0.get_mut().unwrap_or_else(|e| e.into_inner())
    }
}

impl http_body::Body for SyncBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(self.body()).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().is_ok_and(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .lock()
            .map_or_else(|_| SizeHint::default(), |b| b.size_hint())
    }
}
