//! `parity soak`: each router for a while under steady load while the harness swaps
//! configs, flaps an endpoint, trips a breaker and drops the control plane; reports
//! requests sent, answered and lost, answers by status, the trend (slope) of the
//! router's RSS, open fds, threads and upstream connections, and the health-probe rate
//! per endpoint (config reloads must not add checkers). Documented in docs/soak.md.
//!
//! Per implementation: four soak upstreams ([`upstream`]) `a`..`d`; the router with the
//! harness's control plane ([`crate::env::Env`]); placements `pa` (a), `pb` (b, with a
//! breaker), `pc` (c, falling back to `pd` on d); `pa`..`pc` health-checked at
//! [`PROBE_INTERVAL_MS`]. Keys `k-a`, `k-b`, `k-c` route to `pa`, `pb`, `pc`; `k-x`
//! alternates between `pa` and `pb` with every swap. The schedule (fixed, from the
//! start of the load): a config swap every `duration / swaps`; a control-plane drop every
//! 5 s; `c` down for 2 s every 7 s; `b` answering 500 for 1.5 s every 11 s. At the end
//! everything is restored, the load stops, and the router must report the last version
//! pushed.
pub mod report;
pub mod sample;
pub mod upstream;

use crate::control_plane::{config_frame, CpEvent};
use crate::env::Env;
use anyhow::{Context, Result};
use sample::{Sample, slope};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use upstream::{SoakUpstream, PROBE_PATH};

/// Health-check interval of the checked placements, ms.
pub const PROBE_INTERVAL_MS: u64 = 200;

/// `parity soak` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// Implementations, comma separated.
    #[arg(long = "impl", default_value = "go,pingora", value_delimiter = ',')]
    pub impls: Vec<String>,
    /// Seconds of load per implementation (the profile: 600; CI: 60).
    #[arg(long, default_value_t = 600)]
    pub duration_s: u64,
    /// Config swaps over the run (default: 1000 per 600 s, at least 100).
    #[arg(long)]
    pub swaps: Option<u64>,
    /// Offered request rate, requests per second (all workers together).
    #[arg(long, default_value_t = 200)]
    pub rps: u64,
    /// Concurrent client workers (each on its own keep-alive connections).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Results folder; the run goes to `<out>/soak-<time>/`.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Router binaries (as `parity run`).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Tolerated RSS slope after the warm-up, MiB per minute.
    #[arg(long, default_value_t = 2.0)]
    pub max_rss_mib_per_min: f64,
    /// Tolerated slope of open fds, of threads and of upstream connections, per minute.
    #[arg(long, default_value_t = 4.0)]
    pub max_count_per_min: f64,
}

/// Exit codes of `parity soak`.
pub const EXIT_CODES: &str = "Exit codes:
  0  every implementation lost no request, stayed within the slope tolerances, kept its
     probe rate and ended on the last config pushed
  1  a check failed (see soak.md)
  3  the harness failed (missing binary, I/O error) or the run was interrupted";

/// A check of one implementation's soak.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// Whether it holds.
    pub ok: bool,
    /// The figures behind it.
    pub detail: String,
}

/// Trend of a resource after the warm-up, per minute.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Slopes {
    /// RSS, MiB per minute.
    pub rss_mib_per_min: f64,
    /// Open fds per minute.
    pub fds_per_min: f64,
    /// Threads per minute.
    pub threads_per_min: f64,
    /// Upstream connections per minute.
    pub upstream_conns_per_min: f64,
}

/// Health probes an upstream received, per second, over the first and the last third
/// of the load.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeRate {
    /// Probes per second, first third.
    pub first: f64,
    /// Probes per second, last third.
    pub last: f64,
    /// What the interval gives: 1000 / interval_ms.
    pub expected: f64,
}

