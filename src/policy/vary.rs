//! Matching a new request against the selecting header fields of a stored response
//! (RFC 9111 §4.1).

use crate::semantics::headers::vary_names;
use http::HeaderMap;

/// Whether the response's `Vary` holds `*`: it then never matches a new request (§4.1).
pub(crate) fn varies_on_everything(response_headers: &HeaderMap) -> bool {
    vary_names(response_headers).any(|n| n == "*")
}

/// The normalised value of a request field: each line trimmed with its white space runs
/// folded to one space, the lines joined with `", "` (§4.1 allows normalising "by combining
/// multiple header field lines ... or normalizing both header field values"), `%` and bytes
/// outside visible ASCII percent-encoded. For the `Accept*` list fields, the white space
/// around commas goes too, and `Accept-Language` and `Accept-Encoding` are lower-cased
/// (their values are case-insensitive). `None` when the field is absent, which only matches
/// absence.
pub(super) fn normalized(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut out = String::new();
    normalized_into(headers, name, &mut out).then_some(out)
}

/// Appends the normalised value of a request field (see [`normalized`]) to `out`; returns
/// whether the field was present. The one definition of this normalisation: the response
/// cache keys variants with it too.
pub(crate) fn normalized_into(headers: &HeaderMap, name: &str, out: &mut String) -> bool {
    let mut lines = headers.get_all(name).iter().peekable();
    if lines.peek().is_none() {
        return false;
    }
    let list = LIST_FIELDS.contains(&name);
    let caseless = CASELESS_FIELDS.contains(&name);
    for (i, line) in lines.enumerate() {
        if i > 0 {
            out.push_str(if list { "," } else { ", " });
        }
        // A quoted string keeps every byte: its commas and spaces are content.
        let quoted = line.as_bytes().contains(&b'"');
        let (list, caseless) = (list && !quoted, caseless && !quoted);
        let mut gap = false;
        let mut after_comma = false;
        for &b in line.as_bytes().trim_ascii() {
            if b == b' ' || b == b'\t' {
                gap = true;
                continue;
            }
            if list && b == b',' {
                // A list's members are what count, not the white space around its commas.
                gap = false;
                after_comma = true;
                out.push(',');
                continue;
            }
            if std::mem::take(&mut gap) && !after_comma {
                out.push(' ');
            }
            after_comma = false;
            push_escaped(out, if caseless { b.to_ascii_lowercase() } else { b });
        }
    }
    true
}

/// Request fields whose values are comma-separated lists: white space around the commas is
/// not part of them (RFC 9110 §5.6.1), so it is dropped.
const LIST_FIELDS: [&str; 4] = [
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
];

/// Request fields whose values are case-insensitive: language tags (RFC 5646 §2.1.1) and
/// content codings (RFC 9110 §8.4.1). Their members' order is kept: it can be the client's
/// preference.
const CASELESS_FIELDS: [&str; 2] = ["accept-encoding", "accept-language"];

