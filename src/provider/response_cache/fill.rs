//! The response cache's store service: file what the inner service answered. A fill's
//! response is stored while it streams (when the policy and the store allow it), freshens
//! the entry it revalidated (a `304`), or gives way to the stale entry (a `5xx` within
//! `stale-if-error`); an unsafe method's response invalidates.

use super::{
    body::{CacheBody, FillBody, HitBody, OnAbandon},
    entry,
    keyspace::{Place, Seen, Selector, Url, WriteRefused},
    lookup::{Fill, KeyKind, ResponseCacheKey, Stale, StoredEntry},
    status::{CacheStatus, Fwd},
    tap::Tap,
    tee::{store_whole, Minter, TeeBody},
    ResponseCache,
};
use crate::{
    body::{NoBody, ReadAhead, ReadAheadFuture},
    middleware::bounds::BytesBody,
    policy::{filing::Shelf, invalidated_uris, vary, AfterResponse, CachePolicy},
    provider::{drain, spawn_bounded, CacheProvider, RequestHead, StoreRequest},
    semantics::{
        headers::{answer_preconditions_as, bodiless_hint, Answer, Role},
        request::absolute_target,
    },
    store::{Expect, Key, Store, StoreWriter as _},
};
use bytes::Bytes;
use http::{header::ETAG, response, Response, StatusCode, Uri};
use http_body::{Body, SizeHint};
use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime},
};
use tower_service::Service;

type Out<B, St> = Response<CacheBody<B, <St as Store>::Writer>>;

impl<St, ResBody> Service<StoreRequest<ResponseCacheKey, ResBody>> for ResponseCache<St>
where
    St: Store,
    ResBody: Body + BytesBody + Send + 'static,
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
    ResBody: Body + BytesBody + Send + 'static,
    ResBody::Error: Into<crate::body::BoxError> + Send,
{
    // It answers them from what it stores or fetches where it speaks for the origin, and
    // leaves them to the origin where RFC 9111 §4.3.2 says it must (see `lookup`).
    const ANSWERS_PRECONDITIONS: bool = true;
    type Key = ResponseCacheKey;
    type HitBody = HitBody;
    type Body = CacheBody<ResBody, St::Writer>;

    fn now(&self) -> SystemTime {
        self.shared.config.clock.now()
    }
}

