//! The whole middleware in process: arbitrary requests (methods, conditionals, directives,
//! ranges, bodies, users, hosts) through the response cache and through the ETag layer, in
//! front of an origin that answers arbitrary heads. Never a panic or a hang, and the safety
//! rule holds: no response ever carries a `Set-Cookie` the origin made for another request.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_etag::{
    response_cache::ResponseCache, store::MemoryStore, ConstLruProvider, EtagCacheLayer,
};

const REQUEST_FIELDS: [&str; 16] = [
    "host",
    "cache-control",
    "pragma",
    "if-none-match",
    "if-match",
    "if-modified-since",
    "if-unmodified-since",
    "range",
    "if-range",
    "authorization",
    "cookie",
    "accept",
    "accept-encoding",
    "accept-language",
    "x-user",
    "content-length",
];
const RESPONSE_FIELDS: [&str; 12] = [
    "cache-control",
    "etag",
    "last-modified",
    "date",
    "expires",
    "age",
    "vary",
    "content-type",
    "location",
    "content-location",
    "pragma",
    "content-encoding",
];
const METHODS: [Method; 5] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
];

#[derive(Arbitrary, Debug)]
struct Req {
    method: u8,
    path: u8,
    fields: Vec<(u8, Vec<u8>)>,
    body: bool,
}

#[derive(Arbitrary, Debug)]
struct Res {
    status: u16,
    fields: Vec<(u8, Vec<u8>)>,
    body: Vec<u8>,
    cookie: bool,
}

#[derive(Arbitrary, Debug)]
struct Exchange {
    requests: Vec<Req>,
    responses: Vec<Res>,
    private: bool,
}

fn request(n: usize, r: &Req) -> Option<Request<Full<Bytes>>> {
    let mut b = Request::builder()
        .method(METHODS[usize::from(r.method) % METHODS.len()].clone())
        .uri(format!("/p{}", r.path % 4))
        .header("x-request", n.to_string());
    for (name, value) in r.fields.iter().take(8) {
        let name = REQUEST_FIELDS[usize::from(*name) % REQUEST_FIELDS.len()];
        b = b.header(name, HeaderValue::from_bytes(value).ok()?);
    }
    let body = if r.body {
        Bytes::from_static(b"body")
    } else {
        Bytes::new()
    };
    b.body(Full::new(body)).ok()
}

fn response(n: &str, r: &Res) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(r.body.clone())));
    *res.status_mut() = http::StatusCode::from_u16(100 + r.status % 500)
        .ok()
        .filter(|s| !s.is_informational())
        .unwrap_or(http::StatusCode::OK);
    for (name, value) in r.fields.iter().take(8) {
        let name =
            HeaderName::from_static(RESPONSE_FIELDS[usize::from(*name) % RESPONSE_FIELDS.len()]);
        if let Ok(v) = HeaderValue::from_bytes(value) {
            res.headers_mut().append(name, v);
        }
    }
    if r.cookie {
        // A cookie for this request only.
        res.headers_mut().insert(
            "set-cookie",
            HeaderValue::from_str(&format!("id={n}")).unwrap(),
        );
    }
    res
}

/// Sends every request through `svc` and checks what comes back.
async fn run<S, B>(svc: S, requests: &[Req])
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body,
{
    for (n, r) in requests.iter().take(6).enumerate() {
        let Some(req) = request(n, r) else {
            continue;
        };
        let Ok(res) = svc.clone().oneshot(req).await;
        let mine = format!("id={n}");
        for cookie in res.headers().get_all("set-cookie") {
            assert_eq!(
                cookie,
                mine.as_str(),
                "request {n} got another request's cookie"
            );
        }
        let _ = res.into_body().collect().await;
    }
}

fuzz_target!(|x: Exchange| {
    if x.responses.is_empty() {
        return;
    }
    let responses = Arc::new(Mutex::new((0usize, x.responses)));
    let origin = service_fn(move |req: Request<Full<Bytes>>| {
        let responses = responses.clone();
        async move {
            let n = req
                .headers()
                .get("x-request")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let mut guard = responses.lock().unwrap();
            let (next, all) = &mut *guard;
            let res = response(&n, &all[*next % all.len()]);
            *next += 1;
            Ok::<_, Infallible>(res)
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cache = ResponseCache::builder(MemoryStore::new());
        if x.private {
            cache = cache.private(|p| {
                p.headers
                    .get("x-user")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            });
        }
        let cache = cache.build();
        run(cache.layer().layer(origin.clone()), &x.requests).await;
        let etag = EtagCacheLayer::with_default_predicate(ConstLruProvider::<8>::init());
        run(etag.layer(origin), &x.requests).await;
    });
});
