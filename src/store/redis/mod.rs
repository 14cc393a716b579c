//! [`RedisStore`]: the shared store for a fleet, on Redis (feature `redis`).

use super::{Expect, GetResult, Key, Meta, Store, StoreError, Stored, StoredBody};
use bytes::{Bytes, BytesMut};
use redis::{aio::ConnectionManager, AsyncCommands as _, RedisResult};
use std::{
    fmt,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

mod body;
mod breaker;
mod builder;
mod bus;
mod scripts;
mod writer;

use body::RedisBody;
use breaker::Breaker;
pub use builder::RedisStoreBuilder;
pub use bus::RedisBus;
use scripts::{GetReply, Scripts};
pub use writer::RedisWriter;

/// The size of a body chunk, and the bodies read whole with their head.
const CHUNK: usize = 128 * 1024;

/// How long the chunks of a replaced or removed body stay, for the clients reading them.
const REPLACED_GRACE: Duration = Duration::from_secs(60);

/// The default prefix of every key.
const DEFAULT_PREFIX: &str = "tower-etag";

struct Inner {
    client: redis::Client,
    /// Set once the first connection is made; it reconnects by itself after that.
    conn: OnceLock<ConnectionManager>,
    connect_timeout: Duration,
    prefix: String,
    deadline: Duration,
    max_entry_bytes: u64,
    breaker: Breaker,
    scripts: Scripts,
}

/// Entries in Redis, shared by every process that opens the same server with the same
/// prefix: a response stored through one node of a fleet is a hit on all of them.
///
/// # Key layout
///
/// Every key starts with the store's prefix (`tower-etag` by default) and the hash tag of
/// its URL, `{u}` (the first 16 bytes of the blake3 digest of [`Key::url`], in hex), so all
/// the records of one URL live in one Redis Cluster slot:
///
/// - `{prefix}:{u}:e:{k}`: a hash, one entry: `key` (the full [`Key`], checked on every
///   read), `ver` (its version), `meta` (the cache's head), `len` (body bytes), `chunks` and
///   `bver` (which body it uses). `{k}` is the first 16 bytes of the digest of the full key.
/// - `{prefix}:{u}:b:{k}:{bver}:{i}`: chunk `i` of a body, 128 KiB (the last one
///   shorter).
///
/// Every key has a TTL: chunks get the entry's when written, and the commit gives the
/// entry's hash and all its chunks the same one, so nothing outlives its entry and nothing
/// is left without a TTL (an index record without one grew without bound in a peer cache).
/// An abandoned write's chunks are removed in the background, and expire anyway.
///
/// Commits, head updates and removals are Lua scripts: each checks the entry's version
/// (compare-and-swap) and changes the hash in one step, so a reader sees the old entry or
/// the new one, never a mix. A replaced or removed body is not deleted at once: its chunks
/// get a minute to live, so a client reading it finishes. [`Store::clear`] scans
/// the prefix and unlinks what it finds (an operator's action, never on a request's path);
/// no request runs `KEYS` or `SCAN`, nor `FLUSHDB`.
///
/// # Round trips
///
/// A lookup reads the URL's record (its index) and then the entry it names; the store says
/// its reads are remote ([`Store::remote_reads`]), so the cache asks for both at once where
/// it knows the URL (the entry its last lookup found), and [`Store::get_two`] reads them in
/// one script (both keys are under the URL's hash tag): such a hit is one call to Redis.
/// A body larger than 128 KiB then costs a `GETRANGE` per chunk, two in flight.
///
/// # Failures
///
/// Every operation has a deadline ([`RedisStoreBuilder::deadline`], 50 ms by default; a body
/// chunk gets it too). After [`RedisStoreBuilder::breaker_threshold`] failures in a row
/// the store is not used for [`RedisStoreBuilder::breaker_cooldown`] (a circuit breaker:
/// every call fails at once with [`StoreError::Unavailable`], and the cache serves without
/// it, `Cache-Status: ...; detail=store-error`), then it is tried again. The connection
/// reconnects by itself.
///
/// ```no_run
/// # async fn demo() -> Result<(), tower_etag::store::StoreError> {
/// use tower_etag::{response_cache::ResponseCache, store::RedisStore};
///
/// let store = RedisStore::builder()
///     .prefix("my-app")
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// let cache = ResponseCache::new(store);
/// # let _ = cache;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("deadline", &self.inner.deadline)
            .finish()
    }
}

/// Where one [`Key`]'s entry lives.
struct Place {
    entry: String,
    /// Chunk keys are this, then `{bver}:{i}`.
    chunks: String,
}

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis().min(u128::from(u64::MAX)) as u64).max(1)
}

fn expect_args(expect: Expect) -> (&'static str, u64) {
    match expect {
        Expect::Any => ("any", 0),
        Expect::Absent => ("absent", 0),
        Expect::Version(v) => ("ver", v),
    }
}

