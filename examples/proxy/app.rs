//! The caching reverse proxy of `examples/proxy`, as a library the tests use too.

use axum::{
    body::Body,
    http::{
        header::{CONNECTION, HOST},
        uri::{Authority, PathAndQuery, Scheme},
        HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri, Version,
    },
    response::{IntoResponse, Response},
};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::net::TcpListener;
use tower::Service;
use tower_etag::{
    response_cache::{ResponseCache, ResponseCacheBuilder},
    store::{AnyStore, FsStore, Layered, MemoryStore, Partitioned, Store},
    EtagCache,
};

/// Where and how to forward.
#[derive(Clone, Debug, Default)]
pub struct ProxyConfig {
    /// The origin: `http://host:port`.
    pub upstream: Uri,
    /// Keep the client's `Host` instead of the upstream's.
    pub preserve_host: bool,
    /// Forward the client's `Forwarded`, `X-Forwarded-*` and method-override fields: only
    /// behind another proxy that sets them itself. Otherwise a client could make the origin
    /// build a page for another host or method, which the cache would then serve to
    /// everyone (unkeyed-header cache poisoning).
    pub trust_forwarded: bool,
}

/// Hop-by-hop fields (RFC 9110 §7.6.1) are for one connection only and are not forwarded,
/// nor are those the `Connection` field names.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "keep-alive"
            | "proxy-connection"
    )
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one look at the names present, nothing parsed.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    remove_where(headers, |name| is_hop_by_hop(name) || listed.contains(name));
}

/// Removes the fields whose names `drop` picks, looking at each name present once (and
/// allocating nothing when none is).
fn remove_where(headers: &mut HeaderMap, drop: impl Fn(&HeaderName) -> bool) {
    let doomed: Vec<HeaderName> = headers.keys().filter(|n| drop(n)).cloned().collect();
    for name in &doomed {
        headers.remove(name);
    }
}

/// Fields with which a client can tell an origin which host, scheme, address or method it
/// is "really" asking for. Only a trusted proxy in front may set them.
fn is_client_routing(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "forwarded"
            | "x-forwarded-for"
            | "x-forwarded-host"
            | "x-forwarded-port"
            | "x-forwarded-prefix"
            | "x-forwarded-proto"
            | "x-real-ip"
            | "x-http-method-override"
            | "x-http-method"
            | "x-method-override"
            | "x-original-url"
            | "x-rewrite-url"
    )
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Says who the client is and how it came (`X-Forwarded-For`, `X-Forwarded-Proto`), after
/// the client's own routing fields are dropped, unless they are trusted.
fn set_forwarding(headers: &mut HeaderMap, peer: Option<&HeaderValue>, trusted: bool) {
    if !trusted && headers.keys().any(is_client_routing) {
        remove_where(headers, is_client_routing);
    }
    if let Some(peer) = peer {
        let value = match headers.get(&X_FORWARDED_FOR) {
            Some(earlier) => {
                let mut chain = earlier.as_bytes().to_vec();
                chain.extend_from_slice(b", ");
                chain.extend_from_slice(peer.as_bytes());
                HeaderValue::from_bytes(&chain).ok()
            }
            None => Some(peer.clone()),
        };
        if let Some(value) = value {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
}

/// What the origin will see of a request, made before the cache sees it (so the cache keys
/// on what the origin gets): hop-by-hop fields go (RFC 9110 §7.6.1), and unless they are
/// trusted so do the client's routing fields; `X-Forwarded-For` / `-Proto` say who came and
/// how.
fn prepare<B>(request: &mut Request<B>, peer: Option<&HeaderValue>, trust_forwarded: bool) {
    strip_hop_by_hop(request.headers_mut());
    set_forwarding(request.headers_mut(), peer, trust_forwarded);
}

/// The service that sends every request upstream, as it is (after [`prepare`]).
#[derive(Clone)]
pub struct Forward(Arc<Upstream>);

struct Upstream {
    client: Client<HttpConnector, Body>,
    scheme: Scheme,
    authority: Authority,
    /// The upstream's authority as a `Host` value; `None` with `--preserve-host`.
    host: Option<HeaderValue>,
}

impl<B> Service<Request<B>> for Forward
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Boxed on the way out only (a miss): a hit never gets here.
        Box::pin(forward(Arc::clone(&self.0), request.map(Body::new)))
    }
}

