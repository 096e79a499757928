//! The suite scheduler: runs every selected scenario against every implementation,
//! `jobs` runs at a time, prints and records each scenario once all its runs are done
//! (in scenario order), and rewrites the reports after every scenario so that an
//! interrupted or killed run leaves honest partial results.
use crate::util::out::say;
use crate::util::stats::percentile;
use crate::{engine, report, scenario, verdict};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One prepared suite run: what to run and where its results go.
pub struct Suite {
    /// The selected scenarios, in order.
    pub list: Vec<scenario::Loaded>,
    /// Implementations (`go`, `pingora`), checked and deduplicated.
    pub impls: Vec<String>,
    /// Scenario × implementation runs at a time (at least 1).
    pub jobs: usize,
    /// Folder holding the router binaries.
    pub bin_dir: PathBuf,
    /// The run's results folder (`<out>/<run-id>`), already created.
    pub dir: PathBuf,
    /// The run id (UTC start time and pid).
    pub run_id: String,
    /// Start time.
    pub started: chrono::DateTime<chrono::Utc>,
    /// Extra JUnit XML path.
    pub junit: Option<PathBuf>,
    /// The slice of the suite `list` is (`--shard`), recorded in summary.json; `None`
    /// for a whole run.
    pub shard: Option<crate::shard::Shard>,
    /// `--transport`: every scenario runs over it (the list holds those it applies to);
    /// None: each over its own first transport.
    pub transport: Option<crate::tls::Transport>,
}

/// The run in progress, for the signal path: results folder, summary so far, extra
/// JUnit path, and the scenario ids planned, in order.
struct Partial {
    dir: PathBuf,
    summary: report::Summary,
    junit: Option<PathBuf>,
    planned: Vec<String>,
}

/// The suite run in progress (one per process), read by [`write_interrupted`] from the
/// signal path, which cannot reach the scheduler's own state.
static PARTIAL: std::sync::Mutex<Option<Partial>> = std::sync::Mutex::new(None);

/// Marks the run in progress as interrupted (`interrupted: true`, `not_run` listing every
/// scenario × implementation not recorded) and rewrites its reports; returns a note for
/// the interruption message (empty when no run is in progress).
pub fn write_interrupted() -> String {
    let Some(mut p) = PARTIAL.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return String::new();
    };
    mark_interrupted(&mut p.summary, &p.planned);
    match report::write_all(&p.dir, &p.summary, p.junit.as_deref()) {
        Ok(()) => format!(" in {} (marked interrupted)", p.dir.display()),
        Err(e) => format!("; writing the interrupted reports in {} failed: {e:#}", p.dir.display()),
    }
}

/// Sets the interrupted marker and lists the runs of `planned` scenarios not in `s`.
pub fn mark_interrupted(s: &mut report::Summary, planned: &[String]) {
    s.interrupted = true;
    s.not_run = planned
        .iter()
        .filter(|id| !s.scenarios.iter().any(|sc| &sc.id == *id))
        .flat_map(|id| s.impls.iter().map(move |imp| report::NotRun { id: id.clone(), imp: imp.clone() }))
        .collect();
}

