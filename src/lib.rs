//! ETag and HTTP caching middleware for [tower], [axum] and [hyper].
//!
//! [`EtagCacheLayer`] wraps a service with a [`CacheProvider`] and a [`PassthroughPredicate`].
//! It tags responses with strong ETags and answers conditional requests (RFC 9110 §13) with
//! `304 Not Modified` or `412 Precondition Failed`.
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_etag::{ConstLruProvider, EtagCacheLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = Router::new()
//!     .route("/", get(|| async { "Hello, World!" }))
//!     .layer(EtagCacheLayer::with_default_predicate(ConstLruProvider::<1024>::init()));
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! # let server = async move {
//! axum::serve(listener, app).await.unwrap();
//! # };
//! # drop(server);
//! # }
//! ```
//!
//! # What it does
//!
//! ```text
//! request ─► predicate ──(not cacheable)──────────────────► inner service ─► client
//!               │ cacheable
//!               ▼
//!          provider lookup ──► hit: 304 / 412 from a fresh entry ─► client
//!               │ miss (request, key)
//!               ▼
//!          inner service ─► response ─► predicate ──(not cacheable)──► client
//!                                          │ cacheable
//!                                          ▼
//!                          provider store: hash the body, file the ETag,
//!                          answer the request's preconditions ─► client
//! ```
//!
//! A 304 without calling the inner service is only sent from an entry that is fresh by the
//! response's own freshness (or an explicit TTL), never for `no-cache`, `no-store`,
//! `private` or `Set-Cookie` responses, and never to requests with `Authorization` unless the
//! response allowed sharing. Otherwise the inner service always runs, and a matching
//! `If-None-Match` still saves the client the download.
//!
//! Whatever the provider, the middleware answers the client's preconditions against the
//! validators of the response the provider hands back. A provider can be a closure that
//! knows the current tag ([`EtagCacheLayer::from_fn`], [`FnProvider`]): matching requests
//! then get their 304 (or, for a stale `If-Match`, their 412, also before a `PUT` runs)
//! without the inner service.
//!
//! # A full HTTP cache
//!
//! [`response_cache::ResponseCache`] is a provider that stores whole responses in a
//! [`store::Store`] and serves them without the inner service while they are fresh (RFC
//! 9111): revalidation, `stale-while-revalidate`, `stale-if-error`, `Vary`, request
//! coalescing, invalidation and `Cache-Status`. It gives stored responses that have no
//! validator an `ETag` of its own, so clients revalidate with it (no ETag layer needed
//! inside). Its rules are the pure [`policy`] module.
//!
//! The same cache goes in front of an HTTP client
//! ([`ResponseCacheBuilder::client`](response_cache::ResponseCacheBuilder::client)), keeps
//! per-user entries beside shared ones
//! ([`per_user`](response_cache::ResponseCacheBuilder::per_user)), and keeps registered URLs
//! fresh in the background ([`refresh::RefreshCache`]).
//!
//! # Operating it
//!
//! Counters through the `metrics` facade and one `tracing` span per request: see
//! [`middleware::observe`].
//!
//! # Safe in front of many users
//!
//! - Nothing stored for one user is served to another: `private`, `Set-Cookie` and answers
//!   to `Authorization` (unless the response allows sharing) are never stored or answered
//!   from by a shared cache, also when a `304` brings them during a revalidation.
//! - Each request is parsed once ([`RequestHead`]). A request that names two hosts (two
//!   `Host` lines, an HTTP/2 `Host` that contradicts `:authority`) gets `400 Bad Request`;
//!   an HTTP/1.1 request in absolute form has its `Host` replaced by the target's authority
//!   (RFC 9112 §3.2.2), so the key and the inner service always name the same host. A GET
//!   or HEAD with a body is never answered from, nor stored in, a cache.
//! - Everything the caches do in the background is bounded in count, bytes and time.
//!
//! # How it is built
//!
//! ```text
//! src/semantics/  RFC 9110, pure: etag, conditional, cache_control, dates, headers, request
//! src/policy/     RFC 9111, pure, clock passed in: storable, freshness and age, vary, head
//!                 updates, revalidation, invalidation
//! src/middleware/ tower plumbing: layer, service, future, body, predicate, observe
//!                 (metrics and spans), bounds (the bounds with error messages)
//! src/provider/   the CacheProvider trait; const_lru/ (ETags by hashing), from_fn (ETags
//!                 from a closure), response_cache/ (keyspace, lookup, fill, respond,
//!                 coalesce, tee, status)
//! src/store/      the Store trait (versioned, compare-and-swap writes) and the stores:
//!                 memory, fs, redis, layered, partitioned, dynamic
//! src/refresh.rs  RefreshCache: registered URLs kept fresh through the client cache
//! ```
//!
//! [`RequestHead`]: semantics::request::RequestHead
//!
//! # Where to place it
//!
//! Put compression **inside** the cache layer (closer to the handler), so each encoding is
//! hashed as sent and gets its own ETag; the key includes `Accept-Encoding` and the
//! compression layer adds `Vary: accept-encoding`. Placed outside, one strong ETag would
//! stand for both the plain and the compressed bytes, which RFC 9110 §8.8.3 forbids.
//! Put authentication **outside** or inside as you like: requests with `Authorization` are
//! never answered from the cache alone unless the response said `public`.
//!
//! [tower]: https://docs.rs/tower
//! [axum]: https://docs.rs/axum
//! [hyper]: https://docs.rs/hyper

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

/// The README's examples, compiled (and their `no_run` servers not started) as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod body;
pub mod clock;
pub mod middleware;
pub mod policy;
pub mod provider;
#[cfg(feature = "proxy")]
pub mod proxy;
pub mod refresh;
pub mod semantics;
pub mod store;
mod sync;

pub use body::{BoxError, BufferedBody, NoBody, ResponseBody};
pub use middleware::{
    future::ResponseFuture,
    layer::EtagCacheLayer,
    predicate::{self, DefaultPredicate, PassthroughPredicate},
    service::EtagCache,
};
pub use provider::{
    response_cache, CacheProvider, ConstLruProvider, FnProvider, Lookup, RequestHead,
    SimpleEtagCacheKey, StoreRequest,
};
pub use semantics::{cache_control, conditional, etag};
