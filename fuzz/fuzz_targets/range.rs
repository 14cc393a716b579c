//! `Range` and `If-Range` (RFC 9110 §14, §13.1.5) against a stored representation: total,
//! and every part within the body; see `checks::range`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::range(data));
