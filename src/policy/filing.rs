//! Where a cache with users files a response: in the entries every request may be answered
//! from, in the requesting user's own, or nowhere. One decision, asked by every write (a
//! fill, `insert`, a revalidation's `304`, a background refresh) and, in its read form,
//! before a stored entry answers a request.
//!
//! The rules, beyond RFC 9111 §3 (which [`CachePolicy::storable`] applies in the mode of
//! each shelf):
//!
//! - The shared entries of a cache with users take a user's answer only if a shared cache
//!   may keep it as the answer to a request with `Authorization` (§3.5: `public`,
//!   `s-maxage`, `must-revalidate`), however the user was named: a user known by a cookie
//!   or a session is no less a user, and origins that personalise without `private` are
//!   common.
//! - A user's own entries are judged as a private cache's (§1: `private` and plain
//!   `max-age` answers are kept), and never keep `Set-Cookie`: a user may have several
//!   sessions (devices, tabs), and a replayed cookie would move one session into another.
//!   The shared entries keep such an answer as one to `Authorization`
//!   ([`PolicyParts::request_authorization`](super::PolicyParts::request_authorization)),
//!   so that a later `304` (revalidated by anyone) that takes `public` away makes it
//!   unstorable there, as it would for a request with credentials.
//! - An entry answers from a shelf only if it was filed under that shelf's mode (and, at a
//!   user's own place, keeps no `Set-Cookie`): what older versions filed otherwise is
//!   never served.

use super::{CacheMode, CachePolicy, NotStorable};
use http::header::SET_COOKIE;

/// The entries of a URL a response can be filed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shelf {
    /// The entries any request for the URL may be answered from: everyone's in a shared
    /// cache, the one user's in a user agent's.
    Shared,
    /// One user's own entries: they answer that user only.
    Own,
}

/// Whom a cache names, and where it keeps what it stores for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Users {
    /// Nobody: a shared cache, or a user agent's cache (one user's).
    None,
    /// Shared entries, and each user's own beside them (`per_user`).
    PerUser,
    /// Each user's own entries only (`private`).
    Private,
}

/// The filing rules of a cache: its mode (shared or a user agent's) and its users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FilingRules {
    pub(crate) mode: CacheMode,
    pub(crate) users: Users,
}

/// Where a response goes, and what it is stored as there.
#[derive(Debug)]
pub(crate) struct Filing {
    pub(crate) shelf: Shelf,
    /// Its policy in the shelf's mode: what it is stored with (or, when it is not stored,
    /// what it was judged by).
    pub(crate) policy: CachePolicy,
    /// Whether it may be stored there; else why not.
    pub(crate) verdict: Result<(), NotStorable>,
}

