//! [`TeeBody`]: streams a body to the client while writing it to the store.

use super::{coalesce::FillGuard, entry, tap::TapHandle};
use crate::{
    policy::CachePolicy,
    store::{StoreError, StoreWriter},
};
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::sync::Arc;
use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};
use sync_wrapper::SyncWrapper;
use tokio::sync::OwnedSemaphorePermit;

/// What a fill holds until its body ends: the coalescing guard (waiters wake when it goes)
/// and, for work nobody waits for, a permit of the bounded background pool.
#[derive(Debug, Default)]
pub(crate) struct Held {
    pub(crate) guard: Option<FillGuard>,
    pub(crate) permit: Option<OwnedSemaphorePermit>,
    /// The fill's followers read through it; dropped before the end, it fails them.
    pub(crate) tap: Option<TapHandle>,
}

/// Mints a strong `ETag` for a response stored without a validator: the blake3 hash of the
/// body as it streams to the store, put on the entry's head just before it is committed.
/// The client that caused the fill gets its response untagged (its head went out first);
/// every response made from the entry carries the tag.
pub(crate) struct Minter {
    hasher: blake3::Hasher,
    policy: Arc<CachePolicy>,
    len: u64,
}

impl Held {
    /// A write reached the store: the fill's followers may read on.
    fn wrote(&self) {
        if let Some(tap) = &self.tap {
            tap.progress();
        }
    }
}

impl Minter {
    /// A minter for the entry of `policy`, if it wants one (a `200` without validators).
    pub(crate) fn for_policy(policy: &Arc<CachePolicy>) -> Option<Self> {
        policy.wants_minted_etag().then(|| Self {
            hasher: blake3::Hasher::new(),
            policy: Arc::clone(policy),
            len: 0,
        })
    }

    fn update(&mut self, data: &Bytes) {
        self.hasher.update(data);
        self.len += data.len() as u64;
    }

    /// Puts the tag on the head `writer` commits.
    fn tag<W: StoreWriter>(self, writer: &mut W) {
        if let Some(minted) = entry::minted(&self.policy, self.len, &self.hasher.finalize()) {
            writer.replace_meta(entry::meta_of(minted));
        }
    }
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter").field("len", &self.len).finish()
    }
}

/// A future of the crate's background work, boxed to be kept in a body.
type BoxFuture<T> = SyncWrapper<Pin<Box<dyn Future<Output = T> + Send>>>;

/// A write of the store in flight, or the writer between writes.
enum Write<W> {
    Idle(W),
    Writing(BoxFuture<Result<W, StoreError>>),
}

impl<W: StoreWriter> Write<W> {
    /// Starts writing `chunk`, and drives it as far as it goes now.
    fn start(w: W, chunk: Bytes, cx: &mut Context<'_>) -> Result<Self, StoreError> {
        Self::Writing(SyncWrapper::new(Box::pin(w.write(chunk)))).poll_idle(cx)
    }

    /// Drives a write in flight; `Idle` once it is done.
    fn poll_idle(self, cx: &mut Context<'_>) -> Result<Self, StoreError> {
        match self {
            Self::Writing(mut fut) => match fut.get_mut().as_mut().poll(cx) {
                Poll::Ready(Ok(w)) => Ok(Self::Idle(w)),
                Poll::Ready(Err(e)) => Err(e),
                Poll::Pending => Ok(Self::Writing(fut)),
            },
            idle => Ok(idle),
        }
    }

    /// The writer once the write in flight is done.
    async fn into_writer(self) -> Result<W, StoreError> {
        match self {
            Self::Idle(w) => Ok(w),
            Self::Writing(fut) => fut.into_inner().await,
        }
    }
}

/// The end of a fill's write, its commit, running: polled by the body while the client
/// reads on, and given to a task when the body is dropped first (hyper stops reading at
/// `Content-Length`), so a complete body is committed whoever stops polling it.
#[derive(Default)]
struct Finishing(Option<BoxFuture<bool>>);

impl Finishing {
    /// Starts `finish` and drives it as far as it goes now.
    fn start(&mut self, finish: impl Future<Output = bool> + Send + 'static, cx: &mut Context<'_>) {
        self.0 = Some(SyncWrapper::new(Box::pin(finish)));
        let _ = self.poll(cx);
    }

