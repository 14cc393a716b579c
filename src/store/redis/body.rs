//! A body in Redis, read chunk by chunk, a bounded number of reads in flight.

use super::RedisStore;
use super::CHUNK;
use crate::store::BodyReader;
use crate::store::BodyStream;
use crate::store::StoreError;
use bytes::Bytes;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::task::Poll;

/// A body in Redis, read chunk by chunk (`GETRANGE` for the ends of a range).
#[derive(Debug)]
pub(super) struct RedisBody {
    pub(super) store: RedisStore,
    pub(super) chunks: String,
    pub(super) count: u64,
    pub(super) len: u64,
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
pub(super) const READ_AHEAD: usize = 2;

pub(super) type ChunkFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, StoreError>> + Send>>;

/// A chunk read: under way, or done and waiting for the ones before it.
pub(super) struct ChunkRead {
    /// The bytes it must bring.
    pub(super) want: u64,
    pub(super) future: ChunkFuture,
    pub(super) done: Option<Result<Vec<u8>, StoreError>>,
}

pub(super) struct RedisChunks {
    pub(super) store: RedisStore,
    pub(super) chunks: String,
    pub(super) count: u64,
    /// The first byte not asked for yet.
    pub(super) next: u64,
    pub(super) end: u64,
    /// The reads in flight, in body order.
    pub(super) reading: VecDeque<ChunkRead>,
}

impl RedisChunks {
    /// Asks for the part of the chunk at `self.next` up to `self.end`.
    pub(super) fn ask(&mut self) -> Result<(), StoreError> {
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
