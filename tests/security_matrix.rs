//! The security rules of a shared cache as a matrix: for each way an origin can hand one
//! party something personal (Authorization, Cookie / Set-Cookie on a 200, a 304 or a
//! stale-if-error answer, `private` / `no-store` on a 200 or a 304, `Vary` on Cookie or
//! Authorization, private mode), party A asks first, then party B asks the same URL, through
//! the caching proxy on 127.0.0.1. What was made for A must never reach B.
//!
//! The origin marks everything it makes for a party: the body says `for=<party>` and, where
//! the case has it, a `Set-Cookie: session=<party>` and an `x-party: <party>` field.

use crate::{common, proxy_setup};
use axum::{body::Body, http::HeaderMap, routing::any, Router};
use common::{response, Counter, Resp};
use tower_etag::{response_cache::ResponseCache, store::MemoryStore};

/// What the origin answers to the `n`th call (from 1) for `party` (`-` for none).
type Origin = fn(n: usize, party: &str, request: &HeaderMap) -> axum::response::Response;

struct Case {
    name: &'static str,
    origin: Origin,
    /// A request without a party first: stores a shared entry for the later calls to
    /// revalidate.
    prime: bool,
    /// The fields of A's and B's requests (besides `x-party`).
    a: &'static [(&'static str, &'static str)],
    b: &'static [(&'static str, &'static str)],
    private_mode: bool,
}

fn party(request: &HeaderMap) -> String {
    request
        .get("x-party")
        .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned())
}

/// A personal 200: body, cookie and field for the party.
fn personal(party: &str, cache_control: &str, extra: &[(&str, &str)]) -> axum::response::Response {
    let cookie = format!("session={party}");
    let mut headers = vec![("cache-control", cache_control), ("x-party", party)];
    headers.push(("set-cookie", &cookie));
    headers.extend_from_slice(extra);
    response(200, &headers, format!("for={party}"))
}

/// A 200 anyone may share, stale at once so the next request revalidates it.
fn shared_then(
    n: usize,
    then: impl FnOnce() -> axum::response::Response,
) -> axum::response::Response {
    if n == 1 {
        let h = [
            ("cache-control", "max-age=0, stale-if-error=60"),
            ("etag", "\"v1\""),
        ];
        response(200, &h, "for=everyone")
    } else {
        then()
    }
}

/// A 304 for the shared entry, with `cache_control`, the party's cookie and, where
/// `personal`, a field of the party's. (A 304's other fields update the shared entry by
/// design, RFC 9111 §3.2: they are the origin's word on the shared representation, unless
/// the 304 says `private` or `no-store`.)
fn not_modified(party: &str, cache_control: &str, personal: bool) -> axum::response::Response {
    let cookie = format!("session={party}");
    let mut h = vec![
        ("etag", "\"v1\""),
        ("cache-control", cache_control),
        ("set-cookie", cookie.as_str()),
    ];
    if personal {
        h.push(("x-party", party));
    }
    response(304, &h, Body::empty())
}

