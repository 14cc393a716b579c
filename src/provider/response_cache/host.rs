//! [`HostPolicy`]: per-origin overrides for APIs that send poor cache headers. Each is off
//! by default, set explicitly per authority, and named in `Cache-Status` when it decided
//! an answer.

use crate::policy::PolicyOptions;
use std::{collections::HashMap, time::Duration};

/// Overrides of how the cache reads one origin's responses and its clients' requests:
/// [`ResponseCacheBuilder::host_policy`](super::ResponseCacheBuilder::host_policy).
///
/// ```
/// use std::time::Duration;
/// use tower_etag::{response_cache::{HostPolicy, ResponseCache}, store::MemoryStore};
///
/// let cache = ResponseCache::builder(MemoryStore::new())
///     .client()
///     // An API that sends no cache headers, and sometimes `max-age=0` for data that
///     // changes hourly.
///     .host_policy(
///         "api.example",
///         HostPolicy::new()
///             .default_ttl(Duration::from_secs(300))
///             .min_ttl(Duration::from_secs(60)),
///     )
///     .build();
/// # let _ = cache;
/// ```
///
/// Not among them: storing `private` responses (a user agent's cache does that anyway, and
/// a shared one must not: [`per_user`](super::ResponseCacheBuilder::per_user) is the way),
/// and anything that would store `no-store` or lift `no-cache`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct HostPolicy {
    default_ttl: Option<Duration>,
    min_ttl: Option<Duration>,
    max_ttl: Option<Duration>,
    ignore_request_no_cache: bool,
}

impl HostPolicy {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a response without freshness information (no `max-age`, `s-maxage` or
    /// `Expires`) stays fresh, in place of the heuristic (`Cache-Status: ...;
    /// detail=override-default-ttl`).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// The shortest freshness lifetime of a reusable response (not one with `no-cache`)
    /// (`detail=override-min-ttl`).
    pub fn min_ttl(mut self, ttl: Duration) -> Self {
        self.min_ttl = Some(ttl);
        self
    }

    /// The longest freshness lifetime (`detail=override-max-ttl`).
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = Some(ttl);
        self
    }

    /// Whether a request's `Cache-Control: no-cache` (and `Pragma: no-cache`) is ignored,
    /// so that a fresh entry answers it (`detail=override-ignore-no-cache`): for clients
    /// that send it on every request.
    pub fn ignore_request_no_cache(mut self, ignore: bool) -> Self {
        self.ignore_request_no_cache = ignore;
        self
    }

    /// `base` with this policy's lifetime overrides.
    pub(crate) fn options(&self, base: PolicyOptions) -> PolicyOptions {
        PolicyOptions {
            default_ttl: self.default_ttl.or(base.default_ttl),
            min_ttl: self.min_ttl.or(base.min_ttl),
            max_ttl: self.max_ttl.or(base.max_ttl),
            ..base
        }
    }

    pub(crate) fn ignores_request_no_cache(&self) -> bool {
        self.ignore_request_no_cache
    }
}

/// The host policies of a cache, by authority as the cache keys it.
#[derive(Clone, Debug, Default)]
pub(crate) struct HostPolicies(HashMap<String, HostPolicy>);

impl HostPolicies {
    pub(crate) fn insert(&mut self, authority: &str, policy: HostPolicy) {
        self.0.insert(authority.to_ascii_lowercase(), policy);
    }

    /// The policy of requests for `authority`, if it has one.
    pub(crate) fn of(&self, authority: Option<&str>) -> Option<&HostPolicy> {
        if self.0.is_empty() {
            return None;
        }
        self.0.get(authority?)
    }

    /// The policy options of responses from `authority`.
    pub(crate) fn options(&self, authority: Option<&str>) -> PolicyOptions {
        let base = PolicyOptions::default();
        self.of(authority).map_or(base, |p| p.options(base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_authority_gets_its_overrides() {
        let mut hosts = HostPolicies::default();
        hosts.insert(
            "API.example:8443",
            HostPolicy::new().max_ttl(Duration::from_secs(9)),
        );
        assert_eq!(
            hosts.options(Some("api.example:8443")).max_ttl,
            Some(Duration::from_secs(9))
        );
        assert_eq!(hosts.options(Some("api.example")), PolicyOptions::default());
        assert_eq!(hosts.options(None), PolicyOptions::default());
        assert!(hosts.of(Some("other.example")).is_none());
    }
}
