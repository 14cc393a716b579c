//! What the caches tell an operator: counters through the [`metrics`] facade (no exporter is
//! forced on anyone: install the recorder of your choice, e.g. `metrics-exporter-prometheus`)
//! and one [`tracing`] span per request.
//!
//! | counter | labels | counts |
//! |---|---|---|
//! | `tower_etag_requests_total` | `outcome`: `hit`, `miss`, `pass`, `revalidate`, `refresh`, `bypass` (the predicate said no), `bad-request` | requests, by what the middleware did with its provider's answer |
//! | `tower_etag_cache_responses_total` | `outcome`: `hit`, `uri-miss`, `vary-miss`, `stale`, `request`, `bypass` | responses a [`ResponseCache`](crate::response_cache::ResponseCache) sent, by their `Cache-Status` |
//!
//! Every label value is one of a fixed set of words, so no request can grow the number of
//! series, and every key is a `static` (no allocation per request, recorder or not). The
//! `Cache-Status` detail (why a response was not stored, ...) is in the span, not a label.
//! (The cache's name is not a label: two caches in one process share the counters.)
//!
//! The span is `cache` at `DEBUG` level (as tower-http's `TraceLayer` uses), with the fields
//! `method`, `cache.key` (the target as keyed, authority and path: not the query, which may
//! carry secrets, and never the user of a private cache), `cache.outcome` (as the counter's)
//! and, from a `ResponseCache`, `cache.status` (the `Cache-Status` value).
//!
//! `tower_etag_requests_total` counts what the middleware did with its provider's answer:
//! for a `ResponseCache` a bypass or an invalidation is a `miss` there (the inner service was
//! called); its own counter says why. Background refreshes are not counted as responses. Nothing is recorded, and no span made, when no
//! subscriber wants `DEBUG`.

use tracing::{level_filters::LevelFilter, Level, Span};

/// Increments counter `$name{outcome}` for one of the fixed `outcome` words, with a `static`
/// key for each (the `metrics` macros make one only from literals).
macro_rules! count {
    ($name:literal, $outcome:expr, [$($word:literal),+ $(,)?]) => {
        match $outcome {
            $($word => metrics::counter!($name, "outcome" => $word).increment(1),)+
            other => metrics::counter!($name, "outcome" => other).increment(1),
        }
    };
}

/// Whether a subscriber wants the spans (checked first: a disabled span still costs).
fn wanted() -> bool {
    Level::DEBUG <= tracing::level_filters::STATIC_MAX_LEVEL
        && Level::DEBUG <= LevelFilter::current()
}

/// The span of one request, or none when nobody would see it.
pub(crate) fn request_span(method: &http::Method) -> Span {
    if !wanted() {
        return Span::none();
    }
    tracing::debug_span!(
        "cache",
        method = %method,
        cache.key = tracing::field::Empty,
        cache.outcome = tracing::field::Empty,
        cache.status = tracing::field::Empty,
    )
}

/// Records what the middleware did with a request: `cache.outcome` on its span and the
/// counter `tower_etag_requests_total`.
pub(crate) fn outcome(span: &Span, outcome: &'static str) {
    if !span.is_disabled() {
        span.record("cache.outcome", outcome);
    }
    count!(
        "tower_etag_requests_total",
        outcome,
        [
            "hit",
            "miss",
            "pass",
            "revalidate",
            "refresh",
            "bypass",
            "bad-request"
        ]
    );
}

/// Records the key of a request on its span: its authority and path. Not its query, which
/// may carry secrets (tokens, signatures) that logs must not keep.
pub(crate) fn key(span: &Span, authority: Option<&str>, uri: &http::Uri) {
    if !span.is_disabled() {
        let key = format_args!("{}{}", authority.unwrap_or(""), uri.path());
        span.record("cache.key", tracing::field::display(key));
    }
}

/// Records a response cache's `Cache-Status` (its `outcome`, and the field's `value`) on the
/// current request's span and the counter `tower_etag_cache_responses_total`.
pub(crate) fn cache_status(outcome: &'static str, value: &http::HeaderValue) {
    count!(
        "tower_etag_cache_responses_total",
        outcome,
        [
            "hit",
            "uri-miss",
            "vary-miss",
            "stale",
            "request",
            "bypass",
            "miss"
        ]
    );
    if wanted() {
        if let Ok(text) = value.to_str() {
            Span::current().record("cache.status", text);
        }
    }
}

/// Debug builds only: warns (once per process) about a response that reaches the cache
/// already encoded (`Content-Encoding`) without a `Vary` that names `Accept-Encoding`.
/// Whatever chose the encoding did so per request without saying so: a cache would serve
/// the gzip bytes to a client that cannot read them, and one strong tag would stand for two
/// byte sequences (RFC 9110 §8.8.3). The usual cause is a compression layer whose `Vary` is
/// set outside the cache, or an encoding negotiated by hand. Compression placed entirely
/// outside the cache cannot be seen from inside: the README's "Placement" says where it goes.
#[cfg(debug_assertions)]
pub(crate) fn check_encoding<B>(response: &http::Response<B>) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static WARNED: AtomicBool = AtomicBool::new(false);
    let headers = response.headers();
    let encoded = headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"));
    if !encoded
        || crate::semantics::headers::vary_names(headers)
            .any(|n| n == "accept-encoding" || n == "*")
    {
        return;
    }
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            content_encoding = ?headers.get(http::header::CONTENT_ENCODING),
            "a response reached the cache already encoded, without `Vary: accept-encoding`: \
             put the compression layer inside the cache layer (in axum, `.layer(CompressionLayer)` \
             before `.layer(cache)`) so each encoding is its own variant"
        );
    }
}
