//! The `metrics` invariant of `parity chaos`: the router's counters agree with what its
//! clients and the control plane saw (`docs/chaos.md`, "Metrics against the clients").
//!
//! The rendered schedule takes a [`Boundary`] snapshot (`snapshot_metrics` step) at the
//! case start, just before and just after every router restart, and at the case end (read
//! until quiet). A restart starts a fresh process whose counters begin at zero, so the
//! counters are compared per *process*: from its baseline (the start snapshot for the
//! first, zero for a restarted one) to its last snapshot (before the next SIGTERM, or the
//! end). Within a process, for every series of
//!
//! - `router_requests_total{placement, status}` (the client's status and
//!   `X-Router-Placement`, `""` when absent),
//! - `router_errors_total{code}` (the client's `X-Router-Error`),
//! - `router_request_duration_seconds_count{placement}` (one per answer, as requests),
//!
//! the delta `D` must lie in `[A, A + R]`: `A` the answers the clients got from requests
//! sent and answered within the process (probes and the loads of events that are not a
//! restart), `R` the answers of the loads in flight across the restart that began or
//! ended the process (some of them were answered by the old process after its last
//! snapshot, during its drain, or by the new one; which is not observable). A series the
//! restart loads never touch has `R = 0`: the check is exact. Over the whole case, the
//! sum of `D - A` is at most the restart loads' answers (what the clients saw, never more:
//! a refused or reset connection is never an answer). The snapshot just after a restart
//! holds only what the restart's load can have been answered: every other series is 0.
//!
//! Config counters, per process, exactly: `router_config_accepted_total` rose by the
//! acks the control plane received in that time that raised the version (re-acks of the
//! same version are not counts, spec §6), `router_config_rejected_total{code}` by its
//! nacks with that code (the control plane's answers are read just before each scrape,
//! and a router counts before it answers).
use super::check::{seen, Violation};
use super::model::{Boundary, Rendered, StepCheck};
use crate::metrics::SeriesKey;
use crate::trace::Obs;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The violation kind.
pub const KIND: &str = "metrics";

type Counts = BTreeMap<SeriesKey, f64>;

/// One snapshot as recorded.
#[derive(Debug, Clone, Default)]
struct Snap {
    series: Counts,
    acks: Vec<Option<u64>>,
    nacks: Vec<String>,
}

fn key(name: &str, labels: &[(&str, &str)]) -> SeriesKey {
    SeriesKey { name: name.into(), labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
}

/// The snapshot of step `step`: `Err` when the scrape failed, `None` when the step never
/// ran (the case ended early).
fn snap(trace: &[Obs], step: usize) -> Option<Result<Snap, ()>> {
    let o = trace.iter().find(|o| o.step == step as i64 && o.kind == "snapshot_metrics")?;
    let Some(series) = o.value.get("series").and_then(Value::as_object) else { return Some(Err(())) };
    let series = series.iter().filter_map(|(k, v)| Some((SeriesKey::parse(k).ok()?, v.as_f64()?))).collect();
    let acks = o.value.pointer("/cp/acks").and_then(Value::as_array).map(|a| a.iter().map(Value::as_u64).collect()).unwrap_or_default();
    let nacks = o.value.pointer("/cp/nacks").and_then(Value::as_array).map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_string)).collect()).unwrap_or_default();
    Some(Ok(Snap { series, acks, nacks }))
}

/// What the clients of the `send` observation at `step` saw, as counter increments.
fn answers(o: &Obs) -> Counts {
    let mut c = Counts::new();
    for q in o.value.get("requests").and_then(Value::as_array).into_iter().flatten() {
        for r in q["client"]["responses"].as_array().into_iter().flatten() {
            let a = seen(r);
            let pl = a.placement.unwrap_or_default();
            *c.entry(key("router_requests_total", &[("placement", &pl), ("status", &a.status.to_string())])).or_default() += 1.0;
            *c.entry(key("router_request_duration_seconds_count", &[("placement", &pl)])).or_default() += 1.0;
            if let Some(code) = a.error {
                *c.entry(key("router_errors_total", &[("code", &code)])).or_default() += 1.0;
            }
        }
    }
    c
}

fn add(into: &mut Counts, c: &Counts) {
    for (k, v) in c {
        *into.entry(k.clone()).or_default() += v;
    }
}

