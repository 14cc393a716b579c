//! Header plumbing shared by the providers: 304/412 heads, `Vary`.

use super::{
    conditional::{Outcome, Preconditions, Validators},
    dates::single_date,
    etag::EntityTag,
};
use http::header::{CACHE_CONTROL, DATE, ETAG, EXPIRES, LAST_MODIFIED};
use http::{
    header::{
        CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, TRAILER,
        TRANSFER_ENCODING, VARY,
    },
    response::Parts,
    HeaderMap, HeaderName, HeaderValue, StatusCode,
};
use http_body::SizeHint;

/// Fields that describe the body a 304 or 412 does not carry (RFC 9110 §15.4.5: a 304 has no
/// content and no Content-Length of the representation it stands for).
const CONTENT_FIELDS: [HeaderName; 7] = [
    CONTENT_LENGTH,
    CONTENT_TYPE,
    CONTENT_ENCODING,
    CONTENT_LANGUAGE,
    CONTENT_RANGE,
    TRANSFER_ENCODING,
    TRAILER,
];

/// Turns the head of a full response into the head of a bodiless answer (`304` or `412`):
/// the status changes and the content fields go; `ETag`, `Cache-Control`, `Expires`,
/// `Content-Location`, `Date`, `Vary` and `Last-Modified` stay as the 200 had them.
pub(crate) fn into_bodiless(parts: &mut Parts, status: StatusCode) {
    parts.status = status;
    bodiless_fields(&mut parts.headers, status);
}

/// The fields of a bodiless answer made from those of a full response: without the content
/// fields, and for a `412` without the freshness fields too (`Cache-Control`, `Expires`): a
/// `412` answers this request's preconditions only, and with the 200's freshness a cache
/// downstream could store it and serve it to requests without them.
pub(crate) fn bodiless_fields(headers: &mut HeaderMap, status: StatusCode) {
    for name in CONTENT_FIELDS {
        headers.remove(name);
    }
    without_freshness_if_412(headers, status);
    merge_vary(headers);
}

/// A `412`'s fields without the freshness of the response it stands for (see
/// [`bodiless_fields`]); other statuses keep theirs.
pub(crate) fn without_freshness_if_412(headers: &mut HeaderMap, status: StatusCode) {
    if status == StatusCode::PRECONDITION_FAILED {
        headers.remove(CACHE_CONTROL);
        headers.remove(EXPIRES);
    }
}

/// The size a bodiless answer states: none for a `304` (RFC 9110 §8.6: not the 200's
/// `Content-Length`, and not 0), exactly 0 for anything else (a `412`).
pub(crate) fn bodiless_hint(status: StatusCode) -> SizeHint {
    if status == StatusCode::NOT_MODIFIED {
        SizeHint::new()
    } else {
        SizeHint::with_exact(0)
    }
}

/// What a response about to be sent becomes once the client's preconditions are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The response as it is.
    Full,
    /// The response's head without its body (a HEAD request).
    Head,
    /// `304 Not Modified`: no body, and no stated size (RFC 9110 §8.6).
    NotModified,
    /// `412 Precondition Failed`: an empty body.
    PreconditionFailed,
}

/// Who answers: the origin (through the ETag layer) or a cache from a response it stores,
/// which reads `If-Modified-Since` against the stored `Date` when there is no
/// `Last-Modified` (RFC 9111 §4.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Origin,
    Cache,
}

/// Answers the client's preconditions on a response head about to be sent, from the head's
/// own `ETag` and `Last-Modified` (and, for a cache, its `Date`: see [`Role`]), only when it
/// is 2xx (RFC 9110 §13.2.1), turning the head into a 304 or 412 where they say so
/// (§13.2.2).
pub(crate) fn answer_preconditions_as(
    parts: &mut Parts,
    preconditions: &Preconditions,
    is_head: bool,
    role: Role,
) -> Answer {
    if !preconditions.is_empty() && parts.status.is_success() {
        let etag = parts
            .headers
            .get(ETAG)
            .and_then(EntityTag::from_origin_header_value);
        let last_modified = single_date(&parts.headers, LAST_MODIFIED);
        let stored_date = match role {
            Role::Cache => single_date(&parts.headers, DATE),
            Role::Origin => None,
        };
        let current = Validators {
            etag: etag.as_ref(),
            last_modified,
        };
        match preconditions.evaluate_in_cache(current, stored_date) {
            Outcome::Proceed => {}
            Outcome::NotModified => {
                into_bodiless(parts, StatusCode::NOT_MODIFIED);
                return Answer::NotModified;
            }
            Outcome::PreconditionFailed => {
                into_bodiless(parts, StatusCode::PRECONDITION_FAILED);
                return Answer::PreconditionFailed;
            }
        }
    }
    if is_head {
        Answer::Head
    } else {
        Answer::Full
    }
}

/// The `Vary` field names of `headers`, lower-cased, over all its lines.
///
/// Members are trimmed of optional white space (SP and HTAB only, RFC 9110 §5.6.3). A member
/// that is neither `*` nor a field name (a token, §5.6.2) is read as `*`: the response varies
/// on something that cannot be named, so it can never be selected (found by fuzzing: a
/// Unicode-aware trim made `*\u{85}` count as `*` and other junk as names).
pub(crate) fn vary_names(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers.get_all(VARY).iter().flat_map(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .map(|n| n.trim_ascii_start().trim_ascii_end())
            .filter(|n| !n.is_empty())
            .map(|n| match HeaderName::from_bytes(n) {
                Ok(name) if n != b"*" => name.as_str().to_owned(),
                _ => "*".to_owned(),
            })
            .collect::<Vec<_>>()
    })
}

