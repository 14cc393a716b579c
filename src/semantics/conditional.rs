//! Conditional requests (RFC 9110 §13): preconditions read from a request, evaluated against a
//! representation's validators in the order of §13.2.2.
//!
//! Pure code: no I/O, the inputs are header maps and times.
//!
//! ```
//! use http::{HeaderMap, HeaderValue, Method, header::IF_NONE_MATCH};
//! use tower_etag::conditional::{Outcome, Preconditions, Validators};
//! use tower_etag::etag::EntityTag;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(IF_NONE_MATCH, HeaderValue::from_static("W/\"v1\", \"v2\""));
//! let pre = Preconditions::from_request(&Method::GET, &headers);
//!
//! let current = EntityTag::strong("v1").unwrap();
//! let outcome = pre.evaluate(Validators { etag: Some(&current), last_modified: None });
//! assert_eq!(outcome, Outcome::NotModified);
//! ```

use super::{
    dates::http_date,
    etag::{list_kind, list_matches, EntityTag, TagList},
};
use http::{
    header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE},
    HeaderMap, HeaderName, HeaderValue, Method,
};
use std::time::SystemTime;

/// The preconditions of one request: its `If-Match`, `If-None-Match`, `If-Modified-Since` and
/// `If-Unmodified-Since` fields, and whether its method is GET or HEAD.
///
/// Dates are parsed once here; a date field that is not one valid HTTP-date is ignored, as
/// RFC 9110 §13.1.3 and §13.1.4 require.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Preconditions {
    get_or_head: bool,
    if_match: Lines,
    if_none_match: Lines,
    if_modified_since: Option<SystemTime>,
    if_unmodified_since: Option<SystemTime>,
}

/// The lines of one field; no allocation for the usual single line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Lines {
    first: Option<HeaderValue>,
    rest: Vec<HeaderValue>,
}

impl Lines {
    fn push(&mut self, line: &HeaderValue) {
        match self.first {
            None => self.first = Some(line.clone()),
            Some(_) => self.rest.push(line.clone()),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &HeaderValue> {
        self.first.iter().chain(&self.rest)
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }
}

/// The validators of the selected representation.
#[derive(Clone, Copy, Debug, Default)]
pub struct Validators<'a> {
    /// Its entity tag, if it has one.
    pub etag: Option<&'a EntityTag>,
    /// Its last modification date, if it has one.
    pub last_modified: Option<SystemTime>,
}

/// What the preconditions say to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Outcome {
    /// Every precondition holds (or there are none): perform the request as usual.
    Proceed,
    /// Answer `304 Not Modified` (GET and HEAD only).
    NotModified,
    /// Answer `412 Precondition Failed`.
    PreconditionFailed,
}

/// The precondition fields of a request, gathered line by line (in one pass over the
/// request's fields) and then read into [`Preconditions`].
#[derive(Debug, Default)]
pub(crate) struct PreconditionFields<'a> {
    if_match: Lines,
    if_none_match: Lines,
    if_modified_since: DateLines<'a>,
    if_unmodified_since: DateLines<'a>,
}

/// The lines of a date field: one valid line is a date, anything else none.
#[derive(Debug, Default)]
struct DateLines<'a> {
    first: Option<&'a HeaderValue>,
    repeated: bool,
}

impl<'a> DateLines<'a> {
    fn push(&mut self, line: &'a HeaderValue) {
        self.repeated |= self.first.replace(line).is_some();
    }

    fn date(&self) -> Option<SystemTime> {
        if self.repeated {
            return None;
        }
        http_date(self.first?)
    }
}

impl<'a> PreconditionFields<'a> {
    /// Takes `line` if `name` is one of the precondition fields; returns whether it was.
    pub(crate) fn push(&mut self, name: &HeaderName, line: &'a HeaderValue) -> bool {
        match *name {
            IF_MATCH => self.if_match.push(line),
            IF_NONE_MATCH => self.if_none_match.push(line),
            IF_MODIFIED_SINCE => self.if_modified_since.push(line),
            IF_UNMODIFIED_SINCE => self.if_unmodified_since.push(line),
            _ => return false,
        }
        true
    }

