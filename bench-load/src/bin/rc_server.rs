//! The origin's handlers behind the response cache, in process (no proxy hop):
//! `rc_server --listen 127.0.0.1:PORT [--max-bytes N]`.

use bench_load::{origin_router, serve, Args, Origin};
use std::{net::SocketAddr, time::Duration};
use tower_etag::{response_cache::ResponseCache, store::MemoryStore};

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listen: SocketAddr = args.required("listen");
    let store = MemoryStore::builder()
        .max_bytes(args.get("max-bytes", 128 << 20))
        .build();
    let cache = ResponseCache::new(store);
    let app = origin_router(Origin::new(Duration::from_millis(200))).layer(cache.layer());
    serve(listen, app).await;
}
