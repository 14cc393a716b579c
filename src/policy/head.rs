//! Which response header fields are stored (RFC 9111 §3.1) and how a stored head is updated
//! from a `304` or a `HEAD` response (§3.2).

use super::CacheMode;
use crate::semantics::cache_control::{CacheControl, FieldDirective};
use http::{
    header::{
        AGE, CACHE_CONTROL, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
        CONTENT_TYPE, DATE, ETAG, EXPIRES, LAST_MODIFIED, TE, TRAILER, TRANSFER_ENCODING, VARY,
    },
    HeaderMap, HeaderName,
};

/// Hop-by-hop fields (RFC 9110 §7.6.1, RFC 9111 §3.1), besides those `Connection` names.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authentication-info",
    "proxy-authorization",
    "trailer",
];

/// Fields the policy itself reads. They are never dropped on the word of `Connection`,
/// `no-cache="…"` or `private="…"`: dropping `Cache-Control` because `Connection` named it
/// would turn a `no-store` response into a storable one.
const PROTECTED: [HeaderName; 7] = [CACHE_CONTROL, DATE, EXPIRES, AGE, VARY, ETAG, LAST_MODIFIED];

/// Fields a `304` or `HEAD` response never updates in a stored head (§3.2): they describe the
/// stored bytes, which the update does not change (Content-Length is named by §3.2; the
/// others would mislabel the stored content), or they are hop-by-hop.
const NOT_UPDATED: [HeaderName; 7] = [
    CONTENT_LENGTH,
    CONTENT_ENCODING,
    CONTENT_TYPE,
    CONTENT_RANGE,
    TRANSFER_ENCODING,
    TRAILER,
    TE,
];

/// Whether the cache's policy reads `name`, so that no `Connection` may drop it.
pub(crate) fn is_protected(name: &HeaderName) -> bool {
    PROTECTED.contains(name)
}

/// Whether `name` is a hop-by-hop field (RFC 9110 §7.6.1, and the proxy authentication
/// fields, §11.7): one connection's, never stored nor forwarded.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// A qualified directive counts as unqualified when it names a field the policy depends on.
pub(super) fn covers_all(d: &FieldDirective) -> bool {
    d.is_all() || d.fields().iter().any(is_protected)
}

/// Response `no-cache` that forces revalidation of the whole response.
pub(super) fn no_cache_all(cc: &CacheControl) -> bool {
    covers_all(&cc.no_cache)
}

/// The names `Connection` lists, lower-cased.
pub(crate) fn connection_names(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The names of the fields that are not stored: hop-by-hop ones, those `Connection` names,
/// and those named by a qualified `no-cache` (and `private` in a shared cache).
fn excluded(headers: &HeaderMap, mode: CacheMode, cc: &CacheControl) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = HOP_BY_HOP
        .iter()
        .map(|n| HeaderName::from_static(n))
        .collect();
    let mut named = connection_names(headers);
    named.extend(cc.no_cache.fields().iter().cloned());
    if mode == CacheMode::Shared {
        named.extend(cc.private.fields().iter().cloned());
    }
    names.extend(named.into_iter().filter(|n| !is_protected(n)));
    names
}

/// The header fields of a response as a cache stores them (RFC 9111 §3.1, §5.2.2.4,
/// §5.2.2.7), by its own `Cache-Control`.
#[cfg(test)]
pub(super) fn stored_headers(headers: &HeaderMap, mode: CacheMode) -> HeaderMap {
    stored_headers_by(headers, mode, &CacheControl::from_headers(headers))
}

/// [`stored_headers`] by the directives `cc` this cache follows (its `Cache-Control`, or a
/// targeted field: RFC 9213).
pub(super) fn stored_headers_by(
    headers: &HeaderMap,
    mode: CacheMode,
    cc: &CacheControl,
) -> HeaderMap {
    let mut out = headers.clone();
    for name in excluded(headers, mode, cc) {
        out.remove(&name);
    }
    out
}

