//! [`FsStore`]: entries in files of one directory, kept across restarts.
//!
//! Layout, under the store's directory:
//!
//! - `tmp/`: files being written. A write goes to a file here and is renamed into
//!   `entries/` on commit, so a crash (or a dropped writer) never leaves a half entry
//!   visible. Emptied on start.
//! - `entries/{digest}-{version}.body`: an entry's body, as it came.
//! - `entries/{digest}-{version}.head`: an entry's head: its key, the cache's
//!   encoded head, when it expires, and which body it has (an update of the head writes a
//!   new head file for the same body). `{digest}` is the blake3 digest of the key, so any
//!   key makes a short, safe file name.
//!
//! The index (key → head) lives in memory and is rebuilt from the head files on start: the
//! newest head of each key wins, and what no head names (a body whose head was never
//! written, an older head) is removed. Heads are small and bounded in number, so a lookup
//! needs no I/O; a body is read from its file as the client reads it.
//!
//! All file I/O runs on tokio's blocking pool (`spawn_blocking`), never on an async worker.

use super::{
    key::hex_digest, BodyReader, BodyStream, Expect, Key, Meta, Store, StoreError, StoreWriter,
    Stored, StoredBody,
};
use crate::sync::lock;
use bytes::{Bytes, BytesMut};
use lru::LruCache;
use std::future::Future as _;
use std::{
    fs::{self, File},
    io::{self, Read, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// How much of a body is read from its file at a time, and the bodies read whole with
/// their lookup (one trip to the blocking pool for a small hit).
const CHUNK: usize = 64 * 1024;

/// How much of a large body is read from its file at a time as it streams.
const STREAM_CHUNK: u64 = 256 * 1024;

/// Bytes of body a writer buffers before it writes them to its file.
const WRITE_BUFFER: usize = 64 * 1024;

/// Bodies this small are kept in memory too, within [`INLINE_BUDGET`] bytes in all, so a hit
/// on them needs no file I/O at all (they are on disk as well, and read from there after a
/// restart).
const INLINE_MAX: u64 = 4 * 1024;

/// The memory all the bodies kept in memory may take.
const INLINE_BUDGET: u64 = 32 * 1024 * 1024;

/// Bytes counted per entry on top of its head and body (the index node, file system
/// blocks are not counted).
const ENTRY_OVERHEAD: u64 = 512;

/// The default bound on the bytes held: 1 GiB.
pub const DEFAULT_FS_MAX_BYTES: u64 = 1 << 30;

/// The default bound on the number of entries.
pub const DEFAULT_FS_MAX_ENTRIES: usize = 1 << 20;

const HEAD_MAGIC: &[u8; 8] = b"tefshd01";

/// What the index keeps of an entry: its head, in memory.
#[derive(Debug)]
struct Entry {
    meta: Meta,
    version: u64,
    /// The version whose body file this entry uses; `0` for an empty body (no file).
    body_version: u64,
    body_len: u64,
    expires: SystemTime,
    digest: String,
    /// The body, when it is small and the memory for it was there (see [`INLINE_MAX`]).
    inline: Option<Inline>,
}

impl Entry {
    fn size(&self, key: &str) -> u64 {
        key.len() as u64 + self.meta.bytes.len() as u64 + self.body_len + ENTRY_OVERHEAD
    }
}

#[derive(Debug)]
struct Index {
    map: LruCache<Box<str>, Arc<Entry>>,
    bytes: u64,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    index: Mutex<Index>,
    max_bytes: u64,
    max_entry_bytes: u64,
    max_entries: usize,
    /// The last version given out: versions never repeat, across restarts too (it starts
    /// past the newest found on disk).
    versions: AtomicU64,
    /// Bytes in files being written, in all; at most `max_bytes`.
    pending: AtomicU64,
    /// The bytes of the bodies kept in memory ([`Entry::inline`]); at most [`INLINE_BUDGET`].
    inline: Arc<AtomicU64>,
}

/// Entries in files under one directory: they survive a restart, and the store is bounded by
/// total bytes (least recently used entries are removed first) and by entry count.
///
/// Open it with [`FsStore::open`] (it creates the directory). Only one process may use a
/// directory at a time.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use tower_etag::{response_cache::ResponseCache, store::FsStore};
///
/// let store = FsStore::builder().max_bytes(10 << 30).open("/var/cache/my-app").await?;
/// let cache = ResponseCache::new(store);
/// # let _ = cache;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

/// Builds an [`FsStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct FsStoreBuilder {
    max_bytes: u64,
    max_entry_bytes: Option<u64>,
    max_entries: usize,
}

impl FsStoreBuilder {
    /// The most bytes held (heads and bodies). Default 1 GiB.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The largest entry. Default: an eighth of `max_bytes`.
    pub fn max_entry_bytes(mut self, bytes: u64) -> Self {
        self.max_entry_bytes = Some(bytes);
        self
    }

    /// The most entries held. Default 2^20.
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries.max(1);
        self
    }

    /// Opens the store in `dir`, creating it if needed: removes what a crash left behind
    /// (files being written, bodies without a head, older heads) and reads the index.
    pub async fn open(self, dir: impl AsRef<Path>) -> io::Result<FsStore> {
        let dir = dir.as_ref().to_path_buf();
        let max_entry_bytes = self.max_entry_bytes.unwrap_or(self.max_bytes / 8);
        let scanned = dir.clone();
        let (entries, last_version) = blocking(move || load(&scanned))
            .await
            .map_err(io::Error::other)??;
        let store = FsStore {
            inner: Arc::new(Inner {
                dir,
                index: Mutex::new(Index {
                    map: LruCache::unbounded(),
                    bytes: 0,
                }),
                max_bytes: self.max_bytes,
                max_entry_bytes: max_entry_bytes.min(self.max_bytes),
                max_entries: self.max_entries,
                versions: AtomicU64::new(last_version),
                pending: AtomicU64::new(0),
                inline: Arc::default(),
            }),
        };
        let mut evicted = Vec::new();
        {
            let mut index = store.lock();
            // Oldest first, so the most recently written are the most recently used.
            for (key, entry) in entries {
                evicted.extend(store.put_locked(&mut index, key, entry));
            }
        }
        store.delete_files(evicted).await;
        Ok(store)
    }
}

