//! `Cache-Control` directives (RFC 9111 §5.2, RFC 8246 `immutable`, RFC 5861
//! `stale-while-revalidate` / `stale-if-error`) and `Pragma: no-cache` (§5.4).
//!
//! The parser is lenient and total: any input gives a value, never a panic. Where a directive
//! is malformed or repeated with different values, the reading that caches less is taken:
//! a bad `max-age` counts as `0` (stale), duplicates with different values keep the
//! smallest (RFC 9111 §4.2.1 lets a cache take the first one or consider the response
//! stale; the smallest is the cautious reading between the two), and a bad `stale-*` window
//! is absent.
//!
//! ```
//! use http::{HeaderMap, HeaderValue, header::CACHE_CONTROL};
//! use tower_etag::cache_control::CacheControl;
//! use std::{borrow::Cow, time::Duration};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=60, no-cache=\"set-cookie\""));
//! let cc = CacheControl::from_headers(&headers);
//! assert_eq!(cc.max_age, Some(Duration::from_secs(60)));
//! assert!(cc.public);
//! assert!(!cc.no_cache.is_all());
//! ```

use super::structured::Bare;
use http::{
    header::{CACHE_CONTROL, PRAGMA},
    HeaderMap, HeaderName, HeaderValue,
};
use std::{borrow::Cow, time::Duration};

/// RFC 9111 §1.2.2: a delta-seconds too large to represent is taken as 2^31.
pub(crate) const DELTA_SECONDS_MAX: u64 = 2_147_483_648;

/// A directive that may stand alone or name header fields (`no-cache="Set-Cookie"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FieldDirective {
    /// Absent.
    #[default]
    Absent,
    /// Present without field names: applies to the whole response.
    All,
    /// Present with field names: applies to those fields only (RFC 9111 §5.2.2.4, §5.2.2.7).
    Fields(Vec<HeaderName>),
}

impl FieldDirective {
    /// Present without field names.
    pub fn is_all(&self) -> bool {
        matches!(self, Self::All)
    }

    /// Present at all, with or without field names.
    pub fn is_present(&self) -> bool {
        !matches!(self, Self::Absent)
    }

    /// The field names this directive qualifies (empty unless [`FieldDirective::Fields`]).
    pub fn fields(&self) -> &[HeaderName] {
        match self {
            Self::Fields(f) => f,
            _ => &[],
        }
    }

    fn add(&mut self, value: Option<&str>) {
        let names: Vec<HeaderName> = value
            .into_iter()
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        *self = match (std::mem::take(self), names.is_empty()) {
            // An unqualified occurrence (or one whose names are all invalid) covers everything.
            (_, true) | (Self::All, _) => Self::All,
            (Self::Fields(mut old), false) => {
                old.extend(names);
                Self::Fields(old)
            }
            (Self::Absent, false) => Self::Fields(names),
        };
    }
}

/// The directives of every `Cache-Control` line of a request or a response.
///
/// One type serves both: a directive that is not defined for the message's side is simply
/// ignored by the code that reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheControl {
    /// `max-age` (request and response).
    pub max_age: Option<Duration>,
    /// `s-maxage` (response, shared caches).
    pub s_maxage: Option<Duration>,
    /// `max-stale` (request): `Some(None)` without a value, meaning any staleness.
    pub max_stale: Option<Option<Duration>>,
    /// `min-fresh` (request).
    pub min_fresh: Option<Duration>,
    /// `no-cache`; on a response it may name fields. `Pragma: no-cache` counts on requests
    /// without `Cache-Control` (RFC 9111 §5.4).
    pub no_cache: FieldDirective,
    /// `private`; may name fields.
    pub private: FieldDirective,
    /// `no-store`.
    pub no_store: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `must-understand`.
    pub must_understand: bool,
    /// `no-transform`.
    pub no_transform: bool,
    /// `only-if-cached` (request).
    pub only_if_cached: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `stale-while-revalidate` (RFC 5861).
    pub stale_while_revalidate: Option<Duration>,
    /// `stale-if-error` (RFC 5861; request and response).
    pub stale_if_error: Option<Duration>,
}

/// How to combine two occurrences of a seconds directive.
#[derive(Clone, Copy)]
enum OnBad {
    /// Freshness limits: a bad value means 0 (stale), duplicates keep the smallest.
    Zero,
    /// Permissions to use stale content: a bad value drops the directive.
    Drop,
}

fn seconds(slot: &mut Option<Duration>, value: Option<&str>, on_bad: OnBad) {
    let parsed = value.and_then(parse_delta_seconds);
    let new = match (parsed, on_bad) {
        (Some(d), _) => d,
        (None, OnBad::Zero) => Duration::ZERO,
        (None, OnBad::Drop) => return,
    };
    *slot = Some(slot.map_or(new, |old| old.min(new)));
}