/// `stored` updated with the fields of `new` (a `304` or `HEAD` response), RFC 9111 §3.2:
/// each field `new` carries replaces the stored one, except the excluded and
/// content-describing fields.
pub(super) fn updated_headers(
    stored: &HeaderMap,
    new: &HeaderMap,
    mode: CacheMode,
    targeted: Option<&HeaderName>,
) -> HeaderMap {
    let cc = super::response_cache_control(new, targeted);
    let incoming = stored_headers_by(new, mode, &cc);
    let mut out = stored.clone();
    let mut replaced: Vec<&HeaderName> = Vec::new();
    for (name, value) in &incoming {
        if NOT_UPDATED.contains(name) {
            continue;
        }
        if !replaced.contains(&name) {
            out.remove(name);
            replaced.push(name);
        }
        out.append(name.clone(), value.clone());
    }
    // The new response's qualified no-cache / private may name fields already stored.
    for name in excluded(new, mode, &cc) {
        out.remove(&name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_util::h;
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_fields_are_dropped() {
        let stored = stored_headers(
            &h(&[
                ("connection", "close, x-hop, Cache-Control"),
                ("keep-alive", "timeout=5"),
                ("transfer-encoding", "chunked"),
                ("te", "trailers"),
                ("upgrade", "h2c"),
                ("proxy-connection", "keep-alive"),
                ("proxy-authenticate", "Basic"),
                ("proxy-authorization", "Basic x"),
                ("proxy-authentication-info", "nextnonce=\"x\""),
                ("trailer", "x-t"),
                ("x-hop", "1"),
                ("cache-control", "max-age=5"),
                ("content-type", "text/plain"),
            ]),
            CacheMode::Shared,
        );
        let mut names: Vec<_> = stored.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        // Cache-Control is protected even though Connection names it.
        assert_eq!(names, ["cache-control", "content-type"]);
    }

    #[test]
    fn end_to_end_fields_are_kept() {
        let stored = stored_headers(
            &h(&[("x-a", "1"), ("set-cookie", "a=b")]),
            CacheMode::Shared,
        );
        assert_eq!(stored.len(), 2);
    }

    #[test]
    fn qualified_no_cache_fields_are_dropped_in_both_modes() {
        let head = h(&[
            ("cache-control", "no-cache=\"x-secret\""),
            ("x-secret", "1"),
            ("x-ok", "2"),
        ]);
        for mode in [CacheMode::Shared, CacheMode::Private] {
            let s = stored_headers(&head, mode);
            assert!(!s.contains_key("x-secret"));
            assert!(s.contains_key("x-ok"));
        }
    }

    #[test]
    fn qualified_private_fields_are_dropped_in_shared_mode_only() {
        let head = h(&[("cache-control", "private=\"x-user\""), ("x-user", "bob")]);
        assert!(!stored_headers(&head, CacheMode::Shared).contains_key("x-user"));
        assert!(stored_headers(&head, CacheMode::Private).contains_key("x-user"));
    }

    #[test]
    fn qualified_directive_naming_a_protected_field_covers_all() {
        let cc = CacheControl::from_headers(&h(&[("cache-control", "no-cache=\"etag\"")]));
        assert!(no_cache_all(&cc));
        let cc = CacheControl::from_headers(&h(&[("cache-control", "no-cache=\"x-a\"")]));
        assert!(!no_cache_all(&cc));
        let s = stored_headers(
            &h(&[("cache-control", "no-cache=\"etag\""), ("etag", "\"a\"")]),
            CacheMode::Shared,
        );
        assert!(s.contains_key(ETAG));
    }

    #[test]
    fn update_replaces_fields_but_not_content_metadata() {
        let stored = h(&[
            ("content-length", "5"),
            ("content-type", "text/plain"),
            ("content-encoding", "gzip"),
            ("cache-control", "max-age=1"),
            ("x-multi", "a"),
            ("x-multi", "b"),
            ("x-kept", "k"),
        ]);
        let new = h(&[
            ("content-length", "0"),
            ("content-type", "text/html"),
            ("content-encoding", "br"),
            ("cache-control", "max-age=100"),
            ("x-multi", "c"),
            ("connection", "close"),
        ]);
        let u = updated_headers(&stored, &new, CacheMode::Shared, None);
        assert_eq!(u["content-length"], "5");
        assert_eq!(u["content-type"], "text/plain");
        assert_eq!(u["content-encoding"], "gzip");
        assert_eq!(u["cache-control"], "max-age=100");
        assert_eq!(u.get_all("x-multi").iter().collect::<Vec<_>>(), ["c"]);
        assert_eq!(u["x-kept"], "k");
        assert!(!u.contains_key(CONNECTION));
    }

    #[test]
    fn update_drops_fields_the_new_response_qualifies() {
        let stored = h(&[("x-user", "bob")]);
        let new = h(&[("cache-control", "private=\"x-user\"")]);
        assert!(!updated_headers(&stored, &new, CacheMode::Shared, None).contains_key("x-user"));
        assert!(updated_headers(&stored, &new, CacheMode::Private, None).contains_key("x-user"));
    }
}
