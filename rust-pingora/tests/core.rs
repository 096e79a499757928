//! Core state machines and decisions: breaker half-open racing across threads, routing
//! over a snapshot with an injected clock, LKG persistence and the `.corrupt` rename.

use rust_pingora::breaker::{Breaker, Outcome, State};
use rust_pingora::config::{parse_and_validate, BreakerCfg, Code};
use rust_pingora::controlplane::{apply_config_bytes, handle_frame, load_lkg, write_lkg, LkgLoad, Reply};
use rust_pingora::health::Health;
use rust_pingora::limit::Limiter;
use rust_pingora::balance::Balancer;
use rust_pingora::routing::{acquire_slot, select, EndpointRt, HashInput, PlacementHot, PlacementRt, Selection, Snapshot};
use rust_pingora::store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn bcfg(ft: u32, open_ms: u64, hmax: u32, st: u32) -> Option<BreakerCfg> {
    Some(BreakerCfg { failure_threshold: ft, open_ms, half_open_max_requests: hmax, success_threshold: st })
}

#[test]
fn half_open_permits_are_exact_under_racing_threads() {
    for hmax in [1u32, 3] {
        for _round in 0..50 {
            let t0 = Instant::now();
            let b = Breaker::new(bcfg(1, 5, hmax, 1000), t0);
            b.try_admit(t0).unwrap().record(Outcome::Failure, t0);
            let t1 = t0 + Duration::from_millis(5);
            assert_eq!(b.state(t1), State::HalfOpen);
            let threads = 16;
            let barrier = Barrier::new(threads);
            let admitted = AtomicUsize::new(0);
            let concurrent = AtomicU32::new(0);
            let max_seen = AtomicU32::new(0);
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        barrier.wait();
                        for _ in 0..200 {
                            if let Some(p) = b.try_admit(t1) {
                                let c = concurrent.fetch_add(1, Ordering::SeqCst) + 1;
                                max_seen.fetch_max(c, Ordering::SeqCst);
                                admitted.fetch_add(1, Ordering::SeqCst);
                                std::thread::yield_now();
                                concurrent.fetch_sub(1, Ordering::SeqCst);
                                drop(p); // no outcome: permit returns
                            }
                        }
                    });
                }
            });
            assert!(max_seen.load(Ordering::SeqCst) <= hmax, "more than {hmax} half-open requests at once");
            assert!(admitted.load(Ordering::SeqCst) > 0);
            assert_eq!(b.state(t1), State::HalfOpen);
        }
    }
}

#[test]
fn racing_outcomes_reopen_once_and_stale_ones_are_ignored() {
    let t0 = Instant::now();
    let b = Breaker::new(bcfg(1, 10, 4, 1), t0);
    b.try_admit(t0).unwrap().record(Outcome::Failure, t0);
    let t1 = t0 + Duration::from_millis(10);
    let permits: Vec<_> = (0..4).map(|_| b.try_admit(t1).unwrap()).collect();
    assert!(b.try_admit(t1).is_none());
    let gen = b.generation(t1);
    // all four fail at once from different threads: the first reopens, the rest are stale
    std::thread::scope(|s| {
        for p in permits {
            s.spawn(move || p.record(Outcome::Failure, t1));
        }
    });
    assert_eq!(b.state(t1), State::Open);
    assert_eq!(b.generation(t1), gen + 1, "exactly one transition");
    assert_eq!(b.state(t1 + Duration::from_millis(10)), State::HalfOpen);
}

fn rt(id: &str, fallback: Option<&str>, healthy: bool, breaker: Option<BreakerCfg>, max: u32, t0: Instant) -> Arc<PlacementRt> {
    let doc = format!(
        r#"{{"version":1,"routes":{{}},"placements":{{"{id}":{{"endpoint":"http://127.0.0.1:1","max_concurrency":{max},"timeouts":{{"connect_ms":1,"request_ms":1}}}}}}}}"#
    );
    let mut cfg = parse_and_validate(doc.as_bytes()).unwrap().placements.remove(id).unwrap();
    cfg.fallback = fallback.map(str::to_string);
    let hot = PlacementHot::new(&cfg);
    let ep = EndpointRt::new(cfg.endpoints[0].clone(), Health::manual(healthy), Breaker::new(breaker, t0), Err("test".into()));
    let balancer = Arc::new(Balancer::new(cfg.selection, &[("127.0.0.1:1".parse().unwrap(), 1)]));
    Arc::new(PlacementRt { hot, cfg, endpoints: vec![ep].into_boxed_slice(), balancer, limiter: Limiter::new() })
}

/// Placements in these tests hash nothing.
const NO_KEY: HashInput<'static> = &|_| Vec::new();

