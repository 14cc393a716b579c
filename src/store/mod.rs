//! Where a [`ResponseCache`](crate::response_cache::ResponseCache) keeps its entries.
//!
//! A [`Store`] maps [`Key`]s to entries: an opaque, versioned head (`meta`, encoded by the
//! cache) and a body. Bodies are written through a [`StoreWriter`] chunk by chunk while they
//! stream to the client (async, one chunk at a time: backpressure), and become visible only
//! on [`StoreWriter::commit`]; a writer dropped before that aborts, so a truncated body is
//! never served. A hit reads the head at once and streams the body from the store as the
//! client reads it ([`StoredBody`]).
//!
//! Requests coalesced on a fill read its body while it is written, where the writer can say
//! what it has so far ([`StoreWriter::partial`]).
//!
//! A store that fails never fails a request: the cache logs the error (`tracing`), serves
//! without it and says `Cache-Status: ...; detail=store-error`.
//!
//! - [`MemoryStore`]: the embedded default, bounded by bytes and entries.
//! - [`FsStore`]: files under one directory, kept across restarts.
//! - `RedisStore` (feature `redis`): the shared store for a fleet.
//! - [`Layered`]: an L1 over an L2, kept honest across the fleet by an [`InvalidationBus`].
//! - [`Partitioned`]: URLs spread over several stores.
//! - [`AnyStore`]: any of them, chosen at run time.
//!
//! Each runs the same contract suite (`tests/common/store_contract.rs`); a store of your
//! own can run it too.

mod dynamic;
#[cfg(unix)]
mod fs;
mod key;
mod layered;
mod memory;
mod partitioned;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub use self::redis::{RedisBus, RedisStore, RedisStoreBuilder, RedisWriter};
pub use dynamic::{AnyStore, AnyWriter, DynStore};
#[cfg(unix)]
pub use fs::{FsStore, FsStoreBuilder, FsWriter, DEFAULT_FS_MAX_BYTES, DEFAULT_FS_MAX_ENTRIES};
pub(crate) use key::hex_digest;
pub use key::Key;
pub use layered::{
    InvalidationBus, InvalidationSink, Layered, LayeredBuilder, LayeredWriter, DEFAULT_L1_TTL,
};
pub use memory::{
    MemoryStore, MemoryStoreBuilder, MemoryWriter, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_ENTRY_BYTES,
};
pub use partitioned::Partitioned;

use bytes::Bytes;
use futures_core::Stream;
use std::{
    any::Any,
    fmt,
    future::Future,
    ops::Range,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

/// An entry's head as the cache hands it to a store: the encoded bytes (what a store that
/// serializes keeps) and, for stores that keep objects in memory, the decoded value, so a
/// hit need not decode it again.
#[derive(Clone)]
pub struct Meta {
    /// The encoded head (versioned by the cache).
    pub bytes: Bytes,
    /// The decoded head, if the store kept it. Stores that serialize return `None`.
    pub decoded: Option<Arc<dyn Any + Send + Sync>>,
}

impl Meta {
    /// A head of encoded bytes only.
    pub fn encoded(bytes: Bytes) -> Self {
        Self {
            bytes,
            decoded: None,
        }
    }

    /// A head with its decoded form.
    pub fn with_decoded(bytes: Bytes, decoded: Arc<dyn Any + Send + Sync>) -> Self {
        Self {
            bytes,
            decoded: Some(decoded),
        }
    }

    /// The decoded head, if there is one of type `T`.
    pub fn decoded<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.decoded.clone()?.downcast().ok()
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meta")
            .field("bytes", &self.bytes.len())
            .field("decoded", &self.decoded.is_some())
            .finish()
    }
}

/// A stored entry: the cache's head and the body. Made with [`Stored::new`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Stored {
    /// The head, as given to [`Store::writer`] or [`Store::update_meta`].
    pub meta: Meta,
    /// The body.
    pub body: StoredBody,
    /// Which write of the key this is: a number the store gives every commit and every
    /// [`Store::update_meta`], never twice for one key (nor `0`). Compare-and-swap writes
    /// ([`Expect::Version`]) name it, so that a write based on what was read never replaces
    /// something newer.
    pub version: u64,
    /// How much longer the entry lives in the store, if the store says: what a
    /// [`Layered`] store gives the copy it keeps in its first tier.
    pub expires_in: Option<Duration>,
    /// Which tier of a layered store answered (`"l1"`, `"l2"`), for `Cache-Status`.
    pub tier: Option<&'static str>,
}

impl Stored {
    /// An entry read from a store.
    pub fn new(meta: Meta, body: StoredBody, version: u64) -> Self {
        Self {
            meta,
            body,
            version,
            expires_in: None,
            tier: None,
        }
    }

