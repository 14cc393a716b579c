//! What the response cache writes to its store, and under which keys.
//!
//! - Under `index_key(primary)`: an [`Index`]: the `Vary` field names of the URL's responses
//!   and a generation number. Variants are stored under keys made of the primary key, the
//!   generation and the request's values of those fields, so several variants of one URL
//!   live side by side, and dropping the index (invalidation) makes all of them unreachable
//!   at once.
//! - Under a variant key: the encoded [`CachePolicy`] (status, headers, times, selecting
//!   request fields) as the entry's head, and the body.
//!
//! Both encodings start with a magic and a version number, so that an entry written by
//! another version (a rolling deploy over a shared store) is never misread: it is ignored
//! and replaced.

use crate::{
    policy::{CacheMode, CachePolicy, PolicyOptions, PolicyParts},
    semantics::headers::vary_names,
    store::Meta,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use std::fmt::Write as _;
use std::{
    hash::{BuildHasher, RandomState},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

const INDEX_MAGIC: &[u8] = b"tower-etag index v1\n";

/// The store key of a primary key's index.
pub(crate) fn index_key(primary: &str) -> String {
    let mut key = String::with_capacity(primary.len() + 2);
    key.push_str("i\u{0}");
    key.push_str(primary);
    key
}

/// The `Vary` names of a URL's responses and the generation of its variants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Index {
    generation: u64,
    vary: Vec<String>,
}

fn new_generation() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    RandomState::new().hash_one((n, SystemTime::now()))
}

