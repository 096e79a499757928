//! The concurrency ladder's part of the report (issue 14): per target and number of client
//! connections, the closed-loop maximum, open-loop latency at fractions of the target's own
//! maximum and at one rate common to every target, CPU per request, RSS and upstream
//! connections opened per request; the two plots (p99 and throughput against connections);
//! the check of the targets; and the section on the design annex's claim that
//! Pingora "achieves lower tail latency at high concurrency", written from the figures.
//!
//! Segments come from `measure::concurrency_ladder`: phases `scale-closed`, `scale-open`
//! (`Seg::fraction` set) and `scale-common`, `Seg::connections` = the rung.

use std::path::Path;

use plotters::prelude::*;
use serde_json::{json, Value};

use super::profile::Concurrency;
use super::report::{agg, color, Agg, Block};
use super::targets::KNOWN;
use super::{RunData, Seg};
use crate::util::stats::median;

/// The bound on new upstream connections per request at steady state.
pub const MAX_UPSTREAM_CONNS_PER_REQ: f64 = 0.01;
/// The bound on idle memory per keep-alive connection (bytes, at 10,000).
pub const MAX_IDLE_BYTES: f64 = 16.0 * 1024.0;

/// One target at one rung.
#[derive(Debug, Clone)]
pub struct Rung {
    /// Client connections.
    pub conns: usize,
    /// Closed loop (median maximum over the repeats).
    pub closed: Agg,
    /// Open loop at each fraction of this target's maximum: (fraction, offered rate, figures).
    pub open: Vec<(f64, f64, Agg)>,
    /// Open loop at the rung's common rate.
    pub common: Option<(f64, Agg)>,
    /// Upstream connections opened per answered request: closed loop, and over the
    /// open-loop segments (steady state: the closed-loop runs before them warmed the pool).
    pub up_closed: f64,
    pub up_open: f64,
}

fn segs_at(d: &RunData, conns: usize) -> Vec<Seg> {
    d.segs.iter().filter(|s| s.phase.starts_with("scale-") && s.connections == conns).cloned().collect()
}

/// Accepts over answers, summed over the segments (NaN when no accept count is known).
fn conns_per_req<'a>(segs: impl Iterator<Item = &'a Seg>) -> f64 {
    let (mut acc, mut ok, mut known) = (0u64, 0u64, false);
    for s in segs {
        if let Some(a) = s.upstream_accepts {
            acc += a;
            ok += s.ok;
            known = true;
        }
    }
    if known && ok > 0 { acc as f64 / ok as f64 } else { f64::NAN }
}

/// The ladder of `target` (rungs where it ran).
pub fn rungs(d: &RunData, c: &Concurrency, target: &str) -> Vec<Rung> {
    let mut out = Vec::new();
    for &conns in &c.connections {
        let segs = segs_at(d, conns);
        let closed = agg(&segs, target, "scale-closed", None);
        if closed.n == 0 {
            continue;
        }
        let mut open = Vec::new();
        for &f in &c.fractions {
            let mine: Vec<Seg> = segs.iter().filter(|s| s.target == target && s.phase == "scale-open" && s.fraction == Some(f)).cloned().collect();
            if let Some(rate) = mine.first().and_then(|s| s.rate_rps) {
                open.push((f, rate, agg(&mine, target, "scale-open", Some(rate))));
            }
        }
        let common = segs
            .iter()
            .find(|s| s.target == target && s.phase == "scale-common")
            .and_then(|s| s.rate_rps)
            .map(|rate| (rate, agg(&segs, target, "scale-common", Some(rate))));
        let mine = |phase: &'static str| segs.iter().filter(move |s| s.target == target && s.phase == phase);
        let up_closed = conns_per_req(mine("scale-closed"));
        let up_open = conns_per_req(mine("scale-open").chain(mine("scale-common")));
        out.push(Rung { conns, closed, open, common, up_closed, up_open });
    }
    out
}

