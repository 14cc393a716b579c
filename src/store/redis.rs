//! [`RedisStore`]: the shared store for a fleet, on Redis (feature `redis`).

use super::{
    BodyReader, BodyStream, Expect, GetResult, InvalidationBus, InvalidationSink, Key, Meta, Store,
    StoreError, StoreWriter, Stored, StoredBody,
};
use bytes::{Bytes, BytesMut};
use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    AsyncCommands as _, RedisResult, Script,
};
use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, OnceLock, Weak,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

/// The size of a body chunk, and the bodies read whole with their head.
const CHUNK: usize = 128 * 1024;

/// How long the chunks of a replaced or removed body stay, for the clients reading them.
const REPLACED_GRACE: Duration = Duration::from_secs(60);

/// The default prefix of every key.
const DEFAULT_PREFIX: &str = "tower-etag";

/// Sets the chunks of body `bver` (`n` of them, under `prefix`) to expire in `ms`; with
/// `shorten`, only those that would live longer.
const CHUNK_TTL_LUA: &str = r"
local function chunk_ttl(prefix, bver, n, ms, shorten)
  for i = 0, n - 1 do
    local k = prefix .. bver .. ':' .. i
    if shorten then
      local left = redis.call('PTTL', k)
      if left == -1 or left > ms then redis.call('PEXPIRE', k, ms) end
    else
      redis.call('PEXPIRE', k, ms)
    end
  end
end
local function holds(cur, kind, want)
  if kind == 'absent' then return not cur end
  if kind == 'ver' then return cur == want end
  return true
end
";

/// KEYS[1] entry; ARGV: expect kind, expected version, key, version, meta, len, chunks,
/// bver, ttl ms, chunk prefix, grace ms. 1: committed; 0: conflict; -1: a chunk is gone.
const COMMIT_LUA: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'ver', 'bver', 'chunks')
if not holds(cur[1], ARGV[1], ARGV[2]) then return 0 end
local n = tonumber(ARGV[7])
for i = 0, n - 1 do
  if redis.call('EXISTS', ARGV[10] .. ARGV[8] .. ':' .. i) == 0 then return -1 end
end
if cur[1] and cur[2] ~= ARGV[8] then
  chunk_ttl(ARGV[10], cur[2], tonumber(cur[3]) or 0, tonumber(ARGV[11]), true)
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'key', ARGV[3], 'ver', ARGV[4], 'meta', ARGV[5], 'len', ARGV[6],
  'chunks', ARGV[7], 'bver', ARGV[8])
redis.call('PEXPIRE', KEYS[1], ARGV[9])
chunk_ttl(ARGV[10], ARGV[8], n, tonumber(ARGV[9]), false)
return 1
";

/// KEYS[1] entry; ARGV: expect kind, expected version, key, version, meta, ttl ms, chunk
/// prefix. 1: written; 0: the expectation failed.
const UPDATE_LUA: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'ver', 'bver', 'chunks')
if not holds(cur[1], ARGV[1], ARGV[2]) then return 0 end
if cur[1] then
  redis.call('HSET', KEYS[1], 'ver', ARGV[4], 'meta', ARGV[5])
  chunk_ttl(ARGV[7], cur[2], tonumber(cur[3]) or 0, tonumber(ARGV[6]), false)
else
  redis.call('HSET', KEYS[1], 'key', ARGV[3], 'ver', ARGV[4], 'meta', ARGV[5], 'len', 0,
    'chunks', 0, 'bver', 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
";

/// KEYS[1] entry; ARGV: expect kind, expected version, chunk prefix, grace ms.
const REMOVE_LUA: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'ver', 'bver', 'chunks')
if not cur[1] or not holds(cur[1], ARGV[1], ARGV[2]) then return 0 end
chunk_ttl(ARGV[3], cur[2], tonumber(cur[3]) or 0, tonumber(ARGV[4]), true)
redis.call('DEL', KEYS[1])
return 1
";

