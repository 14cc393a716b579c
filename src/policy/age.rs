//! Freshness lifetime (RFC 9111 §4.2.1, §4.2.2) and age (§4.2.3) of a stored response.
//!
//! All arithmetic saturates: a `Date` in the future (clock skew), a response time before the
//! request time or a `now` before the response time gives zero, never a panic.

use super::{storable::heuristically_cacheable, CachePolicy};
use crate::{
    policy::freshness::{age_header, explicit_lifetime},
    semantics::dates::single_date,
};
use http::header::{DATE, ETAG, LAST_MODIFIED};
use std::time::{Duration, SystemTime};

/// `later − earlier`, or zero when `later` is not later.
fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

impl CachePolicy {
    /// The `Date` of the response; the response time when it is missing or invalid
    /// (RFC 9111 §4.2.3 `date_value`).
    fn date_value(&self) -> SystemTime {
        single_date(&self.response_headers, DATE).unwrap_or(self.response_time)
    }

    /// Whether this stored response is more recent than `other` by their `Date` (RFC 9111
    /// §4: "When more than one suitable response is stored, a cache MUST use the most recent
    /// one (as determined by the Date header field)"; §4.1 for several selected by `Vary`).
    /// Equal dates are not more recent.
    pub fn more_recent_than(&self, other: &CachePolicy) -> bool {
        self.date_value() > other.date_value()
    }

    /// The explicit freshness lifetime: `s-maxage` (shared only), `max-age`,
    /// `Expires − Date` (§4.2.1). An invalid `Expires` gives zero.
    pub(super) fn explicit_lifetime(&self) -> Option<Duration> {
        if self.targeted.is_some() {
            // RFC 9213 §2.2: the targeted field's directives replace `Expires` too.
            return super::freshness::directive_lifetime(&self.res_cc, self.shared());
        }
        explicit_lifetime(
            &self.res_cc,
            &self.response_headers,
            self.shared(),
            self.response_time,
        )
    }

    /// The freshness lifetime (RFC 9111 §4.2.1): explicit if the response gives one, else
    /// heuristic (§4.2.2), else zero.
    ///
    /// The heuristic is 10 % of `Date − Last-Modified`, capped at
    /// [`PolicyOptions::heuristic_max`](super::PolicyOptions::heuristic_max), and only for a
    /// heuristically cacheable status or a `public` response.
    ///
    /// The operator's overrides in [`PolicyOptions`](super::PolicyOptions) (`default_ttl`,
    /// `min_ttl`, `max_ttl`) change it where set; [`CachePolicy::lifetime_override`] says
    /// which one did.
    pub fn freshness_lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Which operator override decided the freshness lifetime (`override-default-ttl`,
    /// `override-min-ttl`, `override-max-ttl`), for `Cache-Status`; `None` when the
    /// response's own headers (or the heuristic) did.
    pub fn lifetime_override(&self) -> Option<&'static str> {
        self.lifetime_override
    }

    /// The freshness lifetime and the override that decided it.
    pub(super) fn compute_freshness_lifetime(&self) -> (Duration, Option<&'static str>) {
        let options = &self.options;
        let (mut lifetime, mut applied) = match self.explicit_lifetime() {
            Some(explicit) => (explicit, None),
            None if !(heuristically_cacheable(self.status) || self.res_cc.public) => {
                return (Duration::ZERO, None);
            }
            None => match options.default_ttl {
                Some(ttl) => (ttl, Some("override-default-ttl")),
                None => (self.heuristic_lifetime(), None),
            },
        };
        if let Some(max) = options.max_ttl.filter(|max| lifetime > *max) {
            (lifetime, applied) = (max, Some("override-max-ttl"));
        }
        let reusable = !self.res_cc.no_cache.is_present();
        if let Some(min) = options.min_ttl.filter(|min| lifetime < *min && reusable) {
            (lifetime, applied) = (min, Some("override-min-ttl"));
        }
        (lifetime, applied)
    }

