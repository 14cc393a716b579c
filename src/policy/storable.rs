//! Whether a response may be stored (RFC 9111 §3, §3.5).

use super::{head::covers_all, CachePolicy};
use http::{
    header::{CONTENT_RANGE, EXPIRES, SET_COOKIE},
    Method, StatusCode,
};
use std::fmt;

/// Why a response may not be stored. Each reason has a short [`detail`](NotStorable::detail)
/// for the `detail` parameter of a `Cache-Status` field (RFC 9211).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotStorable {
    /// The request method is not GET or HEAD.
    Method,
    /// The status is not final, or is one whose storage this cache does not implement
    /// (`304`, and `206` under [`NotStorable::PartialContent`]).
    Status,
    /// `206 Partial Content` or a `Content-Range` field: storing and combining partial
    /// content (RFC 9111 §3.3, §3.4) is not implemented.
    PartialContent,
    /// The request carried `Cache-Control: no-store`.
    RequestNoStore,
    /// The response carried `Cache-Control: no-store`.
    NoStore,
    /// `must-understand` with a status code this cache does not understand (§5.2.2.3).
    MustUnderstand,
    /// `private` in a shared cache (§5.2.2.7).
    Private,
    /// The request carried `Authorization` and the response did not allow a shared cache to
    /// store it with `public`, `s-maxage` or `must-revalidate` (§3.5).
    Authorization,
    /// `Set-Cookie` in a shared cache, not qualified away by `no-cache="set-cookie"` or
    /// `private="set-cookie"`. This crate's safety rule: one user's cookie is never served
    /// to another.
    SetCookie,
    /// No explicit freshness, a status that is not heuristically cacheable, and no `public`
    /// (nor `private` in a private cache).
    NoFreshness,
}

impl NotStorable {
    /// A short token for a `Cache-Status` `detail` parameter.
    pub const fn detail(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::Status => "status",
            Self::PartialContent => "partial-content",
            Self::RequestNoStore => "request-no-store",
            Self::NoStore => "no-store",
            Self::MustUnderstand => "must-understand",
            Self::Private => "private",
            Self::Authorization => "authorization",
            Self::SetCookie => "set-cookie",
            Self::NoFreshness => "no-freshness",
        }
    }
}

impl fmt::Display for NotStorable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "response not storable: {}", self.detail())
    }
}

impl std::error::Error for NotStorable {}

/// Heuristically cacheable status codes (RFC 9110 §15.1, RFC 9111 §4.2.2).
pub(super) fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Status codes whose caching requirements this cache understands, for `must-understand`
/// (the set of `http-cache-semantics`).
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 302 | 303 | 307 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

impl CachePolicy {
    /// Whether the response may be stored (RFC 9111 §3), and if not, why.
    ///
    /// `Vary: *` is storable, but such a response never matches a request (§4.1).
    pub fn storable(&self) -> Result<(), NotStorable> {
        let cc = &self.res_cc;
        let shared = self.shared();
        if self.method != Method::GET && self.method != Method::HEAD {
            return Err(NotStorable::Method);
        }
        if self.status == StatusCode::PARTIAL_CONTENT
            || self.response_headers.contains_key(CONTENT_RANGE)
        {
            return Err(NotStorable::PartialContent);
        }
        // §3: final, and "understood" for 206 and 304; a 304 is never an entry of its own.
        if self.status.as_u16() < 200 || self.status == StatusCode::NOT_MODIFIED {
            return Err(NotStorable::Status);
        }
        if self.request_no_store {
            return Err(NotStorable::RequestNoStore);
        }
        if cc.no_store {
            return Err(NotStorable::NoStore);
        }
        if cc.must_understand && !understood(self.status) {
            return Err(NotStorable::MustUnderstand);
        }
        if shared && covers_all(&cc.private) {
            return Err(NotStorable::Private);
        }
        // §3.5: a shared cache stores an answer to an authenticated request only when the
        // response says it may.
        if shared && self.request_authorization && !self.allows_authorization() {
            return Err(NotStorable::Authorization);
        }
        // Qualified no-cache / private naming Set-Cookie removed it from the stored head.
        if shared && self.response_headers.contains_key(SET_COOKIE) {
            return Err(NotStorable::SetCookie);
        }
        // An `Expires` (even invalid) is explicit freshness, unless a targeted field replaces
        // it (RFC 9213 §2.2).
        let explicit = (self.targeted.is_none() && self.response_headers.contains_key(EXPIRES))
            || self.explicit_lifetime().is_some();
        if !(explicit
            || cc.public
            || (!shared && cc.private.is_present())
            || heuristically_cacheable(self.status))
        {
            return Err(NotStorable::NoFreshness);
        }
        Ok(())
    }
}

