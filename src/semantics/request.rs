//! The head of a request as the caches read it, parsed once: by the middleware, before the
//! provider sees the request, so no rule parses a field a second time.
//!
//! Parsing also settles which authority (virtual host) the request is for, the one both the
//! cache key and the origin must use (RFC 9112 §3.2.2, RFC 9113 §8.3.1), and refuses
//! requests that name two.
//!
//! ```
//! use http::{Request, Version};
//! use tower_etag::semantics::request::{BadRequest, RequestHead};
//!
//! let (parts, ()) = Request::get("/a")
//!     .header("host", "Example.COM:80")
//!     .header("cache-control", "no-cache")
//!     .body(())
//!     .unwrap()
//!     .into_parts();
//! let head = RequestHead::from_parts(&parts).unwrap();
//! assert_eq!(head.authority.as_ref().map(|a| a.as_str()), Some("example.com"));
//! assert!(head.cache_control.no_cache.is_present());
//!
//! let (h2, ()) = Request::get("https://a.test/")
//!     .version(Version::HTTP_2)
//!     .header("host", "b.test")
//!     .body(())
//!     .unwrap()
//!     .into_parts();
//! assert_eq!(RequestHead::from_parts(&h2).unwrap_err(), BadRequest::HostMismatch);
//! ```

use super::{
    cache_control::{self, CacheControl},
    conditional::{PreconditionFields, Preconditions},
};
use http::{
    header::{
        AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, HOST, IF_RANGE, PRAGMA, RANGE,
        TRANSFER_ENCODING,
    },
    request, HeaderMap, HeaderValue, Method, Request, Uri, Version,
};
use std::fmt;

/// A request the caches refuse (`400 Bad Request`) because it names its target ambiguously:
/// answering it could store one virtual host's page under another's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadRequest {
    /// More than one `Host` line (RFC 9112 §3.2: a server MUST answer 400).
    SeveralHosts,
    /// A `Host` value that is not a valid `uri-host [ ":" port ]` (RFC 9112 §3.2: 400).
    InvalidHost,
    /// An HTTP/2 or HTTP/3 request whose `Host` names another authority than its
    /// `:authority` (RFC 9113 §8.3.1: malformed).
    HostMismatch,
}

impl BadRequest {
    /// A short token for a `Cache-Status` `detail` parameter.
    pub const fn detail(self) -> &'static str {
        match self {
            Self::SeveralHosts => "several-hosts",
            Self::InvalidHost => "invalid-host",
            Self::HostMismatch => "host-mismatch",
        }
    }
}

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SeveralHosts => "more than one Host field",
            Self::InvalidHost => "invalid Host field",
            Self::HostMismatch => "Host differs from the request's :authority",
        })
    }
}

impl std::error::Error for BadRequest {}

/// The authority (virtual host) a request is for, as caches key it: the host lower-cased
/// (RFC 3986 §3.2.2: case-insensitive) and the port dropped when it is the scheme's default
/// (§6.2.3). Cheap to clone; usually shares the bytes of the request's `Host` field.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Authority(HeaderValue);

impl Authority {
    /// The authority as text (`example.com`, `example.com:8080`, `[::1]:8080`).
    pub fn as_str(&self) -> &str {
        // Only visible ASCII gets here (see `normalized_host`).
        self.0.to_str().unwrap_or_default()
    }