/// A copy of `headers` without `skip`, with room for `room` more fields: a clone has no
/// spare capacity, and the fields a cache adds to what it serves (`Age`, `Cache-Status`)
/// would make it grow, twice.
pub(crate) fn copy_with_room(headers: &HeaderMap, skip: &HeaderName, room: usize) -> HeaderMap {
    let mut copy = HeaderMap::with_capacity(headers.len() + room);
    for (name, value) in headers {
        if name != skip {
            copy.append(name.clone(), value.clone());
        }
    }
    copy
}

/// The decimal text of 0 to 99, for header values made without formatting or allocating.
const SMALL_NUMBERS: [&str; 100] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32",
    "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46", "47", "48",
    "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59", "60", "61", "62", "63", "64",
    "65", "66", "67", "68", "69", "70", "71", "72", "73", "74", "75", "76", "77", "78", "79", "80",
    "81", "82", "83", "84", "85", "86", "87", "88", "89", "90", "91", "92", "93", "94", "95", "96",
    "97", "98", "99",
];

/// A number of seconds (`Age`, `max-age`) as a header value; the usual small ones without
/// allocating.
pub(crate) fn seconds_value(secs: u64) -> HeaderValue {
    match SMALL_NUMBERS.get(secs as usize) {
        Some(text) => HeaderValue::from_static(text),
        None => HeaderValue::from(secs),
    }
}

/// Appends the decimal digits of `n` to `out`, without the formatting machinery.
pub(crate) fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

/// Appends the `width` (at most 32) low hex digits of `n`, lower-case, to `out`.
pub(crate) fn push_hex(out: &mut String, n: u128, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    let width = width.min(buf.len());
    for (i, slot) in buf[..width].iter_mut().enumerate() {
        let shift = 4 * (width - 1 - i);
        *slot = DIGITS[((n >> shift) & 0xf) as usize];
    }
    out.push_str(std::str::from_utf8(&buf[..width]).unwrap_or_default());
}

/// Rewrites several `Vary` lines as one, without duplicate names, so a field is set once.
pub(crate) fn merge_vary(headers: &mut HeaderMap) {
    if headers.get_all(VARY).iter().nth(1).is_none() {
        return;
    }
    let mut names: Vec<String> = Vec::new();
    for n in vary_names(headers) {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    match HeaderValue::from_str(&names.join(", ")) {
        Ok(v) => {
            headers.insert(VARY, v);
        }
        Err(_) => {
            // Unrepresentable names: `*` is the safe merge (varies on everything).
            headers.insert(VARY, HeaderValue::from_static("*"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodiless_head_keeps_validators_and_drops_content_fields() {
        let (mut parts, ()) = http::Response::builder()
            .header(ETAG, "\"a\"")
            .header(LAST_MODIFIED, "Sun, 06 Nov 1994 08:49:37 GMT")
            .header(CONTENT_LENGTH, "5")
            .header(CONTENT_TYPE, "text/plain")
            .header("cache-control", "max-age=5")
            .header(VARY, "accept-encoding")
            .header(VARY, "Accept-Encoding, accept")
            .body(())
            .unwrap()
            .into_parts();
        into_bodiless(&mut parts, StatusCode::NOT_MODIFIED);
        assert_eq!(parts.status, StatusCode::NOT_MODIFIED);
        assert!(parts.headers.get(CONTENT_LENGTH).is_none());
        assert!(parts.headers.get(CONTENT_TYPE).is_none());
        assert_eq!(parts.headers["etag"], "\"a\"");
        assert_eq!(parts.headers["cache-control"], "max-age=5");
        assert!(parts.headers.contains_key(LAST_MODIFIED));
        let vary: Vec<_> = parts.headers.get_all(VARY).iter().collect();
        assert_eq!(vary, ["accept-encoding, accept"]);
    }

    #[test]
    fn numbers_are_written_without_formatting() {
        for n in [0, 7, 42, 99, 100, 12_345, u64::MAX] {
            assert_eq!(seconds_value(n), n.to_string().as_str());
            let mut out = String::from("x=");
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x={n}"));
        }
        let mut hex = String::new();
        push_hex(&mut hex, 0xab, 4);
        assert_eq!(hex, "00ab");
        hex.clear();
        push_hex(&mut hex, u128::MAX, 32);
        assert_eq!(hex, format!("{:032x}", u128::MAX));
    }

    #[test]
    fn vary_members_that_are_not_field_names_count_as_star() {
        let mut h = HeaderMap::new();
        h.append(VARY, HeaderValue::from_static(" Accept-Encoding ,\tAccept"));
        assert_eq!(
            vary_names(&h).collect::<Vec<_>>(),
            ["accept-encoding", "accept"]
        );
        for junk in [&b"*\xc2\x85"[..], b"a b", b"\xe9", b"(x)"] {
            let mut h = HeaderMap::new();
            h.insert(VARY, HeaderValue::from_bytes(junk).unwrap());
            assert_eq!(vary_names(&h).collect::<Vec<_>>(), ["*"], "{junk:?}");
        }
    }

    #[test]
    fn single_vary_line_is_left_alone() {
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        merge_vary(&mut h);
        assert_eq!(h[VARY], "Accept-Encoding");
    }
}