/// The normalised value of a request field for a variant key: lines joined with ", ",
/// runs of white space folded, ends trimmed (RFC 9111 §4.1 allows such normalisation).
pub(crate) fn push_normalized_field(out: &mut String, headers: &HeaderMap, name: &str) {
    for (i, line) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let text = String::from_utf8_lossy(line.as_bytes());
        for (j, word) in text.split_whitespace().enumerate() {
            if j > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
}

impl Index {
    pub(crate) fn new(policy: &CachePolicy) -> Self {
        Self {
            generation: new_generation(),
            vary: sorted_vary(policy.response_headers()),
        }
    }

    /// Whether `policy`'s response varies on the same fields as this index.
    pub(crate) fn matches(&self, policy: &CachePolicy) -> bool {
        self.vary == sorted_vary(policy.response_headers())
    }

    /// The store key of the variant selected by `request_headers`.
    pub(crate) fn variant_key(&self, primary: &str, request_headers: &HeaderMap) -> String {
        let mut key = String::with_capacity(primary.len() + 32 + 32 * self.vary.len());
        key.push_str("v\u{0}");
        key.push_str(primary);
        let _ = write!(key, "\u{0}{:016x}", self.generation);
        for name in &self.vary {
            key.push('\u{0}');
            key.push_str(name);
            key.push('=');
            push_normalized_field(&mut key, request_headers, name);
        }
        key
    }

    /// The head of the index entry.
    pub(crate) fn meta(self: &Arc<Self>) -> Meta {
        Meta::with_decoded(self.encode(), Arc::clone(self) as _)
    }

    /// The index of an entry head: the decoded one the store kept, or else decoded now.
    pub(crate) fn of(meta: &Meta) -> Option<Arc<Self>> {
        meta.decoded::<Self>()
            .or_else(|| Self::decode(&meta.bytes).map(Arc::new))
    }

    pub(crate) fn encode(&self) -> Bytes {
        let mut out = INDEX_MAGIC.to_vec();
        out.extend_from_slice(
            format!("{:016x}\n{}", self.generation, self.vary.join(",")).as_bytes(),
        );
        Bytes::from(out)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let rest = std::str::from_utf8(bytes.strip_prefix(INDEX_MAGIC)?).ok()?;
        let (generation, vary) = rest.split_once('\n')?;
        Some(Self {
            generation: u64::from_str_radix(generation, 16).ok()?,
            vary: vary
                .split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

fn sorted_vary(headers: &HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = vary_names(headers).collect();
    names.sort();
    names.dedup();
    names
}

const ENTRY_MAGIC: &[u8] = b"tower-etag entry v1\n";

/// The head of an entry for `policy`: its encoding, and the policy itself for stores that
/// keep it (a hit then skips decoding).
pub(crate) fn meta(policy: &Arc<CachePolicy>) -> Meta {
    let bytes = encode(policy);
    // The decoded form kept is decoded from the encoding, not `policy` itself: the header
    // values of a response just received are slices of the connection's read buffer, and
    // holding them would keep whole buffers (8 KiB and more) alive per entry.
    match decode(&bytes) {
        Some(own) => Meta::with_decoded(bytes, Arc::new(own)),
        None => Meta::encoded(bytes),
    }
}

/// The policy of an entry head: the decoded one the store kept, or else decoded now.
pub(crate) fn policy_of(meta: &Meta) -> Option<Arc<CachePolicy>> {
    meta.decoded::<CachePolicy>()
        .or_else(|| decode(&meta.bytes).map(Arc::new))
}

/// Encodes a policy as an entry head: magic, version, then length-prefixed fields.
pub(crate) fn encode(policy: &CachePolicy) -> Bytes {
    let p = policy.to_parts();
    let mut w = Writer(Vec::with_capacity(256 + 64 * p.response_headers.len()));
    w.0.extend_from_slice(ENTRY_MAGIC);
    w.u8(match p.mode {
        CacheMode::Shared => 0,
        CacheMode::Private => 1,
    });
    w.u8(u8::from(p.request_authorization) | (u8::from(p.request_no_store) << 1));
    w.time(p.request_time);
    w.time(p.response_time);
    w.u64(p.options.heuristic_max.as_millis() as u64);
    w.u64(p.options.revalidation_headroom.as_millis() as u64);
    w.u16(p.status.as_u16());
    w.bytes(p.method.as_str().as_bytes());
    w.bytes(p.uri.to_string().as_bytes());
    w.u32(p.vary_request.len() as u32);
    for (name, value) in &p.vary_request {
        w.bytes(name.as_bytes());
        match value {
            Some(v) => {
                w.u8(1);
                w.bytes(v.as_bytes());
            }
            None => w.u8(0),
        }
    }
    w.u32(p.response_headers.len() as u32);
    for (name, value) in &p.response_headers {
        w.bytes(name.as_str().as_bytes());
        w.bytes(value.as_bytes());
    }
    Bytes::from(w.0)
}

/// Decodes an entry head; `None` for another format version or a damaged entry (the cache
/// then treats the entry as absent and replaces it).
pub(crate) fn decode(bytes: &[u8]) -> Option<CachePolicy> {
    let mut r = Reader(bytes.strip_prefix(ENTRY_MAGIC)?);
    let mode = match r.u8()? {
        0 => CacheMode::Shared,
        1 => CacheMode::Private,
        _ => return None,
    };
    let flags = r.u8()?;
    let request_time = r.time()?;
    let response_time = r.time()?;
    let heuristic_max = Duration::from_millis(r.u64()?);
    let revalidation_headroom = Duration::from_millis(r.u64()?);
    let status = StatusCode::from_u16(r.u16()?).ok()?;
    let method = Method::from_bytes(r.bytes()?).ok()?;
    let uri = Uri::try_from(r.bytes()?).ok()?;
    let mut vary_request = Vec::new();
    for _ in 0..r.u32()? {
        let name = String::from_utf8(r.bytes()?.to_vec()).ok()?;
        let value = match r.u8()? {
            0 => None,
            _ => Some(String::from_utf8(r.bytes()?.to_vec()).ok()?),
        };
        vary_request.push((name, value));
    }
    let mut response_headers = HeaderMap::new();
    for _ in 0..r.u32()? {
        let name = HeaderName::from_bytes(r.bytes()?).ok()?;
        let value = HeaderValue::from_bytes(r.bytes()?).ok()?;
        response_headers.append(name, value);
    }
    if !r.0.is_empty() {
        return None;
    }
    Some(CachePolicy::from_parts(PolicyParts {
        method,
        uri,
        vary_request,
        status,
        response_headers,
        request_time,
        response_time,
        mode,
        request_authorization: flags & 1 != 0,
        request_no_store: flags & 2 != 0,
        options: PolicyOptions {
            heuristic_max,
            revalidation_headroom,
        },
    }))
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn time(&mut self, t: SystemTime) {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.u64(ms);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn time(&mut self) -> Option<SystemTime> {
        UNIX_EPOCH.checked_add(Duration::from_millis(self.u64()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};

    fn policy() -> CachePolicy {
        let (req, ()) = Request::get("http://example.com/a?b=1")
            .header("accept-encoding", "gzip")
            .header("authorization", "x")
            .body(())
            .unwrap()
            .into_parts();
        let (res, ()) = Response::builder()
            .header("cache-control", "public, max-age=60")
            .header("vary", "Accept-Encoding, Accept-Language")
            .header("etag", "\"x\"")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .body(())
            .unwrap()
            .into_parts();
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        CachePolicy::new(
            &req,
            &res,
            t,
            t + Duration::from_millis(5),
            CacheMode::Private,
        )
    }

    #[test]
    fn entry_roundtrips() {
        let p = policy();
        assert_eq!(decode(&encode(&p)), Some(p));
    }

    #[test]
    fn other_versions_and_damage_are_rejected() {
        let bytes = encode(&policy());
        let mut v2 = bytes.to_vec();
        v2[ENTRY_MAGIC.len() - 2] = b'2';
        assert_eq!(decode(&v2), None);
        for cut in [0, ENTRY_MAGIC.len(), bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(decode(&longer), None);
    }

    #[test]
    fn index_roundtrips_and_keys_variants_by_vary_values() {
        let p = policy();
        let index = Index::new(&p);
        assert_eq!(Index::decode(&index.encode()), Some(index.clone()));
        assert!(index.matches(&p));
        let mut gzip = HeaderMap::new();
        gzip.insert("accept-encoding", HeaderValue::from_static("gzip"));
        let mut br = HeaderMap::new();
        br.insert("accept-encoding", HeaderValue::from_static("br"));
        let mut gzip_spaced = HeaderMap::new();
        gzip_spaced.insert("accept-encoding", HeaderValue::from_static("  gzip "));
        assert_ne!(index.variant_key("p", &gzip), index.variant_key("p", &br));
        assert_eq!(
            index.variant_key("p", &gzip),
            index.variant_key("p", &gzip_spaced)
        );
        // A new index (after invalidation) makes old variant keys unreachable.
        assert_ne!(
            Index::new(&p).variant_key("p", &gzip),
            index.variant_key("p", &gzip)
        );
        assert_eq!(Index::decode(b"garbage"), None);
    }
}