    /// Ready (and gone) once the commit is done.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(fut) = self.0.as_mut() {
            ready!(fut.get_mut().as_mut().poll(cx));
            self.0 = None;
        }
        Poll::Ready(())
    }

    fn is_running(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        if let Some(fut) = self.0.take() {
            // Bounded: one task per fill, which ends with the store's own deadlines.
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn(fut.into_inner())),
                Err(_) => tracing::debug!("no runtime to commit an entry on; dropped"),
            }
        }
    }
}

pin_project! {
    /// A body passed to the client chunk by chunk and, as it goes, to a store writer, one
    /// chunk at a time: the next chunk is read from the inner body only once the store took
    /// the last one (backpressure; at most one chunk is in flight). The entry is committed
    /// only when the body ends cleanly; an error, trailers (not stored), a store failure or
    /// the client going away (drop) before the end abandon it. Either way what the fill held
    /// (coalescing, a background permit) is released at the end, after the commit, waking
    /// coalesced requests.
    ///
    /// A body only a background drain reads ends as soon as the store gives up on it: the
    /// rest is read by nobody, and dropping it closes the connection to the origin.
    pub struct TeeBody<B, W> {
        #[pin]
        body: B,
        write: Option<Write<W>>,
        finishing: Finishing,
        held: Held,
        written: u64,
        // The exact length the body announced: once that much is written the body is
        // complete, even if nobody polls it again (hyper stops at Content-Length).
        expected: Option<u64>,
        background: bool,
        // Boxed: a blake3 hasher is 2 KiB, and the body moves from future to future.
        mint: Option<Box<Minter>>,
    }
}

impl<B: std::fmt::Debug, W> std::fmt::Debug for TeeBody<B, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeeBody")
            .field("body", &self.body)
            .field("writing", &self.write.is_some())
            .field("committing", &self.finishing.is_running())
            .field("background", &self.background)
            .finish()
    }
}

impl<B: Body, W: StoreWriter> TeeBody<B, W> {
    /// `body` written to `writer` as it streams. A body that is already at its end is
    /// stored with [`store_whole`] instead: nobody would poll it.
    pub(crate) fn new(body: B, writer: W, held: Held) -> Self {
        let expected = body.size_hint().exact();
        Self {
            body,
            write: Some(Write::Idle(writer)),
            finishing: Finishing::default(),
            held,
            written: 0,
            expected,
            background: false,
            mint: None,
        }
    }

    /// Mints an `ETag` for the entry while the body streams (see [`Minter`]).
    pub(crate) fn minting(mut self, minter: Option<Minter>) -> Self {
        self.mint = minter.map(Box::new);
        self
    }

    /// Only a background task reads this body (see the type's docs).
    pub(crate) fn background(mut self) -> Self {
        self.background = true;
        self
    }

    /// This body for a background drain that holds `permit` until the body ends.
    pub(crate) fn into_drain(mut self, permit: OwnedSemaphorePermit) -> Self {
        self.held.permit = Some(permit);
        self.background()
    }

    /// Whether the body is still being written to the store: not yet at its last chunk (then
    /// the commit runs on its own, see [`Finishing`]), and not given up.
    pub(crate) fn is_writing(&self) -> bool {
        self.write.is_some()
    }

    /// [`TeeBody::into_drain`] for a body already pinned (its client went away).
    pub(crate) fn drain_from_here(self: Pin<&mut Self>, permit: OwnedSemaphorePermit) {
        let this = self.project();
        this.held.permit = Some(permit);
        *this.background = true;
    }
}

/// Stores a body that is whole in memory already (read ahead to its end, or empty) before
/// the head goes out: written, and committed. Returns whether it was committed. What the
/// fill held is released either way.
pub(crate) async fn store_whole<W: StoreWriter>(
    writer: W,
    held: Held,
    chunks: impl IntoIterator<Item = Bytes>,
) -> bool {
    let mut writer = writer;
    let mut total = 0;
    for chunk in chunks {
        total += chunk.len() as u64;
        writer = match writer.write(chunk).await {
            Ok(w) => w,
            Err(e) => return refused(e, held),
        };
    }
    complete(Write::Idle(writer), held, None, total).await
}

