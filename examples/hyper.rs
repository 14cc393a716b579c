//! The ETag layer in front of a plain hyper service, without axum.
//!
//! ```sh
//! cargo run --example hyper
//! curl -i http://127.0.0.1:3002/
//! ```

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use std::convert::Infallible;
use tower::{service_fn, ServiceBuilder};
use tower_etag::{ConstLruProvider, EtagCacheLayer};

async fn hello(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = format!("Hello, {}!\n", req.uri().path().trim_start_matches('/'));
    Ok(Response::new(Full::new(Bytes::from(body))))
}

#[tokio::main]
async fn main() {
    let service = ServiceBuilder::new()
        .layer(EtagCacheLayer::with_default_predicate(ConstLruProvider::<
            1024,
        >::init()))
        .service(service_fn(hello));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3002")
        .await
        .expect("bind 127.0.0.1:3002");
    println!("listening on http://127.0.0.1:3002");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection: {e}");
            }
        });
    }
}
