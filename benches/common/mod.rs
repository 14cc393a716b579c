//! Shared pieces of the in-process benchmarks: criterion's settings and loops here; the
//! request and response builders, the chunked body and the driver in `requests.rs`.

#![allow(dead_code)]

mod requests;

pub use requests::*;

use criterion::{black_box, measurement::WallTime, BenchmarkGroup, BenchmarkId, Criterion};
use http::Request;
use http::Response;
use http_body::Body;
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::runtime::Runtime;
use tower::Service;

/// Modest settings: the whole run must fit in a few minutes on two shared cores.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .noise_threshold(0.05)
}

pub const TASKS: u64 = 4;
pub const PER_TASK: u64 = 64;

/// Runs one service in a group: `req(n)` builds the n-th request (a sequence shared by
/// warm-up and samples, so rotating keys keep rotating).
pub fn run<S, R, B>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    id: BenchmarkId,
    svc: &S,
    req: impl Fn(u64) -> Request<R> + Clone + 'static,
) where
    S: Service<Request<R>, Response = Response<B>> + Clone + 'static,
    S::Error: std::fmt::Debug,
    B: Body,
    B::Error: std::fmt::Debug,
{
    let seq = Arc::new(AtomicU64::new(0));
    g.bench_function(id, |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (mut svc, req, seq) = (svc.clone(), req.clone(), Arc::clone(&seq));
            async move {
                let first = seq.fetch_add(iters, Ordering::Relaxed);
                let start = Instant::now();
                for n in first..first + iters {
                    black_box(drive(&mut svc, req(n)).await);
                }
                start.elapsed()
            }
        });
    });
}

/// `TASKS` tasks on a two-worker runtime each send `PER_TASK` requests per iteration.
pub fn run_concurrent<S, R, B>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    id: BenchmarkId,
    svc: &S,
    req: impl Fn(u64) -> Request<R> + Clone + Send + 'static,
) where
    R: Send + 'static,
    S: Service<Request<R>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
    B: Body + Send,
    B::Data: Send,
    B::Error: std::fmt::Debug,
{
    g.bench_function(id, |b| {
        b.to_async(rt).iter_custom(|iters| {
            let (svc, req) = (svc.clone(), req.clone());
            async move {
                let start = Instant::now();
                let tasks: Vec<_> = (0..TASKS)
                    .map(|t| {
                        let (mut svc, req) = (svc.clone(), req.clone());
                        tokio::spawn(async move {
                            for n in 0..iters * PER_TASK {
                                black_box(drive(&mut svc, req(t * 1_000_003 + n)).await);
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.expect("task");
                }
                start.elapsed()
            }
        });
    });
}