/// `read(entry, chunk prefix, the largest body read with the head)`: the entry's fields, and
/// its body when it is that small; `false` when there is none.
const READ_LUA: &str = r"
local function read(entry, chunks, small)
  local h = redis.call('HMGET', entry, 'key', 'ver', 'meta', 'len', 'chunks', 'bver')
  if not h[2] then return false end
  local len = tonumber(h[4]) or 0
  local body = false
  if len > 0 and len <= small then
    body = redis.call('GET', chunks .. h[6] .. ':0')
    if not body then return false end
  end
  return {h[1], h[2], h[3], h[4], h[5], h[6], body, redis.call('PTTL', entry)}
end
";

/// KEYS[1] entry; ARGV: its chunk prefix, the largest body read with the head.
const GET_LUA: &str = r"
return read(KEYS[1], ARGV[1], tonumber(ARGV[2]))
";

/// KEYS: two entries of one URL (one hash tag); ARGV: their chunk prefixes, the largest
/// body read with a head. Both entries, read in one round trip.
const GET_TWO_LUA: &str = r"
local small = tonumber(ARGV[3])
return {read(KEYS[1], ARGV[1], small), read(KEYS[2], ARGV[2], small)}
";

/// What `read` in `READ_LUA` returns.
type GetReply = Option<(Vec<u8>, u64, Vec<u8>, u64, u64, u64, Option<Vec<u8>>, i64)>;

struct Scripts {
    commit: Script,
    update: Script,
    remove: Script,
    get: Script,
    get_two: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_helpers = |body: &str| Script::new(&format!("{CHUNK_TTL_LUA}{body}"));
        Self {
            commit: with_helpers(COMMIT_LUA),
            update: with_helpers(UPDATE_LUA),
            remove: with_helpers(REMOVE_LUA),
            get: Script::new(&format!("{READ_LUA}{GET_LUA}")),
            get_two: Script::new(&format!("{READ_LUA}{GET_TWO_LUA}")),
        }
    }
}

/// Fails calls at once while the backend keeps failing (see the module docs).
#[derive(Debug)]
struct Breaker {
    failures: AtomicU32,
    /// Until when calls fail at once: milliseconds since `epoch`, 0 when closed.
    open_until: AtomicU64,
    epoch: Instant,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn check(&self) -> Result<(), StoreError> {
        let until = self.open_until.load(Ordering::Relaxed);
        if until != 0 && self.now() < until {
            return Err(StoreError::Unavailable);
        }
        Ok(())
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until.store(0, Ordering::Relaxed);
    }

    fn failure(&self) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.threshold {
            let until = self.now() + self.cooldown.as_millis() as u64;
            self.open_until.store(until.max(1), Ordering::Relaxed);
            tracing::warn!(
                failures,
                "redis store failing: not used for {:?}",
                self.cooldown
            );
        }
    }
}

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

/// Builds a [`RedisStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    prefix: String,
    deadline: Duration,
    connect_timeout: Duration,
    max_entry_bytes: u64,
    breaker_threshold: u32,
    breaker_cooldown: Duration,
}

impl RedisStoreBuilder {
    /// The prefix of every key (letters, digits, `_`, `-`, `.` and `:`): what tells this
    /// cache's keys from others on the same server, and what [`Store::clear`] removes.
    /// Default `tower-etag`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The deadline of each operation (one round trip, or one body chunk). Default 50 ms.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// How long connecting may take. Default 1 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The largest entry stored. Default 128 MiB.
    pub fn max_entry_bytes(mut self, bytes: u64) -> Self {
        self.max_entry_bytes = bytes;
        self
    }

    /// Failures in a row that make the store step aside. Default 5.
    pub fn breaker_threshold(mut self, failures: u32) -> Self {
        self.breaker_threshold = failures.max(1);
        self
    }

    /// How long it steps aside before it is tried again. Default 1 s.
    pub fn breaker_cooldown(mut self, cooldown: Duration) -> Self {
        self.breaker_cooldown = cooldown;
        self
    }

