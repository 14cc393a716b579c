//! The [`CacheProvider`] trait: where the cache's knowledge lives, as two services in one type.
//!
//! The middleware calls a provider twice per cacheable request:
//!
//! 1. **lookup**, a `Service<Request<ReqBody>>` answering a [`Lookup`]: a response to send
//!    without calling the inner service ([`Lookup::Hit`]), or the request back with a key
//!    ([`Lookup::Miss`]) for step 2. A provider may change the request it hands back (turn a
//!    HEAD into a GET so the body can be hashed, add validators to revalidate).
//! 2. **store**, a `Service<StoreRequest<Key, ResBody>>` that receives the inner service's
//!    response (when the predicate lets it through): it hashes, stores, and answers the
//!    client's preconditions.
//!
//! Both services are infallible (`Error = Infallible`): a provider whose storage fails steps
//! aside and lets the response through, so the middleware never adds an error of its own.

mod const_lru;
pub mod response_cache;

pub use const_lru::{
    ConstLruProvider, ConstLruProviderBuilder, ConstLruStoreFuture, SimpleEtagCacheKey,
    DEFAULT_MAX_BODY_SIZE,
};

use crate::semantics::conditional::Preconditions;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use std::convert::Infallible;
use tower_service::Service;

/// What a provider's lookup found.
#[derive(Debug)]
#[non_exhaustive]
pub enum Lookup<ReqBody, K, B> {
    /// Answer with this response; the inner service is not called.
    Hit(Response<B>),
    /// Call the inner service with `request`, then hand its response and `key` to the
    /// provider's store service.
    Miss {
        /// The request for the inner service.
        request: Request<ReqBody>,
        /// What the store service needs to file the response.
        key: K,
    },
    /// Call the inner service and return its response untouched.
    Pass(Request<ReqBody>),
    /// Like [`Lookup::Miss`], but if the inner service fails (returns `Err`), answer with
    /// `on_error` instead (RFC 5861 `stale-if-error`).
    Revalidate {
        /// The request for the inner service.
        request: Request<ReqBody>,
        /// What the store service needs to file the response.
        key: K,
        /// The answer if the inner service fails.
        on_error: Response<B>,
    },
    /// Answer with `response` now, and in the background call the inner service with
    /// `request` and hand its response to the store service (stale-while-revalidate,
    /// refresh-ahead). Needs a tokio runtime; without one, only `response` is sent.
    Refresh {
        /// The answer for the client.
        response: Response<B>,
        /// The request for the inner service.
        request: Request<ReqBody>,
        /// What the store service needs to file the response.
        key: K,
    },
}

/// What the client asked, as it was before the provider changed the request.
#[derive(Clone, Debug)]
pub struct RequestHead {
    /// The client's method (HEAD stays HEAD even when the provider fetched a GET).
    pub method: Method,
    /// The client's preconditions.
    pub preconditions: Preconditions,
    /// Whether the request carried `Authorization` (RFC 9111 §3.5).
    pub authorization: bool,
}

impl RequestHead {
    /// Reads the head of `request`.
    pub fn from_request<B>(request: &Request<B>) -> Self {
        Self {
            method: request.method().clone(),
            preconditions: Preconditions::from_request(request.method(), request.headers()),
            authorization: request.headers().contains_key(http::header::AUTHORIZATION),
        }
    }
}

/// The input of a provider's store service.
#[derive(Debug)]
pub struct StoreRequest<K, B> {
    /// The key the lookup returned.
    pub key: K,
    /// The client's request, as it was before the lookup.
    pub head: RequestHead,
    /// The inner service's response.
    pub response: Response<B>,
}

/// The store request of provider `P` for a response with body `ResBody`.
pub(crate) type StoreOf<P, ReqBody, ResBody> =
    StoreRequest<<P as CacheProvider<ReqBody, ResBody>>::Key, ResBody>;

/// A cache behind [`EtagCacheLayer`](crate::EtagCacheLayer): a lookup service and a store
/// service in one cloneable type (clones share one cache).
///
/// Implement the two `Service`s, then this trait to name the key and body types. See
/// [`ConstLruProvider`] for a complete provider.
pub trait CacheProvider<ReqBody, ResBody>: Service<
        Request<ReqBody>,
        Response = Lookup<ReqBody, Self::Key, Self::HitBody>,
        Error = Infallible,
    > + Service<StoreRequest<Self::Key, ResBody>, Response = Response<Self::Body>, Error = Infallible>
{
    /// What lookup hands to store.
    type Key;
    /// The body of the responses lookup answers with.
    type HitBody: Body<Data = Bytes>;
    /// The body of the responses store answers with.
    type Body: Body<Data = Bytes>;
}
