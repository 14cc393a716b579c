//! The response cache's store service: file what the inner service answered, freshen from a
//! 304, serve stale on error, invalidate after unsafe methods.

use super::{
    body::CacheBody,
    body::HitBody,
    entry::{self},
    lookup::{Fill, KeyKind, ResponseCacheKey, StoredEntry, CACHE_STATUS},
    status::{CacheStatus, Fwd},
    tee::TeeBody,
    ResponseCache,
};
use crate::{
    middleware::body::NoBody,
    policy::{invalidated_uris, AfterResponse, CachePolicy},
    provider::{CacheProvider, RequestHead, StoreRequest},
    semantics::headers::{answer_preconditions, Answer},
    store::{Store, StoreWriter},
};
use bytes::Bytes;
use http::{request, Method, Request, Response, StatusCode};
use http_body::{Body, SizeHint};
use http_body_util::BodyExt;
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};
use tower_service::Service;

type Out<B, St> = Response<CacheBody<B, <St as Store>::Writer>>;

impl<St, ResBody> Service<StoreRequest<ResponseCacheKey, ResBody>> for ResponseCache<St>
where
    St: Store,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    type Response = Out<ResBody, St>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: StoreRequest<ResponseCacheKey, ResBody>) -> Self::Future {
        let cache = self.clone();
        Box::pin(async move { Ok(cache.file(req).await) })
    }
}

impl<St, ReqBody, ResBody> CacheProvider<ReqBody, ResBody> for ResponseCache<St>
where
    St: Store,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    type Key = ResponseCacheKey;
    type HitBody = HitBody;
    type Body = CacheBody<ResBody, St::Writer>;
}

/// Reads a body to its end in the background, so that a response the client does not need
/// (a HEAD, a 304 to a conditional miss) is still stored.
fn drain_in_background<B>(body: B)
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(async move {
                let _ = body.collect().await;
            });
        }
        Err(_) => tracing::debug!("no tokio runtime: a response is not stored"),
    }
}

fn with_status<B>(mut res: Response<B>, status: &CacheStatus, name: &str) -> Response<B> {
    res.headers_mut()
        .insert(CACHE_STATUS, status.to_header_value(name));
    res
}

impl<St: Store> ResponseCache<St> {
    async fn file<B>(&self, req: StoreRequest<ResponseCacheKey, B>) -> Out<B, St>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Send,
    {
        let StoreRequest {
            key,
            head,
            response,
        } = req;
        let name = &self.shared.config.name;
        match key.0 {
            KeyKind::Bypass { fwd, detail } => {
                let status = CacheStatus {
                    fwd_status: Some(response.status().as_u16()),
                    detail: Some(detail),
                    ..CacheStatus::fwd(fwd)
                };
                with_status(response.map(CacheBody::inner), &status, name)
            }
            KeyKind::Invalidate { request } => {
                let uris = invalidated_uris(
                    &request.method,
                    response.status(),
                    &request.uri,
                    response.headers(),
                );
                self.invalidate_uris(&request, uris).await;
                let status = CacheStatus {
                    fwd_status: Some(response.status().as_u16()),
                    detail: Some("method"),
                    ..CacheStatus::fwd(Fwd::Bypass)
                };
                with_status(response.map(CacheBody::inner), &status, name)
            }
            KeyKind::Fill(fill) => self.fill(*fill, head, response).await,
        }
    }

    /// RFC 9111 §4.4: a non-error response to an unsafe method invalidates the target URI
    /// and same-origin `Location` / `Content-Location`.
    async fn invalidate_uris(&self, request: &request::Parts, uris: Vec<http::Uri>) {
        for uri in uris {
            let mut target = Request::new(());
            *target.uri_mut() = uri;
            let (mut parts, ()) = target.into_parts();
            if parts.uri.authority().is_none() {
                if let Some(host) = request.headers.get(http::header::HOST) {
                    parts.headers.insert(http::header::HOST, host.clone());
                }
            }
            // In private mode the user comes from the request's own fields.
            parts.headers.extend(request.headers.clone());
            if let Some(primary) = self.primary_key(&parts) {
                if let Err(e) = self.invalidate_key(&primary).await {
                    tracing::warn!(error = %e, "cache store failed to invalidate");
                }
            }
        }
    }

