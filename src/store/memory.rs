//! [`MemoryStore`]: a bounded, sharded in-memory LRU.

use super::{Expect, Key, Meta, Store, StoreError, StoreWriter, Stored, StoredBody};
use crate::sync::lock;
use bytes::{Bytes, BytesMut};
use lru::LruCache;
use std::{
    future::{ready, Future},
    hash::BuildHasher,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

/// Bytes counted per entry on top of its key, encoded head and body: the map node, the
/// `Arc`s, the decoded head kept beside the encoded one and allocator slack; set from
/// `bench-load`'s `mem_keys` (RSS per held key), not guessed.
const ENTRY_OVERHEAD: u64 = 1024;

/// The default bound on the bytes held: 128 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 128 * 1024 * 1024;

/// The default bound on one entry's size: 16 MiB.
pub const DEFAULT_MAX_ENTRY_BYTES: u64 = 16 * 1024 * 1024;

/// The default bound on the number of entries.
pub const DEFAULT_MAX_ENTRIES: usize = 1 << 20;

#[derive(Debug)]
struct Entry {
    meta: Meta,
    body: Bytes,
    expires: Instant,
    size: u64,
    version: u64,
}

#[derive(Debug)]
struct Shard {
    map: LruCache<Box<str>, Arc<Entry>>,
    bytes: u64,
}

#[derive(Debug)]
struct Inner {
    shards: Box<[Mutex<Shard>]>,
    /// Picks a key's shard (the maps inside hash keys with SipHash, against hash flooding).
    shard_hasher: foldhash::fast::RandomState,
    shard_max_bytes: u64,
    /// The largest entry: at most a shard's share. A body is buffered up to this much before
    /// it is known to fit, so it also bounds the memory one streaming response can take.
    max_entry_bytes: u64,
    shard_max_entries: usize,
    /// The last version given out ([`Stored::version`]).
    versions: AtomicU64,
    /// The bytes buffered by writers not yet committed, in all; at most `max_pending`.
    pending: AtomicU64,
    max_pending: u64,
}

/// Entries in memory, bounded by total bytes and by entry count, evicted least recently used
/// first. The map is split into shards, each behind its own short lock (never held across an
/// await), so concurrent requests rarely wait on each other.
///
/// An entry larger than one shard's share of the byte budget is not stored. Bodies being
/// written are held in memory until they commit, at most `max_bytes` of them in all
/// (however many responses stream at once): past that a write is refused
/// ([`StoreError::Busy`]) and that response is not stored.
///
/// ```
/// use tower_etag::store::MemoryStore;
///
/// let store = MemoryStore::builder().max_bytes(64 * 1024 * 1024).max_entries(100_000).build();
/// # let _ = store;
/// ```
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

/// Builds a [`MemoryStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryStoreBuilder {
    max_bytes: u64,
    max_entry_bytes: u64,
    max_entries: usize,
    shards: usize,
}