const CASES: &[Case] = &[
    Case {
        name: "Authorization on a 200 without public",
        origin: |_, p, _| personal(p, "max-age=60", &[]),
        prime: false,
        a: &[("authorization", "Bearer a")],
        b: &[("authorization", "Bearer b")],
        private_mode: false,
    },
    Case {
        name: "Authorization on a 200, then a request without",
        origin: |_, p, _| personal(p, "max-age=60", &[]),
        prime: false,
        a: &[("authorization", "Bearer a")],
        b: &[],
        private_mode: false,
    },
    Case {
        name: "Set-Cookie on a 200",
        origin: |_, p, _| personal(p, "max-age=60", &[]),
        prime: false,
        a: &[("cookie", "id=a")],
        b: &[("cookie", "id=b")],
        private_mode: false,
    },
    Case {
        name: "Set-Cookie on a 304",
        origin: |n, p, _| shared_then(n, || not_modified(p, "max-age=60", false)),
        prime: true,
        a: &[("cookie", "id=a")],
        b: &[],
        private_mode: false,
    },
    Case {
        name: "Set-Cookie on the 5xx that stale-if-error answers",
        origin: |n, p, _| {
            shared_then(n, || {
                let cookie = format!("session={p}");
                let h = [("set-cookie", cookie.as_str()), ("x-party", p)];
                response(503, &h, format!("for={p}"))
            })
        },
        prime: true,
        a: &[("cookie", "id=a")],
        b: &[],
        private_mode: false,
    },
    Case {
        name: "private on a 200",
        origin: |_, p, _| personal(p, "private, max-age=60", &[]),
        prime: false,
        a: &[],
        b: &[],
        private_mode: false,
    },
    Case {
        name: "private on a 304",
        origin: |n, p, _| shared_then(n, || not_modified(p, "private, max-age=60", true)),
        prime: true,
        a: &[],
        b: &[],
        private_mode: false,
    },
    Case {
        name: "no-store on a 200",
        origin: |_, p, _| personal(p, "no-store", &[]),
        prime: false,
        a: &[],
        b: &[],
        private_mode: false,
    },
    Case {
        name: "no-store on a 304",
        origin: |n, p, _| shared_then(n, || not_modified(p, "no-store", true)),
        prime: true,
        a: &[],
        b: &[],
        private_mode: false,
    },
    Case {
        name: "Vary: Cookie",
        origin: |_, p, _| {
            let body = format!("for={p}");
            response(
                200,
                &[("cache-control", "max-age=60"), ("vary", "cookie")],
                body,
            )
        },
        prime: false,
        a: &[("cookie", "id=a")],
        b: &[("cookie", "id=b")],
        private_mode: false,
    },
    Case {
        name: "Vary: Authorization, public",
        origin: |_, p, _| {
            let h = [
                ("cache-control", "public, max-age=60"),
                ("vary", "authorization"),
            ];
            response(200, &h, format!("for={p}"))
        },
        prime: false,
        a: &[("authorization", "Bearer a")],
        b: &[("authorization", "Bearer b")],
        private_mode: false,
    },
    Case {
        name: "private mode: one user's entry, another user",
        origin: |_, p, _| personal(p, "private, max-age=60", &[]),
        prime: false,
        a: &[("x-user", "a")],
        b: &[("x-user", "b")],
        private_mode: true,
    },
    Case {
        name: "private mode: a public entry, another user",
        origin: |_, p, _| {
            response(
                200,
                &[("cache-control", "public, max-age=60")],
                format!("for={p}"),
            )
        },
        prime: false,
        a: &[("x-user", "a")],
        b: &[("x-user", "b")],
        private_mode: true,
    },
];

fn marked_for(r: &Resp, party: &str) -> bool {
    let mark = format!("={party}");
    r.text().contains(&format!("for={party}"))
        || r.headers.iter().any(|(name, value)| {
            let v = value.to_str().unwrap_or("");
            (name == "set-cookie" && v.contains(&mark)) || (name == "x-party" && v == party)
        })
}

/// Runs one case; `Err` says what went wrong.
async fn run(case: &Case) -> Result<(), String> {
    let calls = Counter::new();
    let origin: Router = {
        let (calls, make) = (calls.clone(), case.origin);
        Router::new().route(
            "/r",
            any(move |headers: HeaderMap| {
                let n = calls.inc();
                async move { make(n, &party(&headers), &headers) }
            }),
        )
    };
    let mut cache = ResponseCache::builder(MemoryStore::new());
    if case.private_mode {
        cache = cache.private(|parts| {
            parts
                .headers
                .get("x-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    }
    let proxy = proxy_setup::setup_with(origin, cache.build(), false)
        .await
        .proxy;
    if case.prime {
        let user: &[(&str, &str)] = if case.private_mode { case.a } else { &[] };
        proxy.get("/r", user).await;
    }
    let mut a_headers = case.a.to_vec();
    a_headers.push(("x-party", "A"));
    let a = proxy.get("/r", &a_headers).await;
    let mut b_headers = case.b.to_vec();
    b_headers.push(("x-party", "B"));
    let b = proxy.get("/r", &b_headers).await;
    if marked_for(&b, "A") {
        return Err(format!(
            "{}: B was served what was made for A: {} {:?}",
            case.name,
            b.text(),
            b.headers
        ));
    }
    // A control on the test itself: A did get something of its own where the origin made
    // it (else the case proves nothing).
    if !marked_for(&a, "A") && a.text() != "for=everyone" {
        return Err(format!(
            "{}: A's answer carries no mark: {}",
            case.name,
            a.text()
        ));
    }
    Ok(())
}

#[tokio::test]
async fn nothing_made_for_one_party_reaches_another() {
    let mut failures = Vec::new();
    for case in CASES {
        if let Err(e) = run(case).await {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