fn snapshot(ps: Vec<Arc<PlacementRt>>) -> Snapshot {
    let doc = r#"{"version":1,"routes":{},"placements":{}}"#;
    Snapshot {
        config: Arc::new(parse_and_validate(doc.as_bytes()).unwrap()),
        placements: ps.into_iter().map(|p| (p.cfg.id.clone(), p)).collect::<HashMap<_, _>>(),
    }
}

#[test]
fn routing_walks_health_then_breaker_and_counts_failovers() {
    let t0 = Instant::now();
    let a = rt("a", Some("b"), false, bcfg(1, 1000, 1, 1), 1, t0);
    let b = rt("b", Some("c"), true, bcfg(1, 1000, 1, 1), 1, t0);
    let c = rt("c", None, true, None, 1, t0);
    let snap = snapshot(vec![a.clone(), b.clone(), c.clone()]);
    // open b's breaker
    b.endpoints[0].breaker.try_admit(t0).unwrap().record(Outcome::Failure, t0);
    let mut f = Vec::new();
    match select(&snap, "a", t0, &mut f, NO_KEY) {
        Selection::Chosen(p, _, _) => assert_eq!(p.cfg.id, "c"),
        Selection::Exhausted => panic!("c is available"),
    }
    assert_eq!(f, vec![("a".into(), "b".into()), ("b".into(), "c".into())]);
    // the unhealthy placement's breaker was not asked: a's breaker still closed with no permit taken
    assert_eq!(a.endpoints[0].breaker.state(t0), State::Closed);
    // b half-open after open_ms: it takes the one permit, the next request goes on to c
    let t1 = t0 + Duration::from_millis(1000);
    let mut f = Vec::new();
    let held = match select(&snap, "b", t1, &mut f, NO_KEY) {
        Selection::Chosen(p, _, permit) => {
            assert_eq!(p.cfg.id, "b");
            permit
        }
        _ => panic!(),
    };
    match select(&snap, "b", t1, &mut Vec::new(), NO_KEY) {
        Selection::Chosen(p, _, _) => assert_eq!(p.cfg.id, "c"),
        _ => panic!(),
    }
    drop(held);
    // nothing available
    c.endpoints[0].health.set_manual(false);
    b.endpoints[0].health.set_manual(false);
    assert!(matches!(select(&snap, "a", t1, &mut Vec::new(), NO_KEY), Selection::Exhausted));
    // limit: no spill
    c.endpoints[0].health.set_manual(true);
    let slot = acquire_slot(&c).unwrap();
    assert!(acquire_slot(&c).is_none());
    drop(slot);
    assert!(acquire_slot(&c).is_some());
}