    /// The preconditions of a request with `method` and these fields.
    pub(crate) fn read(self, method: &Method) -> Preconditions {
        let get_or_head = method == Method::GET || method == Method::HEAD;
        if [Method::CONNECT, Method::OPTIONS, Method::TRACE].contains(method) {
            // RFC 9110 §13.2.1: a server MUST ignore the conditional fields of a method that
            // neither selects nor modifies a representation.
            return Preconditions::default();
        }
        Preconditions {
            get_or_head,
            if_match: self.if_match,
            if_none_match: self.if_none_match,
            // §13.1.3: If-Modified-Since is only for GET and HEAD.
            if_modified_since: get_or_head.then(|| self.if_modified_since.date()).flatten(),
            if_unmodified_since: self.if_unmodified_since.date(),
        }
    }
}

impl Preconditions {
    /// Reads the preconditions of a request with this method and these headers.
    pub fn from_request(method: &Method, headers: &HeaderMap) -> Self {
        let mut fields = PreconditionFields::default();
        for name in [
            IF_MATCH,
            IF_NONE_MATCH,
            IF_MODIFIED_SINCE,
            IF_UNMODIFIED_SINCE,
        ] {
            for line in headers.get_all(&name) {
                fields.push(&name, line);
            }
        }
        fields.read(method)
    }

    /// Whether the request carries no precondition at all.
    pub fn is_empty(&self) -> bool {
        self.if_match.is_empty()
            && self.if_none_match.is_empty()
            && self.if_modified_since.is_none()
            && self.if_unmodified_since.is_none()
    }

    /// Whether the request's method is GET or HEAD.
    pub fn is_get_or_head(&self) -> bool {
        self.get_or_head
    }

    /// Evaluates the preconditions against the selected representation, in the order of
    /// RFC 9110 §13.2.2.
    ///
    /// The caller must only do so when the response without preconditions would be 2xx
    /// (§13.2.1): a 404 is never turned into a 304.
    pub fn evaluate(&self, current: Validators<'_>) -> Outcome {
        self.evaluate_in_cache(current, None)
    }

    /// [`Preconditions::evaluate`] by a cache for a stored response (RFC 9111 §4.3.2): when
    /// the response has no `Last-Modified`, `If-Modified-Since` is compared with
    /// `stored_date` (its `Date`) instead of being ignored. `If-Unmodified-Since` never is:
    /// without a modification date it is ignored (RFC 9110 §13.1.4).
    pub fn evaluate_in_cache(
        &self,
        current: Validators<'_>,
        stored_date: Option<SystemTime>,
    ) -> Outcome {
        // Step 1: If-Match (§13.1.1, strong comparison).
        if let Some(kind) = list_kind(self.if_match.iter()) {
            if !self.if_match_holds(kind, current) {
                return Outcome::PreconditionFailed;
            }
        } else if let Some(date) = self.if_unmodified_since {
            // Step 2: If-Unmodified-Since, only without If-Match (§13.1.4).
            if !unmodified_since(current.last_modified, date) {
                return Outcome::PreconditionFailed;
            }
        }

        // Step 3: If-None-Match (§13.1.2, weak comparison).
        if let Some(kind) = list_kind(self.if_none_match.iter()) {
            let none_match = match (kind, current.etag) {
                // `*` is false when a current representation exists, which is the case
                // whenever we evaluate (the response would be 2xx).
                (TagList::Any, _) => false,
                (TagList::Tags, None) => true,
                (TagList::Tags, Some(etag)) => {
                    !list_matches(self.if_none_match.iter(), etag, false)
                }
            };
            if !none_match {
                return if self.get_or_head {
                    Outcome::NotModified
                } else {
                    Outcome::PreconditionFailed
                };
            }
        } else if let Some(date) = self.if_modified_since {
            // Step 4: If-Modified-Since, only for GET/HEAD and without If-None-Match (§13.1.3).
            // "False" (not modified) when the last modification is at or before the date.
            let modified = current.last_modified.or(stored_date);
            if matches!(modified, Some(lm) if lm <= date) {
                return Outcome::NotModified;
            }
        }

        // Step 5 (If-Range) concerns range requests: `semantics::range::if_range_holds`,
        // for the response cache's answers to them.
        Outcome::Proceed
    }

