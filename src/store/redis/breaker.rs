//! The circuit breaker of [`RedisStore`](super::RedisStore): calls fail at once while Redis
//! keeps failing.

use crate::store::StoreError;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

/// Fails calls at once while the backend keeps failing (see [`RedisStore`](super::RedisStore)).
#[derive(Debug)]
pub(super) struct Breaker {
    pub(super) failures: AtomicU32,
    /// Until when calls fail at once: milliseconds since `epoch`, 0 when closed.
    pub(super) open_until: AtomicU64,
    pub(super) epoch: Instant,
    pub(super) threshold: u32,
    pub(super) cooldown: Duration,
}

impl Breaker {
    pub(super) fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(super) fn check(&self) -> Result<(), StoreError> {
        let until = self.open_until.load(Ordering::Relaxed);
        if until != 0 && self.now() < until {
            return Err(StoreError::Unavailable);
        }
        Ok(())
    }

    pub(super) fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open_until.store(0, Ordering::Relaxed);
    }

    pub(super) fn failure(&self) {
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