    /// The authority as a header field value (for `Host`).
    pub fn as_header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl std::ops::Deref for Authority {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a cache needs to know of a request, read once.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RequestHead {
    /// The method, as the client sent it (HEAD stays HEAD when a provider fetches a GET).
    pub method: Method,
    /// The authority the request is for: lower-cased, without the scheme's default port;
    /// `None` when the request names none. See [`target_authority`].
    pub authority: Option<Authority>,
    /// The scheme, where the request names one (absolute form, HTTP/2 `:scheme`); an
    /// origin-form HTTP/1.1 request does not say.
    pub scheme: Option<http::uri::Scheme>,
    /// The request's `Cache-Control` directives (and `Pragma: no-cache`).
    pub cache_control: CacheControl,
    /// The request's preconditions (`If-Match`, `If-None-Match`, `If-Modified-Since`,
    /// `If-Unmodified-Since`).
    pub preconditions: Preconditions,
    /// Whether the request carries `Authorization` (RFC 9111 §3.5).
    pub authorization: bool,
    /// Whether the request carries `Range`.
    pub range: bool,
    /// Whether the request carries `If-Range` (RFC 9110 §13.1.5).
    pub if_range: bool,
    /// Whether the request carries any conditional field line (`If-Match`, `If-None-Match`,
    /// `If-Modified-Since`, `If-Unmodified-Since`, `If-Range`), valid or not: a cache that
    /// answers preconditions itself must strip them all before forwarding, including those
    /// its own reading ignores (a repeated date), which the origin may read otherwise.
    pub conditional: bool,
    /// Whether the request carries content (a body). A GET or HEAD with content is never
    /// answered from, nor stored in, a cache: what the origin made of the body would be
    /// served to requests without it.
    pub content: bool,
}

impl RequestHead {
    /// Reads the head of `request`; its body counts as content unless it is known to be
    /// empty.
    pub fn from_request<B: http_body::Body>(request: &Request<B>) -> Result<Self, BadRequest> {
        let mut head = Self::read(
            request.method(),
            request.version(),
            request.uri(),
            request.headers(),
        )?;
        let body = request.body();
        head.content |= !body.is_end_stream() && body.size_hint().upper() != Some(0);
        Ok(head)
    }

    /// Reads a request head; content is judged from `Content-Length` and
    /// `Transfer-Encoding` alone.
    pub fn from_parts(parts: &request::Parts) -> Result<Self, BadRequest> {
        Self::read(&parts.method, parts.version, &parts.uri, &parts.headers)
    }

    fn read(
        method: &Method,
        version: Version,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Self, BadRequest> {
        // One pass over the fields (a request has a few; a lookup per rule would cost more).
        let mut preconditions = PreconditionFields::default();
        let mut cache_control = CacheControl::default();
        let (mut any_cache_control, mut pragma_no_cache) = (false, false);
        let (mut authorization, mut range, mut content) = (false, false, false);
        let (mut if_range, mut conditional) = (false, false);
        for (name, value) in headers {
            match *name {
                CACHE_CONTROL => {
                    any_cache_control = true;
                    cache_control.add_line(value);
                }
                PRAGMA => pragma_no_cache |= cache_control::pragma_no_cache(value),
                AUTHORIZATION => authorization = true,
                RANGE => range = true,
                IF_RANGE => {
                    if_range = true;
                    conditional = true;
                }
                TRANSFER_ENCODING => content = true,
                // An invalid length cannot be shown to be empty.
                CONTENT_LENGTH => content |= value.as_bytes().trim_ascii() != b"0",
                _ => conditional |= preconditions.push(name, value),
            }
        }
        if pragma_no_cache && !any_cache_control {
            cache_control.set_no_cache_from_pragma();
        }
        Ok(Self {
            method: method.clone(),
            authority: target_authority(version, uri, headers)?,
            scheme: uri.scheme().cloned(),
            cache_control,
            preconditions: preconditions.read(method),
            authorization,
            range,
            if_range,
            conditional,
            content,
        })
    }

    /// Whether the method is HEAD.
    pub fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }
}

/// The authority a request is for, as a cache keys it: the host lower-cased (RFC 3986 §3.2.2:
/// case-insensitive) and the port dropped when it is the scheme's default (§6.2.3; `http`
/// when the request names no scheme).
///
/// - The request target's authority wins when there is one (absolute-form in HTTP/1.1,
///   RFC 9112 §3.2.2: "MUST ignore the received Host"; `:authority` in HTTP/2, RFC 9113
///   §8.3.1). In HTTP/1.x a `Host` that names another authority is ignored (the middleware
///   replaces it, see [`host_to_forward`]); in HTTP/2 and later such a request is malformed
///   ([`BadRequest::HostMismatch`]).
/// - Otherwise the `Host` field: one line at most ([`BadRequest::SeveralHosts`]), a valid
///   authority without user information ([`BadRequest::InvalidHost`]); empty means none.
pub fn target_authority(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Option<Authority>, BadRequest> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(BadRequest::SeveralHosts);
    }
    let scheme = uri.scheme_str();
    let from_host = match host {
        Some(value) => normalized_host(value.as_bytes(), Some(value), scheme)?,
        None => None,
    };
    let Some(target) = uri.authority() else {
        return Ok(from_host);
    };
    let from_target = normalized_host(target.as_str().as_bytes(), None, scheme)?
        .ok_or(BadRequest::InvalidHost)?;
    let h2_or_later = !matches!(
        version,
        Version::HTTP_09 | Version::HTTP_10 | Version::HTTP_11
    );
    if h2_or_later && from_host.as_ref().is_some_and(|h| *h != from_target) {
        return Err(BadRequest::HostMismatch);
    }
    Ok(Some(from_target))
}

/// The authority of an absolute URI, normalised as [`target_authority`] normalises a
/// request's (by the URI's own scheme); `None` when it has none or an invalid one.
pub fn uri_authority(uri: &Uri) -> Option<Authority> {
    let authority = uri.authority()?;
    normalized_host(authority.as_str().as_bytes(), None, uri.scheme_str()).ok()?
}

/// An absolute URI for a request target, to compare references against by origin
/// (RFC 9111 §4.4): the request's scheme (`http` when it names none), its authority, and
/// `path_and_query`; `None` without an authority.
pub fn absolute_target(head: &RequestHead, path_and_query: &str) -> Option<Uri> {
    let authority = head.authority.as_ref()?;
    let scheme = head.scheme.as_ref().map_or("http", |s| s.as_str());
    format!("{scheme}://{authority}{path_and_query}")
        .parse()
        .ok()
}

/// The `Host` to send on with a request whose authority is `authority` (as
/// [`target_authority`] read it) when its own `Host` field is not exactly that: absent (an
/// HTTP/2 request, an absolute-form one), another host (absolute form, RFC 9112 §3.2.2: a
/// proxy "MUST generate a new Host field value based on the received request-target"), or the
/// same host spelt otherwise (`Example.COM:80`). What reaches the origin is then exactly the
/// host the cache keys the response under: an origin that builds links or redirects from
/// `Host` never puts another spelling into a shared entry. `None` when `Host` already is it.
pub fn host_to_forward(authority: Option<&Authority>, headers: &HeaderMap) -> Option<HeaderValue> {
    let authority = authority?;
    let same = headers
        .get(HOST)
        .is_some_and(|host| host.as_bytes() == authority.0.as_bytes());
    (!same).then(|| authority.0.clone())
}

/// `host [":" port]`, lower-cased, without the default port of `scheme`; `None` for an empty
/// value. `raw` are the bytes of `value` when it comes from a header field: a value already
/// in normal form (the usual case) is shared, not copied.
fn normalized_host(
    raw: &[u8],
    value: Option<&HeaderValue>,
    scheme: Option<&str>,
) -> Result<Option<Authority>, BadRequest> {
    // The usual case: a lower-case name without a port, in normal form already.
    if let Some(value) = value {
        if !raw.is_empty() && raw.iter().all(|&b| LOWER_REG_NAME[usize::from(b)]) {
            return Ok(Some(Authority(value.clone())));
        }
    }
    let trimmed = raw.trim_ascii();
    if trimmed.is_empty() {
        return Ok(None);
    }
    // A port follows the last ':' outside an IPv6 literal (`[::1]:8080`).
    let after_literal = trimmed
        .iter()
        .rposition(|&b| b == b']')
        .map_or(0, |i| i + 1);
    let (host, port) = match trimmed[after_literal..].iter().position(|&b| b == b':') {
        Some(i) => (
            &trimmed[..after_literal + i],
            Some(&trimmed[after_literal + i + 1..]),
        ),
        None => (trimmed, None),
    };
    if !valid_host(host) {
        return Err(BadRequest::InvalidHost);
    }
    let port = match port {
        None | Some(b"") => None,
        // Digits only, at most 65535: two spellings of one port would be two keys.
        Some(digits) => Some(parse_port(digits).ok_or(BadRequest::InvalidHost)?),
    };
    let default = port.is_some() && port == default_port(scheme.unwrap_or("http"));
    let keeps_port = port.is_some() && !default;
    let normal = trimmed.len() == raw.len()
        && !host.iter().any(u8::is_ascii_uppercase)
        && (keeps_port || port.is_none() && trimmed.len() == host.len());
    if let (true, Some(value)) = (normal, value) {
        return Ok(Some(Authority(value.clone())));
    }
    let mut out = Vec::with_capacity(trimmed.len());
    out.extend(host.iter().map(u8::to_ascii_lowercase));
    if keeps_port {
        out.push(b':');
        out.extend_from_slice(port.unwrap_or_default().to_string().as_bytes());
    }
    HeaderValue::from_bytes(&out)
        .map(|v| Some(Authority(v)))
        .map_err(|_| BadRequest::InvalidHost)
}

/// RFC 3986 §3.2.2 `host`: an IP literal in brackets, or a registered name / IPv4 address of
/// unreserved characters, percent-encodings and sub-delims; never empty.
fn valid_host(host: &[u8]) -> bool {
    match host {
        [] => false,
        [b'[', inner @ .., b']'] => {
            !inner.is_empty()
                && inner
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'v' | b'V'))
        }
        name => name.iter().all(|&b| REG_NAME[usize::from(b)]),
    }
}

