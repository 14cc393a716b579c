use super::{
    bounds::CloneService,
    future::ResponseFuture,
    layer::EtagCacheLayer,
    observe,
    predicate::{DefaultPredicate, PassthroughPredicate},
};
use crate::body::{BoxError, ResponseBody};
use crate::{
    provider::{CacheProvider, LookupRequest, StoreOf},
    semantics::request::{host_to_forward, RequestHead},
};
use http::{header::HOST, Request, Response};
use http_body::Body;
use std::{
    mem,
    sync::Arc,
    task::{Context, Poll},
};
use tower_service::Service;

/// The middleware: asks its [`CacheProvider`] before and after the inner service. Made by
/// [`EtagCacheLayer`].
///
/// Its error is the inner service's: the cache adds none of its own (a provider that fails
/// steps aside), so an infallible inner service stays infallible (axum needs no
/// `HandleErrorLayer`).
///
/// Each request the cache looks at is parsed once ([`RequestHead`]) and handed to the
/// provider with it. A request that names its target ambiguously (two `Host` lines, an
/// HTTP/2 `Host` that contradicts `:authority`) is answered `400 Bad Request` without
/// calling the inner service. Every other request reaches the inner service with a `Host`
/// that is exactly the authority the cache keys it under (see
/// [`host_to_forward`](crate::semantics::request::host_to_forward)): the target's for an
/// HTTP/1.1 request in absolute form (RFC 9112 §3.2.2) or an HTTP/2 one, lower-case and
/// without the default port.
#[derive(Clone, Debug)]
pub struct EtagCache<S, P, Pred = DefaultPredicate> {
    inner: S,
    provider: P,
    predicate: Pred,
}

impl<S, P, Pred> EtagCache<S, P, Pred> {
    /// Wraps `inner`.
    pub fn new(inner: S, provider: P, predicate: Pred) -> Self {
        Self {
            inner,
            provider,
            predicate,
        }
    }

    /// A layer that wraps services with `provider` and `predicate`.
    pub fn layer(provider: P, predicate: Pred) -> EtagCacheLayer<P, Pred> {
        EtagCacheLayer::new(provider, predicate)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        &self.provider
    }
}

impl<S, P, Pred, ReqBody, ResBody> Service<Request<ReqBody>> for EtagCache<S, P, Pred>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>
        + CloneService<Request<ReqBody>>
        + Send
        + 'static,
    S::Future: Send,
    P: CacheProvider<ReqBody, ResBody> + Clone + Send + 'static,
    P::Key: Send,
    P::Body: Send + 'static,
    <P::Body as Body>::Data: Send,
    <P as Service<StoreOf<P, ReqBody, ResBody>>>::Future: Send,
    Pred: PassthroughPredicate + Send + 'static,
    ReqBody: Body + Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody, P::HitBody, P::Body>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, P, Pred, ReqBody, ResBody>;

    /// Ready when the inner service and the provider's lookup are: a request may go to the
    /// inner service without a lookup (the predicate says so) or after one.
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        std::task::ready!(self.inner.poll_ready(cx))?;
        let Ok(()) = std::task::ready!(<P as Service<LookupRequest<ReqBody>>>::poll_ready(
            &mut self.provider,
            cx
        ));
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let span = observe::request_span(request.method());
        let entered = span.enter();
        // RFC 9111 §4.4: a response to an unsafe method invalidates what the cache holds for
        // its target. That is not the predicate's to switch off, so such requests always go
        // to the provider (which passes them through).
        if request.method().is_safe() && !self.predicate.cache_request(&request) {
            observe::outcome(&span, "bypass");
            drop(entered);
            return ResponseFuture::passthrough(span, self.inner.call(request));
        }
        let head = match RequestHead::from_request(&request) {
            Ok(head) => Arc::new(head),
            Err(bad) => {
                tracing::debug!(reason = %bad, "refusing an ambiguous request");
                drop(entered);
                return ResponseFuture::bad_request(span);
            }
        };
        // The target as the cache keys it: authority, path and query (no user).
        observe::key(&span, head.authority.as_deref(), request.uri());
        if let Some(host) = host_to_forward(head.authority.as_ref(), request.headers()) {
            request.headers_mut().insert(HOST, host);
        }
        // The inner service is called later, from the future: take the one that was made
        // ready and leave a clone in its place.
        let clone = self.inner.clone();
        let inner = mem::replace(&mut self.inner, clone);
        let lookup = <P as Service<LookupRequest<ReqBody>>>::call(
            &mut self.provider,
            LookupRequest {
                head: Arc::clone(&head),
                request,
            },
        );
        drop(entered);
        ResponseFuture::lookup(
            span,
            lookup,
            inner,
            self.provider.clone(),
            self.predicate.clone(),
            head,
        )
    }
}
