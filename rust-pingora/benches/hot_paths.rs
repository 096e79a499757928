//! The three hot paths the Go store benchmarks, with the same inputs
//! (spec/bench-config.json): routing decision for `tenant-a`, breaker admit+record with
//! (5, 1000 ms, 1, 1), and validate + atomic swap of the whole document.

use arc_swap::ArcSwapOption;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use rust_pingora::balance::{Balancer, SelectionKind};
use rust_pingora::breaker::{Breaker, Outcome};
use rust_pingora::config::{parse_and_validate, BreakerCfg};
use rust_pingora::routing::{select, Selection};
use rust_pingora::health::Checkers;
use rust_pingora::store::Store;
use std::sync::Arc;
use std::time::Instant;

fn bench_doc() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/bench-config.json")).expect("spec/bench-config.json")
}

fn hot_paths(c: &mut Criterion) {
    let doc = bench_doc();

    // Routing decision over a real snapshot (Pingora LoadBalancer health lookups included,
    // probe loops not started).
    let store = Store::with_checkers(std::env::temp_dir(), false, Checkers::disabled());
    store.install(parse_and_validate(&doc).unwrap());
    let snap = store.snapshot().unwrap();
    let now = Instant::now();
    c.bench_function("routing_select", |b| {
        b.iter(|| {
            let first = snap.config.routes.get(black_box("tenant-a")).unwrap();
            let mut f = Vec::new();
            match select(&snap, first, now, &mut f, &|_| Vec::new()) {
                Selection::Chosen(p, _, permit) => {
                    black_box(&p);
                    drop(permit);
                }
                Selection::Exhausted => panic!("bench placement unavailable"),
            }
        })
    });

    // Endpoint selection alone (issue 13): Pingora's select_with over 1, 4 and 16 endpoints,
    // every endpoint available.
    for n in [1usize, 4, 16] {
        let eps: Vec<(std::net::SocketAddr, usize)> =
            (0..n).map(|i| (std::net::SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)), 1)).collect();
        for kind in SelectionKind::ALL {
            let b = Balancer::new(kind, &eps);
            c.bench_function(&format!("select_{}_{n}", kind.as_str()), |bch| {
                bch.iter(|| black_box(b.select(black_box(b"user-42"), |_| true)))
            });
        }
    }

    let br = Breaker::new(
        Some(BreakerCfg { failure_threshold: 5, open_ms: 1000, half_open_max_requests: 1, success_threshold: 1 }),
        now,
    );
    c.bench_function("breaker_admit_record", |b| {
        b.iter(|| {
            let p = br.try_admit(now).unwrap();
            p.record(Outcome::Success, now);
        })
    });

    let cur: ArcSwapOption<rust_pingora::config::Config> = ArcSwapOption::empty();
    // plain name (no group) so the harness matches it with Go's BenchmarkValidateSwap
    c.bench_function("validate_swap", |b| {
        b.iter(|| {
            let cfg = parse_and_validate(black_box(&doc)).unwrap();
            cur.store(Some(Arc::new(cfg)));
        })
    });
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
