//! Request coalescing: one fill per key at a time; the others wait for it, as long as waiting
//! is likely to pay off.
//!
//! A follower waits until the fill is done (stored, abandoned, or known not to be stored),
//! at most the coalesce timeout. Once the fill's head has come and its body is streaming
//! into a store that can be read while it is written, followers read it from there at once
//! ([`Tap`]). Otherwise they wait only [`STREAM_PATIENCE`] more: never the whole timeout behind a live
//! stream, nor behind a client that reads a large body slowly. A fill whose response will not be stored marks its key *hit-for-miss* for
//! [`HIT_FOR_MISS`] (as Varnish does): requests for it then go on at once instead of being
//! serialised behind each other.

use super::tap::Tap;
use crate::sync::lock;
use lru::LruCache;
use std::{
    collections::HashMap,
    num::NonZeroUsize,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::watch;

/// How long a key stays hit-for-miss (Varnish's default for uncacheable responses).
pub(crate) const HIT_FOR_MISS: Duration = Duration::from_secs(120);

/// How long followers still wait once the fill's head has come and its body streams: most
/// bodies are done within it; a live stream, or a slow reader of a large body, is not waited
/// for.
pub(crate) const STREAM_PATIENCE: Duration = Duration::from_millis(500);

/// The most keys remembered as hit-for-miss (the least recently marked are forgotten).
const HIT_FOR_MISS_KEYS: usize = 16 * 1024;

/// Where a fill is: followers watch it.
#[derive(Clone, Debug)]
enum Progress {
    /// At the origin.
    Filling,
    /// Its head has come; its body is streaming to the store, readable through the tap
    /// when there is one.
    Streaming(Option<Arc<Tap>>),
}

#[derive(Debug)]
struct Inner {
    in_flight: Mutex<HashMap<String, watch::Receiver<Progress>>>,
    hit_for_miss: Mutex<LruCache<String, Instant>>,
}

/// The keys being filled now, and the keys not worth coalescing.
#[derive(Debug, Clone)]
pub(crate) struct Coalescer {
    inner: Arc<Inner>,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                in_flight: Mutex::new(HashMap::new()),
                hit_for_miss: Mutex::new(LruCache::new(
                    NonZeroUsize::new(HIT_FOR_MISS_KEYS).expect("non-zero"),
                )),
            }),
        }
    }
}

/// Held by the one request filling a key. Dropping it (entry committed, abandoned, or not
/// storable) wakes every waiter.
#[derive(Debug)]
pub(crate) struct FillGuard {
    coalescer: Coalescer,
    key: String,
    /// Other keys requests for what this fill stores look up (its variant's, once known).
    aliases: Vec<String>,
    progress: watch::Sender<Progress>,
}

impl FillGuard {
    /// The fill's head has come and its body streams: followers read it through `tap`, or
    /// (without one) stop waiting soon.
    pub(crate) fn streaming(&self, tap: Option<Arc<Tap>>) {
        self.progress.send_replace(Progress::Streaming(tap));
    }

    /// Requests that look `key` up from now on follow this fill too (unless another fill
    /// of it runs already).
    pub(crate) fn also(&mut self, key: &str) {
        if key == self.key {
            return;
        }
        let mut map = lock(&self.coalescer.inner.in_flight);
        if !map.contains_key(key) {
            map.insert(key.to_owned(), self.progress.subscribe());
            self.aliases.push(key.to_owned());
        }
    }

    /// The fill's response will not be stored: release the waiters now, and let requests
    /// for the key go on without waiting for a while.
    pub(crate) fn not_stored(self) {
        self.coalescer.mark_hit_for_miss(&self.key);
    }
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        let mut map = lock(&self.coalescer.inner.in_flight);
        map.remove(&self.key);
        for alias in &self.aliases {
            map.remove(alias);
        }
        // The sender drops after this, which wakes the waiters.
    }
}

/// What [`Coalescer::join`] decided.
#[derive(Debug)]
pub(crate) enum Join {
    /// Nobody is filling this key: the caller fills it.
    Leader(FillGuard),
    /// Another request is filling it: wait on this.
    Follower(Waiter),
    /// The key is hit-for-miss: go on without coalescing.
    Alone,
}

/// A follower's handle on a fill.
#[derive(Debug)]
pub(crate) struct Waiter(watch::Receiver<Progress>);

impl Coalescer {
    /// Becomes the filler of `key`, or gets a handle to wait for the current one.
    pub(crate) fn join(&self, key: &str) -> Join {
        if self.is_hit_for_miss(key) {
            return Join::Alone;
        }
        let mut map = lock(&self.inner.in_flight);
        if let Some(rx) = map.get(key) {
            return Join::Follower(Waiter(rx.clone()));
        }
        let (tx, rx) = watch::channel(Progress::Filling);
        map.insert(key.to_owned(), rx);
        Join::Leader(FillGuard {
            coalescer: self.clone(),
            key: key.to_owned(),
            aliases: Vec::new(),
            progress: tx,
        })
    }