impl CachePolicy {
    /// Whether the response lets a shared cache store it as the answer to a request with
    /// `Authorization` (RFC 9111 §3.5): `public`, `s-maxage` or `must-revalidate`.
    pub fn allows_authorization(&self) -> bool {
        let cc = &self.res_cc;
        cc.public || cc.s_maxage.is_some() || cc.must_revalidate
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::CacheMode::{Private, Shared};
    use super::*;

    fn check(
        req: &[(&str, &str)],
        status: u16,
        res: &[(&str, &str)],
        mode: super::super::CacheMode,
    ) -> Result<(), NotStorable> {
        CachePolicy::new(&get(req), &res_with(status, res), t0(), t0(), mode).storable()
    }

    #[test]
    fn plain_200_is_storable() {
        assert_eq!(check(&[], 200, &[], Shared), Ok(()));
        assert_eq!(
            check(&[], 200, &[("cache-control", "max-age=5")], Private),
            Ok(())
        );
    }

    #[test]
    fn only_get_and_head() {
        for m in [Method::GET, Method::HEAD] {
            let p = CachePolicy::new(&req_with(m, "/", &[]), &res(&[]), t0(), t0(), Shared);
            assert_eq!(p.storable(), Ok(()));
        }
        for m in [Method::POST, Method::PUT, Method::OPTIONS] {
            let p = CachePolicy::new(
                &req_with(m, "/", &[]),
                &res(&[("cache-control", "max-age=5")]),
                t0(),
                t0(),
                Shared,
            );
            assert_eq!(p.storable(), Err(NotStorable::Method));
        }
    }

    #[test]
    fn non_final_and_304_are_not_storable() {
        let cc = [("cache-control", "max-age=60")];
        assert_eq!(check(&[], 103, &cc, Shared), Err(NotStorable::Status));
        assert_eq!(check(&[], 304, &cc, Shared), Err(NotStorable::Status));
        assert_eq!(check(&[], 302, &cc, Shared), Ok(()));
    }

    #[test]
    fn partial_content_is_not_storable() {
        let cc = ("cache-control", "max-age=60");
        assert_eq!(
            check(&[], 206, &[cc], Shared),
            Err(NotStorable::PartialContent)
        );
        assert_eq!(
            check(&[], 200, &[cc, ("content-range", "bytes 0-1/2")], Shared),
            Err(NotStorable::PartialContent)
        );
    }

    #[test]
    fn no_store_in_request_or_response() {
        assert_eq!(
            check(&[("cache-control", "no-store")], 200, &[], Shared),
            Err(NotStorable::RequestNoStore)
        );
        assert_eq!(
            check(
                &[],
                200,
                &[("cache-control", "max-age=5, no-store")],
                Private
            ),
            Err(NotStorable::NoStore)
        );
    }

    #[test]
    fn private_only_in_private_mode() {
        let res = [("cache-control", "private, max-age=60")];
        assert_eq!(check(&[], 200, &res, Shared), Err(NotStorable::Private));
        assert_eq!(check(&[], 200, &res, Private), Ok(()));
        // Qualified private: the named fields are dropped, the rest is shared.
        let q = [
            ("cache-control", "private=\"x-user\", max-age=60"),
            ("x-user", "bob"),
        ];
        assert_eq!(check(&[], 200, &q, Shared), Ok(()));
    }

    #[test]
    fn private_allows_storage_without_freshness_in_private_mode() {
        let res = [("cache-control", "private")];
        assert_eq!(check(&[], 500, &res, Private), Ok(()));
        assert_eq!(check(&[], 500, &[], Private), Err(NotStorable::NoFreshness));
    }

    #[test]
    fn authorization_needs_explicit_permission_in_shared_mode() {
        let auth = [("authorization", "Bearer x")];
        assert_eq!(
            check(&auth, 200, &[("cache-control", "max-age=60")], Shared),
            Err(NotStorable::Authorization)
        );
        for allowed in ["public", "s-maxage=60", "max-age=60, must-revalidate"] {
            assert_eq!(
                check(&auth, 200, &[("cache-control", allowed)], Shared),
                Ok(())
            );
        }
        assert_eq!(
            check(&auth, 200, &[("cache-control", "max-age=60")], Private),
            Ok(())
        );
    }

    #[test]
    fn set_cookie_not_storable_in_shared_mode_unless_qualified_away() {
        let res = [("cache-control", "max-age=60"), ("set-cookie", "a=b")];
        assert_eq!(check(&[], 200, &res, Shared), Err(NotStorable::SetCookie));
        assert_eq!(check(&[], 200, &res, Private), Ok(()));
        for q in [
            "max-age=60, no-cache=\"Set-Cookie\"",
            "max-age=60, private=\"set-cookie\"",
        ] {
            let p = CachePolicy::new(
                &get(&[]),
                &res_with(200, &[("cache-control", q), ("set-cookie", "a=b")]),
                t0(),
                t0(),
                Shared,
            );
            assert_eq!(p.storable(), Ok(()));
            assert!(!p.response_headers().contains_key(SET_COOKIE));
        }
    }

    #[test]
    fn needs_freshness_or_cacheable_status_or_public() {
        assert_eq!(check(&[], 500, &[], Shared), Err(NotStorable::NoFreshness));
        assert_eq!(check(&[], 302, &[], Shared), Err(NotStorable::NoFreshness));
        assert_eq!(
            check(&[], 500, &[("cache-control", "max-age=5")], Shared),
            Ok(())
        );
        assert_eq!(check(&[], 500, &[("expires", "0")], Shared), Ok(()));
        assert_eq!(
            check(&[], 500, &[("cache-control", "public")], Shared),
            Ok(())
        );
        assert_eq!(
            check(&[], 500, &[("cache-control", "s-maxage=5")], Shared),
            Ok(())
        );
        assert_eq!(
            check(&[], 500, &[("cache-control", "s-maxage=5")], Private),
            Err(NotStorable::NoFreshness)
        );
        for s in [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
            assert_eq!(check(&[], s, &[], Shared), Ok(()), "{s}");
        }
    }

    #[test]
    fn must_understand_needs_an_understood_status() {
        let cc = [("cache-control", "must-understand, max-age=60")];
        assert_eq!(check(&[], 200, &cc, Shared), Ok(()));
        assert_eq!(
            check(&[], 299, &cc, Shared),
            Err(NotStorable::MustUnderstand)
        );
        assert_eq!(
            check(&[], 299, &[("cache-control", "max-age=60")], Shared),
            Ok(())
        );
    }

    #[test]
    fn details_are_short_tokens() {
        assert_eq!(NotStorable::SetCookie.detail(), "set-cookie");
        assert_eq!(
            NotStorable::Authorization.to_string(),
            "response not storable: authorization"
        );
    }
}
