use super::observe::outcome;
use super::predicate::PassthroughPredicate;
use crate::body::ResponseBody;
use crate::provider::{
    spawn_bounded, CacheProvider, Lookup, LookupRequest, RequestHead, StoreOf, StoreRequest,
};
use crate::semantics::headers::{answer_preconditions_as, bodiless_hint, Answer, Role};
use http::{Request, Response, StatusCode};
use http_body::{Body, SizeHint};
use pin_project_lite::pin_project;
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
    time::SystemTime,
};
use tower_service::Service;

type LookupFuture<P, ReqBody> = <P as Service<LookupRequest<ReqBody>>>::Future;
type StoreFuture<P, ReqBody, ResBody> = <P as Service<StoreOf<P, ReqBody, ResBody>>>::Future;
type Key<P, ReqBody, ResBody> = <P as CacheProvider<ReqBody, ResBody>>::Key;
type Hit<P, ReqBody, ResBody> = <P as CacheProvider<ReqBody, ResBody>>::HitBody;
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
        // The request's span: entered while the provider works, so that it can record what
        // it did (`cache.status`).
        span: tracing::Span,
        #[pin]
        state: State<
            S,
            S::Future,
            P,
            LookupFuture<P, ReqBody>,
            StoreFuture<P, ReqBody, ResBody>,
            Pred,
            Key<P, ReqBody, ResBody>,
            Response<Hit<P, ReqBody, ResBody>>,
            ResBody,
        >,
    }
}

pin_project! {
    /// Each state holds what the states after it need, and hands it on: nothing is looked up
    /// in an `Option` that "must" be set.
    #[project = StateProj]
    #[project_replace = StateOwned]
    enum State<S, F, P, L, T, Pred, K, OnError, ResBody> {
        /// The cache is not involved: the inner service's response goes out as it is.
        Passthrough { #[pin] fut: F },
        /// The request was refused before anything else ran.
        BadRequest,
        /// Waiting for the provider's lookup.
        Lookup {
            #[pin]
            fut: L,
            inner: S,
            provider: P,
            predicate: Pred,
            head: Arc<RequestHead>,
        },
        /// A miss or a revalidation: waiting for the inner service.
        Inner {
            #[pin]
            fut: F,
            provider: P,
            predicate: Pred,
            head: Arc<RequestHead>,
            key: K,
            // The answer if the inner service fails (stale-if-error), and until when.
            on_error: Option<(OnError, SystemTime)>,
        },
        /// Waiting for the provider's store service to be ready.
        StoreReady {
            provider: P,
            request: StoreRequest<K, ResBody>,
        },
        /// Waiting for the provider to hash and store.
        Store { #[pin] fut: T, head: Arc<RequestHead> },
        /// The response went out.
        Done,
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
            State::BadRequest => "BadRequest",
            State::Lookup { .. } => "Lookup",
            State::Inner { .. } => "Inner",
            State::StoreReady { .. } => "StoreReady",
            State::Store { .. } => "Store",
            State::Done => "Done",
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
    pub(crate) fn passthrough(span: tracing::Span, fut: S::Future) -> Self {
        Self {
            span,
            state: State::Passthrough { fut },
        }
    }

    pub(crate) fn bad_request(span: tracing::Span) -> Self {
        Self {
            span,
            state: State::BadRequest,
        }
    }

    pub(crate) fn lookup(
        span: tracing::Span,
        fut: LookupFuture<P, ReqBody>,
        inner: S,
        provider: P,
        predicate: Pred,
        head: Arc<RequestHead>,
    ) -> Self {
        Self {
            span,
            state: State::Lookup {
                fut,
                inner,
                provider,
                predicate,
                head,
            },
        }
    }
}

const POLLED_AFTER_DONE: &str = "ResponseFuture polled after it completed";

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
        let this = self.project();
        let _entered = this.span.enter();
        let mut state = this.state;
        loop {
            // Poll the current state's future; on completion, take the state's data (the
            // future is done with) and move to the next state.
            let next = match state.as_mut().project() {
                StateProj::Passthrough { fut } => {
                    let res = ready!(fut.poll(cx));
                    state.set(State::Done);
                    return Poll::Ready(res.map(|res| res.map(ResponseBody::inner)));
                }
                StateProj::BadRequest => {
                    outcome(this.span, "bad-request");
                    state.set(State::Done);
                    let mut res = Response::new(ResponseBody::empty(SizeHint::with_exact(0)));
                    *res.status_mut() = StatusCode::BAD_REQUEST;
                    return Poll::Ready(Ok(res));
                }
                StateProj::Lookup { fut, .. } => {
                    let Ok(lookup) = ready!(fut.poll(cx));
                    let StateOwned::Lookup {
                        mut inner,
                        provider,
                        predicate,
                        head,
                        ..
                    } = state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("in the Lookup state")
                    };
                    outcome(this.span, lookup.outcome());
                    match lookup {
                        Lookup::Hit(res) => return Poll::Ready(Ok(res.map(ResponseBody::hit))),
                        Lookup::Pass(request) => State::Passthrough {
                            fut: inner.call(request),
                        },
                        Lookup::Miss { request, key } => State::Inner {
                            fut: inner.call(request),
                            provider,
                            predicate,
                            head,
                            key,
                            on_error: None,
                        },
                        Lookup::Revalidate {
                            request,
                            key,
                            on_error,
                            on_error_until,
                        } => State::Inner {
                            fut: inner.call(request),
                            provider,
                            predicate,
                            head,
                            key,
                            on_error: Some((on_error, on_error_until)),
                        },
                        Lookup::Refresh {
                            response,
                            request,
                            key,
                            timeout,
                        } => {
                            let work = Refresh {
                                inner,
                                provider,
                                predicate,
                                key,
                                head,
                                request,
                            };
                            spawn_bounded("background refresh", timeout, refresh(work));
                            return Poll::Ready(Ok(response.map(ResponseBody::hit)));
                        }
                    }
                }
                StateProj::Inner { fut, .. } => {
                    let result = ready!(fut.poll(cx));
                    let StateOwned::Inner {
                        provider,
                        predicate,
                        head,
                        key,
                        on_error,
                        ..
                    } = state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("in the Inner state")
                    };
                    let res = match (result, on_error) {
                        (Ok(res), _) => res,
                        // Past its deadline by the provider's clock, a stale answer is not served.
                        (Err(_), Some((stale, until))) if provider.now() <= until => {
                            return Poll::Ready(Ok(stale.map(ResponseBody::hit)));
                        }
                        (Err(e), _) => return Poll::Ready(Err(e)),
                    };
                    #[cfg(debug_assertions)]
                    super::observe::check_encoding(&res);
                    // Responses to unsafe methods always reach the provider, which invalidates
                    // (RFC 9111 §4.4); the predicate only chooses among safe ones.
                    if head.method.is_safe() && !predicate.cache_response(&res) {
                        return Poll::Ready(Ok(uncached(&head, res)));
                    }
                    State::StoreReady {
                        provider,
                        request: StoreRequest {
                            key,
                            head,
                            response: res,
                        },
                    }
                }
                StateProj::StoreReady { provider, .. } => {
                    let Ok(()) = ready!(<P as Service<StoreOf<P, ReqBody, ResBody>>>::poll_ready(
                        provider, cx
                    ));
                    let StateOwned::StoreReady {
                        mut provider,
                        request,
                    } = state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("in the StoreReady state")
                    };
                    State::Store {
                        head: Arc::clone(&request.head),
                        fut: <P as Service<StoreOf<P, ReqBody, ResBody>>>::call(
                            &mut provider,
                            request,
                        ),
                    }
                }
                StateProj::Store { fut, head } => {
                    let Ok(res) = ready!(fut.poll(cx));
                    let res = res.map(ResponseBody::stored);
                    let res = if <P as CacheProvider<ReqBody, ResBody>>::ANSWERS_PRECONDITIONS {
                        res
                    } else {
                        answer_client(head, res)
                    };
                    state.set(State::Done);
                    return Poll::Ready(Ok(res));
                }
                StateProj::Done => panic!("{POLLED_AFTER_DONE}"),
            };
            state.set(next);
        }
    }
}

