//! The request fields a reverse proxy changes before anything else sees the request: pure
//! header rules, no I/O.

use crate::policy::head::{connection_names, is_hop_by_hop, is_protected};
use http::{HeaderMap, HeaderName, HeaderValue, Request};

/// Removes the hop-by-hop fields and those `Connection` names (RFC 9110 §7.6.1). In a
/// response (`response`), never a field the cache's policy reads (`Cache-Control`, `Age`,
/// `ETag`…): an upstream's `Connection: cache-control` must not strip its `no-store` before
/// the cache sees it.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, response: bool) {
    // Most messages carry none of them: one look at the names present, nothing parsed.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let listed: Vec<HeaderName> = connection_names(headers)
        .into_iter()
        .filter(|name| !(response && is_protected(name)))
        .collect();
    remove_where(headers, |name| is_hop_by_hop(name) || listed.contains(name));
}

/// Removes the fields whose names `drop` picks, looking at each name present once (and
/// allocating nothing when none is).
fn remove_where(headers: &mut HeaderMap, drop: impl Fn(&HeaderName) -> bool) {
    let doomed: Vec<HeaderName> = headers.keys().filter(|n| drop(n)).cloned().collect();
    for name in &doomed {
        headers.remove(name);
    }
}

/// Fields with which a client can tell an origin which host, scheme, address or method it
/// is "really" asking for. Only a trusted proxy in front may set them.
fn is_client_routing(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "forwarded"
            | "x-forwarded-for"
            | "x-forwarded-host"
            | "x-forwarded-port"
            | "x-forwarded-prefix"
            | "x-forwarded-proto"
            | "x-real-ip"
            | "x-http-method-override"
            | "x-http-method"
            | "x-method-override"
            | "x-original-url"
            | "x-rewrite-url"
    )
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Says who the client is and how it came (`X-Forwarded-For`, `X-Forwarded-Proto`), after
/// the client's own routing fields are dropped, unless they are trusted.
fn set_forwarding(headers: &mut HeaderMap, peer: Option<&HeaderValue>, trusted: bool) {
    if !trusted && headers.keys().any(is_client_routing) {
        remove_where(headers, is_client_routing);
    }
    if let Some(peer) = peer {
        let value = match headers.get(&X_FORWARDED_FOR) {
            Some(earlier) => {
                let mut chain = earlier.as_bytes().to_vec();
                chain.extend_from_slice(b", ");
                chain.extend_from_slice(peer.as_bytes());
                HeaderValue::from_bytes(&chain).ok()
            }
            None => Some(peer.clone()),
        };
        if let Some(value) = value {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
}

/// What the origin will see of a request, made before the cache sees it (so the cache keys
/// on what the origin gets): hop-by-hop fields go (RFC 9110 §7.6.1), and unless they are
/// trusted so do the client's routing fields; `X-Forwarded-For` / `-Proto` say who came and
/// how.
pub(crate) fn prepare<B>(request: &mut Request<B>, peer: Option<&HeaderValue>, trusted: bool) {
    strip_hop_by_hop(request.headers_mut(), false);
    set_forwarding(request.headers_mut(), peer, trusted);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(fields: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get("/");
        for (name, value) in fields {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn names(request: &Request<()>) -> Vec<&str> {
        let mut names: Vec<&str> = request.headers().keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_not_forwarded() {
        let mut r = request(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-secret", "1"),
            ("accept", "text/html"),
        ]);
        prepare(&mut r, None, true);
        assert_eq!(names(&r), ["accept", "x-forwarded-proto"]);
    }

    /// An upstream's `Connection` never strips a field the cache reads from its response;
    /// a client's may (the request's fields are the client's to scope).
    #[test]
    fn a_response_keeps_the_fields_the_cache_reads_whatever_connection_says() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("cache-control, x-hop"),
        );
        headers.insert("cache-control", HeaderValue::from_static("no-store"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("proxy-authenticate", HeaderValue::from_static("Basic"));
        let mut response = headers.clone();
        strip_hop_by_hop(&mut response, true);
        assert_eq!(response.len(), 1, "{response:?}");
        assert_eq!(response["cache-control"], "no-store");
        let mut request = headers;
        strip_hop_by_hop(&mut request, false);
        assert!(request.is_empty(), "{request:?}");
    }

    #[test]
    fn a_clients_routing_fields_go_unless_trusted() {
        let fields = [
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "host=evil.example"),
            ("x-http-method-override", "DELETE"),
            ("x-forwarded-proto", "https"),
        ];
        let mut untrusted = request(&fields);
        prepare(&mut untrusted, None, false);
        assert_eq!(names(&untrusted), ["x-forwarded-proto"]);
        assert_eq!(untrusted.headers()["x-forwarded-proto"], "http");

        let mut trusted = request(&fields);
        prepare(&mut trusted, None, true);
        assert_eq!(names(&trusted).len(), 4);
        assert_eq!(trusted.headers()["x-forwarded-proto"], "https");
    }

    #[test]
    fn the_peer_is_appended_to_a_trusted_chain_and_replaces_an_untrusted_one() {
        let peer = HeaderValue::from_static("10.0.0.7");
        let mut trusted = request(&[("x-forwarded-for", "192.0.2.1")]);
        prepare(&mut trusted, Some(&peer), true);
        assert_eq!(trusted.headers()["x-forwarded-for"], "192.0.2.1, 10.0.0.7");
        let mut untrusted = request(&[("x-forwarded-for", "192.0.2.1")]);
        prepare(&mut untrusted, Some(&peer), false);
        assert_eq!(untrusted.headers()["x-forwarded-for"], "10.0.0.7");
    }
}
