//! Multi-endpoint placements (issue 13; profile field `multi_endpoint`, see
//! docs/benchmarks.md "Multi-endpoint placements").
//!
//! Every router and nginx target runs once per selection and endpoint count `n`, as the
//! instance `<target>:<sel>:<n>`, its placement (nginx: `upstream` block) holding the
//! first `n` ports of the one upstream process. From the usual phases this file derives,
//! per instance, the closed-loop maximum, p50/p99 and CPU per request at the reference
//! rate, and the *cost of selection per request*: the difference against `n = 1` of the
//! same target and selection, paired by repeat (the targets are interleaved, so repeat
//! `r` of `n` and of `1` ran seconds apart), as the median with the smallest and largest
//! paired difference, so that noise is visible next to the figure.
//!
//! The Ketama check: for `consistent_hash`, `ketama_keys` distinct keys are sent through
//! each router and nginx (`hash $http_x_bench_key consistent`) over the same `n`
//! addresses; the upstream names the port each request arrived on (`X-Upstream-Port`),
//! and the check reports how often two targets chose the same endpoint.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Serialize;

use super::model::{RunData, Seg};
use super::profile::{MultiEndpoint, Profile, Selection};
use super::targets::{Running, HASH_HEADER, ROUTING_KEY};
use crate::util::stats::median;

/// Targets that get a multi-endpoint placement, in report order.
pub const BASES: &[&str] = &["go", "pingora", "nginx"];

/// One target instance of a multi-endpoint profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `<base>:<sel>:<n>`, e.g. `pingora:ch:16`.
    pub name: String,
    /// `go`, `pingora` or `nginx`.
    pub base: String,
    /// The placement's selection.
    pub selection: Selection,
    /// Number of endpoints.
    pub n: usize,
}

/// The instance name of `base` with `sel` over `n` endpoints.
pub fn instance_name(base: &str, sel: Selection, n: usize) -> String {
    format!("{base}:{}:{n}", sel.short())
}

/// The instances of a profile, in interleaving order: selection, then endpoint count,
/// then target (as listed in `targets`; `direct` has no placement and is not one).
pub fn instances(p: &Profile, m: &MultiEndpoint) -> Vec<Instance> {
    let mut v = Vec::new();
    for &sel in &m.selections {
        for &n in &m.endpoints {
            for base in p.targets.iter().filter(|t| BASES.contains(&t.as_str())) {
                v.push(Instance { name: instance_name(base, sel, n), base: base.clone(), selection: sel, n });
            }
        }
    }
    v
}

/// Median with the smallest and largest value (NaN when empty).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// Of the finite values of `v`.
    pub fn of(v: &[f64]) -> Spread {
        let v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread { median: f64::NAN, min: f64::NAN, max: f64::NAN };
        }
        Spread {
            median: median(v.clone()),
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }

    fn md(&self, digits: usize) -> String {
        if self.median.is_nan() {
            return "–".into();
        }
        format!("{:+.d$} [{:+.d$} .. {:+.d$}]", self.median, self.min, self.max, d = digits)
    }
}

/// The figures of one instance.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub target: String,
    pub selection: Selection,
    pub n: usize,
    /// Closed-loop maximum, median over repeats, requests/s.
    pub closed_max_rps: f64,
    /// At the reference rate, merged over repeats, microseconds.
    pub p50_us: f64,
    pub p99_us: f64,
    /// CPU of the target's process tree per answered request at the reference rate,
    /// median over repeats, microseconds.
    pub cpu_us_per_req: f64,
    /// Failed + dropped requests over every segment of the instance.
    pub failures: u64,
    /// Cost of selection: CPU per request minus that of `n = 1`, paired by repeat,
    /// microseconds (None for `n = 1`).
    pub d_cpu_us: Option<Spread>,
    /// Cost of selection in the closed loop: `1e6 / max_rps` minus that of `n = 1`,
    /// paired by repeat, microseconds per request (None for `n = 1`).
    pub d_closed_us: Option<Spread>,
}

