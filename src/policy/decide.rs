//! What a cache does with a request once its lookup has found what it holds: serve it, serve
//! it and refresh it, revalidate it, fetch, or answer `504`. One pure function, free of I/O
//! and of the clock (the stored response's freshness is already judged, by
//! [`CachePolicy::before_request`](super::CachePolicy::before_request)), so that every
//! combination is tested.

use super::BeforeRequest;
use std::time::Duration;

/// What the lookup found for the request, reduced to what the decision needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Nothing the request may be answered from: no entry, or none selected for it (RFC
    /// 9111 §4.1).
    Nothing,
    /// A stored response that may answer now
    /// ([`BeforeRequest::Fresh`]), fresh for `ttl` more.
    Fresh {
        /// How much longer it stays fresh.
        ttl: Duration,
    },
    /// A stored response that must be validated before it answers
    /// ([`BeforeRequest::Stale`]).
    Stale {
        /// `stale-while-revalidate` lets it answer now while it is revalidated (RFC 5861 §3).
        swr_allowed: bool,
    },
}

impl Found {
    /// What `before` says of a stored response (`None`: nothing stored).
    pub fn of(before: Option<&BeforeRequest>) -> Self {
        match before {
            None | Some(BeforeRequest::VaryMismatch) => Self::Nothing,
            Some(BeforeRequest::Fresh { ttl, .. }) => Self::Fresh { ttl: *ttl },
            Some(BeforeRequest::Stale { swr_allowed, .. }) => Self::Stale {
                swr_allowed: *swr_allowed,
            },
        }
    }
}

/// What the request asks of the cache, beyond what judged the stored response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    /// `Cache-Control: only-if-cached` (RFC 9111 §5.2.1.7): a stored response or a `504`.
    pub only_if_cached: bool,
    /// A GET with `Range`: answered from a fresh stored response, else sent on as it came
    /// (partial content is not stored; RFC 9111 §3.4 is not implemented).
    pub ranged: bool,
    /// Made for a named user (per-user mode): what a refresh of it fetched would be that
    /// user's, so it is never refreshed ahead.
    pub for_user: bool,
}

/// The cache's settings that take part in the decision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// Refresh a fresh entry in the background when it has less than this left
    /// (`ResponseCacheBuilder::refresh_ahead`).
    pub refresh_ahead: Option<Duration>,
}

/// What to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Answer with the fresh stored response; the origin is not asked.
    Hit,
    /// Answer with the fresh stored response, and revalidate it in the background: it is
    /// fresh for less than the refresh-ahead window.
    HitAndRefresh,
    /// Answer with the stale stored response, and revalidate it in the background
    /// (`stale-while-revalidate`, RFC 5861 §3).
    ServeStale,
    /// Ask the origin with the stored response's validators (RFC 9111 §4.3.1).
    Revalidate,
    /// Ask the origin, and store what it answers.
    Miss,
    /// Send the request on as it came, and store nothing: a range with nothing fresh to
    /// take it from.
    Pass,
    /// `504 Gateway Timeout`: `only-if-cached` and nothing that may answer (RFC 9111
    /// §5.2.1.7). Never the origin.
    GatewayTimeout,
}

