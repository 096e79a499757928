//! `parity chaos`: random fault schedules under load, the same schedule on both routers
//! (issue 12, part 2; `docs/chaos.md`).
//!
//! A case is a [`schedule::Schedule`] drawn from `(seed, case index)`: an initial config
//! and events (valid and invalid config pushes, upstream behaviour changes, Toxiproxy
//! toxics toward upstreams and control plane, control-plane drops and outages, router
//! restarts with a load in flight). [`model::render`] turns it into an ordinary scenario
//! (`docs/scenarios.md`) whose steps, after each event, wait with deadlines until the
//! state has settled and then probe every routing key, while a background load runs
//! across the event; the model also says which answers the contract allows at each
//! probe. The scenario runs on every implementation at once through the scenario engine
//! ([`crate::engine`]); [`check`] holds each run to the model's answers and to the
//! scenario's own expectations (acks and nacks, settle waits, the last-known-good file,
//! the final convergence), and the parity verdict compares the traces without the load.
//! A failing case is shrunk ([`shrink`]) and written as a scenario file that `parity run`
//! accepts under `<run>/findings/`.
//!
//! | module | concern |
//! |---|---|
//! | [`schedule`] | the world, generated configs and events, `generate(seed, index)` |
//! | [`model`] | the state model, the allowed answers, rendering to a scenario |
//! | [`check`] | invariants per implementation, the comparable trace |
//! | [`metrics_check`] | the `metrics` invariant: counters against what the clients saw |
//! | [`shrink`] | delta debugging over the events |
pub mod check;
pub mod metrics_check;
pub mod model;
pub mod schedule;
pub mod shrink;

use crate::engine::{self, ImplRun};
use crate::scenario::Scenario;
use crate::trace::Obs;
use crate::verdict::{first_difference, Difference};
use anyhow::{Context, Result};
use check::Violation;
use model::Rendered;
use schedule::Schedule;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `parity chaos` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Seed: the same seed gives the same schedules (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Start no new case after this long (`60s`, `30m`, `1h`).
    #[arg(long)]
    pub time: Option<String>,
    /// Stop after this many cases (default: 1 without --time).
    #[arg(long)]
    pub cases: Option<u64>,
    /// Events per schedule.
    #[arg(long, default_value_t = 10)]
    pub events: usize,
    /// Implementations, comma separated (two: parity and invariants; one: invariants).
    #[arg(long = "impl", default_value = "go,pingora", value_delimiter = ',')]
    pub impls: Vec<String>,
    /// Results folder; the run writes `<out>/chaos-<time>-seed<N>/`.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Router (and toxiproxy-server) binaries, as `parity run`.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Most re-runs spent shrinking one failing case.
    #[arg(long, default_value_t = 12)]
    pub shrink_tries: usize,
    /// Most time spent shrinking one failing case (also after --time is over).
    #[arg(long, default_value = "150s")]
    pub shrink_time: String,
}

/// Exit codes of `parity chaos`.
pub const EXIT_CODES: &str = "Exit codes:
  0  every case held every invariant on every implementation and the traces were identical
  1  at least one finding (written as a scenario under <run>/findings/)
  2  usage error (bad --time, --impl, --events)
  3  the harness failed (a binary is missing, I/O error) or the run was interrupted";

/// What one case gave.
pub struct CaseOutcome {
    /// Each implementation's run.
    pub runs: Vec<(String, ImplRun)>,
    /// Broken invariants, by implementation.
    pub violations: Vec<(String, Violation)>,
    /// The first difference between the comparable traces.
    pub divergence: Option<Difference>,
}

impl CaseOutcome {
    /// What kind of failure this is: `impl:kind` of each violation, `divergence`.
    pub fn signature(&self) -> BTreeSet<String> {
        let mut s: BTreeSet<String> = self.violations.iter().map(|(i, v)| format!("{i}:{}", v.kind)).collect();
        if self.divergence.is_some() {
            s.insert("divergence".into());
        }
        s
    }
    /// An implementation whose environment did not come up (its trace has only the
    /// set-up's `router_started: false`), e.g. a port taken by another process between
    /// being picked and being bound: the case is run again once before it counts.
    pub fn setup_failed(&self) -> bool {
        self.runs.iter().any(|(_, r)| r.trace.iter().any(|o| o.step < 0 && o.value.get("router_started") == Some(&Value::Bool(false))))
    }
    /// A harness error (missing binary): the run cannot go on.
    pub fn harness_error(&self) -> Option<String> {
        self.runs.iter().find_map(|(i, r)| r.error.as_ref().map(|e| format!("{i}: {e}")))
    }
}

