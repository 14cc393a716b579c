//! What an operator sees: the counters (through the `metrics` facade, read here with
//! `metrics-util`'s debugging recorder) and the one `tracing` span per request, for requests
//! to a real axum server on 127.0.0.1.

use crate::common;
use axum::{routing::get, Router};
use common::TestServer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};
use tower_etag::{response_cache::ResponseCache, store::MemoryStore};
use tracing::{
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{layer::Context, prelude::*, registry::LookupSpan, Layer};

/// The fields of every `cache` span, by span id.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<HashMap<String, String>>>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

struct Index(usize);

/// The messages of every `WARN` event.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = HashMap::new();
            event.record(&mut Fields(&mut fields));
            self.0
                .lock()
                .unwrap()
                .push(fields.remove("message").unwrap_or_default());
        }
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "cache" {
            return;
        }
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut all = self.0.lock().unwrap();
        all.push(fields);
        ctx.span(id)
            .unwrap()
            .extensions_mut()
            .insert(Index(all.len() - 1));
    }
    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let Some(Index(i)) = span.extensions().get::<Index>().map(|i| Index(i.0)) else {
            return;
        };
        values.record(&mut Fields(&mut self.0.lock().unwrap()[i]));
    }
}

/// A counter as the recorder saw it: name, labels, value.
type Counted = (String, Vec<(String, String)>, u64);

fn counter(snapshot: &[Counted], name: &str, outcome: &str) -> u64 {
    snapshot
        .iter()
        .filter(|(n, labels, _)| {
            n == name && labels.iter().any(|(k, v)| k == "outcome" && v == outcome)
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[tokio::test]
async fn counters_by_outcome_and_one_span_per_request() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // This thread's recorder: the test runtime has one thread, which runs the server too,
    // and other tests' requests are counted elsewhere.
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let spans = Spans::default();
    // The test runtime has one thread, which runs the server too.
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::registry()
            .with(spans.clone())
            .with(tracing_subscriber::filter::LevelFilter::DEBUG),
    );

    let cache = ResponseCache::new(MemoryStore::new());
    let app = Router::new()
        .route(
            "/a",
            get(|| async { ([("cache-control", "max-age=60")], "a") }),
        )
        .layer(cache.layer());
    let server = TestServer::start(app).await;
    let miss = server.get("/a?x=1", &[]).await;
    let hit = server.get("/a?x=1", &[]).await;
    assert!(miss
        .header("cache-status")
        .unwrap()
        .contains("fwd=uri-miss"));
    assert!(hit.header("cache-status").unwrap().contains("hit"));

    let snapshot: Vec<Counted> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => {
                let key = key.key();
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect();
                Some((key.name().to_owned(), labels, n))
            }
            _ => None,
        })
        .collect();
    let responses = "tower_etag_cache_responses_total";
    assert_eq!(counter(&snapshot, responses, "uri-miss"), 1, "{snapshot:?}");
    assert_eq!(counter(&snapshot, responses, "hit"), 1, "{snapshot:?}");
    assert_eq!(counter(&snapshot, responses, "vary-miss"), 0);
    let requests = "tower_etag_requests_total";
    assert_eq!(counter(&snapshot, requests, "miss"), 1, "{snapshot:?}");
    assert_eq!(counter(&snapshot, requests, "hit"), 1, "{snapshot:?}");

    let spans = spans.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 2, "one span per request: {spans:?}");
    let key = format!("{}/a", server.host()); // not the query: it may hold secrets
    for (span, (outcome, status)) in spans.iter().zip([("miss", "fwd=uri-miss"), ("hit", "hit")]) {
        assert_eq!(span.get("cache.key"), Some(&key), "{span:?}");
        assert_eq!(span.get("cache.outcome").map(String::as_str), Some(outcome));
        assert!(span["cache.status"].contains(status), "{span:?}");
        assert_eq!(span.get("method").map(String::as_str), Some("GET"));
    }
}

/// Debug builds warn, once, about a response that reaches the layer already encoded but
/// without `Vary: accept-encoding` (compression whose `Vary` is set outside the layer).
#[cfg(debug_assertions)]
#[tokio::test]
async fn an_encoded_response_without_vary_is_warned_about_once() {
    // "Once" is once per process: other tests of this binary may have had the warning.
    if !common::in_own_process(
        "observability::an_encoded_response_without_vary_is_warned_about_once",
    ) {
        return;
    }
    use tower_etag::{ConstLruProvider, EtagCacheLayer};
    let warnings = Warnings::default();
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let app = Router::new()
        .route(
            "/varied",
            get(|| async {
                (
                    [("content-encoding", "gzip"), ("vary", "Accept-Encoding")],
                    "x",
                )
            }),
        )
        .route(
            "/hidden",
            get(|| async { ([("content-encoding", "gzip")], "y") }),
        )
        .layer(EtagCacheLayer::with_default_predicate(
            ConstLruProvider::<16>::init(),
        ));
    let server = TestServer::start(app).await;
    server.get("/varied", &[]).await;
    assert!(
        warnings.0.lock().unwrap().is_empty(),
        "a varied encoding is fine"
    );
    server.get("/hidden", &[]).await;
    server.get("/hidden", &[]).await;
    let seen = warnings.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "once: {seen:?}");
    assert!(seen[0].contains("compression layer inside"), "{seen:?}");
}
