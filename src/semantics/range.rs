//! Byte ranges (RFC 9110 §14) as a cache answers them from a stored full response: which
//! part a `Range` asks for, and whether an `If-Range` still lets it (§13.1.5).
//!
//! One range is answered with `206 Partial Content`; a request for several gets the whole
//! representation (`200`), which §14.2 allows ("a server MAY ignore the Range header
//! field"), as does a `Range` that cannot be read.

use super::{dates::http_date, etag::EntityTag};
use http::{
    header::{DATE, ETAG, LAST_MODIFIED},
    HeaderMap, HeaderValue,
};

/// How to answer a `Range` from a representation of a known length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    /// The whole representation (`200`): no usable range, or several.
    Full,
    /// `206 Partial Content` with the bytes `start..=end`.
    Partial {
        /// The first byte.
        start: u64,
        /// The last byte (inclusive).
        end: u64,
    },
    /// `416 Range Not Satisfiable`: no byte of the representation is asked for (§14.1.1).
    Unsatisfiable,
}

/// One `range-spec` of a `bytes` range set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last`.
    From(u64, Option<u64>),
    /// `-length`: the last `length` bytes.
    Suffix(u64),
}

/// What the `Range` lines of a GET ask of a representation of `len` bytes (RFC 9110
/// §14.1.2, §14.2).
pub fn answer<'a>(lines: impl IntoIterator<Item = &'a HeaderValue>, len: u64) -> RangeAnswer {
    let mut lines = lines.into_iter();
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return RangeAnswer::Full;
    };
    let Some(specs) = parse(line) else {
        return RangeAnswer::Full;
    };
    let [spec] = specs.as_slice() else {
        return RangeAnswer::Full;
    };
    match *spec {
        // §14.1.1: satisfiable when the first position is within the representation.
        Spec::From(first, _) if first >= len => RangeAnswer::Unsatisfiable,
        Spec::From(first, last) => RangeAnswer::Partial {
            start: first,
            end: last.map_or(len - 1, |l| l.min(len - 1)),
        },
        // A suffix of length 0 asks for nothing (§14.1.1). One longer than the representation
        // is all of it, even an empty one: there is no 206 of no bytes, so the whole 200.
        Spec::Suffix(0) => RangeAnswer::Unsatisfiable,
        Spec::Suffix(_) if len == 0 => RangeAnswer::Full,
        Spec::Suffix(n) => RangeAnswer::Partial {
            start: len - n.min(len),
            end: len - 1,
        },
    }
}

/// `bytes=` and a range set; `None` for another unit or a set that is not one.
fn parse(line: &HeaderValue) -> Option<Vec<Spec>> {
    let text = line.to_str().ok()?.trim();
    let (unit, set) = text.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for member in set.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue; // §5.6.1: empty list elements do not count
        }
        let (first, last) = member.split_once('-')?;
        let spec = match (digits(first), last) {
            (None, _) if first.is_empty() => Spec::Suffix(digits(last)?),
            (Some(first), "") => Spec::From(first, None),
            (Some(first), last) => {
                let last = digits(last)?;
                if last < first {
                    return None; // §14.1.1: an invalid range-spec makes the set invalid
                }
                Spec::From(first, Some(last))
            }
            (None, _) => return None,
        };
        specs.push(spec);
    }
    (!specs.is_empty()).then_some(specs)
}

/// `1*DIGIT`, saturating (a position past any representation is unsatisfiable anyway).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