/// Renders `s` for a run: the checks and the scenario, validated as `parity run` would.
pub fn prepare(s: &Schedule, for_file: bool) -> Result<(Rendered, Scenario, String)> {
    let r = model::render(s, for_file);
    let yaml = serde_yaml_ng::to_string(&r.scenario)?;
    let sc = crate::scenario::load::parse(&yaml, Path::new("chaos.yaml")).map_err(|errs| anyhow::anyhow!("generated scenario invalid: {}", errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")))?;
    Ok((r, sc, yaml))
}

/// Runs schedule `s` on every implementation at once (logs under `log_dir/<impl>/`) and
/// checks it.
pub async fn run_case(s: &Schedule, impls: &[String], bin_dir: &Path, log_dir: &Path) -> Result<(Rendered, CaseOutcome)> {
    let (r, sc, _) = prepare(s, false)?;
    let runs = futures_util::future::join_all(impls.iter().map(|imp| {
        let (sc, dir) = (&sc, log_dir.join(imp));
        async move { (imp.clone(), engine::run(sc, imp, bin_dir, &dir).await) }
    }))
    .await;
    let mut violations = Vec::new();
    for (imp, run) in &runs {
        for v in check::check(&r, &run.trace, &run.failures, run.error.as_deref()) {
            violations.push((imp.clone(), v));
        }
    }
    let divergence = if runs.len() >= 2 && runs.iter().all(|(_, x)| x.error.is_none()) {
        let comparable: Vec<(String, Vec<Obs>)> = runs.iter().map(|(i, x)| (i.clone(), check::comparable(&r, &x.trace))).collect();
        let refs: Vec<(String, &[Obs])> = comparable.iter().map(|(i, t)| (i.clone(), t.as_slice())).collect();
        first_difference(&refs)
    } else {
        None
    };
    Ok((r, CaseOutcome { runs, violations, divergence }))
}

/// Figures of a run.
#[derive(Debug, Default, Serialize)]
pub struct Figures {
    /// The seed.
    pub seed: u64,
    /// Cases run.
    pub cases: u64,
    /// Events scheduled, by kind.
    pub events: BTreeMap<String, u64>,
    /// Requests sent, per implementation (probes and load).
    pub requests: BTreeMap<String, u64>,
    /// Answers by status (`none:<failure>`: no answer), per implementation.
    pub answers: BTreeMap<String, BTreeMap<String, u64>>,
    /// Broken invariants, per implementation and kind.
    pub violations: BTreeMap<String, u64>,
    /// Cases whose traces diverged.
    pub divergences: u64,
    /// Finding files written.
    pub findings: Vec<String>,
    /// Wall time, seconds.
    pub duration_s: f64,
}

fn tally_answers(trace: &[Obs], into: &mut BTreeMap<String, u64>) -> u64 {
    let mut n = 0;
    for o in trace.iter().filter(|o| o.kind == "send") {
        for q in o.value.get("requests").and_then(Value::as_array).into_iter().flatten() {
            n += 1;
            let k = match q["client"]["responses"].get(0).and_then(|r| r.get("status")).and_then(Value::as_u64) {
                Some(s) => s.to_string(),
                None => format!("none:{}", q["client"]["failure"].as_str().unwrap_or("-")),
            };
            *into.entry(k).or_default() += 1;
        }
    }
    n
}

/// Runs `parity chaos`; returns the exit code.
pub async fn run(a: ChaosArgs) -> i32 {
    let parse = |s: &str| crate::commands::fuzz::parse_duration(s);
    let (time, shrink_time) = match (a.time.as_deref().map(parse).transpose(), parse(&a.shrink_time)) {
        (Ok(t), Ok(s)) => (t, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if a.impls.is_empty() || a.impls.iter().any(|i| crate::env::binary_name(i).is_none()) {
        eprintln!("error: --impl takes go, pingora (comma separated), got {:?}", a.impls);
        return 2;
    }
    if a.events == 0 || a.events > 60 {
        eprintln!("error: --events must be 1..=60");
        return 2;
    }
    tokio::select! {
        r = run_all(&a, time, shrink_time) => match r {
            Ok(clean) => if clean { 0 } else { 1 },
            Err(e) => {
                eprintln!("parity chaos: {e:#}");
                3
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("parity chaos: interrupted");
            crate::env::kill_all();
            3
        }
    }
}

async fn run_all(a: &ChaosArgs, time: Option<Duration>, shrink_time: Duration) -> Result<bool> {
    let seed = a.seed.unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64 % 1_000_000);
    let cases = a.cases.unwrap_or(if time.is_some() { u64::MAX } else { 1 });
    let bin_dir = crate::env::find_bin_dir(a.bin_dir.clone());
    let run_dir = a.out.join(format!("chaos-{}-seed{seed}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ")));
    std::fs::create_dir_all(&run_dir).with_context(|| format!("create {}", run_dir.display()))?;
    let say = |s: &str| crate::util::out::say(s);
    say(&format!("parity chaos: seed {seed}, {} events a case, impls {}, results {}", a.events, a.impls.join(","), run_dir.display()));
    say(&format!("  reproduce: parity chaos --seed {seed} --events {} --cases N (case i is the same whatever ran before it)", a.events));
    let start = Instant::now();
    let mut fig = Figures { seed, ..Default::default() };
    let mut index = 0u64;
    while index < cases && time.is_none_or(|t| start.elapsed() < t) {
        let s = schedule::generate(seed, index, a.events);
        for e in &s.events {
            *fig.events.entry(e.kind().into()).or_default() += 1;
        }
        let t0 = Instant::now();
        let mut out = run_case(&s, &a.impls, &bin_dir, &run_dir.join("logs").join(format!("case-{index}"))).await?.1;
        if out.setup_failed() && out.harness_error().is_none() {
            let why: Vec<&String> = out.runs.iter().flat_map(|(_, r)| r.failures.iter().filter(|f| f.starts_with("set-up"))).collect();
            say(&format!("case {index}: an environment did not come up ({why:?}); running the case again"));
            out = run_case(&s, &a.impls, &bin_dir, &run_dir.join("logs").join(format!("case-{index}-again"))).await?.1;
        }
        if let Some(e) = out.harness_error() {
            anyhow::bail!("case {index}: {e}");
        }
        fig.cases += 1;
        let mut per = Vec::new();
        for (imp, run) in &out.runs {
            let n = tally_answers(&run.trace, fig.answers.entry(imp.clone()).or_default());
            *fig.requests.entry(imp.clone()).or_default() += n;
            let v = out.violations.iter().filter(|(i, _)| i == imp).count();
            per.push(format!("{imp}: {n} req, {v} violations"));
        }
        for (imp, v) in &out.violations {
            *fig.violations.entry(format!("{imp}:{}", v.kind)).or_default() += 1;
        }
        if out.divergence.is_some() {
            fig.divergences += 1;
        }
        let kinds: Vec<&str> = s.events.iter().map(|e| e.kind()).collect();
        say(&format!(
            "case {index}: [{}] | {} | parity {} | {:.1} s",
            kinds.join(" "),
            per.join(" | "),
            match (&out.divergence, a.impls.len()) {
                (_, 1) => "n/a".to_string(),
                (None, _) => "identical".to_string(),
                (Some(d), _) => format!("DIVERGED at {} {}", crate::trace::step_label(d.step), d.field.clone().unwrap_or_default()),
            },
            t0.elapsed().as_secs_f64()
        ));
        for (imp, v) in out.violations.iter().take(6) {
            say(&format!("    {imp}: {} at {}{}: {}", v.kind, crate::trace::step_label(v.step), v.event.map(|e| format!(" (event {} {})", e + 1, s.events[e].kind())).unwrap_or_default(), v.detail));
        }
        if !out.signature().is_empty() {
            let f = shrink_and_write(a, &s, &out, &bin_dir, &run_dir, shrink_time).await?;
            say(&format!("    finding: {f}"));
            fig.findings.push(f);
        }
        index += 1;
    }
    fig.duration_s = start.elapsed().as_secs_f64();
    write_summary(&run_dir, &fig)?;
    let viol: u64 = fig.violations.values().sum();
    say(&format!(
        "parity chaos: seed {seed}: {} cases, {} events, requests {:?}, answers {:?}, {viol} invariant violations, {} divergent cases, {} findings, {:.0} s",
        fig.cases,
        fig.events.values().sum::<u64>(),
        fig.requests,
        fig.answers,
        fig.divergences,
        fig.findings.len(),
        fig.duration_s
    ));
    say(&format!("summary: {}", run_dir.join("summary.md").display()));
    Ok(fig.findings.is_empty())
}

/// Shrinks the failing schedule `s` (a re-run must show a failure of the same kind) and
/// writes it as `<run>/findings/chaos-<seed>-<case>.yaml`; returns the file's path.
async fn shrink_and_write(a: &ChaosArgs, s: &Schedule, out: &CaseOutcome, bin_dir: &Path, run_dir: &Path, budget_time: Duration) -> Result<String> {
    let sig = out.signature();
    let t0 = Instant::now();
    let log = run_dir.join("logs").join(format!("case-{}-shrink", s.index));
    let (events, tries) = shrink::shrink(s.events.clone(), a.shrink_tries, |events| {
        let cand = Schedule { events, ..s.clone() };
        let (sig, log) = (&sig, &log);
        async move {
            if t0.elapsed() > budget_time {
                return false;
            }
            match run_case(&cand, &a.impls, bin_dir, log).await {
                Ok((_, o)) => o.harness_error().is_none() && !o.signature().is_disjoint(sig),
                Err(_) => false,
            }
        }
    })
    .await;
    let shrunk = Schedule { events, ..s.clone() };
    // What the shrunk schedule shows (re-run once more unless nothing was removed).
    let (shown, shown_div) = if shrunk.events.len() < s.events.len() {
        let (_, o) = run_case(&shrunk, &a.impls, bin_dir, &log).await?;
        (o.violations, o.divergence)
    } else {
        (out.violations.clone(), out.divergence.clone())
    };
    let (_, _, yaml) = prepare(&shrunk, true)?;
    let mut doc: Value = serde_yaml_ng::from_str(&yaml)?;
    let mut what: Vec<String> = shown.iter().take(8).map(|(i, v)| format!("{i}: {} at {}: {}", v.kind, crate::trace::step_label(v.step), v.detail)).collect();
    if let Some(d) = &shown_div {
        what.push(format!("divergence at {} field {} values {}", crate::trace::step_label(d.step), d.field.clone().unwrap_or_default(), serde_json::to_string(&d.values).unwrap_or_default()));
    }
    doc["description"] = json!(format!(
        "{} Found by parity chaos (seed {} case {}, shrunk from {} to {} events in {tries} tries). What it showed: {}",
        doc["description"].as_str().unwrap_or(""),
        s.seed,
        s.index,
        s.events.len(),
        shrunk.events.len(),
        if what.is_empty() { "the failure did not reproduce after shrinking (timing)".to_string() } else { what.join(" | ") }
    ));
    let dir = run_dir.join("findings");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("chaos-{}-{}.yaml", s.seed, s.index));
    let text = format!("# parity chaos finding; reproduce: parity run {}\n# schedule: {}\n{}", path.display(), serde_json::to_string(&shrunk.events)?, serde_yaml_ng::to_string(&doc)?);
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

fn write_summary(dir: &Path, f: &Figures) -> Result<()> {
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(f)?)?;
    let mut md = format!("# parity chaos, seed {}\n\n{} cases in {:.0} s\n\n", f.seed, f.cases, f.duration_s);
    md += "| figure | value |\n|---|---|\n";
    md += &format!("| events | {} ({}) |\n", f.events.values().sum::<u64>(), f.events.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
    for (imp, n) in &f.requests {
        md += &format!("| requests {imp} | {n} |\n");
    }
    for (imp, a) in &f.answers {
        md += &format!("| answers {imp} | {} |\n", a.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "));
    }
    md += &format!("| invariant violations | {} |\n", if f.violations.is_empty() { "0".into() } else { f.violations.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ") });
    md += &format!("| divergent cases | {} |\n", f.divergences);
    md += &format!("| findings | {} |\n", f.findings.len());
    for p in &f.findings {
        md += &format!("\n- `{p}`");
    }
    std::fs::write(dir.join("summary.md"), md)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use schedule::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        for i in 0..20 {
            assert_eq!(generate(5, i, 12), generate(5, i, 12));
        }
        let a: Vec<_> = (0..10).map(|i| generate(1, i, 12)).collect();
        let b: Vec<_> = (0..10).map(|i| generate(2, i, 12)).collect();
        assert_ne!(a, b);
        // every event kind shows up within a few hundred events
        let kinds: BTreeSet<&str> = (0..40).flat_map(|i| generate(3, i, 12).events).map(|e| e.kind()).collect();
        assert_eq!(kinds.len(), 9, "{kinds:?}");
    }

    #[test]
    fn generated_configs_validate_against_the_schema_and_versions_go_up() {
        for i in 0..60 {
            let s = generate(9, i, 15);
            let r = model::render(&s, false);
            let mut last = 1;
            let mut configs = vec![r.scenario["config"].clone()];
            for step in r.scenario["steps"].as_array().unwrap() {
                if let Some(p) = step.get("push") {
                    if let Some(v) = p.get("ack").and_then(Value::as_u64) {
                        assert!(v > last, "acked versions go up: {v} after {last}");
                        last = v;
                        configs.push(p["config"].clone());
                    }
                }
            }
            for c in configs {
                let errs = crate::scenario::config_schema_errors(&c, "config");
                assert!(errs.is_empty(), "case {i}: {errs:?}\n{c}");
            }
        }
    }

    #[test]
    fn every_rendered_schedule_is_a_valid_scenario_also_after_dropping_events() {
        for i in 0..25 {
            let s = generate(11, i, 12);
            prepare(&s, false).unwrap();
            prepare(&s, true).unwrap();
            // any subset is a schedule: every other event dropped
            let half = Schedule { events: s.events.iter().step_by(2).cloned().collect(), ..s.clone() };
            prepare(&half, true).unwrap();
        }
    }

    #[test]
    fn the_model_answers_as_the_contract_table_says() {
        use model::State;
        let mut placements = BTreeMap::new();
        let single = |u, fallback: Option<&str>, breaker, hc| PlacementSpec { endpoints: vec![(u, 1)], pool: false, health_check: hc, breaker, fallback: fallback.map(str::to_string), max_concurrency: 8 };
        placements.insert("p0".to_string(), single(0, Some("p1"), Some(2), false));
        placements.insert("p1".to_string(), single(1, None, None, true));
        let routes = [("k0".to_string(), "p0".to_string())].into_iter().collect();
        let mut st = State::new(ConfigSpec { routes, placements, load_max_concurrency: 8 });
        let mut opened = vec![];
        let one = |v: Vec<model::Outcome>| {
            assert_eq!(v.len(), 1, "{v:?}");
            (v[0].status, v[0].error.clone(), v[0].upstream.clone())
        };
        assert_eq!(one(st.probe("kx", &mut opened)), (404, Some("unknown_routing_key".into()), None));
        assert_eq!(one(st.probe("k0", &mut opened)), (200, None, Some("u0".into())));
        st.beh[0] = Behaviour::Status500;
        assert_eq!(one(st.probe("k0", &mut opened)).0, 500);
        assert!(opened.is_empty());
        assert_eq!(one(st.probe("k0", &mut opened)).0, 500);
        assert_eq!(opened, vec!["p0".to_string()], "the second failure opens the breaker");
        // open breaker: the fallback serves
        assert_eq!(one(st.probe("k0", &mut opened)), (200, None, Some("u1".into())));
        // the fallback's upstream refused and health-checked: unhealthy, nothing left
        st.tox[1] = Some(Toxic::Disabled);
        assert_eq!(one(st.probe("k0", &mut opened)), (503, Some("no_healthy_upstream".into()), None));
        // a push with another breaker block starts the breaker fresh; u0 refused: connect
        // failure, the fallback unhealthy: 502 upstream_connect_failed
        let mut c = st.cfg.clone();
        c.placements.get_mut("p0").unwrap().breaker = Some(3);
        st.apply(c, 2);
        st.beh[0] = Behaviour::Ok;
        st.tox[0] = Some(Toxic::Disabled);
        assert_eq!(one(st.probe("k0", &mut opened)), (502, Some("upstream_connect_failed".into()), None));
        st.tox[0] = Some(Toxic::BlackHole);
        assert_eq!(one(st.probe("k0", &mut opened)), (504, Some("upstream_timeout".into()), None));
        st.tox[0] = Some(Toxic::Latency);
        assert_eq!(one(st.probe("k0", &mut opened)), (200, None, Some("u0".into())));
        // reset_peer resets when the answer flows back: a slow upstream times out first
        st.tox[0] = Some(Toxic::ResetPeer);
        st.beh[0] = Behaviour::Slow;
        assert_eq!(one(st.probe("k0", &mut opened)), (504, Some("upstream_timeout".into()), None));
        // a closed upstream behind a black hole: the proxy closes at once (502, not 504)
        st.tox[0] = Some(Toxic::BlackHole);
        st.beh[0] = Behaviour::Down;
        assert_eq!(one(st.probe("k0", &mut opened)), (502, Some("upstream_protocol_error".into()), None));
    }
}
