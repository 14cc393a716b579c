// An inner service that cannot be cloned, behind the ETag layer.
use std::{
    convert::Infallible,
    future::{ready, Ready},
    task::{Context, Poll},
};
use tower::{Layer, Service};
use tower_etag::{ConstLruProvider, EtagCacheLayer};

struct Handler; // not Clone

impl Service<http::Request<String>> for Handler {
    type Response = http::Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: http::Request<String>) -> Self::Future {
        ready(Ok(http::Response::new(String::from("hi"))))
    }
}

fn serve<S: Service<http::Request<String>>>(_: S) {}

fn main() {
    let layer = EtagCacheLayer::with_default_predicate(ConstLruProvider::<16>::init());
    serve(layer.layer(Handler));
}