/// `delta-seconds = 1*DIGIT`, saturating at 2^31 (RFC 9111 §1.2.2).
fn parse_delta_seconds(v: &str) -> Option<Duration> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = v.parse::<u64>().unwrap_or(DELTA_SECONDS_MAX);
    Some(Duration::from_secs(secs.min(DELTA_SECONDS_MAX)))
}

impl CacheControl {
    /// Reads every `Cache-Control` line of `headers`; for requests, also `Pragma: no-cache`
    /// when no `Cache-Control` is present (RFC 9111 §5.4).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut cc = Self::default();
        let mut any = false;
        for line in headers.get_all(CACHE_CONTROL) {
            any = true;
            cc.add_line(line);
        }
        if !any && headers.get_all(PRAGMA).iter().any(pragma_no_cache) {
            cc.no_cache = FieldDirective::All;
        }
        cc
    }

    /// The directives of a targeted field (RFC 9213 §2.1), a Structured Fields Dictionary
    /// already parsed. Each member is a directive with the same meaning as in
    /// `Cache-Control`, and `?0` means absent. A value of a type the directive cannot have
    /// is read as this module reads a bad value: the reading that caches less. A restriction
    /// (`no-store`, `no-cache`, `private`, `must-revalidate`, `proxy-revalidate`) applies
    /// unqualified, a bad `max-age` / `s-maxage` is 0 (stale), and a permission (`public`,
    /// `immutable`, `stale-*`) is absent.
    pub(crate) fn from_dictionary(members: &[(String, Bare)]) -> Self {
        let mut cc = Self::default();
        for (name, value) in members {
            if *value == Bare::Boolean(false) {
                continue;
            }
            let value: Option<Cow<'_, str>> = match (name.as_str(), value) {
                (
                    "max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error",
                    Bare::Integer(n),
                ) if *n >= 0 => Some(Cow::Owned(n.to_string())),
                // A bad lifetime: "bad" reads as 0 for freshness, as absent for permissions.
                ("max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error", _) => {
                    Some(Cow::Borrowed("bad"))
                }
                ("no-cache" | "private", Bare::String(fields)) => Some(Cow::Borrowed(fields)),
                ("public" | "immutable", v) if *v != Bare::Boolean(true) => continue,
                // Boolean true, or a restriction with a value it cannot have: unqualified.
                _ => None,
            };
            cc.apply(name, value.as_deref());
        }
        cc
    }

    /// Adds the directives of one `Cache-Control` line.
    pub(crate) fn add_line(&mut self, line: &HeaderValue) {
        // A line that is not visible ASCII is parsed as far as it is readable.
        let text = String::from_utf8_lossy(line.as_bytes());
        for (name, value) in directives(&text) {
            self.apply(&name, value.as_deref());
        }
    }

    /// A request's `Pragma: no-cache` without any `Cache-Control` (RFC 9111 §5.4).
    pub(crate) fn set_no_cache_from_pragma(&mut self) {
        self.no_cache = FieldDirective::All;
    }

    fn apply(&mut self, name: &str, value: Option<&str>) {
        match name {
            "max-age" => seconds(&mut self.max_age, value, OnBad::Zero),
            "s-maxage" => seconds(&mut self.s_maxage, value, OnBad::Zero),
            "min-fresh" => seconds(&mut self.min_fresh, value, OnBad::Zero),
            "max-stale" => {
                // No value: any staleness. A bad value: the conservative reading is no
                // permission beyond what was already granted.
                let new = match value {
                    None => None,
                    Some(v) => match parse_delta_seconds(v) {
                        Some(d) => Some(d),
                        None => return,
                    },
                };
                self.max_stale = Some(match (self.max_stale, new) {
                    (Some(Some(a)), Some(b)) => Some(a.min(b)),
                    (Some(Some(a)), None) | (Some(None), Some(a)) => Some(a),
                    (_, n) => n,
                });
            }
            "stale-while-revalidate" => {
                seconds(&mut self.stale_while_revalidate, value, OnBad::Drop)
            }
            "stale-if-error" => seconds(&mut self.stale_if_error, value, OnBad::Drop),
            "no-cache" => self.no_cache.add(value),
            "private" => self.private.add(value),
            "no-store" => self.no_store = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "must-understand" => self.must_understand = true,
            "no-transform" => self.no_transform = true,
            "only-if-cached" => self.only_if_cached = true,
            "immutable" => self.immutable = true,
            _ => {} // Unknown directives are ignored (RFC 9111 §5.2.3).
        }
    }
}

/// Whether a `Pragma` line holds `no-cache`.
pub(crate) fn pragma_no_cache(line: &HeaderValue) -> bool {
    line.to_str().is_ok_and(|p| {
        p.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("no-cache"))
    })
}

