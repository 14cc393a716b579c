//! A caching reverse proxy built from the crate: every method, path, query and header is
//! forwarded to the upstream (Host rewritten unless `--preserve-host`; the client's
//! `Forwarded`, `X-Forwarded-*` and method-override fields dropped unless
//! `--trust-forwarded`, and `X-Forwarded-For` / `X-Forwarded-Proto` set), bodies stream both
//! ways, and responses are cached as a shared cache (RFC 9111) in memory. `--mint-etags`
//! gives stored responses without a validator an `ETag` of the cache's own (off by default:
//! the proxy does not speak for the origin). The proxy follows `CDN-Cache-Control` (RFC
//! 9213) over `Cache-Control`, and removes it from its responses: `--targeted FIELD`
//! (repeatable, most applicable first; `none` for none) names other fields,
//! `--forward-targeted` keeps them for CDN caches downstream. `--stale-if-unreachable SECS`
//! serves entries that long past their freshness while the origin cannot be reached.
//! `--store` picks where entries live: `memory` (the default), `fs:DIR` (files, kept across
//! restarts) or `redis://HOST:PORT` (shared by a fleet; `--features redis`); given several
//! times, URLs are spread over them. `--l1-bytes N` puts a memory L1 in front of them.
//!
//! ```sh
//! cargo run --release --features proxy -- --upstream http://127.0.0.1:8000 --listen 127.0.0.1:8080
//! curl -i http://127.0.0.1:8080/some/path     # see Cache-Status and Age
//! ```
//!
//! The service is [`tower_etag::proxy`]'s; this file reads the command line.

use std::net::SocketAddr;
use tower_etag::proxy::{
    caching_proxy, open_store, proxy_cache, serve, CacheFlags, ProxyConfig, StoreSizes,
};

const USAGE: &str = "usage: tower-etag-proxy --upstream http://127.0.0.1:8000 [--listen 127.0.0.1:8080] [--preserve-host] [--trust-forwarded] [--mint-etags] [--targeted FIELD|none]... [--forward-targeted] [--stale-if-unreachable SECS] [--max-bytes N] [--max-entry-bytes N] [--store memory|fs:DIR|redis://HOST:PORT]... [--l1-bytes N]";

struct Args {
    listen: SocketAddr,
    config: ProxyConfig,
    sizes: StoreSizes,
    stores: Vec<String>,
    cache: CacheFlags,
}

fn parse_args() -> Result<Args, String> {
    let mut listen: SocketAddr = "127.0.0.1:8080".parse().expect("valid default");
    let mut upstream = None;
    let mut preserve_host = false;
    let mut trust_forwarded = false;
    let mut cache = CacheFlags::default();
    let mut targeted = Vec::new();
    let mut sizes = StoreSizes::new(128 * 1024 * 1024);
    let mut stores = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--preserve-host" => preserve_host = true,
            "--trust-forwarded" => trust_forwarded = true,
            "--mint-etags" => cache.mint_etags = true,
            "--forward-targeted" => cache.forward_targeted = true,
            "--targeted" => {
                let value = it.next().ok_or("--targeted needs a field name (or none)")?;
                if value != "none" {
                    let name = value
                        .parse()
                        .map_err(|e| format!("--targeted {value}: {e}"))?;
                    targeted.push(name);
                }
                cache.targeted.clear();
            }
            "--store" => stores.push(
                it.next()
                    .ok_or("--store needs memory, fs:DIR or redis://HOST:PORT")?,
            ),
            "--l1-bytes" | "--max-entry-bytes" => {
                let value = it
                    .next()
                    .ok_or_else(|| format!("{flag} needs a number of bytes"))?;
                let bytes = value.parse().map_err(|e| format!("{flag} {value}: {e}"))?;
                match flag.as_str() {
                    "--l1-bytes" => sizes.l1_bytes = Some(bytes),
                    _ => sizes.max_entry_bytes = Some(bytes),
                }
            }
            "--stale-if-unreachable" => {
                let value = it.next().ok_or("--stale-if-unreachable needs seconds")?;
                let secs: u64 = value
                    .parse()
                    .map_err(|e| format!("--stale-if-unreachable {value}: {e}"))?;
                cache.grace = std::time::Duration::from_secs(secs);
            }
            "--listen" | "--upstream" | "--max-bytes" => {
                let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
                match flag.as_str() {
                    "--listen" => {
                        listen = value
                            .parse()
                            .map_err(|e| format!("--listen {value}: {e}"))?
                    }
                    "--upstream" => {
                        upstream = Some(
                            value
                                .parse()
                                .map_err(|e| format!("--upstream {value}: {e}"))?,
                        )
                    }
                    _ => {
                        sizes.max_bytes = value
                            .parse()
                            .map_err(|e| format!("--max-bytes {value}: {e}"))?
                    }
                }
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    let upstream = upstream.ok_or("--upstream http://HOST:PORT is required")?;
    cache.targeted.extend(targeted);
    Ok(Args {
        listen,
        config: ProxyConfig {
            upstream,
            preserve_host,
            trust_forwarded,
        },
        sizes,
        stores,
        cache,
    })
}

#[tokio::main]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("error: {e}\n{USAGE}");
        std::process::exit(2);
    });
    let store = open_store(&args.stores, args.sizes)
        .await
        .unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2);
        });
    let cache = proxy_cache(store, &args.cache);
    let app = caching_proxy(&args.config, &cache).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .unwrap_or_else(|e| {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        });
    println!("caching {} on http://{}", args.config.upstream, args.listen);
    serve(listener, app).await;
}