/// One implementation's soak.
#[derive(Debug, Clone, Serialize)]
pub struct ImplSoak {
    /// `go` or `pingora`.
    pub imp: String,
    /// Seconds of load.
    pub duration_s: f64,
    /// Requests sent.
    pub sent: u64,
    /// Requests that got a whole HTTP response.
    pub answered: u64,
    /// Requests that got none (or a cut body), by kind (`connect`, `timeout`, `body`,
    /// `other`).
    pub lost: BTreeMap<String, u64>,
    /// Answers by status code.
    pub by_status: BTreeMap<String, u64>,
    /// Answers by `X-Router-Error` (`-`: none).
    pub by_error: BTreeMap<String, u64>,
    /// Config swaps pushed, acked (distinct versions), nacked, and sent while no router
    /// was connected (then pushed on its next hello).
    pub swaps: BTreeMap<String, u64>,
    /// Chaos events: `cp_drops`, `flaps`, `breaker_trips`.
    pub events: BTreeMap<String, u64>,
    /// Hellos the control plane received.
    pub hellos: u64,
    /// The router's config version at the end, and the last one pushed.
    pub final_version: Option<u64>,
    /// The last version pushed.
    pub last_pushed: u64,
    /// Resource trends after the warm-up.
    pub slopes: Slopes,
    /// Probe rate per health-checked endpoint that never went down (`a`, `b`).
    pub probe_rate: BTreeMap<String, ProbeRate>,
    /// Samples, one a second.
    pub samples: Vec<Sample>,
    /// The checks.
    pub checks: Vec<Check>,
    /// All checks hold.
    pub ok: bool,
}

/// Counters the load workers share.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    answered: AtomicU64,
    lost: Mutex<BTreeMap<String, u64>>,
    by_status: Mutex<BTreeMap<String, u64>>,
    by_error: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn bump(m: &Mutex<BTreeMap<String, u64>>, k: String) {
        *m.lock().unwrap().entry(k).or_default() += 1;
    }
}

/// The config of version `v` (see the module docs) for upstream origins `o` (a..d).
pub fn config(v: u64, o: &[String; 4]) -> Value {
    let t = json!({"connect_ms": 300, "request_ms": 2000});
    let hc = json!({"path": PROBE_PATH, "interval_ms": PROBE_INTERVAL_MS, "timeout_ms": 300, "unhealthy_threshold": 2, "healthy_threshold": 1});
    json!({
        "version": v,
        "routes": {"k-a": "pa", "k-b": "pb", "k-c": "pc", "k-x": if v % 2 == 0 { "pa" } else { "pb" }},
        "placements": {
            "pa": {"endpoint": o[0], "max_concurrency": 64 + v % 2, "timeouts": t, "health_check": hc},
            "pb": {"endpoint": o[1], "max_concurrency": 64, "timeouts": t, "health_check": hc,
                   "circuit_breaker": {"failure_threshold": 5, "open_ms": 1000, "half_open_max_requests": 1, "success_threshold": 1}},
            "pc": {"endpoint": o[2], "fallback": "pd", "max_concurrency": 64, "timeouts": t, "health_check": hc},
            "pd": {"endpoint": o[3], "max_concurrency": 64, "timeouts": t}
        }
    })
}

