//! The bodies the middleware and the providers share: [`ResponseBody`] (what the middleware
//! returns), [`BufferedBody`] (bytes read ahead to hash them, then whatever the inner body
//! still has), [`NoBody`], and the bounded read-ahead that fills a `BufferedBody`. At the
//! crate's root, not in `middleware/`: providers use them, and the middleware uses
//! providers, so neither imports the other for these.

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

/// The error type of [`ResponseBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// The body of a response from [`EtagCache`](crate::EtagCache): the inner service's body
    /// untouched (`B`), the body of an answer from the provider's lookup (`H`) or store
    /// (`S`), or nothing (a HEAD answer made from a GET response).
    pub struct ResponseBody<B, H, S> {
        #[pin]
        kind: Kind<B, H, S>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B, H, S> {
        Inner { #[pin] body: B },
        Hit { #[pin] body: H },
        Stored { #[pin] body: S },
        Empty { body: NoBody },
    }
}

impl<B, H, S> ResponseBody<B, H, S> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn hit(body: H) -> Self {
        Self {
            kind: Kind::Hit { body },
        }
    }

    pub(crate) fn stored(body: S) -> Self {
        Self {
            kind: Kind::Stored { body },
        }
    }

    /// No bytes, reporting `hint` (a HEAD answer made from a GET response).
    pub(crate) fn empty(hint: SizeHint) -> Self {
        Self {
            kind: Kind::Empty {
                body: NoBody::with_hint(hint),
            },
        }
    }
}

impl<B, H, S> std::fmt::Debug for ResponseBody<B, H, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Inner { .. } => "Inner",
            Kind::Hit { .. } => "Hit",
            Kind::Stored { .. } => "Stored",
            Kind::Empty { .. } => "Empty",
        };
        f.debug_tuple("ResponseBody").field(&kind).finish()
    }
}

fn frame_to_bytes<D: Buf>(frame: Frame<D>) -> Frame<Bytes> {
    frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
}

fn boxed<D: Buf, E: Into<BoxError>>(
    frame: Poll<Option<Result<Frame<D>, E>>>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    frame.map(|f| f.map(|r| r.map(frame_to_bytes).map_err(Into::into)))
}

impl<B, H, S> Body for ResponseBody<B, H, S>
where
    B: Body,
    B::Error: Into<BoxError>,
    H: Body<Data = Bytes>,
    H::Error: Into<BoxError>,
    S: Body<Data = Bytes>,
    S::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => boxed(body.poll_frame(cx)),
            KindProj::Hit { body } => boxed(body.poll_frame(cx)),
            KindProj::Stored { body } => boxed(body.poll_frame(cx)),
            KindProj::Empty { .. } => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Hit { body } => body.is_end_stream(),
            Kind::Stored { body } => body.is_end_stream(),
            Kind::Empty { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Hit { body } => body.size_hint(),
            Kind::Stored { body } => body.size_hint(),
            Kind::Empty { body } => body.size_hint(),
        }
    }
}

/// A body without bytes that reports a chosen size: the answer to a HEAD request reports the
/// size of the GET body it stands for (so a server writes the right `Content-Length`), a 304
/// reports an unknown size (so none writes `Content-Length: 0`).
#[derive(Clone, Debug, Default)]
pub struct NoBody {
    hint: SizeHint,
}

impl NoBody {
    /// A body without bytes reporting `hint`.
    pub fn with_hint(hint: SizeHint) -> Self {
        Self { hint }
    }

    /// A body without bytes and without a stated size.
    pub fn unknown() -> Self {
        Self::default()
    }
}

impl Body for NoBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        // A size above zero is a promise about another request's body (HEAD): say "done"
        // only where the size says so too.
        self.hint.upper() == Some(0)
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}

pin_project! {
    /// Bytes held in memory, then (optionally) an error or the rest of a body still streaming.
    ///
    /// Built by the providers: a fully read body (with its trailers), a prefix read ahead
    /// before the size limit was reached followed by the rest of the stream, or a prefix
    /// followed by the error that cut the body short, so the client sees a body error, never
    /// a truncated body that looks complete.
    pub struct BufferedBody<B: Body> {
        chunks: VecDeque<Bytes>,
        buffered_len: u64,
        error: Option<B::Error>,
        trailers: Option<HeaderMap>,
        #[pin]
        rest: Option<B>,
        // Set for bodies without bytes that stand for another one (HEAD, 304).
        declared: Option<SizeHint>,
    }
}