/// Room left under a store's entry limit for a body followers read while it is written:
/// the key, the head and the store's own overhead, so the store does not refuse it halfway.
const TAP_MARGIN: u64 = 128 * 1024;

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
        match key.0 {
            KeyKind::Bypass { fwd, detail } => {
                let status = CacheStatus {
                    fwd_status: Some(response.status().as_u16()),
                    detail: Some(detail),
                    ..CacheStatus::fwd(fwd)
                };
                self.with_status(response.map(CacheBody::inner), &status)
            }
            KeyKind::Invalidate { uri } => {
                let targets = invalidation_targets(&head, &uri, &response);
                let invalidated = self.invalidate_all(&head, targets).await;
                let status = CacheStatus {
                    fwd_status: Some(response.status().as_u16()),
                    // Something stored for its target (or being filled) was invalidated.
                    detail: Some(if invalidated { "invalidated" } else { "method" }),
                    ..CacheStatus::fwd(Fwd::Bypass)
                };
                self.with_status(response.map(CacheBody::inner), &status)
            }
            KeyKind::Fill(fill) => self.fill_with(*fill, &head, response).await,
        }
    }

    /// Invalidates the URLs of `targets`, for every user; returns whether anything stored
    /// (or being filled) was.
    async fn invalidate_all(&self, head: &RequestHead, targets: Vec<Uri>) -> bool {
        let mut any = false;
        for target in targets {
            let scheme = self.key_scheme(head);
            let Some(url) = Url::of_uri(&target, scheme, head.authority.as_deref()) else {
                continue;
            };
            match self.invalidate(url).await {
                Ok(invalidated) => any |= invalidated,
                Err(e) => tracing::warn!(error = %e, "cache store failed to invalidate"),
            }
        }
        any
    }

    async fn fill_with<B>(
        &self,
        fill: Fill,
        head: &RequestHead,
        response: Response<B>,
    ) -> Out<B, St>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Send,
    {
        let response_time = self.now();
        let (mut parts, body) = response.into_parts();
        if let Some(answer) = self
            .answer_from_stale(&fill, head, &parts, response_time)
            .await
        {
            return answer.map(CacheBody::stored);
        }
        if fill.client_conditional && parts.status == StatusCode::NOT_MODIFIED {
            // The origin's answer to the client's own conditional: the client's, and
            // nothing to store (RFC 9111 §4.3.2). Others are not held back by it.
            let status = CacheStatus {
                fwd_status: Some(304),
                detail: Some("client-conditional"),
                ..CacheStatus::fwd(fill.fwd)
            };
            return self.with_status(Response::from_parts(parts, CacheBody::inner(body)), &status);
        }
        let times = (fill.request_time, response_time);
        let (shelves, named_user) = fill.shelves(self.shared.config.filing);
        let filing = self.file_response(
            shelves,
            named_user,
            head.authority.as_deref(),
            &fill.request,
            &parts,
            times,
        );
        let hint = body.size_hint();
        // Decided on the head as it came, before it is made the client's answer.
        let worth = self.worth_storing(&filing, &parts, hint, response_time);
        let mut fill = fill;
        if let Some((place, seen)) = fill.for_user.take() {
            if filing.shelf == Shelf::Own {
                // Per-user mode: a response only this user may have goes to the user's own
                // entries, and to nobody waiting on this fill.
                fill.place = place;
                fill.seen = seen;
                fill.stale = None;
                fill.users_own = true;
            }
        }
        // The place written is the shelf filed at.
        debug_assert_eq!(fill.place.shelf(), filing.shelf);
        let mut policy = Arc::new(filing.policy);
        let origin_status = parts.status;
        // A background refresh has no client.
        let background = fill.held.permit.is_some();
        let body = if self.mints_ahead(&policy, hint, background) {
            let (body, minted) = read_ahead_and_mint(body, &policy).await;
            if let Some(minted) = minted {
                // The client's response carries the tag the entry is stored with.
                if let Some(tag) = minted.response_headers().get(ETAG) {
                    parts.headers.insert(ETAG, tag.clone());
                }
                policy = Arc::new(minted);
            }
            body
        } else {
            FillBody::streaming(Box::pin(body))
        };
        let answer = if background {
            Answer::Full
        } else if fill.client_conditional {
            // The origin answered the client's own conditional request: nothing was stored
            // for it, so it is not the cache's to evaluate (RFC 9111 §4.3.2).
            if head.is_head() {
                Answer::Head
            } else {
                Answer::Full
            }
        } else {
            answer_preconditions_as(&mut parts, &head.preconditions, head.is_head(), Role::Cache)
        };
        let written = Written {
            worth,
            origin_status,
            answer,
        };
        let (body, status) = self
            .write_through(fill, &policy, body, written, response_time)
            .await;
        if background {
            super::status::label(&mut parts.headers, &status, &self.shared.config.name);
        } else {
            self.finish_head(&mut parts.headers, &status);
        }
        let none = |hint| CacheBody::stored(HitBody::None(NoBody::with_hint(hint)));
        let body = match answer {
            Answer::Full => body,
            Answer::Head => none(hint),
            Answer::NotModified | Answer::PreconditionFailed => none(bodiless_hint(parts.status)),
        };
        Response::from_parts(parts, body)
    }

    /// A revalidation whose answer is made from the stale entry: a `304` freshens it, a
    /// `5xx` within `stale-if-error` gives way to it (RFC 5861 §4), and so does a `502` or
    /// `504` within the cache's grace for an unreachable origin.
    async fn answer_from_stale(
        &self,
        fill: &Fill,
        head: &RequestHead,
        parts: &response::Parts,
        now: SystemTime,
    ) -> Option<Response<HitBody>> {
        let stale = fill.stale.as_ref()?;
        if parts.status == StatusCode::NOT_MODIFIED {
            return Some(self.freshen(fill, stale, head, parts, now).await);
        }
        let within = |until: Option<SystemTime>| until.is_some_and(|until| now <= until);
        // A gateway's 502 or 504 says the origin could not be reached (the proxy example
        // answers so when it cannot connect): the cache's grace covers those.
        let unreachable = matches!(
            parts.status,
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
        );
        let detail = if parts.status.is_server_error() && within(stale.stale_if_error_until) {
            "stale-if-error"
        } else if unreachable && within(stale.unreachable_until) {
            "stale-if-unreachable"
        } else {
            return None;
        };
        let status = CacheStatus {
            fwd: Some(fill.fwd),
            fwd_status: Some(parts.status.as_u16()),
            detail: Some(detail),
            ..CacheStatus::default()
        };
        Some(self.respond_stale(&stale.entry, head, now, &status))
    }

    /// Whether a fill's body is read ahead, so that the tag minted from it goes out with the
    /// head (the client can revalidate at once; a `no-cache` response, which is not stored
    /// without a validator of the origin's, still gets its 304s): only for a client (not a
    /// background refresh), a `200` without validators, stored or not, and a body whose
    /// length is known and at most [`MINT_READ_AHEAD_BYTES`]. Stored bodies that are not
    /// read ahead are tagged as they stream into the store, and their first response goes
    /// out untagged.
    fn mints_ahead(&self, policy: &CachePolicy, hint: SizeHint, background: bool) -> bool {
        self.shared.config.mint_etags
            && !background
            && policy.wants_minted_etag()
            && hint
                .exact()
                .is_some_and(|len| len > 0 && len <= MINT_READ_AHEAD_BYTES)
    }

    /// Writes the fill's `body` to the store while it streams, where the response is to be
    /// stored. Returns the body for the client (the body itself, the same body writing to
    /// the store, or none: when a background drain reads it for the store only because the
    /// client's answer needs no body, or when a background refresh will not store it) and
    /// the `Cache-Status` that says so. A body read ahead to its end is stored at once.
    async fn write_through<B>(
        &self,
        fill: Fill,
        policy: &Arc<CachePolicy>,
        body: FillBody<B>,
        written: Written,
        now: SystemTime,
    ) -> (CacheBody<B, St::Writer>, CacheStatus)
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Send,
    {
        let Fill {
            place,
            seen,
            request,
            fwd,
            mut held,
            stale,
            users_own,
            ..
        } = fill;
        let mut status = CacheStatus {
            fwd_status: Some(written.origin_status.as_u16()),
            ..CacheStatus::fwd(fwd)
        };
        // A refresh nobody reads: what is not stored is not read at all (dropping the body
        // closes the connection to the origin).
        let background = held.permit.is_some();
        let unstored = |body| {
            if background {
                CacheBody::stored(HitBody::None(NoBody::unknown()))
            } else {
                CacheBody::fill(body)
            }
        };
        let stale = stale.map(|s| (s.entry.key, s.entry.version));
        let ttl = match written.worth {
            Ok(ttl) => ttl,
            Err(detail) => {
                status.detail = Some(detail);
                if let Some((key, version)) = &stale {
                    // What was stored no longer stands for the resource.
                    let _ = self
                        .shared
                        .store
                        .remove(key, Expect::Version(*version))
                        .await;
                }
                // Waiters go on at once, and the next requests are not serialised.
                if let Some(guard) = held.guard.take() {
                    guard.not_stored();
                }
                return (unstored(body), status);
            }
        };
        // A body the client does not read is read for the store in the bounded pool (one
        // that was read ahead whole needs no reading).
        let drain = match written.answer {
            Answer::Full => None,
            _ if body.whole().is_some() => None,
            _ => match Arc::clone(&self.shared.background).try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    status.detail = Some("background-full");
                    return (unstored(body), status);
                }
            },
        };
        let names = vary::selecting_names(policy.response_headers());
        let target = Target {
            place: &place,
            seen: &seen,
            names: &names,
            selector: Selector::of(&names, &request.headers),
            stale: stale.as_ref(),
        };
        let writer = match self.writer(target, policy, ttl).await {
            Ok((writer, key)) => {
                if let Some(guard) = &mut held.guard {
                    // Requests that come now look this variant up: they follow this fill.
                    guard.also(key.as_str());
                }
                writer
            }
            Err(detail) => {
                status.detail = detail;
                return (unstored(body), status);
            }
        };
        status.ttl = Some(policy.time_to_live(now).as_secs() as i64);
        // An operator's override decided how long it is fresh: say so.
        status.detail = status.detail.or(policy.lifetime_override());
        if body.whole().is_some() || body.is_end_stream() {
            // Read ahead to its end (or empty): stored before the head goes out, and said so.
            let chunks: Vec<Bytes> = body.whole().into_iter().flatten().cloned().collect();
            status.stored = store_whole(writer, held, chunks).await;
            return (CacheBody::fill(body), status);
        }
        if let Some(guard) = held.guard.as_ref().filter(|_| !users_own) {
            // The head is here. Followers read the body through a tap as it is written,
            // where the store can give what it has so far and the body's length is known
            // (so the store cannot refuse it halfway for its size); otherwise they give
            // the body a moment more, no longer.
            // The margin covers the key and the head, which the store counts too.
            let fits = |len: u64| {
                let max = self.shared.store.max_entry_bytes();
                max.is_none_or(|max| len.saturating_add(TAP_MARGIN) <= max)
            };
            let tap = body
                .size_hint()
                .exact()
                .filter(|len| fits(*len))
                .zip(writer.partial())
                .map(|(len, reader)| Tap::new(Arc::clone(policy), len, reader));
            guard.streaming(tap.as_ref().map(|(tap, _)| Arc::clone(tap)));
            held.tap = tap.map(|(_, handle)| handle);
        }
        let minter = self
            .shared
            .config
            .mint_etags
            .then(|| Minter::for_policy(policy))
            .flatten();
        // The head goes out before the body is written, so it does not say `stored`: the
        // entry is committed when the body ends.
        let tee = TeeBody::new(body, writer, held).minting(minter);
        let body = match drain {
            Some(permit) => {
                self.drain_in_background(tee.into_drain(permit));
                CacheBody::stored(HitBody::None(NoBody::unknown()))
            }
            None if background => CacheBody::tee(tee.background(), None),
            None => CacheBody::tee(tee, Some(self.on_abandon())),
        };
        (body, status)
    }

    /// What becomes of a fill whose client goes away before its body ends: the rest is read
    /// into the store in the bounded background pool (a permit, the background timeout, the
    /// store's largest entry), so that the entry is stored all the same; with the pool full,
    /// it is dropped. (A client that only stalls still holds its fill up.)
    fn on_abandon<B>(&self) -> OnAbandon<TeeBody<FillBody<B>, St::Writer>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Send,
    {
        let pool = Arc::clone(&self.shared.background);
        let timeout = self.shared.config.background_timeout;
        Box::new(move |mut tee| {
            // Done, or at its last chunk (hyper drops a body once it has its length, while
            // the commit runs on its own), or given up by the store: nothing left to read.
            if !tee.is_writing() {
                return;
            }
            let Ok(permit) = pool.try_acquire_owned() else {
                tracing::debug!("background pool full: a fill its client left is dropped");
                return;
            };
            tee.as_mut().drain_from_here(permit);
            spawn_bounded("fill its client left", timeout, drain(tee));
        })
    }

    /// A writer for the fill's variant, once its index has room for it.
    async fn writer(
        &self,
        target: Target<'_>,
        policy: &Arc<CachePolicy>,
        ttl: Duration,
    ) -> Result<(St::Writer, Key), Option<&'static str>> {
        let epoch = match self
            .keyspace()
            .admit(
                target.place,
                target.seen,
                target.names,
                target.selector,
                ttl,
            )
            .await
        {
            Ok(epoch) => epoch,
            Err(WriteRefused::Superseded) => return Err(Some("superseded")),
            Err(WriteRefused::Store(e)) => {
                tracing::warn!(error = %e, "cache store failed; not storing a response");
                return Err(Some("store-error"));
            }
        };
        let key = target.place.variant_key(epoch, target.selector);
        // Never over something newer than what the lookup saw: the entry it revalidated, or
        // nothing at all.
        let expect = match target.stale {
            Some((stale_key, version)) if *stale_key == key => Expect::Version(*version),
            Some((stale_key, version)) => {
                // Stored under another selection now: the old one no longer stands.
                let _ = self
                    .shared
                    .store
                    .remove(stale_key, Expect::Version(*version))
                    .await;
                Expect::Absent
            }
            None => Expect::Absent,
        };
        self.shared
            .store
            .writer(&key, entry::meta(policy), ttl, expect)
            .await
            .map(|w| (w, key))
            .map_err(|e| {
                if e.is_failure() {
                    tracing::warn!(error = %e, "cache store failed; not storing a response");
                    Some("store-error")
                } else {
                    tracing::debug!(error = %e, "not storing a response");
                    None
                }
            })
    }

    /// A `304` from the inner service to the cache's conditional request: freshen the entry
    /// that was validated, and no other (RFC 9111 §4.3.4), and answer from it.
    async fn freshen(
        &self,
        fill: &Fill,
        stale: &Stale,
        head: &RequestHead,
        res: &response::Parts,
        response_time: SystemTime,
    ) -> Response<HitBody> {
        let entry = &stale.entry;
        let outcome = entry.policy.after_revalidation_of(
            &stale.sent,
            &fill.request,
            res,
            (fill.request_time, response_time),
            &self.shared.config.targets,
        );
        let mut status = CacheStatus {
            fwd: Some(fill.fwd),
            fwd_status: Some(304),
            ..CacheStatus::default()
        };
        let served = match outcome {
            AfterResponse::NotModified { served, stored } => {
                // What stays is filed by the same rules as a fill: at the entry's shelf.
                let (_, named_user) = fill.shelves(self.shared.config.filing);
                match self.kept_after_304(fill.place.shelf(), named_user, stored) {
                    Ok(policy) => status.stored = self.update(entry, policy, response_time).await,
                    Err(reason) => {
                        // The 304 made the response unstorable: its answer goes to this client
                        // only, and the entry goes.
                        status.detail = Some(reason.detail());
                        self.remove(entry).await;
                    }
                }
                served
            }
            AfterResponse::Mismatch => {
                // Not the stored response (RFC 9111 §4.3.4): it updates nothing, and the
                // stored one is outdated.
                self.remove(entry).await;
                status.detail = Some("validator-mismatch");
                if !entry.policy.stale_permitted(head, response_time) {
                    // Never stale unless permitted (RFC 9111 §4.2.4, §5.2.2.2).
                    return self.gateway_timeout(&status);
                }
                (*entry.policy).clone()
            }
            AfterResponse::Modified(_) => unreachable!("a 304 is never a full response"),
        };
        status.ttl = Some(served.time_to_live(response_time).as_secs() as i64);
        let headers = served.headers_with_age(response_time);
        self.respond(&served, headers, &entry.body, head, &status)
    }

    /// Removes `entry`, if it is still what is stored.
    async fn remove(&self, entry: &StoredEntry) {
        let expect = Expect::Version(entry.version);
        if let Err(e) = self.shared.store.remove(&entry.key, expect).await {
            tracing::debug!(error = %e, "cache store failed to remove an entry");
        }
    }

    /// Stores `policy` as the head of `entry`, if `entry` is still what is stored; returns
    /// whether it was.
    async fn update(&self, entry: &StoredEntry, policy: CachePolicy, now: SystemTime) -> bool {
        let ttl = self.storage_ttl(&policy, now);
        if ttl.is_zero() {
            self.remove(entry).await;
            return false;
        }
        let meta = entry::meta(&Arc::new(policy));
        match self
            .shared
            .store
            .update_meta(&entry.key, Expect::Version(entry.version), meta, ttl)
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                tracing::debug!("the revalidated entry was replaced meanwhile; left alone");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cache store failed to freshen an entry");
                false
            }
        }
    }

    /// Reads a body nobody else reads to its end, so that it is stored: holding a permit of
    /// the bounded background pool, for at most the background timeout, and only as long as
    /// the store takes it (then the body ends, which closes the connection to the origin).
    fn drain_in_background<B>(&self, body: TeeBody<B, St::Writer>)
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Send,
    {
        let timeout = self.shared.config.background_timeout;
        spawn_bounded("background fill", timeout, drain(body));
    }
}

