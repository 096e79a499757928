//! bench.json, report.md, report.html and the SVG plots (plotters).

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use serde_json::{json, Value};

use super::targets::KNOWN;
use super::{extras, RunData, Seg};
use crate::util::stats::{median, spread};

/// Medians (and spreads) of one target in one phase at one rate.
#[derive(Debug, Clone, Default)]
pub struct Agg {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub achieved: f64,
    pub cpu: f64,
    pub ok: u64,
    pub errors: u64,
    pub dropped: u64,
    pub rss_peak: f64,
    pub rss_mean: f64,
    pub gen_util: f64,
    pub lag_p99: f64,
    pub p50_spread: (f64, f64),
    pub p99_spread: (f64, f64),
    pub cpu_spread: (f64, f64),
    pub achieved_spread: (f64, f64),
}

/// Aggregates the segments matching (target, phase, rate).
pub fn agg(segs: &[Seg], target: &str, phase: &str, rate: Option<f64>) -> Agg {
    let s: Vec<&Seg> = segs.iter().filter(|s| s.target == target && s.phase == phase && s.rate_rps == rate).collect();
    let col = |f: &dyn Fn(&Seg) -> f64| s.iter().map(|x| f(x)).collect::<Vec<f64>>();
    Agg {
        n: s.len(),
        p50: median(col(&|x| x.p50_us)),
        p90: median(col(&|x| x.p90_us)),
        p99: median(col(&|x| x.p99_us)),
        p999: median(col(&|x| x.p999_us)),
        max: col(&|x| x.max_us).into_iter().fold(f64::NAN, f64::max),
        achieved: median(col(&|x| x.achieved_rps)),
        cpu: median(col(&|x| x.cpu_us_per_req)),
        ok: s.iter().map(|x| x.ok).sum(),
        errors: s.iter().map(|x| x.errors).sum(),
        dropped: s.iter().map(|x| x.dropped).sum(),
        rss_peak: col(&|x| x.rss_peak_bytes as f64).into_iter().fold(f64::NAN, f64::max),
        rss_mean: median(col(&|x| x.rss_mean_bytes as f64)),
        gen_util: col(&|x| x.generator_cpu_util).into_iter().fold(f64::NAN, f64::max),
        lag_p99: median(col(&|x| x.send_lag_p99_us)),
        p50_spread: spread(&col(&|x| x.p50_us)),
        p99_spread: spread(&col(&|x| x.p99_us)),
        cpu_spread: spread(&col(&|x| x.cpu_us_per_req)),
        achieved_spread: spread(&col(&|x| x.achieved_rps)),
    }
}

/// Whether an open-loop aggregate at `rate` is saturated by the profile's criteria.
fn is_saturated(d: &RunData, a: &Agg, rate: f64) -> bool {
    let sat = &d.profile.saturation;
    let bad = (a.errors + a.dropped) as f64 / ((a.ok + a.errors + a.dropped).max(1)) as f64;
    a.n > 0 && (a.achieved < sat.min_achieved * rate || bad > sat.max_error_ratio || a.p99 > sat.max_p99_ms * 1000.0)
}

fn num(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 100.0).round() / 100.0)
    } else {
        Value::Null
    }
}

fn ladder_rates(segs: &[Seg]) -> Vec<f64> {
    let mut r: Vec<f64> = segs.iter().filter(|s| s.phase == "ladder").filter_map(|s| s.rate_rps).collect();
    r.sort_by(|a, b| a.partial_cmp(b).unwrap());
    r.dedup();
    r
}

/// The highest ladder rate at which every present target ran and none was saturated.
fn common_rate(d: &RunData) -> Option<f64> {
    let names: Vec<&String> = d.present.iter().map(|(n, _)| n).collect();
    ladder_rates(&d.segs).into_iter().rev().find(|rate| {
        !names.is_empty()
            && names.iter().all(|n| {
                let a = agg(&d.segs, n, "ladder", Some(*rate));
                a.n > 0 && !is_saturated(d, &a, *rate)
            })
    })
}

/// "median of N" / "single run": how many samples a figure is made of.
fn samples(n: usize) -> String {
    if n == 1 { "single run".into() } else { format!("median of {n}") }
}

/// The per-target figures at the reference rate, with overheads and ratios.
struct Row {
    name: String,
    r: Agg,
    closed: Agg,
    idle: Option<f64>,
    ovh50: f64,
    ovh99: f64,
}

fn rows(d: &RunData) -> Vec<Row> {
    rows_at(d, "reference", d.reference_rate)
}

/// The per-target rows of one open-loop phase (`reference` or `ladder`) at one rate.
fn rows_at(d: &RunData, phase: &str, rate: f64) -> Vec<Row> {
    let rate = Some(rate);
    let direct = agg(&d.segs, "direct", phase, rate);
    KNOWN
        .iter()
        .filter(|n| d.present.iter().any(|(p, _)| p == *n))
        .map(|n| {
            let r = agg(&d.segs, n, phase, rate);
            let (ovh50, ovh99) = if direct.n > 0 { (r.p50 - direct.p50, r.p99 - direct.p99) } else { (f64::NAN, f64::NAN) };
            Row {
                name: n.to_string(),
                closed: agg(&d.segs, n, "closed", None),
                idle: d.idle.get(*n).map(|i| i.bytes_per_conn).filter(|x| x.is_finite()),
                r,
                ovh50,
                ovh99,
            }
        })
        .collect()
}

