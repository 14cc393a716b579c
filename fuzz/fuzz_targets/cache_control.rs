//! `Cache-Control` and `Pragma` (RFC 9111 §5.2, §5.4, RFC 5861, RFC 8246): lenient and total,
//! any lines give directives, never a panic, and every duration stays within 2^31 s.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::cache_control(data));
