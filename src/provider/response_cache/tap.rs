//! [`Tap`]: requests coalesced on a fill read its body from the store as it is written,
//! instead of waiting for the commit (as fscache's concurrent readers and pingora's partial
//! reads do).
//!
//! The fill writes through the store's writer; the writer's [`PartialReader`] reads what
//! was written so far, from where the store keeps it (its memory buffer, the file being
//! written, the chunks in Redis). A follower's body reads a bounded chunk at a time from it
//! and waits for more when it has caught up, so memory stays bounded however slow a
//! follower reads: nothing is buffered per follower beyond one chunk. A fill that ends
//! short (the origin's body failed, the store refused it) fails the followers' bodies: they
//! break off, never end early looking complete.

use crate::{
    policy::CachePolicy,
    store::{BodyStream, PartialReader, StoreError},
};
use bytes::Bytes;
use futures_core::Stream;
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};
use tokio::sync::watch;

/// The most bytes a follower reads from the store at once.
const READ_CHUNK: u64 = 256 * 1024;

/// How far a fill is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State {
    /// Bytes the partial reader can read now.
    available: u64,
    /// `Some(total)` once every byte was written; `None` while writing.
    complete: Option<u64>,
    /// The fill ended short.
    failed: bool,
}

/// A fill's body as it is being written, for its followers.
pub(crate) struct Tap {
    /// The head of the response being stored.
    pub(crate) policy: Arc<CachePolicy>,
    /// The body's length, as the origin declared it.
    pub(crate) len: u64,
    reader: Arc<dyn PartialReader>,
    state: watch::Sender<State>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("len", &self.len)
            .field("state", &*self.state.borrow())
            .finish()
    }
}

/// What the fill holds: it moves the tap on as it writes, and fails it if dropped before
/// the end.
#[derive(Debug)]
pub(crate) struct TapHandle {
    tap: Arc<Tap>,
    done: bool,
}

impl Tap {
    /// A tap for a body of `len` bytes written through `reader`'s writer.
    pub(crate) fn new(
        policy: Arc<CachePolicy>,
        len: u64,
        reader: Arc<dyn PartialReader>,
    ) -> (Arc<Self>, TapHandle) {
        let (state, _) = watch::channel(State {
            available: 0,
            complete: None,
            failed: false,
        });
        let tap = Arc::new(Self {
            policy,
            len,
            reader,
            state,
        });
        let handle = TapHandle {
            tap: Arc::clone(&tap),
            done: false,
        };
        (tap, handle)
    }

    /// The body for one follower, from its first byte.
    pub(crate) fn body(self: &Arc<Self>) -> BodyStream {
        Box::pin(TapStream {
            tap: Arc::clone(self),
            pos: 0,
            reading: None,
            waiting: None,
            state: self.state.subscribe(),
        })
    }
}

impl TapHandle {
    /// More was written: followers may read up to what the store can give now.
    pub(crate) fn progress(&self) {
        let available = self.tap.reader.available();
        self.tap.state.send_if_modified(|s| {
            let moved = available > s.available;
            s.available = s.available.max(available);
            moved
        });
    }

    /// Every byte was written (`total` of them) and the write ended (committed or not):
    /// followers read to the end.
    pub(crate) fn complete(mut self, total: u64) {
        self.done = true;
        let available = self.tap.reader.available();
        self.tap.state.send_modify(|s| {
            s.available = s.available.max(available);
            s.complete = Some(total);
        });
    }
}

impl Drop for TapHandle {
    fn drop(&mut self) {
        if !self.done {
            self.tap.state.send_modify(|s| s.failed = true);
        }
    }
}

type Changed = Pin<Box<dyn Future<Output = watch::Receiver<State>> + Send>>;

/// A follower's body: reads what is there, then waits for more.
struct TapStream {
    tap: Arc<Tap>,
    pos: u64,
    reading: Option<BodyStream>,
    /// The receiver, moved into the wait for a change while there is nothing to read.
    waiting: Option<Changed>,
    state: watch::Receiver<State>,
}

impl Stream for TapStream {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(reading) = self.reading.as_mut() {
                match ready!(reading.as_mut().poll_next(cx)) {
                    Some(Ok(chunk)) => {
                        self.pos += chunk.len() as u64;
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                    Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                    None => self.reading = None,
                }
                continue;
            }
            if let Some(waiting) = self.waiting.as_mut() {
                let state = ready!(waiting.as_mut().poll(cx));
                self.waiting = None;
                self.state = state;
            }
            let state = *self.state.borrow_and_update();
            if self.pos < state.available {
                let end = state.available.min(self.pos + READ_CHUNK);
                self.reading = Some(self.tap.reader.read(self.pos..end));
                continue;
            }
            match state.complete {
                Some(total) if self.pos >= total => return Poll::Ready(None),
                // Complete, yet the store cannot give the rest: never end short.
                Some(_) => {
                    return Poll::Ready(Some(Err(StoreError::backend(
                        "the fill's body is not all readable",
                    ))))
                }
                None if state.failed => {
                    return Poll::Ready(Some(Err(StoreError::backend("the fill ended short"))))
                }
                None => {}
            }
            let mut rx = self.state.clone();
            self.waiting = Some(Box::pin(async move {
                // A closed channel cannot happen while the tap lives (it holds the sender).
                let _ = rx.changed().await;
                rx
            }));
        }
    }
}