/// Commits the entry once the last write is done; returns whether it was committed. What
/// the fill held goes after that, waking the requests coalesced on it; followers reading
/// through its tap read to the end (`total` bytes).
async fn complete<W: StoreWriter>(
    write: Write<W>,
    mut held: Held,
    mint: Option<Box<Minter>>,
    total: u64,
) -> bool {
    let mut w = match write.into_writer().await {
        Ok(w) => w,
        Err(e) => return refused(e, held),
    };
    held.wrote();
    if let Some(minter) = mint {
        minter.tag(&mut w);
    }
    let committed = match w.commit().await {
        Ok(_) => true,
        Err(StoreError::Conflict) => {
            tracing::debug!("a newer entry was stored meanwhile; this one is dropped");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cache store failed to commit an entry");
            false
        }
    };
    if let Some(tap) = held.tap.take() {
        tap.complete(total);
    }
    drop(held);
    committed
}

/// The store refused the entry (too large, busy, or failed): nothing is stored. A response
/// too large for the store will not be stored next time either, so its key goes
/// hit-for-miss.
fn refused(e: StoreError, mut held: Held) -> bool {
    match e {
        StoreError::TooLarge { .. } => {
            if let Some(guard) = held.guard.take() {
                guard.not_stored();
            }
        }
        e if e.is_failure() => tracing::warn!(error = %e, "cache store failed; not storing"),
        e => tracing::debug!(error = %e, "not storing a response"),
    }
    false
}

impl<B, W> Body for TeeBody<B, W>
where
    B: Body,
    W: StoreWriter,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        // The store takes one chunk at a time: the next is read once it has the last.
        if let Some(write) = this.write.take() {
            match write.poll_idle(cx) {
                Ok(Write::Writing(fut)) => {
                    *this.write = Some(Write::Writing(fut));
                    return Poll::Pending;
                }
                Ok(idle) => {
                    *this.write = Some(idle);
                    this.held.wrote();
                }
                Err(e) => {
                    refused(e, std::mem::take(this.held));
                }
            }
        }
        // The end is reported once the entry is committed (or given up).
        ready!(this.finishing.poll(cx));
        if *this.background && this.write.is_none() {
            return Poll::Ready(None);
        }
        let polled = if this.body.is_end_stream() {
            None
        } else {
            ready!(this.body.as_mut().poll_frame(cx))
        };
        let frame = match polled {
            None => {
                // A body that ends before the length it announced is not the whole one.
                let short = this.expected.is_some_and(|e| e != *this.written);
                if short {
                    this.write.take();
                    drop(std::mem::take(this.held));
                }
                if let Some(write) = this.write.take() {
                    let held = std::mem::take(this.held);
                    let finish = complete(write, held, this.mint.take(), *this.written);
                    this.finishing.start(finish, cx);
                    ready!(this.finishing.poll(cx));
                }
                return Poll::Ready(None);
            }
            Some(Err(e)) => {
                // Abandoned: nothing is stored, and what the fill held goes now.
                this.write.take();
                drop(std::mem::take(this.held));
                return Poll::Ready(Some(Err(e)));
            }
            Some(Ok(frame)) => frame,
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                let data = data.copy_to_bytes(data.remaining());
                *this.written += data.len() as u64;
                // Idle here: a write in flight was finished above before reading on.
                if let Some(Write::Idle(w)) = this.write.take() {
                    if let Some(minter) = this.mint.as_mut() {
                        minter.update(&data);
                    }
                    match Write::start(w, data.clone(), cx) {
                        Ok(write) => {
                            if matches!(write, Write::Idle(_)) {
                                this.held.wrote();
                            }
                            *this.write = Some(write);
                        }
                        Err(e) => {
                            refused(e, std::mem::take(this.held));
                        }
                    }
                    let last = this.body.is_end_stream() || *this.expected == Some(*this.written);
                    if let Some(write) = last.then(|| this.write.take()).flatten() {
                        // The last chunk: commit now, the client may never poll again.
                        let held = std::mem::take(this.held);
                        let finish = complete(write, held, this.mint.take(), *this.written);
                        this.finishing.start(finish, cx);
                    }
                }
                Frame::data(data)
            }
            Err(frame) => {
                // Trailers are not kept by the stores: do not store a body that has them.
                this.write.take();
                drop(std::mem::take(this.held));
                frame.map_data(|mut d: B::Data| d.copy_to_bytes(d.remaining()))
            }
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        // Report the end only once the entry is committed, so the last poll happens.
        self.write.is_none()
            && !self.finishing.is_running()
            && (self.background || self.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