/// Answers the client's preconditions (RFC 9110 §13.2.2) against the validators of the
/// response the provider handed back, whatever the provider: a provider that only tags
/// responses (or forgot to evaluate) still gets its 304s and 412s. Only safe methods: for
/// the others, the method has already been performed, and only a provider's lookup can stop
/// it (with a 412 before the inner service runs). Only 2xx responses (§13.2.1); a provider's
/// own 304 or 412 goes out as it is. The provider's body is dropped unread.
///
/// A provider that answered the preconditions itself (the response cache does, so that a
/// body it still has to store is drained in the background) hands back either its 304 or
/// 412, which this leaves alone, or a 2xx whose validators it found not to match: the same
/// evaluation here says the same.
fn answer_client<B, H, T>(
    head: &RequestHead,
    res: Response<ResponseBody<B, H, T>>,
) -> Response<ResponseBody<B, H, T>> {
    if head.preconditions.is_empty() || !head.method.is_safe() || !res.status().is_success() {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let body = match answer_preconditions_as(&mut parts, &head.preconditions, false, Role::Origin) {
        Answer::Full | Answer::Head => body,
        Answer::NotModified | Answer::PreconditionFailed => {
            ResponseBody::empty(bodiless_hint(parts.status))
        }
    };
    Response::from_parts(parts, body)
}

/// The inner service's response, untouched by the cache; for a HEAD (which a provider may
/// have fetched as a GET) without the body, but with its size.
fn uncached<B: Body, H, T>(
    head: &RequestHead,
    res: Response<B>,
) -> Response<ResponseBody<B, H, T>> {
    if head.is_head() {
        res.map(|b| ResponseBody::empty(b.size_hint()))
    } else {
        res.map(ResponseBody::inner)
    }
}

/// What a background refresh needs: the inner service (made ready by `EtagCache::poll_ready`
/// before it was handed over), the provider, and what it stores under.
struct Refresh<S, P, Pred, K, ReqBody> {
    inner: S,
    provider: P,
    predicate: Pred,
    key: K,
    head: Arc<RequestHead>,
    request: Request<ReqBody>,
}

/// A background refresh: the inner service, then the provider's store service, whose
/// response body is read to its end (that is what commits a streamed entry) and dropped.
async fn refresh<S, P, Pred, ReqBody, ResBody>(work: Refresh<S, P, Pred, P::Key, ReqBody>)
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    P: CacheProvider<ReqBody, ResBody>,
    Pred: PassthroughPredicate,
{
    let Refresh {
        mut inner,
        mut provider,
        predicate,
        key,
        head,
        request,
    } = work;
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
    let Ok(stored) = <P as Service<StoreOf<P, ReqBody, ResBody>>>::call(&mut provider, store).await;
    crate::provider::drain(stored.into_body()).await;
}
