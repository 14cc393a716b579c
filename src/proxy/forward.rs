//! [`Forward`]: the service behind the cache that sends a request to the origin, over
//! hyper-util's pooled HTTP/1.1 client.

use super::{fields::strip_hop_by_hop, ConfigError, ProxyBody, ProxyConfig};
use crate::BoxError;
use bytes::Bytes;
use http::{
    header::HOST,
    uri::{Authority, PathAndQuery, Scheme},
    HeaderValue, Request, Response, StatusCode, Uri, Version,
};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tower_service::Service;

/// The service that sends every request to the upstream, as it is (after the proxy's
/// [`Prepared`](super::Prepared) step): same method, path, query, fields and body, the
/// upstream's authority (and `Host`, unless [`ProxyConfig::preserve_host`]). An upstream
/// that cannot be reached is a `502`.
#[derive(Clone)]
pub struct Forward(Arc<Upstream>);

struct Upstream {
    client: Client<HttpConnector, ProxyBody>,
    scheme: Scheme,
    authority: Authority,
    /// The upstream's authority as a `Host` value; `None` with `preserve_host`.
    host: Option<HeaderValue>,
}

impl fmt::Debug for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forward")
            .field("scheme", &self.0.scheme)
            .field("authority", &self.0.authority)
            .field("preserve_host", &self.0.host.is_none())
            .finish()
    }
}

impl Forward {
    /// The service that forwards to `config.upstream` (`http://host:port`: this proxy has
    /// no TLS client).
    pub fn new(config: &ProxyConfig) -> Result<Self, ConfigError> {
        let upstream = &config.upstream;
        let scheme = upstream
            .scheme()
            .cloned()
            .ok_or_else(|| ConfigError::new("--upstream needs a scheme (http://)"))?;
        if scheme != Scheme::HTTP {
            return Err(ConfigError::new(
                "--upstream must be http:// (the proxy has no TLS client)",
            ));
        }
        let authority = upstream
            .authority()
            .cloned()
            .ok_or_else(|| ConfigError::new("--upstream needs a host and port"))?;
        let host = if config.preserve_host {
            None
        } else {
            Some(
                HeaderValue::from_str(authority.as_str())
                    .map_err(|e| ConfigError::new(format!("--upstream {authority}: {e}")))?,
            )
        };
        Ok(Self(Arc::new(Upstream {
            client: Client::builder(TokioExecutor::new()).build_http(),
            scheme,
            authority,
            host,
        })))
    }
}

impl<B> Service<Request<B>> for Forward
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Boxed on the way out only (a miss): a hit never gets here.
        let request = request.map(|body| body.map_err(Into::into).boxed_unsync());
        Box::pin(forward(Arc::clone(&self.0), request))
    }
}

/// A response of the proxy's own, with a short text body.
pub(crate) fn text_response(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn forward(
    upstream: Arc<Upstream>,
    mut request: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, Infallible> {
    // The authority the client asked for (and the cache keys by): its `Host` or, from an
    // HTTP/2 client, its `:authority`.
    let host = match &upstream.host {
        Some(host) => Some(host.clone()),
        None => request.headers().get(HOST).cloned().or_else(|| {
            request
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        }),
    };
    // The same path and query, to the upstream: the parts move, nothing is parsed again.
    let mut target = std::mem::take(request.uri_mut()).into_parts();
    target.scheme = Some(upstream.scheme.clone());
    target.authority = Some(upstream.authority.clone());
    if target.path_and_query.is_none() {
        target.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    let Ok(uri) = Uri::from_parts(target) else {
        return Ok(text_response(
            StatusCode::BAD_REQUEST,
            "bad request target\n",
        ));
    };
    *request.uri_mut() = uri;
    // The upstream connection is HTTP/1.1, whatever the client spoke.
    *request.version_mut() = Version::HTTP_11;
    if let Some(host) = host {
        request.headers_mut().insert(HOST, host);
    }
    Ok(match upstream.client.request(request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers, true);
            Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
        }
        Err(e) => {
            tracing::warn!(error = %e, "upstream request failed");
            text_response(StatusCode::BAD_GATEWAY, "upstream unavailable\n")
        }
    })
}
