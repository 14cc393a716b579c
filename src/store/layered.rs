//! [`Layered`]: a fast first tier (an in-memory L1 on each node) over a shared second tier
//! (Redis, files), kept honest across a fleet by an [`InvalidationBus`].

use super::{
    Expect, GetResult, Key, Meta, PartialReader, Store, StoreError, StoreWriter, Stored, StoredBody,
};
use bytes::{BufMut, Bytes, BytesMut};
use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Weak,
    },
    time::Duration,
};
use tokio::sync::Semaphore;

/// The default longest life of an L1 copy: what bounds how long a node can serve a copy
/// whose invalidation it missed (a bus that was down).
pub const DEFAULT_L1_TTL: Duration = Duration::from_secs(60);

/// How many L2 bodies too large to have come whole are copied into L1 at once, in the
/// background.
const PROMOTIONS: usize = 8;

/// An L1 head: this tag, the L2 version, then the cache's head.
const L1_TAG: &[u8; 4] = b"l1v1";

/// Carries invalidations between the nodes of a fleet that share a second tier, so that
/// no node's first tier keeps serving what another node changed, invalidated or purged.
///
/// `RedisBus` (feature `redis`, from `RedisStore::bus`) carries them over Redis pub/sub.
pub trait InvalidationBus: fmt::Debug + Send + Sync + 'static {
    /// Tells the other nodes that the record `digest` changed, or (`None`) that everything
    /// did. Fire and forget: it must not wait for the network.
    fn publish(&self, digest: Option<&str>);

    /// Delivers the other nodes' invalidations to `sink` until it is dropped, and
    /// `invalidated(None)` whenever some may have been lost (a reconnect).
    fn subscribe(&self, sink: Weak<dyn InvalidationSink>);
}

/// Receives invalidations from an [`InvalidationBus`].
pub trait InvalidationSink: Send + Sync + 'static {
    /// The record `digest` changed on another node; `None`: anything may have.
    fn invalidated(&self, digest: Option<&str>);
}

struct Inner<L1, L2> {
    l1: L1,
    l2: L2,
    l1_ttl: Duration,
    bus: Option<Arc<dyn InvalidationBus>>,
    /// Counts invalidations seen: a copy read from L2 before one is not put in L1 after it.
    generation: AtomicU64,
    promotions: Arc<Semaphore>,
    /// What the bus delivers to; it reaches back to this store weakly.
    sink: Arc<dyn InvalidationSink>,
}

/// An L1 store over an L2 store: reads try L1 first and copy what L2 answers into L1
/// (`Cache-Status: ...; detail=l1` or `detail=l2` says which answered); writes go to both
/// (L2 first: it decides, compare-and-swap included); head updates, removals and clears
/// reach L2 and drop the L1 copy.
///
/// With an [`InvalidationBus`] ([`LayeredBuilder::bus`]) each change is published, and every
/// node drops its L1 copy of it; a node whose bus connection broke drops its whole L1. An
/// L1 copy lives at most [`LayeredBuilder::l1_ttl`] (a minute by default), which bounds how long a
/// node can serve what it missed. Versions are L2's, so a write based on an L1 read is
/// checked against L2.
///
/// ```
/// use tower_etag::store::{Layered, MemoryStore};
///
/// let l1 = MemoryStore::builder().max_bytes(64 << 20).build();
/// let l2 = MemoryStore::new(); // a `RedisStore` or `FsStore` in a real fleet
/// let store = Layered::new(l1, l2);
/// # let _ = store;
/// ```
pub struct Layered<L1, L2> {
    inner: Arc<Inner<L1, L2>>,
}

impl<L1, L2> Clone for Layered<L1, L2> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<L1: fmt::Debug, L2: fmt::Debug> fmt::Debug for Layered<L1, L2> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layered")
            .field("l1", &self.inner.l1)
            .field("l2", &self.inner.l2)
            .field("bus", &self.inner.bus.is_some())
            .finish()
    }
}

impl<L1: Store, L2: Store> Layered<L1, L2> {
    /// `l1` over `l2`, for one node (no bus), L1 copies living at most a minute.
    pub fn new(l1: L1, l2: L2) -> Self {
        Self::builder(l1, l2).build()
    }