/// Runs the suite and writes its reports; returns the exit code (0 all pass and
/// identical, 1 a failure or divergence, 3 the reports could not be written).
pub async fn run(s: Suite) -> i32 {
    let Suite { list, impls, jobs, bin_dir, dir, run_id, started, junit, shard, transport } = s;
    let tty = std::io::stderr().is_terminal();
    let total = list.len() * impls.len();
    let pb = if tty {
        let pb = indicatif::ProgressBar::new(total as u64);
        pb.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}").unwrap());
        Some(pb)
    } else {
        None
    };
    let slice = shard.map(|sh| format!(" (shard {sh})")).unwrap_or_default();
    eprintln!("parity run {run_id}{slice}: {} scenarios x {} ({}), jobs {}, routers from {}", list.len(), impls.join(","), impls.len(), jobs, bin_dir.display());

    let list = Arc::new(list);
    let sem = Arc::new(tokio::sync::Semaphore::new(jobs));
    let mut pending = Vec::new();
    for (si, l) in list.iter().enumerate() {
        for imp in &impls {
            let sem = sem.clone();
            let t = crate::tls::transport_of(&l.scenario, transport);
            let sc = crate::tls::for_transport(&l.scenario, t);
            let imp = imp.clone();
            let bin_dir = bin_dir.clone();
            let log_dir = dir.join("logs").join(&sc.id).join(&imp);
            pending.push((si, imp.clone(), tokio::spawn(async move {
                let _p = sem.acquire_owned().await.unwrap();
                engine::run_over(&sc, &imp, &bin_dir, &log_dir, t).await
            })));
        }
    }
    let mut summary = report::Summary {
        schema_version: 1,
        run_id: run_id.clone(),
        started_at: started.to_rfc3339(),
        duration_ms: 0,
        impls: impls.clone(),
        scenarios: Vec::new(),
        interrupted: false,
        not_run: Vec::new(),
        shard,
        merged_from: Vec::new(),
        missing_shards: Vec::new(),
    };
    let planned: Vec<String> = list.iter().map(|l| l.scenario.id.clone()).collect();
    let set_partial = |s: &report::Summary| {
        *PARTIAL.lock().unwrap_or_else(|e| e.into_inner()) = Some(Partial { dir: dir.clone(), summary: s.clone(), junit: junit.clone(), planned: planned.clone() });
    };
    set_partial(&summary);
    let t0 = std::time::Instant::now();
    // Results in scenario order; each scenario is reported once all its runs are done.
    let mut runs: Vec<Vec<(String, engine::ImplRun)>> = vec![Vec::new(); list.len()];
    let mut next_print = 0;
    while !pending.is_empty() {
        let (si, imp, h) = pending.remove(0);
        let r = match h.await {
            Ok(r) => r,
            Err(e) => engine::ImplRun {
                status: "error".into(),
                duration_ms: 0,
                latencies_us: vec![],
                rss_peak_bytes: 0,
                failures: vec![],
                error: Some(format!("harness task failed: {e}")),
                trace: vec![],
            },
        };
        if let Some(pb) = &pb {
            pb.inc(1);
            pb.set_message(format!("{} [{imp}]", list[si].scenario.id));
        }
        runs[si].push((imp, r));
        while next_print < list.len() && runs[next_print].len() == impls.len() {
            let l = &list[next_print];
            let mut sr = scenario_result(l, &dir, std::mem::take(&mut runs[next_print]));
            sr.transport = crate::tls::transport_of(&l.scenario, transport);
            let mut lines = vec![report::line(&sr, &impls)];
            lines.extend(report::details(&sr));
            for line in lines {
                match &pb {
                    Some(pb) => pb.println(line),
                    None => say(&line),
                }
            }
            summary.scenarios.push(sr);
            summary.duration_ms = t0.elapsed().as_millis() as u64;
            // Partial results are kept: the summary is rewritten after every scenario,
            // marked interrupted until the last one (a SIGKILL leaves an honest file).
            let mut partial = summary.clone();
            mark_interrupted(&mut partial, &planned);
            let _ = report::write_all(&dir, &partial, None);
            set_partial(&summary);
            next_print += 1;
        }
    }
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    summary.duration_ms = t0.elapsed().as_millis() as u64;
    PARTIAL.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Err(e) = report::write_all(&dir, &summary, junit.as_deref()) {
        eprintln!("error: writing reports: {e:#}");
        return 3;
    }
    say(&format!("{} in {}; results in {}", report::headline(&summary), report::human_duration(summary.duration_ms), dir.display()));
    say(&report::tally(&summary));
    summary.exit_code()
}

/// The result of one scenario from the runs of every implementation: per-implementation
/// status and latency percentiles, and parity (`identical`, `diverged` with the first
/// difference, or `n/a` with a single implementation).
pub fn scenario_result(l: &scenario::Loaded, dir: &Path, runs: Vec<(String, engine::ImplRun)>) -> report::ScenarioResult {
    let traces: Vec<(String, &[crate::trace::Obs])> = runs.iter().map(|(i, r)| (i.clone(), r.trace.as_slice())).collect();
    let diff = if runs.len() > 1 { verdict::first_difference(&traces) } else { None };
    let parity = if runs.len() < 2 {
        "n/a"
    } else if diff.is_some() {
        "diverged"
    } else {
        "identical"
    };
    let mut impls = std::collections::BTreeMap::new();
    for (imp, r) in &runs {
        let mut lat = r.latencies_us.clone();
        lat.sort_unstable();
        let logs = dir.join("logs").join(&l.scenario.id).join(imp);
        let logs = logs.strip_prefix(dir).map(|p| p.display().to_string()).unwrap_or_else(|_| logs.display().to_string());
        impls.insert(
            imp.clone(),
            report::ImplResult {
                status: r.status.clone(),
                duration_ms: r.duration_ms,
                latency_us: report::Latency { p50: percentile(&lat, 50.0), p99: percentile(&lat, 99.0) },
                requests: lat.len() as u64,
                rss_peak_bytes: r.rss_peak_bytes,
                failures: r.failures.clone(),
                error: r.error.clone(),
                logs,
            },
        );
    }
    report::ScenarioResult {
        id: l.scenario.id.clone(),
        file: l.file.display().to_string(),
        description: l.scenario.description.clone(),
        tags: l.scenario.tags.clone(),
        transport: Default::default(),
        impls,
        parity: parity.into(),
        first_difference: diff,
    }
}
