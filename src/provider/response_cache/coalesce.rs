//! Request coalescing: one fill per key at a time; the others wait for it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};
use tokio::sync::watch;

/// The keys being filled now.
#[derive(Debug, Default, Clone)]
pub(crate) struct Coalescer {
    in_flight: Arc<Mutex<HashMap<String, watch::Receiver<()>>>>,
}

/// Held by the one request filling a key. Dropping it (entry committed, abandoned, or not
/// storable) wakes every waiter.
#[derive(Debug)]
pub(crate) struct FillGuard {
    coalescer: Coalescer,
    key: String,
    _done: watch::Sender<()>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        self.coalescer.lock().remove(&self.key);
        // `_done` drops after this, which wakes the waiters.
    }
}

/// What [`Coalescer::join`] decided.
#[derive(Debug)]
pub(crate) enum Join {
    /// Nobody is filling this key: the caller fills it.
    Leader(FillGuard),
    /// Another request is filling it: wait on this.
    Follower(watch::Receiver<()>),
}

impl Coalescer {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<()>>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Becomes the filler of `key`, or gets a handle to wait for the current one.
    pub(crate) fn join(&self, key: &str) -> Join {
        let mut map = self.lock();
        if let Some(rx) = map.get(key) {
            return Join::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        map.insert(key.to_owned(), rx);
        Join::Leader(FillGuard {
            coalescer: self.clone(),
            key: key.to_owned(),
            _done: tx,
        })
    }

    /// Whether a fill of `key` is running.
    #[cfg(test)]
    pub(crate) fn is_filling(&self, key: &str) -> bool {
        self.lock().contains_key(key)
    }
}

/// Waits until the filler is done, or `timeout` passes. Returns whether it finished in time.
pub(crate) async fn wait(mut rx: watch::Receiver<()>, timeout: Duration) -> bool {
    // `changed` errs once the sender is dropped: that is the signal.
    tokio::time::timeout(timeout, async { while rx.changed().await.is_ok() {} })
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_and_followers_wake_when_it_finishes() {
        let c = Coalescer::default();
        let Join::Leader(guard) = c.join("k") else {
            panic!("first must lead")
        };
        let Join::Follower(rx) = c.join("k") else {
            panic!("second must follow")
        };
        assert!(c.is_filling("k"));
        let waiter = tokio::spawn(wait(rx, Duration::from_secs(5)));
        tokio::task::yield_now().await;
        drop(guard);
        assert!(waiter.await.unwrap(), "woken before the timeout");
        assert!(!c.is_filling("k"));
        assert!(matches!(c.join("k"), Join::Leader(_)));
    }

    #[tokio::test]
    async fn followers_time_out() {
        let c = Coalescer::default();
        let _guard = match c.join("k") {
            Join::Leader(g) => g,
            Join::Follower(_) => panic!("first must lead"),
        };
        let Join::Follower(rx) = c.join("k") else {
            panic!()
        };
        assert!(!wait(rx, Duration::from_millis(20)).await);
    }

    #[tokio::test]
    async fn keys_are_independent() {
        let c = Coalescer::default();
        let _a = c.join("a");
        assert!(matches!(c.join("b"), Join::Leader(_)));
    }
}