impl<B: Body> std::fmt::Debug for BufferedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferedBody")
            .field("buffered_len", &self.buffered_len)
            .field("streaming", &self.rest.is_some())
            .finish()
    }
}

impl<B: Body> BufferedBody<B> {
    /// No bytes at all (a 412).
    pub fn empty() -> Self {
        Self::from_parts(VecDeque::new(), 0, None, None, None)
    }

    /// No bytes, reporting `hint`: see [`NoBody`](crate::NoBody).
    pub fn no_body(hint: SizeHint) -> Self {
        let mut body = Self::empty();
        body.declared = Some(hint);
        body
    }

    /// The whole inner body, untouched.
    pub fn streaming(body: B) -> Self {
        Self::from_parts(VecDeque::new(), 0, None, None, Some(body))
    }

    /// The body's bytes, when all of it is in memory and it ends cleanly without trailers
    /// (a body read ahead to its end).
    pub(crate) fn whole(&self) -> Option<impl Iterator<Item = &Bytes>> {
        let whole = self.rest.is_none()
            && self.error.is_none()
            && self.trailers.is_none()
            && self.declared.is_none();
        whole.then(|| self.chunks.iter())
    }

    fn from_parts(
        chunks: VecDeque<Bytes>,
        buffered_len: u64,
        error: Option<B::Error>,
        trailers: Option<HeaderMap>,
        rest: Option<B>,
    ) -> Self {
        Self {
            chunks,
            buffered_len,
            error,
            trailers,
            rest,
            declared: None,
        }
    }
}

impl<B> Body for BufferedBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        if let Some(chunk) = this.chunks.pop_front() {
            *this.buffered_len -= chunk.len() as u64;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(e) = this.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        if let Some(t) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        match this.rest.as_mut().as_pin_mut() {
            Some(rest) => {
                let frame = ready!(rest.poll_frame(cx));
                if frame.is_none() {
                    this.rest.set(None);
                }
                Poll::Ready(frame.map(|r| r.map(frame_to_bytes)))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.declared.as_ref().is_none_or(|d| d.upper() == Some(0))
            && self.chunks.is_empty()
            && self.error.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        if let Some(declared) = &self.declared {
            return *declared;
        }
        if self.error.is_some() {
            // The body will end in an error: it must not look complete at `buffered_len`
            // (a server would write that Content-Length and the client would never know).
            let mut hint = SizeHint::new();
            hint.set_lower(self.buffered_len);
            return hint;
        }
        let Some(rest) = &self.rest else {
            return SizeHint::with_exact(self.buffered_len);
        };
        let hint = rest.size_hint();
        let mut out = SizeHint::new();
        out.set_lower(hint.lower().saturating_add(self.buffered_len));
        if let Some(upper) = hint.upper() {
            out.set_upper(upper.saturating_add(self.buffered_len));
        }
        out
    }
}

/// What reading a body ahead, up to a limit, came to.
pub(crate) enum ReadAhead<B: Body> {
    /// The body ended cleanly: all of it, its blake3 hash and its trailers.
    Complete {
        body: BufferedBody<B>,
        hash: blake3::Hash,
        len: u64,
    },
    /// The body is larger than the limit, or it failed: what was read, then the rest of the
    /// stream or the error. Such a body must not be tagged or stored.
    Incomplete { body: BufferedBody<B> },
}

/// Reads a body frame by frame, hashing data as it arrives (no copy, no concatenation),
/// until it ends, errs, passes `limit` bytes, or has taken longer than its time limit.
///
/// The body must be `Unpin` because it is handed on after being polled; providers box
/// bodies that are not (`Pin<Box<B>>` is a `Body` and `Unpin`).
pub(crate) struct ReadAheadFuture<B: Body> {
    body: Option<B>,
    chunks: VecDeque<Bytes>,
    len: u64,
    limit: u64,
    /// Made at the second chunk: a body of one chunk is hashed in one call.
    hasher: Option<Box<blake3::Hasher>>,
    trailers: Option<HeaderMap>,
    /// When to stop waiting and let the head go out: `timeout` after `started`, timed by a
    /// tokio timer made the first time the body makes the read wait (most bodies never do).
    started: tokio::time::Instant,
    timeout: std::time::Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B: Body + Unpin> ReadAheadFuture<B> {
    /// Reads `body` ahead up to `limit` bytes, for at most `timeout` when a tokio runtime
    /// is there to time it.
    pub(crate) fn new(body: B, limit: u64, timeout: std::time::Duration) -> Self {
        Self {
            body: Some(body),
            chunks: VecDeque::new(),
            len: 0,
            limit,
            hasher: None,
            trailers: None,
            started: tokio::time::Instant::now(),
            timeout,
            deadline: None,
        }
    }

    /// Whether the read-ahead can be bounded in time: there is a tokio runtime to time it.
    pub(crate) fn is_timed(&self) -> bool {
        tokio::runtime::Handle::try_current().is_ok()
    }

    /// Whether the time is up (the first call arms the timer).
    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        if self.deadline.is_none() && self.is_timed() {
            // A timeout too large to add is no timeout.
            let Some(at) = self.started.checked_add(self.timeout) else {
                return false;
            };
            self.deadline = Some(Box::pin(tokio::time::sleep_until(at)));
        }
        self.deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready())
    }

