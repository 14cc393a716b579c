//! The request head as the middleware reads it (RFC 9112 §3.2, §3.2.2, RFC 9113 §8.3.1): any
//! target, `Host` lines and fields give a head or a clear refusal, never a panic; the
//! authority a cache keys by is lower-case and never carries the scheme's default port; and
//! the `Host` the middleware forwards names that same authority.
#![no_main]

use http::{HeaderValue, Request, Uri, Version};
use libfuzzer_sys::fuzz_target;
use tower_etag::semantics::request::{host_to_forward, target_authority, RequestHead};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut lines = rest.split(|&b| b == b'\n');
    let Ok(uri) = Uri::try_from(lines.next().unwrap_or_default()) else {
        return;
    };
    let version = if flags & 1 == 0 { Version::HTTP_11 } else { Version::HTTP_2 };
    let mut req = Request::get(uri).version(version);
    for (i, line) in lines.enumerate() {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            let name = ["host", "content-length", "cache-control", "if-none-match", "range"][i % 5];
            req = req.header(name, v);
        }
    }
    let Ok(req) = req.body(()) else {
        return;
    };
    let (parts, ()) = req.into_parts();
    let Ok(head) = RequestHead::from_parts(&parts) else {
        return;
    };
    if let Some(authority) = &head.authority {
        let a = authority.as_str();
        assert!(!a.bytes().any(|b| b.is_ascii_uppercase()), "{a}");
        // The scheme's default port, where it has one (a request without a scheme is http).
        let default = match parts.uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            None | Some("http" | "ws") => Some(":80"),
            Some("https" | "wss") => Some(":443"),
            Some(_) => None,
        };
        if let Some(default) = default {
            assert!(!a.ends_with(default), "{a}");
        }
    }
    if let Some(host) = host_to_forward(parts.version, &parts.uri, &parts.headers) {
        let key = head.authority.as_ref().map(|a| a.as_str());
        assert_eq!(host.to_str().ok(), key, "the origin would be asked for another host");
    }
    let _ = target_authority(parts.version, &parts.uri, &parts.headers);
});
