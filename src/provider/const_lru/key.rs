//! [`SimpleEtagCacheKey`] and the allocation-free view of it that lookups use.

use http::{
    header::{ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, HOST},
    HeaderMap, HeaderName, HeaderValue, Request,
};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

/// The cache key of [`ConstLruProvider`](super::ConstLruProvider): the target (Host, path and
/// query) and the sorted values of the request fields that select a representation
/// (`Accept`, `Accept-Language`, `Accept-Encoding`). The method is not part of it: HEAD
/// shares GET's entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimpleEtagCacheKey {
    /// The authority of the URI, or else the `Host` field, lower-cased; empty if neither is
    /// present.
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
    /// The key of a request.
    pub fn from_request<B>(request: &Request<B>) -> Self {
        let view = KeyView::of_request(request);
        let [accept, accept_language, accept_encoding] =
            view.fields.map(|f| f.iter().cloned().collect());
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
    pub(super) fn of_request<B>(request: &'a Request<B>) -> Self {
        let host = match request.uri().authority() {
            Some(a) => a.as_str().as_bytes(),
            None => request
                .headers()
                .get(HOST)
                .map_or(&[][..], HeaderValue::as_bytes),
        };
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
        for field in &self.fields {
            state.write_u8(0xff);
            for v in field.iter() {
                state.write(v.as_bytes());
                state.write_u8(0xfe);
            }
        }
    }
}

/// Maps keys to 64-bit digests (SipHash-1-3 with a random per-process seed), so the LRU
/// compares integers. An entry also keeps its full key, checked on every hit: two keys with
/// one digest can only evict each other, never answer for each other.
#[derive(Debug, Default)]
pub(super) struct Digester(RandomState);

impl Digester {
    pub(super) fn digest(&self, view: &KeyView<'_>) -> u64 {
        self.0.hash_one(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (rv, kv) = (KeyView::of_request(&r), key.view());
        assert!(rv.same_as(&kv));
        assert_eq!(d.digest(&rv), d.digest(&kv));
    }

    #[test]
    fn line_order_does_not_matter_but_values_do() {
        let d = Digester::default();
        let a = req("h", "/", &["x", "y"]);
        let b = req("h", "/", &["y", "x"]);
        let c = req("h", "/", &["x"]);
        assert!(KeyView::of_request(&a).same_as(&KeyView::of_request(&b)));
        assert_eq!(
            d.digest(&KeyView::of_request(&a)),
            d.digest(&KeyView::of_request(&b))
        );
        assert!(!KeyView::of_request(&a).same_as(&KeyView::of_request(&c)));
        assert_ne!(
            d.digest(&KeyView::of_request(&a)),
            d.digest(&KeyView::of_request(&c))
        );
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
                let (va, vb) = (KeyView::of_request(a), KeyView::of_request(b));
                assert_eq!(va.same_as(&vb), i == j);
                assert_eq!(d.digest(&va) == d.digest(&vb), i == j);
            }
        }
    }
}