/// RFC 9111 §4.4: the URIs a non-error response to an unsafe method invalidates: the target
/// and same-origin `Location` / `Content-Location`.
fn invalidation_targets<B>(head: &RequestHead, uri: &Uri, response: &Response<B>) -> Vec<Uri> {
    // The target as an absolute URI, so that absolute references compare by origin.
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let base = absolute_target(head, pq).unwrap_or_else(|| uri.clone());
    invalidated_uris(&head.method, response.status(), &base, response.headers())
}

/// The largest body a fill reads ahead to mint its tag before the head goes out: 64 KiB.
/// It is held in memory once more while read (it is written to the store as well).
pub const MINT_READ_AHEAD_BYTES: u64 = 64 * 1024;

/// Reads a fill's `body` ahead, for at most the ETag layer's read-ahead time
/// ([`DEFAULT_READ_AHEAD_TIMEOUT`](crate::provider::DEFAULT_READ_AHEAD_TIMEOUT)), and mints
/// the tag of `policy` from it if it came whole. A body that did not (too slow, failed) is
/// handed on with what was read, untagged: it is tagged as it streams into the store.
async fn read_ahead_and_mint<B>(body: B, policy: &CachePolicy) -> (FillBody<B>, Option<CachePolicy>)
where
    B: Body<Data = Bytes>,
{
    let read = ReadAheadFuture::new(
        Box::pin(body),
        MINT_READ_AHEAD_BYTES,
        crate::provider::DEFAULT_READ_AHEAD_TIMEOUT,
    );
    match read.await {
        ReadAhead::Complete { body, hash, len } => {
            let minted = entry::minted(policy, len, &hash).filter(|_| body.whole().is_some());
            (body, minted)
        }
        ReadAhead::Incomplete { body } => (body, None),
    }
}

/// What the head of a fill's response said, before it became the client's answer.
struct Written {
    /// Whether to store it, for how long (else why not).
    worth: Result<Duration, &'static str>,
    /// The status the origin sent.
    origin_status: StatusCode,
    /// What the client gets.
    answer: Answer,
}

/// Where a fill's response is to be stored.
struct Target<'a> {
    place: &'a Place,
    seen: &'a Seen,
    names: &'a [String],
    selector: Selector,
    /// The entry the fill revalidated: its key and version.
    stale: Option<&'a (Key, u64)>,
}
