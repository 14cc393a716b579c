//! Issue 18: no user's answer ever reaches another user, on any write path, as a
//! model-based test.
//!
//! Random sequences of operations — GETs and HEADs of three users and anonymous requests
//! (two of them at once, so that one follows the other's fill), `insert`s, origin answers
//! drawn from `public` / `private` / plain `max-age` / `s-maxage` / `no-cache` /
//! `must-revalidate` / `no-store` / `stale-while-revalidate` / `stale-if-error` with or
//! without `Set-Cookie`, `Vary` and validators, `304`s that change those fields, `500`s,
//! time advancing, `purge_user`, `invalidate_url` and unsafe requests — run against every
//! mode of the response cache (`shared`, `per_user`, `private`, `user_agent`), as a server's
//! cache and as a client's, with and without minted tags and refresh-ahead, on the memory
//! store and on a real Redis.
//!
//! The origin writes into every body the URL, the party it was made for and a serial. The
//! oracle fails a case when
//!
//! - a body made for one user reaches another user or an anonymous request, unless the
//!   cache is a shared one and RFC 9111 §3 and §3.5 let it keep that answer for everyone
//!   (no `private`, no `no-store`, no `Set-Cookie` left in it, and `public`, `s-maxage` or
//!   `must-revalidate` where the request carried `Authorization` — or, in a per-user
//!   cache, named a user at all). Answers without their body (HEAD, `304`) are judged by
//!   the serial their `x-serial` or `ETag` names. The model's origin answers a `304` only
//!   for what the asking party may have then (as a real origin: another party's personal
//!   tag gets this party's own answer), and what it so validated for a party, that party
//!   may have;
//! - a `Set-Cookie` made for one party reaches another, or (in every mode but a user
//!   agent's) is replayed from the cache;
//! - a body answers another URL (another host's included), or a `no-store` body is served
//!   twice.
//!
//! A failure is shrunk to a short sequence and printed; such sequences are kept below as
//! named cases. The seed is fixed; `TOWER_ETAG_PRIVACY_CASES` sets the number of cases per
//! mode and store (default [`DEFAULT_CASES`] on the memory store, a quarter of that on
//! Redis), `TOWER_ETAG_PRIVACY_SEED` another seed.

use crate::redis_server;
use bytes::Bytes;
use http::{request, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use proptest::{
    prelude::*,
    test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner},
};
use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};
use tower::{service_fn, Layer, ServiceExt};
use tower_etag::{
    clock::ManualClock,
    response_cache::ResponseCache,
    store::{MemoryStore, Store},
};

/// Cases per mode on the memory store, unless `TOWER_ETAG_PRIVACY_CASES` says otherwise.
const DEFAULT_CASES: u32 = 1000;

/// The parties: two users named by `Authorization`, one by a session cookie, and nobody.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    Alice,
    Bob,
    Carol,
    Anon,
}

use Who::{Alice, Anon, Bob, Carol};

impl Who {
    fn name(self) -> &'static str {
        match self {
            Alice => "alice",
            Bob => "bob",
            Carol => "carol",
            Anon => "anon",
        }
    }

    fn of_name(name: &str) -> Option<Self> {
        [Alice, Bob, Carol, Anon]
            .into_iter()
            .find(|w| w.name() == name)
    }

    /// Who a request is from, as the origin (and the caches' user extractor) tell.
    fn of(headers: &HeaderMap) -> Self {
        user_name(headers)
            .and_then(|n| Self::of_name(&n))
            .unwrap_or(Anon)
    }

    fn add_to(self, headers: &mut HeaderMap) {
        match self {
            Alice | Bob => {
                let value = format!("Bearer {}", self.name());
                headers.insert("authorization", value.parse().unwrap());
            }
            Carol => {
                headers.insert("cookie", "session=carol".parse().unwrap());
            }
            Anon => {}
        }
    }
}

/// The user a request names: its bearer token, else its session cookie.
fn user_name(headers: &HeaderMap) -> Option<String> {
    let header = |name| headers.get(name)?.to_str().ok();
    header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .or_else(|| header("cookie").and_then(|c| c.strip_prefix("session=")))
        .map(str::to_owned)
}

fn user_of(parts: &request::Parts) -> Option<String> {
    user_name(&parts.headers)
}

/// The URLs: two paths on one host, and one of them on a second host.
const URLS: [(&str, &str); 3] = [
    ("a.example", "/p"),
    ("a.example", "/q"),
    ("b.example", "/p"),
];