/// What to do with a request for which the lookup `found` this, as `asked`, by `rules`.
pub fn decide(found: Found, asked: Asked, rules: Rules) -> Decision {
    match found {
        Found::Fresh { ttl } => {
            let refresh = rules.refresh_ahead.is_some_and(|window| ttl < window);
            if refresh && !asked.for_user {
                Decision::HitAndRefresh
            } else {
                Decision::Hit
            }
        }
        // §5.2.1.7: a stored response that needs the origin is as good as none.
        Found::Stale { .. } | Found::Nothing if asked.only_if_cached => Decision::GatewayTimeout,
        // RFC 5861 §3: whole, whatever the range (the refresh fetches the whole too).
        Found::Stale { swr_allowed: true } => Decision::ServeStale,
        Found::Stale { .. } | Found::Nothing if asked.ranged => Decision::Pass,
        Found::Stale { .. } => Decision::Revalidate,
        Found::Nothing => Decision::Miss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn every_found() -> Vec<Found> {
        vec![
            Found::Nothing,
            Found::Fresh {
                ttl: Duration::ZERO,
            },
            Found::Fresh { ttl: 5 * SECOND },
            Found::Fresh { ttl: 60 * SECOND },
            Found::Stale { swr_allowed: false },
            Found::Stale { swr_allowed: true },
        ]
    }

    fn every_asked() -> Vec<Asked> {
        let mut all = Vec::new();
        for only_if_cached in [false, true] {
            for ranged in [false, true] {
                for for_user in [false, true] {
                    all.push(Asked {
                        only_if_cached,
                        ranged,
                        for_user,
                    });
                }
            }
        }
        all
    }

    fn every_rules() -> Vec<Rules> {
        [None, Some(10 * SECOND)]
            .into_iter()
            .map(|refresh_ahead| Rules { refresh_ahead })
            .collect()
    }

    /// Every combination, checked against each rule below: what must never happen.
    #[test]
    fn no_combination_breaks_a_rule() {
        for found in every_found() {
            for asked in every_asked() {
                for rules in every_rules() {
                    let d = decide(found, asked, rules);
                    let case = format!("{found:?} {asked:?} {rules:?} -> {d:?}");
                    // RFC 9111 §5.2.1.7: only-if-cached never reaches the origin in the
                    // foreground.
                    if asked.only_if_cached {
                        assert!(
                            matches!(
                                d,
                                Decision::Hit
                                    | Decision::HitAndRefresh
                                    | Decision::ServeStale
                                    | Decision::GatewayTimeout
                            ),
                            "{case}"
                        );
                    }
                    // §4: a stored response answers without the origin only when fresh, or
                    // stale where stale-while-revalidate allows it.
                    if matches!(d, Decision::Hit | Decision::HitAndRefresh) {
                        assert!(matches!(found, Found::Fresh { .. }), "{case}");
                    }
                    if d == Decision::ServeStale {
                        assert_eq!(found, Found::Stale { swr_allowed: true }, "{case}");
                    }
                    // A fresh stored response is never fetched again in the foreground.
                    if matches!(found, Found::Fresh { .. }) {
                        assert!(
                            matches!(d, Decision::Hit | Decision::HitAndRefresh),
                            "{case}"
                        );
                    }
                    // Nothing stored: nothing to revalidate, nothing to serve.
                    if found == Found::Nothing {
                        assert!(
                            matches!(
                                d,
                                Decision::Miss | Decision::Pass | Decision::GatewayTimeout
                            ),
                            "{case}"
                        );
                    }
                    // A user's request never starts a refresh: its answer would be the user's.
                    if asked.for_user {
                        assert_ne!(d, Decision::HitAndRefresh, "{case}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_fresh_entry_is_a_hit() {
        let fresh = Found::Fresh { ttl: 60 * SECOND };
        assert_eq!(
            decide(fresh, Asked::default(), Rules::default()),
            Decision::Hit
        );
        let ranged = Asked {
            ranged: true,
            ..Asked::default()
        };
        assert_eq!(decide(fresh, ranged, Rules::default()), Decision::Hit);
    }

    #[test]
    fn refresh_ahead_only_inside_its_window_and_never_for_a_user() {
        let rules = Rules {
            refresh_ahead: Some(10 * SECOND),
        };
        let near = Found::Fresh { ttl: 5 * SECOND };
        let far = Found::Fresh { ttl: 60 * SECOND };
        let at_edge = Found::Fresh { ttl: 10 * SECOND };
        assert_eq!(
            decide(near, Asked::default(), rules),
            Decision::HitAndRefresh
        );
        assert_eq!(decide(far, Asked::default(), rules), Decision::Hit);
        assert_eq!(decide(at_edge, Asked::default(), rules), Decision::Hit);
        let user = Asked {
            for_user: true,
            ..Asked::default()
        };
        assert_eq!(decide(near, user, rules), Decision::Hit);
        assert_eq!(
            decide(near, Asked::default(), Rules::default()),
            Decision::Hit
        );
    }

    /// RFC 9111 §5.2.1.7: "respond using a stored response ... or respond with a 504".
    #[test]
    fn only_if_cached_is_a_stored_response_or_a_504() {
        let asked = Asked {
            only_if_cached: true,
            ..Asked::default()
        };
        let r = Rules::default();
        assert_eq!(decide(Found::Nothing, asked, r), Decision::GatewayTimeout);
        let stale = Found::Stale { swr_allowed: false };
        assert_eq!(decide(stale, asked, r), Decision::GatewayTimeout);
        // Not even a stale-while-revalidate answer: its refresh would go to the origin.
        let swr = Found::Stale { swr_allowed: true };
        assert_eq!(decide(swr, asked, r), Decision::GatewayTimeout);
        let fresh = Found::Fresh { ttl: SECOND };
        assert_eq!(decide(fresh, asked, r), Decision::Hit);
    }

    /// RFC 5861 §3: within the window, the stale response answers and is revalidated.
    #[test]
    fn stale_while_revalidate_serves_stale() {
        let swr = Found::Stale { swr_allowed: true };
        let r = Rules::default();
        assert_eq!(decide(swr, Asked::default(), r), Decision::ServeStale);
        let stale = Found::Stale { swr_allowed: false };
        assert_eq!(decide(stale, Asked::default(), r), Decision::Revalidate);
    }

    /// A range with nothing fresh goes on as it came; the cache does not store partial
    /// content (RFC 9111 §3.4 is not implemented), nor revalidates for a range.
    #[test]
    fn a_range_without_a_fresh_entry_passes() {
        let ranged = Asked {
            ranged: true,
            ..Asked::default()
        };
        let r = Rules::default();
        assert_eq!(decide(Found::Nothing, ranged, r), Decision::Pass);
        let stale = Found::Stale { swr_allowed: false };
        assert_eq!(decide(stale, ranged, r), Decision::Pass);
        assert_eq!(decide(Found::Nothing, Asked::default(), r), Decision::Miss);
    }
}
