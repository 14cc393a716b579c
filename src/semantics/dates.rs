//! HTTP-dates (RFC 9110 §5.6.7) as the rules read them.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::SystemTime;

/// One HTTP-date field: `None` when absent, repeated or invalid.
pub(crate) fn single_date(headers: &HeaderMap, name: HeaderName) -> Option<SystemTime> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    http_date(first)
}

/// The date of one field line: `None` unless it is one valid HTTP-date.
pub(crate) fn http_date(line: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(line.to_str().ok()?.trim()).ok()
}
