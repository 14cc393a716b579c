//! Invalidation after unsafe requests (RFC 9111 §4.4), with reference resolution
//! (RFC 3986 §5.2) for `Location` and `Content-Location`.

use http::{
    header::{CONTENT_LOCATION, LOCATION},
    HeaderMap, HeaderName, Method, StatusCode, Uri,
};

/// The URIs whose stored responses a cache must invalidate after the response `status` /
/// `response_headers` to a `method` request for `request_uri` (RFC 9111 §4.4).
///
/// Empty for safe methods (GET, HEAD, OPTIONS, TRACE) and for error or non-final statuses.
/// Otherwise: `request_uri` itself, then `Location` and `Content-Location` when present
/// (one valid field line each), resolved against `request_uri` (RFC 3986 §5.2: relative
/// references resolve) and kept only when same-origin: a reference that names another
/// scheme, host or port is left out (§4.4: "MUST NOT ... if the host part is different",
/// to stop one origin from purging another's entries).
///
/// When `request_uri` is in origin form (`/path?q`, as servers usually see it), only relative
/// references and absolute paths qualify, and the results are in origin form too: the
/// caller supplies the host (e.g. from the request's `Host`). Pass an absolute request URI
/// to have absolute `Location`s compared by origin.
#[must_use]
pub fn invalidated_uris(
    method: &Method,
    status: StatusCode,
    request_uri: &Uri,
    response_headers: &HeaderMap,
) -> Vec<Uri> {
    let safe = matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    if safe || !(status.is_success() || status.is_redirection()) {
        return Vec::new();
    }
    let mut out = vec![request_uri.clone()];
    for name in [LOCATION, CONTENT_LOCATION] {
        let Some(reference) = single_value(response_headers, name) else {
            continue;
        };
        if let Some(uri) = resolve(request_uri, reference).filter(|u| same_origin(request_uri, u)) {
            if !out.contains(&uri) {
                out.push(uri);
            }
        }
    }
    out
}

fn single_value(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    let s = first.to_str().ok()?.trim();
    (!s.is_empty()).then_some(s)
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Same scheme, host and (effective) port; two authority-less URIs are the same origin.
fn same_origin(base: &Uri, target: &Uri) -> bool {
    match (base.authority(), target.authority()) {
        (None, None) => target.scheme().is_none() || target.scheme() == base.scheme(),
        (Some(a), Some(b)) => {
            let (sa, sb) = (
                base.scheme_str().unwrap_or(""),
                target.scheme_str().unwrap_or(""),
            );
            sa.eq_ignore_ascii_case(sb)
                && a.host().eq_ignore_ascii_case(b.host())
                && a.port_u16().or_else(|| default_port(sa))
                    == b.port_u16().or_else(|| default_port(sb))
        }
        _ => false,
    }
}

/// The parts of a URI reference (RFC 3986 §3), fragment removed.
struct Reference<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
}

