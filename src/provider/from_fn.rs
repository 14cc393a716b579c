//! [`FnProvider`]: a provider from a closure that knows a request's current entity tag.
//!
//! When the application can tell the current version of what a request selects without
//! building the response (a row's version column, a file's hash kept in memory, a build id),
//! a closure is the whole provider:
//!
//! ```
//! use axum::{routing::{get, put}, Router};
//! use tower_etag::{etag::EntityTag, EtagCacheLayer};
//!
//! let layer = EtagCacheLayer::from_fn(|request: &http::request::Parts| {
//!     // e.g. the version of the document named by the path, looked up in memory
//!     (request.uri.path() == "/doc").then(|| EntityTag::strong("v7").unwrap())
//! });
//! let app: Router = Router::new()
//!     .route("/doc", get(|| async { "version 7" }).put(|| async { "saved" }))
//!     .layer(layer);
//! # let _ = app;
//! ```
//!
//! - When the closure gives a tag, a GET or HEAD whose `If-None-Match` matches it gets
//!   `304 Not Modified` without the inner service running, and a failing `If-Match` gets
//!   `412 Precondition Failed`, for every method that selects or changes a representation:
//!   a `PUT` with a stale `If-Match` is refused before the handler runs (the lost-update
//!   check of RFC 9110 §13.1.1).
//! - Otherwise the inner service runs, and a 2xx answer to a safe request carries the
//!   closure's tag (replacing one the handler set: the tag the preconditions were checked
//!   against is the one clients get). The middleware then answers the preconditions against
//!   it.
//! - `None` means "no tag known": the request goes to the inner service, and the
//!   preconditions of a safe request are answered against the response's own validators, if
//!   any. An unsafe request then reaches the handler with its `If-Match` unchecked: the
//!   handler must check it, or the closure must know a tag.
//!
//! **The closure speaks for the handler before it runs.** RFC 9110 §13.2.1 answers
//! preconditions only for requests that would otherwise succeed, so return `None` for a
//! request the handler would refuse or not find (404, 405, 401/403), and put authentication
//! and authorisation **outside** this layer: a 304 or 412 from here is sent without them. (A
//! 412 carries no `ETag`, so it does not tell the current tag to a client that guessed.)
//!
//! The tag must identify the representation the request selects: when responses vary (by
//! `Accept-Encoding`, `Accept-Language`, ...), so must the tag (RFC 9110 §8.8.3). A 304 made
//! here carries the `ETag` only: the closure knows nothing of the other fields of a 200.

use super::{CacheProvider, Lookup, LookupRequest, StoreRequest};
use crate::semantics::headers::bodiless_hint;
use crate::{
    body::NoBody,
    middleware::bounds::BytesBody,
    semantics::{
        conditional::{Outcome, Validators},
        etag::EntityTag,
    },
};
use http::{header::ETAG, request, Request, Response, StatusCode};
use http_body::Body;
use std::{
    convert::Infallible,
    fmt,
    future::{ready, Ready},
    task::{Context, Poll},
};
use tower_service::Service;

/// A provider whose knowledge is a closure: `Fn(&http::request::Parts) -> Option<EntityTag>`,
/// the current entity tag of what the request selects. Made by
/// [`EtagCacheLayer::from_fn`](crate::EtagCacheLayer::from_fn); see [the module](self).
#[derive(Clone)]
pub struct FnProvider<F> {
    current_tag: F,
}

impl<F> FnProvider<F> {
    /// A provider asking `current_tag` for the entity tag of each request's target.
    pub fn new(current_tag: F) -> Self {
        Self { current_tag }
    }
}

impl<F> fmt::Debug for FnProvider<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnProvider").finish_non_exhaustive()
    }
}

impl<F, ReqBody> Service<LookupRequest<ReqBody>> for FnProvider<F>
where
    F: Fn(&request::Parts) -> Option<EntityTag>,
{
    type Response = Lookup<ReqBody, Option<EntityTag>, NoBody>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, lookup: LookupRequest<ReqBody>) -> Self::Future {
        let LookupRequest { head, request } = lookup;
        let (parts, body) = request.into_parts();
        let tag = (self.current_tag)(&parts);
        let request = Request::from_parts(parts, body);
        let Some(tag) = tag else {
            return ready(Ok(Lookup::Miss { request, key: None }));
        };
        let current = Validators {
            etag: Some(&tag),
            last_modified: None,
        };
        let status = match head.preconditions.evaluate(current) {
            Outcome::Proceed => {
                return ready(Ok(Lookup::Miss {
                    request,
                    key: Some(tag),
                }))
            }
            Outcome::NotModified => StatusCode::NOT_MODIFIED,
            Outcome::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        };
        let mut answer = Response::new(NoBody::with_hint(bodiless_hint(status)));
        *answer.status_mut() = status;
        if status == StatusCode::NOT_MODIFIED {
            // RFC 9110 §15.4.5: a 304 carries the ETag a 200 would have had. A 412 does not
            // (it would tell a client that guessed wrong what to send).
            answer.headers_mut().insert(ETAG, tag.to_header_value());
        }
        ready(Ok(Lookup::Hit(answer)))
    }
}

impl<F, ResBody> Service<StoreRequest<Option<EntityTag>, ResBody>> for FnProvider<F> {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = Ready<Result<Response<ResBody>, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, store: StoreRequest<Option<EntityTag>, ResBody>) -> Self::Future {
        let StoreRequest {
            key: tag,
            head,
            mut response,
        } = store;
        // Only what was selected by a safe request and succeeded is the tagged representation.
        let tags = head.method.is_safe() && response.status().is_success();
        if let (true, Some(tag)) = (tags, tag) {
            let value = tag.to_header_value();
            if let Some(own) = response.headers().get(ETAG).filter(|own| **own != value) {
                tracing::debug!(handler = ?own, closure = ?value, "the closure's tag replaces the handler's");
            }
            response.headers_mut().insert(ETAG, value);
        }
        ready(Ok(response))
    }
}

impl<F, ReqBody, ResBody> CacheProvider<ReqBody, ResBody> for FnProvider<F>
where
    F: Fn(&request::Parts) -> Option<EntityTag>,
    ResBody: Body + BytesBody,
{
    type Key = Option<EntityTag>;
    type HitBody = NoBody;
    type Body = ResBody;
}