    /// How much longer it lives.
    pub fn expires_in(mut self, left: Duration) -> Self {
        self.expires_in = Some(left);
        self
    }

    /// Which tier answered.
    pub fn from_tier(mut self, tier: &'static str) -> Self {
        self.tier = Some(tier);
        self
    }
}

/// What a conditional write expects to find under its key (compare-and-swap). A write whose
/// expectation fails changes nothing and reports it ([`StoreError::Conflict`] on commit,
/// `Ok(false)` from [`Store::update_meta`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    /// Whatever is there (an unconditional write).
    Any,
    /// No entry.
    Absent,
    /// The entry of this [`Stored::version`].
    Version(u64),
}

/// The body of a stored entry: in memory, or read from the store as the client reads it.
///
/// Cloning is cheap (a reference count), and each clone can be read on its own.
#[derive(Debug, Clone)]
pub enum StoredBody {
    /// Held in memory, whole.
    Bytes(Bytes),
    /// Read from the store on demand, in chunks.
    Reader(Arc<dyn BodyReader>),
}

impl StoredBody {
    /// The length of the body in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::Bytes(b) => b.len() as u64,
            Self::Reader(r) => r.len(),
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `range` of the body (within `0..len`) as a stream of chunks.
    pub fn stream(&self, range: Range<u64>) -> BodyStream {
        match self {
            Self::Bytes(b) => {
                let part = b.slice(range.start as usize..range.end as usize);
                Box::pin(once(part))
            }
            Self::Reader(r) => r.read(range),
        }
    }
}

/// A stream of body chunks read from a store. An error ends the body: the client's
/// response breaks off rather than end early looking complete.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// The body of an entry a store reads on demand (from a file, from Redis) rather than holds
/// in memory: [`StoredBody::Reader`].
pub trait BodyReader: fmt::Debug + Send + Sync + 'static {
    /// The body's length in bytes.
    fn len(&self) -> u64;

    /// Whether the body is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Streams bytes `range` of the body (`range.end <= len`), in chunks of a bounded size,
    /// read as the stream is polled: a large body never sits in memory whole. Reading goes
    /// on from the entry that was read, even if it was replaced or removed meanwhile, or
    /// fails (the stream yields an error).
    fn read(&self, range: Range<u64>) -> BodyStream;
}

/// What a writer has written so far, read while it writes: what requests coalesced on a
/// fill stream from ([`StoreWriter::partial`]). It stays readable after the writer commits
/// (or is dropped: then reads may fail).
pub trait PartialReader: Send + Sync + 'static {
    /// How many bytes from the start can be read now. Only grows.
    fn available(&self) -> u64;

    /// Streams bytes `range` (`range.end <= available()`), in chunks.
    fn read(&self, range: Range<u64>) -> BodyStream;
}

/// One chunk, then the end.
fn once(chunk: Bytes) -> impl Stream<Item = Result<Bytes, StoreError>> + Send {
    struct Once(Option<Bytes>);
    impl Stream for Once {
        type Item = Result<Bytes, StoreError>;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.0.take().filter(|b| !b.is_empty()).map(Ok))
        }
    }
    Once(Some(chunk))
}

/// What [`Store::get`] answers: the entry under a key, if any, or why the store could not
/// tell.
pub type GetResult = Result<Option<Stored>, StoreError>;

/// A failure of a store. The cache logs it and serves the request without the store.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The entry is larger than the store accepts.
    TooLarge {
        /// The store's limit in bytes.
        limit: u64,
    },
    /// The store takes in as much as it can right now (bodies being written hold all the
    /// memory it allows them): this entry is not stored. Try again later.
    Busy,
    /// A conditional write found something else under its key than it expected
    /// ([`Expect`]): nothing was written. Not a failure of the store.
    Conflict,
    /// The store is not used for now: it failed or was too slow too often, and is given a
    /// moment before it is tried again (a circuit breaker).
    Unavailable,
    /// The store did not answer within its deadline.
    Timeout,
    /// The store could not be reached or failed.
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// A backend failure from any error.
    pub fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend(e.into())
    }

    /// Whether the store itself failed (not a refusal of this entry): the cache says
    /// `detail=store-error` (RFC 9211) when it served without the store because of it.
    pub fn is_failure(&self) -> bool {
        matches!(self, Self::Unavailable | Self::Timeout | Self::Backend(_))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { limit } => {
                write!(f, "entry larger than the store's limit of {limit} bytes")
            }
            Self::Conflict => f.write_str("the entry changed since it was read"),
            Self::Busy => f.write_str("the store is full of entries being written"),
            Self::Unavailable => f.write_str("the store is not used for now (circuit open)"),
            Self::Timeout => f.write_str("the store did not answer in time"),
            Self::Backend(e) => write!(f, "store backend error: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend(e) => Some(&**e),
            Self::TooLarge { .. }
            | Self::Conflict
            | Self::Busy
            | Self::Unavailable
            | Self::Timeout => None,
        }
    }
}