fn bench_json(d: &RunData, rows: &[Row]) -> Value {
    let mut targets = serde_json::Map::new();
    let rates = ladder_rates(&d.segs);
    for row in rows {
        let r = &row.r;
        let ladder: Vec<Value> = rates
            .iter()
            .map(|rate| (rate, agg(&d.segs, &row.name, "ladder", Some(*rate))))
            .filter(|(_, a)| a.n > 0)
            .map(|(rate, a)| {
                let saturated = is_saturated(d, &a, *rate);
                json!({"rate_rps": rate, "achieved_rps": num(a.achieved), "p50_us": num(a.p50), "p90_us": num(a.p90),
                       "p99_us": num(a.p99), "p999_us": num(a.p999), "max_us": num(a.max), "errors": a.errors,
                       "dropped": a.dropped, "cpu_us_per_req": num(a.cpu), "repeats": a.n, "saturated": saturated})
            })
            .collect();
        let idle = d.idle.get(&row.name);
        targets.insert(
            row.name.clone(),
            json!({
                "present": true,
                "note": d.present.iter().find(|(n, _)| *n == row.name).map(|x| x.1.clone()),
                "p50_us": num(r.p50), "p90_us": num(r.p90), "p99_us": num(r.p99), "p999_us": num(r.p999), "max_us": num(r.max),
                "max_rps": num(row.closed.achieved),
                "cpu_us_per_req": num(r.cpu),
                "rss_peak_bytes": num(r.rss_peak), "rss_mean_bytes": num(r.rss_mean),
                "idle_conn_bytes": idle.map(|i| num(i.bytes_per_conn)).unwrap_or(Value::Null),
                "idle": idle,
                "achieved_rps": num(r.achieved), "errors": r.errors, "dropped": r.dropped,
                "overhead_p50_us": num(row.ovh50), "overhead_p99_us": num(row.ovh99),
                "saturated_at_reference": is_saturated(d, r, d.reference_rate),
                "spread": {"p50_us": [num(r.p50_spread.0), num(r.p50_spread.1)], "p99_us": [num(r.p99_spread.0), num(r.p99_spread.1)],
                           "cpu_us_per_req": [num(r.cpu_spread.0), num(r.cpu_spread.1)],
                           "max_rps": [num(row.closed.achieved_spread.0), num(row.closed.achieved_spread.1)]},
                "repeats": r.n,
                "closed_loop": {"max_rps": num(row.closed.achieved), "p50_us": num(row.closed.p50), "p99_us": num(row.closed.p99),
                                "cpu_us_per_req": num(row.closed.cpu), "repeats": row.closed.n},
                "ladder": ladder,
            }),
        );
    }
    for a in &d.absent {
        targets.insert(a.name.clone(), json!({"present": false, "reason": a.reason}));
    }
    let (go_size, rust_size) = extras::code_size(&d.repo);
    json!({
        "schema_version": 1,
        "run_id": d.run_id,
        "interrupted": d.interrupted.is_some(),
        "interrupted_by": d.interrupted,
        "profile": d.profile,
        "host": host(),
        "reference_rate_rps": d.reference_rate,
        "elapsed_s": num(d.elapsed_secs),
        "ladder_note": d.ladder_note,
        "rlimit_nofile": d.nofile,
        "nice": d.nice,
        "targets": targets,
        "generator": {
            "max_cpu_util": num(d.segs.iter().map(|s| s.generator_cpu_util).fold(f64::NAN, f64::max)),
            "tool_check": d.tool_check,
        },
        "hotpath": d.hotpath,
        "code_size": {"go": go_size, "pingora": rust_size},
        "divergences": extras::divergences(&d.repo).unwrap_or_default(),
        "cpu_isolation": d.cpus,
        "reference_pool": d.pool,
        "remote_targets": d.remote,
        "concurrency": d.profile.concurrency.as_ref().map(|c| super::scale::json(d, c)),
        "tls": match (&d.profile.tls, &d.tls) { (Some(p), Some(r)) => super::tls::json(p, r), _ => Value::Null },
        "segments": d.segs,
    })
}

fn host() -> Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_string();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    // The host's CPUs, not this process's: the run pins itself to the load half (CPU
    // isolation), so available_parallelism() would say 1 on the 2-core box.
    let cpus = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default().lines().filter(|l| l.starts_with("processor")).count();
    json!({"cpus": cpus, "cpu_model": cpu, "kernel": kernel, "loadavg_at_report": load})
}

/// One element of report.md / report.html.
#[derive(Debug)]
pub(super) enum Block {
    H(u8, String),
    P(String),
    List(Vec<String>),
    Table(Vec<String>, Vec<Vec<String>>),
    Img(String, String),
}

fn f0(x: f64) -> String {
    if x.is_finite() { format!("{x:.0}") } else { "—".into() }
}
fn f1(x: f64) -> String {
    if x.is_finite() { format!("{x:.1}") } else { "—".into() }
}
fn mib(x: f64) -> String {
    if x.is_finite() { format!("{:.1}", x / 1048576.0) } else { "—".into() }
}
/// a / b, when both are positive (an overhead at or below zero is noise: no ratio);
/// otherwise, or when it would print as 0.00x, "n/a".
fn ratio(a: f64, b: f64) -> String {
    match ratio_val(a, b) {
        Some(x) => format!("{x:.2}x"),
        None => "n/a".into(),
    }
}