/// Values of `f` per repeat for one instance and phase.
fn by_repeat(segs: &[Seg], target: &str, phase: &str, f: impl Fn(&Seg) -> f64) -> BTreeMap<usize, f64> {
    segs.iter().filter(|s| s.target == target && s.phase == phase).map(|s| (s.repeat, f(s))).collect()
}

/// Paired differences `a[r] - b[r]` over the repeats both have.
fn paired(a: &BTreeMap<usize, f64>, b: &BTreeMap<usize, f64>) -> Vec<f64> {
    a.iter().filter_map(|(r, x)| b.get(r).map(|y| x - y)).collect()
}

/// The table rows of a run (instances that never ran are left out).
pub fn rows(d: &RunData, m: &MultiEndpoint) -> Vec<Row> {
    let mut out = Vec::new();
    for inst in instances(&d.profile, m) {
        if !d.segs.iter().any(|s| s.target == inst.name) {
            continue;
        }
        let base1 = instance_name(&inst.base, inst.selection, 1);
        let cpu = by_repeat(&d.segs, &inst.name, "reference", |s| s.cpu_us_per_req);
        let closed = by_repeat(&d.segs, &inst.name, "closed", |s| s.achieved_rps);
        let per_req = |m: &BTreeMap<usize, f64>| -> BTreeMap<usize, f64> {
            m.iter().map(|(r, x)| (*r, if *x > 0.0 { 1e6 / x } else { f64::NAN })).collect()
        };
        let (d_cpu, d_closed) = if inst.n == 1 {
            (None, None)
        } else {
            let cpu1 = by_repeat(&d.segs, &base1, "reference", |s| s.cpu_us_per_req);
            let closed1 = by_repeat(&d.segs, &base1, "closed", |s| s.achieved_rps);
            (Some(Spread::of(&paired(&cpu, &cpu1))), Some(Spread::of(&paired(&per_req(&closed), &per_req(&closed1)))))
        };
        let h = d.ref_hists.get(&inst.name);
        let q = |x: f64| h.filter(|h| h.len() > 0).map(|h| h.value_at_quantile(x) as f64 / 1000.0).unwrap_or(f64::NAN);
        out.push(Row {
            target: inst.base.clone(),
            selection: inst.selection,
            n: inst.n,
            closed_max_rps: median(closed.values().copied().collect()),
            p50_us: q(0.5),
            p99_us: q(0.99),
            cpu_us_per_req: median(cpu.values().copied().collect()),
            failures: d.segs.iter().filter(|s| s.target == inst.name).map(|s| s.errors + s.dropped).sum(),
            d_cpu_us: d_cpu,
            d_closed_us: d_closed,
        });
    }
    out
}

/// Agreement of two targets on the endpoint of each key.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    pub n: usize,
    /// e.g. `go vs nginx`.
    pub pair: String,
    /// Keys both answered (with an `X-Upstream-Port`).
    pub keys: usize,
    /// Keys on which both chose the same endpoint.
    pub same: usize,
}

/// What the Ketama check saw.
#[derive(Debug, Clone, Serialize, Default)]
pub struct KetamaCheck {
    pub agreements: Vec<Agreement>,
    /// Per instance: how many distinct endpoints its keys landed on, and failed requests.
    pub spread: BTreeMap<String, (usize, usize)>,
    pub note: Option<String>,
}

/// The key sent as the `i`-th of the Ketama check.
pub fn key(i: usize) -> String {
    format!("user-{i}")
}

