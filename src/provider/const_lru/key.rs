//! [`SimpleEtagCacheKey`] and the allocation-free view of it that lookups use.

use crate::semantics::request::{target_authority, RequestHead};
use http::{
    header::{ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE},
    HeaderMap, HeaderName, HeaderValue, Request,
};
use std::hash::{BuildHasher, Hash, Hasher};

/// The cache key of [`ConstLruProvider`](super::ConstLruProvider): the target (Host, path and
/// query) and the sorted values of the request fields that select a representation
/// (`Accept`, `Accept-Language`, `Accept-Encoding`). The method is not part of it: HEAD
/// shares GET's entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimpleEtagCacheKey {
    /// The authority of the URI, or else the `Host` field, lower-cased and without the
    /// default port (see [`RequestHead::authority`]); empty if neither is present.
    pub host: String,
    /// The path and query of the URI.
    pub path_and_query: String,
    /// The `Accept` lines, sorted.
    pub accept: Vec<HeaderValue>,
    /// The `Accept-Language` lines, sorted.
    pub accept_language: Vec<HeaderValue>,
    /// The `Accept-Encoding` lines, sorted.
    pub accept_encoding: Vec<HeaderValue>,
}

/// The request fields that [`SimpleEtagCacheKey`] includes.
pub(super) const KEY_FIELDS: [HeaderName; 3] = [ACCEPT, ACCEPT_LANGUAGE, ACCEPT_ENCODING];

impl SimpleEtagCacheKey {
    /// The key of a request. A request whose authority is ambiguous (see
    /// [`target_authority`]) gets an empty host; the middleware refuses such requests.
    pub fn from_request<B>(request: &Request<B>) -> Self {
        let authority = target_authority(request.version(), request.uri(), request.headers())
            .ok()
            .flatten();
        let host = authority.as_deref().unwrap_or("");
        Self::of(&KeyView::of(host.as_bytes(), request))
    }

    pub(super) fn of(view: &KeyView<'_>) -> Self {
        let [accept, accept_language, accept_encoding] =
            view.fields.each_ref().map(|f| f.iter().cloned().collect());
        Self {
            host: String::from_utf8_lossy(view.host).to_ascii_lowercase(),
            path_and_query: view.path_and_query.to_owned(),
            accept,
            accept_language,
            accept_encoding,
        }
    }

    pub(super) fn view(&self) -> KeyView<'_> {
        fn list(v: &[HeaderValue]) -> Values<'_> {
            match v {
                [] => Values::None,
                [one] => Values::One(one),
                many => {
                    let mut all: Vec<&HeaderValue> = many.iter().collect();
                    all.sort_unstable();
                    Values::Many(all)
                }
            }
        }
        KeyView {
            host: self.host.as_bytes(),
            path_and_query: &self.path_and_query,
            fields: [
                list(&self.accept),
                list(&self.accept_language),
                list(&self.accept_encoding),
            ],
        }
    }
}

/// The values of one key field, sorted; no allocation for the usual zero or one line.
#[derive(Debug)]
pub(super) enum Values<'a> {
    None,
    One(&'a HeaderValue),
    Many(Vec<&'a HeaderValue>),
}

impl<'a> Values<'a> {
    fn of(headers: &'a HeaderMap, name: &HeaderName) -> Self {
        let mut lines = headers.get_all(name).iter();
        match (lines.next(), lines.next()) {
            (None, _) => Self::None,
            (Some(one), None) => Self::One(one),
            (Some(a), Some(b)) => {
                let mut all: Vec<&HeaderValue> = [a, b].into_iter().chain(lines).collect();
                all.sort_unstable();
                Self::Many(all)
            }
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &'a HeaderValue> + '_ {
        let (one, many): (Option<&'a HeaderValue>, &[&'a HeaderValue]) = match self {
            Self::None => (None, &[]),
            Self::One(v) => (Some(*v), &[]),
            Self::Many(v) => (None, v),
        };
        one.into_iter().chain(many.iter().copied())
    }
}

/// A key borrowed from a request or from a [`SimpleEtagCacheKey`].
#[derive(Debug)]
pub(super) struct KeyView<'a> {
    /// As received: compared and hashed case-insensitively.
    host: &'a [u8],
    path_and_query: &'a str,
    fields: [Values<'a>; 3],
}

impl<'a> KeyView<'a> {
    /// The key of `request`, whose head the middleware read as `head`.
    pub(super) fn of_request<B>(head: &'a RequestHead, request: &'a Request<B>) -> Self {
        Self::of(head.authority.as_deref().unwrap_or("").as_bytes(), request)
    }

    fn of<B>(host: &'a [u8], request: &'a Request<B>) -> Self {
        let headers = request.headers();
        Self {
            host,
            path_and_query: request.uri().path_and_query().map_or("/", |pq| pq.as_str()),
            fields: [
                Values::of(headers, &KEY_FIELDS[0]),
                Values::of(headers, &KEY_FIELDS[1]),
                Values::of(headers, &KEY_FIELDS[2]),
            ],
        }
    }

    /// Whether both views name the same key.
    pub(super) fn same_as(&self, other: &KeyView<'_>) -> bool {
        self.host.eq_ignore_ascii_case(other.host)
            && self.path_and_query == other.path_and_query
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|(a, b)| a.iter().eq(b.iter()))
    }
}

impl Hash for KeyView<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.hash_target(state);
        state.write_u8(0xff);
        for field in &self.fields {
            state.write_u8(0xff);
            for v in field.iter() {
                state.write(v.as_bytes());
                state.write_u8(0xfe);
            }
        }
    }
}

