//! HTTP-dates and `Age` wherever they are read (RFC 9110 §5.6.7, RFC 9111 §4.2, §5.1, §5.3):
//! `Date`, `Expires`, `Last-Modified`, `Age` on a response and `If-Modified-Since` /
//! `If-Unmodified-Since` on a request. Any value gives a freshness, an age and an outcome,
//! never a panic or an overflow, whatever the clock says.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::dates(data));
