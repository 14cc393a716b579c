//! The HTTP rules of RFC 9110 that the caches apply, as pure code (no I/O, no async):
//! entity tags, preconditions, `Cache-Control` and targeted cache control (RFC 9213, on
//! Structured Field Dictionaries), dates and the request head as the caches read it.

pub mod cache_control;
pub mod conditional;
pub(crate) mod dates;
pub mod etag;
pub(crate) mod headers;
pub mod range;
pub mod request;
pub(crate) mod structured;
pub mod targeted;