/// The `Cache-Control` fields the origin answers with.
const PROFILES: [&str; 13] = [
    "public, max-age=60",
    "private, max-age=60",
    "max-age=60",
    "s-maxage=60",
    "no-cache",
    "max-age=60, must-revalidate",
    "no-store",
    "max-age=1, stale-while-revalidate=60",
    "public, max-age=1, stale-while-revalidate=60",
    "max-age=1, stale-if-error=60",
    "max-age=60, no-cache=\"set-cookie\"",
    "private",
    "",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VaryOn {
    Nothing,
    Cookie,
    Authorization,
    Language,
}

/// What the origin answers a party's next request for a URL (or what an `insert` stores).
#[derive(Clone, Copy, Debug)]
struct Answer {
    cc: &'static str,
    set_cookie: bool,
    vary: VaryOn,
    etag: bool,
    /// A conditional request naming a tag of this URL gets a `304` with these fields.
    not_modified: bool,
    error: bool,
}

/// One request of the model.
#[derive(Clone, Copy, Debug)]
struct Get {
    who: Who,
    url: usize,
    head: bool,
    french: bool,
    /// With `If-None-Match`: the tag of the last body this party got for the URL.
    conditional: bool,
    no_cache: bool,
    /// What the origin answers, if asked.
    answer: Answer,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Get(Get),
    /// Two requests at once: the second may follow the first's fill.
    Both(Get, Get),
    Insert {
        who: Who,
        url: usize,
        answer: Answer,
    },
    Advance(u64),
    PurgeUser(Who),
    InvalidateUrl(usize),
    Post {
        who: Who,
        url: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Shared,
    PerUser,
    Private,
    UserAgent,
}

/// How a case's cache is built, and what it is asked.
#[derive(Clone, Debug)]
struct Case {
    client: bool,
    mint: bool,
    refresh_ahead: bool,
    ops: Vec<Op>,
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![Just(Alice), Just(Bob), Just(Carol), Just(Anon)]
}

fn answer() -> impl Strategy<Value = Answer> {
    (
        prop::sample::select(&PROFILES[..]),
        prop::bool::weighted(0.25),
        prop_oneof![
            4 => Just(VaryOn::Nothing),
            1 => Just(VaryOn::Cookie),
            1 => Just(VaryOn::Authorization),
            1 => Just(VaryOn::Language),
        ],
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.4),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(cc, set_cookie, vary, etag, not_modified, error)| Answer {
            cc,
            set_cookie,
            vary,
            etag,
            not_modified,
            error,
        })
}

fn get() -> impl Strategy<Value = Get> {
    (
        who(),
        0..URLS.len(),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.1),
        answer(),
    )
        .prop_map(
            |(who, url, head, french, conditional, no_cache, answer)| Get {
                who,
                url,
                head,
                french,
                conditional,
                no_cache,
                answer,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => get().prop_map(Op::Get),
        // Mostly for one URL: the second request may follow the first's fill.
        4 => (get(), get(), prop::bool::weighted(0.75)).prop_map(|(a, mut b, same)| {
            if same {
                b.url = a.url;
            }
            Op::Both(a, b)
        }),
        4 => (who(), 0..URLS.len(), answer())
            .prop_map(|(who, url, answer)| Op::Insert { who, url, answer }),
        6 => prop::sample::select(&[1u64, 2, 30, 61, 3600][..]).prop_map(Op::Advance),
        1 => who().prop_map(Op::PurgeUser),
        1 => (0..URLS.len()).prop_map(Op::InvalidateUrl),
        1 => (who(), 0..URLS.len()).prop_map(|(who, url)| Op::Post { who, url }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.3),
        prop::collection::vec(op(), 1..24),
    )
        .prop_map(|(client, mint, refresh_ahead, ops)| Case {
            client,
            mint,
            refresh_ahead,
            ops,
        })
}

/// A tag no response has, that clients add to their `If-None-Match`: the origin tells
/// by it a client's conditional that the cache passed on from its own revalidation.
const CLIENT_MARK: &str = "\"client\"";

/// A body (or a cookie) the origin made, and what the origin said of it since.
#[derive(Debug)]
struct Made {
    url: usize,
    made_for: Who,
    /// The request carried `Authorization`.
    authorization: bool,
    /// Its `Cache-Control`, as the `200` set it and each `304` since, with the operation
    /// that said so.
    cc: Vec<(usize, &'static str)>,
    set_cookie: bool,
    op: usize,
}

/// The origin's side of the world, and the oracle's memory of it.
struct World {
    mode: Mode,
    clock: ManualClock,
    /// The operation under way.
    op: usize,
    next: HashMap<(usize, Who), Answer>,
    made: Vec<Made>,
    /// The parties the origin answered a `304` for a serial (only ever one that party
    /// could have then: see `may_have_now`).
    validated: HashSet<(usize, Who)>,
    /// The last tag each party got for each URL.
    tags: HashMap<(usize, Who), String>,
}

type Shared = Arc<Mutex<World>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl World {
    fn make(&mut self, url: usize, req: &HeaderMap, answer: &Answer) -> usize {
        let serial = self.made.len();
        self.made.push(Made {
            url,
            made_for: Who::of(req),
            authorization: req.contains_key("authorization"),
            cc: vec![(self.op, answer.cc)],
            set_cookie: answer.set_cookie,
            op: self.op,
        });
        serial
    }

    /// The head the origin gives `answer` (for the body or cookie `serial`, made for `who`).
    fn head(
        &self,
        status: u16,
        answer: &Answer,
        serial: usize,
        who: Who,
    ) -> http::response::Builder {
        let mut res = Response::builder()
            .status(status)
            .header("date", httpdate::fmt_http_date(self.clock.now()));
        if !answer.cc.is_empty() {
            res = res.header("cache-control", answer.cc);
        }
        if answer.set_cookie {
            res = res.header("set-cookie", format!("sid={}.{serial}", who.name()));
        }
        match answer.vary {
            VaryOn::Nothing => {}
            VaryOn::Cookie => res = res.header("vary", "cookie"),
            VaryOn::Authorization => res = res.header("vary", "authorization"),
            VaryOn::Language => res = res.header("vary", "accept-language"),
        }
        res
    }

    /// What the origin answers `req`.
    fn answer(&mut self, req: &request::Parts) -> Response<Full<Bytes>> {
        let url = url_of(req).expect("the cache asks for the URLs of the model only");
        let who = Who::of(&req.headers);
        let plain = Answer {
            cc: "",
            set_cookie: false,
            vary: VaryOn::Nothing,
            etag: false,
            not_modified: false,
            error: false,
        };
        if req.method == Method::POST {
            let no_store = Answer {
                cc: "no-store",
                ..plain
            };
            let (res, body) = self.made(url, &req.headers, &no_store);
            return res.body(Full::from(body)).unwrap();
        }
        let answer = self.next.get(&(url, who)).copied().unwrap_or(plain);
        if answer.error {
            return Response::builder()
                .status(500)
                .body(Full::from("error"))
                .unwrap();
        }
        let tags: Vec<&str> = req
            .headers
            .get_all("if-none-match")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let asked = tags
            .iter()
            .filter_map(|t| t.trim_start_matches("W/").strip_prefix("\"s"))
            .filter_map(|t| t.strip_suffix('"')?.parse::<usize>().ok())
            .find(|&s| self.made.get(s).is_some_and(|m| m.url == url));
        let entitled = asked.filter(|&serial| self.may_have_now(serial, who));
        if let (Some(serial), true) = (entitled, answer.not_modified) {
            // As a real origin: a 304 only for what this party may have now (a tag of
            // another party's personal answer gets this party's own answer). Where
            // the cache revalidates what it stores (not a client's own conditional it
            // passed on, which carries the client's mark), the fields the 304 sends replace
            // the stored ones (RFC 9111 §3.2, §4.3.4).
            self.validated.insert((serial, who));
            let op = self.op;
            if !tags.contains(&CLIENT_MARK) && !answer.cc.is_empty() {
                self.made[serial].cc.push((op, answer.cc));
            }
            let cookie = self.make(url, &req.headers, &answer);
            let res = self
                .head(304, &answer, cookie, who)
                .header("etag", format!("\"s{serial}\""));
            return res.body(Full::default()).unwrap();
        }
        let (res, body) = self.made(url, &req.headers, &answer);
        res.body(Full::from(body)).unwrap()
    }

    /// A `200` made for a request with `req` fields: its head, and its body (which says
    /// for what URL, for whom, and its serial).
    fn made(
        &mut self,
        url: usize,
        req: &HeaderMap,
        answer: &Answer,
    ) -> (http::response::Builder, String) {
        let who = Who::of(req);
        let serial = self.make(url, req, answer);
        // Every 200 names its serial in a field too, so that answers without its body (a
        // HEAD) are judged as well.
        let mut res = self
            .head(200, answer, serial, who)
            .header("x-serial", serial.to_string());
        if answer.etag {
            res = res.header("etag", format!("\"s{serial}\""));
        }
        (res, format!("{}|{}|{serial}", url_text(url), who.name()))
    }

    /// Whether `asker` may have the answer `serial` by what the origin says of it now: it
    /// was made for them or for nobody, or a shared cache may keep it for everyone.
    fn may_have_now(&self, serial: usize, asker: Who) -> bool {
        let made = &self.made[serial];
        self.mode == Mode::UserAgent
            || made.made_for == asker
            || made.made_for == Anon
            || made
                .cc
                .last()
                .is_some_and(|(_, cc)| self.shareable(made, cc))
    }

    /// Whether the answer `serial` may reach `asker`, judged by what the origin said of it
    /// as of the start of operation `op` or since.
    fn may_reach(&self, serial: usize, asker: Who, op: usize) -> bool {
        let made = &self.made[serial];
        if self.mode == Mode::UserAgent
            || made.made_for == asker
            || made.made_for == Anon
            || self.validated.contains(&(serial, asker))
        {
            return true;
        }
        let at_start = made
            .cc
            .iter()
            .rev()
            .find(|(at, _)| *at < op)
            .map(|(_, cc)| *cc);
        let latest = made.cc.last().map(|(_, cc)| *cc);
        [at_start, latest]
            .into_iter()
            .flatten()
            .any(|cc| self.shareable(made, cc))
    }

    /// RFC 9111 §3 and §3.5: a shared cache may keep `made` for everyone, with `cc`.
    fn shareable(&self, made: &Made, cc: &str) -> bool {
        let directives: Vec<&str> = cc.split(',').map(str::trim).collect();
        let has = |d: &str| directives.contains(&d);
        // The cookie of the 200 is kept unless its own fields qualified it away (a later
        // 304 cannot bring it back).
        let first = made.cc.first().map_or("", |(_, cc)| *cc);
        let cookie_kept = made.set_cookie && !first.contains("no-cache=\"set-cookie\"");
        let authorized = directives
            .iter()
            .any(|d| *d == "public" || d.starts_with("s-maxage") || *d == "must-revalidate");
        // In a per-user cache a user is a user however named; in a shared one, §3.5 speaks
        // of `Authorization`.
        let asked_as_user = match self.mode {
            Mode::Shared => made.authorization,
            Mode::PerUser => made.authorization || made.made_for != Anon,
            // Nothing is kept for everyone in a private cache; a user agent's has one user.
            Mode::Private => return false,
            Mode::UserAgent => return true,
        };
        !has("private") && !has("no-store") && !cookie_kept && (!asked_as_user || authorized)
    }

    /// The oracle, on what `asker` got for `url` in operation `op`.
    fn check(&self, op: usize, asker: Who, url: usize, got: &Got) -> Result<Option<Who>, String> {
        for cookie in got.headers.get_all("set-cookie") {
            let cookie = cookie.to_str().unwrap_or_default();
            let (name, serial) = cookie
                .strip_prefix("sid=")
                .and_then(|c| c.split_once('.'))
                .ok_or_else(|| format!("a cookie the origin never set: {cookie}"))?;
            let serial: usize = serial.parse().map_err(|_| cookie.to_owned())?;
            if self.mode != Mode::UserAgent && Who::of_name(name) != Some(asker) {
                return Err(format!("{asker:?} got {name}'s cookie {cookie}"));
            }
            if self.mode != Mode::UserAgent && self.made[serial].op != op {
                return Err(format!("{asker:?} got a cookie from the cache: {cookie}"));
            }
        }
        let Some((serial, content)) = serial_of(got)? else {
            return Ok(None);
        };
        let made = self
            .made
            .get(serial)
            .ok_or_else(|| format!("an answer the origin never made: {got:?}"))?;
        if made.url != url {
            return Err(format!(
                "{asker:?} asked for {} and got {got:?}",
                url_text(url)
            ));
        }
        let no_store = made
            .cc
            .first()
            .is_some_and(|(_, cc)| cc.contains("no-store"));
        if content && no_store && made.op != op {
            return Err(format!("a no-store answer from the cache: {got:?}"));
        }
        if !self.may_reach(serial, asker, op) {
            return Err(format!(
                "LEAK: {asker:?} got serial {serial}, made for {:?} ({made:?})",
                made.made_for
            ));
        }
        Ok(Some(made.made_for))
    }
}

/// The answer `got` is about: its body's serial, else its `x-serial` (both: `true`, stored
/// content), else its origin `ETag`'s (`false`: a 304 may only name it).
fn serial_of(got: &Got) -> Result<Option<(usize, bool)>, String> {
    if got.status == StatusCode::OK && !got.body.is_empty() {
        let text = String::from_utf8_lossy(&got.body);
        let serial = text.rsplit('|').next().and_then(|s| s.parse().ok());
        return serial
            .map(|s| Some((s, true)))
            .ok_or_else(|| format!("a body the origin never made: {text:?}"));
    }
    let field = |name| got.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(serial) = field("x-serial").and_then(|s| s.parse().ok()) {
        return Ok(Some((serial, true)));
    }
    let tag = field("etag").map(|t| t.trim_start_matches("W/"));
    let serial = tag.and_then(|t| t.strip_prefix("\"s")?.strip_suffix('"')?.parse().ok());
    Ok(serial.map(|s| (s, false)))
}

fn url_text(url: usize) -> String {
    let (host, path) = URLS[url];
    format!("{host}{path}")
}

fn url_of(req: &request::Parts) -> Option<usize> {
    let host = req
        .uri
        .host()
        .map(str::to_owned)
        .or_else(|| req.headers.get("host")?.to_str().ok().map(str::to_owned))?;
    let path = req.uri.path();
    URLS.iter().position(|(h, p)| *h == host && *p == path)
}

/// What the cases exercised, summed over a test's cases: a model that never hits, shares
/// or revalidates proves nothing, so each test asserts its share of each.
#[derive(Debug, Default)]
struct Coverage {
    /// Answers from the cache (`Cache-Status: ...; hit`).
    hits: usize,
    /// Answers made from a stored entry after the origin's `304`.
    revalidated: usize,
    /// Answers of requests that waited on another's fill.
    collapsed: usize,
    /// Stale answers (`stale-while-revalidate`, `stale-if-error`).
    stale: usize,
    /// Bodies made for one party that reached another (the oracle let them).
    across: usize,
    /// `insert`s that stored.
    inserted: usize,
}

impl Coverage {
    fn tally(&mut self, got: &Got, made_for: Option<Who>, asker: Who) {
        let status = got
            .headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        self.hits += usize::from(status.contains("; hit"));
        self.revalidated += usize::from(
            status.contains("fwd-status=304") && !status.contains("client-conditional"),
        );
        self.collapsed += usize::from(status.contains("collapsed"));
        self.stale += usize::from(status.contains("detail=stale-"));
        self.across += usize::from(made_for.is_some_and(|m| m != asker && m != Anon));
    }
}

/// What a request got.
struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl fmt::Debug for Got {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.headers.get("cache-status");
        write!(f, "{} {:?} {status:?}", self.status, self.body)
    }
}

/// A request of `who` for `url`, as the case's cache is asked (an absolute URI in front of
/// a client, a path and `Host` in front of a server).
fn request_for(case: &Case, method: Method, who: Who, url: usize) -> request::Builder {
    let (host, path) = URLS[url];
    let mut req = if case.client {
        Request::builder().uri(format!("http://{host}{path}"))
    } else {
        Request::builder().uri(path).header("host", host)
    };
    req = req.method(method);
    who.add_to(req.headers_mut().unwrap());
    req
}

/// Runs `case` in `mode` on `store`; `Err` says which operation broke which rule.
async fn run<St: Store + Clone>(
    mode: Mode,
    store: St,
    case: &Case,
    coverage: &Mutex<Coverage>,
) -> Result<(), String> {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let world: Shared = Arc::new(Mutex::new(World {
        mode,
        clock: clock.clone(),
        op: 0,
        next: HashMap::new(),
        made: Vec::new(),
        validated: HashSet::new(),
        tags: HashMap::new(),
    }));
    let mut builder = ResponseCache::builder(store)
        .clock(clock.clone())
        .mint_etags(case.mint);
    if case.client {
        builder = builder.client();
    }
    builder = match mode {
        Mode::Shared => builder.shared(),
        Mode::PerUser => builder.per_user(user_of),
        Mode::Private => builder.private(user_of),
        Mode::UserAgent => builder.user_agent(),
    };
    if case.refresh_ahead {
        builder = builder.refresh_ahead(Duration::from_secs(30));
    }
    let cache = builder.build();
    let origin = {
        let world = Arc::clone(&world);
        service_fn(move |req: Request<Full<Bytes>>| {
            let world = Arc::clone(&world);
            async move {
                // Room for a request made at the same time to follow this one.
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                let (parts, _) = req.into_parts();
                Ok::<_, Infallible>(lock(&world).answer(&parts))
            }
        })
    };
    let svc = cache.layer().layer(origin);
    let get = |get: Get, op: usize| {
        let (svc, world) = (svc.clone(), Arc::clone(&world));
        async move {
            let method = if get.head { Method::HEAD } else { Method::GET };
            let mut req = request_for(case, method, get.who, get.url);
            let headers = req.headers_mut().unwrap();
            if get.french {
                headers.insert("accept-language", "fr".parse().unwrap());
            }
            if get.no_cache {
                headers.insert("cache-control", "no-cache".parse().unwrap());
            }
            if get.conditional {
                if let Some(tag) = lock(&world).tags.get(&(get.url, get.who)) {
                    let tags = format!("{tag}, {CLIENT_MARK}");
                    headers.insert("if-none-match", tags.parse().unwrap());
                }
            }
            lock(&world).next.insert((get.url, get.who), get.answer);
            let res = svc
                .oneshot(req.body(Full::default()).unwrap())
                .await
                .unwrap_or_else(|e| match e {});
            let (parts, body) = res.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|_| format!("op {op}: {get:?}: the body failed"))?
                .to_bytes();
            let got = Got {
                status: parts.status,
                headers: parts.headers,
                body,
            };
            let mut world = lock(&world);
            let asker = if mode == Mode::UserAgent {
                Anon
            } else {
                get.who
            };
            let made_for = world
                .check(op, asker, get.url, &got)
                .map_err(|e| format!("op {op}: {get:?}: {e}; got {got:?}"))?;
            lock(coverage).tally(&got, made_for, asker);
            if let Some(tag) = got.headers.get("etag").and_then(|t| t.to_str().ok()) {
                world.tags.insert((get.url, get.who), tag.to_owned());
            }
            Ok::<_, String>(())
        }
    };
    for (n, op) in case.ops.iter().enumerate() {
        lock(&world).op = n;
        match *op {
            Op::Get(g) => get(g, n).await?,
            Op::Both(a, b) => {
                let (a, b) = tokio::join!(get(a, n), get(b, n));
                a?;
                b?;
            }
            Op::Insert { who, url, answer } => {
                let req = request_for(case, Method::GET, who, url).body(()).unwrap();
                let (res, body) = lock(&world).made(url, req.headers(), &answer);
                let res = res.body(Bytes::from(body)).unwrap();
                let stored = cache
                    .insert(req, res)
                    .await
                    .map_err(|e| format!("op {n}: insert failed: {e}"))?;
                lock(coverage).inserted += usize::from(stored);
            }
            Op::Advance(secs) => clock.advance(Duration::from_secs(secs)),
            Op::PurgeUser(who) => {
                cache
                    .purge_user(who.name())
                    .await
                    .map_err(|e| format!("op {n}: purge_user failed: {e}"))?;
            }
            Op::InvalidateUrl(url) => {
                let uri = format!("http://{}", url_text(url)).parse().unwrap();
                cache
                    .invalidate_url(&uri)
                    .await
                    .map_err(|e| format!("op {n}: invalidate_url failed: {e}"))?;
            }
            Op::Post { who, url } => {
                let req = request_for(case, Method::POST, who, url)
                    .body(Full::default())
                    .unwrap();
                let res = svc
                    .clone()
                    .oneshot(req)
                    .await
                    .unwrap_or_else(|e| match e {});
                let (parts, body) = res.into_parts();
                let body = body.collect().await.map_err(|_| "post body")?.to_bytes();
                let got = Got {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                };
                let asker = if mode == Mode::UserAgent { Anon } else { who };
                lock(&world)
                    .check(n, asker, url, &got)
                    .map_err(|e| format!("op {n}: POST: {e}"))?;
            }
        }
        // Background fills and refreshes end before the next operation.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while cache.background_in_flight() > 0 {
            if tokio::time::Instant::now() > deadline {
                return Err(format!("op {n}: background work still running after 10 s"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(())
}

fn cases(redis: bool) -> u32 {
    let n = std::env::var("TOWER_ETAG_PRIVACY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    if redis {
        (n / 4).max(1)
    } else {
        n
    }
}

fn seed() -> [u8; 32] {
    let n: u64 = std::env::var("TOWER_ETAG_PRIVACY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(18);
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    seed
}

/// Runs the model in `mode` over stores `new_store` makes (one per case), with a fixed
/// seed; panics with the shrunk failure.
fn check_model<St, F, Fut>(mode: Mode, redis: bool, new_store: F)
where
    St: Store + Clone,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = St>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = Config {
        cases: cases(redis),
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let cases = config.cases as usize;
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed()));
    let coverage = Mutex::new(Coverage::default());
    let result = runner.run(&case(), |case| {
        rt.block_on(async {
            let store = new_store().await;
            run(mode, store, &case, &coverage)
                .await
                .map_err(TestCaseError::fail)
        })
    });
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, case)) => {
            panic!("{mode:?} (redis: {redis}): {why}\nminimal case:\n{case:#?}")
        }
        Err(e) => panic!("{mode:?}: {e}"),
    }
    let coverage = lock(&coverage);
    eprintln!("{mode:?} (redis: {redis}), {cases} cases: {coverage:?}");
    // Every kind of answer the oracle judges was given, in a fair share of the cases.
    let some = |n: usize, per: usize| n * per >= cases;
    assert!(some(coverage.hits, 2), "{coverage:?}");
    assert!(some(coverage.revalidated, 20), "{coverage:?}");
    assert!(some(coverage.stale, 60), "{coverage:?}");
    assert!(some(coverage.inserted, 10), "{coverage:?}");
    assert!(some(coverage.collapsed, 100), "{coverage:?}");
    if matches!(mode, Mode::Shared | Mode::PerUser) {
        // Shared caches do share: bodies made for one party reach another.
        assert!(some(coverage.across, 20), "{coverage:?}");
    }
}