fn present<'a>(d: &'a RunData) -> Vec<&'static str> {
    KNOWN.iter().copied().filter(|n| d.present.iter().any(|(p, _)| p == n)).collect()
}

fn f0(x: f64) -> String {
    if x.is_finite() { format!("{x:.0}") } else { "—".into() }
}
fn ms(us: f64) -> String {
    if !us.is_finite() {
        "—".into()
    } else if us >= 10_000.0 {
        format!("{:.0}", us / 1000.0)
    } else {
        format!("{:.2}", us / 1000.0)
    }
}
fn per_req(x: f64) -> String {
    if x.is_finite() { format!("{x:.4}") } else { "—".into() }
}

/// Closed-loop maximum at `conns` over the one at the first rung.
fn retention(r: &[Rung], conns: usize) -> Option<f64> {
    let first = r.first()?.closed.achieved;
    let at = r.iter().find(|x| x.conns == conns)?.closed.achieved;
    (first > 0.0 && at.is_finite()).then_some(at / first)
}

/// `bench.json`'s `concurrency` object.
pub fn json(d: &RunData, c: &Concurrency) -> Value {
    let mut m = serde_json::Map::new();
    for t in present(d) {
        let v: Vec<Value> = rungs(d, c, t)
            .iter()
            .map(|r| {
                let open: Vec<Value> = r.open.iter().map(|(f, rate, a)| json!({"fraction": f, "rate_rps": rate, "achieved_rps": a.achieved, "p50_us": a.p50, "p99_us": a.p99, "p999_us": a.p999, "cpu_us_per_req": a.cpu, "rss_peak_bytes": a.rss_peak, "errors": a.errors, "dropped": a.dropped})).collect();
                json!({
                    "connections": r.conns,
                    "max_rps": r.closed.achieved, "max_rps_spread": [r.closed.achieved_spread.0, r.closed.achieved_spread.1],
                    "closed_p99_us": r.closed.p99, "closed_cpu_us_per_req": r.closed.cpu, "rss_peak_bytes": r.closed.rss_peak,
                    "upstream_conns_per_req_closed": r.up_closed, "upstream_conns_per_req_open": r.up_open,
                    "open": open,
                    "common": r.common.as_ref().map(|(rate, a)| json!({"rate_rps": rate, "achieved_rps": a.achieved, "p50_us": a.p50, "p99_us": a.p99, "p999_us": a.p999, "cpu_us_per_req": a.cpu})),
                })
            })
            .collect();
        m.insert(t.to_string(), Value::Array(v));
    }
    // serde_json renders non-finite floats as null.
    Value::Object(m)
}