    fn if_match_holds(&self, kind: TagList, current: Validators<'_>) -> bool {
        match (kind, current.etag) {
            // `*`: true when a current representation exists.
            (TagList::Any, _) => true,
            (TagList::Tags, None) => false,
            (TagList::Tags, Some(etag)) => list_matches(self.if_match.iter(), etag, true),
        }
    }
}

/// If-Unmodified-Since holds when the representation's last modification is at or before
/// `date`. RFC 9110 §13.1.4: "A recipient MUST ignore the If-Unmodified-Since header field if
/// the resource does not have a modification date available", so without one it holds.
fn unmodified_since(last_modified: Option<SystemTime>, date: SystemTime) -> bool {
    last_modified.is_none_or(|lm| lm <= date)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    fn eval(
        method: Method,
        pairs: &[(&'static str, &str)],
        etag: &str,
        lm: Option<SystemTime>,
    ) -> Outcome {
        let tag: EntityTag = etag.parse().unwrap();
        Preconditions::from_request(&method, &headers(pairs)).evaluate(Validators {
            etag: Some(&tag),
            last_modified: lm,
        })
    }

    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    fn lm() -> SystemTime {
        httpdate::parse_http_date(LM).unwrap()
    }
    fn date(offset_secs: i64) -> String {
        let t = if offset_secs >= 0 {
            lm() + Duration::from_secs(offset_secs as u64)
        } else {
            lm() - Duration::from_secs((-offset_secs) as u64)
        };
        httpdate::fmt_http_date(t)
    }

    #[test]
    fn no_preconditions_proceed() {
        let pre = Preconditions::from_request(&Method::GET, &HeaderMap::new());
        assert!(pre.is_empty());
        assert_eq!(eval(Method::GET, &[], "\"a\"", None), Outcome::Proceed);
    }

    #[test]
    fn if_none_match_matching_gives_304_for_get_and_head() {
        assert_eq!(
            eval(Method::GET, &[("if-none-match", "\"a\"")], "\"a\"", None),
            Outcome::NotModified
        );
        assert_eq!(
            eval(Method::HEAD, &[("if-none-match", "\"a\"")], "\"a\"", None),
            Outcome::NotModified
        );
    }

    #[test]
    fn if_none_match_not_matching_proceeds() {
        assert_eq!(
            eval(Method::GET, &[("if-none-match", "\"b\"")], "\"a\"", None),
            Outcome::Proceed
        );
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        assert_eq!(
            eval(Method::GET, &[("if-none-match", "W/\"a\"")], "\"a\"", None),
            Outcome::NotModified
        );
        assert_eq!(
            eval(Method::GET, &[("if-none-match", "\"a\"")], "W/\"a\"", None),
            Outcome::NotModified
        );
    }

    #[test]
    fn if_none_match_list_and_several_lines() {
        let pairs = [
            ("if-none-match", "\"x\", \"y\""),
            ("if-none-match", "\"z\", \"a\""),
        ];
        assert_eq!(
            eval(Method::GET, &pairs, "\"a\"", None),
            Outcome::NotModified
        );
        assert_eq!(eval(Method::GET, &pairs, "\"q\"", None), Outcome::Proceed);
    }

    #[test]
    fn if_none_match_star_matches_any_representation() {
        assert_eq!(
            eval(Method::GET, &[("if-none-match", "*")], "\"a\"", None),
            Outcome::NotModified
        );
    }

    #[test]
    fn if_none_match_false_on_unsafe_method_is_412() {
        assert_eq!(
            eval(Method::PUT, &[("if-none-match", "*")], "\"a\"", None),
            Outcome::PreconditionFailed
        );
        assert_eq!(
            eval(Method::POST, &[("if-none-match", "\"a\"")], "\"a\"", None),
            Outcome::PreconditionFailed
        );
    }

    #[test]
    fn unquoted_if_none_match_never_matches() {
        assert_eq!(
            eval(Method::GET, &[("if-none-match", "a")], "\"a\"", None),
            Outcome::Proceed
        );
    }

    #[test]
    fn if_match_uses_strong_comparison() {
        assert_eq!(
            eval(Method::GET, &[("if-match", "\"a\"")], "\"a\"", None),
            Outcome::Proceed
        );
        assert_eq!(
            eval(Method::GET, &[("if-match", "W/\"a\"")], "\"a\"", None),
            Outcome::PreconditionFailed
        );
        assert_eq!(
            eval(Method::GET, &[("if-match", "\"a\"")], "W/\"a\"", None),
            Outcome::PreconditionFailed
        );
        assert_eq!(
            eval(Method::GET, &[("if-match", "\"b\"")], "\"a\"", None),
            Outcome::PreconditionFailed
        );
    }

    #[test]
    fn if_match_star_holds_for_existing_representation() {
        assert_eq!(
            eval(Method::PUT, &[("if-match", "*")], "\"a\"", None),
            Outcome::Proceed
        );
    }

    #[test]
    fn if_match_without_current_etag_fails() {
        let pre = Preconditions::from_request(&Method::GET, &headers(&[("if-match", "\"a\"")]));
        assert_eq!(
            pre.evaluate(Validators::default()),
            Outcome::PreconditionFailed
        );
    }

    #[test]
    fn if_match_is_evaluated_before_if_none_match() {
        // §13.2.2: a failing If-Match gives 412 even where If-None-Match would give 304.
        let pairs = [("if-match", "\"b\""), ("if-none-match", "\"a\"")];
        assert_eq!(
            eval(Method::GET, &pairs, "\"a\"", None),
            Outcome::PreconditionFailed
        );
    }

    #[test]
    fn if_unmodified_since() {
        let older = date(-10);
        let newer = date(10);
        assert_eq!(
            eval(
                Method::GET,
                &[("if-unmodified-since", &newer)],
                "\"a\"",
                Some(lm())
            ),
            Outcome::Proceed
        );
        assert_eq!(
            eval(
                Method::GET,
                &[("if-unmodified-since", LM)],
                "\"a\"",
                Some(lm())
            ),
            Outcome::Proceed
        );
        assert_eq!(
            eval(
                Method::GET,
                &[("if-unmodified-since", &older)],
                "\"a\"",
                Some(lm())
            ),
            Outcome::PreconditionFailed
        );
        // §13.1.4: no modification date available, the field is ignored (for an older date
        // too, which would fail against a known one).
        for since in [&newer, &older] {
            assert_eq!(
                eval(
                    Method::PUT,
                    &[("if-unmodified-since", since)],
                    "\"a\"",
                    None
                ),
                Outcome::Proceed
            );
        }
    }

    /// §13.2.1: CONNECT, OPTIONS and TRACE select no representation: their conditional
    /// fields are ignored, however they would evaluate.
    #[test]
    fn methods_that_select_no_representation_ignore_preconditions() {
        let pairs = [("if-match", "\"other\""), ("if-none-match", "\"a\"")];
        for method in [Method::OPTIONS, Method::TRACE, Method::CONNECT] {
            let p = Preconditions::from_request(&method, &headers(&pairs));
            assert!(p.is_empty(), "{method}");
            assert_eq!(eval(method, &pairs, "\"a\"", None), Outcome::Proceed);
        }
        assert_eq!(
            eval(Method::DELETE, &pairs, "\"a\"", None),
            Outcome::PreconditionFailed
        );
    }

    /// RFC 9111 §4.3.2: a cache compares If-Modified-Since with a stored response's `Date`
    /// when it has no `Last-Modified`; If-Unmodified-Since still is ignored then.
    #[test]
    fn a_cache_reads_if_modified_since_against_the_stored_date() {
        let stored_date = Some(lm());
        let pre = |pairs: &[(&'static str, &str)]| {
            Preconditions::from_request(&Method::GET, &headers(pairs))
        };
        let current = Validators::default();
        let later = date(10);
        let earlier = date(-10);
        let ims = pre(&[("if-modified-since", &later)]);
        assert_eq!(
            ims.evaluate_in_cache(current, stored_date),
            Outcome::NotModified
        );
        assert_eq!(
            ims.evaluate(current),
            Outcome::Proceed,
            "an origin ignores it"
        );
        let ims = pre(&[("if-modified-since", &earlier)]);
        assert_eq!(
            ims.evaluate_in_cache(current, stored_date),
            Outcome::Proceed
        );
        let ius = pre(&[("if-unmodified-since", &earlier)]);
        assert_eq!(
            ius.evaluate_in_cache(current, stored_date),
            Outcome::Proceed
        );
    }

    #[test]
    fn if_unmodified_since_ignored_when_if_match_present() {
        let pairs = [("if-match", "\"a\""), ("if-unmodified-since", &date(-10))];
        assert_eq!(
            eval(Method::PUT, &pairs, "\"a\"", Some(lm())),
            Outcome::Proceed
        );
    }

    #[test]
    fn if_unmodified_since_invalid_date_ignored() {
        let pairs = [("if-unmodified-since", "yesterday")];
        assert_eq!(
            eval(Method::PUT, &pairs, "\"a\"", Some(lm())),
            Outcome::Proceed
        );
    }

    #[test]
    fn if_modified_since() {
        let newer = date(10);
        let older = date(-10);
        assert_eq!(
            eval(
                Method::GET,
                &[("if-modified-since", &newer)],
                "\"a\"",
                Some(lm())
            ),
            Outcome::NotModified
        );
        assert_eq!(
            eval(
                Method::GET,
                &[("if-modified-since", LM)],
                "\"a\"",
                Some(lm())
            ),
            Outcome::NotModified
        );
        assert_eq!(
            eval(
                Method::GET,
                &[("if-modified-since", &older)],
                "\"a\"",
                Some(lm())
            ),
            Outcome::Proceed
        );
        // No Last-Modified: nothing to compare, the full response goes out.
        assert_eq!(
            eval(Method::GET, &[("if-modified-since", &newer)], "\"a\"", None),
            Outcome::Proceed
        );
    }

    #[test]
    fn if_modified_since_accepts_obsolete_date_formats() {
        let rfc850 = "Sunday, 06-Nov-94 08:49:37 GMT";
        let asctime = "Sun Nov  6 08:49:37 1994";
        for d in [rfc850, asctime] {
            assert_eq!(
                eval(
                    Method::GET,
                    &[("if-modified-since", d)],
                    "\"a\"",
                    Some(lm())
                ),
                Outcome::NotModified,
                "{d}"
            );
        }
    }

    #[test]
    fn if_modified_since_ignored_with_if_none_match() {
        // The tag does not match, the date would say 304: If-None-Match wins (§13.1.3).
        let pairs = [
            ("if-none-match", "\"other\""),
            ("if-modified-since", &date(10)),
        ];
        assert_eq!(
            eval(Method::GET, &pairs, "\"a\"", Some(lm())),
            Outcome::Proceed
        );
    }

    #[test]
    fn if_modified_since_ignored_for_other_methods() {
        let d = date(10);
        let pairs = [("if-modified-since", d.as_str())];
        assert_eq!(
            eval(Method::POST, &pairs, "\"a\"", Some(lm())),
            Outcome::Proceed
        );
    }

    #[test]
    fn if_modified_since_invalid_or_repeated_ignored() {
        assert_eq!(
            eval(
                Method::GET,
                &[("if-modified-since", "not a date")],
                "\"a\"",
                Some(lm())
            ),
            Outcome::Proceed
        );
        let two = [("if-modified-since", LM), ("if-modified-since", LM)];
        assert_eq!(
            eval(Method::GET, &two, "\"a\"", Some(lm())),
            Outcome::Proceed
        );
    }
}
