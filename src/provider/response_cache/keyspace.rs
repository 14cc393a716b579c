//! Where the response cache keeps what, under which keys, and every read and write of the
//! records that tie a URL's entries together. Nothing outside this module builds a key.
//!
//! A request's entries live at a [`Place`]: its URL (normalised authority, path and query)
//! and, in private mode, its user. Three kinds of record:
//!
//! - **index** (`i\0{url}\0{user}`), an [`Index`]: the URL's *epoch*, the `Vary` field sets
//!   its responses used (most recent first, a few at most, so an origin whose `Vary` flips
//!   keeps both sets' variants reachable), and its variants (most recently used first,
//!   capped: the oldest is removed when a new one would pass the cap).
//! - **variant** (`v\0{url}\0{user}\0{epoch}\0{selector}`): one stored response. The
//!   selector is a digest of the `Vary` names and of the request's values of them, so a key
//!   stays short whatever clients send; the stored policy keeps the values themselves and is
//!   checked on every use (RFC 9111 §4.1), so even a digest collision never serves the wrong
//!   variant.
//! - **epoch** (`e\0{url}\0`, private and per-user modes): the URL's epoch, shared by every
//!   user's index.
//! - **user** (`u\0{user}\0`, where requests name users): the user's generation. A user's
//!   entries are keyed under the URL's epoch mixed with it, so a new generation (a purge of
//!   the user) makes all of them unreachable at once, wherever they are stored.
//!
//! Invalidation gives the URL a new epoch. Variants are keyed under the epoch they were
//! stored in, so every variant of every user becomes unreachable at once, and a fill that
//! read the old epoch (a response requested before the invalidation) can only store under it:
//! an invalidation wins over every fill that started before it. Index writes are
//! compare-and-swap ([`Expect`]), so no two writers lose each other's variants and no fill
//! brings an old epoch back.

use super::codec::{Reader, Writer};
use crate::{
    policy::{filing::Shelf, vary::normalized_into},
    semantics::headers::push_hex,
    store::{Expect, GetResult, Key, Meta, Store, StoreError, Stored},
};
use bytes::Bytes;
use http::{HeaderMap, Uri};
use std::{
    hash::{BuildHasher, RandomState},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

/// The most `Vary` field sets an index remembers.
const MAX_VARY_SETS: usize = 4;

/// How long an index written by an invalidation (a new epoch, no variants) lives: longer
/// than any fill that read the old epoch takes to get its response head.
const TOMBSTONE_TTL: Duration = Duration::from_secs(3600);

/// The shortest life of an index (it lives as long as the longest-lived variant it lists).
const MIN_INDEX_TTL: Duration = Duration::from_secs(3600);

/// The shortest life of a private mode epoch record, which every user's entries of the URL
/// are keyed under.
const EPOCH_TTL: Duration = Duration::from_secs(24 * 3600);

/// What marks a record written to forget ([`Index::forgetting`]): a `Vary` name no field
/// can have.
const FORGET_MARK: &str = "\0forget";

/// How many times a fill retries its index write when another write came in between.
const INDEX_RETRIES: usize = 3;

/// The URL of a request as the cache keys it: the authority (lower-cased, without the
/// default port), then the path and query; in a client cache (`ResponseCacheBuilder::client`)
/// the scheme first (`https://host/path`), as a client reaches both `http` and `https`
/// origins under one name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Url(String);

impl Url {
    /// The URL of a request for `uri` whose normalised authority is `authority`, with
    /// `scheme` in a client cache.
    pub(crate) fn new(scheme: Option<&str>, authority: Option<&str>, uri: &Uri) -> Self {
        let authority = authority.unwrap_or("");
        let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let mut url = String::with_capacity(authority.len() + pq.len() + 8);
        if let Some(scheme) = scheme {
            url.extend(scheme.chars().map(|c| c.to_ascii_lowercase()));
            url.push_str("://");
        }
        url.push_str(authority);
        url.push_str(pq);
        Self(url)
    }

    /// The URL an absolute URI names, or a reference with the request's `default_authority`
    /// (and, in a client cache, `default_scheme`); `None` when the authority is not valid.
    pub(crate) fn of_uri(
        uri: &Uri,
        default_scheme: Option<&str>,
        default_authority: Option<&str>,
    ) -> Option<Self> {
        match uri.authority() {
            Some(_) => {
                let authority = crate::semantics::request::uri_authority(uri)?;
                let scheme = default_scheme.map(|s| uri.scheme_str().unwrap_or(s));
                Some(Self::new(scheme, Some(authority.as_str()), uri))
            }
            None => Some(Self::new(default_scheme, default_authority, uri)),
        }
    }
}

/// Where a request's entries live: its URL and, for a user's own entries, its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) url: Url,
    pub(crate) user: Option<String>,
}

impl Place {
    fn index_key(&self) -> Key {
        Key::new("i", &self.url.0, self.user.as_deref().unwrap_or(""))
    }

    fn epoch_key(&self) -> Key {
        Key::new("e", &self.url.0, "")
    }