/// The report's blocks: the ladder tables, the targets of issue 14 and the annex's claim.
pub(super) fn blocks(d: &RunData, c: &Concurrency, plots: &[(String, String)]) -> Vec<Block> {
    let mut b = Vec::new();
    let names = present(d);
    b.push(Block::H(2, format!("Concurrency ladder ({} per figure)", if c.phase.repeats == 1 { "single run".to_string() } else { format!("median of {}", c.phase.repeats) })));
    b.push(Block::P(format!(
        "Client connections: {}. Per rung: the closed-loop maximum of every target (warm-up {} ms, window {} ms), then open loop at {} of *each target's own* maximum at that rung, then open loop at one rate offered to every target ({}x the slowest proxy's maximum at the rung). Upstream conns/req = TCP connections the target's own upstream accepted during the windows / requests answered (the pool opens connections during the closed-loop warm-up of the rung; the open-loop figure is the steady state). CPU isolation: {}. RLIMIT_NOFILE: {} (a proxy needs a client and an upstream descriptor per request in flight, so 10,000 connections need up to about 20,000).",
        c.connections.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", "),
        c.phase.warmup_ms, c.phase.duration_ms,
        c.fractions.iter().map(|f| format!("{:.0}%", f * 100.0)).collect::<Vec<_>>().join(" and "),
        super::measure::COMMON_FRACTION,
        super::procs::CpuPlan::describe(d.cpus.as_ref()), d.nofile
    )));
    let mut fr_heads: Vec<String> = Vec::new();
    for f in &c.fractions {
        let p = format!("{:.0}%", f * 100.0);
        fr_heads.extend([format!("p50/p99/p99.9 ms at {p}"), format!("CPU µs/req at {p}")]);
    }
    let mut head: Vec<String> = ["target", "conns", "max req/s", "of own max at first rung", "upstream conns/req closed", "upstream conns/req open", "RSS peak MiB"].iter().map(|s| s.to_string()).collect();
    head.extend(fr_heads);
    head.extend(["p50/p99/p99.9 ms at common rate".to_string(), "errors+dropped".to_string()]);
    let mut t = Vec::new();
    for n in &names {
        let r = rungs(d, c, n);
        for x in &r {
            let mut row = vec![
                format!("`{n}`"),
                x.conns.to_string(),
                f0(x.closed.achieved),
                retention(&r, x.conns).map(|v| format!("{:.0}%", v * 100.0)).unwrap_or("—".into()),
                per_req(x.up_closed),
                per_req(x.up_open),
                if x.closed.rss_peak.is_finite() { format!("{:.1}", x.closed.rss_peak / 1048576.0) } else { "—".into() },
            ];
            let mut errs = x.closed.errors;
            for f in &c.fractions {
                match x.open.iter().find(|(ff, _, _)| ff == f) {
                    Some((_, _, a)) => {
                        errs += a.errors + a.dropped;
                        let gen = if a.gen_util >= 0.9 { " (generator-bound)" } else { "" };
                        row.push(format!("{} / {} / {}{gen}", ms(a.p50), ms(a.p99), ms(a.p999)));
                        row.push(format!("{:.1}", a.cpu));
                    }
                    None => row.extend(["—".to_string(), "—".to_string()]),
                }
            }
            match &x.common {
                Some((rate, a)) => {
                    errs += a.errors + a.dropped;
                    row.push(format!("{} / {} / {} ({} req/s)", ms(a.p50), ms(a.p99), ms(a.p999), f0(*rate)));
                }
                None => row.push("—".into()),
            }
            row.push(errs.to_string());
            t.push(row);
        }
    }
    b.push(Block::Table(head, t));
    for (file, alt) in plots {
        b.push(Block::Img(file.clone(), alt.clone()));
    }

    // The targets of issue 14.
    b.push(Block::H(3, "Targets of issue 14 (ratios in this run)".into()));
    let mut tt = Vec::new();
    let nginx = rungs(d, c, "nginx");
    let probe = c.connections.iter().copied().find(|n| *n >= 1024).or(c.connections.last().copied());
    for n in ["go", "pingora", "go-bare", "pingora-bare", "nginx", "haproxy"] {
        if !names.contains(&n) {
            continue;
        }
        let r = rungs(d, c, n);
        let ret = probe.and_then(|p| retention(&r, p));
        let nginx_ret = probe.and_then(|p| retention(&nginx, p));
        let ret_ok = match (ret, nginx_ret) {
            (Some(a), Some(b)) => if a >= b { "yes" } else { "**no**" },
            _ => "no verdict",
        };
        let worst_open = r.iter().skip(1).map(|x| x.up_open).filter(|x| x.is_finite()).fold(f64::NAN, f64::max);
        let up_ok = if !worst_open.is_finite() { "no verdict" } else if worst_open < MAX_UPSTREAM_CONNS_PER_REQ { "yes" } else { "**no**" };
        let idle = d.idle.get(n).map(|i| (i.connections, i.bytes_per_conn));
        let idle_ok = match idle {
            Some((k, v)) if v.is_finite() && k >= 10_000 => if v <= MAX_IDLE_BYTES { "yes" } else { "**no**" },
            Some((_, v)) if v.is_finite() => "no verdict (fewer than 10,000 connections)",
            _ => "no verdict",
        };
        tt.push(vec![
            format!("`{n}`"),
            ret.map(|v| format!("{:.0}%", v * 100.0)).unwrap_or("—".into()),
            nginx_ret.map(|v| format!("{:.0}%", v * 100.0)).unwrap_or("—".into()),
            ret_ok.into(),
            per_req(worst_open),
            up_ok.into(),
            idle.map(|(k, v)| format!("{} B ({k} conns)", f0(v))).unwrap_or("—".into()),
            idle_ok.into(),
        ]);
    }
    let at = probe.map(|p| p.to_string()).unwrap_or("—".into());
    b.push(Block::Table(
        vec![
            "target".into(),
            format!("max at {at} / max at {}", c.connections.first().copied().unwrap_or(0)),
            "nginx's".into(),
            "≥ nginx's".into(),
            "worst upstream conns/req, open loop, rungs after the first".into(),
            format!("< {MAX_UPSTREAM_CONNS_PER_REQ}"),
            "idle B/conn".into(),
            "≤ 16 KiB".into(),
        ],
        tt,
    ));

    // The annex's claim.
    b.push(Block::H(3, "The design annex's claim: Pingora \"achieves lower tail latency at high concurrency\"".into()));
    let mut ct = Vec::new();
    let mut verdicts = Vec::new();
    for &conns in &c.connections {
        let get = |n: &str| rungs(d, c, n).into_iter().find(|x| x.conns == conns);
        let p99c = |n: &str| get(n).and_then(|x| x.common.map(|(_, a)| a.p99)).unwrap_or(f64::NAN);
        let rate = get("pingora").or_else(|| get("go")).and_then(|x| x.common.map(|(r, _)| r)).unwrap_or(f64::NAN);
        let (pr, gr, pb, gb, ng, hp) = (p99c("pingora"), p99c("go"), p99c("pingora-bare"), p99c("go-bare"), p99c("nginx"), p99c("haproxy"));
        let cmp = |a: f64, b: f64| {
            if !(a.is_finite() && b.is_finite()) {
                "—".to_string()
            } else if a < b {
                format!("lower ({:.2}x)", a / b)
            } else {
                format!("higher ({:.2}x)", a / b)
            }
        };
        if pr.is_finite() && gr.is_finite() {
            verdicts.push((conns, pr < gr, pb.is_finite() && gb.is_finite() && pb < gb));
        }
        ct.push(vec![conns.to_string(), f0(rate), ms(pr), ms(gr), cmp(pr, gr), ms(pb), ms(gb), cmp(pb, gb), ms(ng), ms(hp)]);
    }
    b.push(Block::Table(
        ["conns", "common rate req/s", "pingora p99 ms", "go p99 ms", "pingora vs go", "pingora-bare p99 ms", "go-bare p99 ms", "pingora-bare vs go-bare", "nginx p99 ms", "haproxy p99 ms"].iter().map(|s| s.to_string()).collect(),
        ct,
    ));
    let holds: Vec<String> = verdicts.iter().filter(|v| v.1).map(|v| v.0.to_string()).collect();
    let fails: Vec<String> = verdicts.iter().filter(|v| !v.1).map(|v| v.0.to_string()).collect();
    let high: Vec<&(usize, bool, bool)> = verdicts.iter().filter(|v| v.0 >= 1024).collect();
    let verdict = if high.is_empty() {
        "no verdict: no rung of 1024 connections or more with both routers measured".to_string()
    } else if high.iter().all(|v| v.1) {
        "**holds** in this run: at every rung of 1024 connections or more the Pingora router's p99 at the common rate is below the Go router's".to_string()
    } else if high.iter().all(|v| !v.1) {
        "**does not hold** in this run: at every rung of 1024 connections or more the Pingora router's p99 at the common rate is not below the Go router's".to_string()
    } else {
        "**mixed** in this run: the Pingora router's p99 at the common rate is below the Go router's at some high rungs and not at others".to_string()
    };
    b.push(Block::P(format!(
        "Verdict, from this run's figures: {verdict}. Pingora's p99 below Go's at {} connections; not below at {}. The comparison is at one offered rate per rung (every target gets the same load, below each one's maximum), p99 with open-loop timing; the bare proxies show whether a difference is the framework's or the router's. A single run on a shared machine: read the spread of the closed-loop maxima (bench.json) and the load average before trusting a ratio near 1.",
        if holds.is_empty() { "none".into() } else { holds.join(", ") },
        if fails.is_empty() { "none".into() } else { fails.join(", ") }
    )));
    b
}

