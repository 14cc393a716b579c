//! The `Cache-Status` response field (RFC 9211).

use crate::semantics::headers::push_decimal;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::cell::RefCell;

/// The name of the `Cache-Status` field (RFC 9211).
pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Why the cache forwarded a request (RFC 9211 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fwd {
    /// Configured or asked not to use the cache.
    Bypass,
    /// Nothing stored for the URI.
    UriMiss,
    /// Something stored for the URI, but not for this request's `Vary` values.
    VaryMiss,
    /// Stored, but stale: revalidated.
    Stale,
    /// Stored and fresh, but the request asked for the origin.
    Request,
}

impl Fwd {
    fn as_str(self) -> &'static str {
        match self {
            Self::Bypass => "bypass",
            Self::UriMiss => "uri-miss",
            Self::VaryMiss => "vary-miss",
            Self::Stale => "stale",
            Self::Request => "request",
        }
    }
}

/// One cache's entry in a `Cache-Status` field.
#[derive(Clone, Debug, Default)]
pub(crate) struct CacheStatus {
    pub(crate) hit: bool,
    pub(crate) fwd: Option<Fwd>,
    pub(crate) fwd_status: Option<u16>,
    pub(crate) stored: bool,
    pub(crate) collapsed: bool,
    pub(crate) ttl: Option<i64>,
    pub(crate) detail: Option<&'static str>,
}

impl CacheStatus {
    pub(crate) fn hit() -> Self {
        Self {
            hit: true,
            ..Self::default()
        }
    }

    pub(crate) fn fwd(fwd: Fwd) -> Self {
        Self {
            fwd: Some(fwd),
            ..Self::default()
        }
    }

    /// The field value: `name; hit; ttl=30`, `name; fwd=uri-miss; fwd-status=200; stored`.
    pub(crate) fn to_header_value(&self, name: &str) -> HeaderValue {
        // Written into a buffer the thread keeps, then copied once into the value: one
        // allocation per response.
        thread_local!(static TEXT: RefCell<String> = RefCell::new(String::with_capacity(128)));
        TEXT.with_borrow_mut(|text| {
            text.clear();
            self.write(text, name);
            HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("tower-etag"))
        })
    }

    /// The field value's text, appended to `v`.
    fn write(&self, v: &mut String, name: &str) {
        v.push_str(name);
        if self.hit {
            v.push_str("; hit");
        }
        if let Some(fwd) = self.fwd {
            v.push_str("; fwd=");
            v.push_str(fwd.as_str());
        }
        if let Some(s) = self.fwd_status {
            v.push_str("; fwd-status=");
            push_decimal(v, u64::from(s));
        }
        if self.stored {
            v.push_str("; stored");
        }
        if self.collapsed {
            v.push_str("; collapsed");
        }
        if let Some(ttl) = self.ttl {
            v.push_str("; ttl=");
            if ttl < 0 {
                v.push('-');
            }
            push_decimal(v, ttl.unsigned_abs());
        }
        if let Some(d) = self.detail {
            v.push_str("; detail=");
            v.push_str(d);
        }
    }
}

impl CacheStatus {
    /// What the cache did, in one word: `hit`, or why it forwarded (`uri-miss`,
    /// `vary-miss`, `stale`, `request`, `bypass`; `miss` if it did not say).
    pub(crate) fn outcome(&self) -> &'static str {
        match (self.hit, self.fwd) {
            (true, _) => "hit",
            (false, Some(fwd)) => fwd.as_str(),
            (false, None) => "miss",
        }
    }
}

/// Issues `status` under the cache's `name`: the `Cache-Status` field of `headers`, and
/// what an operator sees of it ([`observe`](crate::middleware::observe)). Every response the
/// cache makes or forwards goes through here.
pub(crate) fn issue(headers: &mut HeaderMap, status: &CacheStatus, name: &str) {
    let value = status.to_header_value(name);
    crate::middleware::observe::cache_status(status.outcome(), &value);
    // RFC 9211 §2: a cache adds its member after those of the caches before it ("caches
    // SHOULD preserve the existing field value"); a line of its own is that member.
    headers.append(CACHE_STATUS, value);
}

/// The `Cache-Status` of a response nobody receives (a background refresh): the field only,
/// not counted as a response.
pub(crate) fn label(headers: &mut HeaderMap, status: &CacheStatus, name: &str) {
    headers.append(CACHE_STATUS, status.to_header_value(name));
}

/// Whether `name` may stand as a Structured Fields token (RFC 8941 §3.3.4); otherwise it is
/// written as a string.
pub(crate) fn cache_name(name: &str) -> String {
    let token = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '*')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~:/".contains(c));
    if token {
        name.to_owned()
    } else {
        let escaped: String = name
            .chars()
            .filter(|c| (' '..='~').contains(c))
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_hits_and_misses() {
        let hit = CacheStatus {
            ttl: Some(30),
            ..CacheStatus::hit()
        };
        assert_eq!(hit.to_header_value("tower-etag"), "tower-etag; hit; ttl=30");
        let miss = CacheStatus {
            fwd_status: Some(200),
            stored: true,
            ..CacheStatus::fwd(Fwd::UriMiss)
        };
        assert_eq!(
            miss.to_header_value("c"),
            "c; fwd=uri-miss; fwd-status=200; stored"
        );
        let coll = CacheStatus {
            collapsed: true,
            ..CacheStatus::hit()
        };
        assert_eq!(coll.to_header_value("c"), "c; hit; collapsed");
        let stale = CacheStatus {
            fwd_status: Some(304),
            detail: Some("x"),
            ..CacheStatus::fwd(Fwd::Stale)
        };
        assert_eq!(
            stale.to_header_value("c"),
            "c; fwd=stale; fwd-status=304; detail=x"
        );
    }

    #[test]
    fn names_that_are_not_tokens_are_quoted() {
        assert_eq!(cache_name("edge-1.example"), "edge-1.example");
        assert_eq!(cache_name("my cache"), "\"my cache\"");
        assert_eq!(cache_name("1abc"), "\"1abc\"");
        assert_eq!(cache_name("a\"b"), "\"a\\\"b\"");
    }
}