fn ratio_val(a: f64, b: f64) -> Option<f64> {
    let x = a / b;
    (a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0 && x >= 0.005).then_some(x)
}

fn blocks(d: &RunData, rows: &[Row], plots: &[(String, String)]) -> Vec<Block> {
    let mut b = Vec::new();
    let p = &d.profile;
    b.push(Block::H(1, format!("parity bench: {} ({})", p.name, d.run_id)));
    if let Some(sig) = &d.interrupted {
        b.push(Block::P(format!("**Interrupted** ({sig}) after {:.0} s: a partial report with the segments measured until then; phases that did not run are empty.", d.elapsed_secs)));
    }
    let h = host();
    b.push(Block::P(format!(
        "Host: {} CPUs ({}), Linux {}. Every target runs with {} worker thread(s) (GOMAXPROCS, `ServerConf.threads`, nginx `worker_processes`); the upstream has {} thread(s) in its own process, the load generator {} thread(s) inside `parity`. {} client connections. Reference rate: **{} req/s** ({}). Open-loop latency is timed from each request's intended send time. Run time {:.0} s. Load average when the run started: {}; at its end: {} (other work on the machine shows up as noise in every figure; the benchmark's processes ran at nice {}).",
        h["cpus"], h["cpu_model"].as_str().unwrap_or(""), h["kernel"].as_str().unwrap_or(""),
        p.threads, p.upstream_threads, p.client_threads, p.connections, d.reference_rate,
        match p.reference_rate { super::profile::RefRate::Fixed(_) => "fixed by the profile".to_string(), _ if p.multi_endpoint.is_some() => "auto: half of the slowest instance's closed-loop maximum".to_string(), _ => "auto: half of nginx's closed-loop maximum, or of the slower bare proxy without nginx".to_string() },
        d.elapsed_secs, d.loadavg_start, h["loadavg_at_report"].as_str().unwrap_or(""), d.nice
    )));
    b.push(Block::P(format!(
        "CPU isolation: {}. Upstream keep-alive pool: {} idle connections for nginx (`keepalive`) and HAProxy (`pool-max-conn`); the routers and bare proxies have theirs built in (docs/spec.md section 1). Each single-endpoint target has its own upstream process (accepts counted per target). RLIMIT_NOFILE {}.{}",
        super::procs::CpuPlan::describe(d.cpus.as_ref()), d.pool, d.nofile,
        if d.remote.is_empty() { String::new() } else { format!(" Remote targets (no CPU or RSS figures): {}.", d.remote.join(", ")) }
    )));
    if let Some(desc) = &p.description {
        b.push(Block::P(format!("**Profile `{}`:** {}", p.name, desc.split_whitespace().collect::<Vec<_>>().join(" "))));
    }
    let mut present: Vec<String> = d.present.iter().map(|(n, note)| format!("`{n}`: {note}")).collect();
    present.extend(d.absent.iter().map(|a| format!("`{}`: **absent** ({})", a.name, a.reason)));
    b.push(Block::H(2, "Targets".into()));
    b.push(Block::List(present));

    let ref_rows_sat = rows.iter().any(|r| is_saturated(d, &r.r, d.reference_rate));
    let common = common_rate(d);
    // When the reference rate saturates a target, the first table is the highest ladder
    // rate every target sustains, so that the first figures a reader sees are meaningful.
    let headline = if ref_rows_sat { common } else { None };
    if let Some(rate) = headline {
        let lrows = rows_at(d, "ladder", rate);
        b.push(Block::H(2, format!("At {rate} req/s: the highest ladder rate every target sustains ({} per target)", samples(p.ladder.phase.repeats))));
        let t: Vec<Vec<String>> = lrows
            .iter()
            .map(|r| vec![format!("`{}`", r.name), f0(r.r.p50), f0(r.r.p90), f0(r.r.p99), f0(r.r.p999), f0(r.ovh50), f0(r.ovh99), f1(r.r.cpu), format!("{}", r.r.errors + r.r.dropped)])
            .collect();
        b.push(Block::Table(
            ["target", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "p50 overhead µs", "p99 overhead µs", "CPU µs/req", "errors+dropped"].iter().map(|s| s.to_string()).collect(),
            t,
        ));
        b.push(Block::P(format!("Some targets are saturated at the reference rate ({} req/s, below), where their latency is the queue the run built, not the proxy. This table shows every target at the highest rate of the ladder where none is saturated.", d.reference_rate)));
    } else if ref_rows_sat {
        b.push(Block::P("Some targets are saturated at the reference rate and no ladder rate is sustained by every target: no table compares all targets at a sustained rate.".into()));
    }
    b.push(Block::H(2, format!("At the reference rate ({} req/s), {} of {} per target", d.reference_rate, if p.reference.repeats == 1 { "one run" } else { "medians" }, p.reference.repeats)));
    let head = ["target", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "p99 spread µs", "p50 overhead µs", "p99 overhead µs", "max req/s (closed)", "CPU µs/req", "RSS peak MiB", "idle B/conn", "errors+dropped"];
    let t: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                if is_saturated(d, &r.r, d.reference_rate) { format!("`{}` (saturated)", r.name) } else { format!("`{}`", r.name) },
                f0(r.r.p50), f0(r.r.p90), f0(r.r.p99), f0(r.r.p999), f0(r.r.max),
                format!("{}–{}", f0(r.r.p99_spread.0), f0(r.r.p99_spread.1)),
                f0(r.ovh50), f0(r.ovh99), f0(r.closed.achieved), f1(r.r.cpu), mib(r.r.rss_peak),
                r.idle.map(f0).unwrap_or("—".into()), format!("{}", r.r.errors + r.r.dropped),
            ]
        })
        .collect();
    b.push(Block::Table(head.iter().map(|s| s.to_string()).collect(), t));
    b.push(Block::P("Overhead = target minus `direct` at the same rate (the upstream's own cost is the `direct` row). CPU is utime+stime of the target's process tree over the measured window divided by the requests answered (for `direct`: the upstream's). Idle B/conn = RSS growth of the target's tree per idle keep-alive connection.".into()));

    let get = |n: &str| rows.iter().find(|r| r.name == n);
    // Ratios at the headline rate when there is one (every target sustains it), else at
    // the reference rate; a saturated target's figures give no ratio.
    let (ratio_rows, ratio_at, ratio_n) = match headline {
        Some(rate) => (rows_at(d, "ladder", rate), rate, p.ladder.phase.repeats),
        None => (rows_at(d, "reference", d.reference_rate), d.reference_rate, p.reference.repeats),
    };
    let ratio_phase_sat = |r: &Row| headline.is_none() && is_saturated(d, &r.r, d.reference_rate);
    let rget = |n: &str| ratio_rows.iter().find(|r| r.name == n);
    b.push(Block::H(3, format!("Ratios (p99 overhead and CPU per request) at {ratio_at} req/s{}", if ratio_n == 1 { ", indicative (1 sample)" } else { "" })));
    let mut rt = Vec::new();
    for r in ratio_rows.iter().filter(|r| r.name != "direct") {
        let mut row = vec![format!("`{}`", r.name)];
        for base in ["pingora", "nginx"] {
            match rget(base) {
                Some(x) if ratio_phase_sat(r) || ratio_phase_sat(x) => row.extend(["n/a (saturated)".to_string(), "n/a (saturated)".to_string()]),
                Some(x) => {
                    row.push(ratio(r.ovh99, x.ovh99));
                    row.push(ratio(r.r.cpu, x.r.cpu));
                }
                None => row.extend(["absent".to_string(), "absent".to_string()]),
            }
        }
        rt.push(row);
    }
    b.push(Block::Table(
        ["target", "p99 ovh / pingora", "CPU / pingora", "p99 ovh / nginx", "CPU / nginx"].iter().map(|s| s.to_string()).collect(),
        rt,
    ));
    b.push(Block::P("n/a: a saturated target, or an overhead at or below zero (noise: `direct` was as slow), gives no ratio.".into()));
    b.push(Block::H(3, "Targets to reach: each router within 1.25x of its own stack's bare proxy".into()));
    let mut tt = Vec::new();
    let rates = ladder_rates(&d.segs);
    let direct_at = |rate: f64| agg(&d.segs, "direct", "ladder", Some(rate));
    let ok = |a: f64, b: f64| match ratio_val(a, b) {
        Some(x) if x <= 1.25 => "yes",
        Some(_) => "**no**",
        None => "—",
    };
    let ladder_n = p.ladder.phase.repeats;
    for (router, bare) in [("go", "go-bare"), ("pingora", "pingora-bare")] {
        match (get(router), get(bare)) {
            (Some(a), Some(x)) => {
                let sat = is_saturated(d, &a.r, d.reference_rate) || is_saturated(d, &x.r, d.reference_rate);
                if sat {
                    tt.push(vec![
                        format!("`{router}` vs `{bare}`"),
                        format!("{} (reference)", d.reference_rate),
                        "n/a (saturated)".into(), "—".into(), "n/a (saturated)".into(), "—".into(),
                        "none: saturated at this rate".into(),
                    ]);
                } else {
                    tt.push(vec![
                        format!("`{router}` vs `{bare}`"),
                        format!("{} (reference)", d.reference_rate),
                        ratio(a.ovh99, x.ovh99), ok(a.ovh99, x.ovh99).into(),
                        ratio(a.r.cpu, x.r.cpu), ok(a.r.cpu, x.r.cpu).into(),
                        "for information (the verdict is the next row)".into(),
                    ]);
                }
                // The verdict: the highest ladder rate that both sustain.
                let common = rates.iter().rev().find(|rate| {
                    let (ra, rx) = (agg(&d.segs, router, "ladder", Some(**rate)), agg(&d.segs, bare, "ladder", Some(**rate)));
                    ra.n > 0 && rx.n > 0 && !is_saturated(d, &ra, **rate) && !is_saturated(d, &rx, **rate)
                });
                if let Some(rate) = common {
                    let (ra, rx, dr) = (agg(&d.segs, router, "ladder", Some(*rate)), agg(&d.segs, bare, "ladder", Some(*rate)), direct_at(*rate));
                    let (oa, ox) = (ra.p99 - dr.p99, rx.p99 - dr.p99);
                    let verdict = match (ok(oa, ox), ok(ra.cpu, rx.cpu)) {
                        ("yes", "yes") => "reached".to_string(),
                        ("—", _) | (_, "—") => "no verdict (a ratio is n/a)".to_string(),
                        _ => "**not reached**".to_string(),
                    };
                    let verdict = if ladder_n == 1 && !verdict.starts_with("no verdict") { format!("{verdict}, indicative (1 sample)") } else { verdict };
                    tt.push(vec![
                        format!("`{router}` vs `{bare}`"),
                        format!("{rate} (highest ladder rate both sustain)"),
                        ratio(oa, ox), ok(oa, ox).into(),
                        ratio(ra.cpu, rx.cpu), ok(ra.cpu, rx.cpu).into(),
                        verdict,
                    ]);
                } else {
                    tt.push(vec![format!("`{router}` vs `{bare}`"), "no ladder rate both sustain".into(), "—".into(), "—".into(), "—".into(), "—".into(), "no verdict".into()]);
                }
            }
            _ => tt.push(vec![format!("`{router}` vs `{bare}`"), "—".into(), "absent".into(), "—".into(), "absent".into(), "—".into(), "no verdict".into()]),
        }
    }
    b.push(Block::Table(["pair", "at req/s", "p99 overhead ratio", "≤ 1.25x", "CPU/req ratio", "≤ 1.25x", "verdict"].iter().map(|s| s.to_string()).collect(), tt));
    b.push(Block::P(format!("The verdict is taken at the highest ladder rate both the router and its bare proxy sustain ({} per rate): a saturated target (it cannot keep up with the offered rate) builds a queue whose length depends on the window, so its figures measure the run, not the proxy, and never count as a pass. The reference-rate row is shown for information.", samples(ladder_n))));
    if d.reference_rate > 0.0 && get("nginx").is_some() {
        b.push(Block::P(format!("The targets (each router's p99 latency overhead over `direct` and its CPU per request within 1.25x of its own stack's bare proxy) are defined at half of nginx's maximum rate; this run's reference rate ({} req/s) is that rate when `reference_rate: auto`.", d.reference_rate)));
    }

    b.push(Block::H(2, "Plots".into()));
    for (file, alt) in plots {
        b.push(Block::Img(file.clone(), alt.clone()));
    }

    b.push(Block::H(2, format!("Rate ladder (open loop, {} per rate)", if p.ladder.phase.repeats == 1 { "single run".to_string() } else { format!("median of {}", p.ladder.phase.repeats) })));
    let rates = ladder_rates(&d.segs);
    let mut lt = Vec::new();
    for r in rows {
        for rate in &rates {
            let a = agg(&d.segs, &r.name, "ladder", Some(*rate));
            if a.n == 0 {
                continue;
            }
            let gen = if a.gen_util >= 0.9 { format!("**{:.0}%** (generator-bound)", a.gen_util * 100.0) } else { format!("{:.0}%", a.gen_util * 100.0) };
            lt.push(vec![format!("`{}`", r.name), f0(*rate), f0(a.achieved), f0(a.p50), f0(a.p99), f0(a.p999), f1(a.cpu), format!("{}", a.errors + a.dropped), gen]);
        }
    }
    b.push(Block::Table(["target", "offered req/s", "achieved req/s", "p50 µs", "p99 µs", "p99.9 µs", "CPU µs/req", "errors+dropped", "generator CPU"].iter().map(|s| s.to_string()).collect(), lt));
    if let Some(n) = &d.ladder_note {
        b.push(Block::P(format!("Note: {n}.")));
    }
    b.push(Block::P(format!("A target leaves the ladder after the first rate where it is saturated (achieved < {}x offered, errors > {}%, or p99 > {} ms).", p.saturation.min_achieved, p.saturation.max_error_ratio * 100.0, p.saturation.max_p99_ms)));

    b.push(Block::H(2, "The load generator".into()));
    let gen_max = d.segs.iter().map(|s| s.generator_cpu_util).fold(f64::NAN, f64::max);
    let direct = agg(&d.segs, "direct", "reference", Some(d.reference_rate));
    b.push(Block::P(format!(
        "Highest CPU share of the generator in any window: {:.0}% of its {} thread(s) (the generator is not the bottleneck while this stays clearly below 100%; highest at the reference rate on `direct`: {:.0}%). Send lag (actual minus intended send time, p99, median of the repeats) on `direct` at the reference rate: {} µs; on a saturated target the lag is the queue of requests waiting for a free connection, and it is part of their latency.",
        gen_max * 100.0, p.client_threads, direct.gen_util * 100.0, f0(direct.lag_p99)
    )));
    if let Some(tc) = &d.tool_check {
        b.push(Block::Table(
            ["tool on `direct`", "connections", "threads", "seconds", "req/s", "p50 µs", "p99 µs"].iter().map(|s| s.to_string()).collect(),
            vec![
                vec!["parity (closed loop)".into(), tc.connections.to_string(), tc.threads.to_string(), tc.duration_s.to_string(), f0(tc.ours_rps), f0(tc.ours_p50_us), f0(tc.ours_p99_us)],
                vec![tc.tool.clone(), tc.connections.to_string(), tc.threads.to_string(), tc.duration_s.to_string(),
                     tc.tool_rps.map(f0).unwrap_or("—".into()), tc.tool_p50_us.map(f0).unwrap_or("—".into()), tc.tool_p99_us.map(f0).unwrap_or("—".into())],
            ],
        ));
    }

    b.push(Block::H(2, "Hot paths (Go testing.B, Rust Criterion)".into()));
    let hp = &d.hotpath;
    if hp.go.is_empty() && hp.rust.is_empty() {
        // One sentence: why there are no figures.
        let why = match &hp.from_run {
            Some(r) => format!("the earlier run {r} has none ({})", hp.note),
            None => hp.note.clone(),
        };
        b.push(Block::P(format!("No hot-path figures: {why}.")));
    } else {
        let note = match &hp.from_run {
            Some(r) => format!("From the earlier run {r} ({}).", hp.note),
            None => format!("Run now: {}.", hp.note),
        };
        b.push(Block::P(note));
        // Match by name: case and punctuation ignored, a repeated path segment collapsed
        // (Criterion's `validate_swap/validate_swap` is Go's `ValidateSwap`).
        let norm = |s: &str| {
            let mut parts: Vec<String> = s
                .split('/')
                .map(|p| p.to_lowercase().chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>())
                .collect();
            parts.dedup();
            parts.join("/")
        };
        let mut names: BTreeMap<String, (Option<&extras::Bench>, Option<&extras::Bench>)> = BTreeMap::new();
        for g in &hp.go {
            names.entry(norm(&g.name)).or_default().0 = Some(g);
        }
        for r in &hp.rust {
            names.entry(norm(&r.name)).or_default().1 = Some(r);
        }
        let t = names
            .values()
            .map(|(g, r)| {
                vec![
                    g.map(|x| x.name.clone()).unwrap_or("—".into()),
                    g.map(|x| f1(x.ns)).unwrap_or("—".into()),
                    r.map(|x| x.name.clone()).unwrap_or("—".into()),
                    r.map(|x| f1(x.ns)).unwrap_or("—".into()),
                ]
            })
            .collect();
        b.push(Block::Table(["Go benchmark", "Go ns/op", "Criterion benchmark", "Rust ns/iter"].iter().map(|s| s.to_string()).collect(), t));
    }

    b.push(Block::H(2, "Comparison study".into()));
    b.push(Block::H(3, "Measured answers".into()));
    let mut ans = Vec::new();
    for r in rows {
        ans.push(format!(
            "`{}`: p50 {} µs, p99 {} µs at {} req/s (overhead over `direct`: p50 {} µs, p99 {} µs); closed-loop maximum {} req/s; {} µs CPU per request; RSS peak {} MiB; {} bytes per idle connection.",
            r.name, f0(r.r.p50), f0(r.r.p99), d.reference_rate, f0(r.ovh50), f0(r.ovh99), f0(r.closed.achieved), f1(r.r.cpu), mib(r.r.rss_peak), r.idle.map(f0).unwrap_or("—".into())
        ));
    }
    b.push(Block::List(ans));
    b.push(Block::H(3, "Code size per module (non-blank lines)".into()));
    let (go, rust) = extras::code_size(&d.repo);
    let mut cs = Vec::new();
    let (mut gc, mut gt, mut rc, mut rtt) = (0, 0, 0, 0);
    for m in &go {
        cs.push(vec!["go".into(), m.module.clone(), m.code.to_string(), m.tests.to_string()]);
        gc += m.code;
        gt += m.tests;
    }
    for m in &rust {
        cs.push(vec!["pingora".into(), m.module.clone(), m.code.to_string(), m.tests.to_string()]);
        rc += m.code;
        rtt += m.tests;
    }
    cs.push(vec!["go".into(), "**total**".into(), gc.to_string(), gt.to_string()]);
    cs.push(vec!["pingora".into(), "**total**".into(), rc.to_string(), rtt.to_string()]);
    b.push(Block::Table(["router", "module", "code", "tests"].iter().map(|s| s.to_string()).collect(), cs));
    b.push(Block::P("Go: go-baseline/internal/* and cmd/router, tests = *_test.go. Pingora: rust-pingora/src/*.rs, tests = from the first `#[cfg(test)]` on.".into()));
    b.push(Block::H(3, "Documented divergences (docs/divergences.md)".into()));
    match extras::divergences(&d.repo) {
        Ok(v) if !v.is_empty() => b.push(Block::List(v)),
        Ok(_) => b.push(Block::P("docs/divergences.md lists none.".into())),
        Err(e) => b.push(Block::P(format!("Not available: {e}"))),
    }
    b.push(Block::P("Raw figures: bench.json (schema in docs/benchmarks.md); logs and generated configs: work/.".into()));
    b
}

