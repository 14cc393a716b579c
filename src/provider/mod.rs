//! The [`CacheProvider`] trait: where the cache's knowledge lives, as two services in one type.
//!
//! The middleware calls a provider twice per cacheable request:
//!
//! 1. **lookup**, a `Service<LookupRequest<ReqBody>>` answering a [`Lookup`]: a response to
//!    send without calling the inner service ([`Lookup::Hit`]), or the request back with a key
//!    ([`Lookup::Miss`]) for step 2. The request comes with its [`RequestHead`], which the
//!    middleware parsed once. A provider may change the request it hands back (turn a HEAD
//!    into a GET so the body can be hashed, add validators to revalidate).
//! 2. **store**, a `Service<StoreRequest<Key, ResBody>>` that receives the inner service's
//!    response (when the predicate lets it through): it hashes, stores, and answers the
//!    client's preconditions.
//!
//! Both services are infallible (`Error = Infallible`): a provider whose storage fails steps
//! aside and lets the response through, so the middleware never adds an error of its own.

mod const_lru;
pub mod from_fn;
pub mod response_cache;

pub use const_lru::{
    ConstLruProvider, ConstLruProviderBuilder, ConstLruStoreFuture, SimpleEtagCacheKey,
    DEFAULT_MAX_BODY_SIZE, DEFAULT_READ_AHEAD_TIMEOUT,
};

pub use crate::semantics::request::RequestHead;
pub use from_fn::FnProvider;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use std::{convert::Infallible, sync::Arc, time::Duration};
use tower_service::Service;

/// The input of a provider's lookup: the request, and its head as the middleware read it
/// (once: providers read `head` instead of parsing the request's fields again).
#[derive(Debug)]
pub struct LookupRequest<B> {
    /// The request's head: method, authority, directives, preconditions.
    pub head: Arc<RequestHead>,
    /// The request itself.
    pub request: Request<B>,
}

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
    /// Like [`Lookup::Miss`], but if the inner service fails (returns `Err`) before
    /// `on_error_until`, answer with `on_error` instead (RFC 5861 `stale-if-error`).
    Revalidate {
        /// The request for the inner service.
        request: Request<ReqBody>,
        /// What the store service needs to file the response.
        key: K,
        /// The answer if the inner service fails.
        on_error: Response<B>,
        /// Until when `on_error` may stand in for an error.
        on_error_until: std::time::SystemTime,
    },
    /// Answer with `response` now, and in the background call the inner service with
    /// `request` and hand its response to the store service (stale-while-revalidate,
    /// refresh-ahead), giving up after `timeout`. Needs a tokio runtime; without one, only
    /// `response` is sent.
    Refresh {
        /// The answer for the client.
        response: Response<B>,
        /// The request for the inner service.
        request: Request<ReqBody>,
        /// What the store service needs to file the response.
        key: K,
        /// How long the background work may take, origin and store together.
        timeout: Duration,
    },
}

impl<ReqBody, K, B> Lookup<ReqBody, K, B> {
    /// What the lookup decided, as the middleware reports it (`cache.outcome`).
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Self::Hit(_) => "hit",
            Self::Miss { .. } => "miss",
            Self::Pass(_) => "pass",
            Self::Revalidate { .. } => "revalidate",
            Self::Refresh { .. } => "refresh",
        }
    }
}

/// The input of a provider's store service.
#[derive(Debug)]
pub struct StoreRequest<K, B> {
    /// The key the lookup returned.
    pub key: K,
    /// The client's request head, as it was before the lookup (a HEAD stays a HEAD).
    pub head: Arc<RequestHead>,
    /// The inner service's response.
    pub response: Response<B>,
}

/// The store request of provider `P` for a response with body `ResBody`.
pub(crate) type StoreOf<P, ReqBody, ResBody> =
    StoreRequest<<P as CacheProvider<ReqBody, ResBody>>::Key, ResBody>;

/// Turns a request into the one a cache sends to fill an entry: a HEAD becomes a GET, so the
/// response carries the GET representation's validators and body (Varnish does the same).
/// The client still gets a bodiless answer, reporting the size of the GET body.
pub(crate) fn fill_request<B>(request: &mut Request<B>) {
    if request.method() == Method::HEAD {
        *request.method_mut() = Method::GET;
    }
}

/// Reads `body` to its end, dropping its bytes, and stops at the first error: what commits an
/// entry that is written while its body streams, when no client reads that body (a HEAD, a
/// 304 to a conditional miss, a background refresh). The body bounds itself (a store writer
/// that gives up ends it); callers bound the time.
pub(crate) async fn drain<B: Body>(body: B) {
    let mut body = std::pin::pin!(body);
    while let Some(Ok(_)) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {}
}

