//! [`RefreshCache`]: the latest good value of a set of registered URLs, kept fresh in the
//! background (what lestrrat-go/httprc does for JWKS and remote configuration).
//!
//! It is built on the client cache, not beside it: every fetch goes through a
//! [`ResponseCache`] layered over the HTTP client, with `Cache-Control: no-cache`, so a
//! refresh is a revalidation with the stored `ETag` / `Last-Modified` (an origin that did
//! not change answers `304`, and the transform still gets the whole stored body), and the
//! schedule comes from the same RFC 9111 policy: the response's freshness lifetime
//! (`max-age`, `Expires`, a heuristic) as the cache reads it (its mode, its host policies),
//! clamped between the registration's bounds.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use std::time::Duration;
//! use tower_etag::{
//!     refresh::{RefreshCache, RefreshOptions},
//!     response_cache::ResponseCache,
//!     store::MemoryStore,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # let origin = tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
//! #     Ok::<_, std::convert::Infallible>(
//! #         http::Response::builder()
//! #             .header("cache-control", "max-age=300")
//! #             .body(Full::new(Bytes::from_static(b"{\"keys\":[]}")))
//! #             .unwrap(),
//! #     )
//! # });
//! // `origin` is the HTTP client: hyper-util's `Client`, or any tower HTTP service.
//! let cache = ResponseCache::builder(MemoryStore::new()).client().build();
//! let keys: RefreshCache<String> = RefreshCache::builder(origin, &cache)
//!     .on_error(|url, error| eprintln!("refreshing {url} failed: {error}"))
//!     .build();
//! let url = "https://idp.example/.well-known/jwks.json";
//! keys.register(
//!     url,
//!     RefreshOptions::new(|_head, body| Ok(String::from_utf8(body.to_vec())?))
//!         .min_interval(Duration::from_secs(60))
//!         .max_interval(Duration::from_secs(3600)),
//! )?;
//! let jwks = keys.get(url).await?; // waits for the first fetch only
//! assert_eq!(*jwks, "{\"keys\":[]}");
//! # Ok(()) }
//! ```
//!
//! - `get` returns the latest good value at once; only the first fetch of a URL is waited
//!   for. A fetch that fails (the client's error, a status other than `2xx`, a body over
//!   the limit, the transform's error) keeps the last good value and goes to the error sink;
//!   the URL is tried again after its minimum interval.
//! - Bounded: at most [`RefreshCacheBuilder::max_concurrency`] fetches at once, each within
//!   [`RefreshCacheBuilder::timeout`] and [`RefreshCacheBuilder::max_body_bytes`]; one task
//!   per registered URL, sleeping between fetches.
//! - A refresh asks with `no-cache`, so the cache never stands a stale entry in for an
//!   origin that fails (a request's `no-cache` turns `stale-if-error` off, RFC 9111
//!   §5.2.1.4 with RFC 5861 §4): a failing origin is a failed fetch, reported. A host policy
//!   that ignores requests' `no-cache` would make refreshes reuse fresh entries: do not set
//!   it for the hosts of registered URLs.
//! - A transform or an error sink that panics fails that fetch only.
//! - It stops when the last clone is dropped, or when the future given to
//!   [`RefreshCacheBuilder::stop_when`] completes (a `CancellationToken`'s
//!   `cancelled_owned()`): every task ends, no fetch starts after.

use crate::sync::lock;
use crate::{body::BoxError, response_cache::ResponseCache, store::Store};
use bytes::Bytes;
use http::{header::CACHE_CONTROL, request, response, HeaderValue, Request, Response, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};
use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};
use tokio::{
    sync::{watch, Notify, Semaphore},
    time::Instant,
};
use tower_layer::Layer;
use tower_service::Service;

/// The default bound on fetches at once: 4.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// The default largest body read: 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;
/// The default time a fetch may take: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default shortest time between fetches of a URL: 15 minutes.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// The default longest time between fetches of a URL: 24 hours.
pub const DEFAULT_MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// When a URL is fetched again after a fetch whose response stays fresh for `fresh_for`:
/// then, but no sooner than `min` and no later than `max` (a `max` below `min` is `min`).
/// A response without freshness (`fresh_for` zero), and a failed fetch, wait `min`.
pub fn next_refresh(fresh_for: Duration, min: Duration, max: Duration) -> Duration {
    fresh_for.clamp(min, max.max(min))
}