    /// Connects to the server at `url` (`redis://host:port[/db]`). Fails if the prefix is
    /// not allowed or the server cannot be reached now; once connected, the store
    /// reconnects by itself.
    pub async fn connect(self, url: &str) -> Result<RedisStore, StoreError> {
        let (store, config) = self.open(url)?;
        let inner = &store.inner;
        let conn = tokio::time::timeout(
            inner.connect_timeout,
            ConnectionManager::new_with_config(inner.client.clone(), config),
        )
        .await
        .map_err(|_| StoreError::Timeout)?
        .map_err(StoreError::backend)?;
        let _ = inner.conn.set(conn);
        Ok(store)
    }

    /// The store at `url`, at once, connecting in the background: until the first
    /// connection is made (tried again every 100 ms, doubling to every 5 s, while the
    /// store lives), every operation fails at once with [`StoreError::Unavailable`] and the
    /// cache serves without it. For a node that must start while Redis is down. Fails only
    /// for a bad URL or prefix, or outside a tokio runtime.
    pub fn connect_in_background(self, url: &str) -> Result<RedisStore, StoreError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| {
            StoreError::backend("connecting in the background needs a tokio runtime")
        })?;
        let (store, config) = self.open(url)?;
        let (client, timeout) = (store.inner.client.clone(), store.inner.connect_timeout);
        let weak = Arc::downgrade(&store.inner);
        rt.spawn(connect_until_done(weak, client, config, timeout));
        Ok(store)
    }

    /// A store on `url`, not connected yet, and how its connection is to be made.
    fn open(self, url: &str) -> Result<(RedisStore, ConnectionManagerConfig), StoreError> {
        let prefix_ok = !self.prefix.is_empty()
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
        if !prefix_ok {
            return Err(StoreError::backend(format!(
                "invalid redis key prefix {:?}: letters, digits, _ - . : only",
                self.prefix
            )));
        }
        let client = redis::Client::open(url).map_err(StoreError::backend)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.deadline.max(Duration::from_millis(1)) * 4)
            .set_number_of_retries(2)
            .set_max_delay(200);
        let store = RedisStore {
            inner: Arc::new(Inner {
                client,
                conn: OnceLock::new(),
                connect_timeout: self.connect_timeout,
                prefix: self.prefix,
                deadline: self.deadline,
                max_entry_bytes: self.max_entry_bytes,
                breaker: Breaker {
                    failures: AtomicU32::new(0),
                    open_until: AtomicU64::new(0),
                    epoch: Instant::now(),
                    threshold: self.breaker_threshold,
                    cooldown: self.breaker_cooldown,
                },
                scripts: Scripts::new(),
            }),
        };
        Ok((store, config))
    }
}

/// Makes the first connection of a store opened with
/// [`RedisStoreBuilder::connect_in_background`]: one attempt at a time, backing off, and
/// given up when the store is dropped.
async fn connect_until_done(
    store: Weak<Inner>,
    client: redis::Client,
    config: ConnectionManagerConfig,
    timeout: Duration,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = tokio::time::timeout(
            timeout,
            ConnectionManager::new_with_config(client.clone(), config.clone()),
        )
        .await;
        let Some(inner) = store.upgrade() else {
            return;
        };
        match attempt {
            Ok(Ok(conn)) => {
                let _ = inner.conn.set(conn);
                tracing::info!("redis store connected");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "redis store not connected yet; trying again in {backoff:?}")
            }
            Err(_) => tracing::warn!(
                "redis store not connected yet (timed out); trying again in {backoff:?}"
            ),
        }
        drop(inner);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
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

    /// An [`InvalidationBus`] on this store's server: Redis pub/sub on the channel
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
        let url = super::key::hex_digest(key.url());
        let k = key.digest();
        let prefix = &self.inner.prefix;
        Place {
            entry: format!("{prefix}:{{{url}}}:e:{k}"),
            chunks: format!("{prefix}:{{{url}}}:b:{k}:"),
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
    fn conn(&self) -> Result<ConnectionManager, StoreError> {
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
        let places = (self.place(first), self.place(second));
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

/// Writes one entry of a [`RedisStore`]: chunks as they fill, then the commit script.
/// Dropped without commit, its chunks are removed in the background (and expire anyway).
pub struct RedisWriter {
    store: RedisStore,
    place: Place,
    key: Box<str>,
    meta: Meta,
    ttl: Duration,
    expect: Expect,
    bver: u64,
    buffer: BytesMut,
    chunks: u64,
    len: u64,
    done: bool,
    /// Bytes in chunks written so far, for the fill's followers.
    flushed: Arc<AtomicU64>,
}

impl fmt::Debug for RedisWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisWriter")
            .field("len", &self.len)
            .field("chunks", &self.chunks)
            .finish()
    }
}