impl FsStore {
    /// A builder, for other bounds than the defaults.
    pub fn builder() -> FsStoreBuilder {
        FsStoreBuilder {
            max_bytes: DEFAULT_FS_MAX_BYTES,
            max_entry_bytes: None,
            max_entries: DEFAULT_FS_MAX_ENTRIES,
        }
    }

    /// Opens the store in `dir` with the default bounds ([`FsStoreBuilder::open`]).
    pub async fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        Self::builder().open(dir).await
    }

    /// The bytes held now, as counted against the bound.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// The number of entries held now (expired ones included until they are next touched).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        lock(&self.inner.index)
    }

    fn next_version(&self) -> u64 {
        self.inner.versions.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn entries_dir(&self) -> PathBuf {
        self.inner.dir.join("entries")
    }

    /// A copy of `body` to keep in memory beside its file, if it is small and the memory for
    /// it is there. The memory goes back when the copy is dropped.
    fn keep_inline(&self, body: &[u8]) -> Option<Inline> {
        let len = body.len() as u64;
        if len == 0 || len > INLINE_MAX {
            return None;
        }
        let used = self.inner.inline.fetch_add(len, Ordering::Relaxed);
        if used + len > INLINE_BUDGET {
            self.inner.inline.fetch_sub(len, Ordering::Relaxed);
            return None;
        }
        Some(Inline {
            bytes: Bytes::copy_from_slice(body),
            budget: Arc::clone(&self.inner.inline),
        })
    }

    /// Puts `entry` under `key`, evicting least recently used entries to make room; returns
    /// the files no entry uses any more.
    fn put_locked(&self, index: &mut Index, key: Box<str>, entry: Entry) -> Vec<PathBuf> {
        let mut gone = Vec::new();
        let dir = self.entries_dir();
        if let Some(old) = index.map.pop(&key) {
            index.bytes -= old.size(&key);
            gone.push(head_path(&dir, &old.digest, old.version));
            if old.body_version != entry.body_version {
                gone.extend(body_path(&dir, &old.digest, old.body_version));
            }
        }
        let size = entry.size(&key);
        while index.bytes + size > self.inner.max_bytes || index.map.len() >= self.inner.max_entries
        {
            let Some((k, evicted)) = index.map.pop_lru() else {
                break;
            };
            index.bytes -= evicted.size(&k);
            gone.extend(files_of(&dir, &evicted));
        }
        index.bytes += size;
        index.map.put(key, Arc::new(entry));
        gone
    }

    /// The live entry under `key`; an expired one is removed (its files returned).
    fn current(&self, index: &mut Index, key: &str, gone: &mut Vec<PathBuf>) -> Option<Arc<Entry>> {
        let entry = Arc::clone(index.map.peek(key)?);
        if entry.expires <= SystemTime::now() {
            index.map.pop(key);
            index.bytes -= entry.size(key);
            gone.extend(files_of(&self.entries_dir(), &entry));
            return None;
        }
        Some(entry)
    }

    /// Removes files in the background: readers that have them open read on.
    async fn delete_files(&self, files: Vec<PathBuf>) {
        if files.is_empty() {
            return;
        }
        let _ = blocking(move || {
            for f in files {
                let _ = fs::remove_file(f);
            }
        })
        .await;
    }

    /// Writes a head file for `entry` and renames it into place.
    async fn write_head(&self, key: &str, entry: &Entry) -> Result<(), StoreError> {
        let bytes = encode_head(key, entry);
        let tmp = self.tmp_path();
        let path = head_path(&self.entries_dir(), &entry.digest, entry.version);
        blocking(move || {
            write_file(&tmp, &bytes)?;
            fs::rename(&tmp, &path).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })
        })
        .await?
        .map_err(StoreError::backend)
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.inner.versions.fetch_add(1, Ordering::Relaxed) + 1;
        self.inner.dir.join("tmp").join(format!("{n}.tmp"))
    }

    /// Puts a head whose files are written, if `expect` still holds; on a conflict its files
    /// are removed. Returns whether it was put.
    async fn install(&self, key: &str, entry: Entry, expect: Expect) -> Result<bool, StoreError> {
        let mut gone = Vec::new();
        let installed = {
            let mut index = self.lock();
            let current = self.current(&mut index, key, &mut gone);
            if holds(current.as_deref(), expect) {
                gone.extend(self.put_locked(&mut index, key.into(), entry));
                true
            } else {
                // The files just written are nobody's.
                gone.push(head_path(&self.entries_dir(), &entry.digest, entry.version));
                if current.is_none_or(|c| c.body_version != entry.body_version) {
                    gone.extend(body_path(
                        &self.entries_dir(),
                        &entry.digest,
                        entry.body_version,
                    ));
                }
                false
            }
        };
        self.delete_files(gone).await;
        Ok(installed)
    }
}

