//! [`Key`]: the name of a record in a store, and the URL it belongs to.

use std::{fmt, ops::Range};

/// A store key: the cache's name for one record, which tells the URL the record belongs to.
///
/// Every record of one URL (its index, its variants, for every user) has the same
/// [`Key::url`], so a store can keep them together: [`Partitioned`](super::Partitioned)
/// routes by it, and a Redis store puts them under one hash tag (one Redis Cluster slot).
/// The full name ([`Key::as_str`]) is what tells records apart; a store must treat it as
/// opaque bytes (it may hold `\0`, and a user's name in private mode).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    text: Box<str>,
    url: Range<usize>,
}

impl Key {
    /// The key of the record `kind` (a short tag, such as `"v"` for a variant) of `url`,
    /// told apart from the URL's other records of that kind by `rest`. The name is
    /// `kind \0 url \0 rest`.
    pub fn new(kind: &str, url: &str, rest: &str) -> Self {
        Self::written(kind, url, rest.len(), |text| text.push_str(rest))
    }

    /// A key whose `rest` (`rest_len` bytes) `write_rest` appends: one allocation, when
    /// `rest_len` is exact.
    pub(crate) fn written(
        kind: &str,
        url: &str,
        rest_len: usize,
        write_rest: impl FnOnce(&mut String),
    ) -> Self {
        let mut text = String::with_capacity(kind.len() + url.len() + rest_len + 2);
        text.push_str(kind);
        text.push('\0');
        let start = text.len();
        text.push_str(url);
        let end = text.len();
        text.push('\0');
        write_rest(&mut text);
        Self {
            text: text.into(),
            url: start..end,
        }
    }

    /// The whole name.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The URL the record belongs to (as the cache keys it: authority, path and query).
    pub fn url(&self) -> &str {
        &self.text[self.url.clone()]
    }
}

impl Key {
    /// A short name for the whole key ([`hex_digest`] of it): what a store files it under,
    /// and what an invalidation bus names it by.
    pub(crate) fn digest(&self) -> String {
        hex_digest(self.as_str())
    }
}

/// The first 16 bytes of the blake3 digest of `text`, in hex: a short name for any text,
/// safe in a file name or a Redis key, and the same on every node.
pub(crate) fn hex_digest(text: &str) -> String {
    let hash = blake3::hash(text.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&hash.as_bytes()[..16]);
    let mut out = String::with_capacity(32);
    crate::semantics::headers::push_hex(&mut out, u128::from_be_bytes(first), 32);
    out
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The name may hold a user's identity (private mode): show its URL only.
        f.debug_struct("Key").field("url", &self.url()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_found_in_the_name() {
        let k = Key::new("v", "example.com/a?b", "alice\0x1\0ff");
        assert_eq!(k.url(), "example.com/a?b");
        assert_eq!(k.as_str(), "v\0example.com/a?b\0alice\0x1\0ff");
        assert_ne!(k, Key::new("i", "example.com/a?b", "alice\0x1\0ff"));
        // Debug never shows the user.
        assert!(!format!("{k:?}").contains("alice"));
        // Digests are 32 hex digits, and tell keys apart.
        let d = k.digest();
        assert_eq!(d.len(), 32);
        assert!(d.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(
            d,
            Key::new("i", "example.com/a?b", "alice\0x1\0ff").digest()
        );
        assert_eq!(d, hex_digest(k.as_str()));
    }
}