pub(super) fn md(blocks: &[Block]) -> String {
    let mut s = String::new();
    for b in blocks {
        match b {
            Block::H(l, t) => s += &format!("{} {t}\n\n", "#".repeat(*l as usize)),
            Block::P(t) => s += &format!("{t}\n\n"),
            Block::List(v) => {
                for i in v {
                    s += &format!("- {i}\n");
                }
                s += "\n";
            }
            Block::Table(h, rows) => {
                s += &format!("| {} |\n|{}|\n", h.join(" | "), h.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
                for r in rows {
                    s += &format!("| {} |\n", r.join(" | "));
                }
                s += "\n";
            }
            Block::Img(f, alt) => s += &format!("![{alt}]({f})\n\n"),
        }
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Minimal inline markdown for the HTML report: `code` and **bold**.
fn inline(s: &str) -> String {
    let s = esc(s);
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            out += &format!("<code>{part}</code>");
        } else {
            for (j, p) in part.split("**").enumerate() {
                out += &if j % 2 == 1 { format!("<b>{p}</b>") } else { p.to_string() };
            }
        }
    }
    out
}

fn html(blocks: &[Block], title: &str) -> String {
    let mut s = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;}}table{{border-collapse:collapse;margin:1em 0;}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right;}}td:first-child,th:first-child{{text-align:left;}}img{{max-width:100%;}}</style></head><body>\n",
        esc(title)
    );
    for b in blocks {
        match b {
            Block::H(l, t) => s += &format!("<h{l}>{}</h{l}>\n", inline(t)),
            Block::P(t) => s += &format!("<p>{}</p>\n", inline(t)),
            Block::List(v) => {
                s += "<ul>\n";
                for i in v {
                    s += &format!("<li>{}</li>\n", inline(i));
                }
                s += "</ul>\n";
            }
            Block::Table(h, rows) => {
                s += "<table><tr>";
                for c in h {
                    s += &format!("<th>{}</th>", inline(c));
                }
                s += "</tr>\n";
                for r in rows {
                    s += "<tr>";
                    for c in r {
                        s += &format!("<td>{}</td>", inline(c));
                    }
                    s += "</tr>\n";
                }
                s += "</table>\n";
            }
            Block::Img(f, alt) => s += &format!("<p><img src=\"{f}\" alt=\"{}\"></p>\n", esc(alt)),
        }
    }
    s + "</body></html>\n"
}