/// Runs the soak; returns the exit code.
pub async fn run(a: SoakArgs) -> i32 {
    tokio::select! {
        r = run_all(&a) => match r {
            Ok(all_ok) => if all_ok { 0 } else { 1 },
            Err(e) => {
                eprintln!("parity soak: {e:#}");
                3
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("parity soak: interrupted");
            crate::env::kill_all();
            3
        }
    }
}

async fn run_all(a: &SoakArgs) -> Result<bool> {
    for i in &a.impls {
        if crate::env::binary_name(i).is_none() {
            anyhow::bail!("unknown implementation {i:?} (go, pingora)");
        }
    }
    let bin_dir = crate::env::find_bin_dir(a.bin_dir.clone());
    let run_dir = a.out.join(format!("soak-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")));
    std::fs::create_dir_all(&run_dir).with_context(|| format!("create {}", run_dir.display()))?;
    let mut results = Vec::new();
    for imp in &a.impls {
        eprintln!("parity soak: {imp} for {} s ...", a.duration_s);
        let r = soak_one(a, imp, &bin_dir, &run_dir.join("logs").join(imp)).await?;
        eprintln!(
            "parity soak: {imp}: sent {} answered {} lost {} | rss {:+.2} MiB/min fds {:+.2}/min threads {:+.2}/min conns {:+.2}/min | {}",
            r.sent,
            r.answered,
            r.lost.values().sum::<u64>(),
            r.slopes.rss_mib_per_min,
            r.slopes.fds_per_min,
            r.slopes.threads_per_min,
            r.slopes.upstream_conns_per_min,
            if r.ok { "OK" } else { "FAIL" }
        );
        results.push(r);
    }
    report::write(&run_dir, a, &results)?;
    crate::util::out::say(&format!("soak report: {}", run_dir.join("soak.md").display()));
    Ok(results.iter().all(|r| r.ok))
}