/// The bytes of a `reg-name` in normal form: no upper-case letter.
const LOWER_REG_NAME: [bool; 256] = {
    let mut table = REG_NAME;
    let mut b = b'A';
    while b <= b'Z' {
        table[b as usize] = false;
        b += 1;
    }
    table
};

/// The bytes of a `reg-name`: unreserved, `%` (of a percent-encoding) and sub-delims.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let extra = b"-._~%!$&'()*+,;=";
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
};

fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits
        .iter()
        .try_fold(0u32, |n, d| Some(n * 10 + u32::from(d - b'0')))
        .and_then(|n| u16::try_from(n).ok())
}

/// The default port of a scheme (RFC 9110 §4.2).
pub(crate) fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        Some(443)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(
        version: Version,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Result<RequestHead, BadRequest> {
        let mut b = Request::get(uri).version(version);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        RequestHead::from_parts(&b.body(()).unwrap().into_parts().0)
    }

    fn authority(
        version: Version,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Result<Option<String>, BadRequest> {
        head(version, uri, headers).map(|h| h.authority.map(|a| a.as_str().to_owned()))
    }

    const H1: Version = Version::HTTP_11;
    const H2: Version = Version::HTTP_2;

    #[test]
    fn host_is_lower_cased_and_loses_its_default_port() {
        assert_eq!(
            authority(H1, "/", &[("host", "Example.COM")]),
            Ok(Some("example.com".into()))
        );
        assert_eq!(
            authority(H1, "/", &[("host", "example.com:80")]),
            Ok(Some("example.com".into()))
        );
        assert_eq!(
            authority(H1, "/", &[("host", "example.com:8080")]),
            Ok(Some("example.com:8080".into()))
        );
        // Origin-form names no scheme: 443 is not http's default.
        assert_eq!(
            authority(H1, "/", &[("host", "example.com:443")]),
            Ok(Some("example.com:443".into()))
        );
        assert_eq!(
            authority(H1, "https://Example.com:443/", &[]),
            Ok(Some("example.com".into()))
        );
        // A scheme without a known default port keeps every port (what a fuzz harness
        // wrongly assumed otherwise).
        assert_eq!(
            authority(H1, "foo://A.test:80/x", &[]),
            Ok(Some("a.test:80".into()))
        );
        assert_eq!(
            authority(H1, "/", &[("host", "[::1]:8080")]),
            Ok(Some("[::1]:8080".into()))
        );
        assert_eq!(
            authority(H1, "/", &[("host", "[::1]")]),
            Ok(Some("[::1]".into()))
        );
    }

    #[test]
    fn a_host_in_normal_form_is_shared_not_copied() {
        let (parts, ()) = Request::get("/")
            .header("host", "example.com:8080")
            .body(())
            .unwrap()
            .into_parts();
        let head = RequestHead::from_parts(&parts).unwrap();
        let authority = head.authority.unwrap();
        assert_eq!(
            authority.as_header_value().as_bytes().as_ptr(),
            parts.headers["host"].as_bytes().as_ptr()
        );
    }

    #[test]
    fn no_host_and_an_empty_host_name_no_authority() {
        assert_eq!(authority(H1, "/", &[]), Ok(None));
        assert_eq!(authority(H1, "/", &[("host", "")]), Ok(None));
    }

    #[test]
    fn several_or_invalid_hosts_are_bad_requests() {
        assert_eq!(
            authority(H1, "/", &[("host", "a.test"), ("host", "b.test")]),
            Err(BadRequest::SeveralHosts)
        );
        for bad in [
            "user@a.test",
            "a test",
            "a.test:99999",
            "a.test:x",
            ":80",
            "a/b",
            "[]",
            "[::1",
        ] {
            assert_eq!(
                authority(H1, "/", &[("host", bad)]),
                Err(BadRequest::InvalidHost),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_absolute_target_wins_over_host_in_http1() {
        // RFC 9112 §3.2.2: the received Host is ignored; the middleware replaces it.
        assert_eq!(
            authority(H1, "http://a.test/x", &[("host", "b.test")]),
            Ok(Some("a.test".into()))
        );
        let (parts, ()) = Request::get("http://a.test/x")
            .header("host", "b.test")
            .body(())
            .unwrap()
            .into_parts();
        let head = RequestHead::from_parts(&parts).unwrap();
        assert_eq!(
            host_to_forward(head.authority.as_ref(), &parts.headers).unwrap(),
            "a.test"
        );
    }

    #[test]
    fn the_host_forwarded_is_the_one_keyed() {
        let forwarded = |uri: &str, host: Option<&str>| {
            let mut b = Request::get(uri);
            if let Some(host) = host {
                b = b.header("host", host);
            }
            let (parts, ()) = b.body(()).unwrap().into_parts();
            let head = RequestHead::from_parts(&parts).unwrap();
            host_to_forward(head.authority.as_ref(), &parts.headers)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        // Already the key: left alone.
        assert_eq!(forwarded("http://a.test/x", Some("a.test")), None);
        assert_eq!(forwarded("/x", Some("a.test")), None);
        assert_eq!(forwarded("/x", Some("a.test:8080")), None);
        // Spelt otherwise: the key's spelling.
        assert_eq!(
            forwarded("http://a.test/x", Some("A.TEST:80")).as_deref(),
            Some("a.test")
        );
        assert_eq!(
            forwarded("/x", Some("Example.COM:80")).as_deref(),
            Some("example.com")
        );
        // Absent: the target's.
        assert_eq!(
            forwarded("https://a.test:443/x", None).as_deref(),
            Some("a.test")
        );
        // Nothing to name.
        assert_eq!(forwarded("/x", None), None);
    }

    #[test]
    fn http2_host_and_authority_must_agree() {
        assert_eq!(
            authority(H2, "https://a.test/x", &[("host", "b.test")]),
            Err(BadRequest::HostMismatch)
        );
        assert_eq!(
            authority(H2, "https://a.test/x", &[("host", "A.test:443")]),
            Ok(Some("a.test".into()))
        );
        assert_eq!(
            authority(H2, "https://a.test/x", &[]),
            Ok(Some("a.test".into()))
        );
    }

    #[test]
    fn fields_are_read_once() {
        let h = head(
            H1,
            "/",
            &[
                ("authorization", "Bearer x"),
                ("range", "bytes=0-1"),
                ("if-none-match", "\"a\""),
                ("pragma", "no-cache"),
            ],
        )
        .unwrap();
        assert!(h.authorization && h.range && h.conditional);
        assert!(!h.preconditions.is_empty());
        assert!(h.cache_control.no_cache.is_present());
        assert!(!h.content);
    }

    #[test]
    fn conditional_fields_count_even_when_their_reading_ignores_them() {
        // Two If-Unmodified-Since lines are no precondition (RFC 9110 §13.1.4), but they are
        // still conditional fields the origin could read.
        let date = "Thu, 01 Jan 1970 00:00:00 GMT";
        let h = head(
            H1,
            "/",
            &[("if-unmodified-since", date), ("if-unmodified-since", date)],
        )
        .unwrap();
        assert!(h.preconditions.is_empty());
        assert!(h.conditional);
        assert!(!head(H1, "/", &[]).unwrap().conditional);
    }

    #[test]
    fn content_is_announced_by_length_or_transfer_coding() {
        assert!(!head(H1, "/", &[("content-length", "0")]).unwrap().content);
        assert!(head(H1, "/", &[("content-length", "6")]).unwrap().content);
        assert!(head(H1, "/", &[("content-length", "x")]).unwrap().content);
        assert!(
            head(H1, "/", &[("transfer-encoding", "chunked")])
                .unwrap()
                .content
        );
        let with_body = Request::get("/")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"x")))
            .unwrap();
        assert!(RequestHead::from_request(&with_body).unwrap().content);
        let empty = Request::get("/")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        assert!(!RequestHead::from_request(&empty).unwrap().content);
    }
}
