// Something that is not a provider, given to the ETag layer.
use tower::{service_fn, Layer, Service};
use tower_etag::EtagCacheLayer;

#[derive(Clone)]
struct MyCache;

fn serve<S: Service<http::Request<String>>>(_: S) {}

fn main() {
    let handler = service_fn(|_req: http::Request<String>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    });
    serve(EtagCacheLayer::with_default_predicate(MyCache).layer(handler));
}
