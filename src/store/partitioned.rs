//! [`Partitioned`]: keys spread over several stores by rendezvous hashing on their URL.

use super::{Expect, GetResult, Key, Meta, Store, StoreError, Stored};
use std::{sync::Arc, time::Duration};

/// Several stores, each holding the entries of its share of the URLs: a key goes to the
/// partition whose weight for the key's URL ([`Key::url`]) is highest (rendezvous
/// hashing), so every record of one URL (its index and all its variants, of every user)
/// lives in one partition, and adding or removing a partition moves only the URLs that
/// go to or came from it.
///
/// Partitions are named (say, by their address): the weights come from the names, so
/// every node that lists the same partitions, in any order, routes every URL the same way.
/// A partition that fails fails its own keys only: the cache serves those without a store.
///
/// ```
/// use tower_etag::store::{MemoryStore, Partitioned};
///
/// let store = Partitioned::new([("a", MemoryStore::new()), ("b", MemoryStore::new())]).unwrap();
/// # let _ = store;
/// ```
#[derive(Debug)]
pub struct Partitioned<S> {
    parts: Arc<[(String, S)]>,
}

impl<S> Clone for Partitioned<S> {
    fn clone(&self) -> Self {
        Self {
            parts: Arc::clone(&self.parts),
        }
    }
}

/// The rendezvous weight of `url` for the partition `name`.
fn weight(name: &str, url: &str) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(name.len() as u64).to_be_bytes());
    hasher.update(name.as_bytes());
    hasher.update(url.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    u64::from_be_bytes(first)
}

impl<S: Store> Partitioned<S> {
    /// The partitions, each with its name. Fails on an empty list or two equal names.
    pub fn new(
        parts: impl IntoIterator<Item = (impl Into<String>, S)>,
    ) -> Result<Self, StoreError> {
        let parts: Vec<(String, S)> = parts.into_iter().map(|(n, s)| (n.into(), s)).collect();
        if parts.is_empty() {
            return Err(StoreError::backend(
                "a partitioned store needs at least one store",
            ));
        }
        for (i, (name, _)) in parts.iter().enumerate() {
            if parts[..i].iter().any(|(other, _)| other == name) {
                return Err(StoreError::backend(format!(
                    "two partitions named {name:?}"
                )));
            }
        }
        Ok(Self {
            parts: parts.into(),
        })
    }

    /// The partition of `key`.
    pub fn partition(&self, key: &Key) -> &S {
        let url = key.url();
        let (_, store) = self
            .parts
            .iter()
            .max_by_key(|(name, _)| weight(name, url))
            .expect("never empty");
        store
    }

    /// The name of the partition of `url`.
    pub fn partition_name(&self, url: &str) -> &str {
        let (name, _) = self
            .parts
            .iter()
            .max_by_key(|(name, _)| weight(name, url))
            .expect("never empty");
        name
    }
}

impl<S: Store> Store for Partitioned<S> {
    type Writer = S::Writer;

    fn get(
        &self,
        key: &Key,
    ) -> impl std::future::Future<Output = Result<Option<Stored>, StoreError>> + Send {
        self.partition(key).get(key)
    }

    /// Two keys of one URL live in one partition, which reads them together.
    async fn get_two(&self, first: &Key, second: &Key) -> (GetResult, GetResult) {
        let (one, other) = (self.partition(first), self.partition(second));
        if std::ptr::eq(one, other) {
            one.get_two(first, second).await
        } else {
            tokio::join!(one.get(first), other.get(second))
        }
    }

    fn writer(
        &self,
        key: &Key,
        meta: Meta,
        ttl: Duration,
        expect: Expect,
    ) -> impl std::future::Future<Output = Result<S::Writer, StoreError>> + Send {
        self.partition(key).writer(key, meta, ttl, expect)
    }

    fn max_entry_bytes(&self) -> Option<u64> {
        self.parts
            .iter()
            .filter_map(|(_, s)| s.max_entry_bytes())
            .min()
    }

    /// A URL's records all live in one partition: reading ahead pays where it is remote.
    fn remote_reads(&self) -> bool {
        self.parts.iter().any(|(_, s)| s.remote_reads())
    }

    fn update_meta(
        &self,
        key: &Key,
        expect: Expect,
        meta: Meta,
        ttl: Duration,
    ) -> impl std::future::Future<Output = Result<bool, StoreError>> + Send {
        self.partition(key).update_meta(key, expect, meta, ttl)
    }

    fn remove(
        &self,
        key: &Key,
        expect: Expect,
    ) -> impl std::future::Future<Output = Result<bool, StoreError>> + Send {
        self.partition(key).remove(key, expect)
    }

    /// Clears every partition; the first failure is returned, after all were tried.
    async fn clear(&self) -> Result<(), StoreError> {
        let mut first_error = None;
        for (_, store) in self.parts.iter() {
            if let Err(e) = store.clear().await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn every_record_of_a_url_goes_to_one_partition_and_order_does_not_matter() {
        let names = ["a", "b", "c"];
        let abc = Partitioned::new(names.map(|n| (n, MemoryStore::new()))).unwrap();
        let cba = Partitioned::new(names.iter().rev().map(|n| (*n, MemoryStore::new()))).unwrap();
        let mut seen = std::collections::HashMap::new();
        for i in 0..3000 {
            let url = format!("example.com/page/{i}");
            let p = abc.partition_name(&url);
            assert_eq!(p, cba.partition_name(&url), "order changes nothing");
            *seen.entry(p.to_owned()).or_insert(0) += 1;
        }
        // Spread roughly evenly (each near 1000).
        for n in names {
            let count = seen[n];
            assert!((800..1200).contains(&count), "{n}: {count}");
        }
        // Removing a partition moves only its own URLs.
        let ab = Partitioned::new([("a", MemoryStore::new()), ("b", MemoryStore::new())]).unwrap();
        for i in 0..3000 {
            let url = format!("example.com/page/{i}");
            let before = abc.partition_name(&url);
            if before != "c" {
                assert_eq!(ab.partition_name(&url), before);
            }
        }
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(Partitioned::<MemoryStore>::new(Vec::<(String, _)>::new()).is_err());
        assert!(Partitioned::new([("a", MemoryStore::new()), ("a", MemoryStore::new())]).is_err());
    }
}