impl RedisWriter {
    fn chunk_key(&self, i: u64) -> String {
        format!("{}{}:{i}", self.place.chunks, self.bver)
    }

    async fn flush_chunk(&mut self, all: bool) -> Result<(), StoreError> {
        while self.buffer.len() >= CHUNK || (all && !self.buffer.is_empty()) {
            let n = self.buffer.len().min(CHUNK);
            let chunk = self.buffer.split_to(n).freeze();
            let key = self.chunk_key(self.chunks);
            let n = chunk.len() as u64;
            self.store.write_chunk(key, chunk, self.ttl).await?;
            self.chunks += 1;
            self.flushed.fetch_add(n, Ordering::Release);
        }
        Ok(())
    }
}

impl Drop for RedisWriter {
    fn drop(&mut self) {
        if self.done || self.chunks == 0 {
            return;
        }
        // Not deleted at once but given the grace of a replaced body: followers of the fill
        // may be reading them (a commit that lost to a newer entry is a whole body), and a
        // commit whose answer was lost may have made them an entry's. They expire anyway.
        let keys: Vec<String> = (0..self.chunks).map(|i| self.chunk_key(i)).collect();
        let Ok(mut conn) = self.store.conn() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let deadline = self.store.inner.deadline * 4;
            let grace = ttl_ms(REPLACED_GRACE);
            rt.spawn(async move {
                for batch in keys.chunks(1000) {
                    let mut pipe = redis::pipe();
                    for key in batch {
                        pipe.cmd("PEXPIRE").arg(key).arg(grace).ignore();
                    }
                    let shorten = pipe.query_async::<()>(&mut conn);
                    if tokio::time::timeout(deadline, shorten).await.is_err() {
                        return;
                    }
                }
            });
        }
    }
}

impl StoreWriter for RedisWriter {
    async fn write(mut self, chunk: Bytes) -> Result<Self, StoreError> {
        self.len += chunk.len() as u64;
        let limit = self.store.inner.max_entry_bytes;
        if self.len + self.meta.bytes.len() as u64 > limit {
            return Err(StoreError::TooLarge { limit });
        }
        self.buffer.extend_from_slice(&chunk);
        self.flush_chunk(false).await?;
        Ok(self)
    }

    fn partial(&self) -> Option<Arc<dyn super::PartialReader>> {
        Some(Arc::new(RedisPartial {
            store: self.store.clone(),
            chunks: format!("{}{}:", self.place.chunks, self.bver),
            flushed: Arc::clone(&self.flushed),
        }))
    }

    fn replace_meta(&mut self, meta: Meta) {
        if self.len + meta.bytes.len() as u64 <= self.store.inner.max_entry_bytes {
            self.meta = meta;
        }
    }