/// p99 against client connections per target: at the highest fraction of each target's
/// own maximum (left) and at the common rate (right). Log-log.
pub fn plot_p99(d: &RunData, c: &Concurrency, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1100, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = c.fractions.iter().copied().fold(f64::NAN, f64::max);
    let areas = root.split_evenly((1, 2));
    let panels: [(String, bool); 2] = [(format!("p99 at {:.0}% of each target's maximum", top * 100.0), false), ("p99 at the rung's common rate".into(), true)];
    for (area, (title, common)) in areas.iter().zip(panels) {
        let mut series = Vec::new();
        let (mut ymin, mut ymax) = (f64::INFINITY, 0f64);
        for n in present(d) {
            let pts: Vec<(f64, f64)> = rungs(d, c, n)
                .iter()
                .filter_map(|r| {
                    let v = if common { r.common.as_ref().map(|(_, a)| a.p99) } else { r.open.iter().find(|(f, _, _)| *f == top).map(|(_, _, a)| a.p99) }?;
                    (v.is_finite() && v > 0.0).then_some((r.conns as f64, v / 1000.0))
                })
                .collect();
            for &(_, v) in &pts {
                ymin = ymin.min(v);
                ymax = ymax.max(v);
            }
            if !pts.is_empty() {
                series.push((n, pts));
            }
        }
        if series.is_empty() {
            continue;
        }
        let xmin = c.connections.first().copied().unwrap_or(1) as f64 * 0.8;
        let xmax = c.connections.last().copied().unwrap_or(1) as f64 * 1.25;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((xmin..xmax).log_scale(), ((ymin * 0.7).max(0.001)..ymax * 1.5).log_scale())?;
        chart.configure_mesh().x_desc("client connections").y_desc("p99 (ms)").x_label_formatter(&|v| format!("{v:.0}")).y_label_formatter(&|v| format!("{v:.2}")).draw()?;
        for (n, pts) in series {
            let col = color(n);
            chart.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))?.label(n).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, col.filled())))?;
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}