/// A version: random (a per-process random key over a counter), so no counter is shared
/// across the fleet (and none crosses a Redis Cluster slot). Two writes of one key get the
/// same one with odds of 2^-64.
fn new_version() -> u64 {
    use std::hash::BuildHasher as _;
    static SEED: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = SEED.get_or_init(std::hash::RandomState::new);
    loop {
        let v = seed.hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
        if v != 0 {
            return v;
        }
    }
}

impl RedisStore {
    /// A builder, for other settings than the defaults.
    pub fn builder() -> RedisStoreBuilder {
        RedisStoreBuilder {
            prefix: DEFAULT_PREFIX.into(),
            deadline: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(1),
            max_entry_bytes: 128 << 20,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(1),
        }
    }

    /// Connects with the default settings ([`RedisStoreBuilder::connect`]).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder().connect(url).await
    }

    /// An [`InvalidationBus`](super::InvalidationBus) on this store's server: Redis pub/sub on the channel
    /// `{prefix}:invalidations`, for a [`Layered`](super::Layered) store whose L2 this is.
    pub fn bus(&self) -> Arc<RedisBus> {
        Arc::new(RedisBus {
            store: self.clone(),
            channel: format!("{}:invalidations", self.inner.prefix),
            node: format!("{:016x}", new_version()),
        })
    }

    /// Whether the store steps aside now (its circuit breaker is open).
    pub fn is_stepping_aside(&self) -> bool {
        self.inner.breaker.check().is_err()
    }

    fn place(&self, key: &Key) -> Place {
        self.place_in(key, &super::key::hex_digest(key.url()))
    }

    /// [`RedisStore::place`] for a key of the URL whose digest is `url` (its hash tag):
    /// `{prefix}:{{url}}:e:{key}` and `{prefix}:{{url}}:b:{key}:`. Built by hand: through
    /// `format!` these two strings were 7 % of a Redis hit's instructions.
    fn place_in(&self, key: &Key, url: &str) -> Place {
        let k = key.digest();
        let prefix = &self.inner.prefix;
        let name = |kind: &str, tail: &str| {
            let mut s = String::with_capacity(prefix.len() + url.len() + k.len() + 8);
            for part in [
                prefix.as_str(),
                ":{",
                url,
                "}:",
                kind,
                ":",
                k.as_str(),
                tail,
            ] {
                s.push_str(part);
            }
            s
        };
        Place {
            entry: name("e", ""),
            chunks: name("b", ":"),
        }
    }

    /// Runs `call` under the deadline and the breaker.
    async fn run<T>(&self, call: impl Future<Output = RedisResult<T>>) -> Result<T, StoreError> {
        self.run_within(self.inner.deadline, call).await
    }

    /// [`RedisStore::run`] with another deadline.
    async fn run_within<T>(
        &self,
        deadline: Duration,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        self.inner.breaker.check()?;
        match tokio::time::timeout(deadline, call).await {
            Ok(Ok(v)) => {
                self.inner.breaker.success();
                Ok(v)
            }
            Ok(Err(e)) => {
                self.inner.breaker.failure();
                Err(StoreError::backend(e))
            }
            Err(_) => {
                self.inner.breaker.failure();
                Err(StoreError::Timeout)
            }
        }
    }

    /// The connection, or [`StoreError::Unavailable`] before the first one is made.
    pub(super) fn conn(&self) -> Result<ConnectionManager, StoreError> {
        self.inner
            .conn
            .get()
            .cloned()
            .ok_or(StoreError::Unavailable)
    }

    /// The entry `reply` read for `key` from `place`, if it is there and whole.
    fn stored(&self, key: &Key, place: &Place, reply: GetReply) -> Option<Stored> {
        let (stored_key, version, meta, len, chunks, bver, first, pttl) = reply?;
        if stored_key != key.as_str().as_bytes() {
            // Another key with the same digest: as good as absent.
            return None;
        }
        let body = match first {
            Some(bytes) if bytes.len() as u64 == len => StoredBody::Bytes(bytes.into()),
            Some(_) => return None,
            None if len == 0 => StoredBody::Bytes(Bytes::new()),
            None => StoredBody::Reader(Arc::new(RedisBody {
                store: self.clone(),
                chunks: format!("{}{bver}:", place.chunks),
                count: chunks,
                len,
            })),
        };
        let stored = Stored::new(Meta::encoded(meta.into()), body, version);
        Some(match u64::try_from(pttl) {
            Ok(ms) => stored.expires_in(Duration::from_millis(ms)),
            Err(_) => stored,
        })
    }

    async fn write_chunk(
        &self,
        key: String,
        chunk: Bytes,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        self.run(async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(chunk.as_ref())
                .arg("PX")
                .arg(ttl_ms(ttl))
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }
}

impl Store for RedisStore {
    type Writer = RedisWriter;