/// Sends `keys` requests (one connection, in turn) to `addr`, the `i`-th with
/// `X-Bench-Key: user-i`; returns the `X-Upstream-Port` of each (None: no such answer).
async fn ports_of(addr: SocketAddr, keys: usize) -> anyhow::Result<Vec<Option<u16>>> {
    let s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(s)).await?;
    let conn = tokio::spawn(conn);
    let mut out = Vec::with_capacity(keys);
    for i in 0..keys {
        tx.ready().await?;
        let req = hyper::Request::get("/")
            .header(hyper::header::HOST, addr.to_string())
            .header("x-routing-key", ROUTING_KEY)
            .header(HASH_HEADER, key(i))
            .body(Empty::new())?;
        let resp = tx.send_request(req).await?;
        let port = resp
            .headers()
            .get("x-upstream-port")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|_| resp.status().is_success());
        resp.into_body().collect().await?;
        out.push(port);
    }
    drop(tx);
    conn.abort();
    Ok(out)
}

/// Same endpoint on how many keys both answered.
pub fn agreement(n: usize, pair: String, a: &[Option<u16>], b: &[Option<u16>]) -> Agreement {
    let both: Vec<(u16, u16)> = a.iter().zip(b).filter_map(|(x, y)| Some(((*x)?, (*y)?))).collect();
    Agreement { n, pair, keys: both.len(), same: both.iter().filter(|(x, y)| x == y).count() }
}

/// The Ketama check over every running `consistent_hash` instance with `n > 1`.
pub async fn ketama_check(m: &MultiEndpoint, running: &[Running]) -> KetamaCheck {
    let mut c = KetamaCheck::default();
    if m.ketama_keys == 0 || !m.selections.contains(&Selection::ConsistentHash) {
        c.note = Some("not asked for (no consistent_hash selection or ketama_keys: 0)".into());
        return c;
    }
    for &n in m.endpoints.iter().filter(|n| **n > 1) {
        let mut answers: BTreeMap<&str, Vec<Option<u16>>> = BTreeMap::new();
        for base in BASES {
            let name = instance_name(base, Selection::ConsistentHash, n);
            let Some(r) = running.iter().find(|r| r.name == name) else { continue };
            match ports_of(r.addr, m.ketama_keys).await {
                Ok(v) => {
                    let distinct: std::collections::BTreeSet<u16> = v.iter().flatten().copied().collect();
                    c.spread.insert(name, (distinct.len(), v.iter().filter(|p| p.is_none()).count()));
                    answers.insert(base, v);
                }
                Err(e) => {
                    c.note = Some(format!("{name}: {e:#}"));
                }
            }
        }
        for (a, b) in [("go", "pingora"), ("go", "nginx"), ("pingora", "nginx")] {
            if let (Some(x), Some(y)) = (answers.get(a), answers.get(b)) {
                c.agreements.push(agreement(n, format!("{a} vs {b}"), x, y));
            }
        }
    }
    c
}

fn f0(x: f64) -> String {
    if x.is_finite() { format!("{x:.0}") } else { "–".into() }
}

fn f2(x: f64) -> String {
    if x.is_finite() { format!("{x:.2}") } else { "–".into() }
}

/// One 10 ms CPU tick spread over the requests of a window of `ms` at `rate` req/s, in
/// µs per request: the resolution of a CPU-per-request figure from /proc.
pub fn tick_us_per_req(rate: f64, ms: u64) -> f64 {
    let reqs = rate * ms as f64 / 1000.0;
    if reqs > 0.0 { 10_000.0 / reqs } else { f64::NAN }
}