fn get(c: &Counts, k: &SeriesKey) -> f64 {
    c.get(k).copied().unwrap_or(0.0)
}

/// One process's stretch of the schedule.
#[derive(Debug, Default)]
struct Process {
    /// Its baseline (None: a restarted process, from zero).
    base: Option<Snap>,
    /// The control plane's answers before it (counts of acks, nacks).
    cp_from: (usize, usize),
    /// Snapshots inside it (after a restart).
    inner: Vec<(usize, Snap)>,
    /// Its last snapshot and that step.
    end: Option<(usize, Snap)>,
    /// Steps after which it serves (exclusive) and until which.
    from_step: usize,
    until_step: usize,
    /// Answers of requests sent and answered within it.
    exact: Counts,
    /// Answers of the restart loads that began (in) or ended (out) it.
    load_in: Counts,
    load_out: Counts,
}

/// Every violation of the metrics invariant in one implementation's trace of `r`.
pub fn check(r: &Rendered, trace: &[Obs]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut v = |step: usize, detail: String| out.push(Violation { step: step as i64, event: r.event_of.get(step).copied().flatten(), kind: KIND.into(), detail });
    // Processes from the boundaries.
    let mut procs: Vec<Process> = Vec::new();
    for &(step, at) in &r.snapshots {
        let s = match snap(trace, step) {
            None => break,
            Some(Err(())) => {
                v(step, "GET /metrics failed at a snapshot".into());
                break;
            }
            Some(Ok(s)) => s,
        };
        match at {
            Boundary::Start => procs.push(Process { cp_from: (s.acks.len(), s.nacks.len()), from_step: step, until_step: usize::MAX, base: Some(s), ..Default::default() }),
            Boundary::BeforeRestart | Boundary::End => {
                let Some(p) = procs.last_mut() else { break };
                p.until_step = step;
                let cp = (s.acks.len(), s.nacks.len());
                p.end = Some((step, s));
                if at == Boundary::BeforeRestart {
                    procs.push(Process { cp_from: cp, from_step: step, until_step: usize::MAX, ..Default::default() });
                }
            }
            Boundary::AfterRestart => {
                if let Some(p) = procs.last_mut() {
                    p.inner.push((step, s));
                }
            }
        }
    }
    // (A process without its last snapshot, the case cut short, still takes its answers:
    // a restart's load bounds the process before it.)
    // Attribute every client answer to its process; a restart's load to both sides.
    for o in trace.iter().filter(|o| o.kind == "send" && o.step >= 0) {
        let s = o.step as usize;
        let Some(k) = procs.iter().position(|p| p.from_step < s && s < p.until_step) else { continue };
        let c = answers(o);
        if matches!(r.checks.get(&s), Some(StepCheck::Load { restart: true })) {
            add(&mut procs[k].load_in, &c);
            if k > 0 {
                add(&mut procs[k - 1].load_out, &c);
            }
        } else {
            add(&mut procs[k].exact, &c);
        }
    }
    // Requests, errors, durations: per process, A <= D <= A + R.
    let mut over_all = Counts::new();
    let mut loads_all = Counts::new();
    let mut max_version = None::<u64>;
    for (n, p) in procs.iter().enumerate() {
        let Some((end_step, end)) = p.end.as_ref() else { continue };
        let zero = Snap::default();
        let base = p.base.as_ref().unwrap_or(&zero);
        let keys: BTreeSet<&SeriesKey> = end.series.keys().chain(base.series.keys()).chain(p.exact.keys()).chain(p.load_in.keys()).chain(p.load_out.keys()).collect();
        for k in keys.into_iter().filter(|k| k.name != "router_config_accepted_total" && k.name != "router_config_rejected_total") {
            let d = get(&end.series, k) - get(&base.series, k);
            let a = get(&p.exact, k);
            let slack = get(&p.load_in, k) + get(&p.load_out, k);
            if d < a || d > a + slack {
                let bound = if slack == 0.0 { format!("exactly {a}") } else { format!("{a}..={} (restart load {slack})", a + slack) };
                v(*end_step, format!("process {n} (steps {}..{}): {k} rose by {d}, the clients saw {bound}", p.from_step + 1, end_step + 1));
            }
            *over_all.entry(k.clone()).or_default() += d - a;
        }
        add(&mut loads_all, &p.load_in);
        // Just after a restart: nothing but the restart's load can have been answered.
        for (step, s) in &p.inner {
            for (k, val) in &s.series {
                if k.name == "router_config_accepted_total" || k.name == "router_config_rejected_total" {
                    continue;
                }
                let cap = get(&p.load_in, k).min(get(&end.series, k));
                if *val > cap {
                    v(*step, format!("process {n} just after its start: {k} = {val}, at most {cap} (only the restart's load can have been answered)"));
                }
            }
        }
        // Config counters: exact.
        if let Some(b) = &p.base {
            max_version = b.acks.iter().flatten().copied().max();
        }
        let (a0, n0) = p.cp_from;
        let mut raised = 0.0;
        for v in end.acks.iter().skip(a0).flatten() {
            if max_version.is_none_or(|m| *v > m) {
                raised += 1.0;
                max_version = Some(*v);
            }
        }
        let acc = key("router_config_accepted_total", &[]);
        let d = get(&end.series, &acc) - get(&base.series, &acc);
        if d != raised {
            v(*end_step, format!("process {n} (steps {}..{}): router_config_accepted_total rose by {d}, the control plane received {raised} acks that raised the version (exact)", p.from_step + 1, end_step + 1));
        }
        let mut nacks: BTreeMap<&str, f64> = BTreeMap::new();
        for c in end.nacks.iter().skip(n0) {
            *nacks.entry(c).or_default() += 1.0;
        }
        let codes: BTreeSet<String> = nacks.keys().map(|c| c.to_string()).chain(end.series.keys().chain(base.series.keys()).filter(|k| k.name == "router_config_rejected_total").filter_map(|k| k.labels.get("code").cloned())).collect();
        for code in codes {
            let k = key("router_config_rejected_total", &[("code", &code)]);
            let d = get(&end.series, &k) - get(&base.series, &k);
            let want = nacks.get(code.as_str()).copied().unwrap_or(0.0);
            if d != want {
                v(*end_step, format!("process {n} (steps {}..{}): {k} rose by {d}, the control plane received {want} such nacks (exact)", p.from_step + 1, end_step + 1));
            }
        }
    }
    // Over the case: what the restart loads' answers leave unaccounted is never negative.
    if !procs.is_empty() && procs.iter().all(|p| p.end.is_some()) {
        for (k, extra) in &over_all {
            let cap = get(&loads_all, k);
            // (cap 0: the series is exact per process, already checked there)
            if cap > 0.0 && *extra > cap {
                let last = procs.last().and_then(|p| p.end.as_ref()).map(|e| e.0).unwrap_or(0);
                v(last, format!("over the case: {k} counted {extra} answers of the restart loads, the clients got {cap}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::model::render;
    use crate::chaos::schedule::*;
    use serde_json::json;

    /// A schedule with one restart: returns it and the steps of its probes (by key),
    /// its loads and its snapshots.
    fn fixture() -> Rendered {
        let mut placements = BTreeMap::new();
        placements.insert("p0".into(), PlacementSpec { endpoints: vec![(0, 1)], pool: false, health_check: false, breaker: None, fallback: None, max_concurrency: 8 });
        let routes = [("k0".to_string(), "p0".to_string())].into_iter().collect();
        let s = Schedule { seed: 1, index: 0, initial: ConfigSpec { routes, placements, load_max_concurrency: 8 }, events: vec![Event::Upstream { up: 1, behaviour: Behaviour::Ok }, Event::Restart] };
        render(&s, false)
    }

    fn snap_obs(step: usize, series: &[(&str, f64)], acks: &[u64], nacks: &[&str]) -> Obs {
        let m: serde_json::Map<String, Value> = series.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        Obs { step: step as i64, kind: "snapshot_metrics".into(), value: json!({"series": m, "cp": {"acks": acks, "nacks": nacks}}) }
    }
    fn send_obs(step: usize, answers: &[(u16, Option<&str>, Option<&str>)]) -> Obs {
        let reqs: Vec<Value> = answers
            .iter()
            .map(|(st, pl, err)| {
                let mut h = vec![];
                if let Some(p) = pl {
                    h.push(json!(["x-router-placement", p]));
                }
                if let Some(e) = err {
                    h.push(json!(["x-router-error", e]));
                }
                json!({"client": {"responses": [{"status": st, "headers": h, "complete": true}], "failure": null}, "upstream": []})
            })
            .collect();
        Obs { step: step as i64, kind: "send".into(), value: json!({"requests": reqs}) }
    }

    const REQ_P0: &str = "router_requests_total{placement=\"p0\",status=\"200\"}";
    const DUR_P0: &str = "router_request_duration_seconds_count{placement=\"p0\"}";
    const REQ_PL: &str = "router_requests_total{placement=\"pl\",status=\"200\"}";
    const DUR_PL: &str = "router_request_duration_seconds_count{placement=\"pl\"}";
    const REQ_404: &str = "router_requests_total{placement=\"\",status=\"404\"}";
    const DUR_NONE: &str = "router_request_duration_seconds_count{placement=\"\"}";
    const ERR_404: &str = "router_errors_total{code=\"unknown_routing_key\"}";
    const ACC: &str = "router_config_accepted_total";

    struct Steps {
        start: usize,
        before: usize,
        after: usize,
        end: usize,
        probe_k0: usize,
        probe_kx: usize,
        plain_load: usize,
        restart_load: usize,
        probe_after: usize,
    }

    fn steps(r: &Rendered) -> Steps {
        let at = |b| r.snapshots.iter().find(|(_, x)| *x == b).unwrap().0;
        let (start, before, after, end) = (at(Boundary::Start), at(Boundary::BeforeRestart), at(Boundary::AfterRestart), at(Boundary::End));
        let probe = |key: &str, lo: usize, hi: usize| *r.checks.iter().find(|(s, c)| **s > lo && **s < hi && matches!(c, StepCheck::Probe { key: k, .. } if k == key)).unwrap().0;
        let load = |restart: bool| *r.checks.iter().find(|(_, c)| matches!(c, StepCheck::Load { restart: x } if *x == restart)).unwrap().0;
        Steps { start, before, after, end, probe_k0: probe("k0", start, before), probe_kx: probe("kx", start, before), plain_load: load(false), restart_load: load(true), probe_after: probe("k0", after, end) }
    }

    /// A consistent trace: process 0 answers one k0 probe (200 p0), one kx probe (404),
    /// 3 plain load answers (200 pl); the restart's load got 4 answers, 1 counted by the
    /// old process before its last snapshot, 2 by the new one, 1 lost in the drain; the
    /// new process answers one k0 probe. Config: v1 acked before the start; v3 acked in
    /// process 0; the restarted process nacked the re-pushed v1 (stale_version).
    fn trace(r: &Rendered, tweak: impl Fn(&str, &str, f64) -> f64) -> Vec<Obs> {
        let s = steps(r);
        let t = |snap: &str, k: &'static str, v: f64| (k, tweak(snap, k, v));
        let start = [t("start", ACC, 1.0)];
        let before = [t("before", REQ_P0, 1.0), t("before", DUR_P0, 1.0), t("before", REQ_404, 1.0), t("before", DUR_NONE, 1.0), t("before", ERR_404, 1.0), t("before", REQ_PL, 4.0), t("before", DUR_PL, 4.0), t("before", ACC, 2.0)];
        let after = [t("after", REQ_PL, 1.0), t("after", DUR_PL, 1.0)];
        let end = [
            t("end", REQ_PL, 2.0),
            t("end", DUR_PL, 2.0),
            t("end", REQ_P0, 1.0),
            t("end", DUR_P0, 1.0),
            t("end", "router_config_rejected_total{code=\"stale_version\"}", 1.0),
            t("end", ACC, 0.0),
        ];
        vec![
            snap_obs(s.start, &start, &[1], &[]),
            send_obs(s.probe_k0, &[(200, Some("p0"), None)]),
            send_obs(s.probe_kx, &[(404, None, Some("unknown_routing_key"))]),
            send_obs(s.plain_load, &[(200, Some("pl"), None); 3]),
            snap_obs(s.before, &before, &[1, 3], &[]),
            snap_obs(s.after, &after, &[1, 3], &[]),
            send_obs(s.probe_after, &[(200, Some("p0"), None)]),
            send_obs(s.restart_load, &[(200, Some("pl"), None); 4]),
            snap_obs(s.end, &end, &[1, 3], &["stale_version"]),
        ]
    }

    fn details(v: &[Violation]) -> Vec<String> {
        v.iter().map(|x| format!("{}: {}", x.kind, x.detail)).collect()
    }

    #[test]
    fn a_consistent_trace_passes() {
        let r = fixture();
        let v = check(&r, &trace(&r, |_, _, v| v));
        assert!(v.is_empty(), "{:?}", details(&v));
    }

    #[test]
    fn an_exact_series_off_by_one_either_way_fails() {
        let r = fixture();
        for (snap, series) in [("before", REQ_P0), ("before", ERR_404), ("before", DUR_NONE), ("end", REQ_P0), ("before", ACC), ("end", "router_config_rejected_total{code=\"stale_version\"}")] {
            for d in [-1.0, 1.0] {
                let v = check(&r, &trace(&r, |s, k, v| if s == snap && k == series { v + d } else { v }));
                assert_eq!(v.len(), 1, "{snap} {series} {d:+}: {:?}", details(&v));
                assert_eq!(v[0].kind, KIND);
                assert!(v[0].detail.contains(series.split('{').next().unwrap()), "{:?}", details(&v));
            }
        }
    }

    #[test]
    fn the_restart_load_bounds_the_load_series_and_no_more() {
        let r = fixture();
        // Old process: 3 plain + up to 4 restart answers; counting 8 is one too many.
        let v = check(&r, &trace(&r, |s, k, v| if s == "before" && k == REQ_PL { 8.0 } else { v }));
        assert!(details(&v).iter().any(|d| d.contains("rose by 8")), "{:?}", details(&v));
        // Fewer than the plain load's 3 answers: one missing.
        let v = check(&r, &trace(&r, |s, k, v| if s == "before" && k == REQ_PL { 2.0 } else { v }));
        assert_eq!(v.len(), 1, "{:?}", details(&v));
        // Each side within its bound, but together 5 of the restart's 4 answers counted.
        let v = check(&r, &trace(&r, |s, k, v| if s == "end" && k == REQ_PL { 4.0 } else { v }));
        assert_eq!(v.len(), 1, "{:?}", details(&v));
        assert!(v[0].detail.contains("over the case"), "{:?}", details(&v));
        // All 4 restart answers on the new side and none unaccounted: still consistent.
        let ok = check(&r, &trace(&r, |s, k, v| if s == "before" && (k == REQ_PL || k == DUR_PL) { 3.0 } else if s == "end" && (k == REQ_PL || k == DUR_PL) { 4.0 } else { v }));
        assert!(ok.is_empty(), "{:?}", details(&ok));
    }

    #[test]
    fn a_restarted_process_starts_from_zero() {
        let r = fixture();
        // A probe counted just after the start (none was sent): health checks and
        // refused connections are not answers.
        let v = check(&r, &trace(&r, |s, k, v| if s == "after" && k == REQ_PL { 3.0 } else { v }));
        assert!(details(&v).iter().any(|d| d.contains("just after its start")), "{:?}", details(&v));
        // Counters carried over the restart (the new process's counts not from zero).
        let v = check(&r, &trace(&r, |s, k, v| if s == "end" && k == REQ_P0 { 2.0 } else { v }));
        assert_eq!(v.len(), 1, "{:?}", details(&v));
        // The LKG file loaded at the start counted as an applied config.
        let v = check(&r, &trace(&r, |s, k, v| if s == "end" && k == ACC { 1.0 } else { v }));
        assert_eq!(v.len(), 1, "{:?}", details(&v));
    }

    #[test]
    fn a_failed_scrape_is_a_violation_and_a_cut_trace_checks_what_it_has() {
        let r = fixture();
        let s = steps(&r);
        let mut t = trace(&r, |_, _, v| v);
        let i = t.iter().position(|o| o.step == s.before as i64).unwrap();
        t[i].value = json!({"scrape": "failed", "cp": null});
        let v = check(&r, &t);
        assert_eq!(v.len(), 1, "{:?}", details(&v));
        // The case ended before its end snapshot: process 0 is still checked.
        let mut t = trace(&r, |s, k, v| if s == "before" && k == REQ_P0 { 0.0 } else { v });
        t.pop();
        let v = check(&r, &t);
        assert_eq!(v.len(), 1, "{:?}", details(&v));
    }
}