/// Closed-loop maximum against client connections per target (log x).
pub fn plot_throughput(d: &RunData, c: &Concurrency, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut series = Vec::new();
    let mut ymax = 0f64;
    for n in present(d) {
        let pts: Vec<(f64, f64)> = rungs(d, c, n).iter().filter(|r| r.closed.achieved.is_finite()).map(|r| (r.conns as f64, r.closed.achieved)).collect();
        ymax = pts.iter().map(|p| p.1).fold(ymax, f64::max);
        if !pts.is_empty() {
            series.push((n, pts));
        }
    }
    if series.is_empty() {
        return Ok(());
    }
    let xmin = c.connections.first().copied().unwrap_or(1) as f64 * 0.8;
    let xmax = c.connections.last().copied().unwrap_or(1) as f64 * 1.25;
    let mut chart = ChartBuilder::on(&root)
        .caption("Closed-loop maximum against client connections", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((xmin..xmax).log_scale(), 0f64..ymax * 1.1)?;
    chart.configure_mesh().x_desc("client connections").y_desc("req/s").x_label_formatter(&|v| format!("{v:.0}")).y_label_formatter(&|v| format!("{v:.0}")).draw()?;
    for (n, pts) in series {
        let col = color(n);
        chart.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))?.label(n).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, col.filled())))?;
    }
    chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

/// The closed-loop maxima of one target at one rung, one per repeat (for tests and json).
pub fn maxima(d: &RunData, target: &str, conns: usize) -> Vec<f64> {
    d.segs.iter().filter(|s| s.target == target && s.phase == "scale-closed" && s.connections == conns).map(|s| s.achieved_rps).collect()
}

