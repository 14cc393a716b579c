//! HTTP-dates (RFC 9110 §5.6.7) as the rules read them.

use http::{HeaderMap, HeaderName};
use std::time::SystemTime;

/// One HTTP-date field: `None` when absent, repeated or invalid.
pub(crate) fn single_date(headers: &HeaderMap, name: HeaderName) -> Option<SystemTime> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    httpdate::parse_http_date(first.to_str().ok()?.trim()).ok()
}
