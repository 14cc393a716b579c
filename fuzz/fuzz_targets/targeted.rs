//! Targeted cache-control fields (RFC 9213, on RFC 8941 Dictionaries): strict and total;
//! see `checks::targeted`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::targeted(data));