/// Whether the `If-Range` of a request lets its `Range` apply to the stored response with
/// `headers` (RFC 9110 §13.1.5): an entity tag must match the stored `ETag` by strong
/// comparison (a weak tag never does), a date must equal the stored `Last-Modified`
/// exactly and be strong (the stored `Date` at least a minute later, §8.8.2.2). Anything
/// else, or no stored validator, means the whole representation.
pub fn if_range_holds(if_range: &HeaderValue, headers: &HeaderMap) -> bool {
    let text = if_range.as_bytes().trim_ascii();
    if text.starts_with(b"\"") || text.starts_with(b"W/") {
        let (Some(wanted), Some(stored)) = (
            EntityTag::from_header_value(if_range),
            headers.get(ETAG).and_then(EntityTag::from_header_value),
        ) else {
            return false;
        };
        return wanted.strong_eq(&stored);
    }
    // §8.8.2.2: for a cache, a Last-Modified is a strong validator only when the stored
    // `Date` is at least a minute after it (a representation changed twice within a
    // second would have the same date).
    let date = headers.get(DATE).and_then(http_date);
    match (
        http_date(if_range),
        headers.get(LAST_MODIFIED).and_then(http_date),
    ) {
        (Some(wanted), Some(stored)) => {
            wanted == stored
                && date.is_some_and(|d| {
                    d.duration_since(stored)
                        .is_ok_and(|gap| gap.as_secs() >= 60)
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(range: &'static str, len: u64) -> RangeAnswer {
        answer([&HeaderValue::from_static(range)], len)
    }

    fn part(start: u64, end: u64) -> RangeAnswer {
        RangeAnswer::Partial { start, end }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(ask("bytes=2-4", 10), part(2, 4));
        assert_eq!(ask("bytes=7-", 10), part(7, 9));
        assert_eq!(
            ask("bytes=5-100", 10),
            part(5, 9),
            "the last position is clamped"
        );
        assert_eq!(ask("bytes=-3", 10), part(7, 9));
        assert_eq!(
            ask("bytes=-30", 10),
            part(0, 9),
            "a suffix longer than the whole"
        );
        assert_eq!(ask("Bytes = 0-0", 10), part(0, 0), "the unit without case");
        assert_eq!(
            ask("bytes=0-0,", 10),
            part(0, 0),
            "an empty element does not count"
        );
    }

    /// §14.1.1: nothing of the representation asked for.
    #[test]
    fn unsatisfiable_ranges() {
        for range in ["bytes=10-", "bytes=10-20", "bytes=-0"] {
            assert_eq!(ask(range, 10), RangeAnswer::Unsatisfiable, "{range}");
        }
        assert_eq!(ask("bytes=0-", 0), RangeAnswer::Unsatisfiable);
        // §14.1.1: only a zero suffix fails to overlap; a longer one is all of an empty body.
        assert_eq!(ask("bytes=-5", 0), RangeAnswer::Full);
    }

    /// What is not one usable range is answered with the whole representation.
    #[test]
    fn the_whole_for_anything_else() {
        for range in [
            "bytes=0-1,4-5", // several: the whole, by choice
            "bytes=5-2",     // last before first: invalid
            "items=0-1",     // another unit
            "bytes=a-b",
            "bytes=",
            "bytes=1",
            "0-1",
        ] {
            assert_eq!(ask(range, 10), RangeAnswer::Full, "{range}");
        }
        let two = [
            HeaderValue::from_static("bytes=0-1"),
            HeaderValue::from_static("bytes=2-3"),
        ];
        assert_eq!(answer(&two, 10), RangeAnswer::Full, "two lines");
    }

    #[test]
    fn if_range_compares_strongly_or_by_exact_date() {
        let mut stored = HeaderMap::new();
        stored.insert(ETAG, HeaderValue::from_static("\"v1\""));
        stored.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        // A minute after the last modification: the date is a strong validator.
        stored.insert(
            DATE,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:50:37 GMT"),
        );
        let holds = |v: &'static str| if_range_holds(&HeaderValue::from_static(v), &stored);
        assert!(holds("\"v1\""));
        assert!(!holds("\"v2\""));
        assert!(!holds("W/\"v1\""), "a weak tag never matches");
        assert!(holds("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(!holds("Sun, 06 Nov 1994 08:49:38 GMT"));
        assert!(!holds("garbage"));
        // A date less than a minute before the stored Date is weak: never a match.
        stored.insert(
            DATE,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:50:36 GMT"),
        );
        assert!(!if_range_holds(
            &HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
            &stored
        ));
        assert!(!if_range_holds(
            &HeaderValue::from_static("\"v1\""),
            &HeaderMap::new()
        ));
    }
}
