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
//! - A GET or HEAD whose `If-None-Match` matches gets `304 Not Modified` without the inner
//!   service running; a failing `If-Match` gets `412 Precondition Failed`, for every method:
//!   a `PUT` with a stale `If-Match` is refused before the handler runs (the lost-update
//!   check of RFC 9110 §13.1.1).
//! - Otherwise the inner service runs and its response gets the closure's tag when it has
//!   none of its own (a response's own `ETag` wins). The middleware then answers the
//!   preconditions against that tag.
//! - `None` means "no tag known": the request goes to the inner service, and the
//!   preconditions are answered against the response's own validators, if any.
//!
//! The tag must identify the representation the request selects: when responses vary (by
//! `Accept-Encoding`, `Accept-Language`, ...), so must the tag (RFC 9110 §8.8.3). A 304 made
//! here carries the `ETag` only: the closure knows nothing of the other fields of a 200.

use super::{CacheProvider, Lookup, LookupRequest, StoreRequest};
use crate::{
    middleware::{body::NoBody, bounds::BytesBody},
    semantics::{
        conditional::{Outcome, Validators},
        etag::EntityTag,
    },
};
use http::{header::ETAG, request, Request, Response, StatusCode};
use http_body::{Body, SizeHint};
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
        // A 304 states no size (RFC 9110 §8.6); a 412 is empty.
        let hint = if status == StatusCode::NOT_MODIFIED {
            SizeHint::new()
        } else {
            SizeHint::with_exact(0)
        };
        let mut answer = Response::new(NoBody::with_hint(hint));
        *answer.status_mut() = status;
        answer.headers_mut().insert(ETAG, tag.to_header_value());
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
            response
                .headers_mut()
                .entry(ETAG)
                .or_insert_with(|| tag.to_header_value());
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
