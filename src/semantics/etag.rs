//! Entity tags (RFC 9110 §8.8.3): parsing, formatting, comparison and generation.
//!
//! Pure code: no I/O, no allocation on the comparison paths.
//!
//! ```
//! use tower_etag::etag::EntityTag;
//!
//! let strong: EntityTag = "\"abc\"".parse().unwrap();
//! let weak: EntityTag = "W/\"abc\"".parse().unwrap();
//! assert!(strong.weak_eq(&weak));
//! assert!(!strong.strong_eq(&weak));
//! assert!("abc".parse::<EntityTag>().is_err()); // the quotes are part of the syntax
//! ```

use base64::Engine as _;
use http::HeaderValue;
use std::{fmt, str::FromStr};

/// An entity tag: an opaque validator, strong (`"xyz"`) or weak (`W/"xyz"`).
///
/// RFC 9110 §8.8.3: `entity-tag = [ weak ] opaque-tag`, `opaque-tag = DQUOTE *etagc DQUOTE`,
/// `etagc = %x21 / %x23-7E / obs-text`.
///
/// Every constructor is strict. The one exception is the crate's reading of an origin's
/// `ETag` field (read by the cache, not by `FromStr`): a legacy *unquoted* tag such as
/// `ETag: abc` is kept as it was sent, weak, and matched byte for byte, as the ecosystem's
/// recipients do (browsers echo it verbatim; nginx and Varnish compare it as a string).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntityTag {
    weak: bool,
    /// `false` for an origin's unquoted tag, whose `tag` is then the whole field value.
    quoted: bool,
    /// The opaque part, without its quotes.
    tag: Box<str>,
}

/// The error returned when a string is not a valid entity tag.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvalidEntityTag;

impl fmt::Display for InvalidEntityTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid entity tag: expected `\"opaque\"` or `W/\"opaque\"`")
    }
}

impl std::error::Error for InvalidEntityTag {}

/// `etagc` of RFC 9110 §8.8.3, on bytes (obs-text is any byte from 0x80).
const fn is_etagc(b: u8) -> bool {
    b == 0x21 || (b >= 0x23 && b != 0x7f)
}

impl EntityTag {
    /// A strong entity tag. Fails if `tag` holds a character not allowed in an opaque tag
    /// (such as `"`, a space or a control character).
    pub fn strong(tag: &str) -> Result<Self, InvalidEntityTag> {
        Self::new(false, tag)
    }

    /// A weak entity tag. Fails like [`EntityTag::strong`].
    pub fn weak(tag: &str) -> Result<Self, InvalidEntityTag> {
        Self::new(true, tag)
    }

    fn new(weak: bool, tag: &str) -> Result<Self, InvalidEntityTag> {
        if tag.bytes().all(is_etagc) {
            Ok(Self {
                weak,
                quoted: true,
                tag: tag.into(),
            })
        } else {
            Err(InvalidEntityTag)
        }
    }

    /// The strong tag made of the unpadded URL-safe base64 of the blake3 `hash`.
    pub fn from_blake3(hash: &blake3::Hash) -> Self {
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash.as_bytes());
        Self {
            weak: false,
            quoted: true,
            tag: tag.into(),
        }
    }

    /// The strong tag of a whole body: `EntityTag::from_blake3(&blake3::hash(body))`.
    pub fn for_body(body: &[u8]) -> Self {
        Self::from_blake3(&blake3::hash(body))
    }

    /// Whether this tag is weak (`W/` prefix). An origin's unquoted tag is weak: nothing
    /// says it is byte-for-byte the same representation.
    pub fn is_weak(&self) -> bool {
        self.weak
    }

    /// The opaque part, without its quotes (an unquoted tag: the whole value).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Strong comparison (RFC 9110 §8.8.3.2): both strong and the opaque parts identical.
    pub fn strong_eq(&self, other: &Self) -> bool {
        !self.weak && !other.weak && self.tag == other.tag
    }

    /// Weak comparison (RFC 9110 §8.8.3.2): the opaque parts identical, weakness ignored.
    /// An unquoted tag equals only the same unquoted text.
    pub fn weak_eq(&self, other: &Self) -> bool {
        self.quoted == other.quoted && self.tag == other.tag
    }

    /// The header value for an `ETag` field.
    pub fn to_header_value(&self) -> HeaderValue {
        // Every byte was checked to be `etagc` (or comes from base64), all of which are
        // valid header value bytes, so this cannot fail.
        if !self.quoted {
            // Checked to be visible ASCII when it was read from a header value.
            return HeaderValue::from_str(&self.tag).expect("read from a header value");
        }
        let mut v = String::with_capacity(self.tag.len() + 4);
        if self.weak {
            v.push_str("W/");
        }
        v.push('"');
        v.push_str(&self.tag);
        v.push('"');
        HeaderValue::from_maybe_shared(bytes::Bytes::from(v))
            .expect("entity tags are valid header values")
    }

    /// Parses an `ETag` header value. `None` if it is missing, not one valid entity tag.
    pub fn from_header_value(value: &HeaderValue) -> Option<Self> {
        parse_one(value.as_bytes())
    }

    /// Reads an origin's `ETag` field as its recipients do: a valid entity tag as
    /// [`EntityTag::from_header_value`] does, else a legacy unquoted tag (one token of
    /// visible ASCII without `"` or `,`, such as `abc` or `W/abc`) as a weak tag that matches
    /// only the same text in an `If-None-Match` list. RFC 9110 §8.8.3 gives it no meaning;
    /// reading it this way lets a client's echo of it and a revalidation with it work, and
    /// it never passes a strong comparison (`If-Match`, `If-Range`). Anything else is `None`.
    pub(crate) fn from_origin_header_value(value: &HeaderValue) -> Option<Self> {
        Self::from_header_value(value).or_else(|| {
            let text = trim_ows(value.as_bytes());
            let legacy = !text.is_empty()
                && text
                    .iter()
                    .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b',');
            legacy.then(|| Self {
                weak: true,
                quoted: false,
                // ASCII checked above.
                tag: String::from_utf8_lossy(text).into(),
            })
        })
    }
}