    /// Which entries of the URL it is: a user's own, or the shared ones.
    pub(crate) fn shelf(&self) -> Shelf {
        if self.user.is_some() {
            Shelf::Own
        } else {
            Shelf::Shared
        }
    }

    /// The shared place of the same URL.
    pub(crate) fn shared(&self) -> Place {
        Place {
            url: self.url.clone(),
            user: None,
        }
    }

    /// The record of the place's user's generation.
    fn user_key(&self) -> Option<Key> {
        self.user.as_deref().map(user_key)
    }

    /// The key of the variant `selector` stored under `epoch`.
    pub(crate) fn variant_key(&self, epoch: u64, selector: Selector) -> Key {
        let user = self.user.as_deref().unwrap_or("");
        // Exactly its length: a key's text is boxed, and spare room would be a reallocation.
        let selector_len = if selector == Selector::NONE { 0 } else { 33 };
        Key::written("v", &self.url.0, user.len() + 17 + selector_len, |rest| {
            rest.push_str(user);
            rest.push('\0');
            push_hex(rest, u128::from(epoch), 16);
            if selector != Selector::NONE {
                rest.push('\0');
                push_hex(rest, selector.0, 32);
            }
        })
    }

    /// What coalesced requests for this place wait on before a variant is known.
    pub(crate) fn coalesce_key(&self) -> Key {
        self.index_key()
    }
}

/// How a user is named in keys: a digest of the name the extractor gave, so a session id
/// or a token is never readable in a store's keys (nor on disk, nor in Redis); keyed with
/// `secret` when the cache has one, so that names of low entropy cannot be found by
/// trying them all.
pub(crate) fn user_id(name: &str, secret: Option<&[u8; 32]>) -> String {
    match secret {
        None => crate::store::hex_digest(name),
        Some(secret) => {
            let hash = blake3::keyed_hash(secret, name.as_bytes());
            let mut first = [0u8; 16];
            first.copy_from_slice(&hash.as_bytes()[..16]);
            let mut out = String::with_capacity(33);
            // `k` keeps keyed ids apart from unkeyed ones.
            out.push('k');
            push_hex(&mut out, u128::from_be_bytes(first), 32);
            out
        }
    }
}

/// The record of `user`'s generation (routed by the user's id, as no URL is its own).
fn user_key(user: &str) -> Key {
    Key::new("u", user, "")
}

/// The epoch a user's entries of a URL are keyed under: the URL's, mixed with the user's
/// generation (both random, so a new one of either gives keys never used before). The same
/// on every node.
fn user_epoch(url_epoch: u64, generation: u64) -> u64 {
    url_epoch
        ^ generation
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29)
}

/// Which variant a request selects under a set of `Vary` names: a digest of the names and
/// of the request's normalised values of them (RFC 9111 §4.1). Stable across processes, so
/// every node of a fleet computes the same key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Selector(u128);

impl Selector {
    /// The one variant of a response without `Vary`.
    const NONE: Self = Self(0);

    /// The selector of `request_headers` under `names` (sorted, lower-case).
    pub(crate) fn of(names: &[String], request_headers: &HeaderMap) -> Self {
        if names.is_empty() {
            // Most responses do not vary: no hashing on their hits.
            return Self::NONE;
        }
        let mut hasher = blake3::Hasher::new();
        let mut value = String::new();
        for name in names {
            value.clear();
            let present = normalized_into(request_headers, name, &mut value);
            hasher.update(name.as_bytes());
            // Absent and empty differ: absence only matches absence.
            hasher.update(if present { b"\x01" } else { b"\x00" });
            hasher.update(&(value.len() as u64).to_be_bytes());
            hasher.update(value.as_bytes());
        }
        let digest = hasher.finalize();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest.as_bytes()[..16]);
        Self(u128::from_be_bytes(first))
    }
}

const INDEX_MAGIC: &[u8] = b"tower-etag index v2\n";

/// What the cache knows of a place's entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Index {
    /// The generation the variants are stored under; a new one on every invalidation.
    epoch: u64,
    /// The `Vary` field sets of its responses (each sorted), most recent first.
    vary_sets: Vec<Vec<String>>,
    /// Its variants, most recently used first.
    variants: Vec<Selector>,
    /// Until when it must live: as long as the longest-lived of its variants.
    expires: SystemTime,
}

fn new_epoch() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    RandomState::new().hash_one((n, SystemTime::now()))
}

impl Index {
    /// A record (a URL's epoch, a user's generation) written to forget what was stored
    /// under the one before: an invalidation or a purge. A fill that expected another
    /// record, or none, and finds it was overtaken by it.
    fn forgetting(epoch: u64) -> Self {
        let mut record = Self::empty(epoch);
        record.vary_sets = vec![vec![FORGET_MARK.to_owned()]];
        record
    }

    /// Whether this record was written by [`Index::forgetting`].
    fn forgets(&self) -> bool {
        self.vary_sets
            .first()
            .is_some_and(|set| set == &[FORGET_MARK])
    }

    fn empty(epoch: u64) -> Self {
        Self {
            epoch,
            vary_sets: Vec::new(),
            variants: Vec::new(),
            expires: SystemTime::UNIX_EPOCH,
        }
    }