fn parse_reference(s: &str) -> Reference<'_> {
    let s = s.split_once('#').map_or(s, |(before, _)| before);
    let (scheme, rest) = match s.split_once(':') {
        Some((scheme, rest))
            if scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            (Some(scheme), rest)
        }
        _ => (None, s),
    };
    let (authority, rest) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?']).unwrap_or(after.len());
            (Some(&after[..end]), &after[end..])
        }
        None => (None, rest),
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    Reference {
        scheme,
        authority,
        path,
        query,
    }
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut output: Vec<&str> = Vec::new();
    let absolute = path.starts_with('/');
    let mut segments: Vec<&str> = Vec::new();
    // Work on segments: "." is dropped, ".." drops the previous segment.
    if absolute {
        input = &input[1..];
    }
    for seg in input.split('/') {
        segments.push(seg);
    }
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, seg) in segments.into_iter().enumerate() {
        match seg {
            "." => trailing_slash = i == last,
            ".." => {
                output.pop();
                trailing_slash = i == last;
            }
            s => {
                output.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    if absolute {
        out.push('/');
    }
    out.push_str(&output.join("/"));
    if trailing_slash && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Resolves `reference` against `base` (RFC 3986 §5.2.2). `None` when the result is not a
/// valid `Uri` or has a scheme but no authority (e.g. `mailto:`).
fn resolve(base: &Uri, reference: &str) -> Option<Uri> {
    let r = parse_reference(reference);
    let base_path = base.path();
    let (scheme, authority, path, query): (Option<&str>, Option<&str>, String, Option<&str>) =
        if let Some(scheme) = r.scheme {
            (
                Some(scheme),
                r.authority,
                remove_dot_segments(r.path),
                r.query,
            )
        } else if let Some(authority) = r.authority {
            (
                base.scheme_str(),
                Some(authority),
                remove_dot_segments(r.path),
                r.query,
            )
        } else {
            let authority = base.authority().map(|a| a.as_str());
            if r.path.is_empty() {
                (
                    base.scheme_str(),
                    authority,
                    base_path.to_owned(),
                    r.query.or(base.query()),
                )
            } else if r.path.starts_with('/') {
                (
                    base.scheme_str(),
                    authority,
                    remove_dot_segments(r.path),
                    r.query,
                )
            } else {
                // §5.2.3 merge: the base path up to its last "/", then the reference.
                let dir = match base_path.rfind('/') {
                    Some(i) => &base_path[..=i],
                    None => "/",
                };
                (
                    base.scheme_str(),
                    authority,
                    remove_dot_segments(&format!("{dir}{}", r.path)),
                    r.query,
                )
            }
        };
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    let text = match (scheme, authority) {
        (Some(s), Some(a)) if !a.is_empty() => format!("{s}://{a}{path}{query}"),
        (None, None) => format!("{path}{query}"),
        _ => return None,
    };
    Uri::try_from(text).ok()
}

#[cfg(test)]
mod tests {
    use super::super::test_util::h;
    use super::*;

    fn uris(method: Method, status: u16, uri: &str, headers: &[(&str, &str)]) -> Vec<String> {
        invalidated_uris(
            &method,
            StatusCode::from_u16(status).unwrap(),
            &uri.parse().unwrap(),
            &h(headers),
        )
        .iter()
        .map(ToString::to_string)
        .collect()
    }

    #[test]
    fn safe_methods_invalidate_nothing() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(uris(m, 200, "/a", &[("location", "/b")]).is_empty());
        }
    }

    #[test]
    fn unsafe_methods_invalidate_on_success_and_redirect_only() {
        for m in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::from_bytes(b"PURGE").unwrap(),
        ] {
            assert_eq!(uris(m.clone(), 204, "/a", &[]), ["/a"]);
            assert_eq!(uris(m.clone(), 303, "/a", &[]), ["/a"]);
            assert!(uris(m.clone(), 404, "/a", &[]).is_empty());
            assert!(uris(m, 500, "/a", &[]).is_empty());
        }
    }

    #[test]
    fn location_and_content_location_resolve() {
        let got = uris(
            Method::POST,
            201,
            "/items/new?x=1",
            &[
                ("location", "42"),
                ("content-location", "../all?sort=1#frag"),
            ],
        );
        assert_eq!(got, ["/items/new?x=1", "/items/42", "/all?sort=1"]);
        let got = uris(Method::PUT, 200, "/a/b", &[("location", "/c/./d/../e")]);
        assert_eq!(got, ["/a/b", "/c/e"]);
        // Same as the request URI: listed once.
        assert_eq!(
            uris(Method::PUT, 200, "/a", &[("content-location", "/a")]),
            ["/a"]
        );
    }

    #[test]
    fn same_origin_only() {
        let base = "https://example.com/a";
        let got = uris(
            Method::POST,
            200,
            base,
            &[
                ("location", "https://EXAMPLE.com:443/b"),
                ("content-location", "//example.com/c"),
            ],
        );
        assert_eq!(
            got,
            [
                "https://example.com/a",
                "https://EXAMPLE.com:443/b",
                "https://example.com/c"
            ]
        );
        for other in [
            "http://example.com/b",
            "https://evil.com/b",
            "https://example.com:8443/b",
            "//evil.com/b",
            "mailto:x@example.com",
        ] {
            assert_eq!(
                uris(Method::POST, 200, base, &[("location", other)]),
                [base],
                "{other}"
            );
        }
        // An origin-form request URI cannot vouch for any absolute reference.
        assert_eq!(
            uris(
                Method::POST,
                200,
                "/a",
                &[("location", "https://example.com/b")]
            ),
            ["/a"]
        );
        assert_eq!(
            uris(Method::POST, 200, "/a", &[("location", "//evil.com/b")]),
            ["/a"]
        );
    }

    #[test]
    fn bad_or_repeated_locations_are_ignored() {
        assert_eq!(
            uris(
                Method::POST,
                200,
                "/a",
                &[("location", "/b"), ("location", "/c")]
            ),
            ["/a"]
        );
        assert_eq!(
            uris(Method::POST, 200, "/a", &[("location", "/b c")]),
            ["/a"]
        );
        assert_eq!(uris(Method::POST, 200, "/a", &[("location", "")]), ["/a"]);
    }

    #[test]
    fn dot_segments() {
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("/../x"), "/x");
        assert_eq!(remove_dot_segments("/a/b/.."), "/a/");
        assert_eq!(remove_dot_segments("/a/."), "/a/");
    }

    #[test]
    fn rfc_3986_examples() {
        let base: Uri = "http://a/b/c/d;p?q".parse().unwrap();
        for (r, want) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../../g", "http://a/g"),
        ] {
            assert_eq!(resolve(&base, r).unwrap().to_string(), want, "{r}");
        }
    }
}
