//! Explicit freshness of a stored response (RFC 9111 §4.2.1) and its `Age` (§5.1).
//!
//! Pure code: the clock is passed in.

use crate::semantics::cache_control::DELTA_SECONDS_MAX;
use crate::semantics::{cache_control::CacheControl, dates::single_date};
use http::{
    header::{AGE, DATE, EXPIRES},
    HeaderMap,
};
use std::time::{Duration, SystemTime};

/// The freshness lifetime a response states itself, if any (RFC 9111 §4.2.1):
/// `s-maxage` (shared caches only), then `max-age`, then `Expires − Date`.
///
/// An `Expires` that is not one valid HTTP-date means "already expired" (§5.3), so it gives
/// `Some(Duration::ZERO)`. Without a valid `Date`, the time the response was received
/// (`received`) stands in for it (§4.2.1).
pub fn explicit_lifetime(
    cc: &CacheControl,
    headers: &HeaderMap,
    shared: bool,
    received: SystemTime,
) -> Option<Duration> {
    if let Some(lifetime) = directive_lifetime(cc, shared) {
        return Some(lifetime);
    }
    if !headers.contains_key(EXPIRES) {
        return None;
    }
    let Some(expires) = single_date(headers, EXPIRES) else {
        return Some(Duration::ZERO);
    };
    let date = single_date(headers, DATE).unwrap_or(received);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

/// The lifetime the directives give: `s-maxage` (shared caches only), else `max-age`. With
/// a targeted field (RFC 9213 §2.2) it is the whole explicit lifetime: `Expires` is ignored.
pub(crate) fn directive_lifetime(cc: &CacheControl, shared: bool) -> Option<Duration> {
    cc.s_maxage.filter(|_| shared).or(cc.max_age)
}

/// The `Age` field as a duration, as RFC 9111 §5.1 reads it: the first member of the list
/// (a list-based value "SHOULD use the first member"; two lines are one list, RFC 9110 §5.3,
/// and empty members are skipped, §5.6.1), which must be a non-negative integer; `None` when the field is absent or
/// that member is not one (`abc`, `-1`, `1.5`, `30s`, `30;x=1`), since for an invalid value
/// "a cache SHOULD ignore the field". A number too large to represent is 2^31 s (§1.2.2): stale.
pub fn age_header(headers: &HeaderMap) -> Option<Duration> {
    // Empty members are skipped (RFC 9110 §5.6.1).
    let member = headers
        .get_all(AGE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .find(|member| !member.is_empty())?;
    if !member.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // All digits: only too many of them fails to parse.
    let secs = std::str::from_utf8(member)
        .ok()
        .and_then(|digits| digits.parse::<u64>().ok())
        .map_or(DELTA_SECONDS_MAX, |n| n.min(DELTA_SECONDS_MAX));
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{header::CACHE_CONTROL, HeaderName, HeaderValue};

    fn h(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(n.clone(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    fn lifetime(pairs: &[(HeaderName, &str)], shared: bool) -> Option<Duration> {
        let headers = h(pairs);
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        explicit_lifetime(&CacheControl::from_headers(&headers), &headers, shared, now)
    }

    const DATE_V: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const PLUS_100: &str = "Sun, 06 Nov 1994 08:51:17 GMT";

    #[test]
    fn s_maxage_wins_in_shared_caches_only() {
        let pairs = [(CACHE_CONTROL, "max-age=10, s-maxage=20")];
        assert_eq!(lifetime(&pairs, true), Some(Duration::from_secs(20)));
        assert_eq!(lifetime(&pairs, false), Some(Duration::from_secs(10)));
    }

    #[test]
    fn max_age_wins_over_expires() {
        let pairs = [
            (CACHE_CONTROL, "max-age=10"),
            (DATE, DATE_V),
            (EXPIRES, PLUS_100),
        ];
        assert_eq!(lifetime(&pairs, true), Some(Duration::from_secs(10)));
    }

    #[test]
    fn expires_minus_date() {
        let pairs = [(DATE, DATE_V), (EXPIRES, PLUS_100)];
        assert_eq!(lifetime(&pairs, true), Some(Duration::from_secs(100)));
        // Without Date, the receive time stands in.
        assert_eq!(
            lifetime(&[(EXPIRES, PLUS_100)], true),
            Some(Duration::from_secs(100))
        );
        // Expires in the past: already stale.
        let past = [(DATE, PLUS_100), (EXPIRES, DATE_V)];
        assert_eq!(lifetime(&past, true), Some(Duration::ZERO));
    }

    #[test]
    fn an_invalid_max_age_is_stale_not_a_number_and_not_absent() {
        // RFC 9111 §4.2.1: "caches are encouraged to consider responses that have invalid
        // freshness information (e.g., a max-age directive with non-integer content) to be
        // stale". Invalid is not the number's prefix (3600), and not absent either: a future
        // Expires (or a heuristic, which needs no explicit lifetime) must not make it fresh.
        for bad in [
            "max-age=3600.0",
            "max-age=3600.5",
            "max-age=100a",
            "max-age=a100",
            "max-age='3600'",
            "max-age=",
            "max-age=-1",
            "max-age=3600, max-age=x",
        ] {
            let pairs = [(CACHE_CONTROL, bad), (DATE, DATE_V), (EXPIRES, PLUS_100)];
            assert_eq!(lifetime(&pairs, true), Some(Duration::ZERO), "{bad:?}");
            assert_eq!(lifetime(&pairs, false), Some(Duration::ZERO), "{bad:?}");
        }
        // Quoted digits are the same number (RFC 9111 §5.2: either form is accepted).
        let quoted = [(CACHE_CONTROL, "max-age=\"3600\"")];
        assert_eq!(lifetime(&quoted, true), Some(Duration::from_secs(3600)));
        // A shared cache reads s-maxage, which overrides max-age (§5.2.2.10), valid or not.
        let s_maxage = [(CACHE_CONTROL, "max-age=1.5, s-maxage=20")];
        assert_eq!(lifetime(&s_maxage, true), Some(Duration::from_secs(20)));
        assert_eq!(lifetime(&s_maxage, false), Some(Duration::ZERO));
    }

    #[test]
    fn invalid_expires_means_stale() {
        assert_eq!(lifetime(&[(EXPIRES, "0")], true), Some(Duration::ZERO));
        assert_eq!(
            lifetime(&[(EXPIRES, PLUS_100), (EXPIRES, PLUS_100)], true),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn no_explicit_freshness() {
        assert_eq!(lifetime(&[(DATE, DATE_V)], true), None);
        assert_eq!(lifetime(&[(CACHE_CONTROL, "public")], true), None);
    }

    #[test]
    fn age_header_parsing() {
        let secs = |n| Some(Duration::from_secs(n));
        assert_eq!(age_header(&h(&[(AGE, "30")])), secs(30));
        assert_eq!(age_header(&h(&[(AGE, " 30 ")])), secs(30), "white space");
        assert_eq!(age_header(&HeaderMap::new()), None);
    }

    /// RFC 9111 §5.1: "a cache encountering a message with a list-based Age field value
    /// SHOULD use the first member of the field value, discarding subsequent ones"; two
    /// field lines are one list (RFC 9110 §5.3).
    #[test]
    fn a_list_of_ages_is_read_by_its_first_member() {
        let secs = |n| Some(Duration::from_secs(n));
        assert_eq!(age_header(&h(&[(AGE, "0, 7200")])), secs(0));
        assert_eq!(age_header(&h(&[(AGE, "7200, 0")])), secs(7200));
        assert_eq!(age_header(&h(&[(AGE, "0"), (AGE, "7200")])), secs(0));
        assert_eq!(age_header(&h(&[(AGE, "7200"), (AGE, "0")])), secs(7200));
        assert_eq!(age_header(&h(&[(AGE, "3600, 3600")])), secs(3600));
        // Empty members are skipped (RFC 9110 §5.6.1).
        assert_eq!(age_header(&h(&[(AGE, ", 30")])), secs(30));
        assert_eq!(age_header(&h(&[(AGE, ""), (AGE, "30")])), secs(30));
    }

    /// RFC 9111 §5.1: "If the field value (after discarding additional members, as per
    /// above) is invalid (e.g., it contains something other than a non-negative integer), a
    /// cache SHOULD ignore the field": as if absent, neither 0 read from a prefix nor stale.
    #[test]
    fn an_invalid_age_is_ignored() {
        for invalid in [
            "-1", "abc", "30s", "30;q=1", "3.5", "", ",", "7200.0", "+5", "a, 30",
        ] {
            assert_eq!(age_header(&h(&[(AGE, invalid)])), None, "{invalid:?}");
        }
        // The first member decides: an invalid one is not skipped for a valid one after it.
        assert_eq!(age_header(&h(&[(AGE, "abc"), (AGE, "30")])), None);
    }

    /// RFC 9111 §1.2.2: a delta-seconds too large to represent is 2^31.
    #[test]
    fn an_age_too_large_is_two_to_the_thirty_one() {
        let largest = Some(Duration::from_secs(DELTA_SECONDS_MAX));
        for large in ["2147483648", "2147483649", "999999999999999999999999"] {
            assert_eq!(age_header(&h(&[(AGE, large)])), largest, "{large}");
        }
        assert_eq!(
            age_header(&h(&[(AGE, "2147483647")])),
            Some(Duration::from_secs(2_147_483_647))
        );
    }
}
