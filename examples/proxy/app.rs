//! The caching reverse proxy of `examples/proxy`, as a library the tests use too.

use axum::{
    body::Body,
    extract::{Request, State},
    http::{
        header::{CONNECTION, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE},
        uri::{Authority, Scheme},
        HeaderName, StatusCode, Uri,
    },
    response::{IntoResponse, Response},
    Router,
};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tower_etag::{response_cache::ResponseCache, store::MemoryStore};

/// Where and how to forward.
#[derive(Clone, Debug, Default)]
pub struct ProxyConfig {
    /// The origin: `http://host:port`.
    pub upstream: Uri,
    /// Keep the client's `Host` instead of the upstream's.
    pub preserve_host: bool,
}

#[derive(Clone)]
struct Proxy {
    client: Client<HttpConnector, Body>,
    scheme: Scheme,
    authority: Authority,
    preserve_host: bool,
}

/// Hop-by-hop fields (RFC 9110 §7.6.1) are for one connection only and are not forwarded.
const HOP_BY_HOP: [HeaderName; 6] = [
    CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    HeaderName::from_static("keep-alive"),
];

fn strip_hop_by_hop(headers: &mut axum::http::HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    headers.remove("proxy-connection");
}

async fn forward(State(proxy): State<Proxy>, mut request: Request) -> Response {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let uri = Uri::builder()
        .scheme(proxy.scheme.clone())
        .authority(proxy.authority.clone())
        .path_and_query(path_and_query)
        .build();
    let Ok(uri) = uri else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    *request.uri_mut() = uri;
    strip_hop_by_hop(request.headers_mut());
    if !proxy.preserve_host {
        if let Ok(host) = proxy.authority.as_str().parse() {
            request.headers_mut().insert(HOST, host);
        }
    }
    match proxy.client.request(request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            tracing::warn!(error = %e, "upstream request failed");
            (StatusCode::BAD_GATEWAY, "upstream unavailable\n").into_response()
        }
    }
}

/// The proxy without a cache: every request is forwarded.
pub fn forwarder(config: &ProxyConfig) -> Result<Router, String> {
    let scheme = config
        .upstream
        .scheme()
        .cloned()
        .ok_or("--upstream needs a scheme (http://)")?;
    if scheme != Scheme::HTTP {
        return Err("--upstream must be http:// (this example has no TLS client)".into());
    }
    let authority = config
        .upstream
        .authority()
        .cloned()
        .ok_or("--upstream needs a host and port")?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    Ok(Router::new().fallback(forward).with_state(Proxy {
        client,
        scheme,
        authority,
        preserve_host: config.preserve_host,
    }))
}

/// The caching reverse proxy: [`forwarder`] behind `cache`'s layer.
pub fn caching_proxy(
    config: &ProxyConfig,
    cache: &ResponseCache<MemoryStore>,
) -> Result<Router, String> {
    Ok(forwarder(config)?.layer(cache.layer()))
}
