//! Where and whether a response is written: the one place every write path asks. A fill
//! of the inner service's response, a revalidation's `304`, a background refresh and
//! [`ResponseCache::insert`] all file through `file_response` (which shelf: the shared
//! entries, the user's own, or none; the pure rules are `policy::filing`) or
//! `kept_after_304`, and `worth_storing` (whether the head is worth writing, for how long).
//! `docs/SECURITY.md` lists every path, and who may see what each stores.

use super::{entry, keyspace, ResponseCache};
use crate::{
    policy::{
        filing::{Filing, Shelf},
        vary, CachePolicy, NotStorable,
    },
    semantics::request::RequestHead,
    store::{Expect, Store, StoreError, StoreWriter as _},
};
use bytes::Bytes;
use http::{header::CONTENT_TYPE, request, response, Request, Response};
use http_body::SizeHint;
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

/// The most field names a stored response may vary on: more would make every key and
/// index record large for a selection no client repeats.
const MAX_VARY_NAMES: usize = 32;

/// Content types whose bodies never end: a cache that waited for their end would never
/// store them, and coalesced requests would wait behind them.
const STREAMING_TYPES: [&[u8]; 2] = [b"text/event-stream", b"multipart/x-mixed-replace"];

impl<St: Store> ResponseCache<St> {
    /// Where the response `response` to `request` goes, of `shelves` (in order of
    /// preference), and its policy there. `named_user`: the request named a user.
    pub(crate) fn file_response(
        &self,
        shelves: &[Shelf],
        named_user: bool,
        authority: Option<&str>,
        request: &request::Parts,
        response: &response::Parts,
        times: (SystemTime, SystemTime),
    ) -> Filing {
        let rules = self.shared.config.filing;
        rules.file(shelves, named_user, |mode| {
            self.policy_in(mode, authority, request, response, times)
        })
    }

    /// What a revalidation's `304` left of an entry at `shelf` (`stored`: the updated
    /// policy, or why it is no longer storable), if it may stay there.
    pub(crate) fn kept_after_304(
        &self,
        shelf: Shelf,
        named_user: bool,
        stored: Result<CachePolicy, NotStorable>,
    ) -> Result<CachePolicy, NotStorable> {
        let rules = self.shared.config.filing;
        let policy = rules.kept_as(shelf, named_user, stored?);
        rules.keeps(shelf, &policy)?;
        Ok(policy)
    }

