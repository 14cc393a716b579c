//! The origin's handlers behind the ETag layer:
//! `etag_server --listen 127.0.0.1:PORT`.
//!
//! `EtagCacheLayer::with_default_predicate(ConstLruProvider::<4096>::init())`, as the README
//! shows it.

use bench_load::{origin_router, serve, Args, Origin};
use std::{net::SocketAddr, time::Duration};
use tower_etag::{ConstLruProvider, EtagCacheLayer};

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listen: SocketAddr = args.required("listen");
    let app = origin_router(Origin::new(Duration::from_millis(200))).layer(
        EtagCacheLayer::with_default_predicate(ConstLruProvider::<4096>::init()),
    );
    serve(listen, app).await;
}
