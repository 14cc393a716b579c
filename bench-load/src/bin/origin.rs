//! The bare axum origin: `origin --listen 127.0.0.1:PORT [--slow-ms 200]`.
//! Routes: see `bench_load::origin_router`.

use bench_load::{origin_router, serve, Args, Origin};
use std::{net::SocketAddr, time::Duration};

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listen: SocketAddr = args.required("listen");
    let slow = Duration::from_millis(args.get("slow-ms", 200));
    serve(listen, origin_router(Origin::new(slow))).await;
}