    /// This index made to live at least `ttl` from `now`; returns it and its time to live.
    fn living(mut self, now: SystemTime, ttl: Duration) -> (Self, Duration) {
        let until = now
            .checked_add(ttl.max(MIN_INDEX_TTL))
            .unwrap_or(self.expires);
        self.expires = self.expires.max(until);
        let ttl = self.expires.duration_since(now).unwrap_or(MIN_INDEX_TTL);
        (self, ttl)
    }

    /// The `Vary` field sets to look variants up under, most recent first.
    pub(crate) fn vary_sets(&self) -> &[Vec<String>] {
        &self.vary_sets
    }

    /// Its variants, most recently used first. The list is what fills claimed: a fill that
    /// was abandoned (its body failed, its client went away) left its selector behind.
    pub(crate) fn variants(&self) -> &[Selector] {
        &self.variants
    }

    /// Whether `selector` is one of the listed variants (an evicted one is not served).
    pub(crate) fn lists(&self, selector: Selector) -> bool {
        self.variants.contains(&selector)
    }

    /// Whether a hit on `selector` should move it to the front: it is in the older half of
    /// the list, so it would be among the next evicted. Variants in use stay in front
    /// (least recently used order) at the cost of one index write per half a list of new
    /// variants, never one per hit.
    pub(crate) fn worth_touching(&self, selector: Selector) -> bool {
        self.variants
            .iter()
            .position(|s| *s == selector)
            .is_some_and(|i| i >= self.variants.len().div_ceil(2) && i > 0)
    }

    /// This index with `names` as its most recent `Vary` set and `selector` as its most
    /// recent variant; returns it and the variants that fell off the end.
    fn with(
        &self,
        names: &[String],
        selector: Selector,
        max_variants: usize,
    ) -> (Self, Vec<Selector>) {
        let mut next = self.clone();
        next.vary_sets.retain(|set| set.as_slice() != names);
        next.vary_sets.insert(0, names.to_vec());
        next.vary_sets.truncate(MAX_VARY_SETS);
        next.move_to_front(selector);
        let evicted = next
            .variants
            .split_off(next.variants.len().min(max_variants.max(1)));
        (next, evicted)
    }

    /// Makes `selector` the most recently used variant.
    fn move_to_front(&mut self, selector: Selector) {
        self.variants.retain(|s| *s != selector);
        self.variants.insert(0, selector);
    }

    fn meta(self: &Arc<Self>) -> Meta {
        Meta::with_decoded(self.encode(), Arc::clone(self) as _)
    }

    fn of(meta: &Meta) -> Option<Arc<Self>> {
        meta.decoded::<Self>()
            .or_else(|| Self::decode(&meta.bytes).map(Arc::new))
    }

    pub(crate) fn encode(&self) -> Bytes {
        let mut w = Writer(Vec::with_capacity(64 + 16 * self.variants.len()));
        w.0.extend_from_slice(INDEX_MAGIC);
        w.u64(self.epoch);
        w.time(self.expires);
        w.u8(self.vary_sets.len() as u8);
        for set in &self.vary_sets {
            w.u16(set.len() as u16);
            for name in set {
                w.bytes(name.as_bytes());
            }
        }
        w.u16(self.variants.len() as u16);
        for s in &self.variants {
            w.0.extend_from_slice(&s.0.to_be_bytes());
        }
        Bytes::from(w.0)
    }

    /// `None` for another format version or a damaged record (treated as absent).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes.strip_prefix(INDEX_MAGIC)?);
        let epoch = r.u64()?;
        let expires = r.time()?;
        let mut vary_sets = Vec::new();
        for _ in 0..r.u8()? {
            let mut set = Vec::new();
            for _ in 0..r.u16()? {
                set.push(String::from_utf8(r.bytes()?.to_vec()).ok()?);
            }
            vary_sets.push(set);
        }
        let mut variants = Vec::new();
        for _ in 0..r.u16()? {
            variants.push(Selector(u128::from_be_bytes(r.take(16)?.try_into().ok()?)));
        }
        if !r.is_empty() || vary_sets.len() > MAX_VARY_SETS {
            return None;
        }
        Some(Self {
            epoch,
            vary_sets,
            variants,
            expires,
        })
    }
}

/// The records of a place as a lookup read them: what a fill writes against.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    /// The place's index and its version, as read.
    index: Option<(Arc<Index>, u64)>,
    /// Private mode: the epoch of the URL's epoch record, when there is one.
    url_epoch: Option<u64>,
    /// For a user's place: its generation, when it has a record.
    user_generation: Option<u64>,
    has_user: bool,
    private: bool,
}

impl Seen {
    /// The epoch the place's entries are stored under now, if it has one.
    pub(crate) fn epoch(&self) -> Option<u64> {
        if self.private {
            match (self.url_epoch, self.has_user) {
                (Some(url_epoch), true) => Some(user_epoch(url_epoch, self.user_generation?)),
                (url_epoch, _) => url_epoch,
            }
        } else {
            self.index.as_ref().map(|(i, _)| i.epoch)
        }
    }

