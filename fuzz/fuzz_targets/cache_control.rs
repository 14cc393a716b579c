//! `Cache-Control` and `Pragma` (RFC 9111 §5.2, §5.4, RFC 5861, RFC 8246): lenient and total,
//! any lines give directives, never a panic, and every duration stays within 2^31 s.
#![no_main]

use http::{
    header::{CACHE_CONTROL, PRAGMA},
    HeaderMap, HeaderValue,
};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use tower_etag::cache_control::CacheControl;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(if i % 4 == 3 { PRAGMA } else { CACHE_CONTROL }, v);
        }
    }
    let cc = CacheControl::from_headers(&headers);
    let max = Duration::from_secs(1 << 31);
    for d in [cc.max_age, cc.s_maxage, cc.min_fresh, cc.stale_while_revalidate, cc.stale_if_error]
        .into_iter()
        .flatten()
    {
        assert!(d <= max, "{d:?}");
    }
    if let Some(Some(d)) = cc.max_stale {
        assert!(d <= max);
    }
    let _ = cc.no_cache.fields();
    let _ = cc.private.fields();
});