/// One byte of a field value as normalised text: visible ASCII as it is, `%` and every other
/// byte (obs-text) percent-encoded, so that two values that differ in any byte never
/// normalise alike (a lossy UTF-8 reading would make all invalid bytes one character).
fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    if b.is_ascii_graphic() && b != b'%' {
        out.push(char::from(b));
    } else {
        out.push('%');
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

/// The request's values of the fields named by the response's `Vary`, sorted by name,
/// without duplicates (`*` is left out: it is read from the stored response itself).
pub(super) fn selecting_values(
    response_headers: &HeaderMap,
    request_headers: &HeaderMap,
) -> Vec<(String, Option<String>)> {
    selecting_names(response_headers)
        .into_iter()
        .map(|n| {
            let v = normalized(request_headers, &n);
            (n, v)
        })
        .collect()
}

/// The field names of a response's `Vary`, lower-cased, sorted, without duplicates and
/// without `*`.
pub(crate) fn selecting_names(response_headers: &HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = vary_names(response_headers).filter(|n| n != "*").collect();
    names.sort();
    names.dedup();
    names
}

/// Whether `request_headers` select the same response as the stored `values` did.
pub(super) fn matches(
    response_headers: &HeaderMap,
    values: &[(String, Option<String>)],
    request_headers: &HeaderMap,
) -> bool {
    !varies_on_everything(response_headers)
        && values
            .iter()
            .all(|(name, v)| normalized(request_headers, name) == *v)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::h;
    use super::super::test_util::*;
    use super::super::{BeforeRequest, CacheMode, CachePolicy};
    use super::*;

    fn vary_policy(vary: &[&str], req: &[(&str, &str)]) -> CachePolicy {
        let mut res_h: Vec<(&str, &str)> = vec![("cache-control", "max-age=100")];
        res_h.extend(vary.iter().map(|v| ("vary", *v)));
        policy(req, &res_h, CacheMode::Shared)
    }

    fn is_mismatch(p: &CachePolicy, req: &[(&str, &str)]) -> bool {
        matches!(p.before(&get(req), at(1)), BeforeRequest::VaryMismatch)
    }

    /// RFC 9111 §4.1: values that differ only in what their field's syntax ignores select
    /// the same variant; values that differ in what counts do not.
    #[test]
    fn equivalent_accept_values_select_alike() {
        let norm = |name: &'static str, lines: &[&'static str]| {
            let mut h = HeaderMap::new();
            for l in lines {
                h.append(name, http::HeaderValue::from_static(l));
            }
            normalized(&h, name).unwrap()
        };
        let lang = norm("accept-language", &["en-US, fr;q=0.5"]);
        for same in [
            &["en-us,fr;q=0.5"][..],
            &["EN-us ,\t fr;Q=0.5"],
            &["en-US", "fr;q=0.5"],
        ] {
            assert_eq!(norm("accept-language", same), lang, "{same:?}");
        }
        assert_ne!(
            norm("accept-language", &["fr;q=0.5, en-US"]),
            lang,
            "order is kept"
        );
        assert_eq!(
            norm("accept-encoding", &["GZIP, br"]),
            norm("accept-encoding", &["gzip,br"])
        );
        // Accept: spacing only (media type parameters may be case-sensitive).
        assert_eq!(norm("accept", &["text/html , */*"]), "text/html,*/*");
        assert_ne!(
            norm("accept", &["Text/HTML"]),
            norm("accept", &["text/html"])
        );
        // A quoted string is content: its commas and spaces count.
        assert_ne!(
            norm("accept", &["a/b;p=\"x ,y\""]),
            norm("accept", &["a/b;p=\"x,y\""])
        );
        // Not a list field: as it is, but for runs of white space.
        assert_eq!(norm("user-agent", &["A ,  B"]), "A , B");
    }

    #[test]
    fn values_that_differ_in_any_byte_never_normalise_alike() {
        let latin1 = |b: u8| {
            let mut m = HeaderMap::new();
            m.insert(
                "accept-language",
                http::HeaderValue::from_bytes(&[b'x', b]).unwrap(),
            );
            normalized(&m, "accept-language").unwrap()
        };
        assert_ne!(latin1(0xe9), latin1(0xe8));
        assert_eq!(latin1(0xe9), "x%E9");
        assert_ne!(normalized(&h(&[("a", "%E9")]), "a"), Some(latin1(0xe9)));
    }

    #[test]
    fn values_are_normalised() {
        let m = h(&[
            ("accept", "  text/html,\t  application/json  "),
            ("accept", "x   y"),
        ]);
        assert_eq!(
            normalized(&m, "accept").as_deref(),
            Some("text/html,application/json,x y")
        );
        let other = h(&[("x-list", "  a,\t  b  "), ("x-list", "x   y")]);
        assert_eq!(normalized(&other, "x-list").as_deref(), Some("a, b, x y"));
        assert_eq!(normalized(&m, "accept-language"), None);
        assert_eq!(normalized(&h(&[("a", "")]), "a").as_deref(), Some(""));
    }

    #[test]
    fn same_values_match_and_different_values_do_not() {
        let p = vary_policy(&["Accept-Encoding"], &[("accept-encoding", "gzip")]);
        assert!(matches!(
            p.before(&get(&[("accept-encoding", " gzip ")]), at(1)),
            BeforeRequest::Fresh { .. }
        ));
        assert!(is_mismatch(&p, &[("accept-encoding", "br")]));
        assert!(is_mismatch(&p, &[]));
    }

    #[test]
    fn absent_field_matches_only_absence() {
        let p = vary_policy(&["accept-language"], &[]);
        assert!(!is_mismatch(&p, &[]));
        assert!(is_mismatch(&p, &[("accept-language", "en")]));
        assert!(is_mismatch(&p, &[("accept-language", "")]));
    }

    #[test]
    fn several_vary_lines_combine() {
        let p = vary_policy(
            &["accept", "Accept-Language, accept"],
            &[("accept", "a"), ("accept-language", "en")],
        );
        assert_eq!(p.vary_request().len(), 2);
        assert!(!is_mismatch(
            &p,
            &[("accept", "a"), ("accept-language", "en")]
        ));
        assert!(is_mismatch(
            &p,
            &[("accept", "a"), ("accept-language", "fr")]
        ));
        assert!(is_mismatch(
            &p,
            &[("accept", "b"), ("accept-language", "en")]
        ));
    }

    #[test]
    fn request_lines_combine_before_comparing() {
        let p = vary_policy(&["accept"], &[("accept", "a, b")]);
        assert!(!is_mismatch(&p, &[("accept", "a"), ("accept", "b")]));
    }

    #[test]
    fn vary_star_never_matches_but_is_storable() {
        let p = vary_policy(&["*"], &[]);
        assert!(p.storable().is_ok());
        assert!(is_mismatch(&p, &[]));
        let p = vary_policy(&["accept, *"], &[]);
        assert!(is_mismatch(&p, &[]));
    }

    #[test]
    fn no_vary_always_matches() {
        let p = vary_policy(&[], &[("accept", "a")]);
        assert!(!is_mismatch(&p, &[("accept", "b")]));
    }
}