/// Runs background work no client waits for (a drain, a refresh) on the current tokio
/// runtime, for at most `timeout`; `what` names it in the logs. Without a runtime nothing
/// runs: the client was answered anyway.
pub(crate) fn spawn_bounded<F>(what: &'static str, timeout: Duration, work: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::debug!(what, "no tokio runtime: background work skipped");
        return;
    };
    runtime.spawn(async move {
        if tokio::time::timeout(timeout, work).await.is_err() {
            tracing::debug!(what, ?timeout, "background work abandoned");
        }
    });
}

/// A cache behind [`EtagCacheLayer`](crate::EtagCacheLayer): a lookup service and a store
/// service in one cloneable type (clones share one cache).
///
/// Most applications need no provider of their own: [`ConstLruProvider`] hashes bodies,
/// [`FnProvider`] (`EtagCacheLayer::from_fn`) asks a closure for the current tag, and
/// [`ResponseCache`](response_cache::ResponseCache) stores whole responses. To write one,
/// implement the two `Service`s, then this trait to name the key and body types. See
/// [`FnProvider`] for a small complete provider.
///
/// What the middleware does, so that a provider need not:
///
/// - **Preconditions.** The middleware answers the client's `If-None-Match`, `If-Match`,
///   `If-Modified-Since` and `If-Unmodified-Since` (RFC 9110 §13.2.2) against the `ETag` and
///   `Last-Modified` of the 2xx response the store service returns to a safe request, and
///   drops that response's body when the answer is a 304 or 412. A provider that only tags
///   responses gets its 304s. A provider may answer them itself (a 304 it returns goes out
///   as it is), and must, in its lookup, where the inner service must not run: a 412 for an
///   unsafe method, a 304 from what it knows.
/// - **Unsafe methods.** Requests with unsafe methods (POST, PUT, DELETE, ...) always reach
///   the lookup, whatever the [`PassthroughPredicate`](crate::PassthroughPredicate) says, and
///   their responses always reach the store service: that is where a provider invalidates
///   what it holds for their target (RFC 9111 §4.4) or refuses them (`If-Match`).
/// - **Hosts.** Ambiguous requests are refused and `Host` is set to the keyed authority
///   before the lookup ([`RequestHead`] is parsed once, read it instead of the headers).
///
/// The body types: `HitBody` is the body of the responses the **lookup** answers with
/// ([`Lookup::Hit`], [`Lookup::Refresh`], ...), `Body` the body of the responses the
/// **store** service returns. (Associated types cannot have deprecated aliases, so these
/// names stay those of tower-etag-cache 0.1.)
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a cache provider for request bodies `{ReqBody}` and response bodies `{ResBody}`",
    label = "not a `CacheProvider`",
    note = "a provider is a lookup `Service<LookupRequest<_>>` and a store `Service<StoreRequest<_, _>>` \
            in one `Clone` type, plus this trait; for ETags from a closure use \
            `EtagCacheLayer::from_fn`, for hashed ETags `ConstLruProvider`"
)]
pub trait CacheProvider<ReqBody, ResBody>: Service<
        LookupRequest<ReqBody>,
        Response = Lookup<ReqBody, Self::Key, Self::HitBody>,
        Error = Infallible,
    > + Service<StoreRequest<Self::Key, ResBody>, Response = Response<Self::Body>, Error = Infallible>
{
    /// Whether this provider answers the client's preconditions itself, everywhere it is
    /// allowed to (a cache that evaluates them only where RFC 9111 §4.3.2 lets it): the
    /// middleware then leaves the store service's responses as they are. `false` by
    /// default: the middleware answers them against the validators of the 2xx response the
    /// store service returns (see above).
    const ANSWERS_PRECONDITIONS: bool = false;

    /// What lookup hands to store.
    type Key;
    /// The body of the responses lookup answers with.
    type HitBody: Body<Data = Bytes>;
    /// The body of the responses store answers with.
    type Body: Body<Data = Bytes>;

    /// The time now, by the provider's clock: what the middleware holds a
    /// [`Lookup::Revalidate`]'s `on_error_until` against. The system's clock by default; a
    /// provider with a clock of its own (a [`ResponseCache`](response_cache::ResponseCache)
    /// built with a [`ManualClock`](crate::clock::ManualClock)) answers with it.
    fn now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }
}