impl Default for FsStoreBuilder {
    fn default() -> Self {
        FsStore::builder()
    }
}

/// A small body kept in memory beside its file; its bytes count against the budget until
/// it is dropped (with its entry, whichever way the entry goes).
#[derive(Debug)]
struct Inline {
    bytes: Bytes,
    budget: Arc<AtomicU64>,
}

impl Drop for Inline {
    fn drop(&mut self) {
        self.budget
            .fetch_sub(self.bytes.len() as u64, Ordering::Relaxed);
    }
}

/// Whether `expect` holds for `current`.
fn holds(current: Option<&Entry>, expect: Expect) -> bool {
    match (expect, current) {
        (Expect::Any, _) | (Expect::Absent, None) => true,
        (Expect::Version(v), Some(e)) => e.version == v,
        _ => false,
    }
}

fn head_path(dir: &Path, digest: &str, version: u64) -> PathBuf {
    dir.join(format!("{digest}-{version}.head"))
}

fn body_path(dir: &Path, digest: &str, body_version: u64) -> Option<PathBuf> {
    (body_version != 0).then(|| dir.join(format!("{digest}-{body_version}.body")))
}

fn files_of(dir: &Path, entry: &Entry) -> Vec<PathBuf> {
    let mut files = vec![head_path(dir, &entry.digest, entry.version)];
    files.extend(body_path(dir, &entry.digest, entry.body_version));
    files
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64)
}

