//! The proxy's store, from its `--store` values.

use super::ConfigError;
use crate::store::{AnyStore, FsStore, InvalidationBus, Layered, MemoryStore, Partitioned};

/// How large the proxy's stores may grow: `--max-bytes`, `--max-entry-bytes`, `--l1-bytes`.
#[derive(Clone, Copy, Debug)]
pub struct StoreSizes {
    /// Bytes the memory and file stores hold in all.
    pub max_bytes: u64,
    /// The largest entry a store takes (memory, file and Redis stores); `None` leaves each
    /// store's default (16 MiB in memory, an eighth of `max_bytes` on disk, 64 MiB in Redis).
    pub max_entry_bytes: Option<u64>,
    /// A memory L1 of this many bytes in front of the store.
    pub l1_bytes: Option<u64>,
}

impl StoreSizes {
    /// `max_bytes` in all, each store's default largest entry, no L1.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            max_entry_bytes: None,
            l1_bytes: None,
        }
    }
}

/// The proxy's store, from its `--store` values: `memory`, `fs:DIR` or `redis://HOST:PORT`
/// (with the `redis` feature); several spread the URLs over them ([`Partitioned`], each
/// named by its value); `sizes.l1_bytes` puts a memory L1 of that size in front
/// ([`Layered`], hearing the other nodes on the first Redis store's bus).
pub async fn open_store(specs: &[String], sizes: StoreSizes) -> Result<AnyStore, ConfigError> {
    let specs: Vec<&str> = if specs.is_empty() {
        vec!["memory"]
    } else {
        specs.iter().map(String::as_str).collect()
    };
    let mut stores = Vec::with_capacity(specs.len());
    let mut bus = None;
    for spec in &specs {
        let store = if *spec == "memory" {
            let mut memory = MemoryStore::builder().max_bytes(sizes.max_bytes);
            if let Some(max) = sizes.max_entry_bytes {
                memory = memory.max_entry_bytes(max);
            }
            AnyStore::new(memory.build())
        } else if let Some(dir) = spec.strip_prefix("fs:") {
            let mut fs = FsStore::builder().max_bytes(sizes.max_bytes);
            if let Some(max) = sizes.max_entry_bytes {
                fs = fs.max_entry_bytes(max);
            }
            let store = fs
                .open(dir)
                .await
                .map_err(|e| ConfigError::new(format!("--store {spec}: {e}")))?;
            AnyStore::new(store)
        } else if spec.starts_with("redis://") {
            let (store, its_bus) = open_redis(spec, sizes.max_entry_bytes).await?;
            bus.get_or_insert(its_bus);
            store
        } else {
            return Err(ConfigError::new(format!(
                "--store {spec}: expected memory, fs:DIR or redis://HOST:PORT"
            )));
        };
        stores.push((spec.to_string(), store));
    }
    let base = if stores.len() == 1 {
        stores.pop().map(|(_, s)| s).expect("one store")
    } else {
        AnyStore::new(
            Partitioned::new(stores).map_err(|e| ConfigError::new(format!("--store: {e}")))?,
        )
    };
    Ok(match sizes.l1_bytes {
        None => base,
        Some(bytes) => {
            let mut l1 = MemoryStore::builder().max_bytes(bytes);
            if let Some(max) = sizes.max_entry_bytes {
                l1 = l1.max_entry_bytes(max);
            }
            let l1 = l1.build();
            let layered = Layered::builder(l1, base);
            AnyStore::new(match bus {
                Some(bus) => layered.bus(bus).build(),
                None => layered.build(),
            })
        }
    })
}

#[cfg(feature = "redis")]
async fn open_redis(
    spec: &str,
    max_entry_bytes: Option<u64>,
) -> Result<(AnyStore, std::sync::Arc<dyn InvalidationBus>), ConfigError> {
    let mut redis = crate::store::RedisStore::builder();
    if let Some(max) = max_entry_bytes {
        redis = redis.max_entry_bytes(max);
    }
    // A node starts while Redis is down, and serves without it until it is up.
    let store = redis
        .connect_in_background(spec)
        .map_err(|e| ConfigError::new(format!("--store {spec}: {e}")))?;
    let bus = store.bus();
    Ok((AnyStore::new(store), bus))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(
    spec: &str,
    max_entry_bytes: Option<u64>,
) -> Result<(AnyStore, std::sync::Arc<dyn InvalidationBus>), ConfigError> {
    let _ = max_entry_bytes;
    Err(ConfigError::new(format!(
        "--store {spec}: built without Redis; build with the `redis` feature"
    )))
}
