//! `Vary` (RFC 9111 §4.1): any field names on the response and any request fields select or
//! reject the stored response, never a panic; a request identical to the one that was
//! stored is always selected (unless `Vary: *`).
#![no_main]

use http::{HeaderName, HeaderValue, Request, Response};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};
use tower_etag::{
    policy::{BeforeRequest, CacheMode, CachePolicy},
    semantics::request::RequestHead,
};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let vary = parts.next().unwrap_or_default();
    let mut stored_req = Request::get("/v");
    let mut new_req = Request::get("/v");
    for (i, field) in parts.enumerate() {
        let Some(eq) = field.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&field[..eq]),
            HeaderValue::from_bytes(&field[eq + 1..]),
        ) else {
            continue;
        };
        if i % 2 == 0 {
            stored_req = stored_req.header(name, value);
        } else {
            new_req = new_req.header(name, value);
        }
    }
    let Ok(vary) = HeaderValue::from_bytes(vary) else {
        return;
    };
    let res = Response::builder()
        .header("cache-control", "max-age=60")
        .header("vary", vary)
        .body(());
    let (Ok(stored_req), Ok(new_req), Ok(res)) = (stored_req.body(()), new_req.body(()), res) else {
        return;
    };
    let (stored_req, ()) = stored_req.into_parts();
    let (new_req, ()) = new_req.into_parts();
    let (res, ()) = res.into_parts();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let policy = CachePolicy::new(&stored_req, &res, t0, t0, CacheMode::Shared);
    let now = t0 + Duration::from_secs(1);
    if let Ok(head) = RequestHead::from_parts(&new_req) {
        let _ = policy.before_request(&new_req, &head, now);
    }
    if let Ok(head) = RequestHead::from_parts(&stored_req) {
        let same = policy.before_request(&stored_req, &head, now);
        let star = policy
            .response_headers()
            .get_all("vary")
            .iter()
            .any(|v| v.as_bytes().split(|&b| b == b',').any(|n| n.trim_ascii() == b"*"));
        if !star {
            assert!(
                !matches!(same, BeforeRequest::VaryMismatch),
                "the request that was stored does not select its own response"
            );
        }
    }
});
