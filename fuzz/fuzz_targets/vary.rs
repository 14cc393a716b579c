//! `Vary` (RFC 9111 §4.1): any field names on the response and any request fields select or
//! reject the stored response, never a panic; a request identical to the one that was
//! stored is always selected (unless `Vary: *`).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::vary(data));
