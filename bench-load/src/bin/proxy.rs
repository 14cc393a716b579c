//! Our caching reverse proxy (`examples/proxy/app.rs`, unchanged):
//! `proxy --listen 127.0.0.1:PORT --upstream http://127.0.0.1:ORIGIN [--max-bytes N] [--no-cache]`.
//!
//! `--no-cache` runs the same forwarder without the cache: the cost of the proxy hop alone.

use bench_load::{
    app::{caching_proxy, forwarder, ProxyConfig},
    serve, Args,
};
use std::net::SocketAddr;
use tower_etag::{response_cache::ResponseCache, store::MemoryStore};

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listen: SocketAddr = args.required("listen");
    let config = ProxyConfig {
        upstream: args.required("upstream"),
        preserve_host: false,
    };
    let app = if args.opt("no-cache").is_some() {
        forwarder(&config)
    } else {
        let store = MemoryStore::builder()
            .max_bytes(args.get("max-bytes", 128 << 20))
            .build();
        caching_proxy(&config, &ResponseCache::new(store))
    };
    let app = app.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2);
    });
    serve(listen, app).await;
}
