//! Our caching reverse proxy (`tower_etag::proxy`, unchanged):
//! `proxy --listen 127.0.0.1:PORT --upstream http://127.0.0.1:ORIGIN [--max-bytes N] [--max-entry-bytes N] [--no-cache]
//! [--store memory|fs:DIR|redis://HOST:PORT] [--l1-bytes N]`.
//!
//! `--no-cache` runs the same forwarder without the cache: the cost of the proxy hop alone.
//! `--store` and `--l1-bytes` as in the proxy example (one store here).

use bench_load::{
    app::{self, caching_proxy, forwarder, open_store, ProxyConfig, StoreSizes},
    bind, Args,
};
use std::net::SocketAddr;
use tower_etag::response_cache::ResponseCache;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listen: SocketAddr = args.required("listen");
    let config = ProxyConfig {
        upstream: args.required("upstream"),
        preserve_host: false,
        trust_forwarded: false,
    };
    let listener = bind(listen).await;
    if args.opt("no-cache").is_some() {
        app::serve(listener, forwarder(&config).unwrap_or_else(|e| exit(&e))).await;
        return;
    }
    let specs: Vec<String> = args.opt("store").map(str::to_owned).into_iter().collect();
    let sizes = StoreSizes {
        max_bytes: args.get("max-bytes", 128 << 20),
        max_entry_bytes: args
            .opt("max-entry-bytes")
            .map(|v| v.parse().expect("--max-entry-bytes N")),
        l1_bytes: args
            .opt("l1-bytes")
            .map(|v| v.parse().expect("--l1-bytes N")),
    };
    let store = open_store(&specs, sizes).await.unwrap_or_else(|e| exit(&e));
    let proxy = caching_proxy(&config, &ResponseCache::new(store)).unwrap_or_else(|e| exit(&e));
    app::serve(listener, proxy).await;
}

fn exit(error: &dyn std::fmt::Display) -> ! {
    eprintln!("error: {error}");
    std::process::exit(2);
}