/// Writes one entry's body. Dropping it (or a future of its) without
/// [`commit`](StoreWriter::commit) aborts: nothing becomes visible, and what was written is
/// cleaned up (in the background where the store needs I/O for that).
///
/// Writes are async and consume the writer, which they give back: the cache waits for one
/// chunk to be taken before it reads the next from the origin, so a slow store slows the
/// fill (backpressure) instead of buffering it.
pub trait StoreWriter: Send + 'static {
    /// Appends a chunk of the body. After an error the writer is gone: the entry is not
    /// stored.
    fn write(self, chunk: Bytes) -> impl Future<Output = Result<Self, StoreError>> + Send
    where
        Self: Sized;

    /// Replaces the head the entry will be committed with: one that is complete only once
    /// the whole body has been seen (the cache mints an `ETag` from the body). Called at
    /// most once, after the last [`write`](StoreWriter::write) and before `commit`. A store
    /// whose limits the new head would break keeps the one it was opened with.
    fn replace_meta(&mut self, meta: Meta);

    /// A reader of what this writer has written so far, if the store can give one: requests
    /// coalesced on the fill then stream the body as it is written instead of waiting for
    /// the commit. `None` (the default): they wait.
    fn partial(&self) -> Option<Arc<dyn PartialReader>> {
        None
    }

    /// Makes the entry visible, replacing the entry under the same key if the writer's
    /// [`Expect`] still holds (else [`StoreError::Conflict`], and nothing changes), at once
    /// for every reader: a reader sees the old entry or the new one, never a mix. Called
    /// only when the body ended cleanly. Returns the entry's [`Stored::version`].
    fn commit(self) -> impl Future<Output = Result<u64, StoreError>> + Send
    where
        Self: Sized;
}

/// A place for cache entries. Clones share the same entries.
///
/// Every method may be called concurrently; none may hold a lock across an await, nor block
/// the async worker it runs on (file and network I/O goes to tasks or `spawn_blocking`).
///
/// A store picked at run time (from configuration) is an [`AnyStore`], which wraps any
/// store behind one type.
pub trait Store: Clone + Send + Sync + 'static {
    /// The writer of this store.
    type Writer: StoreWriter;

    /// The entry under `key`, if any (and not expired): its head at once, and its body as a
    /// handle that reads it only when it is streamed ([`StoredBody`]), so a lookup that
    /// needs the head only (a `HEAD`, a `304`, a `Vary` mismatch) reads no body.
    fn get(&self, key: &Key) -> impl Future<Output = Result<Option<Stored>, StoreError>> + Send;

    /// The entries under `first` and `second`, each as [`get`](Self::get) would read it:
    /// by default two `get`s run together; a store whose reads are remote may read both in
    /// one round trip (`RedisStore` does, for two keys of one URL). The cache reads a URL's
    /// record and the entry it expects this way ([`remote_reads`](Self::remote_reads)).
    fn get_two(
        &self,
        first: &Key,
        second: &Key,
    ) -> impl Future<Output = (GetResult, GetResult)> + Send {
        async move { tokio::join!(self.get(first), self.get(second)) }
    }

    /// Starts writing an entry that will live for `ttl` once committed, if what is under
    /// `key` at commit time is what `expect` says.
    fn writer(
        &self,
        key: &Key,
        meta: Meta,
        ttl: Duration,
        expect: Expect,
    ) -> impl Future<Output = Result<Self::Writer, StoreError>> + Send;

    /// The largest body this store accepts, if it has a limit: the cache does not start
    /// writing a body announced to be larger.
    fn max_entry_bytes(&self) -> Option<u64> {
        None
    }

    /// Whether a read costs a round trip to another machine (default: no). The cache then
    /// reads ahead: a lookup asks for a URL's record and the entry it expects from the last
    /// lookup of the URL at once, so a hit waits for one round trip, not two.
    fn remote_reads(&self) -> bool {
        false
    }

    /// Replaces the head of the entry under `key` and its time to live, keeping its body, if
    /// `expect` holds; where there is no entry (and `expect` allows that), creates one with
    /// an empty body. The entry gets a new [`Stored::version`]. Returns whether it wrote.
    ///
    /// Atomic: between checking `expect` and writing, no other write of `key` happens.
    fn update_meta(
        &self,
        key: &Key,
        expect: Expect,
        meta: Meta,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes the entry under `key` if `expect` holds (atomically: a newer entry written in
    /// between is never removed in its place); returns whether one was removed.
    fn remove(
        &self,
        key: &Key,
        expect: Expect,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes every entry of this store (of this cache's namespace, for a shared backend),
    /// and nothing else.
    fn clear(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