type Transform<T> = Arc<dyn Fn(&response::Parts, &Bytes) -> Result<T, BoxError> + Send + Sync>;
/// How long a response stays fresh, by the cache's own policy.
type FreshFor = Arc<
    dyn Fn(&request::Parts, &response::Parts, (SystemTime, SystemTime)) -> Duration + Send + Sync,
>;
type ErrorSink = Arc<dyn Fn(&Uri, &RefreshError) + Send + Sync>;
type Fetched = Result<(response::Parts, Bytes), RefreshError>;
/// A fetch through the cache: the request, and the most body bytes to read.
type Fetch = Arc<
    dyn Fn(Request<Full<Bytes>>, usize) -> Pin<Box<dyn Future<Output = Fetched> + Send>>
        + Send
        + Sync,
>;

/// How one registered URL is refreshed, and what it becomes: [`RefreshCache::register`].
pub struct RefreshOptions<T> {
    transform: Transform<T>,
    min_interval: Duration,
    max_interval: Duration,
}

impl<T> Clone for RefreshOptions<T> {
    fn clone(&self) -> Self {
        Self {
            transform: Arc::clone(&self.transform),
            min_interval: self.min_interval,
            max_interval: self.max_interval,
        }
    }
}

impl<T> fmt::Debug for RefreshOptions<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshOptions")
            .field("min_interval", &self.min_interval)
            .field("max_interval", &self.max_interval)
            .finish()
    }
}

impl<T> RefreshOptions<T> {
    /// Options whose value is made from each good response by `transform` (its head and
    /// its whole body; an error keeps the last good value). Intervals:
    /// [`DEFAULT_MIN_INTERVAL`] and [`DEFAULT_MAX_INTERVAL`].
    pub fn new<F>(transform: F) -> Self
    where
        F: Fn(&response::Parts, &Bytes) -> Result<T, BoxError> + Send + Sync + 'static,
    {
        Self {
            transform: Arc::new(transform),
            min_interval: DEFAULT_MIN_INTERVAL,
            max_interval: DEFAULT_MAX_INTERVAL,
        }
    }

    /// The shortest time between two fetches, whatever the response says (at least
    /// 1 ms).
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The longest time between two fetches, however long the response stays fresh.
    pub fn max_interval(mut self, interval: Duration) -> Self {
        self.max_interval = interval;
        self
    }
}

/// Why a value could not be had.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RefreshError {
    /// The URL was not registered (or is not an absolute `http`/`https` URL).
    NotRegistered,
    /// The refresh cache was stopped before a value came.
    Stopped,
    /// The fetch failed: the client's error, a status other than `2xx`, a body over the
    /// limit, a timeout, or the transform's error.
    Fetch(Arc<dyn std::error::Error + Send + Sync>),
}

impl RefreshError {
    fn fetch(e: impl Into<BoxError>) -> Self {
        Self::Fetch(Arc::from(e.into()))
    }
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRegistered => f.write_str("the URL is not registered"),
            Self::Stopped => f.write_str("the refresh cache stopped"),
            Self::Fetch(e) => write!(f, "fetching failed: {e}"),
        }
    }
}

impl std::error::Error for RefreshError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Fetch(e) => Some(&**e),
            _ => None,
        }
    }
}

/// What a URL has: nothing yet, a good value, or (before any good value) an error.
enum State<T> {
    Pending,
    Ready(Arc<T>),
    Failed(RefreshError),
}

/// One registered URL.
struct Entry<T> {
    url: Uri,
    options: RefreshOptions<T>,
    state: watch::Sender<State<T>>,
    /// When its task fetches it next.
    next_at: Mutex<Instant>,
    /// Wakes its task when `next_at` changed (an on-demand refresh).
    rescheduled: Notify,
}

impl<T> Entry<T> {
    /// No longer registered: its task ends, and whoever waits for its first value learns.
    fn retire(&self) {
        self.state.send_if_modified(|state| {
            let pending = matches!(state, State::Pending);
            if pending {
                *state = State::Failed(RefreshError::NotRegistered);
            }
            pending
        });
        self.rescheduled.notify_one();
    }
}

/// What the tasks share; never the stop switch, so dropping the last [`RefreshCache`]
/// stops them.
struct Core<T> {
    fetch: Fetch,
    fresh_for: FreshFor,
    max_body_bytes: usize,
    entries: Mutex<HashMap<Uri, Arc<Entry<T>>>>,
    fetching: Arc<Semaphore>,
    timeout: Duration,
    on_error: Option<ErrorSink>,
}