/// The "Multi-endpoint placements" section of report.md.
pub fn section(d: &RunData, m: &MultiEndpoint, rows: &[Row], k: &KetamaCheck, loadavg_end: &str) -> String {
    let mut s = String::new();
    s.push_str("\n## Multi-endpoint placements (issue 13)\n\n");
    s.push_str(&format!(
        "Endpoint counts {:?}; one upstream process listening on {} ports; reference rate {} req/s (the same for every instance); \
         load average at the start {}, at the end {}. Each target is run once per selection and endpoint count (instance \
         `<target>:<sel>:<n>`); the cost of selection is the difference against `n = 1` of the same target and selection, \
         paired by repeat: median [smallest .. largest] of the paired differences. A spread that straddles 0 means the \
         cost is below what this run can see. CPU comes from /proc in 10 ms ticks: one tick over one reference window \
         ({} req/s for {} ms) is {:.2} µs/req, the resolution of the CPU columns.\n\n",
        m.endpoints,
        m.endpoints.iter().max().unwrap_or(&1),
        d.reference_rate,
        d.loadavg_start,
        loadavg_end,
        d.reference_rate,
        d.profile.reference.duration_ms,
        tick_us_per_req(d.reference_rate, d.profile.reference.duration_ms)
    ));
    for &sel in &m.selections {
        s.push_str(&format!("### `{}`\n\n", sel.as_str()));
        s.push_str("| target | n | closed-loop max (req/s) | p50 (µs) | p99 (µs) | CPU (µs/req) | Δ CPU vs n=1 (µs/req) | Δ closed-loop time vs n=1 (µs/req) | failed |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---|---|---:|\n");
        for r in rows.iter().filter(|r| r.selection == sel) {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.target,
                r.n,
                f0(r.closed_max_rps),
                f0(r.p50_us),
                f0(r.p99_us),
                f2(r.cpu_us_per_req),
                r.d_cpu_us.map(|x| x.md(2)).unwrap_or_else(|| "(baseline)".into()),
                r.d_closed_us.map(|x| x.md(2)).unwrap_or_else(|| "(baseline)".into()),
                r.failures
            ));
        }
        s.push('\n');
    }
    s.push_str("### Ketama: the routers against nginx's `hash … consistent`\n\n");
    if let Some(n) = &k.note {
        s.push_str(&format!("Note: {n}\n\n"));
    }
    if !k.agreements.is_empty() {
        s.push_str(&format!(
            "{} keys (`X-Bench-Key: user-0` …), each sent once through every `consistent_hash` instance; the upstream names the \
             port it was reached on. Why the figure may be below 100 %: docs/benchmarks.md.\n\n",
            m.ketama_keys
        ));
        s.push_str("| n | pair | keys | same endpoint | agreement |\n|---:|---|---:|---:|---:|\n");
        for a in &k.agreements {
            let pct = if a.keys > 0 { 100.0 * a.same as f64 / a.keys as f64 } else { f64::NAN };
            s.push_str(&format!("| {} | {} | {} | {} | {}% |\n", a.n, a.pair, a.keys, a.same, f2(pct)));
        }
        s.push_str("\n| instance | distinct endpoints hit | requests without a port |\n|---|---:|---:|\n");
        for (name, (distinct, failed)) in &k.spread {
            s.push_str(&format!("| {name} | {distinct} | {failed} |\n"));
        }
        s.push('\n');
    }
    s
}

