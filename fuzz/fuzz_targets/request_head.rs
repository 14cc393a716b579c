//! The request head as the middleware reads it (RFC 9112 §3.2, §3.2.2, RFC 9113 §8.3.1): any
//! target, `Host` lines and fields give a head or a clear refusal, never a panic; the
//! authority a cache keys by is lower-case and never carries the scheme's default port; and
//! the `Host` the middleware forwards names that same authority.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::request_head(data));