    /// A builder, for a bus or another L1 lifetime.
    pub fn builder(l1: L1, l2: L2) -> LayeredBuilder<L1, L2> {
        LayeredBuilder {
            l1,
            l2,
            l1_ttl: DEFAULT_L1_TTL,
            bus: None,
        }
    }

    /// The first tier.
    pub fn l1(&self) -> &L1 {
        &self.inner.l1
    }

    /// The second tier.
    pub fn l2(&self) -> &L2 {
        &self.inner.l2
    }
}

/// Builds a [`Layered`] store.
#[must_use]
#[derive(Debug)]
pub struct LayeredBuilder<L1, L2> {
    l1: L1,
    l2: L2,
    l1_ttl: Duration,
    bus: Option<Arc<dyn InvalidationBus>>,
}

impl<L1: Store, L2: Store> LayeredBuilder<L1, L2> {
    /// The longest life of an L1 copy ([`DEFAULT_L1_TTL`] by default): with a bus, how long
    /// a node can serve a change it missed while the bus was down.
    pub fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.l1_ttl = ttl;
        self
    }

    /// Publishes every change on `bus` and drops from L1 what the other nodes publish.
    pub fn bus(mut self, bus: Arc<dyn InvalidationBus>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The store. With a bus, it subscribes now (it needs a tokio runtime then).
    pub fn build(self) -> Layered<L1, L2> {
        let inner = Arc::new_cyclic(|me: &Weak<Inner<L1, L2>>| Inner {
            l1: self.l1,
            l2: self.l2,
            l1_ttl: self.l1_ttl,
            bus: self.bus,
            generation: AtomicU64::new(0),
            promotions: Arc::new(Semaphore::new(PROMOTIONS)),
            sink: Arc::new(Sink(me.clone())),
        });
        if let Some(bus) = &inner.bus {
            // The bus holds the sink weakly: it stops delivering when the store is gone.
            bus.subscribe(Arc::downgrade(&inner.sink));
        }
        Layered { inner }
    }
}

/// Drops L1 copies as the bus says.
struct Sink<L1, L2>(Weak<Inner<L1, L2>>);

impl<L1: Store, L2: Store> InvalidationSink for Sink<L1, L2> {
    fn invalidated(&self, digest: Option<&str>) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        inner.generation.fetch_add(1, Ordering::Relaxed);
        let l1 = inner.l1.clone();
        let digest = digest.map(str::to_owned);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = match digest {
                    Some(d) => l1
                        .remove(&l1_key_of_digest(&d), Expect::Any)
                        .await
                        .map(drop),
                    None => l1.clear().await,
                };
            });
        }
    }
}

/// L1 keys are named by the record's digest, so an invalidation from the bus finds them.
fn l1_key_of_digest(digest: &str) -> Key {
    Key::new("l1", "", digest)
}

fn l1_key(key: &Key) -> Key {
    l1_key_of_digest(&key.digest())
}

/// The L1 head of an entry of L2 `version`.
fn l1_meta(meta: &Meta, version: u64) -> Meta {
    let mut bytes = BytesMut::with_capacity(12 + meta.bytes.len());
    bytes.put_slice(L1_TAG);
    bytes.put_u64(version);
    bytes.put_slice(&meta.bytes);
    Meta {
        bytes: bytes.freeze(),
        decoded: meta.decoded.clone(),
    }
}

/// The L2 version and the cache's head of an L1 head.
fn from_l1_meta(meta: &Meta) -> Option<(u64, Meta)> {
    let rest = meta.bytes.strip_prefix(L1_TAG)?;
    let (version, _) = rest.split_first_chunk::<8>()?;
    Some((
        u64::from_be_bytes(*version),
        Meta {
            bytes: meta.bytes.slice(12..),
            decoded: meta.decoded.clone(),
        },
    ))
}

impl<L1: Store, L2: Store> Inner<L1, L2> {
    fn l1_ttl_for(&self, left: Option<Duration>) -> Duration {
        left.map_or(self.l1_ttl, |left| left.min(self.l1_ttl))
    }