fn expiry(ttl: Duration) -> SystemTime {
    SystemTime::now()
        .checked_add(ttl)
        .unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 4))
}

/// A head file: magic, key, meta, expiry (Unix ms), version, body version, body length.
fn encode_head(key: &str, entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + key.len() + entry.meta.bytes.len());
    out.extend_from_slice(HEAD_MAGIC);
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&(entry.meta.bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&entry.meta.bytes);
    out.extend_from_slice(&unix_millis(entry.expires).to_be_bytes());
    out.extend_from_slice(&entry.version.to_be_bytes());
    out.extend_from_slice(&entry.body_version.to_be_bytes());
    out.extend_from_slice(&entry.body_len.to_be_bytes());
    out
}

/// Reads a head file; `None` if it is not one (damaged, or of another format).
fn decode_head(bytes: &[u8]) -> Option<(String, Entry)> {
    let rest = bytes.strip_prefix(HEAD_MAGIC)?;
    let (key, rest) = take_sized(rest)?;
    let (meta, rest) = take_sized(rest)?;
    let (expires, rest) = take_u64(rest)?;
    let (version, rest) = take_u64(rest)?;
    let (body_version, rest) = take_u64(rest)?;
    let (body_len, rest) = take_u64(rest)?;
    if !rest.is_empty() || version == 0 {
        return None;
    }
    let key = String::from_utf8(key.to_vec()).ok()?;
    let digest = hex_digest(&key);
    Some((
        key,
        Entry {
            meta: Meta::encoded(Bytes::copy_from_slice(meta)),
            version,
            body_version,
            body_len,
            expires: UNIX_EPOCH + Duration::from_millis(expires),
            digest,
            inline: None,
        },
    ))
}

fn take_u64(b: &[u8]) -> Option<(u64, &[u8])> {
    let (n, rest) = b.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*n), rest))
}

fn take_sized(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (n, rest) = b.split_first_chunk::<4>()?;
    let n = u32::from_be_bytes(*n) as usize;
    (rest.len() >= n).then(|| rest.split_at(n))
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)
}

/// The live entries found on disk, oldest first, and the highest version seen.
type Loaded = (Vec<(Box<str>, Entry)>, u64);

