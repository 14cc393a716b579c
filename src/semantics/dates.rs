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

/// The date of one field line: `None` unless it is one valid HTTP-date, in any of the three
/// formats of RFC 9110 §5.6.7 (IMF-fixdate, RFC 850, asctime). Day and month names and `GMT`
/// are read without regard to case: "although all date formats are specified to be
/// case-sensitive, a cache recipient SHOULD match the field value case-insensitively"
/// (RFC 9111 §4.2). Anything else must be exact.
pub(crate) fn http_date(line: &HeaderValue) -> Option<SystemTime> {
    let text = line.to_str().ok()?.trim();
    httpdate::parse_http_date(text)
        .or_else(|_| httpdate::parse_http_date(&canonical_case(text)))
        .ok()
}

/// `text` with each run of letters in the case the date formats spell names in: `Sun`,
/// `Sunday`, `Nov`, and `GMT`.
fn canonical_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run_start = true;
    for c in text.chars() {
        if c.is_ascii_alphabetic() {
            out.push(if run_start {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            });
            run_start = false;
        } else {
            out.push(c);
            run_start = true;
        }
    }
    out.replace("Gmt", "GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &'static str) -> Option<SystemTime> {
        http_date(&HeaderValue::from_static(s))
    }

    #[test]
    fn the_three_formats_in_any_case() {
        let want = date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        for s in [
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUN, 06 NOV 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "SUNDAY, 06-nov-94 08:49:37 Gmt",
            "Sun Nov  6 08:49:37 1994",
            "sun nov  6 08:49:37 1994",
        ] {
            assert_eq!(date(s), Some(want), "{s:?}");
        }
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994",
            "0",
            "yesterday",
        ] {
            assert_eq!(date(bad), None, "{bad:?}");
        }
    }
}