/// Splits a `Cache-Control` line into lower-cased names and unquoted values. Commas inside
/// quoted strings do not split. Nothing is copied unless a name has upper-case letters or a
/// value is quoted.
fn directives(line: &str) -> impl Iterator<Item = (Cow<'_, str>, Option<Cow<'_, str>>)> + '_ {
    split_outside_quotes(line).filter_map(|item| {
        let item = item.trim();
        if item.is_empty() {
            return None;
        }
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
            None => (item, None),
        };
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        Some((name, value))
    })
}

fn split_outside_quotes(line: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(line);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut in_quotes = false;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                ',' if !in_quotes => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// Removes the quotes and backslash escapes of a quoted-string; a token is returned as is.
fn unquote(v: &str) -> Cow<'_, str> {
    match v.strip_prefix('"') {
        Some(inner) => {
            let inner = inner.strip_suffix('"').unwrap_or(inner);
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' {
                    chars.next().unwrap_or('\\')
                } else {
                    c
                });
            }
            Cow::Owned(out)
        }
        None => Cow::Borrowed(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn cc(lines: &[&str]) -> CacheControl {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(CACHE_CONTROL, HeaderValue::from_str(l).unwrap());
        }
        CacheControl::from_headers(&h)
    }

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn parses_response_directives() {
        let c = cc(&[
            "public, max-age=60, s-maxage=120, must-revalidate, proxy-revalidate, immutable",
        ]);
        assert!(c.public && c.must_revalidate && c.proxy_revalidate && c.immutable);
        assert_eq!(c.max_age, secs(60));
        assert_eq!(c.s_maxage, secs(120));
        assert!(!c.no_store);
        assert!(!c.no_cache.is_present());
    }

    #[test]
    fn parses_request_directives() {
        let c = cc(&["max-stale, min-fresh=5, only-if-cached, no-store"]);
        assert_eq!(c.max_stale, Some(None));
        assert_eq!(c.min_fresh, secs(5));
        assert!(c.only_if_cached && c.no_store);
        assert_eq!(cc(&["max-stale=30"]).max_stale, Some(secs(30)));
    }

    #[test]
    fn names_are_case_insensitive_and_several_lines_combine() {
        let c = cc(&["Max-Age=10", "NO-STORE"]);
        assert_eq!(c.max_age, secs(10));
        assert!(c.no_store);
    }

    #[test]
    fn quoted_values_are_unquoted() {
        assert_eq!(cc(&["max-age=\"30\""]).max_age, secs(30));
    }

    #[test]
    fn qualified_no_cache_and_private_name_fields() {
        let c = cc(&["no-cache=\"Set-Cookie, X-Foo\", private=\"x-user\""]);
        assert_eq!(
            c.no_cache,
            FieldDirective::Fields(vec![
                HeaderName::from_static("set-cookie"),
                HeaderName::from_static("x-foo")
            ])
        );
        assert_eq!(c.private.fields(), &[HeaderName::from_static("x-user")]);
        // An unqualified occurrence wins over qualified ones.
        assert!(cc(&["no-cache=\"a\", no-cache"]).no_cache.is_all());
        assert!(cc(&["no-cache"]).no_cache.is_all());
    }

    #[test]
    fn bad_numbers_read_conservatively() {
        assert_eq!(cc(&["max-age=abc"]).max_age, secs(0));
        assert_eq!(cc(&["max-age=-5"]).max_age, secs(0));
        assert_eq!(cc(&["max-age"]).max_age, secs(0));
        assert_eq!(cc(&["max-age=1.5"]).max_age, secs(0));
        assert_eq!(cc(&["stale-if-error=x"]).stale_if_error, None);
        assert_eq!(
            cc(&["stale-while-revalidate=30"]).stale_while_revalidate,
            secs(30)
        );
        assert_eq!(cc(&["max-stale=abc"]).max_stale, None);
    }

    #[test]
    fn huge_numbers_saturate() {
        assert_eq!(
            cc(&["max-age=99999999999999999999999"]).max_age,
            secs(DELTA_SECONDS_MAX)
        );
    }

    #[test]
    fn conflicting_duplicates_keep_the_smallest() {
        assert_eq!(cc(&["max-age=100, max-age=10"]).max_age, secs(10));
        assert_eq!(cc(&["max-age=10", "max-age=100"]).max_age, secs(10));
    }

    #[test]
    fn pragma_no_cache_only_without_cache_control() {
        let mut h = HeaderMap::new();
        h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        assert!(CacheControl::from_headers(&h).no_cache.is_all());
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
        assert!(!CacheControl::from_headers(&h).no_cache.is_present());
    }

    #[test]
    fn unknown_directives_are_ignored() {
        assert_eq!(cc(&["foo=bar, baz"]), CacheControl::default());
    }

    proptest! {
        #[test]
        fn any_line_parses_without_panic(s in "\\PC*") {
            if let Ok(v) = HeaderValue::from_str(&s) {
                let mut h = HeaderMap::new();
                h.insert(CACHE_CONTROL, v);
                let _ = CacheControl::from_headers(&h);
            }
        }
    }
}