    async fn get(&self, key: &Key) -> Result<Option<Stored>, StoreError> {
        let place = self.place(key);
        let mut conn = self.conn()?;
        let scripts = &self.inner.scripts;
        let reply: GetReply = self
            .run(async {
                scripts
                    .get
                    .key(&place.entry)
                    .arg(&place.chunks)
                    .arg(CHUNK)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(self.stored(key, &place, reply))
    }

    /// Two keys of one URL share a hash tag (a Cluster slot): one script reads both.
    async fn get_two(&self, first: &Key, second: &Key) -> (GetResult, GetResult) {
        if first.url() != second.url() {
            return tokio::join!(self.get(first), self.get(second));
        }
        let url = super::key::hex_digest(first.url());
        let places = (self.place_in(first, &url), self.place_in(second, &url));
        let scripts = &self.inner.scripts;
        let reply: Result<(GetReply, GetReply), StoreError> = match self.conn() {
            Ok(mut conn) => {
                self.run(async {
                    scripts
                        .get_two
                        .key(&places.0.entry)
                        .key(&places.1.entry)
                        .arg(&places.0.chunks)
                        .arg(&places.1.chunks)
                        .arg(CHUNK)
                        .invoke_async(&mut conn)
                        .await
                })
                .await
            }
            Err(e) => Err(e),
        };
        match reply {
            Ok((one, other)) => (
                Ok(self.stored(first, &places.0, one)),
                Ok(self.stored(second, &places.1, other)),
            ),
            Err(e) => {
                let again = match &e {
                    StoreError::Timeout => StoreError::Timeout,
                    StoreError::Unavailable => StoreError::Unavailable,
                    e => StoreError::backend(e.to_string()),
                };
                (Err(e), Err(again))
            }
        }
    }

    async fn writer(
        &self,
        key: &Key,
        meta: Meta,
        ttl: Duration,
        expect: Expect,
    ) -> Result<RedisWriter, StoreError> {
        let limit = self.inner.max_entry_bytes;
        if meta.bytes.len() as u64 > limit {
            return Err(StoreError::TooLarge { limit });
        }
        // Fail fast while the store steps aside: no chunk would be written.
        self.inner.breaker.check()?;
        Ok(RedisWriter {
            store: self.clone(),
            place: self.place(key),
            key: key.as_str().into(),
            meta,
            ttl,
            expect,
            bver: new_version(),
            buffer: BytesMut::new(),
            chunks: 0,
            len: 0,
            done: false,
            flushed: Arc::default(),
        })
    }

    fn max_entry_bytes(&self) -> Option<u64> {
        Some(self.inner.max_entry_bytes)
    }

    fn remote_reads(&self) -> bool {
        true
    }

    async fn update_meta(
        &self,
        key: &Key,
        expect: Expect,
        meta: Meta,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let place = self.place(key);
        let (kind, want) = expect_args(expect);
        let mut conn = self.conn()?;
        let scripts = &self.inner.scripts;
        let written: i64 = self
            .run(async {
                scripts
                    .update
                    .key(&place.entry)
                    .arg(kind)
                    .arg(want)
                    .arg(key.as_str())
                    .arg(new_version())
                    .arg(meta.bytes.as_ref())
                    .arg(ttl_ms(ttl))
                    .arg(&place.chunks)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(written == 1)
    }

    async fn remove(&self, key: &Key, expect: Expect) -> Result<bool, StoreError> {
        let place = self.place(key);
        let (kind, want) = expect_args(expect);
        let mut conn = self.conn()?;
        let scripts = &self.inner.scripts;
        let removed: i64 = self
            .run(async {
                scripts
                    .remove
                    .key(&place.entry)
                    .arg(kind)
                    .arg(want)
                    .arg(&place.chunks)
                    .arg(ttl_ms(REPLACED_GRACE))
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(removed == 1)
    }

    /// Scans this store's prefix and unlinks what it finds, in batches: every entry and
    /// body of this cache, and nothing of anyone else's. An operator's action: it takes a
    /// round trip per thousand keys, and no deadline applies to the whole.
    async fn clear(&self) -> Result<(), StoreError> {
        self.inner.breaker.check()?;
        // Every key is `{prefix}:{u}:...`; `{` is not allowed in a prefix, so another
        // cache's prefix that begins with this one (`app` and `app:v2`) never matches.
        let pattern = format!("{}:{{*", self.inner.prefix);
        let mut conn = self.conn()?;
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(StoreError::backend)?;
            if !keys.is_empty() {
                let _: () = conn.unlink(keys).await.map_err(StoreError::backend)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key layout (`{prefix}:{{url}}:e:{key}`, `{prefix}:{{url}}:b:{key}:`) is what other
    /// nodes, older builds and the Lua scripts read: a change would lose every entry.
    #[test]
    fn an_entrys_keys_keep_their_layout() {
        let (store, _) = RedisStore::builder()
            .prefix("p")
            .open("redis://127.0.0.1:1")
            .unwrap();
        let key = Key::new("v", "http://a.example/x", "sel");
        let url = super::super::key::hex_digest(key.url());
        let k = key.digest();
        let place = store.place(&key);
        assert_eq!(place.entry, format!("p:{{{url}}}:e:{k}"));
        assert_eq!(place.chunks, format!("p:{{{url}}}:b:{k}:"));
        let shared = store.place_in(&key, &url);
        assert_eq!((shared.entry, shared.chunks), (place.entry, place.chunks));
    }
}
