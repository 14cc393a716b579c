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

/// How long a follower waits for the fill to move on before it gives up (its response
/// breaks off). The fill reads the origin as fast as its own client reads; a client that
/// stalls stalls the fill, and this bounds how long the followers wait behind it.
const STALL: std::time::Duration = std::time::Duration::from_secs(10);

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

/// The wait for the fill to move on: the receiver back, or `None` when it stalled.
type Changed = Pin<Box<dyn Future<Output = Option<watch::Receiver<State>>> + Send>>;

/// A follower's body: reads what is there, then waits for more.
struct TapStream {
    tap: Arc<Tap>,
    pos: u64,
    /// A read from the store in flight, and where it is to end.
    reading: Option<(BodyStream, u64)>,
    /// The receiver, moved into the wait for a change while there is nothing to read.
    waiting: Option<Changed>,
    state: watch::Receiver<State>,
}

impl Stream for TapStream {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let pos = self.pos;
            if let Some((reading, end)) = self.reading.as_mut() {
                match ready!(reading.as_mut().poll_next(cx)) {
                    Some(Ok(chunk)) => {
                        self.pos += chunk.len() as u64;
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                    Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                    // The store gave less than it said it had (the fill was refused and
                    // let go of its bytes): never read the same nothing again.
                    None if pos < *end => {
                        return Poll::Ready(Some(Err(StoreError::backend(
                            "the fill's body is no longer readable",
                        ))))
                    }
                    None => self.reading = None,
                }
                continue;
            }
            if let Some(waiting) = self.waiting.as_mut() {
                let Some(state) = ready!(waiting.as_mut().poll(cx)) else {
                    return Poll::Ready(Some(Err(StoreError::backend(
                        "the fill stalled behind its own client",
                    ))));
                };
                self.waiting = None;
                self.state = state;
            }
            let state = *self.state.borrow_and_update();
            if self.pos < state.available {
                let end = state.available.min(self.pos + READ_CHUNK);
                self.reading = Some((self.tap.reader.read(self.pos..end), end));
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
                match tokio::time::timeout(STALL, rx.changed()).await {
                    Ok(_) => Some(rx),
                    Err(_) => None,
                }
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::test_util::{get, res, t0};
    use crate::policy::{CacheMode, PolicyOptions};

    /// Says it has `available` bytes, gives none (a writer that let go of its buffer).
    struct Emptied(u64);

    impl PartialReader for Emptied {
        fn available(&self) -> u64 {
            self.0
        }
        fn read(&self, _: std::ops::Range<u64>) -> BodyStream {
            crate::store::StoredBody::Bytes(Bytes::new()).stream(0..0)
        }
    }

    fn policy() -> Arc<CachePolicy> {
        let (req, res) = (get(&[]), res(&[("cache-control", "max-age=60")]));
        let p = CachePolicy::with_options(
            &req,
            &res,
            t0(),
            t0(),
            CacheMode::Shared,
            PolicyOptions::default(),
        );
        Arc::new(p)
    }

    async fn next(body: &mut BodyStream) -> Option<Result<Bytes, StoreError>> {
        std::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await
    }

    #[tokio::test]
    async fn a_reader_that_gives_less_than_it_has_fails_the_follower_at_once() {
        let (tap, handle) = Tap::new(policy(), 100, Arc::new(Emptied(50)));
        handle.progress();
        let mut body = tap.body();
        let got = tokio::time::timeout(std::time::Duration::from_secs(1), next(&mut body))
            .await
            .expect("an answer, not a spin");
        assert!(matches!(got, Some(Err(_))), "{got:?}");
    }

    #[tokio::test]
    async fn a_dropped_fill_fails_and_a_complete_one_ends() {
        let (tap, handle) = Tap::new(policy(), 0, Arc::new(Emptied(0)));
        let mut body = tap.body();
        drop(handle);
        assert!(matches!(next(&mut body).await, Some(Err(_))));
        let (tap, handle) = Tap::new(policy(), 0, Arc::new(Emptied(0)));
        let mut body = tap.body();
        handle.complete(0);
        assert!(
            next(&mut body).await.is_none(),
            "an empty body ends cleanly"
        );
    }
}
