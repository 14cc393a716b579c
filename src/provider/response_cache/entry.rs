//! The head of a stored response: its [`CachePolicy`] (status, header fields, times,
//! selecting request fields), encoded with a magic and a version number, so that an entry
//! written by another version (a rolling deploy over a shared store) is never misread: it
//! is ignored and replaced.

use super::codec::{Reader, Writer};
use crate::{
    policy::{CacheMode, CachePolicy, PolicyOptions, PolicyParts},
    semantics::etag::EntityTag,
    store::Meta,
};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use std::{sync::Arc, time::Duration};

// v2: flag bit 2 says the ETag was minted by the cache (a v1 reader must not take a minted
// tag for the origin's: it would send it upstream), and the targeted field followed
// (RFC 9213) ends the record. v3: the operator's lifetime overrides (default, min and max
// TTL) follow the headroom (a v2 reader would read them as the status).
const ENTRY_MAGIC: &[u8] = b"tower-etag entry v3\n";

/// An optional duration in the entry head: milliseconds, `u64::MAX` for none.
const NO_DURATION: u64 = u64::MAX;

fn optional_millis(d: Option<Duration>) -> u64 {
    d.map_or(NO_DURATION, |d| {
        (d.as_millis().min(u128::from(NO_DURATION - 1))) as u64
    })
}

fn optional_duration(millis: u64) -> Option<Duration> {
    (millis != NO_DURATION).then(|| Duration::from_millis(millis))
}

/// The head of an entry for `policy`: its encoding, and the policy itself for stores that
/// keep it (a hit then skips decoding).
pub(crate) fn meta(policy: &Arc<CachePolicy>) -> Meta {
    let bytes = encode(policy);
    // The decoded form kept is a copy with buffers of its own, not `policy` itself: the
    // header values of a response just received are slices of the connection's read buffer,
    // and holding them would keep whole buffers (8 KiB and more) alive per entry.
    Meta::with_decoded(bytes, Arc::new(policy.detached()))
}

/// The policy of an entry with a minted tag: the blake3 `hash` of its `len`-byte body.
/// `None` for an empty body (nothing to tag) and for a response that has validators of its
/// own (see [`CachePolicy::with_minted_etag`]).
pub(crate) fn minted(policy: &CachePolicy, len: u64, hash: &blake3::Hash) -> Option<CachePolicy> {
    if len == 0 {
        return None;
    }
    policy.with_minted_etag(&EntityTag::from_blake3(hash))
}

/// [`meta`] of a policy the caller owns (no copy of it is made).
pub(crate) fn meta_of(policy: CachePolicy) -> Meta {
    let bytes = encode(&policy);
    Meta::with_decoded(bytes, Arc::new(policy.into_detached()))
}

/// The most entry heads [`Heads`] keeps decoded: 1024 (a head is about 1 KiB encoded).
const HEADS: usize = 1024;

/// The largest head [`Heads`] keeps (encoded): 16 KiB, so that it holds at most 16 MiB of
/// heads, twice that decoded. A larger one is decoded on every read.
const HEAD_MAX_BYTES: usize = 16 * 1024;

/// Entry heads decoded once for a store that returns them as bytes (Redis, files): the same
/// head read again is not decoded again (9.4 k instructions of a Redis hit of 93 k). Keyed
/// by a hash of the bytes and checked against the bytes themselves, so a head is only ever
/// the decoding of exactly those bytes; bounded ([`HEADS`] heads of at most
/// [`HEAD_MAX_BYTES`], least recently read first out).
pub(crate) struct Heads(std::sync::Mutex<lru::LruCache<u64, (Bytes, Arc<CachePolicy>)>>);

impl Heads {
    pub(crate) fn new() -> Self {
        let capacity = std::num::NonZeroUsize::new(HEADS).unwrap_or(std::num::NonZeroUsize::MIN);
        Self(std::sync::Mutex::new(lru::LruCache::new(capacity)))
    }

    /// The policy of an entry head: the decoded one the store kept, else the one decoded
    /// from the same bytes before, else decoded now (`None`: not a head this version reads).
    pub(crate) fn policy_of(&self, meta: &Meta) -> Option<Arc<CachePolicy>> {
        if let Some(kept) = meta.decoded::<CachePolicy>() {
            return Some(kept);
        }
        let hash = std::hash::BuildHasher::hash_one(
            &foldhash::fast::FixedState::default(),
            &meta.bytes[..],
        );
        if let Some((bytes, policy)) = crate::sync::lock(&self.0).get(&hash) {
            if *bytes == meta.bytes {
                return Some(Arc::clone(policy));
            }
        }
        let policy = Arc::new(decode(&meta.bytes)?);
        if meta.bytes.len() <= HEAD_MAX_BYTES {
            crate::sync::lock(&self.0).put(hash, (meta.bytes.clone(), Arc::clone(&policy)));
        }
        Some(policy)
    }
}