    /// A handle to wait for the fill of `key` running now, if there is one; never becomes
    /// the filler (for a request whose own answer may fill nothing for the others).
    pub(crate) fn follow(&self, key: &str) -> Option<Waiter> {
        if self.is_hit_for_miss(key) {
            return None;
        }
        lock(&self.inner.in_flight)
            .get(key)
            .map(|rx| Waiter(rx.clone()))
    }

    /// Whether a fill of `key` is running in this process.
    #[cfg(test)]
    pub(crate) fn is_filling(&self, key: &str) -> bool {
        lock(&self.inner.in_flight).contains_key(key)
    }

    fn mark_hit_for_miss(&self, key: &str) {
        lock(&self.inner.hit_for_miss).put(key.to_owned(), Instant::now() + HIT_FOR_MISS);
    }

    fn is_hit_for_miss(&self, key: &str) -> bool {
        let mut marks = lock(&self.inner.hit_for_miss);
        match marks.peek(key) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                marks.pop(key);
                false
            }
            None => false,
        }
    }
}

/// How a follower's wait ended.
#[derive(Debug)]
pub(crate) enum Waited {
    /// The fill is over (stored, or not).
    Done,
    /// It took too long.
    TimedOut,
    /// Its body streams through this tap: read it from there.
    Tap(Arc<Tap>),
}

impl Waiter {
    /// Waits until the fill is done, at most `timeout`, and at most [`STREAM_PATIENCE`] once
    /// the fill's body streams; returns at once with a tap the fill offers.
    pub(crate) async fn wait(mut self, timeout: Duration) -> Waited {
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or(now + HIT_FOR_MISS * 1000);
        let mut streaming_since: Option<tokio::time::Instant> = None;
        loop {
            let until = match streaming_since {
                Some(t) => deadline.min(t + STREAM_PATIENCE),
                None => deadline,
            };
            match tokio::time::timeout_at(until, self.0.changed()).await {
                // The sender is gone: the fill is over.
                Ok(Err(_)) => return Waited::Done,
                Ok(Ok(())) => match &*self.0.borrow_and_update() {
                    Progress::Streaming(Some(tap)) => return Waited::Tap(Arc::clone(tap)),
                    Progress::Streaming(None) if streaming_since.is_none() => {
                        streaming_since = Some(tokio::time::Instant::now());
                    }
                    _ => {}
                },
                Err(_) => return Waited::TimedOut,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader(c: &Coalescer, key: &str) -> FillGuard {
        match c.join(key) {
            Join::Leader(g) => g,
            other => panic!("expected to lead: {other:?}"),
        }
    }

    fn follower(c: &Coalescer, key: &str) -> Waiter {
        match c.join(key) {
            Join::Follower(w) => w,
            other => panic!("expected to follow: {other:?}"),
        }
    }

    #[test]
    fn following_never_leads() {
        let c = Coalescer::default();
        assert!(c.follow("k").is_none(), "nothing to follow");
        assert!(!c.is_filling("k"), "and no fill started for it");
        let guard = leader(&c, "k");
        assert!(c.follow("k").is_some());
        drop(guard);
        assert!(c.follow("k").is_none());
    }

    #[tokio::test]
    async fn one_leader_and_followers_wake_when_it_finishes() {
        let c = Coalescer::default();
        let guard = leader(&c, "k");
        let w = follower(&c, "k");
        assert!(c.is_filling("k"));
        let waiter = tokio::spawn(w.wait(Duration::from_secs(5)));
        tokio::task::yield_now().await;
        drop(guard);
        assert!(
            matches!(waiter.await.unwrap(), Waited::Done),
            "woken before the timeout"
        );
        assert!(!c.is_filling("k"));
        leader(&c, "k");
    }

    #[tokio::test]
    async fn followers_time_out() {
        let c = Coalescer::default();
        let _guard = leader(&c, "k");
        let w = follower(&c, "k");
        assert!(matches!(
            w.wait(Duration::from_millis(20)).await,
            Waited::TimedOut
        ));
    }

    #[tokio::test]
    async fn followers_do_not_wait_out_the_timeout_behind_a_stream() {
        let c = Coalescer::default();
        let guard = leader(&c, "k");
        let w = follower(&c, "k");
        let start = tokio::time::Instant::now();
        let waiting = tokio::spawn(w.wait(Duration::from_secs(10)));
        tokio::task::yield_now().await;
        guard.streaming(None);
        assert!(
            matches!(waiting.await.unwrap(), Waited::TimedOut),
            "the stream never ended"
        );
        let waited = start.elapsed();
        assert!(
            waited >= STREAM_PATIENCE && waited < Duration::from_secs(1),
            "{waited:?}"
        );
        drop(guard);
    }

    #[tokio::test]
    async fn a_fill_not_stored_releases_waiters_and_stops_coalescing() {
        let c = Coalescer::default();
        let guard = leader(&c, "k");
        let w = follower(&c, "k");
        guard.not_stored();
        assert!(matches!(w.wait(Duration::from_secs(5)).await, Waited::Done));
        assert!(matches!(c.join("k"), Join::Alone));
        assert!(matches!(c.join("other"), Join::Leader(_)));
    }

    #[test]
    fn keys_are_independent() {
        let c = Coalescer::default();
        let _a = c.join("a");
        assert!(matches!(c.join("b"), Join::Leader(_)));
    }
}
