//! [`RedisStoreBuilder`]: settings, and the first connection.

use super::breaker::Breaker;
use super::scripts::Scripts;
use super::Inner;
use super::RedisStore;
use crate::store::StoreError;
use redis::aio::ConnectionManager;
use redis::aio::ConnectionManagerConfig;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::Weak;
use std::time::Duration;
use std::time::Instant;

/// Builds a [`RedisStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    pub(super) prefix: String,
    pub(super) deadline: Duration,
    pub(super) connect_timeout: Duration,
    pub(super) max_entry_bytes: u64,
    pub(super) breaker_threshold: u32,
    pub(super) breaker_cooldown: Duration,
}

impl RedisStoreBuilder {
    /// The prefix of every key (letters, digits, `_`, `-`, `.` and `:`): what tells this
    /// cache's keys from others on the same server, and what [`Store::clear`](crate::store::Store::clear) removes.
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
    pub(super) fn open(
        self,
        url: &str,
    ) -> Result<(RedisStore, ConnectionManagerConfig), StoreError> {
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
pub(super) async fn connect_until_done(
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
