//! [`TeeBody`]: streams a body to the client while writing it to the store.

use super::coalesce::FillGuard;
use crate::store::StoreWriter;
use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::{
    pin::Pin,
    task::{ready, Context, Poll},
};

pin_project! {
    /// A body passed to the client chunk by chunk and, as it goes, to a store writer. The
    /// entry is committed only when the body ends cleanly; an error, trailers (not stored),
    /// a store failure or the client going away (drop) abandon it. Either way the fill guard
    /// is released at the end, waking coalesced requests.
    pub struct TeeBody<B, W> {
        #[pin]
        body: B,
        writer: Option<W>,
        guard: Option<FillGuard>,
        written: u64,
        // The exact length the body announced: once that much is written the body is
        // complete, even if nobody polls it again (hyper stops at Content-Length).
        expected: Option<u64>,
    }
}

impl<B: std::fmt::Debug, W> std::fmt::Debug for TeeBody<B, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeeBody")
            .field("body", &self.body)
            .field("writing", &self.writer.is_some())
            .finish()
    }
}

impl<B: Body, W: StoreWriter> TeeBody<B, W> {
    pub(crate) fn new(body: B, writer: W, guard: Option<FillGuard>) -> Self {
        let expected = body.size_hint().exact();
        let mut tee = Self {
            body,
            writer: Some(writer),
            guard,
            written: 0,
            expected,
        };
        if tee.body.is_end_stream() {
            // Nobody will poll an empty body: commit now.
            finish(&mut tee.writer, &mut tee.guard, true);
        }
        tee
    }
}

fn finish<W: StoreWriter>(writer: &mut Option<W>, guard: &mut Option<FillGuard>, commit: bool) {
    if let Some(w) = writer.take() {
        if commit {
            if let Err(e) = w.commit() {
                tracing::warn!(error = %e, "cache store failed to commit an entry");
            }
        }
    }
    guard.take();
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
        let polled = if this.body.is_end_stream() {
            None
        } else {
            ready!(this.body.as_mut().poll_frame(cx))
        };
        let frame = match polled {
            None => {
                finish(this.writer, this.guard, true);
                return Poll::Ready(None);
            }
            Some(Err(e)) => {
                finish(this.writer, this.guard, false);
                return Poll::Ready(Some(Err(e)));
            }
            Some(Ok(frame)) => frame,
        };
        let frame = match frame.into_data() {
            Ok(mut data) => {
                let data = data.copy_to_bytes(data.remaining());
                *this.written += data.len() as u64;
                if let Some(w) = this.writer.as_mut() {
                    if let Err(e) = w.write(&data) {
                        tracing::debug!(error = %e, "not storing a response");
                        finish(this.writer, this.guard, false);
                    } else if this.body.is_end_stream() || *this.expected == Some(*this.written) {
                        // The last chunk: commit now, the client may never poll again.
                        finish(this.writer, this.guard, true);
                    }
                }
                Frame::data(data)
            }
            Err(frame) => {
                // Trailers are not kept by the stores: do not store a body that has them.
                finish(this.writer, this.guard, false);
                frame.map_data(|mut d: B::Data| d.copy_to_bytes(d.remaining()))
            }
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        // Report the end only once the entry is committed, so the last poll happens.
        self.writer.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