    /// The body, unread.
    pub(crate) fn into_streaming(mut self) -> BufferedBody<B> {
        let rest = self.body.take();
        self.finish(None, rest)
    }

    fn finish(&mut self, error: Option<B::Error>, rest: Option<B>) -> BufferedBody<B> {
        let trailers = if error.is_none() && rest.is_none() {
            self.trailers.take()
        } else {
            None
        };
        BufferedBody::from_parts(
            std::mem::take(&mut self.chunks),
            self.len,
            error,
            trailers,
            rest,
        )
    }
}

impl<B: Body + Unpin> Future for ReadAheadFuture<B> {
    type Output = ReadAhead<B>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ReadAhead<B>> {
        let this = &mut *self;
        loop {
            let body = this
                .body
                .as_mut()
                .expect("ReadAheadFuture polled after completion");
            let polled = match Pin::new(body).poll_frame(cx) {
                Poll::Ready(polled) => polled,
                Poll::Pending => {
                    if this.timed_out(cx) {
                        // Too slow: the head goes out now, with what was read and the rest
                        // of the stream, untagged.
                        let rest = this.body.take();
                        return Poll::Ready(ReadAhead::Incomplete {
                            body: this.finish(None, rest),
                        });
                    }
                    return Poll::Pending;
                }
            };
            match polled {
                None => {
                    this.body = None;
                    let hash = match (&this.hasher, this.chunks.front()) {
                        (Some(hasher), _) => hasher.finalize(),
                        (None, Some(only)) => blake3::hash(only),
                        (None, None) => blake3::hash(&[]),
                    };
                    let len = this.len;
                    return Poll::Ready(ReadAhead::Complete {
                        body: this.finish(None, None),
                        hash,
                        len,
                    });
                }
                Some(Err(error)) => {
                    this.body = None;
                    return Poll::Ready(ReadAhead::Incomplete {
                        body: this.finish(Some(error), None),
                    });
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let data = data.copy_to_bytes(data.remaining());
                        this.len += data.len() as u64;
                        match (&mut this.hasher, this.chunks.front()) {
                            (Some(hasher), _) => {
                                hasher.update(&data);
                            }
                            (None, None) => {}
                            (None, Some(first)) => {
                                let mut hasher = Box::<blake3::Hasher>::default();
                                hasher.update(first);
                                hasher.update(&data);
                                this.hasher = Some(hasher);
                            }
                        }
                        this.chunks.push_back(data);
                        if this.len > this.limit {
                            // Over the limit: hand the rest of the stream on untouched.
                            let rest = this.body.take();
                            return Poll::Ready(ReadAhead::Incomplete {
                                body: this.finish(None, rest),
                            });
                        }
                    }
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            match &mut this.trailers {
                                Some(existing) => existing.extend(t),
                                None => this.trailers = Some(t),
                            }
                        }
                    }
                },
            }
        }
    }
}
