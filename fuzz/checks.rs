//! The checks of the fuzz targets that read bytes, as plain functions: the fuzz targets
//! call them on what libFuzzer makes, and `tests/fuzz_corpus.rs` (stable, in CI) replays the
//! committed corpora through them. Public API only.
#![allow(dead_code)]

use http::{
    header::{CACHE_CONTROL, PRAGMA},
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, Version,
};
use std::time::{Duration, SystemTime};
use tower_etag::{
    cache_control::CacheControl,
    conditional::{Preconditions, Validators},
    etag::EntityTag,
    policy::{freshness, BeforeRequest, CacheMode, CachePolicy},
    semantics::request::{host_to_forward, target_authority, RequestHead},
    semantics::{range, targeted},
};

const RESPONSE: [&str; 5] = ["date", "expires", "last-modified", "age", "cache-control"];
const REQUEST: [&str; 2] = ["if-modified-since", "if-unmodified-since"];

/// Entity tags and the lists of If-Match / If-None-Match (RFC 9110 §8.8.3, §13.1.1, §13.1.2):
/// any bytes parse to a result, never a panic; a tag that parses formats back to itself; a
/// precondition holds or fails, whatever the list holds.
pub fn etag(data: &[u8]) {
    let (tag, list) = data.split_at(data.iter().position(|&b| b == b'\n').unwrap_or(data.len()));
    let Ok(tag_value) = HeaderValue::from_bytes(tag) else {
        return;
    };
    let current = EntityTag::from_header_value(&tag_value);
    if let Some(t) = &current {
        let back = EntityTag::from_header_value(&t.to_header_value()).expect("formats back");
        assert!(back.strong_eq(t) || (t.is_weak() && back.weak_eq(t) && back.is_weak()));
        assert!(t.weak_eq(t));
    }
    let mut headers = HeaderMap::new();
    for line in list.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(http::header::IF_NONE_MATCH, v.clone());
            headers.append(http::header::IF_MATCH, v);
        }
    }
    for method in [Method::GET, Method::PUT] {
        let pre = Preconditions::from_request(&method, &headers);
        let _ = pre.evaluate(Validators {
            etag: current.as_ref(),
            last_modified: None,
        });
    }
}

/// `Cache-Control` and `Pragma` (RFC 9111 §5.2, §5.4, RFC 5861, RFC 8246): lenient and total,
/// any lines give directives, never a panic, and every duration stays within 2^31 s.
pub fn cache_control(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(if i % 4 == 3 { PRAGMA } else { CACHE_CONTROL }, v);
        }
    }
    let cc = CacheControl::from_headers(&headers);
    let max = Duration::from_secs(1 << 31);
    for d in [
        cc.max_age,
        cc.s_maxage,
        cc.min_fresh,
        cc.stale_while_revalidate,
        cc.stale_if_error,
    ]
    .into_iter()
    .flatten()
    {
        assert!(d <= max, "{d:?}");
    }
    if let Some(Some(d)) = cc.max_stale {
        assert!(d <= max);
    }
    let _ = cc.no_cache.fields();
    let _ = cc.private.fields();
}

