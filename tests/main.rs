//! The integration tests, one test binary (each file a module: one link instead of twenty).
//! `tests/large_bodies.rs` is a binary of its own: it measures its process's peak memory.
//!
//! The caching proxy's tests need the `proxy` feature (`cargo test --all-features` runs
//! them all).
//!
//! Run one file's tests by its module path: `cargo test --all-features --test suite proxy_e2e::`.

#[cfg(feature = "proxy")]
use tower_etag::proxy as app;
#[path = "../fuzz/checks.rs"]
mod checks;
mod common;
#[path = "common/store_contract.rs"]
mod contract;
#[cfg(all(feature = "proxy", feature = "redis"))]
#[path = "common/netns.rs"]
mod netns;
#[cfg(feature = "proxy")]
#[path = "common/proxy_setup.rs"]
mod proxy_setup;
#[path = "common/redis_server.rs"]
mod redis_server;

mod client_cache;
mod etag_e2e;
mod etag_layers;
mod etag_security;
mod etag_streaming;
#[cfg(all(feature = "proxy", feature = "redis"))]
mod fleet_netns;
#[cfg(feature = "proxy")]
mod follow_fill;
mod from_fn;
#[cfg(feature = "proxy")]
mod fs_cache;
mod fuzz_corpus;
#[cfg(feature = "proxy")]
mod hardening;
mod minted_etags;
mod observability;
mod privacy_model;
#[cfg(feature = "proxy")]
mod proxy_e2e;
#[cfg(feature = "proxy")]
mod redis_store;
mod refresh_cache;
mod response_cache;
#[cfg(feature = "proxy")]
mod security_matrix;
mod stores;