fn parse_one(bytes: &[u8]) -> Option<EntityTag> {
    let trimmed = trim_ows(bytes);
    match next_tag(trimmed) {
        Some((RawTag { weak, opaque }, rest)) if trim_ows(rest).is_empty() => Some(EntityTag {
            weak,
            quoted: true,
            // `opaque` is `etagc` only; obs-text bytes are kept by lossy conversion.
            tag: String::from_utf8_lossy(opaque).into(),
        }),
        _ => None,
    }
}

impl FromStr for EntityTag {
    type Err = InvalidEntityTag;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_one(s.as_bytes()).ok_or(InvalidEntityTag)
    }
}

impl fmt::Display for EntityTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.quoted {
            return f.write_str(&self.tag);
        }
        if self.weak {
            f.write_str("W/")?;
        }
        write!(f, "\"{}\"", self.tag)
    }
}

/// An entity tag borrowed from a header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RawTag<'a> {
    weak: bool,
    opaque: &'a [u8],
}

fn trim_ows(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// Reads one entity tag at the start of `b`; returns it and what follows it.
fn next_tag(b: &[u8]) -> Option<(RawTag<'_>, &[u8])> {
    let (weak, b) = match b {
        [b'W', b'/', rest @ ..] => (true, rest),
        _ => (false, b),
    };
    let b = b.strip_prefix(b"\"")?;
    let end = b.iter().position(|&c| c == b'"')?;
    let opaque = &b[..end];
    if !opaque.iter().copied().all(is_etagc) {
        return None;
    }
    Some((RawTag { weak, opaque }, &b[end + 1..]))
}

/// What an `If-Match` or `If-None-Match` field holds, over all its lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TagList {
    /// `*`: any current representation.
    Any,
    /// One or more entity tags (possibly with members that failed to parse).
    Tags,
}

/// Classifies the lines of an `If-Match` / `If-None-Match` field. `None` if the field is
/// absent. A field whose lines are all `*` is [`TagList::Any`]; anything else is a list.
pub(crate) fn list_kind<'a>(lines: impl IntoIterator<Item = &'a HeaderValue>) -> Option<TagList> {
    let mut kind = None;
    for line in lines {
        let is_star = trim_ows(line.as_bytes()) == b"*";
        kind = match (kind, is_star) {
            (None | Some(TagList::Any), true) => Some(TagList::Any),
            _ => Some(TagList::Tags),
        };
    }
    kind
}

/// Whether any well-formed member of the comma-separated lists in `lines` matches `current`,
/// by weak or strong comparison. Malformed members never match; parsing stops at the first
/// malformed member of a line, since its end cannot be known (an opaque tag may hold commas).
pub(crate) fn list_matches<'a>(
    lines: impl IntoIterator<Item = &'a HeaderValue>,
    current: &EntityTag,
    strong: bool,
) -> bool {
    lines
        .into_iter()
        .any(|line| line_matches(line.as_bytes(), current, strong))
}