    /// The index to look variants up in: in private mode only one of the URL's current
    /// epoch (a user's index from before the last invalidation is as good as none).
    pub(crate) fn index(&self) -> Option<&Arc<Index>> {
        self.current().map(|(index, _)| index)
    }

    /// That index with the version it was read at.
    fn current(&self) -> Option<&(Arc<Index>, u64)> {
        let current = self.index.as_ref()?;
        (self.epoch() == Some(current.0.epoch)).then_some(current)
    }
}

/// Reads and writes a store's records for one cache mode.
#[derive(Debug)]
pub(crate) struct Keyspace<'a, St> {
    pub(crate) store: &'a St,
    /// Private mode keeps the URL's epoch apart from the per-user indexes.
    pub(crate) private: bool,
    pub(crate) max_variants: usize,
}

/// The index a record holds, and the record's version; `None` for a record of another
/// version of the crate, or damaged.
fn index_of(stored: Stored) -> Option<(Arc<Index>, u64)> {
    Index::of(&stored.meta).map(|i| (i, stored.version))
}

/// Why a fill may not write its variant.
#[derive(Debug)]
pub(crate) enum WriteRefused {
    /// The URL's records changed since the fill's lookup in a way that may be an
    /// invalidation (or another fill won the race to write them): what the fill fetched may
    /// be older than that.
    Superseded,
    /// The store failed or kept conflicting.
    Store(StoreError),
}