/// Appends the section to `<out>/report.md` and writes `<out>/multi.json`.
pub fn write(d: &RunData, m: &MultiEndpoint, k: &KetamaCheck, out: &Path) -> anyhow::Result<()> {
    let rows = rows(d, m);
    let loadavg_end = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    let md = section(d, m, &rows, k, &loadavg_end);
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).create(true).open(out.join("report.md"))?.write_all(md.as_bytes())?;
    let json = serde_json::json!({ "rows": rows, "ketama": k, "loadavg_start": d.loadavg_start, "loadavg_end": loadavg_end, "reference_rate": d.reference_rate });
    std::fs::write(out.join("multi.json"), serde_json::to_vec_pretty(&json)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(target: &str, phase: &str, repeat: usize, rps: f64, cpu: f64) -> Seg {
        Seg {
            target: target.into(),
            phase: phase.into(),
            rate_rps: None,
            repeat,
            p50_us: 1.0,
            p90_us: 1.0,
            p99_us: 1.0,
            p999_us: 1.0,
            max_us: 1.0,
            ok: 1,
            errors: 0,
            dropped: 0,
            achieved_rps: rps,
            cpu_us_per_req: cpu,
            rss_peak_bytes: 0,
            rss_mean_bytes: 0,
            generator_cpu_util: 0.0,
            send_lag_p99_us: 0.0,
            connections: 32,
            fraction: None,
            upstream_accepts: None,
        }
    }

    fn profile() -> Profile {
        let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../scenarios/bench");
        Profile::load(&dir.join("multi-endpoint.yaml")).unwrap()
    }

    #[test]
    fn instances_cover_every_selection_count_and_placed_target_in_order() {
        let mut p = profile();
        p.targets = vec!["direct".into(), "go".into(), "nginx".into()];
        let m = MultiEndpoint { endpoints: vec![1, 4], selections: vec![Selection::RoundRobin, Selection::ConsistentHash], ketama_keys: 0 };
        let names: Vec<String> = instances(&p, &m).into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["go:rr:1", "nginx:rr:1", "go:rr:4", "nginx:rr:4", "go:ch:1", "nginx:ch:1", "go:ch:4", "nginx:ch:4"]);
    }

    #[test]
    fn cost_of_selection_is_paired_by_repeat_against_one_endpoint() {
        let p = profile();
        let m = MultiEndpoint { endpoints: vec![1, 4], selections: vec![Selection::RoundRobin], ketama_keys: 0 };
        // n=1: 10 000 req/s (100 µs/req) then 12 500 (80 µs); n=4: 8 000 (125 µs) then 10 000 (100 µs).
        let segs = vec![
            seg("go:rr:1", "closed", 0, 10_000.0, 0.0),
            seg("go:rr:1", "closed", 1, 12_500.0, 0.0),
            seg("go:rr:4", "closed", 0, 8_000.0, 0.0),
            seg("go:rr:4", "closed", 1, 10_000.0, 0.0),
            seg("go:rr:1", "reference", 0, 0.0, 20.0),
            seg("go:rr:1", "reference", 1, 0.0, 22.0),
            seg("go:rr:4", "reference", 0, 0.0, 21.0),
            seg("go:rr:4", "reference", 1, 0.0, 25.0),
        ];
        let d = RunData {
            run_id: "t".into(),
            profile: p,
            repo: ".".into(),
            present: vec![],
            absent: vec![],
            segs,
            ref_hists: BTreeMap::new(),
            reference_rate: 1000.0,
            idle: BTreeMap::new(),
            mem: vec![],
            tool_check: None,
            hotpath: Default::default(),
            elapsed_secs: 0.0,
            ladder_note: None,
            idle_start: None,
            idle_end: None,
            loadavg_start: "1 1 1".into(),
            nice: 0,
            nofile: 0,
            interrupted: None,
            cpus: None,
            pool: 256,
            remote: vec![],
            tls: None,
        };
        let rows = rows(&d, &m);
        assert_eq!(rows.len(), 2);
        assert!(rows[0].d_cpu_us.is_none());
        let r4 = &rows[1];
        assert_eq!((r4.target.as_str(), r4.n), ("go", 4));
        assert_eq!(r4.d_cpu_us.unwrap(), Spread { median: 2.0, min: 1.0, max: 3.0 });
        let c = r4.d_closed_us.unwrap();
        assert!((c.min - 20.0).abs() < 1e-9 && (c.max - 25.0).abs() < 1e-9, "{c:?}");
        assert!(section(&d, &m, &rows, &KetamaCheck::default(), "2 2 2").contains("| go | 4 | 9000 |"));
    }

    #[test]
    fn agreement_counts_only_keys_both_answered() {
        let a = [Some(1), Some(2), None, Some(4)];
        let b = [Some(1), Some(3), Some(3), Some(4)];
        let g = agreement(4, "go vs nginx".into(), &a, &b);
        assert_eq!((g.keys, g.same), (3, 2));
    }

    #[test]
    fn cpu_resolution_is_one_tick_over_the_window() {
        assert!((tick_us_per_req(1580.0, 600) - 10.55).abs() < 0.01);
        assert!(tick_us_per_req(0.0, 600).is_nan());
    }
}