    async fn fill<B>(&self, fill: Fill, head: RequestHead, response: Response<B>) -> Out<B, St>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Send,
    {
        let name = self.shared.config.name.clone();
        let response_time = SystemTime::now();
        let is_head = head.method == Method::HEAD;
        let (res_parts, body) = response.into_parts();
        let fwd_status = res_parts.status.as_u16();

        if let Some(stale) = &fill.stale {
            if res_parts.status == StatusCode::NOT_MODIFIED {
                return self
                    .freshen(&fill, stale, &head, &res_parts, response_time)
                    .await
                    .map(CacheBody::stored);
            }
            if res_parts.status.is_server_error()
                && stale
                    .policy
                    .stale_if_error_allowed(&fill.request, response_time)
            {
                // RFC 5861 §4: answer with the stale entry instead of the error.
                let status = CacheStatus {
                    fwd: Some(fill.fwd),
                    fwd_status: Some(fwd_status),
                    detail: Some("stale-if-error"),
                    ..CacheStatus::default()
                };
                let res = self.respond(
                    &stale.policy,
                    stale.policy.headers_with_age(response_time),
                    stale.body.clone(),
                    is_head,
                    &head.preconditions,
                    status,
                );
                return res.map(CacheBody::stored);
            }
        }

        let policy = Arc::new(CachePolicy::new(
            &fill.request,
            &res_parts,
            fill.request_time,
            response_time,
            self.shared.config.mode,
        ));
        let mut status = CacheStatus {
            fwd_status: Some(fwd_status),
            ..CacheStatus::fwd(fill.fwd)
        };
        let mut parts = res_parts;
        let body = match policy.storable() {
            Ok(()) => match self
                .writer_for(&fill, &policy, body.size_hint(), response_time)
                .await
            {
                Some(writer) => {
                    status.stored = true;
                    status.ttl = Some(policy.time_to_live(response_time).as_secs() as i64);
                    CacheBody::tee(TeeBody::new(body, writer, fill.guard))
                }
                None => CacheBody::inner(body),
            },
            Err(reason) => {
                status.detail = Some(reason.detail());
                if let Some(stale) = &fill.stale {
                    // What was stored no longer stands for the resource.
                    let _ = self.shared.store.remove(&stale.variant_key).await;
                }
                CacheBody::inner(body)
            }
        };
        parts
            .headers
            .insert(CACHE_STATUS, status.to_header_value(&name));
        answer_client(parts, body, &head)
    }

    /// A 304 from the inner service to the cache's conditional request: freshen the stored
    /// entry (RFC 9111 §4.3.4) and answer from it.
    async fn freshen(
        &self,
        fill: &Fill,
        stale: &StoredEntry,
        head: &RequestHead,
        res_parts: &http::response::Parts,
        response_time: SystemTime,
    ) -> Response<HitBody> {
        let is_head = head.method == Method::HEAD;
        let outcome = stale.policy.after_revalidation(
            &fill.request,
            res_parts,
            fill.request_time,
            response_time,
        );
        let (policy, detail) = match outcome {
            AfterResponse::NotModified(policy) => {
                let policy = Arc::new(policy);
                let ttl = policy.storage_ttl(response_time);
                if let Err(e) = self
                    .shared
                    .store
                    .update_meta(&stale.variant_key, entry::meta(&policy), ttl)
                    .await
                {
                    tracing::warn!(error = %e, "cache store failed to freshen an entry");
                }
                (policy, None)
            }
            AfterResponse::Modified(_) => {
                // The 304 does not match what is stored (RFC 9111 §4.3.4): do not freshen,
                // forget the entry, serve it this once as the best answer available.
                let _ = self.shared.store.remove(&stale.variant_key).await;
                (stale.policy.clone(), Some("validator-mismatch"))
            }
        };
        let status = CacheStatus {
            fwd: Some(fill.fwd),
            fwd_status: Some(304),
            ttl: Some(policy.time_to_live(response_time).as_secs() as i64),
            detail,
            ..CacheStatus::default()
        };
        self.respond(
            &policy,
            policy.headers_with_age(response_time),
            stale.body.clone(),
            is_head,
            &head.preconditions,
            status,
        )
    }

    /// A writer for the fill's variant, writing the index first if it changed.
    async fn writer_for(
        &self,
        fill: &Fill,
        policy: &Arc<CachePolicy>,
        body_hint: SizeHint,
        now: SystemTime,
    ) -> Option<St::Writer> {
        let announced = body_hint.lower();
        if self
            .shared
            .store
            .max_entry_bytes()
            .is_some_and(|max| announced > max)
        {
            // Known to be too large: do not buffer any of it for the store.
            return None;
        }
        let writer = self
            .variant_writer(
                &fill.primary,
                fill.index.as_ref(),
                &fill.request.headers,
                policy,
                now,
            )
            .await;
        match writer {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::debug!(error = %e, "not storing a response");
                None
            }
        }
    }
}

/// The client's preconditions answered on a fresh response (RFC 9110 §13.2.1: 2xx only),
/// and HEAD given no body. A body the client does not get is still read to its end in the
/// background when it is being stored.
fn answer_client<B, W>(
    mut parts: http::response::Parts,
    body: CacheBody<B, W>,
    head: &RequestHead,
) -> Response<CacheBody<B, W>>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Send,
    W: StoreWriter,
{
    let is_head = head.method == Method::HEAD;
    let hint = body.size_hint();
    let no_body = match answer_preconditions(&mut parts, &head.preconditions, is_head) {
        Answer::Full => return Response::from_parts(parts, body),
        Answer::Head => NoBody::with_hint(hint),
        Answer::NotModified => NoBody::unknown(),
        Answer::PreconditionFailed => NoBody::with_hint(SizeHint::with_exact(0)),
    };
    if body.is_storing() {
        drain_in_background(body);
    }
    Response::from_parts(parts, CacheBody::stored(HitBody::None(no_body)))
}