/// Median of [`maxima`].
pub fn max_rps(d: &RunData, target: &str, conns: usize) -> f64 {
    median(maxima(d, target, conns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(target: &str, phase: &str, conns: usize, rate: Option<f64>, fraction: Option<f64>, rps: f64, ok: u64, accepts: u64, p99: f64) -> Seg {
        Seg {
            target: target.into(),
            phase: phase.into(),
            rate_rps: rate,
            repeat: 0,
            p50_us: p99 / 2.0,
            p90_us: p99,
            p99_us: p99,
            p999_us: p99,
            max_us: p99,
            ok,
            errors: 0,
            dropped: 0,
            achieved_rps: rps,
            cpu_us_per_req: 10.0,
            rss_peak_bytes: 1 << 20,
            rss_mean_bytes: 1 << 20,
            generator_cpu_util: 0.1,
            send_lag_p99_us: 1.0,
            connections: conns,
            fraction,
            upstream_accepts: Some(accepts),
        }
    }

    fn data(segs: Vec<Seg>) -> RunData {
        let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../scenarios/bench");
        RunData {
            run_id: "t".into(),
            profile: super::super::profile::Profile::load(&dir.join("quick.yaml")).unwrap(),
            repo: ".".into(),
            present: vec![("go".into(), String::new()), ("pingora".into(), String::new()), ("nginx".into(), String::new())],
            absent: vec![],
            segs,
            ref_hists: Default::default(),
            reference_rate: 1000.0,
            idle: Default::default(),
            mem: vec![],
            tool_check: None,
            hotpath: Default::default(),
            elapsed_secs: 0.0,
            ladder_note: None,
            idle_start: None,
            idle_end: None,
            loadavg_start: "1 1 1".into(),
            nice: 0,
            nofile: 20000,
            interrupted: None,
            cpus: None,
            pool: 16384,
            remote: vec![],
            tls: None,
        }
    }

    #[test]
    fn rungs_give_retention_conns_per_request_and_the_claim() {
        let c = Concurrency { connections: vec![32, 1024], fractions: vec![0.5], phase: super::super::profile::Phase { repeats: 1, warmup_ms: 1, duration_ms: 1 } };
        let mut s = Vec::new();
        for (t, m32, m1024, p99) in [("go", 1000.0, 500.0, 9000.0), ("pingora", 1000.0, 800.0, 4000.0), ("nginx", 2000.0, 1200.0, 1000.0)] {
            s.push(seg(t, "scale-closed", 32, None, None, m32, 1000, 0, 1.0));
            s.push(seg(t, "scale-closed", 1024, None, None, m1024, 1000, 100, 1.0));
            s.push(seg(t, "scale-open", 1024, Some(m1024 / 2.0), Some(0.5), m1024 / 2.0, 2000, 4, p99));
            s.push(seg(t, "scale-common", 1024, Some(250.0), None, 250.0, 2000, 2, p99));
        }
        let d = data(s);
        let r = rungs(&d, &c, "pingora");
        assert_eq!(r.len(), 2);
        assert!((retention(&r, 1024).unwrap() - 0.8).abs() < 1e-9);
        assert!((r[1].up_closed - 0.1).abs() < 1e-9, "100 accepts over 1000 answers");
        assert!((r[1].up_open - 6.0 / 4000.0).abs() < 1e-9, "open and common segments together");
        let text = blocks(&d, &c, &[]).iter().map(|b| format!("{b:?}")).collect::<String>();
        assert!(text.contains("**holds** in this run"), "pingora p99 4 ms < go 9 ms at 1024: {text}");
        // go keeps 50% of its 32-connection maximum, nginx 60%: below nginx's.
        assert!(text.contains("\"`go`\", \"50%\", \"60%\", \"**no**\""), "{text}");
        assert!(text.contains("\"`pingora`\", \"80%\", \"60%\", \"yes\""), "{text}");
        assert_eq!(max_rps(&d, "nginx", 1024), 1200.0);
    }
}