impl std::fmt::Debug for Heads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heads").finish_non_exhaustive()
    }
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
    w.u8(u8::from(p.request_authorization)
        | (u8::from(p.request_no_store) << 1)
        | (u8::from(p.etag_minted) << 2));
    w.time(p.request_time);
    w.time(p.response_time);
    w.u64(p.options.heuristic_max.as_millis() as u64);
    w.u64(p.options.revalidation_headroom.as_millis() as u64);
    w.u64(optional_millis(p.options.default_ttl));
    w.u64(optional_millis(p.options.min_ttl));
    w.u64(optional_millis(p.options.max_ttl));
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
    // The targeted field followed (RFC 9213), or an empty name.
    w.bytes(
        p.targeted
            .as_ref()
            .map_or(&b""[..], |n| n.as_str().as_bytes()),
    );
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
    if flags > 0b111 {
        return None;
    }
    let request_time = r.time()?;
    let response_time = r.time()?;
    let heuristic_max = Duration::from_millis(r.u64()?);
    let revalidation_headroom = Duration::from_millis(r.u64()?);
    let default_ttl = optional_duration(r.u64()?);
    let min_ttl = optional_duration(r.u64()?);
    let max_ttl = optional_duration(r.u64()?);
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
    let targeted = match r.bytes()? {
        b"" => None,
        name => Some(HeaderName::from_bytes(name).ok()?),
    };
    if !r.is_empty() {
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
        etag_minted: flags & 4 != 0,
        targeted,
        options: PolicyOptions {
            heuristic_max,
            revalidation_headroom,
            default_ttl,
            min_ttl,
            max_ttl,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use std::time::UNIX_EPOCH;

    fn policy() -> CachePolicy {
        policy_in(CacheMode::Private)
    }

    fn policy_in(mode: CacheMode) -> CachePolicy {
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
        CachePolicy::new(&req, &res, t, t + Duration::from_millis(5), mode)
    }

    /// A head returned as bytes is decoded once: the same bytes again give the same
    /// policy without decoding; other bytes, their own; bytes of no head, none.
    #[test]
    fn a_head_read_as_bytes_is_decoded_once_per_distinct_head() {
        let heads = Heads::new();
        let first = Meta::encoded(encode(&policy()));
        let a = heads.policy_of(&first).unwrap();
        assert_eq!(*a, policy());
        let again = heads
            .policy_of(&Meta::encoded(first.bytes.clone()))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &again), "not decoded again");
        let other = policy_in(CacheMode::Shared);
        let b = heads.policy_of(&Meta::encoded(encode(&other))).unwrap();
        assert_eq!(*b, other);
        assert_ne!(*b, *a);
        assert!(heads
            .policy_of(&Meta::encoded(Bytes::from_static(b"junk")))
            .is_none());
        // A head the store kept decoded is taken as it is.
        let kept = meta(&Arc::new(policy()));
        let decoded = kept.decoded::<CachePolicy>().unwrap();
        assert!(Arc::ptr_eq(&heads.policy_of(&kept).unwrap(), &decoded));
    }

    #[test]
    fn the_kept_copy_shares_no_buffer_with_the_response() {
        let p = policy();
        let kept = meta(&Arc::new(p.clone()));
        let kept = Heads::new().policy_of(&kept).unwrap();
        assert_eq!(*kept, p);
        for (a, b) in p
            .response_headers()
            .values()
            .zip(kept.response_headers().values())
        {
            assert_ne!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr());
        }
    }

    /// The hand-written seed of the `stored_entry` fuzz corpus is an entry of this version
    /// (so the fuzzer starts past the magic); `SEED=1` writes it again after a format change.
    #[test]
    fn the_fuzz_seed_is_an_entry_of_this_version() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/stored_entry/seed-entry");
        let mut parts = policy().into_parts();
        parts.options.min_ttl = Some(Duration::from_secs(30));
        let seeded = encode(&CachePolicy::from_parts(parts));
        if std::env::var("SEED").is_ok_and(|v| v == "1") {
            std::fs::write(&path, &seeded).unwrap();
        }
        let seed = std::fs::read(&path).unwrap();
        assert!(
            decode(&seed).is_some(),
            "seed-entry is not an entry of this version"
        );
    }

    #[test]
    fn the_overrides_round_trip() {
        let mut parts = policy().into_parts();
        parts.options.default_ttl = Some(Duration::from_secs(600));
        parts.options.max_ttl = Some(Duration::from_secs(3600));
        let p = CachePolicy::from_parts(parts);
        let back = decode(&encode(&p)).unwrap();
        assert_eq!(back.options().default_ttl, Some(Duration::from_secs(600)));
        assert_eq!(back.options().min_ttl, None);
        assert_eq!(back.options().max_ttl, Some(Duration::from_secs(3600)));
        assert_eq!(back, p);
    }

    #[test]
    fn entry_roundtrips() {
        let p = policy();
        assert_eq!(decode(&encode(&p)), Some(p));
        let mut parts = policy().into_parts();
        parts.response_headers.remove(http::header::ETAG);
        let minted = CachePolicy::from_parts(parts)
            .with_minted_etag(&EntityTag::strong("m").unwrap())
            .unwrap();
        assert!(minted.etag_minted());
        assert_eq!(decode(&encode(&minted)), Some(minted));
        // The targeted field followed (RFC 9213) is kept.
        let mut parts = policy().into_parts();
        parts.response_headers.insert(
            "cdn-cache-control",
            http::HeaderValue::from_static("max-age=600"),
        );
        parts.targeted = Some(HeaderName::from_static("cdn-cache-control"));
        let targeted = CachePolicy::from_parts(parts);
        assert!(targeted.targeted().is_some());
        assert_eq!(decode(&encode(&targeted)), Some(targeted));
    }

    #[test]
    fn other_versions_and_damage_are_rejected() {
        let bytes = encode(&policy());
        // v1, before minted tags; v2, before the operator's overrides; a later v4.
        for version in [b'1', b'2', b'4'] {
            let mut other = bytes.to_vec();
            other[ENTRY_MAGIC.len() - 2] = version;
            assert_eq!(decode(&other), None);
        }
        // A flag this version does not know.
        let mut flags = bytes.to_vec();
        flags[ENTRY_MAGIC.len() + 1] |= 0b1000;
        assert_eq!(decode(&flags), None);
        for cut in [0, ENTRY_MAGIC.len(), bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(decode(&longer), None);
    }
}