/// What `open` finds on disk: the newest live head of each key (oldest first) and the
/// highest version seen. Removes everything else.
fn load(dir: &Path) -> io::Result<Loaded> {
    let tmp = dir.join("tmp");
    let entries = dir.join("entries");
    // What a crash left being written is never an entry.
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    fs::create_dir_all(&entries)?;
    let now = SystemTime::now();
    let mut last = 0u64;
    let mut heads: std::collections::HashMap<String, (Entry, PathBuf)> = Default::default();
    let mut files = Vec::new();
    for item in fs::read_dir(&entries)? {
        let path = item?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(v) = name
            .rsplit_once('-')
            .and_then(|(_, v)| v.split_once('.'))
            .and_then(|(v, _)| v.parse::<u64>().ok())
        {
            last = last.max(v);
        }
        if !name.ends_with(".head") {
            files.push(path);
            continue;
        }
        let decoded = fs::read(&path).ok().and_then(|b| decode_head(&b));
        let Some((key, entry)) = decoded.filter(|(_, e)| e.expires > now) else {
            let _ = fs::remove_file(&path);
            continue;
        };
        last = last.max(entry.version).max(entry.body_version);
        match heads.get(&key) {
            Some((older, _)) if older.version > entry.version => {
                let _ = fs::remove_file(&path);
            }
            _ => {
                if let Some((_, old_path)) = heads.insert(key, (entry, path)) {
                    let _ = fs::remove_file(old_path);
                }
            }
        }
    }
    // A head whose body is missing or of the wrong length is damaged: removed.
    let mut live = Vec::with_capacity(heads.len());
    let mut bodies = std::collections::HashSet::new();
    for (key, (entry, path)) in heads {
        let body = body_path(&entries, &entry.digest, entry.body_version);
        let body_ok = match &body {
            None => entry.body_len == 0,
            Some(b) => fs::metadata(b).is_ok_and(|m| m.len() == entry.body_len),
        };
        if !body_ok {
            let _ = fs::remove_file(path);
            continue;
        }
        bodies.extend(body);
        live.push((key.into_boxed_str(), entry));
    }
    for f in files {
        if !bodies.contains(&f) {
            let _ = fs::remove_file(f);
        }
    }
    live.sort_by_key(|(_, e)| e.version);
    Ok((live, last))
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(StoreError::backend)
}

/// A body read from its file, by offset: another entry replacing it meanwhile removes the
/// file's name, not what this open file reads.
#[derive(Debug)]
struct FileBody {
    file: Arc<File>,
    len: u64,
}

impl BodyReader for FileBody {
    fn len(&self) -> u64 {
        self.len
    }

    fn read(&self, range: std::ops::Range<u64>) -> BodyStream {
        let file = Arc::clone(&self.file);
        let end = range.end.min(self.len);
        Box::pin(FileChunks {
            file,
            pos: range.start,
            end,
            reading: None,
        })
    }
}

type ChunkRead = tokio::task::JoinHandle<io::Result<Bytes>>;

/// The chunks of a byte range of a file, each read on the blocking pool when polled.
struct FileChunks {
    file: Arc<File>,
    pos: u64,
    end: u64,
    reading: Option<ChunkRead>,
}

impl futures_core::Stream for FileChunks {
    type Item = Result<Bytes, StoreError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.reading.is_none() {
            if self.pos >= self.end {
                return Poll::Ready(None);
            }
            let (file, pos) = (Arc::clone(&self.file), self.pos);
            let n = (self.end - pos).min(STREAM_CHUNK) as usize;
            self.reading = Some(tokio::task::spawn_blocking(move || read_at(&file, pos, n)));
        }
        let handle = self.reading.as_mut().expect("set above");
        let read = std::task::ready!(std::pin::Pin::new(handle).poll(cx));
        self.reading = None;
        Poll::Ready(Some(match read {
            Ok(Ok(chunk)) if !chunk.is_empty() => {
                self.pos += chunk.len() as u64;
                Ok(chunk)
            }
            Ok(Ok(_)) => Err(StoreError::backend("the body file ended short")),
            Ok(Err(e)) => Err(StoreError::backend(e)),
            Err(e) => Err(StoreError::backend(e)),
        }))
    }
}

/// Reads up to `n` bytes at `pos` (fewer only at the end of the file).
fn read_at(file: &File, pos: u64, n: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(n);
    let mut filled = 0;
    while filled < n {
        match file.read_at(&mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf.freeze())
}

/// Opens a body file: bodies up to [`CHUNK`] are read whole (one trip to the blocking
/// pool for a small hit), larger ones are read as they are streamed.
fn open_body(path: &Path, len: u64) -> io::Result<StoredBody> {
    let mut file = File::open(path)?;
    if len <= CHUNK as u64 {
        let mut buf = Vec::with_capacity(len as usize);
        file.read_to_end(&mut buf)?;
        if buf.len() as u64 != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "body file of the wrong length",
            ));
        }
        return Ok(StoredBody::Bytes(buf.into()));
    }
    Ok(StoredBody::Reader(Arc::new(FileBody {
        file: Arc::new(file),
        len,
    })))
}

