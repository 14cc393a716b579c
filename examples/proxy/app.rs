//! The caching reverse proxy of `examples/proxy`, as a library the tests use too.

use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{
        header::{CONNECTION, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE},
        uri::{Authority, Scheme},
        HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, Version,
    },
    response::{IntoResponse, Response},
    Router,
};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use std::net::SocketAddr;
use tower::util::MapRequestLayer;
use tower_etag::{
    response_cache::ResponseCache,
    store::{AnyStore, FsStore, Layered, MemoryStore, Partitioned, Store},
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

/// Fields with which a client can tell an origin which host, scheme, address or method it
/// is "really" asking for. Only a trusted proxy in front may set them.
const CLIENT_ROUTING: [&str; 12] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-proto",
    "x-real-ip",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

/// Says who the client is and how it came (`X-Forwarded-For`, `X-Forwarded-Proto`), after
/// the client's own routing fields are dropped, unless they are trusted.
fn set_forwarding(headers: &mut HeaderMap, peer: Option<SocketAddr>, trusted: bool) {
    if !trusted {
        for name in CLIENT_ROUTING {
            headers.remove(name);
        }
    }
    if let Some(peer) = peer {
        let xff = HeaderName::from_static("x-forwarded-for");
        let chain = match headers.get(&xff).and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&chain) {
            headers.insert(xff, v);
        }
    }
    let xfp = HeaderName::from_static("x-forwarded-proto");
    if !headers.contains_key(&xfp) {
        headers.insert(xfp, HeaderValue::from_static("http"));
    }
}

/// What the origin will see of a request, made before the cache sees it (so the cache keys
/// on what the origin gets): hop-by-hop fields go (RFC 9110 §7.6.1), and unless they are
/// trusted so do the client's routing fields; `X-Forwarded-For` / `-Proto` say who came and
/// how.
fn prepare(mut request: Request, trust_forwarded: bool) -> Request {
    // The client's address, when the server was started with connect info.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    strip_hop_by_hop(request.headers_mut());
    set_forwarding(request.headers_mut(), peer, trust_forwarded);
    request
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
    // The authority the client asked for (and the cache keys by): its `Host` or, from an
    // HTTP/2 client, its `:authority`.
    let client_authority = request.headers().get(HOST).cloned().or_else(|| {
        request
            .uri()
            .authority()
            .and_then(|a| a.as_str().parse().ok())
    });
    *request.uri_mut() = uri;
    // The upstream connection is HTTP/1.1, whatever the client spoke.
    *request.version_mut() = Version::HTTP_11;
    let host = if proxy.preserve_host {
        client_authority
    } else {
        proxy.authority.as_str().parse().ok()
    };
    if let Some(host) = host {
        request.headers_mut().insert(HOST, host);
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

/// The proxy without a cache: every request is forwarded. (The binary always caches; the
/// tests compare with this.)
#[allow(dead_code)]
pub fn forwarder(config: &ProxyConfig) -> Result<Router, String> {
    Ok(upstream(config)?.layer(preparing(config)))
}

/// The caching reverse proxy: the forwarding behind `cache`'s layer, and the preparation of
/// requests in front of the cache.
pub fn caching_proxy<St: Store>(
    config: &ProxyConfig,
    cache: &ResponseCache<St>,
) -> Result<Router, String> {
    Ok(upstream(config)?
        .layer(cache.layer())
        .layer(preparing(config)))
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
    ResponseCache::builder(store)
        .mint_etags(flags.mint_etags)
        .targeted_cache_control(flags.targeted.iter().cloned())
        .forward_targeted(flags.forward_targeted)
        .stale_if_unreachable(flags.grace)
        .build()
}

/// The layer that [`prepare`]s requests.
fn preparing(config: &ProxyConfig) -> MapRequestLayer<impl Fn(Request) -> Request + Clone> {
    let trust_forwarded = config.trust_forwarded;
    MapRequestLayer::new(move |request| prepare(request, trust_forwarded))
}

/// The router that sends every request upstream, as it is.
fn upstream(config: &ProxyConfig) -> Result<Router, String> {
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