    async fn commit(mut self) -> Result<u64, StoreError> {
        self.flush_chunk(true).await?;
        let (kind, want) = expect_args(self.expect);
        let mut conn = self.store.conn()?;
        let inner = Arc::clone(&self.store.inner);
        let bver = if self.len == 0 { 0 } else { self.bver };
        let version = new_version();
        // The script touches every chunk: a large body's commit gets more time. Until its
        // answer comes, the chunks are the entry's (a lost answer may hide a commit).
        let deadline = self.store.inner.deadline * (1 + (self.chunks / 256) as u32);
        self.done = true;
        let committed: i64 = self
            .store
            .run_within(deadline, async {
                inner
                    .scripts
                    .commit
                    .key(&self.place.entry)
                    .arg(kind)
                    .arg(want)
                    .arg(self.key.as_ref())
                    .arg(version)
                    .arg(self.meta.bytes.as_ref())
                    .arg(self.len)
                    .arg(self.chunks)
                    .arg(bver)
                    .arg(ttl_ms(self.ttl))
                    .arg(&self.place.chunks)
                    .arg(ttl_ms(REPLACED_GRACE))
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        self.done = committed == 1;
        match committed {
            1 => Ok(version),
            0 => Err(StoreError::Conflict),
            _ => Err(StoreError::backend(
                "a body chunk expired before the commit",
            )),
        }
    }
}

/// The chunks a [`RedisWriter`] has written so far.
struct RedisPartial {
    store: RedisStore,
    chunks: String,
    flushed: Arc<AtomicU64>,
}

impl super::PartialReader for RedisPartial {
    fn available(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    fn read(&self, range: std::ops::Range<u64>) -> BodyStream {
        let len = self.available();
        RedisBody {
            store: self.store.clone(),
            chunks: self.chunks.clone(),
            count: len.div_ceil(CHUNK as u64),
            len,
        }
        .read(range)
    }
}

/// A body in Redis, read chunk by chunk (`GETRANGE` for the ends of a range).
#[derive(Debug)]
struct RedisBody {
    store: RedisStore,
    chunks: String,
    count: u64,
    len: u64,
}

impl BodyReader for RedisBody {
    fn len(&self) -> u64 {
        self.len
    }

    fn read(&self, range: std::ops::Range<u64>) -> BodyStream {
        Box::pin(RedisChunks {
            store: self.store.clone(),
            chunks: self.chunks.clone(),
            count: self.count,
            next: range.start,
            end: range.end.min(self.len),
            reading: VecDeque::with_capacity(READ_AHEAD),
        })
    }
}

/// How many chunk reads of one body are in flight at once: the next chunk is on its way
/// while the client takes this one (at most this many chunks held per reader).
const READ_AHEAD: usize = 2;

type ChunkFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, StoreError>> + Send>>;

/// A chunk read: under way, or done and waiting for the ones before it.
struct ChunkRead {
    /// The bytes it must bring.
    want: u64,
    future: ChunkFuture,
    done: Option<Result<Vec<u8>, StoreError>>,
}

struct RedisChunks {
    store: RedisStore,
    chunks: String,
    count: u64,
    /// The first byte not asked for yet.
    next: u64,
    end: u64,
    /// The reads in flight, in body order.
    reading: VecDeque<ChunkRead>,
}

impl RedisChunks {
    /// Asks for the part of the chunk at `self.next` up to `self.end`.
    fn ask(&mut self) -> Result<(), StoreError> {
        let i = self.next / CHUNK as u64;
        if i >= self.count {
            return Err(StoreError::backend("a body chunk is missing"));
        }
        let start = self.next % CHUNK as u64;
        let last = (self.end - 1 - i * CHUNK as u64).min(CHUNK as u64 - 1);
        let key = format!("{}{i}", self.chunks);
        let store = self.store.clone();
        let read: ChunkFuture = Box::pin(async move {
            let mut conn = store.conn()?;
            store
                .run(async move {
                    redis::cmd("GETRANGE")
                        .arg(&key)
                        .arg(start)
                        .arg(last)
                        .query_async::<Vec<u8>>(&mut conn)
                        .await
                })
                .await
        });
        self.reading.push_back(ChunkRead {
            want: last - start + 1,
            future: read,
            done: None,
        });
        self.next = i * CHUNK as u64 + last + 1;
        Ok(())
    }
}

impl futures_core::Stream for RedisChunks {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        while this.reading.len() < READ_AHEAD && this.next < this.end {
            if let Err(e) = this.ask() {
                if this.reading.is_empty() {
                    return Poll::Ready(Some(Err(e)));
                }
                break; // Said once the reads before it are given out.
            }
        }
        // Every read in flight is polled, so the ones behind the first are on their way.
        for read in this.reading.iter_mut().filter(|r| r.done.is_none()) {
            if let Poll::Ready(done) = read.future.as_mut().poll(cx) {
                read.done = Some(done);
            }
        }
        let Some(first) = this.reading.front_mut() else {
            return Poll::Ready(None);
        };
        let (want, Some(read)) = (first.want, first.done.take()) else {
            return Poll::Pending;
        };
        this.reading.pop_front();
        Poll::Ready(Some(match read {
            Ok(bytes) if bytes.len() as u64 == want => Ok(bytes.into()),
            // GETRANGE of a key that is gone is empty.
            Ok(bytes) if bytes.is_empty() => Err(StoreError::backend("a body chunk is gone")),
            Ok(_) => Err(StoreError::backend("a body chunk is short")),
            Err(e) => Err(e),
        }))
    }
}

/// Invalidations between the nodes of a fleet over Redis pub/sub ([`RedisStore::bus`]).
///
/// A message is `{node} {digest}` (or `{node} *` for everything): the node that published
/// it, which ignores its own, and the digest of the record, so no key travels. Publishing
/// is fire and forget (within the store's deadline, skipped while the store steps aside).
/// The subscription reconnects by itself, and after every (re)connection tells the sink
/// that messages may have been lost.
pub struct RedisBus {
    store: RedisStore,
    channel: String,
    node: String,
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("channel", &self.channel)
            .field("node", &self.node)
            .finish()
    }
}

impl InvalidationBus for RedisBus {
    fn publish(&self, digest: Option<&str>) {
        if self.store.is_stepping_aside() {
            return;
        }
        let message = format!("{} {}", self.node, digest.unwrap_or("*"));
        let (store, channel) = (self.store.clone(), self.channel.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let Ok(mut conn) = store.conn() else {
                    return;
                };
                let publish = conn.publish::<_, _, ()>(channel, message);
                let _ = store.run(publish).await;
            });
        }
    }

    fn subscribe(&self, sink: std::sync::Weak<dyn InvalidationSink>) {
        let (client, channel, node) = (
            self.store.inner.client.clone(),
            self.channel.clone(),
            self.node.clone(),
        );
        let connect_timeout = Duration::from_secs(1);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no tokio runtime: the invalidation bus is not listened to");
            return;
        };
        rt.spawn(async move {
            let mut backoff = Duration::from_millis(100);
            while sink.strong_count() > 0 {
                let connected = tokio::time::timeout(connect_timeout, async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    RedisResult::Ok(pubsub)
                })
                .await;
                if let Ok(Ok(mut pubsub)) = connected {
                    backoff = Duration::from_millis(100);
                    if !listen(&mut pubsub, &sink, &node).await {
                        return;
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }
}

/// Delivers messages to `sink` until the connection ends (`true`) or the sink is gone
/// (`false`).
async fn listen(
    pubsub: &mut redis::aio::PubSub,
    sink: &std::sync::Weak<dyn InvalidationSink>,
    node: &str,
) -> bool {
    use futures_core::Stream;
    // Whatever was published while this node was not listening is unknown.
    match sink.upgrade() {
        Some(s) => s.invalidated(None),
        None => return false,
    }
    let mut messages = std::pin::pin!(pubsub.on_message());
    loop {
        let next = std::future::poll_fn(|cx| messages.as_mut().poll_next(cx));
        match tokio::time::timeout(Duration::from_secs(1), next).await {
            // Quiet: check that someone still listens.
            Err(_) if sink.strong_count() == 0 => return false,
            Err(_) => {}
            Ok(None) => return true,
            Ok(Some(message)) => {
                let payload: Vec<u8> = message.get_payload().unwrap_or_default();
                let text = String::from_utf8_lossy(&payload);
                let Some((from, what)) = text.split_once(' ') else {
                    continue;
                };
                if from == node {
                    continue;
                }
                let Some(s) = sink.upgrade() else {
                    return false;
                };
                s.invalidated((what != "*").then_some(what));
            }
        }
    }
}