fn doc(version: u64, port: u16) -> String {
    format!(
        r#"{{"version":{version},"routes":{{"k":"p"}},"placements":{{"p":{{"endpoint":"http://127.0.0.1:{port}","max_concurrency":2,"timeouts":{{"connect_ms":10,"request_ms":10}}}}}}}}"#
    )
}

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pingora-core-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn lkg_round_trip_and_corrupt_rename() {
    let d = tmpdir("lkg");
    assert!(matches!(load_lkg(&d), LkgLoad::Missing));
    write_lkg(&d, doc(3, 9).as_bytes()).unwrap();
    match load_lkg(&d) {
        LkgLoad::Loaded(c) => assert_eq!(c.version, 3),
        other => panic!("{other:?}"),
    }
    // no temp files left behind
    let names: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("last-known-good.json")]);
    // an older .corrupt is replaced
    std::fs::write(d.join("last-known-good.json.corrupt"), "old").unwrap();
    std::fs::write(d.join("last-known-good.json"), r#"{"version":1}"#).unwrap();
    assert!(matches!(load_lkg(&d), LkgLoad::Corrupt(_)));
    assert!(!d.join("last-known-good.json").exists());
    assert_eq!(std::fs::read_to_string(d.join("last-known-good.json.corrupt")).unwrap(), r#"{"version":1}"#);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn control_plane_apply_rules() {
    let d = tmpdir("cp");
    let store = Store::new(d.clone(), false);
    assert_eq!(apply_config_bytes(&store, doc(5, 9).as_bytes()), Reply::Ack(5));
    assert_eq!(std::fs::read_to_string(d.join("last-known-good.json")).unwrap(), doc(5, 9));
    assert_eq!(store.metrics.config_accepted.get(), 1);
    // same version, same content (other spacing): re-ack, nothing applied
    let spaced = doc(5, 9).replace(',', " ,\n ");
    assert_eq!(apply_config_bytes(&store, spaced.as_bytes()), Reply::Ack(5));
    assert_eq!(store.metrics.config_accepted.get(), 1);
    // same version, other content; lower version: stale
    for bad in [doc(5, 10), doc(4, 9)] {
        match apply_config_bytes(&store, bad.as_bytes()) {
            Reply::Nack(v, r) => {
                assert_eq!((r.code, r.path.as_str()), (Code::StaleVersion, "/version"));
                assert!(v.is_some());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(std::fs::read_to_string(d.join("last-known-good.json")).unwrap(), doc(5, 9));
    // frames
    let r = handle_frame(&store, r#"{"type":"hello"}"#);
    assert!(matches!(&r, Reply::Nack(None, rej) if rej.code == Code::MalformedJson));
    let r = handle_frame(&store, &format!(r#"{{"type":"config","config":{}}}"#, doc(6, 9).replace("\"k\"", "\"\"")));
    match &r {
        Reply::Nack(Some(v), rej) => {
            assert_eq!(v.to_string(), "6");
            assert_eq!((rej.code, rej.path.as_str()), (Code::InvalidValue, "/routes/"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(handle_frame(&store, &format!(r#"{{"type":"config","config":{}}}"#, doc(7, 9))), Reply::Ack(7));
    let big = format!(r#"{{"version":8,"routes":{{}},"placements":{{}}{}}}"#, " ".repeat(1 << 20));
    match handle_frame(&store, &format!(r#"{{"type":"config","config":{big}}}"#)) {
        Reply::Nack(v, rej) => {
            assert_eq!(rej.code, Code::TooLarge);
            assert_eq!(v.map(|n| n.to_string()), Some("8".into()));
        }
        other => panic!("{other:?}"),
    }
    let m = rust_pingora::admin::render_metrics(&store);
    assert!(m.contains("router_config_rejected_total{code=\"stale_version\"} 2"), "{m}");
    assert!(m.contains("router_config_version 7"), "{m}");
    // an unwritable state dir: internal_error, nothing applied
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::write(&d, "a file where the directory was").unwrap();
    match apply_config_bytes(&store, doc(9, 9).as_bytes()) {
        Reply::Nack(_, rej) => assert_eq!(rej.code, Code::InternalError),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.current_config().unwrap().version, 7);
    std::fs::remove_file(&d).unwrap();
}

fn hc_doc(version: u64, ids: &[(&str, u64)]) -> Vec<u8> {
    let mut pl = serde_json::Map::new();
    for (id, interval) in ids {
        pl.insert(
            id.to_string(),
            serde_json::json!({"endpoint": "http://127.0.0.1:1", "max_concurrency": 1,
                "timeouts": {"connect_ms": 5, "request_ms": 5},
                "health_check": {"path": "/h", "interval_ms": interval, "timeout_ms": 5,
                                 "unhealthy_threshold": 1, "healthy_threshold": 1},
                "circuit_breaker": {"failure_threshold": 1, "open_ms": 60000, "half_open_max_requests": 1, "success_threshold": 1}}),
        );
    }
    serde_json::json!({"version": version, "routes": {}, "placements": pl}).to_string().into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_across_updates_and_no_checker_leak() {
    let store = Store::new(std::env::temp_dir(), false);
    store.install(parse_and_validate(&hc_doc(1, &[("a", 1000), ("b", 1000)])).unwrap());
    assert_eq!(store.checkers_running(), 2);
    let snap1 = store.snapshot().unwrap();
    // open a's breaker
    snap1.placements["a"].endpoints[0].breaker.try_admit(Instant::now()).unwrap().record(Outcome::Failure, Instant::now());
    // same blocks: state kept
    store.install(parse_and_validate(&hc_doc(2, &[("a", 1000), ("b", 1000)])).unwrap());
    let snap2 = store.snapshot().unwrap();
    assert!(Arc::ptr_eq(&snap1.placements["a"].endpoints[0].health, &snap2.placements["a"].endpoints[0].health));
    assert_eq!(snap2.placements["a"].endpoints[0].breaker.state(Instant::now()), State::Open);
    // b's health_check changes: new health, old checker stopped; a removed
    for v in 3..103 {
        store.install(parse_and_validate(&hc_doc(v, &[("b", 2000 + v)])).unwrap());
    }
    let snap3 = store.snapshot().unwrap();
    assert!(!Arc::ptr_eq(&snap1.placements["b"].endpoints[0].health, &snap3.placements["b"].endpoints[0].health));
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.checkers_running() != 1 {
        assert!(Instant::now() < deadline, "checkers: {}", store.checkers_running());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // the probe against a closed port marks b unhealthy (first probe at creation)
    let deadline = Instant::now() + Duration::from_secs(5);
    while snap3.placements["b"].endpoints[0].health.is_healthy() {
        assert!(Instant::now() < deadline, "first probe did not run");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn pool_doc(version: u64, entries: &[(u16, u32)], hc_interval: Option<u64>) -> Vec<u8> {
    let eps: Vec<_> = entries.iter().map(|(port, w)| serde_json::json!({"url": format!("http://127.0.0.1:{port}"), "weight": w})).collect();
    let mut p = serde_json::json!({"endpoints": eps, "max_concurrency": 4,
        "timeouts": {"connect_ms": 5, "request_ms": 5},
        "circuit_breaker": {"failure_threshold": 1, "open_ms": 60000, "half_open_max_requests": 1, "success_threshold": 1}});
    if let Some(i) = hc_interval {
        p["health_check"] = serde_json::json!({"path": "/h", "interval_ms": i, "timeout_ms": 5, "unhealthy_threshold": 1, "healthy_threshold": 1});
    }
    serde_json::json!({"version": version, "routes": {"k": "p"}, "placements": {"p": p}}).to_string().into_bytes()
}

/// Within a placement: weighted round robin in address order, a breaker-open endpoint is
/// skipped while its siblings serve, and the placement is unavailable only when every
/// endpoint is (spec §3 step 3).
#[test]
fn placement_picks_available_endpoints_in_selection_order() {
    let store = Store::with_checkers(std::env::temp_dir(), false, rust_pingora::health::Checkers::disabled());
    store.install(parse_and_validate(&pool_doc(1, &[(9003, 1), (9001, 1), (9002, 2)], None)).unwrap());
    let snap = store.snapshot().unwrap();
    let p = &snap.placements["p"];
    let t = Instant::now();
    let mut seq = Vec::new();
    for _ in 0..8 {
        let (i, permit) = p.pick(b"", t, &[]).unwrap();
        permit.record(Outcome::Success, t);
        seq.push(p.endpoints[i].cfg.url.rsplit(':').next().unwrap().to_string());
    }
    assert_eq!(seq, ["9001", "9002", "9002", "9003", "9001", "9002", "9002", "9003"]);
    // open 9002's breaker (config index 2): its siblings keep serving
    p.endpoints[2].breaker.try_admit(t).unwrap().record(Outcome::Failure, t);
    for _ in 0..6 {
        let (i, permit) = p.pick(b"", t, &[]).unwrap();
        assert_ne!(i, 2);
        drop(permit);
    }
    assert!(p.is_healthy());
    assert_eq!(p.breaker_state(t), State::Closed, "aggregate: closed while one is closed");
    // the others' breakers open too: the placement is unavailable
    for i in [0, 1] {
        p.endpoints[i].breaker.try_admit(t).unwrap().record(Outcome::Failure, t);
    }
    assert!(p.pick(b"", t, &[]).is_none());
    assert_eq!(p.breaker_state(t), State::Open);
    assert!(matches!(select(&snap, "p", t, &mut Vec::new(), NO_KEY), Selection::Exhausted));
}

/// Identity per endpoint across config swaps (spec §4): a weight change keeps health and
/// breaker; an added endpoint starts fresh; one checker per checked endpoint; the
/// round-robin position is kept only while urls, weights and selection are unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_identity_across_updates() {
    let store = Store::new(std::env::temp_dir(), false);
    store.install(parse_and_validate(&pool_doc(1, &[(1, 1), (2, 1)], Some(60_000))).unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.checkers_running() != 2 {
        assert!(Instant::now() < deadline, "checkers: {}", store.checkers_running());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s1 = store.snapshot().unwrap();
    let t = Instant::now();
    s1.placements["p"].endpoints[0].breaker.try_admit(t).unwrap().record(Outcome::Failure, t);
    // same list: same balancer (the counter carries on)
    store.install(parse_and_validate(&pool_doc(2, &[(1, 1), (2, 1)], Some(60_000))).unwrap());
    let s2 = store.snapshot().unwrap();
    assert!(Arc::ptr_eq(&s1.placements["p"].balancer, &s2.placements["p"].balancer));
    // weight change + one more endpoint
    store.install(parse_and_validate(&pool_doc(3, &[(1, 5), (2, 1), (3, 1)], Some(60_000))).unwrap());
    let s3 = store.snapshot().unwrap();
    let (p1, p3) = (&s1.placements["p"], &s3.placements["p"]);
    assert!(!Arc::ptr_eq(&p1.balancer, &p3.balancer), "weights changed: selection rebuilt");
    assert!(Arc::ptr_eq(&p1.endpoints[0].health, &p3.endpoints[0].health));
    assert!(Arc::ptr_eq(&p1.endpoints[0].breaker, &p3.endpoints[0].breaker));
    assert_eq!(p3.endpoints[0].breaker.state(t), State::Open);
    assert_eq!(p3.endpoints[2].breaker.state(t), State::Closed);
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.checkers_running() != 3 {
        assert!(Instant::now() < deadline, "checkers: {}", store.checkers_running());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // back to one endpoint: two checkers stop
    store.install(parse_and_validate(&pool_doc(4, &[(2, 1)], Some(60_000))).unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.checkers_running() != 1 {
        assert!(Instant::now() < deadline, "checkers: {}", store.checkers_running());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