macro_rules! model_tests {
    ($($name:ident: $mode:expr;)*) => {
        mod memory {
            use super::*;
            $(
                #[test]
                fn $name() {
                    check_model($mode, false, || async { MemoryStore::new() });
                }
            )*
        }

        #[cfg(feature = "redis")]
        mod redis {
            use super::*;
            $(
                #[test]
                fn $name() {
                    let Some(server) = redis_server::RedisServer::start_or_skip(stringify!($name))
                    else {
                        return;
                    };
                    let n = std::sync::atomic::AtomicUsize::new(0);
                    let server = &server;
                    check_model($mode, true, || {
                        let prefix = format!("pm{}", n.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                        async move { server.store(&prefix).await }
                    });
                }
            )*
        }
    };
}

model_tests! {
    a_shared_cache_keeps_for_everyone_only_what_rfc_9111_lets_it: Mode::Shared;
    a_per_user_cache_never_gives_a_users_answer_to_another: Mode::PerUser;
    a_private_cache_never_gives_a_users_answer_to_another: Mode::Private;
    a_user_agents_cache_serves_its_urls_and_never_replays_no_store: Mode::UserAgent;
}

/// An answer with `cc`, a tag and nothing else.
fn answer_with(cc: &'static str) -> Answer {
    Answer {
        cc,
        set_cookie: false,
        vary: VaryOn::Nothing,
        etag: true,
        not_modified: false,
        error: false,
    }
}

/// A plain GET of `who` for `url`, answered with `answer` if it reaches the origin.
fn get_of(who: Who, url: usize, answer: Answer) -> Op {
    Op::Get(Get {
        who,
        url,
        head: false,
        french: false,
        conditional: false,
        no_cache: false,
        answer,
    })
}

/// Runs a named case in `mode` on the memory store and on Redis (skipped, and saying so,
/// without `redis-server`), as a server's cache and as a client's.
fn named(mode: Mode, test: &str, ops: Vec<Op>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let redis = redis_server::RedisServer::start_or_skip(test);
    for client in [false, true] {
        let case = Case {
            client,
            mint: false,
            refresh_ahead: false,
            ops: ops.clone(),
        };
        let coverage = Mutex::new(Coverage::default());
        rt.block_on(async {
            let on_memory = run(mode, MemoryStore::new(), &case, &coverage).await;
            on_memory.unwrap_or_else(|e| panic!("{test} (memory, client: {client}): {e}"));
            #[cfg(feature = "redis")]
            if let Some(server) = &redis {
                let store = server.store(&format!("{test}-{client}")).await;
                let on_redis = run(mode, store, &case, &coverage).await;
                on_redis.unwrap_or_else(|e| panic!("{test} (redis, client: {client}): {e}"));
            }
        });
    }
    let _ = redis;
}

// Named cases: failures the model found (shrunk by hand to their core), kept as they are.

/// Issue 18, the six `insert` cases: a response inserted for Alice in a per-user cache
/// (`private`, plain `max-age`, `public` with `Set-Cookie`) answered Bob and anonymous
/// requests from the shared entries.
#[test]
fn named_an_insert_for_a_user_never_answers_another_user_or_nobody() {
    for answer in [
        answer_with("private, max-age=60"),
        answer_with("max-age=60"),
        Answer {
            set_cookie: true,
            ..answer_with("public, max-age=60")
        },
    ] {
        let ops = vec![
            Op::Insert {
                who: Alice,
                url: 0,
                answer,
            },
            get_of(Bob, 0, answer_with("no-store")),
            get_of(Anon, 0, answer_with("no-store")),
            get_of(Carol, 0, answer_with("no-store")),
        ];
        named(Mode::PerUser, "named_insert", ops);
    }
}

/// Found by the model: Carol (named by a cookie) gets a `public` answer, shared; it goes
/// stale; an anonymous request revalidates it and the origin's `304` drops `public`; the
/// shared entry, still Carol's body, then answered Alice.
#[test]
fn named_a_304_that_drops_public_unshares_a_users_answer() {
    let swr = answer_with("public, max-age=1, stale-while-revalidate=60");
    let ops = vec![
        get_of(Carol, 0, swr),
        Op::Advance(1),
        get_of(
            Anon,
            0,
            Answer {
                not_modified: true,
                ..answer_with("max-age=60")
            },
        ),
        get_of(Alice, 0, answer_with("no-store")),
    ];
    named(Mode::PerUser, "named_304_drops_public", ops);
}

/// Found by the model: a private cache kept a user's `Set-Cookie` and replayed it (to the
/// same user: a session moved into another of that user's sessions).
#[test]
fn named_a_users_entries_never_replay_a_cookie() {
    let with_cookie = Answer {
        set_cookie: true,
        ..answer_with("public, max-age=60")
    };
    for mode in [Mode::Private, Mode::PerUser] {
        let ops = vec![
            Op::Insert {
                who: Carol,
                url: 2,
                answer: with_cookie,
            },
            get_of(Carol, 2, with_cookie),
            get_of(Carol, 2, with_cookie),
        ];
        named(mode, "named_cookie_replay", ops);
    }
}

/// The oracle itself: what it must call a leak, it does.
#[test]
fn the_oracle_calls_a_leak_a_leak() {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
    let mut world = World {
        mode: Mode::PerUser,
        clock,
        op: 0,
        next: HashMap::new(),
        made: Vec::new(),
        validated: HashSet::new(),
        tags: HashMap::new(),
    };
    let mut alice = HeaderMap::new();
    Alice.add_to(&mut alice);
    let got = |body: &str, cookie: Option<&str>| {
        let mut headers = HeaderMap::new();
        if let Some(cookie) = cookie {
            headers.insert("set-cookie", cookie.parse().unwrap());
        }
        Got {
            status: StatusCode::OK,
            headers,
            body: Bytes::from(body.to_owned()),
        }
    };
    let private = world.made(0, &alice, &answer_with("private, max-age=60")).1;
    let public = world.made(0, &alice, &answer_with("public, max-age=60")).1;
    let plain = world.made(0, &alice, &answer_with("max-age=60")).1;
    let no_store = world.made(0, &HeaderMap::new(), &answer_with("no-store")).1;
    world.op = 1;
    assert!(world.check(1, Alice, 0, &got(&private, None)).is_ok());
    assert!(world.check(1, Bob, 0, &got(&private, None)).is_err());
    assert!(world.check(1, Anon, 0, &got(&plain, None)).is_err());
    assert!(world.check(1, Bob, 0, &got(&public, None)).is_ok());
    assert!(
        world.check(1, Alice, 1, &got(&private, None)).is_err(),
        "another URL"
    );
    assert!(
        world.check(1, Anon, 0, &got(&no_store, None)).is_err(),
        "no-store, again"
    );
    let cookie = "sid=alice.0";
    assert!(world.check(1, Bob, 0, &got(&public, Some(cookie))).is_err());
    assert!(
        world
            .check(1, Alice, 0, &got(&public, Some(cookie)))
            .is_err(),
        "replayed"
    );
    // An answer without its body is judged by the serial it names.
    let mut head = got("", None);
    head.headers.insert("x-serial", "0".parse().unwrap());
    assert!(world.check(1, Bob, 0, &head).is_err(), "a HEAD of alice's");
    assert!(world.check(1, Alice, 0, &head).is_ok());
    // What the origin validated for a party (with a 304) is that party's.
    world.validated.insert((0, Bob));
    assert!(world.check(1, Bob, 0, &got(&private, None)).is_ok());
}