pub(super) fn color(name: &str) -> RGBColor {
    match name {
        "direct" => RGBColor(0, 0, 0),
        "go" => RGBColor(0, 125, 160),
        "go-bare" => RGBColor(120, 200, 230),
        "pingora" => RGBColor(220, 90, 0),
        "pingora-bare" => RGBColor(245, 175, 100),
        "nginx" => RGBColor(0, 150, 60),
        "haproxy" => RGBColor(130, 60, 170),
        _ => RGBColor(128, 128, 128),
    }
}

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// Latency percentile spectrum at the reference rate (x: percentile on a 1/(1-q) log axis).
fn plot_spectrum(d: &RunData, path: &Path) -> PlotResult {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut series = Vec::new();
    let (mut ymin, mut ymax, mut xmax) = (f64::INFINITY, 0f64, 1f64);
    for n in KNOWN {
        let Some(h) = d.ref_hists.get(*n) else { continue };
        if h.len() == 0 {
            continue;
        }
        let tmax = (h.len() as f64).log10().min(5.0);
        let mut pts = Vec::new();
        let mut t = 0.0;
        while t <= tmax + 1e-9 {
            let q = 1.0 - 10f64.powf(-t);
            let v = h.value_at_quantile(q) as f64 / 1000.0;
            pts.push((t, v.max(1.0)));
            t += 0.02;
        }
        pts.push((tmax + 0.02, (h.max() as f64 / 1000.0).max(1.0)));
        for &(_, v) in &pts {
            ymin = ymin.min(v);
            ymax = ymax.max(v);
        }
        xmax = xmax.max(tmax + 0.02);
        series.push((n.to_string(), pts));
    }
    if series.is_empty() {
        return Ok(());
    }
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Latency by percentile at {} req/s (open loop)", d.reference_rate), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax.ceil(), ((ymin * 0.8).max(1.0)..ymax * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_labels(xmax.ceil() as usize + 1)
        .x_label_formatter(&|t| {
            let q = 100.0 * (1.0 - 10f64.powf(-t));
            format!("{}%", (q * 1000.0).round() / 1000.0)
        })
        .draw()?;
    for (n, pts) in series {
        let c = color(&n);
        chart.draw_series(LineSeries::new(pts, c.stroke_width(2)))?.label(n).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

/// p50 and p99 against the offered rate (the ladder).
fn plot_rate(d: &RunData, path: &Path) -> PlotResult {
    let rates = ladder_rates(&d.segs);
    if rates.is_empty() {
        return Ok(());
    }
    let root = SVGBackend::new(path, (1100, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, 2));
    for (area, (label, pick)) in areas.iter().zip([("p50", 0usize), ("p99", 1usize)]) {
        let mut series = Vec::new();
        let (mut ymin, mut ymax) = (f64::INFINITY, 0f64);
        for n in KNOWN {
            let pts: Vec<(f64, f64)> = rates
                .iter()
                .map(|r| (*r, agg(&d.segs, n, "ladder", Some(*r))))
                .filter(|(_, a)| a.n > 0)
                .map(|(r, a)| (r, if pick == 0 { a.p50 } else { a.p99 }.max(1.0)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            for &(_, v) in &pts {
                ymin = ymin.min(v);
                ymax = ymax.max(v);
            }
            series.push((n.to_string(), pts));
        }
        if series.is_empty() {
            continue;
        }
        let xmax = rates.last().copied().unwrap_or(1.0) * 1.05;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{label} latency against offered rate"), ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..xmax, ((ymin * 0.8).max(1.0)..ymax * 1.5).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("offered req/s")
            .y_desc(format!("{label} (µs)"))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        for (n, pts) in series {
            let c = color(&n);
            chart.draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?.label(n).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))?;
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}

/// The time ranges of the memory plot's panels, `(from, to, title)` in seconds since the
/// start: the load phases, the idle-connection phase (whose 10,000 connections would
/// flatten everything else) and, when something ran after it, the concurrency ladder.
fn memory_panels(idle_start: Option<f64>, idle_end: Option<f64>, tend: f64) -> Vec<(f64, f64, &'static str)> {
    let Some(start) = idle_start.filter(|t| *t > 0.0 && *t < tend) else {
        return vec![(0.0, tend, "whole run")];
    };
    match idle_end.filter(|t| *t > start && *t + 1.0 < tend) {
        Some(end) => vec![(0.0, start, "load phases"), (start, end, "idle keep-alive connections"), (end, tend, "concurrency ladder")],
        None => vec![(0.0, start, "load phases"), (start, tend, "idle keep-alive connections")],
    }
}

/// RSS of every target's process tree over the run, one panel per range of
/// [`memory_panels`].
fn plot_memory(d: &RunData, path: &Path) -> PlotResult {
    if d.mem.is_empty() {
        return Ok(());
    }
    let tend = d.mem.iter().map(|s| s.t).fold(0.0, f64::max).max(1.0);
    let panels = memory_panels(d.idle_start, d.idle_end, tend);
    let root = SVGBackend::new(path, (550 * panels.len().max(2) as u32, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((1, panels.len()));
    for (area, (from, to, title)) in areas.iter().zip(panels) {
        let in_range = |t: f64| t >= from && t <= to;
        let ymax = d.mem.iter().filter(|s| in_range(s.t)).map(|s| s.rss_bytes as f64 / 1048576.0).fold(0.0, f64::max).max(1.0);
        let mut chart = ChartBuilder::on(area)
            .caption(format!("RSS of each target's tree: {title}"), ("sans-serif", 15))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(from..to.max(from + 1.0), 0f64..ymax * 1.1)?;
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc("RSS (MiB)")
            .x_label_formatter(&|v| if to - from < 20.0 { format!("{v:.1}") } else { format!("{v:.0}") })
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        for n in KNOWN {
            let pts: Vec<(f64, f64)> =
                d.mem.iter().filter(|s| s.target == *n && in_range(s.t)).map(|s| (s.t, s.rss_bytes as f64 / 1048576.0)).collect();
            if pts.is_empty() {
                continue;
            }
            let c = color(n);
            chart.draw_series(LineSeries::new(pts, c.stroke_width(2)))?.label(*n).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}

/// Writes bench.json, the plots, report.md and report.html into `out`.
pub fn write_all(d: &RunData, out: &Path) -> anyhow::Result<()> {
    let rows = rows(d);
    std::fs::write(out.join("bench.json"), serde_json::to_vec_pretty(&bench_json(d, &rows))?)?;
    let mut plots = Vec::new();
    for (file, alt, f) in [
        ("spectrum.svg", "latency percentile spectrum per target", plot_spectrum as fn(&RunData, &Path) -> PlotResult),
        ("latency-vs-rate.svg", "latency against offered rate", plot_rate),
        ("memory.svg", "memory over time", plot_memory),
    ] {
        match f(d, &out.join(file)) {
            Ok(()) if out.join(file).is_file() => plots.push((file.to_string(), alt.to_string())),
            Ok(()) => {}
            Err(e) => eprintln!("plot {file}: {e}"),
        }
    }
    let mut b = blocks(d, &rows, &plots);
    if let Some(c) = &d.profile.concurrency {
        let mut splots = Vec::new();
        for (file, alt, f) in [
            ("scale-p99.svg", "p99 against client connections per target", super::scale::plot_p99 as fn(&RunData, &super::profile::Concurrency, &Path) -> PlotResult),
            ("scale-throughput.svg", "closed-loop maximum against client connections", super::scale::plot_throughput),
        ] {
            match f(d, c, &out.join(file)) {
                Ok(()) if out.join(file).is_file() => splots.push((file.to_string(), alt.to_string())),
                Ok(()) => {}
                Err(e) => eprintln!("plot {file}: {e}"),
            }
        }
        // Right after the targets: the ladder is what a scale run is for.
        let at = b.iter().position(|x| matches!(x, Block::H(2, t) if t.starts_with("At "))).unwrap_or(b.len());
        let sb = super::scale::blocks(d, c, &splots);
        b.splice(at..at, sb);
    }
    if let (Some(p), Some(r)) = (&d.profile.tls, &d.tls) {
        b.extend(super::tls::blocks(p, r));
    }
    std::fs::write(out.join("report.md"), md(&b))?;
    std::fs::write(out.join("report.html"), html(&b, &format!("parity bench {}", d.run_id)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_without_a_meaningful_denominator_are_na() {
        assert_eq!(ratio(2.0, 1.0), "2.00x");
        assert_eq!(ratio(1.0, 0.0), "n/a");
        assert_eq!(ratio(1.0, -5.0), "n/a");
        assert_eq!(ratio(1.0, 619.66), "n/a"); // would print 0.00x
        assert_eq!(ratio(f64::NAN, 1.0), "n/a");
        assert_eq!(samples(1), "single run");
        assert_eq!(samples(3), "median of 3");
    }

    #[test]
    fn the_memory_plot_has_a_panel_for_the_concurrency_ladder_after_the_idle_phase() {
        let titles = |v: Vec<(f64, f64, &str)>| v.into_iter().map(|(a, b, t)| (a, b, t.to_string())).collect::<Vec<_>>();
        assert_eq!(
            titles(memory_panels(Some(100.0), Some(130.0), 900.0)),
            [(0.0, 100.0, "load phases".into()), (100.0, 130.0, "idle keep-alive connections".into()), (130.0, 900.0, "concurrency ladder".into())]
        );
        // Nothing after the idle phase (no concurrency ladder): two panels.
        assert_eq!(titles(memory_panels(Some(40.0), Some(55.0), 55.2)), [(0.0, 40.0, "load phases".into()), (40.0, 55.2, "idle keep-alive connections".into())]);
        assert_eq!(titles(memory_panels(None, None, 60.0)), [(0.0, 60.0, "whole run".into())]);
    }
}
