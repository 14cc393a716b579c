//! A dynamic axum handler behind the ETag layer, with compression inside it.
//!
//! ```sh
//! cargo run --example axum
//! curl -i http://127.0.0.1:3001/time          # changes every 10 s; max-age=10
//! ```

use axum::{http::header, response::IntoResponse, routing::get, Router};
use std::time::{SystemTime, UNIX_EPOCH};
use tower_etag::{ConstLruProvider, EtagCacheLayer};
use tower_http::compression::CompressionLayer;

async fn time() -> impl IntoResponse {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // The representation changes every ten seconds and says so.
    let body = format!("the time, in tens of seconds: {}\n", secs / 10);
    ([(header::CACHE_CONTROL, "max-age=10")], body)
}

#[tokio::main]
async fn main() {
    let app = Router::new()
        .route("/time", get(time))
        .route("/", get(|| async { "Hello from axum behind tower-etag\n" }))
        // Compression inside the cache: each encoding is hashed as sent.
        .layer(CompressionLayer::new())
        .layer(EtagCacheLayer::with_default_predicate(ConstLruProvider::<
            1024,
        >::init()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001")
        .await
        .expect("bind 127.0.0.1:3001");
    println!("listening on http://127.0.0.1:3001");
    axum::serve(listener, app).await.expect("server error");
}