impl MemoryStoreBuilder {
    /// The most bytes held (keys, heads, bodies and bookkeeping). Default 128 MiB.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The most entries held. Default 2^20.
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries;
        self
    }

    /// The largest entry, in bytes (default 16 MiB, and never more than one shard's share of
    /// `max_bytes`). A response body is held in memory up to this size while it streams, so
    /// this bounds the memory one large response can take before it is known not to fit.
    pub fn max_entry_bytes(mut self, bytes: u64) -> Self {
        self.max_entry_bytes = bytes;
        self
    }

    /// How many independently locked shards (default 8, at least 1).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards.max(1);
        self
    }

    /// The store.
    pub fn build(self) -> MemoryStore {
        let shards = self.shards;
        MemoryStore {
            inner: Arc::new(Inner {
                shards: (0..shards)
                    .map(|_| {
                        Mutex::new(Shard {
                            map: LruCache::unbounded(),
                            bytes: 0,
                        })
                    })
                    .collect(),
                shard_hasher: foldhash::fast::RandomState::default(),
                shard_max_bytes: self.max_bytes / shards as u64,
                max_entry_bytes: self.max_entry_bytes.min(self.max_bytes / shards as u64),
                shard_max_entries: (self.max_entries / shards).max(1),
                versions: AtomicU64::new(0),
                pending: AtomicU64::new(0),
                max_pending: self.max_bytes,
            }),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl MemoryStore {
    /// A store with the default bounds.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder for other bounds.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_bytes: DEFAULT_MAX_BYTES,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            shards: 8,
        }
    }

    /// The bytes held now, as counted against the bound.
    pub fn bytes(&self) -> u64 {
        self.inner.shards.iter().map(|s| lock(s).bytes).sum()
    }

    /// The number of entries held now (expired ones included until they are next touched).
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let i = self.inner.shard_hasher.hash_one(key) as usize % self.inner.shards.len();
        lock(&self.inner.shards[i])
    }

    /// Puts `entry` under `key` if `expect` holds for what is there now; returns its version.
    fn insert(&self, key: &str, entry: Entry, expect: Expect) -> Result<u64, StoreError> {
        if entry.size > self.inner.max_entry_bytes {
            return Err(StoreError::TooLarge {
                limit: self.inner.max_entry_bytes,
            });
        }
        let mut shard = self.shard(key);
        if !holds(current(&shard, key, Instant::now()), expect) {
            return Err(StoreError::Conflict);
        }
        Ok(self.put_locked(&mut shard, key, entry))
    }

    /// Puts `entry` under `key` in a locked shard, evicting least recently used entries to
    /// make room, with the next version number, which it returns.
    fn put_locked(&self, shard: &mut Shard, key: &str, mut entry: Entry) -> u64 {
        if let Some(old) = shard.map.pop(key) {
            shard.bytes -= old.size;
        }
        while shard.bytes + entry.size > self.inner.shard_max_bytes
            || shard.map.len() >= self.inner.shard_max_entries
        {
            match shard.map.pop_lru() {
                Some((_, evicted)) => shard.bytes -= evicted.size,
                None => break,
            }
        }
        entry.version = self.inner.versions.fetch_add(1, Ordering::Relaxed) + 1;
        let version = entry.version;
        shard.bytes += entry.size;
        shard.map.put(key.into(), Arc::new(entry));
        version
    }

    fn get_now(&self, key: &str) -> Option<Stored> {
        let mut shard = self.shard(key);
        let entry = Arc::clone(shard.map.get(key)?);
        let now = Instant::now();
        if entry.expires <= now {
            shard.map.pop(key);
            shard.bytes -= entry.size;
            return None;
        }
        let left = entry.expires.saturating_duration_since(now);
        Some(
            Stored::new(
                entry.meta.clone(),
                StoredBody::Bytes(entry.body.clone()),
                entry.version,
            )
            .expires_in(left),
        )
    }

    /// [`Store::update_meta`]: check and write under one lock.
    fn update_meta_now(
        &self,
        key: &str,
        expect: Expect,
        meta: Meta,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut shard = self.shard(key);
        let existing = current(&shard, key, now);
        if !holds(existing, expect) {
            return Ok(false);
        }
        let body = existing.map_or_else(Bytes::new, |e| e.body.clone());
        let size = entry_size(key, &meta, body.len() as u64);
        if size > self.inner.max_entry_bytes {
            return Err(StoreError::TooLarge {
                limit: self.inner.max_entry_bytes,
            });
        }
        let entry = Entry {
            meta,
            body,
            expires: now.checked_add(ttl).unwrap_or_else(far_future),
            size,
            version: 0,
        };
        self.put_locked(&mut shard, key, entry);
        Ok(true)
    }
}

/// The live entry under `key` (an expired one counts as absent).
fn current<'a>(shard: &'a Shard, key: &str, now: Instant) -> Option<&'a Entry> {
    shard
        .map
        .peek(key)
        .map(|e| &**e)
        .filter(|e| e.expires > now)
}

/// Whether `expect` holds for `current`.
fn holds(current: Option<&Entry>, expect: Expect) -> bool {
    match (expect, current) {
        (Expect::Any, _) | (Expect::Absent, None) => true,
        (Expect::Version(v), Some(e)) => e.version == v,
        _ => false,
    }
}

fn entry_size(key: &str, meta: &Meta, body_len: u64) -> u64 {
    key.len() as u64 + meta.bytes.len() as u64 + body_len + ENTRY_OVERHEAD
}