impl KeyView<'_> {
    /// Hashes the host (case-insensitively) and the path and query.
    fn hash_target<H: Hasher>(&self, state: &mut H) {
        if self.host.iter().any(u8::is_ascii_uppercase) {
            let mut buf = [0u8; 64];
            for chunk in self.host.chunks(buf.len()) {
                let lower = &mut buf[..chunk.len()];
                lower.copy_from_slice(chunk);
                lower.make_ascii_lowercase();
                state.write(lower);
            }
        } else {
            state.write(self.host);
        }
        state.write_u8(0xff);
        state.write(self.path_and_query.as_bytes());
    }
}

/// Maps keys to 64-bit digests (foldhash with a random per-provider seed), so the LRU
/// compares integers. An entry also keeps its full key, checked on every hit: two keys with
/// one digest can only evict each other, never answer for each other, so a fast hash is
/// enough (forging collisions would buy an attacker no more than requesting many URLs).
#[derive(Debug, Default)]
pub(super) struct Digester(foldhash::fast::RandomState);

impl Digester {
    pub(super) fn digest(&self, view: &KeyView<'_>) -> u64 {
        self.0.hash_one(view)
    }

    /// The digest of a key's target (host, path and query), under which the entries of every
    /// representation of it are indexed for invalidation.
    pub(super) fn target(&self, key: &SimpleEtagCacheKey) -> u64 {
        self.target_of(key.host.as_bytes(), &key.path_and_query)
    }

    pub(super) fn target_of(&self, host: &[u8], path_and_query: &str) -> u64 {
        let target = KeyView {
            host,
            path_and_query,
            fields: [Values::None, Values::None, Values::None],
        };
        let mut hasher = self.0.build_hasher();
        hasher.write_u8(0x01); // apart from whole keys
        target.hash_target(&mut hasher);
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HOST;

    fn view<'a>(head: &'a RequestHead, r: &'a Request<()>) -> KeyView<'a> {
        KeyView::of_request(head, r)
    }

    fn head(r: &Request<()>) -> RequestHead {
        RequestHead::from_parts(
            &Request::get(r.uri().clone())
                .header(HOST, r.headers()[HOST].clone())
                .body(())
                .unwrap()
                .into_parts()
                .0,
        )
        .unwrap()
    }

    fn req(host: &str, path: &str, accept: &[&str]) -> Request<()> {
        let mut b = Request::get(path).header(HOST, host);
        for a in accept {
            b = b.header(ACCEPT, *a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn request_and_key_views_agree() {
        let d = Digester::default();
        let r = req("Example.COM", "/a?b=1", &["text/html", "application/json"]);
        let key = SimpleEtagCacheKey::from_request(&r);
        assert_eq!(key.host, "example.com");
        assert_eq!(key.accept.len(), 2);
        let h = head(&r);
        let (rv, kv) = (view(&h, &r), key.view());
        assert!(rv.same_as(&kv));
        assert_eq!(d.digest(&rv), d.digest(&kv));
    }

    #[test]
    fn line_order_does_not_matter_but_values_do() {
        let d = Digester::default();
        let a = req("h", "/", &["x", "y"]);
        let b = req("h", "/", &["y", "x"]);
        let c = req("h", "/", &["x"]);
        let (ha, hb, hc) = (head(&a), head(&b), head(&c));
        let (va, vb, vc) = (view(&ha, &a), view(&hb, &b), view(&hc, &c));
        assert!(va.same_as(&vb));
        assert_eq!(d.digest(&va), d.digest(&vb));
        assert!(!va.same_as(&vc));
        assert_ne!(d.digest(&va), d.digest(&vc));
    }

    #[test]
    fn different_targets_differ() {
        let d = Digester::default();
        let views = [
            req("h", "/a", &[]),
            req("h", "/b", &[]),
            req("g", "/a", &[]),
        ];
        for (i, a) in views.iter().enumerate() {
            for (j, b) in views.iter().enumerate() {
                let (ha, hb) = (head(a), head(b));
                let (va, vb) = (view(&ha, a), view(&hb, b));
                assert_eq!(va.same_as(&vb), i == j);
                assert_eq!(d.digest(&va) == d.digest(&vb), i == j);
            }
        }
    }
}