async fn soak_one(a: &SoakArgs, imp: &str, bin_dir: &std::path::Path, log_dir: &std::path::Path) -> Result<ImplSoak> {
    let t0 = Instant::now();
    let mut ups = Vec::new();
    for n in ["a", "b", "c", "d"] {
        ups.push(SoakUpstream::start(n, t0).await?);
    }
    let origins: [String; 4] = [ups[0].origin(), ups[1].origin(), ups[2].origin(), ups[3].origin()];
    let ports: Vec<u16> = ups.iter().map(|u| u.port).collect();
    let sc: crate::scenario::Scenario = serde_json::from_value(json!({
        "id": format!("soak-{imp}"), "description": "parity soak",
        "router": {"control_plane": true, "reconnect_initial_ms": 50, "reconnect_max_ms": 400, "threads": 2},
        "config": config(1, &origins), "steps": []
    }))?;
    let mut env = Env::create(&sc, imp, bin_dir, log_dir).await?;
    let cp = env.cp.as_ref().context("control plane")?;
    if cp.answer(0, Some(Some(1)), Duration::from_secs(10)).await.is_none() {
        anyhow::bail!("{imp}: the initial config was not acked within 10 s");
    }

    // Load.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let client = reqwest::Client::builder().no_proxy().pool_idle_timeout(Duration::from_secs(2)).timeout(Duration::from_secs(10)).build()?;
    let data = format!("http://{}/soak", env.data_addr());
    let every = Duration::from_secs_f64(a.concurrency as f64 / a.rps.max(1) as f64);
    let mut workers = Vec::new();
    for w in 0..a.concurrency {
        let (stop, tally, client, data) = (stop.clone(), tally.clone(), client.clone(), data.clone());
        workers.push(tokio::spawn(async move {
            let keys = ["k-a", "k-b", "k-c", "k-x"];
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = w;
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let key = keys[n % keys.len()];
                n += 1;
                tally.sent.fetch_add(1, Ordering::Relaxed);
                match client.get(&data).header("x-routing-key", key).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16().to_string();
                        let err = r.headers().get("x-router-error").and_then(|v| v.to_str().ok()).unwrap_or("-").to_string();
                        match r.bytes().await {
                            Ok(_) => {
                                tally.answered.fetch_add(1, Ordering::Relaxed);
                                Tally::bump(&tally.by_status, status);
                                Tally::bump(&tally.by_error, err);
                            }
                            Err(_) => Tally::bump(&tally.lost, "body".into()),
                        }
                    }
                    Err(e) => {
                        let kind = if e.is_connect() { "connect" } else if e.is_timeout() { "timeout" } else { "other" };
                        Tally::bump(&tally.lost, kind.into());
                    }
                }
            }
        }));
    }

    // Chaos and samples, on one clock.
    let total = a.duration_s as f64;
    let swaps = a.swaps.unwrap_or_else(|| (a.duration_s * 1000 / 600).max(100));
    let swap_every = total / swaps.max(1) as f64;
    let (mut version, mut next_swap) = (1u64, swap_every);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut events: BTreeMap<String, u64> = BTreeMap::new();
    let (mut c_down, mut b_failing) = (false, false);
    let mut samples = Vec::new();
    let mut next_sample = 0.0;
    let start = Instant::now();
    let cp = env.cp.as_ref().context("control plane")?;
    loop {
        let t = start.elapsed().as_secs_f64();
        if t >= total {
            break;
        }
        if t >= next_sample {
            if let Some(pid) = env.router.pid() {
                if let Some(s) = sample::sample(pid, t, &ports) {
                    samples.push(s);
                }
            }
            next_sample += 1.0;
        }
        if t >= next_swap && version < swaps + 1 {
            version += 1;
            next_swap += swap_every;
            let text = config(version, &origins).to_string();
            cp.set_current(text.clone());
            *counts.entry("pushed".into()).or_default() += 1;
            match cp.send_frame(config_frame(&text)) {
                Ok(idx) => match cp.answer(idx, Some(Some(version)), Duration::from_secs(1)).await {
                    Some(CpEvent::Nack { .. }) => *counts.entry("nacked".into()).or_default() += 1,
                    Some(_) => {}
                    None => *counts.entry("unanswered_at_once".into()).or_default() += 1,
                },
                Err(_) => *counts.entry("sent_while_disconnected".into()).or_default() += 1,
            }
        }
        // control-plane drop every 5 s (at 2.5, 7.5, ...)
        let slot5 = ((t - 2.5) / 5.0).floor();
        if t >= 2.5 && events.get("cp_drops").copied().unwrap_or(0) < slot5 as u64 + 1 {
            cp.drop_connections();
            *events.entry("cp_drops".into()).or_default() += 1;
        }
        // c down for 2 s every 7 s
        let want_down = t % 7.0 >= 5.0;
        if want_down != c_down {
            if want_down {
                ups[2].down();
                *events.entry("flaps".into()).or_default() += 1;
            } else {
                ups[2].up().await?;
            }
            c_down = want_down;
        }
        // b fails for 1.5 s every 11 s
        let want_fail = t % 11.0 >= 9.5;
        if want_fail != b_failing {
            ups[1].set_failing(want_fail);
            if want_fail {
                *events.entry("breaker_trips".into()).or_default() += 1;
            }
            b_failing = want_fail;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Restore, stop the load, let in-flight requests end.
    ups[2].up().await.ok();
    ups[1].set_failing(false);
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(15), w).await;
    }
    let duration_s = start.elapsed().as_secs_f64();
    if let Some(pid) = env.router.pid() {
        if let Some(s) = sample::sample(pid, duration_s, &ports) {
            samples.push(s);
        }
    }
    // The router must end on the last version pushed (acked directly or on a hello).
    let last = version;
    let mut final_version = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        final_version = env.admin_state().await.ok().and_then(|s| s.get("config_version").and_then(Value::as_u64));
        if final_version == Some(last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let evs = cp.events();
    let acked: std::collections::BTreeSet<u64> = evs.iter().filter_map(|e| if let CpEvent::Ack { version: Some(v) } = e { Some(*v) } else { None }).collect();
    counts.insert("acked_versions".into(), acked.len() as u64);
    let hellos = cp.hellos() as u64;

    // Probe rate of a and b: first and last third of the load (after the first 2 s).
    let mut probe_rate = BTreeMap::new();
    for (i, n) in [(0usize, "a"), (1, "b")] {
        let times = ups[i].probe_times();
        let t_start = start.duration_since(t0).as_secs_f64();
        let (lo, hi) = (t_start + 2.0, t_start + duration_s);
        let third = (hi - lo) / 3.0;
        let rate = |from: f64, to: f64| times.iter().filter(|&&x| x >= from && x < to).count() as f64 / (to - from).max(1e-9);
        probe_rate.insert(n.to_string(), ProbeRate { first: rate(lo, lo + third), last: rate(hi - third, hi), expected: 1000.0 / PROBE_INTERVAL_MS as f64 });
    }
    env.teardown().await;

    let warm = (total * 0.2).max(10.0);
    let pts = |f: &dyn Fn(&Sample) -> f64| -> Vec<(f64, f64)> { samples.iter().filter(|s| s.t_s >= warm).map(|s| (s.t_s / 60.0, f(s))).collect() };
    let slopes = Slopes {
        rss_mib_per_min: slope(&pts(&|s| s.rss_bytes as f64 / 1048576.0)),
        fds_per_min: slope(&pts(&|s| s.fds as f64)),
        threads_per_min: slope(&pts(&|s| s.threads as f64)),
        upstream_conns_per_min: slope(&pts(&|s| s.upstream_conns as f64)),
    };
    let lost = tally.lost.lock().unwrap().clone();
    let lost_n: u64 = lost.values().sum();
    let sent = tally.sent.load(Ordering::SeqCst);
    let answered = tally.answered.load(Ordering::SeqCst);
    let mut checks = vec![
        Check { name: "no request lost".into(), ok: lost_n == 0 && sent == answered, detail: format!("sent {sent}, answered {answered}, lost {lost_n} {lost:?}") },
        Check {
            name: "ends on the last config pushed".into(),
            ok: final_version == Some(last),
            detail: format!("router at {final_version:?}, last pushed {last}"),
        },
        Check {
            name: format!("RSS slope ≤ {} MiB/min", a.max_rss_mib_per_min),
            ok: slopes.rss_mib_per_min <= a.max_rss_mib_per_min,
            detail: format!("{:+.3} MiB/min after {warm:.0} s", slopes.rss_mib_per_min),
        },
    ];
    for (name, v) in [("open fds", slopes.fds_per_min), ("threads", slopes.threads_per_min), ("upstream connections", slopes.upstream_conns_per_min)] {
        checks.push(Check { name: format!("{name} slope ≤ {}/min", a.max_count_per_min), ok: v <= a.max_count_per_min, detail: format!("{v:+.3}/min") });
    }
    for (n, p) in &probe_rate {
        let ok = p.last <= p.expected * 1.25 && p.last >= p.expected * 0.75 && p.last <= p.first * 1.25;
        checks.push(Check {
            name: format!("probe rate of {n} unchanged by reloads"),
            ok,
            detail: format!("{:.2}/s first third, {:.2}/s last third, {:.2}/s expected", p.first, p.last, p.expected),
        });
    }
    let ok = checks.iter().all(|c| c.ok);
    let by_status = tally.by_status.lock().unwrap().clone();
    let by_error = tally.by_error.lock().unwrap().clone();
    Ok(ImplSoak {
        imp: imp.to_string(),
        duration_s,
        sent,
        answered,
        lost,
        by_status,
        by_error,
        swaps: counts,
        events,
        hellos,
        final_version,
        last_pushed: last,
        slopes,
        probe_rate,
        samples,
        checks,
        ok,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soak_configs_are_valid_and_alternate_the_shared_key() {
        let o = ["http://127.0.0.1:1".to_string(), "http://127.0.0.1:2".into(), "http://127.0.0.1:3".into(), "http://127.0.0.1:4".into()];
        for v in [1, 2] {
            let c = config(v, &o);
            let errs = crate::scenario::config_schema_errors(&c, "config");
            assert!(errs.is_empty(), "{errs:?}");
        }
        assert_ne!(config(1, &o)["routes"]["k-x"], config(2, &o)["routes"]["k-x"]);
        // the health-check blocks never change, so reloads keep the checkers (spec §4)
        assert_eq!(config(1, &o)["placements"]["pa"]["health_check"], config(2, &o)["placements"]["pa"]["health_check"]);
    }
}