/// Writes one entry of a [`MemoryStore`]; dropped without commit, it leaves nothing behind.
#[derive(Debug)]
pub struct MemoryWriter {
    store: MemoryStore,
    key: Box<str>,
    meta: Meta,
    ttl: Duration,
    expect: Expect,
    /// The body so far, copied: holding the caller's `Bytes` would keep whole network read
    /// buffers (often 8 KiB or more for a 1 KiB body) alive for as long as the entry lives.
    /// Shared with the fill's followers ([`StoreWriter::partial`]).
    body: Arc<Mutex<BytesMut>>,
    /// The share of the store's budget for bodies being written that `body` holds.
    reserved: Reservation,
}

/// Bytes counted against a store's budget for bodies being written, given back on drop
/// (the writer committed, or it was abandoned).
#[derive(Debug)]
struct Reservation {
    inner: Arc<Inner>,
    bytes: u64,
}

impl Reservation {
    /// Counts `more` bytes; `false` (and nothing counted) past the budget.
    fn grow(&mut self, more: u64) -> bool {
        let before = self.inner.pending.fetch_add(more, Ordering::Relaxed);
        if before + more > self.inner.max_pending {
            self.inner.pending.fetch_sub(more, Ordering::Relaxed);
            return false;
        }
        self.bytes += more;
        true
    }

