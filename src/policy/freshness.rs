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

/// The `Age` field as a duration; `None` when absent. A field that is not one
/// non-negative integer (a suffix as in `30s`, parameters, a sign, a list, two lines) is
/// read as the largest age there is, 2^31 s, as a value too large to represent is (RFC 9111
/// §1.2.2): the response is stale, never fresh on the strength of an age nobody can read.
pub fn age_header(headers: &HeaderMap) -> Option<Duration> {
    let mut lines = headers.get_all(AGE).iter();
    let first = lines.next()?;
    let value = first.to_str().ok().map(str::trim).filter(|v| {
        lines.next().is_none() && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
    });
    let secs = value.map_or(DELTA_SECONDS_MAX, |v| {
        v.parse::<u64>()
            .map_or(DELTA_SECONDS_MAX, |n| n.min(DELTA_SECONDS_MAX))
    });
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
        assert_eq!(
            age_header(&h(&[(AGE, "30")])),
            Some(Duration::from_secs(30))
        );
        let largest = Some(Duration::from_secs(DELTA_SECONDS_MAX));
        for invalid in ["-1", "abc", "30s", "30;q=1", "30, 40", "3.5", ""] {
            assert_eq!(age_header(&h(&[(AGE, invalid)])), largest, "{invalid:?}");
        }
        assert_eq!(
            age_header(&h(&[(AGE, "30"), (AGE, "30")])),
            largest,
            "two lines"
        );
        assert_eq!(
            age_header(&h(&[(AGE, "999999999999999999999999")])),
            largest
        );
        assert_eq!(age_header(&HeaderMap::new()), None);
    }
}