async fn forward(
    upstream: Arc<Upstream>,
    mut request: Request<Body>,
) -> Result<Response, Infallible> {
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
        return Ok(StatusCode::BAD_REQUEST.into_response());
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
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            tracing::warn!(error = %e, "upstream request failed");
            (StatusCode::BAD_GATEWAY, "upstream unavailable\n").into_response()
        }
    })
}

/// A proxy as it is served: requests [`prepare`]d, then `inner`. [`serve`] gives each
/// connection a copy that knows its peer's address (for `X-Forwarded-For`).
#[derive(Clone)]
pub struct Prepared<S> {
    inner: S,
    trust_forwarded: bool,
    /// The connection's peer address, as an `X-Forwarded-For` member.
    peer: Option<HeaderValue>,
}

impl<S> Prepared<S> {
    /// This proxy for the connection from `peer`.
    fn for_peer(&self, peer: SocketAddr) -> Self
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

/// Serves `proxy` on `listener`, HTTP/1.1 and HTTP/2 (prior knowledge), a task per
/// connection, until the task is dropped.
pub async fn serve<S, B>(listener: TcpListener, proxy: Prepared<S>)
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<axum::BoxError>,
{
    let http = auto::Builder::new(TokioExecutor::new());
    loop {
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
        });
    }
}

/// The proxy without a cache: every request is forwarded. (The binary always caches; the
/// tests compare with this.)
#[allow(dead_code)]
pub fn forwarder(config: &ProxyConfig) -> Result<Prepared<Forward>, String> {
    Ok(Prepared {
        inner: upstream(config)?,
        trust_forwarded: config.trust_forwarded,
        peer: None,
    })
}

/// The caching proxy's service: [`prepare`], then the cache, then [`Forward`].
pub type CachingProxy<St> =
    Prepared<EtagCache<Forward, ResponseCache<St>, tower_etag::response_cache::Everything>>;

/// The caching reverse proxy: the forwarding behind `cache`'s layer, and the preparation of
/// requests in front of the cache.
pub fn caching_proxy<St: Store>(
    config: &ProxyConfig,
    cache: &ResponseCache<St>,
) -> Result<CachingProxy<St>, String> {
    Ok(Prepared {
        inner: tower::Layer::layer(&cache.layer(), upstream(config)?),
        trust_forwarded: config.trust_forwarded,
        peer: None,
    })
}

/// How the proxy's cache reads responses.
#[derive(Clone, Debug)]
pub struct CacheFlags {
    /// Mint validators for responses without one (`--mint-etags`; off: in front of an
    /// origin it does not speak for, clients see the origin's validators only).
    pub mint_etags: bool,
    /// The targeted cache-control fields it follows (RFC 9213), most applicable first:
    /// `CDN-Cache-Control` unless `--targeted` names others (`--targeted none`: none).
    pub targeted: Vec<HeaderName>,
    /// Keep them in responses (`--forward-targeted`), for CDN caches further downstream.
    pub forward_targeted: bool,
    /// Serve entries this long past their freshness while the origin cannot be reached
    /// (`--stale-if-unreachable SECS`; none by default).
    pub grace: std::time::Duration,
}

impl Default for CacheFlags {
    fn default() -> Self {
        Self {
            mint_etags: false,
            targeted: vec![HeaderName::from_static("cdn-cache-control")],
            forward_targeted: false,
            grace: std::time::Duration::ZERO,
        }
    }
}

/// The proxy's cache over `store`: a shared cache, read as `flags` say.
pub fn proxy_cache<St: Store>(store: St, flags: &CacheFlags) -> ResponseCache<St> {
    proxy_cache_builder(store, flags).build()
}

/// [`proxy_cache`]'s builder, for settings the flags do not reach (the tests' clock).
pub fn proxy_cache_builder<St: Store>(store: St, flags: &CacheFlags) -> ResponseCacheBuilder<St> {
    ResponseCache::builder(store)
        .mint_etags(flags.mint_etags)
        .targeted_cache_control(flags.targeted.iter().cloned())
        .forward_targeted(flags.forward_targeted)
        .stale_if_unreachable(flags.grace)
}

/// The service that sends every request to `config.upstream`.
fn upstream(config: &ProxyConfig) -> Result<Forward, String> {
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
    let host = if config.preserve_host {
        None
    } else {
        Some(
            HeaderValue::from_str(authority.as_str())
                .map_err(|e| format!("--upstream {authority}: {e}"))?,
        )
    };
    Ok(Forward(Arc::new(Upstream {
        client: Client::builder(TokioExecutor::new()).build_http(),
        scheme,
        authority,
        host,
    })))
}

