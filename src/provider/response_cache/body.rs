//! [`CacheBody`]: the body of responses from the response cache's store service.

use super::tee::TeeBody;
use crate::{
    middleware::body::{BufferedBody, NoBody},
    store::StoreWriter,
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

/// The body of an answer made from a stored entry: its bytes, or none (HEAD, 304) with the
/// size the client is told about.
#[derive(Debug)]
pub enum HitBody {
    /// The stored bytes.
    Full(Full<Bytes>),
    /// No bytes.
    None(NoBody),
}

impl HitBody {
    pub(crate) fn bytes(bytes: Bytes) -> Self {
        Self::Full(Full::new(bytes))
    }
}

impl Body for HitBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(b) => Pin::new(b).poll_frame(cx),
            Self::None(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) => b.is_end_stream(),
            Self::None(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(b) => b.size_hint(),
            Self::None(b) => b.size_hint(),
        }
    }
}

/// The inner service's body as a fill holds it: what was read ahead (to mint a tag before
/// the head goes out), then the rest.
pub(crate) type FillBody<B> = BufferedBody<Pin<Box<B>>>;

pin_project! {
    /// A body from the response cache: the inner service's body as it is (or as a fill read
    /// it ahead), the same body written to the store as it streams, or stored bytes.
    pub struct CacheBody<B: Body, W> {
        #[pin]
        kind: Kind<B, W>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B: Body, W> {
        Inner { #[pin] body: B },
        Fill { #[pin] body: FillBody<B> },
        Tee { #[pin] body: TeeBody<FillBody<B>, W> },
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

    pub(crate) fn tee(body: TeeBody<FillBody<B>, W>) -> Self {
        Self {
            kind: Kind::Tee { body },
        }
    }

    pub(crate) fn stored(body: HitBody) -> Self {
        Self {
            kind: Kind::Stored { body },
        }
    }
}

/// The error of a [`CacheBody`]: the inner body's.
fn never<E>(e: Infallible) -> E {
    match e {}
}

impl<B, W> Body for CacheBody<B, W>
where
    B: Body<Data = Bytes>,
    W: StoreWriter,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Fill { body } => body.poll_frame(cx),
            KindProj::Tee { body } => body.poll_frame(cx),
            KindProj::Stored { body } => body.poll_frame(cx).map(|f| f.map(|r| r.map_err(never))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Fill { body } => body.is_end_stream(),
            Kind::Tee { body } => body.is_end_stream(),
            Kind::Stored { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Fill { body } => body.size_hint(),
            Kind::Tee { body } => body.size_hint(),
            Kind::Stored { body } => body.size_hint(),
        }
    }
}
