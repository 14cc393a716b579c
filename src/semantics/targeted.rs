//! Targeted cache control (RFC 9213): a response field such as `CDN-Cache-Control` with
//! the syntax of a Structured Fields Dictionary and the meaning of `Cache-Control`, aimed at
//! one kind of cache. A cache keeps a *target list* of such field names, most applicable
//! first.
//!
//! ```text
//! Cache-Control: max-age=60          other caches: fresh for 60 s
//! CDN-Cache-Control: max-age=600     a cache that lists it: fresh for 600 s
//! ```

use super::{cache_control::CacheControl, structured::parse_dictionary};
use http::{HeaderMap, HeaderName};

/// The targeted field this cache follows, and its directives: the first name of `targets`
/// whose field in `headers` has a valid, non-empty value (RFC 9213 §2.2: the cache "MUST
/// select the first (in target list order) field with a valid, non-empty value"). `None`:
/// no such field, and `Cache-Control` and `Expires` decide as usual. When one is selected,
/// they are ignored for this cache's policy (they still go downstream).
pub fn select<'t>(
    headers: &HeaderMap,
    targets: &'t [HeaderName],
) -> Option<(&'t HeaderName, CacheControl)> {
    targets
        .iter()
        .find_map(|name| directives(headers, name).map(|cc| (name, cc)))
}

/// The directives of the targeted field `name` in `headers`, when it is present, a valid
/// Dictionary (an invalid one is ignored as a whole, RFC 8941 §4.2) and not empty.
pub fn directives(headers: &HeaderMap, name: &HeaderName) -> Option<CacheControl> {
    let lines = headers.get_all(name);
    lines.iter().next()?;
    let members = parse_dictionary(lines)?;
    (!members.is_empty()).then(|| CacheControl::from_dictionary(&members))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    const CDN: HeaderName = HeaderName::from_static("cdn-cache-control");
    const MINE: HeaderName = HeaderName::from_static("edge-cache-control");

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_first_valid_field_of_the_target_list_is_selected() {
        let h = headers(&[
            ("cache-control", "max-age=60"),
            ("cdn-cache-control", "max-age=600"),
            ("edge-cache-control", "max-age=6000"),
        ]);
        let targets = [MINE, CDN];
        let (name, cc) = select(&h, &targets).unwrap();
        assert_eq!(*name, MINE);
        assert_eq!(cc.max_age, Some(Duration::from_secs(6000)));
        // Not listed: no effect (§2.2).
        assert!(select(&h, &[]).is_none());
    }

    #[test]
    fn an_invalid_or_empty_field_is_skipped_for_the_next() {
        let targets = [MINE, CDN];
        for mine in ["max-age=60,", "Max-Age=60", ""] {
            let mut h = headers(&[("cdn-cache-control", "no-store")]);
            h.insert(&MINE, HeaderValue::from_static(mine));
            let (name, cc) = select(&h, &targets).unwrap();
            assert_eq!(*name, CDN, "{mine:?}");
            assert!(cc.no_store);
        }
        let h = headers(&[("cdn-cache-control", "max-age=60, ,x")]);
        assert!(select(&h, &targets).is_none(), "then Cache-Control decides");
    }

    #[test]
    fn directives_keep_their_cache_control_meaning_and_types() {
        let h = headers(&[(
            "cdn-cache-control",
            "max-age=60, s-maxage=120, private=\"set-cookie\", no-cache, must-revalidate, stale-while-revalidate=30, stale-if-error=?0, public=?0",
        )]);
        let cc = directives(&h, &CDN).unwrap();
        assert_eq!(cc.max_age, Some(Duration::from_secs(60)));
        assert_eq!(cc.s_maxage, Some(Duration::from_secs(120)));
        assert_eq!(cc.private.fields(), &[http::header::SET_COOKIE]);
        assert!(cc.no_cache.is_all() && cc.must_revalidate);
        assert_eq!(cc.stale_while_revalidate, Some(Duration::from_secs(30)));
        assert_eq!(cc.stale_if_error, None, "?0 is absent");
        assert!(!cc.public);
        // A value of the wrong type is read as caching less: a restriction applies
        // unqualified, a lifetime is 0, a permission is absent.
        let h = headers(&[(
            "cdn-cache-control",
            "max-age=60.5, s-maxage=-1, no-store=1, private=x-user, no-cache=(a), public=1, stale-if-error=tok",
        )]);
        let cc = directives(&h, &CDN).unwrap();
        let zero = Some(Duration::ZERO);
        assert_eq!((cc.max_age, cc.s_maxage), (zero, zero));
        assert!(cc.no_store && cc.private.is_all() && cc.no_cache.is_all());
        assert!(!cc.public);
        assert_eq!(cc.stale_if_error, None);
    }
}