/// What an [`FsWriter`] has on disk so far: the open file (which stays readable once it is
/// renamed, or removed) and how much of it is written.
#[derive(Debug, Default)]
struct FsPartial {
    file: std::sync::OnceLock<Arc<File>>,
    flushed: AtomicU64,
}

impl FsPartial {
    fn flushed(&self, file: &Arc<File>, len: u64) {
        let _ = self.file.set(Arc::clone(file));
        self.flushed.fetch_max(len, Ordering::Release);
    }
}

impl super::PartialReader for FsPartial {
    fn available(&self) -> u64 {
        self.flushed.load(Ordering::Acquire)
    }

    fn read(&self, range: std::ops::Range<u64>) -> BodyStream {
        match self.file.get() {
            Some(file) => FileBody {
                file: Arc::clone(file),
                len: self.available(),
            }
            .read(range),
            None => StoredBody::Bytes(Bytes::new()).stream(0..0),
        }
    }
}

/// Writes one entry of an [`FsStore`] to a file in `tmp/`; dropped without commit, the file
/// is removed.
#[derive(Debug)]
pub struct FsWriter {
    store: FsStore,
    key: Box<str>,
    meta: Meta,
    ttl: Duration,
    expect: Expect,
    /// The file being written, once the first bytes go to disk.
    file: Option<Arc<File>>,
    /// What followers of the fill read ([`StoreWriter::partial`]).
    partial: Arc<FsPartial>,
    tmp: PathBuf,
    /// Whether `tmp` may exist (its creation was started), and was not renamed into place.
    created: bool,
    /// Set when the writer is dropped: a write still running on the blocking pool then
    /// removes the file it may have created after the drop removed it.
    abandoned: Arc<std::sync::atomic::AtomicBool>,
    buffer: BytesMut,
    len: u64,
    /// The bytes counted against the store's budget for files being written.
    reserved: u64,
}

impl FsWriter {
    /// Writes what is buffered to the file.
    async fn flush(mut self) -> Result<Self, StoreError> {
        if self.buffer.is_empty() {
            return Ok(self);
        }
        let data = self.buffer.split().freeze();
        let file = self.file.take();
        let tmp = self.tmp.clone();
        self.created = true;
        let abandoned = Arc::clone(&self.abandoned);
        let file = blocking(move || -> io::Result<Arc<File>> {
            let file = match file {
                Some(f) => f,
                // Readable too: the fill's followers read it while it is written.
                None => Arc::new(
                    fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(&tmp)?,
                ),
            };
            (&*file).write_all(&data)?;
            if abandoned.load(Ordering::Acquire) {
                let _ = fs::remove_file(&tmp);
            }
            Ok(file)
        })
        .await?
        .map_err(StoreError::backend)?;
        self.partial
            .flushed(&file, self.len - self.buffer.len() as u64);
        self.file = Some(file);
        Ok(self)
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        self.store
            .inner
            .pending
            .fetch_sub(self.reserved, Ordering::Relaxed);
        self.abandoned.store(true, Ordering::Release);
        if self.created {
            // Not committed (a commit renames it): the partial file goes.
            let tmp = std::mem::take(&mut self.tmp);
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(move || fs::remove_file(tmp))),
                Err(_) => drop(fs::remove_file(tmp)),
            }
        }
    }
}