/// HTTP-dates and `Age` wherever they are read (RFC 9110 §5.6.7, RFC 9111 §4.2, §5.1, §5.3):
/// `Date`, `Expires`, `Last-Modified`, `Age` on a response and `If-Modified-Since` /
/// `If-Unmodified-Since` on a request. Any value gives a freshness, an age and an outcome,
/// never a panic or an overflow, whatever the clock says.
pub fn dates(data: &[u8]) {
    let Some((&clock, rest)) = data.split_first() else {
        return;
    };
    let mut req = Request::get("/r");
    let mut res = Response::builder();
    for (i, line) in rest.split(|&b| b == b'\n').enumerate() {
        let Ok(v) = HeaderValue::from_bytes(line) else {
            continue;
        };
        if i % 7 < 5 {
            res = res.header(RESPONSE[i % 7], v);
        } else {
            req = req.header(REQUEST[i % 7 - 5], v);
        }
    }
    let (Ok(req), Ok(res)) = (req.body(()), res.body(())) else {
        return;
    };
    let (req, ()) = req.into_parts();
    let (res, ()) = res.into_parts();
    // Clocks from the epoch to far beyond 2100, in both directions of skew.
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(clock) * 40_000_000);
    let later = t0 + Duration::from_secs(u64::from(clock) * 1_000);
    for mode in [CacheMode::Shared, CacheMode::Private] {
        let policy = CachePolicy::new(&req, &res, t0, t0, mode);
        let _ = policy.freshness_lifetime();
        let _ = policy.age(later);
        let _ = policy.age(t0 - Duration::from_secs(u64::from(clock)));
        let _ = policy.time_to_live(later);
        let _ = policy.storage_ttl(later);
        if let Ok(head) = RequestHead::from_parts(&req) {
            let _ = policy.before_request(&req, &head, later);
        }
    }
    let _ = freshness::age_header(&res.headers);
    let pre = Preconditions::from_request(&req.method, &req.headers);
    let last_modified = res
        .headers
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let _ = pre.evaluate(Validators {
        etag: None,
        last_modified,
    });
}

/// `Vary` (RFC 9111 §4.1): any field names on the response and any request fields select or
/// reject the stored response, never a panic; a request identical to the one that was
/// stored is always selected (unless `Vary: *`).
pub fn vary(data: &[u8]) {
    let mut parts = data.split(|&b| b == 0);
    let vary = parts.next().unwrap_or_default();
    let mut stored_req = Request::get("/v");
    let mut new_req = Request::get("/v");
    for (i, field) in parts.enumerate() {
        let Some(eq) = field.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&field[..eq]),
            HeaderValue::from_bytes(&field[eq + 1..]),
        ) else {
            continue;
        };
        if i % 2 == 0 {
            stored_req = stored_req.header(name, value);
        } else {
            new_req = new_req.header(name, value);
        }
    }
    let Ok(vary) = HeaderValue::from_bytes(vary) else {
        return;
    };
    let res = Response::builder()
        .header("cache-control", "max-age=60")
        .header("vary", vary)
        .body(());
    let (Ok(stored_req), Ok(new_req), Ok(res)) = (stored_req.body(()), new_req.body(()), res)
    else {
        return;
    };
    let (stored_req, ()) = stored_req.into_parts();
    let (new_req, ()) = new_req.into_parts();
    let (res, ()) = res.into_parts();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let policy = CachePolicy::new(&stored_req, &res, t0, t0, CacheMode::Shared);
    let now = t0 + Duration::from_secs(1);
    if let Ok(head) = RequestHead::from_parts(&new_req) {
        let _ = policy.before_request(&new_req, &head, now);
    }
    if let Ok(head) = RequestHead::from_parts(&stored_req) {
        let same = policy.before_request(&stored_req, &head, now);
        // `*`, or a member that is no field name (which cannot be matched either).
        let star = policy.response_headers().get_all("vary").iter().any(|v| {
            v.as_bytes().split(|&b| b == b',').any(|n| {
                let n = n.trim_ascii_start().trim_ascii_end();
                !n.is_empty() && (n == b"*" || HeaderName::from_bytes(n).is_err())
            })
        });
        if !star {
            assert!(
                !matches!(same, BeforeRequest::VaryMismatch),
                "the request that was stored does not select its own response"
            );
        }
    }
}

