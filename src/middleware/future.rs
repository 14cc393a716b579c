use super::{body::ResponseBody, predicate::PassthroughPredicate};
use crate::provider::{CacheProvider, Lookup, RequestHead, StoreOf, StoreRequest};
use http::{Method, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};
use tower_service::Service;

type LookupFuture<P, ReqBody> = <P as Service<Request<ReqBody>>>::Future;
type StoreFuture<P, ReqBody, ResBody> = <P as Service<StoreOf<P, ReqBody, ResBody>>>::Future;
type Output<P, ReqBody, ResBody> = Response<
    ResponseBody<
        ResBody,
        <P as CacheProvider<ReqBody, ResBody>>::HitBody,
        <P as CacheProvider<ReqBody, ResBody>>::Body,
    >,
>;

pin_project! {
    /// The response future of [`EtagCache`](crate::EtagCache).
    pub struct ResponseFuture<S, P, Pred, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
        P: CacheProvider<ReqBody, ResBody>,
    {
        #[pin]
        state: State<S::Future, LookupFuture<P, ReqBody>, StoreFuture<P, ReqBody, ResBody>>,
        // Everything below is used once, in the order the states run.
        inner: Option<S>,
        provider: Option<P>,
        predicate: Option<Pred>,
        head: Option<RequestHead>,
        key: Option<P::Key>,
        store: Option<StoreRequest<P::Key, ResBody>>,
        on_error: Option<Response<P::HitBody>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, L, T> {
        /// The cache is not involved: the inner service's response goes out as it is.
        Passthrough { #[pin] fut: F },
        /// Waiting for the provider's lookup.
        Lookup { #[pin] fut: L },
        /// A miss: waiting for the inner service.
        Inner { #[pin] fut: F },
        /// Waiting for the provider's store service to be ready.
        StoreReady,
        /// Waiting for the provider to hash and store.
        Store { #[pin] fut: T },
    }
}

impl<S, P, Pred, ReqBody, ResBody> std::fmt::Debug for ResponseFuture<S, P, Pred, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
    P: CacheProvider<ReqBody, ResBody>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Passthrough { .. } => "Passthrough",
            State::Lookup { .. } => "Lookup",
            State::Inner { .. } => "Inner",
            State::StoreReady => "StoreReady",
            State::Store { .. } => "Store",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, P, Pred, ReqBody, ResBody> ResponseFuture<S, P, Pred, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
    P: CacheProvider<ReqBody, ResBody>,
{
    pub(crate) fn passthrough(fut: S::Future) -> Self {
        Self {
            state: State::Passthrough { fut },
            inner: None,
            provider: None,
            predicate: None,
            head: None,
            key: None,
            store: None,
            on_error: None,
        }
    }

    pub(crate) fn lookup(
        fut: LookupFuture<P, ReqBody>,
        inner: S,
        provider: P,
        predicate: Pred,
        head: RequestHead,
    ) -> Self {
        Self {
            state: State::Lookup { fut },
            inner: Some(inner),
            provider: Some(provider),
            predicate: Some(predicate),
            head: Some(head),
            key: None,
            store: None,
            on_error: None,
        }
    }
}

const USED: &str = "ResponseFuture polled after completion";

impl<S, P, Pred, ReqBody, ResBody> Future for ResponseFuture<S, P, Pred, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    P: CacheProvider<ReqBody, ResBody> + Send + 'static,
    P::Key: Send,
    P::Body: Send + 'static,
    <P::Body as Body>::Data: Send,
    StoreFuture<P, ReqBody, ResBody>: Send,
    Pred: PassthroughPredicate + Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body + Send + 'static,
{
    type Output = Result<Output<P, ReqBody, ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Passthrough { fut } => {
                    let res = ready!(fut.poll(cx))?;
                    return Poll::Ready(Ok(res.map(ResponseBody::inner)));
                }
                StateProj::Lookup { fut } => {
                    let Ok(lookup) = ready!(fut.poll(cx));
                    let mut inner = this.inner.take().expect(USED);
                    match lookup {
                        Lookup::Hit(res) => return Poll::Ready(Ok(res.map(ResponseBody::hit))),
                        Lookup::Miss { request, key } => {
                            *this.key = Some(key);
                            this.state.set(State::Inner {
                                fut: inner.call(request),
                            });
                        }
                        Lookup::Pass(request) => {
                            this.state.set(State::Passthrough {
                                fut: inner.call(request),
                            });
                        }
                        Lookup::Revalidate {
                            request,
                            key,
                            on_error,
                        } => {
                            *this.key = Some(key);
                            *this.on_error = Some(on_error);
                            this.state.set(State::Inner {
                                fut: inner.call(request),
                            });
                        }
                        Lookup::Refresh {
                            response,
                            request,
                            key,
                        } => {
                            let head = this.head.take().expect(USED);
                            let provider = this.provider.take().expect(USED);
                            let predicate = this.predicate.take().expect(USED);
                            spawn_refresh(inner, provider, predicate, key, head, request);
                            return Poll::Ready(Ok(response.map(ResponseBody::hit)));
                        }
                    }
                }
                StateProj::Inner { fut } => {
                    let res = match ready!(fut.poll(cx)) {
                        Ok(res) => res,
                        Err(e) => {
                            return Poll::Ready(match this.on_error.take() {
                                Some(stale) => Ok(stale.map(ResponseBody::hit)),
                                None => Err(e),
                            })
                        }
                    };
                    let head = this.head.take().expect(USED);
                    let key = this.key.take().expect(USED);
                    // Responses to unsafe methods always reach the provider, which invalidates
                    // (RFC 9111 §4.4); the predicate only chooses among safe ones.
                    let predicate = this.predicate.as_ref().expect(USED);
                    if head.method.is_safe() && !predicate.cache_response(&res) {
                        // A provider may have fetched a HEAD as a GET: the client gets no
                        // body, but the size of the one it stands for.
                        let res = if head.method == Method::HEAD {
                            res.map(|b| ResponseBody::empty(b.size_hint()))
                        } else {
                            res.map(ResponseBody::inner)
                        };
                        return Poll::Ready(Ok(res));
                    }
                    *this.store = Some(StoreRequest {
                        key,
                        head,
                        response: res,
                    });
                    this.state.set(State::StoreReady);
                }
                StateProj::StoreReady => {
                    let provider = this.provider.as_mut().expect(USED);
                    let Ok(()) = ready!(<P as Service<StoreOf<P, ReqBody, ResBody>>>::poll_ready(
                        provider, cx
                    ));
                    let store = this.store.take().expect(USED);
                    let fut = <P as Service<StoreOf<P, ReqBody, ResBody>>>::call(provider, store);
                    this.state.set(State::Store { fut });
                }
                StateProj::Store { fut } => {
                    let Ok(res) = ready!(fut.poll(cx));
                    return Poll::Ready(Ok(res.map(ResponseBody::stored)));
                }
            }
        }
    }
}

/// Runs a background refresh: the inner service, then the provider's store service, whose
/// response body is read to its end (that is what commits a streamed entry) and dropped.
/// Without a tokio runtime nothing runs; the stale answer was sent anyway.
fn spawn_refresh<S, P, Pred, ReqBody, ResBody>(
    mut inner: S,
    mut provider: P,
    predicate: Pred,
    key: P::Key,
    head: RequestHead,
    request: Request<ReqBody>,
) where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send,
    P: CacheProvider<ReqBody, ResBody> + Send + 'static,
    P::Key: Send,
    P::Body: Send + 'static,
    <P::Body as Body>::Data: Send,
    StoreFuture<P, ReqBody, ResBody>: Send,
    Pred: PassthroughPredicate + Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Send + 'static,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::debug!("no tokio runtime: background refresh skipped");
        return;
    };
    runtime.spawn(async move {
        // `inner` was made ready by `EtagCache::poll_ready` before it was handed over.
        let Ok(response) = inner.call(request).await else {
            tracing::debug!("background refresh: the inner service failed");
            return;
        };
        if !predicate.cache_response(&response) {
            return;
        }
        let store = StoreRequest {
            key,
            head,
            response,
        };
        let Ok(()) = std::future::poll_fn(|cx| {
            <P as Service<StoreOf<P, ReqBody, ResBody>>>::poll_ready(&mut provider, cx)
        })
        .await;
        let Ok(stored) =
            <P as Service<StoreOf<P, ReqBody, ResBody>>>::call(&mut provider, store).await;
        let mut body = std::pin::pin!(stored.into_body());
        while let Some(Ok(_)) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {}
    });
}