struct Inner<T> {
    core: Arc<Core<T>>,
    /// `true` (or dropped) stops every task.
    stop: watch::Sender<bool>,
    /// [`RefreshCacheBuilder::stop_when`]'s future, until the first registration (inside a
    /// runtime) watches it.
    stop_when: Mutex<Option<StopWhen>>,
}

type StopWhen = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The latest good value of each registered URL, refreshed in the background: see the
/// [module docs](self). Clones share everything; dropping the last one stops it.
pub struct RefreshCache<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for RefreshCache<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> fmt::Debug for RefreshCache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls = lock(&self.inner.core.entries).len();
        f.debug_struct("RefreshCache")
            .field("urls", &urls)
            .field("timeout", &self.inner.core.timeout)
            .finish()
    }
}

/// Builds a [`RefreshCache`].
#[must_use]
pub struct RefreshCacheBuilder<T> {
    fetch: Fetch,
    fresh_for: FreshFor,
    max_body_bytes: usize,
    max_concurrency: usize,
    timeout: Duration,
    on_error: Option<ErrorSink>,
    stop_when: Option<StopWhen>,
    _value: std::marker::PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for RefreshCacheBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshCacheBuilder")
            .field("max_concurrency", &self.max_concurrency)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<T: Send + Sync + 'static> RefreshCache<T> {
    /// A builder for a refresh cache that fetches through `client` (hyper-util's `Client`,
    /// any tower HTTP client service) behind `cache` (build it with
    /// [`client`](crate::response_cache::ResponseCacheBuilder::client); its store keeps
    /// what revalidations need, and may be shared with other uses of the cache).
    pub fn builder<S, St, B>(client: S, cache: &ResponseCache<St>) -> RefreshCacheBuilder<T>
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        St: Store,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError> + Send,
    {
        let service = cache.layer().layer(client);
        let policy = cache.clone();
        let fresh_for: FreshFor =
            Arc::new(move |request, response, times| policy.fresh_for(request, response, times));
        let fetch: Fetch = Arc::new(move |request, max_body_bytes| {
            let mut service = service.clone();
            Box::pin(async move {
                std::future::poll_fn(|cx| service.poll_ready(cx))
                    .await
                    .map_err(RefreshError::fetch)?;
                let response = service.call(request).await.map_err(RefreshError::fetch)?;
                let (parts, body) = response.into_parts();
                // Read no more than the limit, however long the body says it is.
                let body = Limited::new(body, max_body_bytes)
                    .collect()
                    .await
                    .map_err(RefreshError::fetch)?;
                Ok((parts, body.to_bytes()))
            })
        });
        RefreshCacheBuilder {
            fetch,
            fresh_for,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
            on_error: None,
            stop_when: None,
            _value: std::marker::PhantomData,
        }
    }

    /// Registers `url` (an absolute `http` or `https` URL) and starts keeping its value: the
    /// first fetch starts now. Registering a URL again replaces its options (and fetches it
    /// again now). Fails for a URL that is not absolute, or outside a tokio runtime.
    pub fn register(&self, url: &str, options: RefreshOptions<T>) -> Result<(), BoxError> {
        let url: Uri = url.parse()?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.authority().is_none() {
            return Err(format!("{url}: not an absolute http(s) URL").into());
        }
        let runtime = tokio::runtime::Handle::try_current()?;
        if let Some(when) = lock(&self.inner.stop_when).take() {
            // Holds no clone: the refresh cache still stops when the last one is dropped,
            // and so does this task.
            let weak = Arc::downgrade(&self.inner);
            let mut stopped = self.inner.stop.subscribe();
            runtime.spawn(async move {
                tokio::select! {
                    () = when => {
                        if let Some(inner) = weak.upgrade() {
                            inner.stop.send_replace(true);
                        }
                    }
                    _ = stopped.wait_for(|stopped| *stopped) => {}
                }
            });
        }
        let (state, _) = watch::channel(State::Pending);
        let entry = Arc::new(Entry {
            url: url.clone(),
            options,
            state,
            next_at: Mutex::new(Instant::now()),
            rescheduled: Notify::new(),
        });
        let replaced = lock(&self.inner.core.entries).insert(url, Arc::clone(&entry));
        if let Some(old) = replaced {
            old.retire();
        }
        let core = Arc::clone(&self.inner.core);
        let stop = self.inner.stop.subscribe();
        runtime.spawn(keep_fresh(core, entry, stop));
        Ok(())
    }