impl StoreWriter for FsWriter {
    async fn write(mut self, chunk: Bytes) -> Result<Self, StoreError> {
        let limit = self.store.inner.max_entry_bytes;
        self.len += chunk.len() as u64;
        if self.len + self.key.len() as u64 + self.meta.bytes.len() as u64 > limit {
            return Err(StoreError::TooLarge { limit });
        }
        let inner = &self.store.inner;
        let more = chunk.len() as u64;
        if inner.pending.fetch_add(more, Ordering::Relaxed) + more > inner.max_bytes {
            inner.pending.fetch_sub(more, Ordering::Relaxed);
            return Err(StoreError::Busy);
        }
        self.reserved += more;
        self.buffer.extend_from_slice(&chunk);
        if self.buffer.len() >= WRITE_BUFFER {
            return self.flush().await;
        }
        Ok(self)
    }

    fn partial(&self) -> Option<Arc<dyn super::PartialReader>> {
        Some(Arc::clone(&self.partial) as Arc<dyn super::PartialReader>)
    }

    fn replace_meta(&mut self, meta: Meta) {
        let size = self.len + self.key.len() as u64 + meta.bytes.len() as u64;
        if size <= self.store.inner.max_entry_bytes {
            self.meta = meta;
        }
    }

    async fn commit(self) -> Result<u64, StoreError> {
        // A small body is all in the buffer still: keep a copy in memory as well.
        let inline = match self.file {
            None => self.store.keep_inline(&self.buffer),
            Some(_) => None,
        };
        let mut w = self.flush().await?;
        let store = w.store.clone();
        let version = store.next_version();
        let digest = hex_digest(&w.key);
        let dir = store.entries_dir();
        let body_version = if w.len == 0 { 0 } else { version };
        let entry = Entry {
            meta: w.meta.clone(),
            version,
            body_version,
            body_len: w.len,
            expires: expiry(w.ttl),
            digest,
            inline,
        };
        let head = encode_head(&w.key, &entry);
        let head_tmp = store.tmp_path();
        let body_tmp = w.tmp.clone();
        let body_dest = body_path(&dir, &entry.digest, body_version);
        let head_dest = head_path(&dir, &entry.digest, version);
        let file = w.file.take();
        // From here the files are the task's to clean up.
        w.created = false;
        let (key, expect) = (std::mem::take(&mut w.key), w.expect);
        drop(w);
        // Renaming and installing run in a task of their own: a commit whose caller goes
        // away halfway still either installs its files or removes them, never renames them
        // into `entries/` and forgets them.
        let task = tokio::spawn(async move {
            blocking(move || -> io::Result<()> {
                let written = (|| {
                    if let Some(file) = &file {
                        // On disk before it is named: after a power loss a body is there
                        // whole, or its head is not.
                        file.sync_data()?;
                    }
                    drop(file);
                    // Body first, then the head that names it: a crash in between leaves a
                    // body nobody names, removed on the next start.
                    if let Some(dest) = &body_dest {
                        fs::rename(&body_tmp, dest)?;
                    }
                    write_file(&head_tmp, &head)?;
                    fs::rename(&head_tmp, &head_dest)?;
                    File::open(&dir)?.sync_all()
                })();
                if written.is_err() {
                    for f in [
                        Some(&body_tmp),
                        body_dest.as_ref(),
                        Some(&head_tmp),
                        Some(&head_dest),
                    ]
                    .into_iter()
                    .flatten()
                    {
                        let _ = fs::remove_file(f);
                    }
                }
                written
            })
            .await?
            .map_err(StoreError::backend)?;
            store.install(&key, entry, expect).await
        });
        match task.await.map_err(StoreError::backend)?? {
            true => Ok(version),
            false => Err(StoreError::Conflict),
        }
    }
}

impl Store for FsStore {
    type Writer = FsWriter;

