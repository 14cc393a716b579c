//! [`TeeBody`]: streams a body to the client while writing it to the store.

use super::{coalesce::FillGuard, entry};
use crate::{
    policy::CachePolicy,
    store::{StoreError, StoreWriter},
};
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::sync::Arc;
use std::{
    pin::Pin,
    task::{ready, Context, Poll},
};
use tokio::sync::OwnedSemaphorePermit;

/// What a fill holds until its body ends: the coalescing guard (waiters wake when it goes)
/// and, for work nobody waits for, a permit of the bounded background pool.
#[derive(Debug, Default)]
pub(crate) struct Held {
    pub(crate) guard: Option<FillGuard>,
    pub(crate) permit: Option<OwnedSemaphorePermit>,
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

pin_project! {
    /// A body passed to the client chunk by chunk and, as it goes, to a store writer. The
    /// entry is committed only when the body ends cleanly; an error, trailers (not stored),
    /// a store failure or the client going away (drop) abandon it. Either way what the fill
    /// held (coalescing, a background permit) is released at the end, waking coalesced
    /// requests.
    ///
    /// A body only a background drain reads ends as soon as the store gives up on it: the
    /// rest is read by nobody, and dropping it closes the connection to the origin.
    pub struct TeeBody<B, W> {
        #[pin]
        body: B,
        writer: Option<W>,
        held: Held,
        written: u64,
        // The exact length the body announced: once that much is written the body is
        // complete, even if nobody polls it again (hyper stops at Content-Length).
        expected: Option<u64>,
        background: bool,
        committed: bool,
        // Boxed: a blake3 hasher is 2 KiB, and the body moves from future to future.
        mint: Option<Box<Minter>>,
    }
}

impl<B: std::fmt::Debug, W> std::fmt::Debug for TeeBody<B, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeeBody")
            .field("body", &self.body)
            .field("writing", &self.writer.is_some())
            .field("background", &self.background)
            .finish()
    }
}

impl<B: Body, W: StoreWriter> TeeBody<B, W> {
    pub(crate) fn new(body: B, writer: W, held: Held) -> Self {
        let expected = body.size_hint().exact();
        let mut tee = Self {
            body,
            writer: Some(writer),
            held,
            written: 0,
            expected,
            background: false,
            committed: false,
            mint: None,
        };
        if tee.body.is_end_stream() {
            // Nobody will poll an empty body: commit now.
            tee.committed = finish(&mut tee.writer, &mut tee.held, None, End::Complete);
        }
        tee
    }

    /// Mints an `ETag` for the entry while the body streams (see [`Minter`]).
    pub(crate) fn minting(mut self, minter: Option<Minter>) -> Self {
        if self.writer.is_some() {
            self.mint = minter.map(Box::new);
        }
        self
    }

    /// Whether the entry is committed already (an empty body is, before the head goes out):
    /// only then may the head say `stored` (RFC 9211 §2.6).
    pub(crate) fn is_committed(&self) -> bool {
        self.committed
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
}

/// Stores a body that is whole in memory already (read ahead to its end) before the head
/// goes out: written, and committed at once. Returns whether it was committed. What the
/// fill held is released either way.
pub(crate) fn store_whole<'a, W: StoreWriter>(
    writer: W,
    mut held: Held,
    chunks: impl Iterator<Item = &'a Bytes>,
) -> bool {
    let mut writer = Some(writer);
    for chunk in chunks {
        if let Some(Err(e)) = writer.as_mut().map(|w| w.write(chunk)) {
            return finish(&mut writer, &mut held, None, End::Refused(e));
        }
    }
    finish(&mut writer, &mut held, None, End::Complete)
}

/// How a write ends.
enum End {
    /// The body ended cleanly: commit.
    Complete,
    /// The body failed or had trailers: abandon.
    Abandoned,
    /// The store refused the entry (too large, or failed): abandon; a response too large
    /// for the store will not be stored next time either, so its key goes hit-for-miss.
    Refused(StoreError),
}

/// Ends the write; returns whether the entry was committed.
fn finish<W: StoreWriter>(
    writer: &mut Option<W>,
    held: &mut Held,
    mint: Option<Box<Minter>>,
    end: End,
) -> bool {
    let Some(mut w) = writer.take() else {
        return false;
    };
    let guard = held.guard.take();
    held.permit.take();
    match end {
        End::Complete => {
            if let Some(minter) = mint {
                minter.tag(&mut w);
            }
            match w.commit() {
                Ok(()) => return true,
                Err(StoreError::Conflict) => {
                    tracing::debug!("a newer entry was stored meanwhile; this one is dropped")
                }
                Err(e) => tracing::warn!(error = %e, "cache store failed to commit an entry"),
            }
        }
        End::Refused(StoreError::TooLarge { .. }) => {
            if let Some(guard) = guard {
                guard.not_stored();
            }
        }
        End::Refused(e) => tracing::debug!(error = %e, "not storing a response"),
        End::Abandoned => {}
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
        if *this.background && this.writer.is_none() {
            return Poll::Ready(None);
        }
        let polled = if this.body.is_end_stream() {
            None
        } else {
            ready!(this.body.as_mut().poll_frame(cx))
        };
        let frame = match polled {
            None => {
                *this.committed |= finish(this.writer, this.held, this.mint.take(), End::Complete);
                return Poll::Ready(None);
            }
            Some(Err(e)) => {
                finish(this.writer, this.held, None, End::Abandoned);
                return Poll::Ready(Some(Err(e)));
            }
            Some(Ok(frame)) => frame,
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                let data = data.copy_to_bytes(data.remaining());
                *this.written += data.len() as u64;
                if let Some(w) = this.writer.as_mut() {
                    if let Some(minter) = this.mint.as_mut() {
                        minter.update(&data);
                    }
                    if let Err(e) = w.write(&data) {
                        finish(this.writer, this.held, None, End::Refused(e));
                    } else if this.body.is_end_stream() || *this.expected == Some(*this.written) {
                        // The last chunk: commit now, the client may never poll again.
                        let mint = this.mint.take();
                        *this.committed |= finish(this.writer, this.held, mint, End::Complete);
                    }
                }
                Frame::data(data)
            }
            Err(frame) => {
                // Trailers are not kept by the stores: do not store a body that has them.
                finish(this.writer, this.held, None, End::Abandoned);
                frame.map_data(|mut d: B::Data| d.copy_to_bytes(d.remaining()))
            }
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        // Report the end only once the entry is committed, so the last poll happens.
        self.writer.is_none() && (self.background || self.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
