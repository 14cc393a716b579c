//! Entity tags and the lists of If-Match / If-None-Match (RFC 9110 §8.8.3, §13.1.1, §13.1.2):
//! any bytes parse to a result, never a panic; a tag that parses formats back to itself; a
//! precondition holds or fails, whatever the list holds.
#![no_main]

use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use tower_etag::{
    conditional::{Preconditions, Validators},
    etag::EntityTag,
};

fuzz_target!(|data: &[u8]| {
    let (tag, list) = data.split_at(data.iter().position(|&b| b == b'\n').unwrap_or(data.len()));
    let Ok(tag_value) = HeaderValue::from_bytes(tag) else {
        return;
    };
    let current = EntityTag::from_header_value(&tag_value);
    if let Some(t) = &current {
        let back = EntityTag::from_header_value(&t.to_header_value()).expect("formats back");
        assert!(back.strong_eq(t) || (t.is_weak() && back.weak_eq(t) && back.is_weak()));
        assert!(t.weak_eq(t));
    }
    let mut headers = HeaderMap::new();
    for line in list.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(http::header::IF_NONE_MATCH, v.clone());
            headers.append(http::header::IF_MATCH, v);
        }
    }
    for method in [Method::GET, Method::PUT] {
        let pre = Preconditions::from_request(&method, &headers);
        let _ = pre.evaluate(Validators {
            etag: current.as_ref(),
            last_modified: None,
        });
    }
});
