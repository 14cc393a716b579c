//! [`CacheBody`]: the body of responses from the response cache's store service.

use super::tee::TeeBody;
use crate::{
    body::{BoxError, BufferedBody, NoBody},
    store::{BodyStream, StoreError, StoreWriter, StoredBody},
};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;
use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};
use std::{ops::Range, task::ready};
use sync_wrapper::SyncWrapper;

/// The body of an answer made from a stored entry: its bytes (in memory, or read from the
/// store as the client reads it), or none (HEAD, 304) with the size the client is told
/// about.
///
/// A body read from the store that fails or ends short gives an error, never an early end:
/// the client's response breaks off instead of looking complete.
#[derive(Debug)]
pub enum HitBody {
    /// The stored bytes, in memory.
    Full(Full<Bytes>),
    /// Read from the store.
    Stream(StoreStream),
    /// No bytes.
    None(NoBody),
}

/// A body read from the store: [`HitBody::Stream`].
pub struct StoreStream {
    stream: SyncWrapper<BodyStream>,
    remaining: u64,
}

impl std::fmt::Debug for StoreStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreStream")
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl HitBody {
    pub(crate) fn bytes(bytes: Bytes) -> Self {
        Self::Full(Full::new(bytes))
    }

    /// A body of exactly `len` bytes read from `stream`.
    pub(crate) fn streaming(stream: BodyStream, len: u64) -> Self {
        Self::Stream(StoreStream {
            remaining: len,
            stream: SyncWrapper::new(stream),
        })
    }

    /// Bytes `range` of a stored body.
    pub(crate) fn stored(body: &StoredBody, range: Range<u64>) -> Self {
        match body {
            StoredBody::Bytes(b) => Self::bytes(b.slice(range.start as usize..range.end as usize)),
            StoredBody::Reader(_) => Self::Stream(StoreStream {
                remaining: range.end - range.start,
                stream: SyncWrapper::new(body.stream(range)),
            }),
        }
    }
}

impl Body for HitBody {
    type Data = Bytes;
    type Error = StoreError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StoreError>>> {
        let infallible = |p: Poll<Option<Result<Frame<Bytes>, Infallible>>>| {
            p.map(|f| f.map(|r| r.map_err(|never| match never {})))
        };
        match self.get_mut() {
            Self::Full(b) => infallible(Pin::new(b).poll_frame(cx)),
            Self::None(b) => infallible(Pin::new(b).poll_frame(cx)),
            Self::Stream(s) => {
                if s.remaining == 0 {
                    return Poll::Ready(None);
                }
                let next = ready!(s.stream.get_mut().as_mut().poll_next(cx));
                Poll::Ready(Some(match next {
                    Some(Ok(chunk)) if chunk.len() as u64 <= s.remaining => {
                        s.remaining -= chunk.len() as u64;
                        Ok(Frame::data(chunk))
                    }
                    Some(Ok(_)) => Err(StoreError::backend(
                        "the stored body is longer than its length",
                    )),
                    Some(Err(e)) => Err(e),
                    None => Err(StoreError::backend("the stored body ended short")),
                }))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) => b.is_end_stream(),
            Self::Stream(s) => s.remaining == 0,
            Self::None(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(b) => b.size_hint(),
            Self::Stream(s) => SizeHint::with_exact(s.remaining),
            Self::None(b) => b.size_hint(),
        }
    }
}

/// The inner service's body as a fill holds it: what was read ahead (to mint a tag before
/// the head goes out), then the rest.
pub(crate) type FillBody<B> = BufferedBody<Pin<Box<B>>>;

/// What becomes of a fill's body when its client's response goes: if the body has not
/// ended (the client went away), it reads the rest into the store in the background, or
/// drops it.
pub(crate) type OnAbandon<T> = Box<dyn FnOnce(Pin<Box<T>>) + Send>;

pin_project! {
    /// A body from the response cache: the inner service's body as it is (or as a fill read
    /// it ahead), the same body written to the store as it streams, or stored bytes.
    pub struct CacheBody<B: Body, W> {
        #[pin]
        kind: Kind<B, W>,
    }

    impl<B: Body, W> PinnedDrop for CacheBody<B, W> {
        fn drop(this: Pin<&mut Self>) {
            // A client that goes away before the end of a fill leaves the rest to the cache.
            if let KindProj::Tee { body, on_abandon } = this.project().kind.project() {
                if let (Some(tee), Some(on_abandon)) = (body.take(), on_abandon.take()) {
                    (on_abandon.into_inner())(tee);
                }
            }
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B: Body, W> {
        Inner { #[pin] body: B },
        Fill { #[pin] body: FillBody<B> },
        // Boxed, so that a client that goes away can hand it on; `None` only once dropped.
        Tee {
            body: Option<Pin<Box<TeeBody<FillBody<B>, W>>>>,
            on_abandon: Option<SyncWrapper<OnAbandon<TeeBody<FillBody<B>, W>>>>,
        },
        Stored { #[pin] body: HitBody },
    }
}

impl<B: Body, W> std::fmt::Debug for CacheBody<B, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Inner { .. } => "Inner",
            Kind::Fill { .. } => "Fill",
            Kind::Tee { .. } => "Tee",
            Kind::Stored { .. } => "Stored",
        };
        f.debug_tuple("CacheBody").field(&kind).finish()
    }
}

impl<B: Body, W> CacheBody<B, W> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn fill(body: FillBody<B>) -> Self {
        Self {
            kind: Kind::Fill { body },
        }
    }

    /// `body`, written to the store as the client reads it; `on_abandon` takes what is left
    /// of it if the client goes away first.
    pub(crate) fn tee(
        body: TeeBody<FillBody<B>, W>,
        on_abandon: Option<OnAbandon<TeeBody<FillBody<B>, W>>>,
    ) -> Self {
        Self {
            kind: Kind::Tee {
                body: Some(Box::pin(body)),
                on_abandon: on_abandon.map(SyncWrapper::new),
            },
        }
    }

    pub(crate) fn stored(body: HitBody) -> Self {
        Self {
            kind: Kind::Stored { body },
        }
    }
}

/// The error of a [`CacheBody`]: the inner body's, or the store's for a body read from it
/// (a stale answer in place of an error).
impl<B, W> Body for CacheBody<B, W>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    W: StoreWriter,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        fn boxed<E: Into<BoxError>>(
            p: Poll<Option<Result<Frame<Bytes>, E>>>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            p.map(|f| f.map(|r| r.map_err(Into::into)))
        }
        match self.project().kind.project() {
            KindProj::Inner { body } => boxed(body.poll_frame(cx)),
            KindProj::Fill { body } => boxed(body.poll_frame(cx)),
            KindProj::Tee { body, .. } => match body {
                Some(body) => boxed(body.as_mut().poll_frame(cx)),
                None => Poll::Ready(None),
            },
            KindProj::Stored { body } => boxed(body.poll_frame(cx)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Fill { body } => body.is_end_stream(),
            Kind::Tee { body, .. } => body.as_ref().is_none_or(|b| b.is_end_stream()),
            Kind::Stored { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Fill { body } => body.size_hint(),
            Kind::Tee { body, .. } => body
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint()),
            Kind::Stored { body } => body.size_hint(),
        }
    }
}
