//! Where a [`ResponseCache`](crate::response_cache::ResponseCache) keeps its entries.
//!
//! A [`Store`] maps string keys to entries: an opaque, versioned head (`meta`, encoded by the
//! cache) and a body. Bodies are written through a [`StoreWriter`] chunk by chunk while they
//! stream to the client, and become visible only on [`StoreWriter::commit`]; a writer dropped
//! before that aborts, so a truncated body is never served.
//!
//! A store that fails never fails a request: the cache logs the error (`tracing`) and steps
//! aside. [`MemoryStore`] is the embedded default.

mod memory;

pub use memory::{
    MemoryStore, MemoryStoreBuilder, MemoryWriter, DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_ENTRY_BYTES,
};

use bytes::Bytes;
use std::{any::Any, fmt, future::Future, sync::Arc, time::Duration};

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

/// A stored entry: the cache's head and the body.
#[derive(Debug, Clone)]
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

/// The body of a stored entry.
#[derive(Debug, Clone)]
pub enum StoredBody {
    /// Held in memory, whole.
    Bytes(Bytes),
}

impl StoredBody {
    /// The length of the body in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::Bytes(b) => b.len() as u64,
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

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
    /// The store could not be reached or failed.
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { limit } => {
                write!(f, "entry larger than the store's limit of {limit} bytes")
            }
            Self::Conflict => f.write_str("the entry changed since it was read"),
            Self::Busy => f.write_str("the store is full of entries being written"),
            Self::Backend(e) => write!(f, "store backend error: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Backend(e) => Some(&**e),
            Self::TooLarge { .. } | Self::Conflict | Self::Busy => None,
        }
    }
}

/// Writes one entry's body. Dropping it without [`commit`](StoreWriter::commit) aborts:
/// nothing becomes visible.
pub trait StoreWriter: Send + 'static {
    /// Appends a chunk of the body. Must not block: a store that does I/O buffers or hands
    /// the chunk to a task. After an error the writer is abandoned.
    fn write(&mut self, chunk: &Bytes) -> Result<(), StoreError>;

    /// Replaces the head the entry will be committed with: one that is complete only once
    /// the whole body has been seen (the cache mints an `ETag` from the body). Called at
    /// most once, after the last [`write`](StoreWriter::write) and before `commit`. A store
    /// whose limits the new head would break keeps the one it was opened with.
    fn replace_meta(&mut self, meta: Meta);

    /// Makes the entry visible, replacing the entry under the same key if the writer's
    /// [`Expect`] still holds (else [`StoreError::Conflict`], and nothing changes). Called
    /// only when the body ended cleanly.
    fn commit(self) -> Result<(), StoreError>;
}

/// A place for cache entries. Clones share the same entries.
///
/// Every method may be called concurrently; none may hold a lock across an await.
pub trait Store: Clone + Send + Sync + 'static {
    /// The writer of this store.
    type Writer: StoreWriter;

    /// The entry under `key`, if any (and not expired).
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Stored>, StoreError>> + Send;

    /// Starts writing an entry that will live for `ttl` once committed, if what is under
    /// `key` at commit time is what `expect` says.
    fn writer(
        &self,
        key: &str,
        meta: Meta,
        ttl: Duration,
        expect: Expect,
    ) -> Result<Self::Writer, StoreError>;

    /// The largest body this store accepts, if it has a limit: the cache does not start
    /// writing a body announced to be larger.
    fn max_entry_bytes(&self) -> Option<u64> {
        None
    }

    /// Replaces the head of the entry under `key` and its time to live, keeping its body, if
    /// `expect` holds; where there is no entry (and `expect` allows that), creates one with
    /// an empty body. The entry gets a new [`Stored::version`]. Returns whether it wrote.
    ///
    /// Atomic: between checking `expect` and writing, no other write of `key` happens.
    fn update_meta(
        &self,
        key: &str,
        expect: Expect,
        meta: Meta,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes the entry under `key` if `expect` holds (atomically: a newer entry written in
    /// between is never removed in its place); returns whether one was removed.
    fn remove(
        &self,
        key: &str,
        expect: Expect,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes every entry.
    fn clear(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
