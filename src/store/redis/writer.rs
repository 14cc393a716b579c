//! [`RedisWriter`]: an entry written chunk by chunk, then committed by a script; and what
//! it has written so far, for readers of a fill.

use super::body::RedisBody;
use super::expect_args;
use super::new_version;
use super::ttl_ms;
use super::Place;
use super::RedisStore;
use super::CHUNK;
use super::REPLACED_GRACE;
use crate::store::Expect;
use crate::store::Meta;
use crate::store::StoreError;
use crate::store::StoreWriter;
use crate::store::{BodyReader as _, BodyStream};
use bytes::Bytes;
use bytes::BytesMut;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Writes one entry of a [`RedisStore`]: chunks as they fill, then the commit script.
/// Dropped without commit, its chunks are removed in the background (and expire anyway).
pub struct RedisWriter {
    pub(super) store: RedisStore,
    pub(super) place: Place,
    pub(super) key: Box<str>,
    pub(super) meta: Meta,
    pub(super) ttl: Duration,
    pub(super) expect: Expect,
    pub(super) bver: u64,
    pub(super) buffer: BytesMut,
    pub(super) chunks: u64,
    pub(super) len: u64,
    pub(super) done: bool,
    /// Bytes in chunks written so far, for the fill's followers.
    pub(super) flushed: Arc<AtomicU64>,
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
    pub(super) fn chunk_key(&self, i: u64) -> String {
        format!("{}{}:{i}", self.place.chunks, self.bver)
    }

    pub(super) async fn flush_chunk(&mut self, all: bool) -> Result<(), StoreError> {
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

    fn partial(&self) -> Option<Arc<dyn crate::store::PartialReader>> {
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
pub(super) struct RedisPartial {
    pub(super) store: RedisStore,
    pub(super) chunks: String,
    pub(super) flushed: Arc<AtomicU64>,
}

impl crate::store::PartialReader for RedisPartial {
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