impl<St: Store> Keyspace<'_, St> {
    /// The records of `place`.
    pub(crate) async fn read(&self, place: &Place) -> Result<Seen, StoreError> {
        let url_epoch = if self.private {
            self.read_index(&place.epoch_key())
                .await?
                .map(|(i, _)| i.epoch)
        } else {
            None
        };
        self.read_with(place, url_epoch).await
    }

    /// The records of `place` in a keyspace without private places (its URL's index alone),
    /// and the entry under `also`, read at once ([`Store::get_two`]: one round trip where
    /// the store can).
    pub(crate) async fn read_and_get(
        &self,
        place: &Place,
        also: &Key,
    ) -> (Result<Seen, StoreError>, GetResult) {
        debug_assert!(
            !self.private,
            "private places have more records to read first"
        );
        let (index, also) = self.store.get_two(&place.index_key(), also).await;
        let seen = index.map(|stored| Seen {
            index: stored.and_then(index_of),
            url_epoch: None,
            user_generation: None,
            has_user: false,
            private: false,
        });
        (seen, also)
    }

    /// The records of the shared place of the URL whose user's place was just read as
    /// `user_seen` (its URL epoch read once for both).
    pub(crate) async fn read_shared(
        &self,
        shared: &Place,
        user_seen: &Seen,
    ) -> Result<Seen, StoreError> {
        self.read_with(shared, user_seen.url_epoch).await
    }

    async fn read_with(&self, place: &Place, url_epoch: Option<u64>) -> Result<Seen, StoreError> {
        let has_user = self.private && place.user.is_some();
        let user_generation = match place.user_key() {
            Some(key) if has_user => self.read_index(&key).await?.map(|(g, _)| g.epoch),
            _ => None,
        };
        // A user without a generation has nothing reachable: no index to read.
        let index = if has_user && user_generation.is_none() {
            None
        } else {
            self.read_index(&place.index_key()).await?
        };
        Ok(Seen {
            index,
            url_epoch,
            user_generation,
            has_user,
            private: self.private,
        })
    }

    async fn read_index(&self, key: &Key) -> Result<Option<(Arc<Index>, u64)>, StoreError> {
        Ok(self.store.get(key).await?.and_then(index_of))
    }

    /// Makes room for variant `selector` (under `names`) of `place` in its index, as seen by
    /// a lookup; returns the epoch to store it under. Removes the variants that fall off the
    /// end of the list.
    pub(crate) async fn admit(
        &self,
        place: &Place,
        seen: &Seen,
        names: &[String],
        selector: Selector,
        ttl: Duration,
    ) -> Result<u64, WriteRefused> {
        let now = SystemTime::now();
        let (url_epoch, epoch) = match (self.private, seen.epoch()) {
            (true, _) => {
                let url_epoch = self
                    .record_for(&place.epoch_key(), seen.url_epoch, now, ttl)
                    .await?;
                let epoch = match place.user_key() {
                    Some(key) => {
                        let generation = self
                            .record_for(&key, seen.user_generation, now, ttl)
                            .await?;
                        user_epoch(url_epoch, generation)
                    }
                    None => url_epoch,
                };
                (url_epoch, epoch)
            }
            (false, Some(epoch)) => (epoch, epoch),
            (false, None) => (0, new_epoch()),
        };
        let key = place.index_key();
        let mut current = seen.index.clone();
        for attempt in 0..INDEX_RETRIES {
            if attempt > 0 && self.private {
                // The user's index changed under this fill: was the URL invalidated, or the
                // user purged?
                self.record_is(&place.epoch_key(), url_epoch).await?;
                if let (Some(key), Some(generation)) = (place.user_key(), seen.user_generation) {
                    self.record_is(&key, generation).await?;
                }
            }
            let (base, expect) = match &current {
                Some((index, version)) if index.epoch == epoch => {
                    (Arc::clone(index), Expect::Version(*version))
                }
                // In shared mode the index is the epoch: another one means an invalidation.
                Some(_) if !self.private => return Err(WriteRefused::Superseded),
                // A user's index of another epoch than the URL's (checked just now, or at
                // the first attempt by `record_for`) is from before the URL's last
                // invalidation: it starts afresh.
                Some((_, version)) => (Arc::new(Index::empty(epoch)), Expect::Version(*version)),
                None => (Arc::new(Index::empty(epoch)), Expect::Absent),
            };
            let (next, evicted) = base.with(names, selector, self.max_variants);
            let (next, index_ttl) = next.living(now, ttl);
            let next = Arc::new(next);
            match self
                .store
                .update_meta(&key, expect, next.meta(), index_ttl)
                .await
            {
                Ok(true) => {
                    for gone in evicted {
                        let key = place.variant_key(epoch, gone);
                        let _ = self.store.remove(&key, Expect::Any).await;
                    }
                    return Ok(epoch);
                }
                Ok(false) => {
                    // Written by someone else meanwhile: look again. In shared mode an index
                    // that went, or came, with another epoch is an invalidation.
                    current = self.read_index(&key).await.map_err(WriteRefused::Store)?;
                    if !self.private && current.as_ref().is_none_or(|(i, _)| i.epoch != epoch) {
                        return Err(WriteRefused::Superseded);
                    }
                }
                Err(e) => return Err(WriteRefused::Store(e)),
            }
        }
        Err(WriteRefused::Superseded)
    }

    /// Private mode: the epoch of record `key` (the URL's epoch, a user's generation) a fill
    /// that saw `seen` stores under, made to live as long as the entry (its expiry would
    /// orphan the entries keyed under it). The first entry writes the record, and fills
    /// that raced it take its epoch; a record changed since the lookup, or written by an
    /// invalidation or a purge since, refuses the fill.
    async fn record_for(
        &self,
        key: &Key,
        seen: Option<u64>,
        now: SystemTime,
        entry_ttl: Duration,
    ) -> Result<u64, WriteRefused> {
        let ttl = entry_ttl.max(EPOCH_TTL);
        let Some(epoch) = seen else {
            let (record, record_ttl) = Index::empty(new_epoch()).living(now, ttl);
            let record = Arc::new(record);
            return match self
                .store
                .update_meta(key, Expect::Absent, record.meta(), record_ttl)
                .await
            {
                Ok(true) => Ok(record.epoch),
                // Another fill wrote it first (the first fills of a page's URLs for a new
                // user): its epoch is as good. One an invalidation or a purge wrote is not.
                Ok(false) => match self.read_index(key).await.map_err(WriteRefused::Store)? {
                    Some((record, _)) if !record.forgets() => Ok(record.epoch),
                    _ => Err(WriteRefused::Superseded),
                },
                Err(e) => Err(WriteRefused::Store(e)),
            };
        };
        let (record, version) = self.record_is(key, epoch).await?;
        // Extended when it would not outlive this entry, or has less than half its least
        // life left: not on every fill.
        if record.expires < now + entry_ttl.max(EPOCH_TTL / 2) {
            // Extend it (best effort: a conflict is someone else's write, seen next time).
            let (longer, record_ttl) = (*record).clone().living(now, ttl);
            let _ = self
                .store
                .update_meta(
                    key,
                    Expect::Version(version),
                    Arc::new(longer).meta(),
                    record_ttl,
                )
                .await;
        }
        Ok(epoch)
    }

    /// Record `key`, if its epoch is still `epoch` (else the URL was invalidated, or the
    /// user purged).
    async fn record_is(&self, key: &Key, epoch: u64) -> Result<(Arc<Index>, u64), WriteRefused> {
        match self.read_index(key).await.map_err(WriteRefused::Store)? {
            Some((record, version)) if record.epoch == epoch => Ok((record, version)),
            _ => Err(WriteRefused::Superseded),
        }
    }

    /// Forgets every entry of `user`, of every URL: a new generation. Fills that looked up
    /// the old one store nothing. Returns whether the user had a record.
    pub(crate) async fn purge_user(&self, user: &str) -> Result<bool, StoreError> {
        let key = user_key(user);
        let existed = self.read_index(&key).await?.is_some();
        let (record, ttl) = Index::forgetting(new_epoch()).living(SystemTime::now(), EPOCH_TTL);
        self.store
            .update_meta(&key, Expect::Any, Arc::new(record).meta(), ttl)
            .await?;
        Ok(existed)
    }

    /// Moves `selector` to the front of `place`'s variants (a hit on an old one). Best
    /// effort: a conflicting write means someone else just wrote the list.
    pub(crate) async fn touch(&self, place: &Place, seen: &Seen, selector: Selector) {
        let Some((index, version)) = seen.current() else {
            return;
        };
        let mut next = (**index).clone();
        next.move_to_front(selector);
        let (next, ttl) = next.living(SystemTime::now(), MIN_INDEX_TTL);
        let next = Arc::new(next);
        let _ = self
            .store
            .update_meta(
                &place.index_key(),
                Expect::Version(*version),
                next.meta(),
                ttl,
            )
            .await;
    }

    /// Invalidates every variant of `place`'s URL, of every user: a new epoch. Writes only
    /// where something is stored for the URL, or `filling` says a fill of it is under way
    /// (a flood of unsafe requests to URLs never stored writes nothing). Returns whether
    /// something was stored.
    pub(crate) async fn invalidate(
        &self,
        place: &Place,
        filling: bool,
    ) -> Result<bool, StoreError> {
        let key = if self.private {
            place.epoch_key()
        } else {
            place.index_key()
        };
        // Anything stored: a shared index that lists variants; a private epoch record (it
        // cannot tell whether any user stored something under it).
        let record = self.read_index(&key).await?;
        let existed = match &record {
            Some((record, _)) => self.private || !record.variants.is_empty(),
            None => false,
        };
        if record.is_none() && !filling {
            return Ok(false);
        }
        let ttl = if self.private {
            EPOCH_TTL
        } else {
            TOMBSTONE_TTL
        };
        let tombstone = if self.private {
            Index::forgetting(new_epoch())
        } else {
            // A shared index: its epoch is what fills check (its `Vary` sets are read).
            Index::empty(new_epoch())
        };
        let (tombstone, ttl) = tombstone.living(SystemTime::now(), ttl);
        let tombstone = Arc::new(tombstone);
        self.store
            .update_meta(&key, Expect::Any, tombstone.meta(), ttl)
            .await?;
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    fn keyspace(store: &MemoryStore, private: bool) -> Keyspace<'_, MemoryStore> {
        Keyspace {
            store,
            private,
            max_variants: 8,
        }
    }

    fn place(user: Option<&str>) -> Place {
        Place {
            url: Url::new(None, Some("example.com"), &"/a?b=1".parse().unwrap()),
            user: user.map(str::to_owned),
        }
    }

    #[test]
    fn a_client_caches_urls_by_scheme_and_a_server_by_authority_and_path() {
        let uri: Uri = "/a?b=1".parse().unwrap();
        let server = Url::new(None, Some("example.com"), &uri);
        assert_eq!(server.0, "example.com/a?b=1", "server keys are unchanged");
        let http = Url::new(Some("http"), Some("example.com"), &uri);
        let https = Url::new(Some("HTTPS"), Some("example.com"), &uri);
        assert_eq!(https.0, "https://example.com/a?b=1");
        assert_ne!(http, https);
        assert_ne!(http, server);
        // A reference from a response: its own scheme when absolute, the request's if not.
        let absolute: Uri = "https://Example.com:443/a?b=1".parse().unwrap();
        assert_eq!(
            Url::of_uri(&absolute, Some("http"), None),
            Some(https.clone())
        );
        assert_eq!(
            Url::of_uri(&uri, Some("https"), Some("example.com")),
            Some(https)
        );
        assert_eq!(Url::of_uri(&absolute, None, None), Some(server));
    }

    #[test]
    fn selectors_follow_normalised_values() {
        let names = vec!["accept-encoding".to_owned()];
        let gzip = Selector::of(&names, &headers(&[("accept-encoding", "gzip")]));
        let spaced = Selector::of(&names, &headers(&[("accept-encoding", "  gzip ")]));
        let br = Selector::of(&names, &headers(&[("accept-encoding", "br")]));
        let absent = Selector::of(&names, &headers(&[]));
        let empty = Selector::of(&names, &headers(&[("accept-encoding", "")]));
        assert_eq!(gzip, spaced);
        assert_ne!(gzip, br);
        assert_ne!(absent, empty, "absence only matches absence");
        // Another set of names is another variant, even for the same values.
        let other = Selector::of(&["accept".to_owned()], &headers(&[("accept", "gzip")]));
        assert_ne!(gzip, other);
        assert_eq!(Selector::of(&[], &headers(&[("x", "y")])), Selector(0));
    }

    #[test]
    fn keys_of_users_and_epochs_differ() {
        let (a, b) = (place(Some("alice")), place(Some("bob")));
        assert_ne!(a.index_key(), b.index_key());
        assert_ne!(a.variant_key(1, Selector(0)), b.variant_key(1, Selector(0)));
        assert_ne!(a.variant_key(1, Selector(0)), a.variant_key(2, Selector(0)));
        // The epoch is the URL's, whoever asks.
        assert_eq!(a.epoch_key(), b.epoch_key());
        // A user name cannot pose as a URL: the separator is not in either.
        assert_ne!(
            place(None).index_key(),
            place(Some("")).variant_key(0, Selector(0))
        );
    }

    #[test]
    fn index_round_trips_and_rejects_damage() {
        let (i, _) = Index::empty(7).with(&["accept".to_owned()], Selector(3), 8);
        let bytes = i.encode();
        assert_eq!(Index::decode(&bytes), Some(i));
        for cut in [0, INDEX_MAGIC.len(), bytes.len() - 1] {
            assert_eq!(Index::decode(&bytes[..cut]), None);
        }
        let mut v1 = bytes.to_vec();
        v1[INDEX_MAGIC.len() - 2] = b'1';
        assert_eq!(Index::decode(&v1), None);
    }

    #[test]
    fn variants_are_capped_most_recent_first() {
        let mut index = Index::empty(1);
        let mut evicted = Vec::new();
        for n in 0..10 {
            let (next, gone) = index.with(&[], Selector(n), 4);
            index = next;
            evicted.extend(gone);
        }
        assert_eq!(index.variants, [9, 8, 7, 6].map(Selector));
        assert_eq!(evicted, (0..6).map(Selector).collect::<Vec<_>>());
        // Storing one again moves it to the front.
        let (index, gone) = index.with(&[], Selector(6), 4);
        assert!(gone.is_empty());
        assert_eq!(index.variants, [6, 9, 8, 7].map(Selector));
        assert!(index.worth_touching(Selector(7)));
        assert!(!index.worth_touching(Selector(6)));
        assert!(!index.worth_touching(Selector(42)));
    }

    #[test]
    fn vary_sets_are_remembered_most_recent_first() {
        let mut index = Index::empty(1);
        for set in [["a"], ["b"], ["a"], ["c"], ["d"], ["e"]] {
            let names: Vec<String> = set.iter().map(|s| s.to_string()).collect();
            index = index.with(&names, Selector(1), 8).0;
        }
        let sets: Vec<&str> = index.vary_sets.iter().map(|s| s[0].as_str()).collect();
        assert_eq!(sets, ["e", "d", "c", "a"]);
    }

    #[tokio::test]
    async fn an_invalidation_wins_over_a_fill_that_read_before_it() {
        for private in [false, true] {
            let store = MemoryStore::new();
            let keyspace = keyspace(&store, private);
            let p = place(private.then_some("alice"));
            let hour = Duration::from_secs(3600);
            // A first fill creates the records.
            let seen = keyspace.read(&p).await.unwrap();
            let epoch = keyspace
                .admit(&p, &seen, &[], Selector(0), hour)
                .await
                .unwrap();
            // A second lookup reads them, then the URL is invalidated.
            let seen = keyspace.read(&p).await.unwrap();
            assert_eq!(seen.epoch(), Some(epoch));
            assert!(keyspace.invalidate(&p, false).await.unwrap());
            let refused = keyspace.admit(&p, &seen, &[], Selector(0), hour).await;
            assert!(
                matches!(refused, Err(WriteRefused::Superseded)),
                "private={private}"
            );
            // A lookup after the invalidation stores under the new epoch.
            let seen = keyspace.read(&p).await.unwrap();
            let new = keyspace
                .admit(&p, &seen, &[], Selector(0), hour)
                .await
                .unwrap();
            assert_ne!(new, epoch);
        }
    }

    #[tokio::test]
    async fn a_fill_that_saw_nothing_loses_to_an_invalidation_during_its_fetch() {
        for private in [false, true] {
            let store = MemoryStore::new();
            let keyspace = keyspace(&store, private);
            let p = place(private.then_some("alice"));
            let seen = keyspace.read(&p).await.unwrap();
            assert!(seen.epoch().is_none());
            // The invalidation comes while this fill's request is at the origin.
            keyspace.invalidate(&p, true).await.unwrap();
            let refused = keyspace
                .admit(&p, &seen, &[], Selector(0), Duration::from_secs(60))
                .await;
            assert!(
                matches!(refused, Err(WriteRefused::Superseded)),
                "private={private}"
            );
        }
    }

    fn at(path: &str, user: &str) -> Place {
        Place {
            url: Url::new(None, Some("example.com"), &path.parse().unwrap()),
            user: Some(user_id(user, None)),
        }
    }

    #[test]
    fn users_are_named_by_a_digest_keyed_when_the_cache_has_a_secret() {
        let plain = user_id("1001", None);
        assert_eq!(plain, user_id("1001", None), "the same on every node");
        assert!(!plain.contains("1001"));
        let keyed = user_id("1001", Some(&[7; 32]));
        assert_eq!(keyed, user_id("1001", Some(&[7; 32])));
        assert_ne!(keyed, plain);
        assert_ne!(
            keyed,
            user_id("1001", Some(&[8; 32])),
            "another secret, another id"
        );
        assert_ne!(keyed, user_id("1002", Some(&[7; 32])));
    }

    #[tokio::test]
    async fn the_first_fills_of_a_new_user_all_store_under_one_generation() {
        // A page load: one user, several URLs, all looked up before any is stored.
        let store = MemoryStore::new();
        let keyspace = keyspace(&store, true);
        let places: Vec<Place> = ["/a", "/b", "/c"].iter().map(|p| at(p, "alice")).collect();
        let mut seen = Vec::new();
        for p in &places {
            seen.push(keyspace.read(p).await.unwrap());
        }
        let mut epochs = Vec::new();
        for (p, seen) in places.iter().zip(&seen) {
            let epoch = keyspace
                .admit(p, seen, &[], Selector(0), Duration::from_secs(60))
                .await;
            epochs.push(epoch.expect("every first fill stores"));
        }
        // Each URL's epoch differs, the user's generation is one: all readable now.
        for (p, epoch) in places.iter().zip(&epochs) {
            assert_eq!(keyspace.read(p).await.unwrap().epoch(), Some(*epoch));
        }
    }

    #[tokio::test]
    async fn a_purge_during_a_fill_refuses_it_whatever_the_fill_saw() {
        let store = MemoryStore::new();
        let keyspace = keyspace(&store, true);
        let (a, b) = (at("/a", "alice"), at("/b", "alice"));
        // Nothing stored for the user yet when the fill looked up.
        let seen = keyspace.read(&a).await.unwrap();
        assert!(keyspace.purge_user(&user_id("alice", None)).await.is_ok());
        let refused = keyspace
            .admit(&a, &seen, &[], Selector(0), Duration::from_secs(60))
            .await;
        assert!(
            matches!(refused, Err(WriteRefused::Superseded)),
            "{refused:?}"
        );
        // A generation seen, then purged.
        let seen = keyspace.read(&b).await.unwrap();
        keyspace
            .admit(&b, &seen, &[], Selector(0), Duration::from_secs(60))
            .await
            .unwrap();
        let seen = keyspace.read(&b).await.unwrap();
        assert!(keyspace.purge_user(&user_id("alice", None)).await.unwrap());
        let refused = keyspace
            .admit(&b, &seen, &[], Selector(1), Duration::from_secs(60))
            .await;
        assert!(
            matches!(refused, Err(WriteRefused::Superseded)),
            "{refused:?}"
        );
        // What was stored before the purge is out of reach; fills after it store again.
        let after = keyspace.read(&b).await.unwrap();
        assert!(
            after.index().is_none(),
            "the old generation's index is not current"
        );
        keyspace
            .admit(&b, &after, &[], Selector(2), Duration::from_secs(60))
            .await
            .unwrap();
        // Another user is untouched.
        let bob = at("/b", "bob");
        let seen = keyspace.read(&bob).await.unwrap();
        keyspace
            .admit(&bob, &seen, &[], Selector(0), Duration::from_secs(60))
            .await
            .unwrap();
        assert!(keyspace.purge_user(&user_id("alice", None)).await.unwrap());
        assert!(keyspace.read(&bob).await.unwrap().index().is_some());
    }

    #[tokio::test]
    async fn records_are_extended_only_when_they_need_it() {
        let store = MemoryStore::new();
        let keyspace = keyspace(&store, true);
        let p = at("/a", "alice");
        let version = || async { store.get(&p.epoch_key()).await.unwrap().unwrap().version };
        let seen = keyspace.read(&p).await.unwrap();
        keyspace
            .admit(&p, &seen, &[], Selector(0), Duration::from_secs(60))
            .await
            .unwrap();
        let first = version().await;
        for i in 1..4 {
            let seen = keyspace.read(&p).await.unwrap();
            keyspace
                .admit(&p, &seen, &[], Selector(i), Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert_eq!(
            version().await,
            first,
            "short entries do not rewrite the URL's record"
        );
    }

    #[tokio::test]
    async fn the_private_epoch_record_lives_as_long_as_the_longest_entry() {
        let store = MemoryStore::new();
        let keyspace = keyspace(&store, true);
        let p = place(Some("alice"));
        let hour = Duration::from_secs(3600);
        let seen = keyspace.read(&p).await.unwrap();
        keyspace
            .admit(&p, &seen, &[], Selector(1), hour)
            .await
            .unwrap();
        let expires = || async {
            let stored = store.get(&p.epoch_key()).await.unwrap().unwrap();
            Index::of(&stored.meta).unwrap().expires
        };
        let first = expires().await;
        assert!(
            first >= SystemTime::now() + EPOCH_TTL - hour,
            "at least a day"
        );
        let seen = keyspace.read(&p).await.unwrap();
        keyspace
            .admit(&p, &seen, &[], Selector(2), 100 * hour)
            .await
            .unwrap();
        assert!(expires().await >= SystemTime::now() + 99 * hour, "extended");
    }

    #[tokio::test]
    async fn invalidating_a_url_never_stored_writes_nothing() {
        let store = MemoryStore::new();
        let keyspace = keyspace(&store, false);
        assert!(!keyspace.invalidate(&place(None), false).await.unwrap());
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn concurrent_fills_of_two_variants_keep_both() {
        let store = MemoryStore::new();
        let keyspace = keyspace(&store, false);
        let p = place(None);
        let first = keyspace.read(&p).await.unwrap();
        let epoch = keyspace
            .admit(&p, &first, &[], Selector(1), Duration::from_secs(60))
            .await
            .unwrap();
        // Two lookups read the same index; both admit their variant.
        let a = keyspace.read(&p).await.unwrap();
        let b = keyspace.read(&p).await.unwrap();
        assert_eq!(
            keyspace
                .admit(&p, &a, &[], Selector(2), Duration::from_secs(60))
                .await
                .unwrap(),
            epoch
        );
        assert_eq!(
            keyspace
                .admit(&p, &b, &[], Selector(3), Duration::from_secs(60))
                .await
                .unwrap(),
            epoch
        );
        let seen = keyspace.read(&p).await.unwrap();
        let index = seen.index().unwrap();
        for s in 1..=3 {
            assert!(index.lists(Selector(s)), "variant {s} lost");
        }
    }
}