    /// 10 % of `Date − Last-Modified`, capped (§4.2.2); zero without `Last-Modified`.
    fn heuristic_lifetime(&self) -> Duration {
        match single_date(&self.response_headers, LAST_MODIFIED) {
            Some(lm) => (since(self.date_value(), lm) / 10).min(self.options.heuristic_max),
            None => Duration::ZERO,
        }
    }

    /// The age the response had when it was received (§4.2.3 `corrected_initial_age`).
    pub(super) fn compute_corrected_initial_age(&self) -> Duration {
        let apparent_age = since(self.response_time, self.date_value());
        let response_delay = since(self.response_time, self.request_time);
        let age_value = age_header(&self.response_headers).unwrap_or(Duration::ZERO);
        let corrected_age_value = age_value.saturating_add(response_delay);
        apparent_age.max(corrected_age_value)
    }

    /// The current age of the stored response at `now` (RFC 9111 §4.2.3): the age it had
    /// when received plus the time it has been stored. Send it as `Age` (§5.1).
    pub fn age(&self, now: SystemTime) -> Duration {
        let resident_time = since(now, self.response_time);
        self.initial_age.saturating_add(resident_time)
    }

    /// Whether the response is fresh at `now` by its own freshness lifetime: its lifetime
    /// exceeds its age (§4.2). Request directives and `no-cache` are not considered; use
    /// [`CachePolicy::before_request`] for that.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.freshness_lifetime() > self.age(now)
    }

    /// How long the response stays fresh from `now`; zero when stale.
    pub fn time_to_live(&self, now: SystemTime) -> Duration {
        self.freshness_lifetime().saturating_sub(self.age(now))
    }

    /// How long the response has been stale at `now`; zero while fresh.
    pub fn staleness(&self, now: SystemTime) -> Duration {
        self.age(now).saturating_sub(self.freshness_lifetime())
    }

    /// Whether the stored response has a validator (`ETag` or `Last-Modified`), so a stale
    /// copy can be revalidated with a conditional request.
    pub fn has_validators(&self) -> bool {
        self.response_headers.contains_key(ETAG)
            || self.response_headers.contains_key(LAST_MODIFIED)
    }

    /// How long a store should keep the entry from `now`: while it is fresh, plus the longer
    /// of its `stale-while-revalidate` and `stale-if-error` windows, plus
    /// [`PolicyOptions::revalidation_headroom`](super::PolicyOptions::revalidation_headroom)
    /// when it has validators. Zero means the entry is of no further use.
    pub fn storage_ttl(&self, now: SystemTime) -> Duration {
        let stale_window = self
            .res_cc
            .stale_while_revalidate
            .unwrap_or(Duration::ZERO)
            .max(self.res_cc.stale_if_error.unwrap_or(Duration::ZERO));
        let fresh_and_stale = self
            .freshness_lifetime()
            .saturating_add(stale_window)
            .saturating_sub(self.age(now));
        if self.has_validators() {
            fresh_and_stale.saturating_add(self.options.revalidation_headroom)
        } else {
            fresh_and_stale
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::{CacheMode, PolicyOptions};
    use super::*;

    fn with(options: PolicyOptions, status: u16, headers: &[(&str, &str)]) -> CachePolicy {
        CachePolicy::with_options(
            &get(&[]),
            &res_with(status, headers),
            t0(),
            t0(),
            CacheMode::Shared,
            options,
        )
    }

    #[test]
    fn a_default_ttl_stands_in_for_missing_freshness_only() {
        let options = PolicyOptions {
            default_ttl: Some(secs(600)),
            ..PolicyOptions::default()
        };
        let p = with(options, 200, &[]);
        assert_eq!(p.freshness_lifetime(), secs(600));
        assert_eq!(p.lifetime_override(), Some("override-default-ttl"));
        // Not over the response's own freshness, however short, and not over the heuristic's
        // statuses: a 500 without freshness stays unfresh.
        let own = with(options, 200, &[("cache-control", "max-age=5")]);
        assert_eq!(
            (own.freshness_lifetime(), own.lifetime_override()),
            (secs(5), None)
        );
        let zero = with(options, 200, &[("cache-control", "max-age=0")]);
        assert_eq!(zero.freshness_lifetime(), Duration::ZERO);
        let error = with(options, 500, &[]);
        assert_eq!(
            (error.freshness_lifetime(), error.lifetime_override()),
            (Duration::ZERO, None)
        );
        // Off by default: the heuristic (none here, no Last-Modified).
        assert_eq!(
            with(PolicyOptions::default(), 200, &[]).freshness_lifetime(),
            Duration::ZERO
        );
    }

    #[test]
    fn min_and_max_ttl_bound_the_lifetime_but_never_lift_no_cache() {
        let options = PolicyOptions {
            min_ttl: Some(secs(60)),
            max_ttl: Some(secs(3600)),
            ..PolicyOptions::default()
        };
        let short = with(options, 200, &[("cache-control", "max-age=5")]);
        assert_eq!(
            (short.freshness_lifetime(), short.lifetime_override()),
            (secs(60), Some("override-min-ttl"))
        );
        let long = with(options, 200, &[("cache-control", "max-age=86400")]);
        assert_eq!(
            (long.freshness_lifetime(), long.lifetime_override()),
            (secs(3600), Some("override-max-ttl"))
        );
        let within = with(options, 200, &[("cache-control", "max-age=300")]);
        assert_eq!(
            (within.freshness_lifetime(), within.lifetime_override()),
            (secs(300), None)
        );
        // `no-cache` asks for a revalidation every time: no override makes it fresh.
        let no_cache = with(options, 200, &[("cache-control", "no-cache, max-age=5")]);
        assert_eq!(no_cache.lifetime_override(), None);
        assert!(matches!(
            no_cache.before(&get(&[]), t0()),
            crate::policy::BeforeRequest::Stale { .. }
        ));
        // A status without freshness the heuristic does not cover is not lifted either.
        assert_eq!(with(options, 500, &[]).freshness_lifetime(), Duration::ZERO);
    }

    #[test]
    fn max_age_lifetime_and_ttl() {
        let p = shared(&[("cache-control", "max-age=100")]);
        assert_eq!(p.freshness_lifetime(), secs(100));
        assert_eq!(p.age(at(30)), secs(30));
        assert_eq!(p.time_to_live(at(30)), secs(70));
        assert!(p.is_fresh(at(99)));
        assert!(!p.is_fresh(at(100)));
        assert_eq!(p.time_to_live(at(150)), Duration::ZERO);
        assert_eq!(p.staleness(at(150)), secs(50));
    }

    #[test]
    fn s_maxage_only_in_shared_mode() {
        let h = [("cache-control", "max-age=10, s-maxage=100")];
        assert_eq!(shared(&h).freshness_lifetime(), secs(100));
        assert_eq!(
            policy(&[], &h, CacheMode::Private).freshness_lifetime(),
            secs(10)
        );
    }

    #[test]
    fn expires_minus_date() {
        let h = [("date", &*date(t0())), ("expires", &*date(at(60)))];
        assert_eq!(shared(&h).freshness_lifetime(), secs(60));
    }

    #[test]
    fn invalid_expires_is_stale() {
        let p = shared(&[("date", &*date(t0())), ("expires", "0")]);
        assert_eq!(p.freshness_lifetime(), Duration::ZERO);
        assert!(!p.is_fresh(t0()));
        // ... even with Last-Modified: explicit freshness rules out the heuristic.
        let p = shared(&[
            ("expires", "never"),
            ("last-modified", &*date(t0() - secs(1000))),
        ]);
        assert_eq!(p.freshness_lifetime(), Duration::ZERO);
    }

    #[test]
    fn heuristic_only_without_explicit_freshness() {
        let lm = date(t0() - secs(1000));
        let d = date(t0());
        let p = shared(&[("date", &d), ("last-modified", &lm)]);
        assert_eq!(p.freshness_lifetime(), secs(100));
        let p = shared(&[
            ("date", &d),
            ("last-modified", &lm),
            ("cache-control", "max-age=5"),
        ]);
        assert_eq!(p.freshness_lifetime(), secs(5));
        let p = shared(&[
            ("date", &d),
            ("last-modified", &lm),
            ("cache-control", "max-age=0"),
        ]);
        assert_eq!(p.freshness_lifetime(), Duration::ZERO);
        // Without Last-Modified there is nothing to guess from.
        assert_eq!(shared(&[("date", &d)]).freshness_lifetime(), Duration::ZERO);
    }

    #[test]
    fn heuristic_only_for_cacheable_status_or_public() {
        let lm = date(t0() - secs(1000));
        let p = CachePolicy::new(
            &get(&[]),
            &res_with(302, &[("last-modified", &lm)]),
            t0(),
            t0(),
            CacheMode::Shared,
        );
        assert_eq!(p.freshness_lifetime(), Duration::ZERO);
        let p = CachePolicy::new(
            &get(&[]),
            &res_with(302, &[("last-modified", &lm), ("cache-control", "public")]),
            t0(),
            t0(),
            CacheMode::Shared,
        );
        assert_eq!(p.freshness_lifetime(), secs(100));
    }

    #[test]
    fn heuristic_is_capped() {
        let lm = date(t0() - secs(1000 * 24 * 3600));
        let p = shared(&[("last-modified", &lm)]);
        assert_eq!(p.freshness_lifetime(), super::super::DEFAULT_HEURISTIC_MAX);
        let options = PolicyOptions {
            heuristic_max: secs(7),
            ..PolicyOptions::default()
        };
        let p = CachePolicy::with_options(
            &get(&[]),
            &res(&[("last-modified", &lm)]),
            t0(),
            t0(),
            CacheMode::Shared,
            options,
        );
        assert_eq!(p.freshness_lifetime(), secs(7));
    }

    #[test]
    fn age_header_adds() {
        let p = shared(&[("cache-control", "max-age=100"), ("age", "30")]);
        assert_eq!(p.age(t0()), secs(30));
        assert_eq!(p.age(at(10)), secs(40));
        assert_eq!(p.time_to_live(at(10)), secs(60));
    }

    /// RFC 9111 §5.3: a shared cache ignores `Expires` where `s-maxage` is present (and
    /// every cache where `max-age` is); a private cache reads `Expires` past an `s-maxage`.
    #[test]
    fn s_maxage_makes_a_shared_cache_ignore_expires() {
        let expires = date(t0() + secs(100));
        let headers = [
            ("date", &*date(t0())),
            ("cache-control", "s-maxage=10"),
            ("expires", &*expires),
        ];
        assert_eq!(shared(&headers).freshness_lifetime(), secs(10));
        let private = policy(&[], &headers, CacheMode::Private);
        assert_eq!(private.freshness_lifetime(), secs(100));
    }

    /// RFC 9111 §4, §5.1: a response served from the cache carries its current age, in
    /// place of the `Age` the origin sent (one line, never two).
    #[test]
    fn the_served_age_replaces_the_origins() {
        let p = shared(&[("cache-control", "max-age=100"), ("age", "30")]);
        let headers = p.headers_with_age(at(10));
        let ages: Vec<_> = headers.get_all("age").iter().collect();
        assert_eq!(ages, ["40"]);
    }

    /// RFC 9111 §5.1: an invalid `Age` (a suffix, parameters, a sign, a fraction) is
    /// ignored, so the response's freshness is what its own fields say; a list is read by its
    /// first member. (The age-parse tests of the HTTP cache-tests suite.)
    #[test]
    fn an_invalid_age_is_ignored_and_a_list_read_by_its_first_member() {
        for age in [
            "abc", "-7200", "7200.0", "30s", "30;x=1", "0, 7200", "0, 0", " 30 ",
        ] {
            let p = shared(&[("cache-control", "max-age=3600"), ("age", age)]);
            assert!(p.is_fresh(t0()), "fresh with Age: {age:?}");
        }
        for age in ["7200, 0", "2147483647", "2147483648", "2147483649"] {
            let p = shared(&[("cache-control", "max-age=3600"), ("age", age)]);
            assert!(!p.is_fresh(t0()), "stale with Age: {age:?}");
            assert_eq!(p.time_to_live(t0()), Duration::ZERO);
        }
    }

    #[test]
    fn apparent_age_from_date_and_response_delay() {
        // Date 20 s before receipt: apparent age 20.
        let p = shared(&[("date", &*date(t0() - secs(20)))]);
        assert_eq!(p.age(t0()), secs(20));
        // Response delay of 5 s adds to the Age header; the larger estimate wins.
        let p = CachePolicy::new(
            &get(&[]),
            &res(&[("age", "10"), ("date", &*date(at(5)))]),
            t0(),
            at(5),
            CacheMode::Shared,
        );
        assert_eq!(p.age(at(5)), secs(15));
    }

    #[test]
    fn clock_skew_never_goes_negative() {
        // Date an hour in the future, response time before the request time, now before
        // the response time: all clamp to zero.
        let p = CachePolicy::new(
            &get(&[]),
            &res(&[("date", &*date(at(3600))), ("cache-control", "max-age=10")]),
            at(50),
            at(40),
            CacheMode::Shared,
        );
        assert_eq!(p.age(at(40)), Duration::ZERO);
        assert_eq!(p.age(t0()), Duration::ZERO);
        assert_eq!(p.time_to_live(at(45)), secs(5));
        // Expires before a future Date: zero, not negative.
        let p = shared(&[("date", &*date(at(3600))), ("expires", &*date(t0()))]);
        assert_eq!(p.freshness_lifetime(), Duration::ZERO);
        // Extreme times do not overflow.
        let p = shared(&[
            ("age", "99999999999999999999999"),
            ("cache-control", "max-age=5"),
        ]);
        assert_eq!(p.time_to_live(SystemTime::UNIX_EPOCH), Duration::ZERO);
        let _ = p.storage_ttl(t0() + secs(u32::MAX as u64));
    }

    #[test]
    fn missing_date_uses_response_time() {
        let p = CachePolicy::new(
            &get(&[]),
            &res(&[("date", "garbage")]),
            t0(),
            at(3),
            CacheMode::Shared,
        );
        assert_eq!(p.age(at(3)), secs(3)); // the response delay alone
    }

    #[test]
    fn storage_ttl_adds_stale_windows_and_headroom() {
        let p = shared(&[(
            "cache-control",
            "max-age=10, stale-while-revalidate=20, stale-if-error=50",
        )]);
        assert_eq!(p.storage_ttl(t0()), secs(60));
        assert_eq!(p.storage_ttl(at(70)), Duration::ZERO);
        let p = shared(&[("cache-control", "max-age=10"), ("etag", "\"a\"")]);
        assert!(p.has_validators());
        assert_eq!(
            p.storage_ttl(t0()),
            secs(10) + super::super::DEFAULT_REVALIDATION_HEADROOM
        );
        assert!(!shared(&[("cache-control", "max-age=10")]).has_validators());
    }
}

/// RFC 9213 §2.2: a targeted field on the cache's list decides its freshness, with
/// `Cache-Control` and `Expires` ignored; not on the list, or invalid, it changes nothing.
#[cfg(test)]
mod targeted_tests {
    use super::super::{test_util::*, CacheMode, CachePolicy, PolicyOptions};
    use http::HeaderName;

    const CDN: HeaderName = HeaderName::from_static("cdn-cache-control");

    fn targeted(res_headers: &[(&str, &str)]) -> CachePolicy {
        let options = PolicyOptions::default();
        let (req, res) = (get(&[]), res(res_headers));
        CachePolicy::with_targets(&req, &res, (t0(), t0()), CacheMode::Shared, options, &[CDN])
    }

    #[test]
    fn the_targeted_lifetime_replaces_cache_control_and_expires() {
        let expires = date(t0() + secs(10));
        let headers = [
            ("date", &*date(t0())),
            ("cache-control", "max-age=60, s-maxage=30"),
            ("expires", &*expires),
            ("cdn-cache-control", "max-age=600"),
        ];
        let p = targeted(&headers);
        assert_eq!(p.targeted(), Some(&CDN));
        assert_eq!(p.freshness_lifetime(), secs(600));
        assert!(p.storable().is_ok());
        // Without `max-age` in the targeted field, `Expires` does not come back.
        let p = targeted(&[
            ("expires", &*expires),
            ("cdn-cache-control", "must-revalidate"),
        ]);
        assert_eq!(p.freshness_lifetime(), secs(0));
        // Its no-store wins over a storable Cache-Control.
        assert!(targeted(&[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "no-store")
        ])
        .storable()
        .is_err());
        // Not on the list: Cache-Control decides.
        let p = shared(&[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "max-age=600"),
        ]);
        assert_eq!((p.targeted(), p.freshness_lifetime()), (None, secs(60)));
        // Invalid: ignored as a whole.
        let p = targeted(&[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "max-age=6OO"),
        ]);
        assert_eq!((p.targeted(), p.freshness_lifetime()), (None, secs(60)));
    }

    #[test]
    fn a_304_chooses_the_targeted_field_again() {
        use super::super::revalidate::AfterResponse;
        let stored = targeted(&[("cache-control", "max-age=60"), ("etag", "\"v\"")]);
        assert_eq!(stored.targeted(), None);
        let after = |p: &CachePolicy, cdn: &str| {
            let res = res_with(304, &[("etag", "\"v\""), ("cdn-cache-control", cdn)]);
            p.after_revalidation_with_targets(&get(&[]), &res, at(5), at(5), &[CDN])
        };
        // A 304 that brings the targeted field: it decides, for the client and the store.
        match after(&stored, "max-age=600") {
            AfterResponse::NotModified { served, stored } => {
                assert_eq!(served.targeted(), Some(&CDN));
                assert_eq!(served.freshness_lifetime(), secs(600));
                assert_eq!(stored.unwrap().freshness_lifetime(), secs(600));
            }
            other => panic!("{other:?}"),
        }
        // Its no-store too: nothing more is stored.
        match after(&stored, "no-store") {
            AfterResponse::NotModified { stored, .. } => assert!(stored.is_err()),
            other => panic!("{other:?}"),
        }
        // A 304 that spoils the followed field hands over to Cache-Control.
        let following = targeted(&[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "max-age=600"),
            ("etag", "\"v\""),
        ]);
        match after(&following, "max-age=6OO") {
            AfterResponse::NotModified { served, .. } => {
                assert_eq!(
                    (served.targeted(), served.freshness_lifetime()),
                    (None, secs(60))
                );
            }
            other => panic!("{other:?}"),
        }
        // Negative: without the list, the policy keeps following what it followed.
        let res = res_with(304, &[("etag", "\"v\""), ("cdn-cache-control", "no-store")]);
        match stored.after_revalidation(&get(&[]), &res, at(5), at(5)) {
            AfterResponse::NotModified { served, stored } => {
                assert_eq!(served.targeted(), None);
                assert!(stored.is_ok());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parts_round_trip_keeps_the_targeted_field() {
        let p = targeted(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=600"),
        ]);
        let back = CachePolicy::from_parts(p.to_parts());
        assert_eq!(back, p);
        assert_eq!(back.freshness_lifetime(), secs(600));
    }
}