impl FilingRules {
    /// The shelves a response to a request may go to, in order of preference: a user's of
    /// a per-user cache goes to the shared entries if it may, else to the user's own.
    pub(crate) fn shelves(self, named_user: bool) -> &'static [Shelf] {
        match (self.users, named_user) {
            (Users::PerUser, true) => &[Shelf::Shared, Shelf::Own],
            (Users::Private, _) => &[Shelf::Own],
            (Users::None | Users::PerUser, _) => &[Shelf::Shared],
        }
    }

    /// The mode a shelf's entries are judged in: a private cache's at a user's own place.
    pub(crate) fn mode_of(self, shelf: Shelf) -> CacheMode {
        match shelf {
            Shelf::Shared => self.mode,
            Shelf::Own => CacheMode::Private,
        }
    }

    /// Files a response in the first of `shelves` that may keep it, with the policy
    /// `policy_in` builds for the shelf's mode. When none may, the last one tried, and why.
    /// `named_user`: the request named a user.
    pub(crate) fn file(
        self,
        shelves: &[Shelf],
        named_user: bool,
        policy_in: impl Fn(CacheMode) -> CachePolicy,
    ) -> Filing {
        let mut filing = None;
        for &shelf in shelves {
            let policy = self.kept_as(shelf, named_user, policy_in(self.mode_of(shelf)));
            let verdict = self.keeps(shelf, &policy);
            let done = verdict.is_ok();
            filing = Some(Filing {
                shelf,
                policy,
                verdict,
            });
            if done {
                break;
            }
        }
        filing.unwrap_or_else(|| {
            // No shelf at all: judged as the shared entries would judge it, and not stored.
            Filing {
                shelf: Shelf::Shared,
                policy: policy_in(self.mode),
                verdict: Err(NotStorable::Private),
            }
        })
    }

    /// `policy` as `shelf` would keep it, for a request that named a user (`named_user`)
    /// or not: a user is a user however named, so what the shared entries of a cache with
    /// users keep of a user's answer is kept as an answer to `Authorization`, and every rule
    /// that judges it, now and after each `304`, applies §3.5 to it.
    pub(crate) fn kept_as(
        self,
        shelf: Shelf,
        named_user: bool,
        mut policy: CachePolicy,
    ) -> CachePolicy {
        if shelf == Shelf::Shared && named_user && self.users != Users::None {
            policy.request_authorization = true;
        }
        policy
    }

    /// Whether `policy` (in the mode of `shelf`, as [`kept_as`](Self::kept_as) made it)
    /// may be kept at `shelf`: stored there, or kept there after a `304` updated it.
    pub(crate) fn keeps(self, shelf: Shelf, policy: &CachePolicy) -> Result<(), NotStorable> {
        if policy.mode() != self.mode_of(shelf) {
            // Judged by the wrong rules: never kept (a bug, caught here rather than served).
            debug_assert!(false, "a policy of mode {:?} at {shelf:?}", policy.mode());
            return Err(NotStorable::Private);
        }
        // §3, and §3.5 for an answer to `Authorization` (or to a named user: `kept_as`).
        policy.storable()?;
        if shelf == Shelf::Own
            && self.users != Users::None
            && policy.response_headers().contains_key(SET_COOKIE)
        {
            return Err(NotStorable::SetCookie);
        }
        Ok(())
    }

    /// Whether an entry read at `shelf` may answer: only one filed under that shelf's mode,
    /// and at a user's own place only one without `Set-Cookie`. An entry written otherwise
    /// (a user's answer that an older version of this crate filed in the shared entries, or
    /// a user's entry with a cookie it kept; one of a cache of another mode over the same
    /// store) never does. (The rest of [`keeps`](Self::keeps) held when it was written.)
    pub(crate) fn answers_from(self, shelf: Shelf, policy: &CachePolicy) -> bool {
        policy.mode() == self.mode_of(shelf)
            && !(shelf == Shelf::Own
                && self.users != Users::None
                && policy.response_headers().contains_key(SET_COOKIE))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;
    use CacheMode::{Private, Shared};

    const PER_USER: FilingRules = FilingRules {
        mode: Shared,
        users: Users::PerUser,
    };
    const PRIVATE: FilingRules = FilingRules {
        mode: Private,
        users: Users::Private,
    };
    const SHARED: FilingRules = FilingRules {
        mode: Shared,
        users: Users::None,
    };
    const USER_AGENT: FilingRules = FilingRules {
        mode: Private,
        users: Users::None,
    };

    /// Files a `200` with `res` headers, answering a request with `req` headers.
    fn file(rules: FilingRules, named: bool, req: &[(&str, &str)], res: &[(&str, &str)]) -> Filing {
        let (req, res) = (get(req), res_with(200, res));
        rules.file(rules.shelves(named), named, |mode| {
            CachePolicy::new(&req, &res, t0(), t0(), mode)
        })
    }

    fn shelf(filing: &Filing) -> Option<Shelf> {
        filing.verdict.is_ok().then_some(filing.shelf)
    }

    const AUTH: (&str, &str) = ("authorization", "Bearer alice");
    const COOKIE: (&str, &str) = ("set-cookie", "session=alice");

    #[test]
    fn a_users_answer_that_only_the_user_may_have_goes_to_the_users_own_entries() {
        // The three `insert` cases of issue 18, named by `Authorization` and by a cookie.
        for req in [&[AUTH][..], &[("cookie", "s=alice")][..]] {
            for cc in ["private, max-age=60", "max-age=60"] {
                let f = file(PER_USER, true, req, &[("cache-control", cc)]);
                assert_eq!(shelf(&f), Some(Shelf::Own), "{cc} {req:?}");
                assert_eq!(f.policy.mode(), Private);
            }
            let f = file(
                PER_USER,
                true,
                req,
                &[("cache-control", "public, max-age=60"), COOKIE],
            );
            assert_eq!(shelf(&f), None, "{req:?}: never with Set-Cookie");
            assert_eq!(f.verdict, Err(NotStorable::SetCookie));
        }
    }

    #[test]
    fn a_users_answer_is_shared_only_as_an_answer_to_authorization_may_be() {
        for cc in [
            "public, max-age=60",
            "s-maxage=60",
            "max-age=60, must-revalidate",
        ] {
            let f = file(PER_USER, true, &[], &[("cache-control", cc)]);
            assert_eq!(shelf(&f), Some(Shelf::Shared), "{cc}");
            assert_eq!(f.policy.mode(), Shared);
        }
        // `public` with a cookie qualified away is shared, without the cookie.
        let qualified = [
            (
                "cache-control",
                "public, max-age=60, no-cache=\"set-cookie\"",
            ),
            COOKIE,
        ];
        let f = file(PER_USER, true, &[AUTH], &qualified);
        assert_eq!(shelf(&f), Some(Shelf::Shared));
        assert!(!f.policy.response_headers().contains_key(SET_COOKIE));
    }

    #[test]
    fn a_users_answer_in_the_shared_entries_stays_an_answer_to_authorization() {
        // Carol is named by a cookie: her `public` answer is shared, as one to
        // `Authorization`, so an anonymous revalidation's 304 that drops `public` leaves
        // nothing the shared entries may keep (found by the model-based test).
        let tagged = [("cache-control", "public, max-age=1"), ("etag", "\"c\"")];
        let f = file(PER_USER, true, &[("cookie", "session=carol")], &tagged);
        assert_eq!(shelf(&f), Some(Shelf::Shared));
        assert!(f.policy.request_had_authorization());
        let not_modified = res_with(304, &[("cache-control", "max-age=60"), ("etag", "\"c\"")]);
        match f
            .policy
            .after_revalidation(&get(&[]), &not_modified, t0(), t0())
        {
            super::super::AfterResponse::NotModified { stored, .. } => {
                assert_eq!(stored.map(|_| ()), Err(NotStorable::Authorization));
            }
            other => panic!("{other:?}"),
        }
        // An anonymous answer is not one to `Authorization`.
        let f = file(
            PER_USER,
            false,
            &[],
            &[("cache-control", "public, max-age=1")],
        );
        assert!(!f.policy.request_had_authorization());
    }

    #[test]
    fn an_anonymous_answer_goes_to_the_shared_entries_or_nowhere() {
        let f = file(PER_USER, false, &[], &[("cache-control", "max-age=60")]);
        assert_eq!(shelf(&f), Some(Shelf::Shared));
        for res in [
            &[("cache-control", "private, max-age=60")][..],
            &[("cache-control", "max-age=60"), COOKIE][..],
            &[("cache-control", "no-store")][..],
        ] {
            let f = file(PER_USER, false, &[], res);
            assert_eq!(shelf(&f), None, "{res:?}: never a user's own for nobody");
        }
    }

    #[test]
    fn a_private_cache_files_everything_per_user_but_never_a_cookie() {
        let f = file(
            PRIVATE,
            true,
            &[],
            &[("cache-control", "public, max-age=60")],
        );
        assert_eq!(shelf(&f), Some(Shelf::Own));
        let f = file(
            PRIVATE,
            true,
            &[],
            &[("cache-control", "private, max-age=60"), COOKIE],
        );
        assert_eq!(f.verdict, Err(NotStorable::SetCookie));
    }

    #[test]
    fn caches_without_users_follow_rfc_9111_alone() {
        // A shared cache: §3 and §3.5 on the request itself.
        let plain = [("cache-control", "max-age=60")];
        assert_eq!(
            shelf(&file(SHARED, false, &[], &plain)),
            Some(Shelf::Shared)
        );
        let f = file(SHARED, false, &[AUTH], &plain);
        assert_eq!(f.verdict, Err(NotStorable::Authorization));
        let f = file(
            SHARED,
            false,
            &[],
            &[("cache-control", "max-age=60"), COOKIE],
        );
        assert_eq!(f.verdict, Err(NotStorable::SetCookie));
        // A user agent's: one user, who may have `private` answers and cookies back.
        let f = file(
            USER_AGENT,
            false,
            &[AUTH],
            &[("cache-control", "private, max-age=60"), COOKIE],
        );
        assert_eq!(shelf(&f), Some(Shelf::Shared));
        assert_eq!(f.policy.mode(), Private);
    }

    #[test]
    fn what_a_304_leaves_is_kept_by_the_same_rules() {
        let own = file(
            PER_USER,
            true,
            &[AUTH],
            &[("cache-control", "private, max-age=60")],
        );
        assert_eq!(own.verdict, Ok(()));
        // A 304 that adds a cookie to a user's entry: not kept.
        let with_cookie = CachePolicy::new(
            &get(&[AUTH]),
            &res_with(200, &[("cache-control", "private, max-age=60"), COOKIE]),
            t0(),
            t0(),
            Private,
        );
        assert_eq!(
            PER_USER.keeps(Shelf::Own, &with_cookie),
            Err(NotStorable::SetCookie)
        );
        // A shared entry a user's request would update into one it may not share.
        let plain = CachePolicy::new(
            &get(&[]),
            &res(&[("cache-control", "max-age=60")]),
            t0(),
            t0(),
            Shared,
        );
        let kept = |named| PER_USER.kept_as(Shelf::Shared, named, plain.clone());
        assert_eq!(PER_USER.keeps(Shelf::Shared, &kept(false)), Ok(()));
        assert_eq!(
            PER_USER.keeps(Shelf::Shared, &kept(true)),
            Err(NotStorable::Authorization)
        );
    }

    #[test]
    fn an_entry_answers_only_from_a_shelf_of_its_mode() {
        let made = |mode| {
            CachePolicy::new(
                &get(&[]),
                &res(&[("cache-control", "max-age=60")]),
                t0(),
                t0(),
                mode,
            )
        };
        // What the insert of issue 18 left in the shared entries: a private cache's policy.
        assert!(!PER_USER.answers_from(Shelf::Shared, &made(Private)));
        assert!(PER_USER.answers_from(Shelf::Shared, &made(Shared)));
        assert!(PER_USER.answers_from(Shelf::Own, &made(Private)));
        assert!(!PER_USER.answers_from(Shelf::Own, &made(Shared)));
        // A user agent's entry in a store a shared cache reads too.
        assert!(!SHARED.answers_from(Shelf::Shared, &made(Private)));
        assert!(USER_AGENT.answers_from(Shelf::Shared, &made(Private)));
        // A user's entry with the cookie an older version kept.
        let with_cookie = CachePolicy::new(
            &get(&[]),
            &res(&[("cache-control", "max-age=60"), COOKIE]),
            t0(),
            t0(),
            Private,
        );
        assert!(!PRIVATE.answers_from(Shelf::Own, &with_cookie));
        assert!(!PER_USER.answers_from(Shelf::Own, &with_cookie));
        assert!(USER_AGENT.answers_from(Shelf::Shared, &with_cookie));
    }

    /// Every combination of the fields that decide, in every kind of cache: what is filed
    /// where is what the rules above say, and nothing one user may not share ever lands in
    /// the shared entries of a cache with users.
    #[test]
    fn exhaustively_nothing_a_user_may_not_share_is_filed_for_everyone() {
        let ccs = [
            "",
            "public, max-age=60",
            "private, max-age=60",
            "max-age=60",
            "s-maxage=60",
            "no-cache",
            "no-store",
            "max-age=60, must-revalidate",
            "private",
            "public",
            "max-age=60, private=\"set-cookie\"",
            "max-age=60, no-cache=\"set-cookie\"",
        ];
        let rules = [PER_USER, PRIVATE, SHARED, USER_AGENT];
        for rules in rules {
            for named in [false, true] {
                if rules.users == Users::None && named || rules.users == Users::Private && !named {
                    continue;
                }
                for cc in ccs {
                    for cookie in [false, true] {
                        for auth in [false, true] {
                            let mut res = vec![("cache-control", cc)];
                            if cookie {
                                res.push(COOKIE);
                            }
                            let req: &[(&str, &str)] = if auth { &[AUTH] } else { &[] };
                            let f = file(rules, named, req, &res);
                            let case = format!("{rules:?} named={named} {res:?} auth={auth}");
                            assert_eq!(f.policy.mode(), rules.mode_of(f.shelf), "{case}");
                            let Some(at) = shelf(&f) else { continue };
                            let kept_cookie = f.policy.response_headers().contains_key(SET_COOKIE);
                            match at {
                                Shelf::Shared if rules.mode == Shared => {
                                    assert!(!kept_cookie, "{case}");
                                    assert!(
                                        !cc.starts_with("private") && cc != "private",
                                        "{case}"
                                    );
                                    if named || auth {
                                        assert!(f.policy.allows_authorization(), "{case}");
                                    }
                                }
                                Shelf::Shared => assert_eq!(rules, USER_AGENT, "{case}"),
                                Shelf::Own => {
                                    assert!(named && rules.users != Users::None, "{case}");
                                    assert!(!kept_cookie, "{case}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