    /// Drops the L1 copy of `key` here and, through the bus, on every node.
    async fn changed(&self, key: &Key) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        // No key (nor a user's name in private mode) travels on the bus: its digest does.
        let digest = key.digest();
        let _ = self
            .l1
            .remove(&l1_key_of_digest(&digest), Expect::Any)
            .await;
        if let Some(bus) = &self.bus {
            bus.publish(Some(&digest));
        }
    }

    /// Copies an entry read from L2 into L1, unless an invalidation came since `generation`
    /// (the copy may be older than what it invalidated).
    async fn promote(&self, key: &Key, stored: &Stored, body: Bytes, generation: u64) {
        let ttl = self.l1_ttl_for(stored.expires_in);
        if ttl.is_zero() {
            return;
        }
        let meta = l1_meta(&stored.meta, stored.version);
        let Ok(w) = self.l1.writer(&l1_key(key), meta, ttl, Expect::Any).await else {
            return;
        };
        let Ok(w) = w.write(body).await else {
            return;
        };
        if self.generation.load(Ordering::Relaxed) == generation {
            let _ = w.commit().await;
            self.drop_if_moved(key, generation).await;
        }
    }

    /// Takes a copy just put in L1 out again if an invalidation came since `generation`
    /// (while it was being put: the copy may be older than what was invalidated).
    async fn drop_if_moved(&self, key: &Key, generation: u64) {
        if self.generation.load(Ordering::Relaxed) != generation {
            let _ = self.l1.remove(&l1_key(key), Expect::Any).await;
        }
    }
}

impl<L1: Store, L2: Store> Layered<L1, L2> {
    /// The L1's copy of `key`, if it has one.
    async fn l1_copy(&self, key: &Key) -> Option<Stored> {
        let copy = self.inner.l1.get(&l1_key(key)).await.ok()??;
        let (version, meta) = from_l1_meta(&copy.meta)?;
        let mut stored = Stored::new(meta, copy.body, version).from_tier("l1");
        stored.expires_in = copy.expires_in;
        Some(stored)
    }

    /// What the L2 answered for `key` (read when the layer's generation was `generation`),
    /// promoted into the L1 when it fits.
    async fn promoted(&self, key: &Key, got: GetResult, generation: u64) -> GetResult {
        let inner = &self.inner;
        let Some(stored) = got? else {
            return Ok(None);
        };
        let fits = |len: u64| inner.l1.max_entry_bytes().is_none_or(|max| len <= max);
        match &stored.body {
            StoredBody::Bytes(body) if fits(body.len() as u64) => {
                inner.promote(key, &stored, body.clone(), generation).await;
            }
            StoredBody::Reader(_) if fits(stored.body.len()) => {
                // Read in the background (bounded: a few at a time), while the client reads
                // its own copy.
                if let Ok(permit) = Arc::clone(&inner.promotions).try_acquire_owned() {
                    let (this, key, copy) = (self.clone(), key.clone(), stored.clone());
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Ok(body) = read_whole(&copy.body).await {
                            this.inner.promote(&key, &copy, body, generation).await;
                        }
                    });
                }
            }
            _ => {}
        }
        Ok(Some(stored.from_tier("l2")))
    }
}

impl<L1: Store, L2: Store> Store for Layered<L1, L2> {
    type Writer = LayeredWriter<L1, L2>;

    async fn get(&self, key: &Key) -> Result<Option<Stored>, StoreError> {
        if let Some(copy) = self.l1_copy(key).await {
            return Ok(Some(copy));
        }
        let generation = self.inner.generation.load(Ordering::Relaxed);
        let got = self.inner.l2.get(key).await;
        self.promoted(key, got, generation).await
    }

    /// What the L1 has of the two, and the rest from the L2: both at once
    /// ([`Store::get_two`]) when the L1 has neither.
    async fn get_two(&self, first: &Key, second: &Key) -> (GetResult, GetResult) {
        let inner = &self.inner;
        let generation = inner.generation.load(Ordering::Relaxed);
        match (self.l1_copy(first).await, self.l1_copy(second).await) {
            (Some(one), Some(other)) => (Ok(Some(one)), Ok(Some(other))),
            (Some(one), None) => {
                let other = inner.l2.get(second).await;
                (
                    Ok(Some(one)),
                    self.promoted(second, other, generation).await,
                )
            }
            (None, Some(other)) => {
                let one = inner.l2.get(first).await;
                (self.promoted(first, one, generation).await, Ok(Some(other)))
            }
            (None, None) => {
                let (one, other) = inner.l2.get_two(first, second).await;
                (
                    self.promoted(first, one, generation).await,
                    self.promoted(second, other, generation).await,
                )
            }
        }
    }