    /// Stops keeping `url`; returns whether it was registered.
    pub fn unregister(&self, url: &str) -> bool {
        let Ok(url) = url.parse::<Uri>() else {
            return false;
        };
        let removed = lock(&self.inner.core.entries).remove(&url);
        if let Some(entry) = &removed {
            entry.retire();
        }
        removed.is_some()
    }

    /// The latest good value of `url`; waits only while its first fetch runs. Before any
    /// good value, the last fetch's error (the URL is tried again after its minimum
    /// interval); [`RefreshError::NotRegistered`] if it is unregistered meanwhile.
    pub async fn get(&self, url: &str) -> Result<Arc<T>, RefreshError> {
        let entry = self.entry(url)?;
        let mut state = entry.state.subscribe();
        let mut stop = self.inner.stop.subscribe();
        loop {
            match &*state.borrow_and_update() {
                State::Ready(value) => return Ok(Arc::clone(value)),
                State::Failed(e) => return Err(e.clone()),
                State::Pending => {}
            }
            tokio::select! {
                changed = state.changed() => changed.map_err(|_| RefreshError::Stopped)?,
                _ = stop.wait_for(|stopped| *stopped) => return Err(RefreshError::Stopped),
            }
        }
    }

    /// Fetches `url` now (revalidating what the cache holds) and returns its value: the new
    /// one, or the error (the last good value stays for [`get`](Self::get)). Its schedule
    /// starts again from this fetch.
    pub async fn refresh(&self, url: &str) -> Result<Arc<T>, RefreshError> {
        let entry = self.entry(url)?;
        if *self.inner.stop.borrow() {
            return Err(RefreshError::Stopped);
        }
        let result = self.inner.core.fetch_now(&entry).await;
        entry.rescheduled.notify_one();
        result
    }

    /// Stops every task: no fetch starts after, `get` of a URL without a value fails.
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
    }

    fn entry(&self, url: &str) -> Result<Arc<Entry<T>>, RefreshError> {
        let url: Uri = url.parse().map_err(|_| RefreshError::NotRegistered)?;
        lock(&self.inner.core.entries)
            .get(&url)
            .cloned()
            .ok_or(RefreshError::NotRegistered)
    }
}

impl<T: Send + Sync + 'static> RefreshCacheBuilder<T> {
    /// The most fetches at once, over all URLs (default [`DEFAULT_MAX_CONCURRENCY`], at
    /// least 1); the others wait their turn.
    pub fn max_concurrency(mut self, max: usize) -> Self {
        self.max_concurrency = max.max(1);
        self
    }

    /// How long one fetch may take, body included (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest body read (default [`DEFAULT_MAX_BODY_BYTES`]): a longer one fails the
    /// fetch, having read no more than that.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// Where failed fetches are reported (the URL and why); the last good value stays.
    pub fn on_error<F>(mut self, sink: F) -> Self
    where
        F: Fn(&Uri, &RefreshError) + Send + Sync + 'static,
    {
        self.on_error = Some(Arc::new(sink));
        self
    }

    /// Stops the refresh cache when `stop` completes (for example
    /// `token.cancelled_owned()` of a `tokio_util::sync::CancellationToken`).
    pub fn stop_when(mut self, stop: impl Future<Output = ()> + Send + 'static) -> Self {
        self.stop_when = Some(Box::pin(stop));
        self
    }

    /// The refresh cache.
    pub fn build(self) -> RefreshCache<T> {
        let (stop, _) = watch::channel(false);
        RefreshCache {
            inner: Arc::new(Inner {
                core: Arc::new(Core {
                    fetch: self.fetch,
                    fresh_for: self.fresh_for,
                    max_body_bytes: self.max_body_bytes,
                    entries: Mutex::default(),
                    fetching: Arc::new(Semaphore::new(self.max_concurrency)),
                    timeout: self.timeout,
                    on_error: self.on_error,
                }),
                stop,
                stop_when: Mutex::new(self.stop_when),
            }),
        }
    }
}