/// How large the proxy's stores may grow: `--max-bytes`, `--max-entry-bytes`, `--l1-bytes`.
#[derive(Clone, Copy, Debug)]
pub struct StoreSizes {
    /// Bytes the memory and file stores hold in all.
    pub max_bytes: u64,
    /// The largest entry a store takes (memory, file and Redis stores); `None` leaves each
    /// store's default (16 MiB in memory, an eighth of `max_bytes` on disk, 64 MiB in Redis).
    pub max_entry_bytes: Option<u64>,
    /// A memory L1 of this many bytes in front of the store.
    pub l1_bytes: Option<u64>,
}

impl StoreSizes {
    /// `max_bytes` in all, each store's default largest entry, no L1.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            max_entry_bytes: None,
            l1_bytes: None,
        }
    }
}

/// The proxy's store, from its `--store` values: `memory`, `fs:DIR` or `redis://HOST:PORT`
/// (with the `redis` feature); several spread the URLs over them ([`Partitioned`], each
/// named by its value); `sizes.l1_bytes` puts a memory L1 of that size in front
/// ([`Layered`], hearing the other nodes on the first Redis store's bus).
pub async fn open_store(specs: &[String], sizes: StoreSizes) -> Result<AnyStore, String> {
    let specs: Vec<&str> = if specs.is_empty() {
        vec!["memory"]
    } else {
        specs.iter().map(String::as_str).collect()
    };
    let mut stores = Vec::with_capacity(specs.len());
    let mut bus = None;
    for spec in &specs {
        let store = if *spec == "memory" {
            let mut memory = MemoryStore::builder().max_bytes(sizes.max_bytes);
            if let Some(max) = sizes.max_entry_bytes {
                memory = memory.max_entry_bytes(max);
            }
            AnyStore::new(memory.build())
        } else if let Some(dir) = spec.strip_prefix("fs:") {
            let mut fs = FsStore::builder().max_bytes(sizes.max_bytes);
            if let Some(max) = sizes.max_entry_bytes {
                fs = fs.max_entry_bytes(max);
            }
            let store = fs
                .open(dir)
                .await
                .map_err(|e| format!("--store {spec}: {e}"))?;
            AnyStore::new(store)
        } else if spec.starts_with("redis://") {
            let (store, its_bus) = open_redis(spec, sizes.max_entry_bytes).await?;
            bus.get_or_insert(its_bus);
            store
        } else {
            return Err(format!(
                "--store {spec}: expected memory, fs:DIR or redis://HOST:PORT"
            ));
        };
        stores.push((spec.to_string(), store));
    }
    let base = if stores.len() == 1 {
        stores.pop().map(|(_, s)| s).expect("one store")
    } else {
        AnyStore::new(Partitioned::new(stores).map_err(|e| format!("--store: {e}"))?)
    };
    Ok(match sizes.l1_bytes {
        None => base,
        Some(bytes) => {
            let mut l1 = MemoryStore::builder().max_bytes(bytes);
            if let Some(max) = sizes.max_entry_bytes {
                l1 = l1.max_entry_bytes(max);
            }
            let l1 = l1.build();
            let layered = Layered::builder(l1, base);
            AnyStore::new(match bus {
                Some(bus) => layered.bus(bus).build(),
                None => layered.build(),
            })
        }
    })
}

#[cfg(feature = "redis")]
async fn open_redis(
    spec: &str,
    max_entry_bytes: Option<u64>,
) -> Result<
    (
        AnyStore,
        std::sync::Arc<dyn tower_etag::store::InvalidationBus>,
    ),
    String,
> {
    let mut redis = tower_etag::store::RedisStore::builder();
    if let Some(max) = max_entry_bytes {
        redis = redis.max_entry_bytes(max);
    }
    // A node starts while Redis is down, and serves without it until it is up.
    let store = redis
        .connect_in_background(spec)
        .map_err(|e| format!("--store {spec}: {e}"))?;
    let bus = store.bus();
    Ok((AnyStore::new(store), bus))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(
    spec: &str,
    max_entry_bytes: Option<u64>,
) -> Result<
    (
        AnyStore,
        std::sync::Arc<dyn tower_etag::store::InvalidationBus>,
    ),
    String,
> {
    let _ = max_entry_bytes;
    Err(format!(
        "--store {spec}: built without Redis; run with --features redis"
    ))
}
