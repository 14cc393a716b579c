//! Entity tags and the lists of If-Match / If-None-Match (RFC 9110 §8.8.3, §13.1.1, §13.1.2):
//! any bytes parse to a result, never a panic; a tag that parses formats back to itself; a
//! precondition holds or fails, whatever the list holds.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::etag(data));
