//! [`AnyStore`]: any [`Store`] behind one type, for a store chosen at run time.

use super::{
    Expect, GetResult, Key, MemoryStore, Meta, PartialReader, Store, StoreError, StoreWriter,
    Stored,
};
use bytes::Bytes;
use std::{any::Any, fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The object-safe form of [`Store`], implemented for every store: what [`AnyStore`] holds.
/// Each call boxes its future (one allocation), the price of choosing the store at run time.
pub trait DynStore: fmt::Debug + Send + Sync + 'static {
    /// [`Store::get`].
    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Stored>, StoreError>>;
    /// [`Store::get_two`].
    fn get_two<'a>(
        &'a self,
        first: &'a Key,
        second: &'a Key,
    ) -> BoxFuture<'a, (GetResult, GetResult)>;
    /// [`Store::writer`].
    fn writer<'a>(
        &'a self,
        key: &'a Key,
        meta: Meta,
        ttl: Duration,
        expect: Expect,
    ) -> BoxFuture<'a, Result<AnyWriter, StoreError>>;
    /// [`Store::max_entry_bytes`].
    fn max_entry_bytes(&self) -> Option<u64>;
    /// [`Store::remote_reads`].
    fn remote_reads(&self) -> bool;
    /// [`Store::update_meta`].
    fn update_meta<'a>(
        &'a self,
        key: &'a Key,
        expect: Expect,
        meta: Meta,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// [`Store::remove`].
    fn remove<'a>(
        &'a self,
        key: &'a Key,
        expect: Expect,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// [`Store::clear`].
    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}

impl<S: Store + fmt::Debug> DynStore for S {
    fn get<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Stored>, StoreError>> {
        Box::pin(Store::get(self, key))
    }

    fn get_two<'a>(
        &'a self,
        first: &'a Key,
        second: &'a Key,
    ) -> BoxFuture<'a, (GetResult, GetResult)> {
        Box::pin(Store::get_two(self, first, second))
    }

    fn writer<'a>(
        &'a self,
        key: &'a Key,
        meta: Meta,
        ttl: Duration,
        expect: Expect,
    ) -> BoxFuture<'a, Result<AnyWriter, StoreError>> {
        Box::pin(async move {
            let writer = Store::writer(self, key, meta, ttl, expect).await?;
            Ok(AnyWriter(Box::new(writer)))
        })
    }

    fn max_entry_bytes(&self) -> Option<u64> {
        Store::max_entry_bytes(self)
    }

    fn remote_reads(&self) -> bool {
        Store::remote_reads(self)
    }

    fn update_meta<'a>(
        &'a self,
        key: &'a Key,
        expect: Expect,
        meta: Meta,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(Store::update_meta(self, key, expect, meta, ttl))
    }

    fn remove<'a>(
        &'a self,
        key: &'a Key,
        expect: Expect,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(Store::remove(self, key, expect))
    }

    fn clear(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(Store::clear(self))
    }
}

/// The object-safe form of [`StoreWriter`].
trait DynWriter: Send + 'static {
    fn write(self: Box<Self>, chunk: Bytes) -> BoxFuture<'static, Result<AnyWriter, StoreError>>;
    fn replace_meta(&mut self, meta: Meta);
    fn partial(&self) -> Option<Arc<dyn PartialReader>>;
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<u64, StoreError>>;
}

impl<W: StoreWriter> DynWriter for W {
    fn write(self: Box<Self>, chunk: Bytes) -> BoxFuture<'static, Result<AnyWriter, StoreError>> {
        Box::pin(async move {
            let w = StoreWriter::write(*self, chunk).await?;
            Ok(AnyWriter(Box::new(w)))
        })
    }

    fn replace_meta(&mut self, meta: Meta) {
        StoreWriter::replace_meta(self, meta);
    }

    fn partial(&self) -> Option<Arc<dyn PartialReader>> {
        StoreWriter::partial(self)
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<u64, StoreError>> {
        Box::pin(StoreWriter::commit(*self))
    }
}

/// The writer of an [`AnyStore`].
pub struct AnyWriter(Box<dyn DynWriter>);

impl fmt::Debug for AnyWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnyWriter")
    }
}

impl StoreWriter for AnyWriter {
    fn write(self, chunk: Bytes) -> impl Future<Output = Result<Self, StoreError>> + Send {
        self.0.write(chunk)
    }

    fn replace_meta(&mut self, meta: Meta) {
        self.0.replace_meta(meta);
    }

    fn partial(&self) -> Option<Arc<dyn PartialReader>> {
        self.0.partial()
    }

    fn commit(self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        self.0.commit()
    }
}

/// Any store, chosen at run time: an application or the proxy example picks a
/// [`MemoryStore`](super::MemoryStore), an [`FsStore`](super::FsStore) or another store from
/// its configuration and gives the cache an `AnyStore`.
///
/// ```
/// use tower_etag::store::{AnyStore, MemoryStore};
/// use tower_etag::response_cache::ResponseCache;
///
/// let store = AnyStore::new(MemoryStore::new());
/// let cache = ResponseCache::builder(store).build();
/// # let _ = cache;
/// ```
///
/// A [`MemoryStore`](super::MemoryStore) given to [`AnyStore::new`] is read without a boxed
/// future or a dynamic call: a hit from memory is the path that must cost least.
#[derive(Clone, Debug)]
pub struct AnyStore {
    store: Arc<dyn DynStore>,
    /// The same store when it is a `MemoryStore`, read directly.
    memory: Option<MemoryStore>,
}

impl AnyStore {
    /// `store`, behind the common type.
    pub fn new<S: Store + fmt::Debug>(store: S) -> Self {
        let memory = (&store as &dyn Any).downcast_ref::<MemoryStore>().cloned();
        Self {
            store: Arc::new(store),
            memory,
        }
    }

    /// A store already shared as a trait object.
    pub fn from_arc(store: Arc<dyn DynStore>) -> Self {
        Self {
            store,
            memory: None,
        }
    }
}

impl Store for AnyStore {
    type Writer = AnyWriter;

    async fn get(&self, key: &Key) -> Result<Option<Stored>, StoreError> {
        match &self.memory {
            Some(memory) => Store::get(memory, key).await,
            None => self.store.get(key).await,
        }
    }

    async fn get_two(&self, first: &Key, second: &Key) -> (GetResult, GetResult) {
        self.store.get_two(first, second).await
    }

    async fn writer(
        &self,
        key: &Key,
        meta: Meta,
        ttl: Duration,
        expect: Expect,
    ) -> Result<AnyWriter, StoreError> {
        self.store.writer(key, meta, ttl, expect).await
    }

    fn max_entry_bytes(&self) -> Option<u64> {
        self.store.max_entry_bytes()
    }

    fn remote_reads(&self) -> bool {
        self.store.remote_reads()
    }

    async fn update_meta(
        &self,
        key: &Key,
        expect: Expect,
        meta: Meta,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.store.update_meta(key, expect, meta, ttl).await
    }

    async fn remove(&self, key: &Key, expect: Expect) -> Result<bool, StoreError> {
        self.store.remove(key, expect).await
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.store.clear().await
    }
}
