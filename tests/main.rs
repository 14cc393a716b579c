//! The integration tests, one test binary (each file a module: one link instead of twenty).
//! `tests/large_bodies.rs` is a binary of its own: it measures its process's peak memory.
//!
//! Run one file's tests by its module path: `cargo test --all-features --test suite proxy_e2e::`.

#[path = "../examples/proxy/app.rs"]
#[allow(dead_code)]
mod app;
#[path = "../fuzz/checks.rs"]
mod checks;
mod common;
#[path = "common/store_contract.rs"]
mod contract;
#[path = "common/proxy_setup.rs"]
mod proxy_setup;
#[path = "common/redis_server.rs"]
mod redis_server;

mod client_cache;
mod etag_e2e;
mod etag_layers;
mod etag_security;
mod etag_streaming;
mod follow_fill;
mod from_fn;
mod fs_cache;
mod fuzz_corpus;
mod hardening;
mod minted_etags;
mod observability;
mod privacy_model;
mod proxy_e2e;
mod redis_store;
mod refresh_cache;
mod response_cache;
mod security_matrix;
mod stores;