impl<T: Send + Sync + 'static> Core<T> {
    /// One fetch of `entry`, within the concurrency bound and the timeout: its new value, or
    /// the error (reported; the last good value stays). Schedules the next one.
    async fn fetch_now(&self, entry: &Entry<T>) -> Result<Arc<T>, RefreshError> {
        let result = match Arc::clone(&self.fetching).acquire_owned().await {
            Ok(_permit) => tokio::time::timeout(self.timeout, self.fetch_once(entry))
                .await
                .unwrap_or_else(|_| Err(RefreshError::fetch("the fetch timed out"))),
            Err(_) => Err(RefreshError::Stopped),
        };
        let options = &entry.options;
        let wait = match &result {
            Ok((_, fresh_for)) => {
                next_refresh(*fresh_for, options.min_interval, options.max_interval)
            }
            Err(_) => options.min_interval,
        };
        *lock(&entry.next_at) = after(wait);
        match result {
            Ok((value, _)) => {
                entry.state.send_replace(State::Ready(Arc::clone(&value)));
                Ok(value)
            }
            Err(e) => {
                if let Some(sink) = &self.on_error {
                    // A sink that panics must not take the URL's task with it.
                    let report = std::panic::AssertUnwindSafe(|| sink(&entry.url, &e));
                    let _ = std::panic::catch_unwind(report);
                }
                entry.state.send_if_modified(|state| {
                    // A good value is kept; before one, waiters learn of the failure.
                    if matches!(state, State::Ready(_)) {
                        return false;
                    }
                    *state = State::Failed(e.clone());
                    true
                });
                Err(e)
            }
        }
    }

    /// Fetches `entry` through the cache, revalidating what it holds: its value and how
    /// long the response stays fresh.
    async fn fetch_once(&self, entry: &Entry<T>) -> Result<(Arc<T>, Duration), RefreshError> {
        let request = || {
            let mut request = Request::get(entry.url.clone()).body(Full::default())?;
            // RFC 9111 §5.2.1.4: the cache may not answer from what it holds without asking
            // the origin; it asks with the stored validators.
            request
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            Ok::<_, http::Error>(request)
        };
        let (request_parts, _) = request().map_err(RefreshError::fetch)?.into_parts();
        let request_time = SystemTime::now();
        let sent = request().map_err(RefreshError::fetch)?;
        let (parts, body) = (self.fetch)(sent, self.max_body_bytes).await?;
        if !parts.status.is_success() {
            let status = parts.status;
            return Err(RefreshError::fetch(format!("the origin answered {status}")));
        }
        let transform = std::panic::AssertUnwindSafe(|| (entry.options.transform)(&parts, &body));
        let value = std::panic::catch_unwind(transform)
            .map_err(|_| RefreshError::fetch("the transform panicked"))?
            .map_err(RefreshError::fetch)?;
        // The schedule is the response's freshness by the cache's own policy.
        let now = SystemTime::now();
        let fresh_for = (self.fresh_for)(&request_parts, &parts, (request_time, now));
        Ok((Arc::new(value), fresh_for))
    }
}

/// A registered URL's task: fetches it when due, until it is unregistered or replaced, or
/// the refresh cache stops.
async fn keep_fresh<T: Send + Sync + 'static>(
    core: Arc<Core<T>>,
    entry: Arc<Entry<T>>,
    mut stop: watch::Receiver<bool>,
) {
    let registered = |core: &Core<T>| {
        lock(&core.entries)
            .get(&entry.url)
            .is_some_and(|current| Arc::ptr_eq(current, &entry))
    };
    loop {
        if !registered(&core) {
            return;
        }
        let next = *lock(&entry.next_at);
        let due = tokio::select! {
            () = tokio::time::sleep_until(next) => true,
            () = entry.rescheduled.notified() => false,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        // An on-demand refresh may have moved the time on while this one slept.
        if due && Instant::now() >= *lock(&entry.next_at) && registered(&core) {
            tokio::select! {
                _ = core.fetch_now(&entry) => {}
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
        }
    }
}

/// `wait` from now, or as far as the clock goes (an interval of `Duration::MAX` means
/// "never", not a panic).
fn after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_next_refresh_is_the_freshness_clamped_between_the_bounds() {
        assert_eq!(
            next_refresh(S(300), S(60), S(3600)),
            S(300),
            "within: as the response says"
        );
        assert_eq!(
            next_refresh(S(5), S(60), S(3600)),
            S(60),
            "too soon: the minimum"
        );
        assert_eq!(
            next_refresh(S(86_400), S(60), S(3600)),
            S(3600),
            "too late: the maximum"
        );
        assert_eq!(
            next_refresh(S(0), S(60), S(3600)),
            S(60),
            "no freshness: the minimum"
        );
        assert_eq!(
            next_refresh(S(10), S(60), S(30)),
            S(60),
            "a maximum below the minimum"
        );
    }
}
