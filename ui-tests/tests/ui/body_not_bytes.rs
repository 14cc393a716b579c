// A handler whose body chunks are `&[u8]`, not `Bytes`, behind the response cache.
use http_body_util::Full;
use std::convert::Infallible;
use tower::{service_fn, Layer, Service};
use tower_etag::{response_cache::ResponseCache, store::MemoryStore};

fn serve<S: Service<http::Request<Full<bytes::Bytes>>>>(_: S) {}

fn main() {
    let cache = ResponseCache::new(MemoryStore::new());
    let handler = service_fn(|_req: http::Request<Full<bytes::Bytes>>| async {
        Ok::<_, Infallible>(http::Response::new(Full::new(&b"hi"[..])))
    });
    serve(cache.layer().layer(handler));
}
