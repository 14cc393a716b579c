//! Where the response cache reads the time: the system's clock, or a [`ManualClock`] that
//! moves only when told (for tests of freshness and expiry without sleeping).
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use tower_etag::{clock::ManualClock, response_cache::ResponseCache, store::MemoryStore};
//!
//! let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
//! let cache = ResponseCache::builder(MemoryStore::new())
//!     .clock(clock.clone())
//!     .build();
//! // ... a response with `max-age=60` is stored, then:
//! clock.advance(Duration::from_secs(61)); // it is stale now, for this cache
//! # let _ = cache;
//! ```
//!
//! The clock decides what the response cache's RFC 9111 policy sees as now: request and
//! response times, ages, freshness, `stale-while-revalidate`, and `stale-if-error` on an
//! error status, and the deadline of the stale answer the middleware gives when the inner
//! service itself fails (it asks the provider: [`CacheProvider::now`](crate::CacheProvider::now)).
//! [`ConstLruProvider`](crate::ConstLruProvider) reads it too ([`Clock::instant`]: when its
//! entries were stored, and until when they answer a 304 alone). Not yet:
//! [`RefreshCache`](crate::refresh::RefreshCache)'s schedule. Stores keep their own real time
//! for their TTLs (an entry stays in the store for as long as its storage time says).

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// A source of the current time: [`Clock::system`] (the default) or a [`ManualClock`].
#[derive(Clone, Default)]
pub struct Clock(Option<ManualClock>);

impl Clock {
    /// The system's clock ([`SystemTime::now`]).
    pub fn system() -> Self {
        Self(None)
    }

    /// The time now.
    #[inline]
    pub fn now(&self) -> SystemTime {
        match &self.0 {
            None => SystemTime::now(),
            Some(manual) => manual.now(),
        }
    }

    /// The time now on a monotonic scale, for durations ([`Instant::now`]; a manual clock's
    /// instant moves as it does, and never reads before the clock was made).
    #[inline]
    pub fn instant(&self) -> Instant {
        match &self.0 {
            None => Instant::now(),
            Some(manual) => manual.instant(),
        }
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Clock::system()"),
            Some(manual) => manual.fmt(f),
        }
    }
}

impl From<ManualClock> for Clock {
    fn from(manual: ManualClock) -> Self {
        Self(Some(manual))
    }
}

/// A clock that stands still until it is moved. Clones share the time.
#[derive(Clone)]
pub struct ManualClock {
    /// Nanoseconds since the Unix epoch.
    nanos: Arc<AtomicU64>,
    /// The real instant the clock was made, and the nanoseconds it read then: its instants
    /// are that instant moved by as much as the clock has moved since.
    made: (Instant, u64),
}

impl ManualClock {
    /// A clock that reads `start` (a time before the Unix epoch reads as the epoch, one
    /// after the year 2554 as then).
    pub fn new(start: SystemTime) -> Self {
        let start = nanos_of(start);
        Self {
            nanos: Arc::new(AtomicU64::new(start)),
            made: (Instant::now(), start),
        }
    }

    /// The time it reads.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    /// The time it reads as an [`Instant`]: the instant it was made, plus how far it has
    /// moved since (an instant set before that reads as that instant).
    pub fn instant(&self) -> Instant {
        let (made, start) = self.made;
        let moved = self.nanos.load(Ordering::SeqCst).saturating_sub(start);
        made.checked_add(Duration::from_nanos(moved))
            .unwrap_or(made)
    }

    /// Moves it forward by `by` (saturating).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Sets it to `to` (forward or back).
    pub fn set(&self, to: SystemTime) {
        self.nanos.store(nanos_of(to), Ordering::SeqCst);
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now()).finish()
    }
}

fn nanos_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_share_it() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let manual = ManualClock::new(t0);
        let clock = Clock::from(manual.clone());
        assert_eq!(clock.now(), t0);
        manual.advance(Duration::from_secs(61));
        assert_eq!(clock.now(), t0 + Duration::from_secs(61));
        manual.set(t0);
        assert_eq!(clock.now(), t0);
        manual.advance(Duration::MAX);
        assert_eq!(
            manual.now(),
            UNIX_EPOCH + Duration::from_nanos(u64::MAX),
            "saturates"
        );
        assert_eq!(
            ManualClock::new(UNIX_EPOCH - Duration::from_secs(1)).now(),
            UNIX_EPOCH
        );
    }

    #[test]
    fn a_manual_clocks_instants_move_with_it_and_not_with_real_time() {
        let manual = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let clock = Clock::from(manual.clone());
        let first = clock.instant();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(clock.instant(), first, "real time does not move it");
        manual.advance(Duration::from_secs(5));
        assert_eq!(clock.instant() - first, Duration::from_secs(5));
        manual.set(UNIX_EPOCH);
        assert_eq!(clock.instant(), first, "never before it was made");
    }

    #[test]
    fn the_system_clock_is_the_systems() {
        let before = SystemTime::now();
        let now = Clock::system().now();
        assert!(now >= before && now <= SystemTime::now());
    }
}