fn line_matches(mut rest: &[u8], current: &EntityTag, strong: bool) -> bool {
    let wanted = current.tag.as_bytes();
    if !current.quoted {
        return !strong && line_has_unquoted(rest, wanted);
    }
    loop {
        while let [b' ' | b'\t' | b',', tail @ ..] = rest {
            rest = tail;
        }
        let (weak, tail) = match rest {
            [] => return false,
            [b'W', b'/', tail @ ..] => (true, tail),
            _ => (false, rest),
        };
        let Some(tail) = tail.strip_prefix(b"\"") else {
            return false;
        };
        let Some(end) = tail.iter().position(|&c| c == b'"') else {
            return false;
        };
        let opaque = &tail[..end];
        // The usual case first: the member is the current tag (which is valid, so the member
        // is too). Only a member that does not match is checked, to know whether the list
        // goes on.
        if opaque == wanted {
            if !strong || (!weak && !current.weak) {
                return true;
            }
        } else if !opaque.iter().copied().all(is_etagc) {
            return false;
        }
        rest = &tail[end + 1..];
    }
}

/// Whether the list `rest` has a member that is the unquoted text `wanted`. Quoted members
/// are read whole (a comma inside one does not split it), so part of a quoted tag never
/// matches; a malformed quoted member ends the list, as in [`line_matches`].
fn line_has_unquoted(mut rest: &[u8], wanted: &[u8]) -> bool {
    loop {
        while let [b' ' | b'\t' | b',', tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            return false;
        }
        if rest.starts_with(b"\"") || rest.starts_with(b"W/\"") {
            match next_tag(rest) {
                Some((_, tail)) => rest = tail,
                None => return false,
            }
            continue;
        }
        let end = rest.iter().position(|&c| c == b',').unwrap_or(rest.len());
        if trim_ows(&rest[..end]) == wanted {
            return true;
        }
        rest = &rest[end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn parses_strong_and_weak() {
        let t: EntityTag = "\"xyzzy\"".parse().unwrap();
        assert!(!t.is_weak());
        assert_eq!(t.tag(), "xyzzy");
        let w: EntityTag = "W/\"xyzzy\"".parse().unwrap();
        assert!(w.is_weak());
        assert_eq!(w.tag(), "xyzzy");
    }

    #[test]
    fn empty_opaque_tag_is_valid() {
        let t: EntityTag = "\"\"".parse().unwrap();
        assert_eq!(t.tag(), "");
        assert_eq!(t.to_string(), "\"\"");
    }

    #[test]
    fn rejects_unquoted_and_malformed_tags() {
        for bad in [
            "xyzzy",
            "\"xyzzy",
            "xyzzy\"",
            "w/\"x\"",
            "W/x",
            "\"a\"b\"",
            "\"a b\"",
            "\"a\" \"b\"",
            "",
            "*",
        ] {
            assert!(bad.parse::<EntityTag>().is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn constructors_reject_quotes_and_spaces() {
        assert!(EntityTag::strong("a\"b").is_err());
        assert!(EntityTag::weak("a b").is_err());
        assert_eq!(EntityTag::weak("v1").unwrap().to_string(), "W/\"v1\"");
    }

    #[test]
    fn comparison_table_of_rfc_9110_8_8_3_2() {
        // The table of RFC 9110 §8.8.3.2.
        let w1: EntityTag = "W/\"1\"".parse().unwrap();
        let w2: EntityTag = "W/\"2\"".parse().unwrap();
        let s1: EntityTag = "\"1\"".parse().unwrap();
        assert!(!w1.strong_eq(&w1));
        assert!(w1.weak_eq(&w1));
        assert!(!w1.strong_eq(&w2));
        assert!(!w1.weak_eq(&w2));
        assert!(!w1.strong_eq(&s1));
        assert!(w1.weak_eq(&s1));
        assert!(s1.strong_eq(&s1));
        assert!(s1.weak_eq(&s1));
    }

    #[test]
    fn generated_tags_are_strong_quoted_base64_of_blake3() {
        let t = EntityTag::for_body(b"hello");
        assert!(!t.is_weak());
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(blake3::hash(b"hello").as_bytes());
        assert_eq!(t.tag(), expected);
        let hv = t.to_header_value();
        assert_eq!(hv.to_str().unwrap(), format!("\"{expected}\""));
        assert_ne!(t, EntityTag::for_body(b"hellO"));
    }

    #[test]
    fn list_kind_detects_star_and_lists() {
        assert_eq!(list_kind([].iter()), None);
        assert_eq!(list_kind([hv("*")].iter()), Some(TagList::Any));
        assert_eq!(list_kind([hv(" * ")].iter()), Some(TagList::Any));
        assert_eq!(list_kind([hv("\"a\"")].iter()), Some(TagList::Tags));
        assert_eq!(
            list_kind([hv("*"), hv("\"a\"")].iter()),
            Some(TagList::Tags)
        );
    }

    #[test]
    fn list_matching_over_several_lines_with_commas_in_tags() {
        let current: EntityTag = "\"b,c\"".parse().unwrap();
        let lines = [hv("\"a\" , W/\"x\""), hv("\"zz\",\"b,c\"")];
        assert!(list_matches(lines.iter(), &current, true));
        let other = [hv("\"a\", \"b\""), hv("\"c\"")];
        assert!(!list_matches(other.iter(), &current, false));
    }

    #[test]
    fn list_matching_weak_vs_strong() {
        let current: EntityTag = "\"v\"".parse().unwrap();
        let lines = [hv("W/\"v\"")];
        assert!(list_matches(lines.iter(), &current, false));
        assert!(!list_matches(lines.iter(), &current, true));
        let weak_current: EntityTag = "W/\"v\"".parse().unwrap();
        let strong_line = [hv("\"v\"")];
        assert!(!list_matches(strong_line.iter(), &weak_current, true));
        assert!(list_matches(strong_line.iter(), &weak_current, false));
    }

    #[test]
    fn malformed_members_never_match() {
        let current: EntityTag = "\"v\"".parse().unwrap();
        // An unquoted tag (the seed crate's ETag format) is not a match.
        assert!(!list_matches([hv("v")].iter(), &current, false));
        assert!(!list_matches([hv("\"v")].iter(), &current, false));
        // A good member before a malformed one still counts.
        assert!(list_matches([hv("\"v\", garbage")].iter(), &current, false));
    }

    #[test]
    fn an_origins_unquoted_tag_matches_only_its_own_text_and_only_weakly() {
        let legacy = EntityTag::from_origin_header_value(&hv(" abc ")).unwrap();
        assert!(legacy.is_weak());
        assert_eq!(legacy.to_string(), "abc");
        assert_eq!(legacy.to_header_value(), "abc");
        // The client's echo matches, in a list and on another line too.
        assert!(list_matches([hv("abc")].iter(), &legacy, false));
        assert!(list_matches([hv("\"x\", abc")].iter(), &legacy, false));
        assert!(list_matches(
            [hv("\"x\""), hv("zz , abc")].iter(),
            &legacy,
            false
        ));
        // Never by strong comparison (If-Match, If-Range).
        assert!(!list_matches([hv("abc")].iter(), &legacy, true));
        // Not a quoted tag with the same text, nor part of one, nor another text.
        assert!(!list_matches([hv("\"abc\"")].iter(), &legacy, false));
        assert!(!list_matches([hv("W/\"abc\"")].iter(), &legacy, false));
        assert!(!list_matches([hv("\"x,abc,y\"")].iter(), &legacy, false));
        assert!(!list_matches([hv("abcd, ab")].iter(), &legacy, false));
        // A malformed quoted member ends the list, as for quoted tags.
        assert!(!list_matches([hv("\"x, abc")].iter(), &legacy, false));
        // A quoted tag and an unquoted one with the same text are different tags.
        let quoted: EntityTag = "\"abc\"".parse().unwrap();
        assert!(!legacy.weak_eq(&quoted) && !quoted.weak_eq(&legacy));
        assert!(!list_matches([hv("abc")].iter(), &quoted, false));
        // `W/abc` is kept whole; valid tags read as before; junk is still no tag.
        let w = EntityTag::from_origin_header_value(&hv("W/abc")).unwrap();
        assert!(list_matches([hv("W/abc")].iter(), &w, false));
        assert!(!list_matches([hv("abc")].iter(), &w, false));
        assert_eq!(
            EntityTag::from_origin_header_value(&hv("W/\"v\"")),
            Some(EntityTag::weak("v").unwrap())
        );
        for junk in ["", "  ", "a b", "a,b", "\"a", "a\"b"] {
            assert_eq!(
                EntityTag::from_origin_header_value(&hv(junk)),
                None,
                "{junk:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = s.parse::<EntityTag>();
            if let Ok(v) = HeaderValue::from_str(&s) {
                let current = EntityTag::for_body(s.as_bytes());
                let _ = list_matches([v.clone()].iter(), &current, true);
                if let Some(legacy) = EntityTag::from_origin_header_value(&v) {
                    let _ = list_matches([v.clone()].iter(), &legacy, false);
                    // An unquoted one never passes a strong comparison.
                    prop_assert!(legacy.quoted || !list_matches([v.clone()].iter(), &legacy, true));
                }
                let _ = list_kind([v].iter());
            }
        }

        #[test]
        fn format_then_parse_roundtrips(tag in "[!#-~]*", weak: bool) {
            let t = if weak { EntityTag::weak(&tag) } else { EntityTag::strong(&tag) }.unwrap();
            let back: EntityTag = t.to_string().parse().unwrap();
            prop_assert_eq!(&back, &t);
            let hv = t.to_header_value();
            prop_assert_eq!(EntityTag::from_header_value(&hv), Some(t));
        }
    }
}