    fn release(&mut self) {
        self.inner.pending.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

impl MemoryWriter {
    fn write_now(&mut self, chunk: &Bytes) -> Result<(), StoreError> {
        let mut body = lock(&self.body);
        let len = body.len() as u64 + chunk.len() as u64;
        let limit = self.store.inner.max_entry_bytes;
        if entry_size(&self.key, &self.meta, len) > limit {
            // Stop holding memory for an entry that cannot be stored.
            *body = BytesMut::new();
            self.reserved.release();
            return Err(StoreError::TooLarge { limit });
        }
        if !self.reserved.grow(chunk.len() as u64) {
            *body = BytesMut::new();
            self.reserved.release();
            return Err(StoreError::Busy);
        }
        body.extend_from_slice(chunk);
        Ok(())
    }

    fn replace_meta_now(&mut self, meta: Meta) {
        // A head that would take the entry past its limit is not taken: the entry is stored
        // with the head it was opened with (a minted tag is a nicety, the entry is not).
        let len = lock(&self.body).len() as u64;
        if entry_size(&self.key, &meta, len) <= self.store.inner.max_entry_bytes {
            self.meta = meta;
        }
    }

    fn commit_now(self) -> Result<u64, StoreError> {
        // Shrink to fit: the buffer grew by doubling.
        let body = Bytes::copy_from_slice(&lock(&self.body));
        let size = entry_size(&self.key, &self.meta, body.len() as u64);
        let expires = Instant::now()
            .checked_add(self.ttl)
            .unwrap_or_else(far_future);
        self.store.insert(
            &self.key,
            Entry {
                meta: self.meta,
                body,
                expires,
                size,
                version: 0,
            },
            self.expect,
        )
    }
}

impl StoreWriter for MemoryWriter {
    fn write(mut self, chunk: Bytes) -> impl Future<Output = Result<Self, StoreError>> + Send {
        ready(self.write_now(&chunk).map(|()| self))
    }

    fn replace_meta(&mut self, meta: Meta) {
        self.replace_meta_now(meta);
    }

    fn partial(&self) -> Option<Arc<dyn super::PartialReader>> {
        Some(Arc::new(MemoryPartial(Arc::clone(&self.body))))
    }

    fn commit(self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        ready(self.commit_now())
    }
}

/// What a [`MemoryWriter`] has written so far.
struct MemoryPartial(Arc<Mutex<BytesMut>>);

impl super::PartialReader for MemoryPartial {
    fn available(&self) -> u64 {
        lock(&self.0).len() as u64
    }

    fn read(&self, range: std::ops::Range<u64>) -> super::BodyStream {
        let body = lock(&self.0);
        let end = (range.end as usize).min(body.len());
        let start = (range.start as usize).min(end);
        // A copy of the part asked for, outside the lock from here on.
        StoredBody::Bytes(Bytes::copy_from_slice(&body[start..end])).stream(0..(end - start) as u64)
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

impl MemoryStore {
    fn writer_now(
        &self,
        key: &str,
        meta: Meta,
        ttl: Duration,
        expect: Expect,
    ) -> Result<MemoryWriter, StoreError> {
        let limit = self.inner.max_entry_bytes;
        if entry_size(key, &meta, 0) > limit {
            return Err(StoreError::TooLarge { limit });
        }
        Ok(MemoryWriter {
            store: self.clone(),
            key: key.into(),
            meta,
            ttl,
            expect,
            body: Arc::default(),
            reserved: Reservation {
                inner: Arc::clone(&self.inner),
                bytes: 0,
            },
        })
    }

    fn remove_now(&self, key: &str, expect: Expect) -> bool {
        let mut shard = self.shard(key);
        holds(current(&shard, key, Instant::now()), expect)
            && shard.map.pop(key).map(|e| shard.bytes -= e.size).is_some()
    }

    fn clear_now(&self) {
        for s in self.inner.shards.iter() {
            let mut shard = lock(s);
            shard.map.clear();
            shard.bytes = 0;
        }
    }
}

impl Store for MemoryStore {
    type Writer = MemoryWriter;

    fn get(&self, key: &Key) -> impl Future<Output = Result<Option<Stored>, StoreError>> + Send {
        ready(Ok(self.get_now(key.as_str())))
    }

    fn max_entry_bytes(&self) -> Option<u64> {
        Some(self.inner.max_entry_bytes)
    }

    fn writer(
        &self,
        key: &Key,
        meta: Meta,
        ttl: Duration,
        expect: Expect,
    ) -> impl Future<Output = Result<MemoryWriter, StoreError>> + Send {
        ready(self.writer_now(key.as_str(), meta, ttl, expect))
    }

    fn update_meta(
        &self,
        key: &Key,
        expect: Expect,
        meta: Meta,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(self.update_meta_now(key.as_str(), expect, meta, ttl))
    }

    fn remove(
        &self,
        key: &Key,
        expect: Expect,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(self.remove_now(key.as_str(), expect)))
    }

    fn clear(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.clear_now();
        ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(store: &MemoryStore, key: &str, body: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let mut w = store.writer_now(
            key,
            Meta::encoded(Bytes::from_static(b"meta")),
            ttl,
            Expect::Any,
        )?;
        for chunk in body.chunks(7) {
            w.write_now(&Bytes::copy_from_slice(chunk))?;
        }
        w.commit_now().map(drop)
    }

    fn body(store: &MemoryStore, key: &str) -> Option<Bytes> {
        store.get_now(key).map(|s| match s.body {
            StoredBody::Bytes(b) => b,
            StoredBody::Reader(_) => unreachable!("the memory store holds bodies"),
        })
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_new_head_that_does_not_fit_keeps_the_old_one() {
        let limit = 1 + 3 + 90 + ENTRY_OVERHEAD; // key, head, body: exactly at the limit
        let store = MemoryStore::builder().max_entry_bytes(limit).build();
        let mut w = store
            .writer_now(
                "k",
                Meta::encoded(Bytes::from_static(b"old")),
                HOUR,
                Expect::Any,
            )
            .unwrap();
        w.write_now(&Bytes::from(vec![b'x'; 90])).unwrap();
        w.replace_meta_now(Meta::encoded(Bytes::from(vec![b'm'; 50])));
        w.commit_now().expect("committed with the head that fits");
        assert_eq!(store.get_now("k").unwrap().meta.bytes, "old");
    }

    #[test]
    fn written_entry_is_visible_only_after_commit() {
        let store = MemoryStore::new();
        let mut w = store
            .writer_now(
                "k",
                Meta::encoded(Bytes::from_static(b"m")),
                HOUR,
                Expect::Any,
            )
            .unwrap();
        w.write_now(&Bytes::from_static(b"hello ")).unwrap();
        w.write_now(&Bytes::from_static(b"world")).unwrap();
        assert!(store.get_now("k").is_none());
        w.commit_now().unwrap();
        assert_eq!(body(&store, "k").unwrap(), "hello world");
    }

    #[test]
    fn dropped_writer_aborts() {
        let store = MemoryStore::new();
        let mut w = store
            .writer_now("k", Meta::encoded(Bytes::new()), HOUR, Expect::Any)
            .unwrap();
        w.write_now(&Bytes::from_static(b"partial")).unwrap();
        drop(w);
        assert!(store.get_now("k").is_none());
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn bounded_by_bytes_evicting_least_recently_used() {
        let store = MemoryStore::builder().max_bytes(4 * 1024).shards(1).build();
        for i in 0..10 {
            put(&store, &format!("k{i}"), &[b'x'; 1000], HOUR).unwrap();
            assert!(store.bytes() <= 4 * 1024);
        }
        assert!(body(&store, "k0").is_none(), "oldest evicted");
        assert!(body(&store, "k9").is_some(), "newest kept");
    }

    #[test]
    fn recently_used_entries_survive_eviction() {
        let store = MemoryStore::builder().max_entries(3).shards(1).build();
        for k in ["a", "b", "c"] {
            put(&store, k, b"x", HOUR).unwrap();
        }
        assert!(body(&store, "a").is_some()); // touch a
        put(&store, "d", b"x", HOUR).unwrap();
        assert!(body(&store, "a").is_some());
        assert!(body(&store, "b").is_none());
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn too_large_entries_are_refused_without_holding_them() {
        let store = MemoryStore::builder().max_bytes(4096).shards(1).build();
        let mut w = store
            .writer_now("big", Meta::encoded(Bytes::new()), HOUR, Expect::Any)
            .unwrap();
        assert!(w.write_now(&Bytes::from(vec![0u8; 2000])).is_ok());
        assert!(matches!(
            w.write_now(&Bytes::from(vec![0u8; 2000])),
            Err(StoreError::TooLarge { .. })
        ));
        assert!(lock(&w.body).is_empty());
        assert_eq!(Store::max_entry_bytes(&store), Some(4096));
        drop(w);
        assert!(store.is_empty());
    }

    #[test]
    fn expired_entries_are_not_returned() {
        let store = MemoryStore::new();
        put(&store, "k", b"x", Duration::ZERO).unwrap();
        assert!(body(&store, "k").is_none());
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn update_meta_remove_and_clear() {
        let store = MemoryStore::new();
        put(&store, "k", b"body", HOUR).unwrap();
        let v = store.get_now("k").unwrap().version;
        assert!(store
            .update_meta_now(
                "k",
                Expect::Version(v),
                Meta::encoded(Bytes::from_static(b"new")),
                HOUR
            )
            .unwrap());
        let s = store.get_now("k").unwrap();
        assert_eq!(s.meta.bytes, "new");
        assert_eq!(body(&store, "k").unwrap(), "body", "the body is kept");
        assert_ne!(s.version, v, "an update is a new version");
        // The version read before the update no longer matches.
        assert!(!store
            .update_meta_now("k", Expect::Version(v), Meta::encoded(Bytes::new()), HOUR)
            .unwrap());
        assert!(!store
            .update_meta_now(
                "missing",
                Expect::Version(v),
                Meta::encoded(Bytes::new()),
                HOUR
            )
            .unwrap());
        let v = store.get_now("k").unwrap().version;
        assert!(!store.remove_now("k", Expect::Version(v + 1000)));
        assert!(store.remove_now("k", Expect::Version(v)));
        assert!(!store.remove_now("k", Expect::Any));
        put(&store, "a", b"1", HOUR).unwrap();
        store.clear_now();
        assert!(store.is_empty());
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn update_meta_creates_only_where_absence_is_expected_or_allowed() {
        let store = MemoryStore::new();
        let meta = || Meta::encoded(Bytes::from_static(b"i"));
        assert!(store
            .update_meta_now("i", Expect::Absent, meta(), HOUR)
            .unwrap());
        assert!(!store
            .update_meta_now("i", Expect::Absent, meta(), HOUR)
            .unwrap());
        assert!(store
            .update_meta_now("j", Expect::Any, meta(), HOUR)
            .unwrap());
        assert!(body(&store, "j").unwrap().is_empty());
    }

    #[test]
    fn commits_are_compare_and_swap() {
        let store = MemoryStore::new();
        let meta = || Meta::encoded(Bytes::new());
        // Two writers that both saw the key absent: the first commit wins.
        let first = store.writer_now("k", meta(), HOUR, Expect::Absent).unwrap();
        let second = store.writer_now("k", meta(), HOUR, Expect::Absent).unwrap();
        first.commit_now().unwrap();
        assert!(matches!(second.commit_now(), Err(StoreError::Conflict)));
        let v = store.get_now("k").unwrap().version;
        let mut stale = store
            .writer_now("k", meta(), HOUR, Expect::Version(v))
            .unwrap();
        stale.write_now(&Bytes::from_static(b"older")).unwrap();
        put(&store, "k", b"newer", HOUR).unwrap();
        assert!(matches!(stale.commit_now(), Err(StoreError::Conflict)));
        assert_eq!(body(&store, "k").unwrap(), "newer");
        // An expired entry counts as absent.
        put(&store, "e", b"x", Duration::ZERO).unwrap();
        store
            .writer_now("e", meta(), HOUR, Expect::Absent)
            .unwrap()
            .commit_now()
            .unwrap();
    }

    #[test]
    fn stored_bodies_do_not_keep_the_writers_buffers_alive() {
        let store = MemoryStore::new();
        let big = Bytes::from(vec![7u8; 8192]);
        let mut w = store
            .writer_now("k", Meta::encoded(Bytes::new()), HOUR, Expect::Any)
            .unwrap();
        w.write_now(&big.slice(0..1024)).unwrap();
        w.commit_now().unwrap();
        drop(store.get_now("k"));
        // Only our handle is left on the 8 KiB buffer: the store copied its 1 KiB.
        assert!(big.is_unique());
        assert_eq!(body(&store, "k").unwrap().len(), 1024);
    }

    #[test]
    fn entries_are_bounded_by_max_entry_bytes_too() {
        let store = MemoryStore::builder()
            .max_bytes(1 << 30)
            .max_entry_bytes(4096)
            .build();
        assert_eq!(Store::max_entry_bytes(&store), Some(4096));
        let mut w = store
            .writer_now("k", Meta::encoded(Bytes::new()), HOUR, Expect::Any)
            .unwrap();
        assert!(w.write_now(&Bytes::from(vec![0u8; 8192])).is_err());
        assert!(lock(&w.body).is_empty(), "nothing held past the limit");
        // Never more than a shard's share of the total.
        let small = MemoryStore::builder().max_bytes(8 * 1024).shards(8).build();
        assert_eq!(Store::max_entry_bytes(&small), Some(1024));
    }

    #[test]
    fn bodies_being_written_share_one_budget() {
        // Each entry may take a shard's share, but all the bodies in flight together no
        // more than the store's bytes.
        let store = MemoryStore::builder()
            .max_bytes(64 * 1024)
            .shards(1)
            .build();
        let chunk = Bytes::from(vec![0u8; 20 * 1024]);
        let mut writers: Vec<MemoryWriter> = (0..4)
            .map(|i| {
                store
                    .writer_now(
                        &format!("k{i}"),
                        Meta::encoded(Bytes::new()),
                        HOUR,
                        Expect::Any,
                    )
                    .unwrap()
            })
            .collect();
        let refused = writers
            .iter_mut()
            .map(|w| w.write_now(&chunk))
            .filter(|r| matches!(r, Err(StoreError::Busy)))
            .count();
        assert_eq!(
            refused, 1,
            "three 20 KiB bodies fit in 64 KiB, the fourth does not"
        );
        drop(writers);
        assert_eq!(
            store.inner.pending.load(Ordering::Relaxed),
            0,
            "all given back"
        );
        let mut w = store
            .writer_now("k", Meta::encoded(Bytes::new()), HOUR, Expect::Any)
            .unwrap();
        w.write_now(&chunk).unwrap();
        w.commit_now().unwrap();
        assert_eq!(
            store.inner.pending.load(Ordering::Relaxed),
            0,
            "a commit gives back too"
        );
    }

    #[test]
    fn replacing_an_entry_keeps_the_byte_count_right() {
        let store = MemoryStore::builder().shards(1).build();
        put(&store, "k", &[0; 100], HOUR).unwrap();
        let one = store.bytes();
        put(&store, "k", &[0; 100], HOUR).unwrap();
        assert_eq!(store.bytes(), one);
    }
}