    async fn writer(
        &self,
        key: &Key,
        meta: Meta,
        ttl: Duration,
        expect: Expect,
    ) -> Result<Self::Writer, StoreError> {
        let l2 = self.inner.l2.writer(key, meta.clone(), ttl, expect).await?;
        let l1_ttl = self.inner.l1_ttl_for(Some(ttl));
        // The L1 copy is opened with a placeholder version, replaced at the commit.
        let l1 = match self
            .inner
            .l1
            .writer(&l1_key(key), l1_meta(&meta, 0), l1_ttl, Expect::Any)
            .await
        {
            Ok(w) if !l1_ttl.is_zero() => Some(w),
            _ => None,
        };
        Ok(LayeredWriter {
            layered: self.clone(),
            key: key.clone(),
            meta,
            l1,
            l2,
        })
    }

    fn max_entry_bytes(&self) -> Option<u64> {
        self.inner.l2.max_entry_bytes()
    }

    /// The L2's: what the L1 misses costs what the L2 costs.
    fn remote_reads(&self) -> bool {
        self.inner.l2.remote_reads()
    }

    async fn update_meta(
        &self,
        key: &Key,
        expect: Expect,
        meta: Meta,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let written = self.inner.l2.update_meta(key, expect, meta, ttl).await?;
        if written {
            self.inner.changed(key).await;
        }
        Ok(written)
    }

    async fn remove(&self, key: &Key, expect: Expect) -> Result<bool, StoreError> {
        let removed = self.inner.l2.remove(key, expect).await?;
        self.inner.changed(key).await;
        Ok(removed)
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.inner.generation.fetch_add(1, Ordering::Relaxed);
        let cleared = self.inner.l2.clear().await;
        let _ = self.inner.l1.clear().await;
        if let Some(bus) = &self.inner.bus {
            bus.publish(None);
        }
        cleared
    }
}

/// A whole body read from its stream.
async fn read_whole(body: &StoredBody) -> Result<Bytes, StoreError> {
    let mut stream = body.stream(0..body.len());
    let mut out = BytesMut::with_capacity(body.len() as usize);
    while let Some(chunk) = std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        out.put_slice(&chunk?);
    }
    Ok(out.freeze())
}

/// Writes an entry of a [`Layered`] store to both tiers.
pub struct LayeredWriter<L1: Store, L2: Store> {
    layered: Layered<L1, L2>,
    key: Key,
    meta: Meta,
    l1: Option<L1::Writer>,
    l2: L2::Writer,
}

impl<L1: Store, L2: Store> fmt::Debug for LayeredWriter<L1, L2> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayeredWriter")
            .field("key", &self.key)
            .field("l1", &self.l1.is_some())
            .finish()
    }
}

impl<L1: Store, L2: Store> StoreWriter for LayeredWriter<L1, L2> {
    async fn write(mut self, chunk: Bytes) -> Result<Self, StoreError> {
        self.l2 = self.l2.write(chunk.clone()).await?;
        if let Some(l1) = self.l1.take() {
            // An L1 that refuses (too large, full) only loses its copy.
            self.l1 = l1.write(chunk).await.ok();
        }
        Ok(self)
    }

    fn replace_meta(&mut self, meta: Meta) {
        self.l2.replace_meta(meta.clone());
        self.meta = meta;
    }

    fn partial(&self) -> Option<Arc<dyn PartialReader>> {
        self.l2.partial()
    }

    async fn commit(self) -> Result<u64, StoreError> {
        let Self {
            layered,
            key,
            meta,
            l1,
            l2,
        } = self;
        let before = layered.inner.generation.load(Ordering::Relaxed);
        let version = l2.commit().await?;
        // The other nodes' copies are older now; this node's is this one.
        layered.inner.changed(&key).await;
        // What the generation is if nothing but this write's own change came in between.
        let generation = before + 1;
        if let Some(mut l1) = l1 {
            l1.replace_meta(l1_meta(&meta, version));
            let _ = l1.commit().await;
            // Another change (of any key, to be safe) since before the L2 commit: this copy
            // may be older than what it invalidated.
            layered.inner.drop_if_moved(&key, generation).await;
        }
        Ok(version)
    }
}