/// The request head as the middleware reads it (RFC 9112 §3.2, §3.2.2, RFC 9113 §8.3.1): any
/// target, `Host` lines and fields give a head or a clear refusal, never a panic; the
/// authority a cache keys by is lower-case and never carries the scheme's default port; and
/// the `Host` the middleware forwards names that same authority.
pub fn request_head(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut lines = rest.split(|&b| b == b'\n');
    let Ok(uri) = Uri::try_from(lines.next().unwrap_or_default()) else {
        return;
    };
    let version = if flags & 1 == 0 {
        Version::HTTP_11
    } else {
        Version::HTTP_2
    };
    let mut req = Request::get(uri).version(version);
    for (i, line) in lines.enumerate() {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            let name = [
                "host",
                "content-length",
                "cache-control",
                "if-none-match",
                "range",
            ][i % 5];
            req = req.header(name, v);
        }
    }
    let Ok(req) = req.body(()) else {
        return;
    };
    let (parts, ()) = req.into_parts();
    let Ok(head) = RequestHead::from_parts(&parts) else {
        return;
    };
    if let Some(authority) = &head.authority {
        let a = authority.as_str();
        assert!(!a.bytes().any(|b| b.is_ascii_uppercase()), "{a}");
        // The scheme's default port, where it has one (a request without a scheme is http).
        let default = match parts
            .uri
            .scheme_str()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("http" | "ws") => Some(":80"),
            Some("https" | "wss") => Some(":443"),
            Some(_) => None,
        };
        if let Some(default) = default {
            assert!(!a.ends_with(default), "{a}");
        }
    }
    if let Some(host) = host_to_forward(head.authority.as_ref(), &parts.headers) {
        let key = head.authority.as_ref().map(|a| a.as_str());
        assert_eq!(
            host.to_str().ok(),
            key,
            "the origin would be asked for another host"
        );
    }
    let _ = target_authority(parts.version, &parts.uri, &parts.headers);
}

/// Targeted cache-control fields (RFC 9213, on RFC 8941 Dictionaries): strict and total.
/// Any lines give a result, never a panic; every duration stays within 2^31 s; what is
/// valid stays valid with trailing spaces and becomes invalid with a trailing comma (the
/// whole field is then ignored, and the next target chosen).
pub fn targeted(data: &[u8]) {
    let name = HeaderName::from_static("cdn-cache-control");
    let other = HeaderName::from_static("edge-cache-control");
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            headers.append(&name, v);
        }
    }
    let Some(cc) = targeted::directives(&headers, &name) else {
        // Invalid or empty: a later target decides.
        headers.insert(&other, HeaderValue::from_static("max-age=1"));
        let targets = [name, other];
        let chosen = targeted::select(&headers, &targets).map(|(n, _)| n);
        assert_eq!(chosen, Some(&targets[1]));
        return;
    };
    let limit = Duration::from_secs(2_147_483_648);
    for d in [
        cc.max_age,
        cc.s_maxage,
        cc.stale_while_revalidate,
        cc.stale_if_error,
    ]
    .into_iter()
    .flatten()
    {
        assert!(d <= limit);
    }
    let joined: Vec<u8> = {
        let lines: Vec<&[u8]> = headers
            .get_all(&name)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        lines.join(&b","[..])
    };
    for (suffix, valid) in [(&b"  "[..], true), (&b","[..], false)] {
        let mut changed = joined.clone();
        changed.extend_from_slice(suffix);
        let Ok(v) = HeaderValue::from_bytes(&changed) else {
            continue;
        };
        let mut h = HeaderMap::new();
        h.insert(&name, v);
        assert_eq!(
            targeted::directives(&h, &name).is_some(),
            valid,
            "{:?}",
            String::from_utf8_lossy(&changed)
        );
    }
}

/// `Range` and `If-Range` (RFC 9110 §14, §13.1.5) against a stored representation: total;
/// a partial answer is always within the body and never empty; a range that asks for the
/// first byte of a non-empty body is never unsatisfiable.
pub fn range(data: &[u8]) {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let len = u64::from(len);
    let (range_line, if_range) =
        rest.split_at(rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len()));
    let Ok(line) = HeaderValue::from_bytes(range_line) else {
        return;
    };
    match range::answer([&line], len) {
        range::RangeAnswer::Partial { start, end } => assert!(start <= end && end < len),
        range::RangeAnswer::Unsatisfiable => {
            assert!(len == 0 || !range_line.starts_with(b"bytes=0-"), "{line:?}");
        }
        range::RangeAnswer::Full => {}
    }
    if let Ok(v) = HeaderValue::from_bytes(if_range.get(1..).unwrap_or_default()) {
        let mut stored = HeaderMap::new();
        stored.insert(http::header::ETAG, HeaderValue::from_static("\"v1\""));
        let _ = range::if_range_holds(&v, &stored);
    }
}