    async fn get(&self, key: &Key) -> Result<Option<Stored>, StoreError> {
        let mut gone = Vec::new();
        let entry = {
            let mut index = self.lock();
            let entry = self.current(&mut index, key.as_str(), &mut gone);
            if entry.is_some() {
                index.map.promote(key.as_str());
            }
            entry
        };
        self.delete_files(gone).await;
        let Some(entry) = entry else {
            return Ok(None);
        };
        let on_disk = body_path(&self.entries_dir(), &entry.digest, entry.body_version);
        let body = match (&entry.inline, on_disk) {
            (Some(inline), _) => StoredBody::Bytes(inline.bytes.clone()),
            (None, None) => StoredBody::Bytes(Bytes::new()),
            (None, Some(path)) => {
                let len = entry.body_len;
                match blocking(move || open_body(&path, len)).await? {
                    Ok(body) => body,
                    // Removed since (replaced, evicted): as good as absent.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(StoreError::backend(e)),
                }
            }
        };
        let left = entry
            .expires
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        Ok(Some(
            Stored::new(entry.meta.clone(), body, entry.version).expires_in(left),
        ))
    }

    async fn writer(
        &self,
        key: &Key,
        meta: Meta,
        ttl: Duration,
        expect: Expect,
    ) -> Result<FsWriter, StoreError> {
        let limit = self.inner.max_entry_bytes;
        if key.as_str().len() as u64 + meta.bytes.len() as u64 > limit {
            return Err(StoreError::TooLarge { limit });
        }
        Ok(FsWriter {
            store: self.clone(),
            key: key.as_str().into(),
            meta,
            ttl,
            expect,
            file: None,
            partial: Arc::default(),
            tmp: self.tmp_path(),
            created: false,
            abandoned: Arc::default(),
            buffer: BytesMut::new(),
            len: 0,
            reserved: 0,
        })
    }

    fn max_entry_bytes(&self) -> Option<u64> {
        Some(self.inner.max_entry_bytes)
    }

    async fn update_meta(
        &self,
        key: &Key,
        expect: Expect,
        meta: Meta,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = key.as_str();
        let mut gone = Vec::new();
        let current = {
            let mut index = self.lock();
            self.current(&mut index, key, &mut gone)
        };
        self.delete_files(gone).await;
        if !holds(current.as_deref(), expect) {
            return Ok(false);
        }
        let (body_version, body_len) = current
            .as_ref()
            .map_or((0, 0), |c| (c.body_version, c.body_len));
        let limit = self.inner.max_entry_bytes;
        if key.len() as u64 + meta.bytes.len() as u64 + body_len > limit {
            return Err(StoreError::TooLarge { limit });
        }
        let inline = current
            .as_ref()
            .and_then(|c| c.inline.as_ref())
            .and_then(|b| self.keep_inline(&b.bytes));
        let entry = Entry {
            meta,
            version: self.next_version(),
            body_version,
            body_len,
            expires: expiry(ttl),
            digest: hex_digest(key),
            inline,
        };
        self.write_head(key, &entry).await?;
        // Atomic with the check: `install` checks `expect` again under the lock (another
        // write may have come in while the head was written).
        self.install(key, entry, expect).await
    }

    async fn remove(&self, key: &Key, expect: Expect) -> Result<bool, StoreError> {
        let mut gone = Vec::new();
        let removed = {
            let mut index = self.lock();
            let current = self.current(&mut index, key.as_str(), &mut gone);
            match current {
                Some(entry) if holds(Some(&entry), expect) => {
                    index.map.pop(key.as_str());
                    index.bytes -= entry.size(key.as_str());
                    gone.extend(files_of(&self.entries_dir(), &entry));
                    true
                }
                _ => false,
            }
        };
        self.delete_files(gone).await;
        Ok(removed)
    }

    async fn clear(&self) -> Result<(), StoreError> {
        let gone: Vec<PathBuf> = {
            let mut index = self.lock();
            let dir = self.entries_dir();
            let files = index
                .map
                .iter()
                .flat_map(|(_, e)| files_of(&dir, e))
                .collect();
            index.map.clear();
            index.bytes = 0;
            files
        };
        self.delete_files(gone).await;
        Ok(())
    }
}
