//! Header plumbing shared by the providers: 304/412 heads, `Vary`.

use super::{
    conditional::{Outcome, Preconditions, Validators},
    dates::single_date,
    etag::EntityTag,
};
use http::header::{ETAG, LAST_MODIFIED};
use http::{
    header::{
        CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, TRAILER,
        TRANSFER_ENCODING, VARY,
    },
    response::Parts,
    HeaderMap, HeaderName, HeaderValue, StatusCode,
};

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
    for name in CONTENT_FIELDS {
        parts.headers.remove(name);
    }
    merge_vary(&mut parts.headers);
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

/// Answers the client's preconditions on a response head about to be sent, from the head's
/// own `ETag` and `Last-Modified`, only when it is 2xx (RFC 9110 §13.2.1), turning the head
/// into a 304 or 412 where they say so (§13.2.2).
pub(crate) fn answer_preconditions(
    parts: &mut Parts,
    preconditions: &Preconditions,
    is_head: bool,
) -> Answer {
    if !preconditions.is_empty() && parts.status.is_success() {
        let etag = parts
            .headers
            .get(ETAG)
            .and_then(EntityTag::from_header_value);
        let last_modified = single_date(&parts.headers, LAST_MODIFIED);
        match preconditions.evaluate(Validators {
            etag: etag.as_ref(),
            last_modified,
        }) {
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
pub(crate) fn vary_names(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(VARY)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|n| n.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|n| !n.is_empty())
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
    fn single_vary_line_is_left_alone() {
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        merge_vary(&mut h);
        assert_eq!(h[VARY], "Accept-Encoding");
    }
}