    /// Whether a filed response is to be written, for how long; else why not (a
    /// `Cache-Status` detail). Everything here is known from the head, so a response that
    /// will not be stored releases coalesced requests at once.
    pub(crate) fn worth_storing(
        &self,
        filing: &Filing,
        parts: &response::Parts,
        body: SizeHint,
        now: SystemTime,
    ) -> Result<Duration, &'static str> {
        filing.verdict.map_err(NotStorable::detail)?;
        let policy = &filing.policy;
        if vary::varies_on_everything(policy.response_headers()) {
            // RFC 9111 §4.1: it would never be served.
            return Err("vary-star");
        }
        if policy.vary_request().len() > MAX_VARY_NAMES {
            return Err("vary-too-large");
        }
        let ttl = self.storage_ttl(policy, now);
        if ttl.is_zero() {
            return Err("zero-ttl");
        }
        let streaming = parts.headers.get(CONTENT_TYPE).is_some_and(|ct| {
            STREAMING_TYPES.iter().any(|t| {
                ct.as_bytes().len() >= t.len() && ct.as_bytes()[..t.len()].eq_ignore_ascii_case(t)
            })
        });
        if streaming {
            return Err("event-stream");
        }
        if self
            .shared
            .store
            .max_entry_bytes()
            .is_some_and(|max| body.lower() > max)
        {
            // Known to be too large: do not buffer any of it for the store.
            return Err("too-large");
        }
        Ok(ttl)
    }

    /// Stores `response` as the answer to `request` without asking the inner service
    /// ("delayed caching": a response computed elsewhere), where a fill of the same
    /// response would be stored: the same rules decide (RFC 9111 §3; in a per-user cache, a
    /// user's response goes to the shared entries only if a shared cache may keep it as an
    /// answer to `Authorization`, else to the user's own, never with `Set-Cookie`). Returns
    /// whether it was stored: not when it may not be (`no-store`, `private` in a shared
    /// cache, ...), has no storage time, or its request has no place (no user in private
    /// mode, a relative URI in a client cache).
    pub async fn insert(
        &self,
        request: Request<()>,
        response: Response<Bytes>,
    ) -> Result<bool, StoreError> {
        let (req_parts, ()) = request.into_parts();
        let (res_parts, body) = response.into_parts();
        let Ok(head) = RequestHead::from_parts(&req_parts) else {
            return Ok(false);
        };
        let Ok(place) = self.place(&head, &req_parts) else {
            return Ok(false);
        };
        let now = self.now();
        let named_user = place.user.is_some();
        let filing = self.file_response(
            self.shared.config.filing.shelves(named_user),
            named_user,
            head.authority.as_deref(),
            &req_parts,
            &res_parts,
            (now, now),
        );
        let hint = SizeHint::with_exact(body.len() as u64);
        let Ok(ttl) = self.worth_storing(&filing, &res_parts, hint, now) else {
            return Ok(false);
        };
        let place = match filing.shelf {
            Shelf::Shared => place.shared(),
            Shelf::Own => place,
        };
        self.write_whole(&place, filing.policy, &req_parts.headers, body, ttl)
            .await
    }

    /// Writes a response whose whole body is here at `place`, as the answer to a request
    /// with `request_headers`, for `ttl`; returns whether it was stored (not when an
    /// invalidation overtook it).
    async fn write_whole(
        &self,
        place: &keyspace::Place,
        policy: CachePolicy,
        request_headers: &http::HeaderMap,
        body: Bytes,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let keyspace = self.keyspace();
        let seen = keyspace.read(place).await?;
        let names = vary::selecting_names(policy.response_headers());
        let selector = keyspace::Selector::of(&names, request_headers);
        let epoch = match keyspace.admit(place, &seen, &names, selector, ttl).await {
            Ok(epoch) => epoch,
            Err(keyspace::WriteRefused::Superseded) => return Ok(false),
            Err(keyspace::WriteRefused::Store(e)) => return Err(e),
        };
        // The whole body is here: a minted tag goes on the head at once.
        let minted = self
            .shared
            .config
            .mint_etags
            .then(|| entry::minted(&policy, body.len() as u64, &blake3::hash(&body)))
            .flatten();
        let policy = Arc::new(minted.unwrap_or(policy));
        let writer = self
            .shared
            .store
            .writer(
                &place.variant_key(epoch, selector),
                entry::meta(&policy),
                ttl,
                Expect::Any,
            )
            .await?;
        writer.write(body).await?.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{policy::CacheMode, store::MemoryStore};
    use http_body_util::{BodyExt, Full};
    use tower::{service_fn, Layer, ServiceExt};

    /// An entry that an older version filed in the shared entries of a per-user cache with
    /// a private cache's rules (what the `insert` of issue 18 wrote) never answers: not
    /// another user, not an anonymous request, not the user either (it is not where the
    /// user's own entries are). It is taken out of the way.
    #[tokio::test]
    async fn an_entry_filed_for_everyone_by_a_users_rules_never_answers() {
        let store = MemoryStore::new();
        let cache = ResponseCache::builder(store.clone())
            .per_user(|p| Some(p.headers.get("authorization")?.to_str().ok()?.to_owned()))
            .build();
        let (alices, ()) = Request::get("/x")
            .header("host", "a.example")
            .header("authorization", "Bearer alice")
            .body(())
            .unwrap()
            .into_parts();
        let (answer, ()) = Response::builder()
            .header("cache-control", "private, max-age=60")
            .body(())
            .unwrap()
            .into_parts();
        let now = cache.now();
        let head = RequestHead::from_parts(&alices).unwrap();
        let shared = cache.place(&head, &alices).unwrap().shared();
        let policy = cache.policy_in(
            CacheMode::Private,
            Some("a.example"),
            &alices,
            &answer,
            (now, now),
        );
        assert_eq!(policy.storable(), Ok(()), "a private cache would keep it");
        let body = Bytes::from_static(b"alice's");
        let ttl = Duration::from_secs(60);
        let headers = &alices.headers;
        assert!(cache
            .write_whole(&shared, policy, headers, body, ttl)
            .await
            .unwrap());
        let stored = store.len();
        let origin = service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Full::from("origin's")))
        });
        let svc = cache.layer().layer(origin);
        for who in [None, Some("Bearer bob"), Some("Bearer alice")] {
            let mut req = Request::get("/x").header("host", "a.example");
            if let Some(who) = who {
                req = req.header("authorization", who);
            }
            let res = svc
                .clone()
                .oneshot(req.body(Full::default()).unwrap())
                .await
                .unwrap();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "origin's", "{who:?}");
        }
        assert!(store.len() < stored, "the entry was removed");
    }
}
