//! HTTP-dates and `Age` wherever they are read (RFC 9110 §5.6.7, RFC 9111 §4.2, §5.1, §5.3):
//! `Date`, `Expires`, `Last-Modified`, `Age` on a response and `If-Modified-Since` /
//! `If-Unmodified-Since` on a request. Any value gives a freshness, an age and an outcome,
//! never a panic or an overflow, whatever the clock says.
#![no_main]

use http::{HeaderValue, Request, Response};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, SystemTime};
use tower_etag::{
    conditional::{Preconditions, Validators},
    policy::{freshness, CacheMode, CachePolicy},
    semantics::request::RequestHead,
};

const RESPONSE: [&str; 5] = ["date", "expires", "last-modified", "age", "cache-control"];
const REQUEST: [&str; 2] = ["if-modified-since", "if-unmodified-since"];

fuzz_target!(|data: &[u8]| {
    let Some((&clock, rest)) = data.split_first() else {
        return;
    };
    let mut req = Request::get("/r");
    let mut res = Response::builder();
    for (i, line) in rest.split(|&b| b == b'\n').enumerate() {
        let Ok(v) = HeaderValue::from_bytes(line) else {
            continue;
        };
        if i % 7 < 5 {
            res = res.header(RESPONSE[i % 7], v);
        } else {
            req = req.header(REQUEST[i % 7 - 5], v);
        }
    }
    let (Ok(req), Ok(res)) = (req.body(()), res.body(())) else {
        return;
    };
    let (req, ()) = req.into_parts();
    let (res, ()) = res.into_parts();
    // Clocks from the epoch to far beyond 2100, in both directions of skew.
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(clock) * 40_000_000);
    let later = t0 + Duration::from_secs(u64::from(clock) * 1_000);
    for mode in [CacheMode::Shared, CacheMode::Private] {
        let policy = CachePolicy::new(&req, &res, t0, t0, mode);
        let _ = policy.freshness_lifetime();
        let _ = policy.age(later);
        let _ = policy.age(t0 - Duration::from_secs(u64::from(clock)));
        let _ = policy.time_to_live(later);
        let _ = policy.storage_ttl(later);
        if let Ok(head) = RequestHead::from_parts(&req) {
            let _ = policy.before_request(&req, &head, later);
        }
    }
    let _ = freshness::age_header(&res.headers);
    let pre = Preconditions::from_request(&req.method, &req.headers);
    let last_modified = res
        .headers
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let _ = pre.evaluate(Validators {
        etag: None,
        last_modified,
    });
});
