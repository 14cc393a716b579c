//! Helper traits that stand for a bound of the middleware, so that a type that misses the
//! bound gets an error message that names the likely cause and the fix, instead of a
//! `Clone` or `Data = Bytes` mismatch deep in a type. Every type that meets the bound
//! implements them: never implement them yourself.

use bytes::Bytes;
use http_body::Body;
use tower_service::Service;

/// A service the middleware can call from its response future: it keeps a clone.
#[diagnostic::on_unimplemented(
    message = "the service `{Self}` inside a tower-etag layer must be `Clone`",
    label = "not `Clone`",
    note = "the layer calls its inner service from the response future, so it keeps a clone: \
            wrap a service that cannot be cloned in `tower::buffer::Buffer::new(service, 1024)`, \
            or share its state through an `Arc`"
)]
pub trait CloneService<R>: Service<R> + Clone {}

#[diagnostic::do_not_recommend]
impl<S: Service<R> + Clone, R> CloneService<R> for S {}

/// A body whose chunks are [`Bytes`], as the caches store and hash them.
#[diagnostic::on_unimplemented(
    message = "the body `{Self}` must have `Data = bytes::Bytes` to be cached",
    label = "its `Data` is not `Bytes`",
    note = "turn its chunks into `Bytes` first: `.map_response_body(|b| b.map_frame(|f| \
            f.map_data(|d| d.copy_to_bytes(d.remaining()))))` (tower-http's \
            `MapResponseBodyLayer`, `http_body_util::BodyExt::map_frame`)"
)]
pub trait BytesBody: Body<Data = Bytes> {}

#[diagnostic::do_not_recommend]
impl<B: Body<Data = Bytes>> BytesBody for B {}
