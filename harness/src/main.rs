//! `parity`: the scenario engine and benchmark driver of pingora-parity.
//!
//! Pipeline (docs/scenarios.md): scenario files → [`scenario`] model → [`env`]
//! (router process, [`control_plane`], [`upstreams`]) → [`engine`] (steps, observation
//! trace, expectations) → [`verdict`] (pass/fail per implementation, parity) →
//! [`report`] (terminal, summary.json, report.md, report.html, junit.xml).
mod bench;
mod control_plane;
mod engine;
mod env;
mod metrics;
mod report;
mod scenario;
mod upstreams;
mod verdict;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const EXIT_CODES: &str = "Exit codes:
  0  every scenario passed on every implementation and the traces were identical
  1  an expectation failed or the implementations diverged
  2  usage error: a scenario file is invalid or missing, nothing selected, a bad
     --impl/--jobs, an unwritable --junit/--out
  3  the harness itself failed (missing router binary, I/O error) or the run was
     interrupted (SIGINT, SIGTERM, SIGHUP)";

const LIST_EXIT_CODES: &str = "Exit codes:
  0  the scenarios were listed
  2  a scenario file is invalid, a file does not exist or a target matches nothing";

const VALIDATE_EXIT_CODES: &str = "Exit codes:
  0  every scenario file is valid
  2  a scenario file is invalid or does not exist";

const REPORT_EXIT_CODES: &str = "Exit codes (the verdict of the run reported):
  0  every scenario passed on every implementation and the traces were identical
  1  an expectation failed or the implementations diverged
  3  the run was interrupted or errored, or its summary.json cannot be read or the
     reports cannot be written";

#[derive(Parser)]
#[command(name = "parity", about = "Run the same failure scenarios against both routers", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run scenarios against the routers and write results/<run-id>/.
    #[command(after_help = EXIT_CODES)]
    Run(RunArgs),
    /// List scenarios: id, tags, description.
    #[command(after_help = LIST_EXIT_CODES)]
    List {
        /// Scenario files, folders or id globs (default: scenarios/).
        targets: Vec<String>,
        /// Only scenarios with this tag (repeatable).
        #[arg(long)]
        tag: Vec<String>,
    },
    /// Check scenario files; errors name the file, line and field.
    #[command(after_help = VALIDATE_EXIT_CODES)]
    Validate {
        /// Files or folders (default: scenarios/).
        files: Vec<PathBuf>,
    },
    /// Print the reports of an earlier run again (and rewrite report.md/html, junit.xml).
    #[command(after_help = REPORT_EXIT_CODES)]
    Report {
        /// The run folder [default: results/latest-suite, else results/latest].
        run: Option<PathBuf>,
    },
    /// Print the JSON Schema of scenario files.
    Schema,
    /// Benchmark both routers against their bare proxies, nginx and the upstream alone (latency, throughput, CPU, memory).
    Bench(bench::BenchArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenario files, folders (any location) or id globs such as `breaker-*`
    /// (matched against scenarios/). Default: scenarios/.
    targets: Vec<String>,
    /// Implementations, comma separated: go, pingora.
    #[arg(long = "impl", value_delimiter = ',', default_value = "go,pingora")]
    impls: Vec<String>,
    /// Only scenarios with this tag (repeatable).
    #[arg(long)]
    tag: Vec<String>,
    /// Results root: the run goes to <out>/<run-id>/, <out>/latest points at it.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Also write the JUnit XML here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Scenario × implementation runs at a time.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Where go-router and pingora-router are (default: $PARITY_BIN_DIR, the folder of
    /// this executable, ./bin).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Bench(a) => match bench::run(a).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e:#}");
                3
            }
        },
        Cmd::Schema => {
            let s = schemars::schema_for!(scenario::Scenario);
            println!("{}", serde_json::to_string_pretty(&s).unwrap());
            0
        }
        Cmd::Validate { files } => validate(files),
        Cmd::List { targets, tag } => match select(&targets, &tag) {
            Err(c) => c,
            Ok(list) => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                for l in list {
                    // A closed pipe (`parity list | head`) just ends the listing.
                    if writeln!(out, "{:<28} [{}] {}", l.scenario.id, l.scenario.tags.join(","), l.scenario.description.trim().lines().next().unwrap_or("")).is_err() {
                        break;
                    }
                }
                0
            }
        },
        Cmd::Report { run } => report_cmd(&run.unwrap_or_else(default_report_dir)),
        Cmd::Run(a) => {
            tokio::select! {
                c = run(a) => c,
                sig = shutdown_signal() => {
                    env::kill_all();
                    let kept = write_interrupted();
                    eprintln!("interrupted ({sig}): every router process was killed; partial results are kept{kept}");
                    3
                }
            }
        }
    };
    env::kill_all();
    std::process::exit(code);
}

/// The run in progress, for the signal path: results folder, summary so far, extra
/// JUnit path, and the scenario ids planned, in order.
struct Partial {
    dir: PathBuf,
    summary: report::Summary,
    junit: Option<PathBuf>,
    planned: Vec<String>,
}

static PARTIAL: std::sync::Mutex<Option<Partial>> = std::sync::Mutex::new(None);

/// Marks the run in progress as interrupted (`interrupted: true`, `not_run` listing every
/// scenario × implementation not recorded) and rewrites its reports; returns a note for
/// the interruption message.
fn write_interrupted() -> String {
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
fn mark_interrupted(s: &mut report::Summary, planned: &[String]) {
    s.interrupted = true;
    s.not_run = planned
        .iter()
        .filter(|id| !s.scenarios.iter().any(|sc| &sc.id == *id))
        .flat_map(|id| s.impls.iter().map(move |imp| report::NotRun { id: id.clone(), imp: imp.clone() }))
        .collect();
}

static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints one line to stdout; once stdout is closed (`parity run | head -1`) it stops
/// printing instead of panicking like `println!`, so the run still finishes, writes its
/// results and stops its routers.
fn say(line: &str) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Waits for SIGINT, SIGTERM or SIGHUP and returns its name: all three end a run the
/// same way (routers killed, temp dirs removed, partial results kept, exit 3), so that
/// `timeout`, a closed terminal or a CI cancel leave no router behind.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
        // Cannot install handlers (should not happen): fall back to Ctrl-C only.
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

/// The default scenarios folder: `./scenarios` when it exists, else `scenarios/` next
/// to the folder of this executable (`bin/parity` sits in the repository root, so that
/// is `<repo>/scenarios`); the error says where it looked.
fn default_scenarios_dir() -> Result<PathBuf, String> {
    let here = PathBuf::from("scenarios");
    if here.is_dir() {
        return Ok(here);
    }
    let beside = std::env::current_exe().ok().and_then(|e| e.parent().and_then(|d| d.parent()).map(|r| r.join("scenarios")));
    if let Some(b) = &beside {
        if b.is_dir() {
            return Ok(b.clone());
        }
    }
    let looked = match &beside {
        Some(b) => format!("./scenarios and {}", b.display()),
        None => "./scenarios".into(),
    };
    Err(format!("no scenarios folder found (looked in {looked}); run from the repository root or pass scenario files or folders"))
}

fn validate(files: Vec<PathBuf>) -> i32 {
    let files = if files.is_empty() {
        match default_scenarios_dir() {
            Ok(d) => vec![d],
            Err(e) => {
                eprintln!("error: {e}");
                return 2;
            }
        }
    } else {
        files
    };
    let mut all = Vec::new();
    for f in &files {
        if !f.exists() {
            eprintln!("{}: no such file", f.display());
            return 2;
        }
        match scenario::files_in(f) {
            Ok(mut v) => all.append(&mut v),
            Err(e) => {
                eprintln!("{}:0: field `.`: {e}", f.display());
                return 2;
            }
        }
    }
    let (ok, errs) = scenario::load_all(&all);
    for e in &errs {
        eprintln!("{e}");
    }
    say(&format!("{} valid, {} errors", ok.len(), errs.len()));
    if errs.is_empty() {
        0
    } else {
        2
    }
}

/// Resolves targets (files, folders, id globs) and tags; prints errors and returns exit
/// code 2 on an invalid file or a target that matches nothing.
fn select(targets: &[String], tags: &[String]) -> Result<Vec<scenario::Loaded>, i32> {
    let default = || {
        default_scenarios_dir().map_err(|e| {
            eprintln!("error: {e}");
            2
        })
    };
    let mut files = Vec::new();
    let mut globs = Vec::new();
    if targets.is_empty() {
        let d = default()?;
        files.extend(scenario::files_in(&d).map_err(|e| {
            eprintln!("{}: {e}", d.display());
            2
        })?);
    }
    for t in targets {
        let p = Path::new(t);
        if !p.exists() && looks_like_path(t) {
            eprintln!("no such file: {t}");
            return Err(2);
        }
        if p.exists() {
            files.extend(scenario::files_in(p).map_err(|e| {
                eprintln!("{t}: {e}");
                2
            })?);
        } else {
            match glob::Pattern::new(t) {
                Ok(g) => globs.push((t.clone(), g)),
                Err(e) => {
                    eprintln!("{t}: neither a file nor a valid id glob: {e}");
                    return Err(2);
                }
            }
        }
    }
    if !globs.is_empty() {
        let d = default()?;
        let all = scenario::files_in(&d).unwrap_or_default();
        let (loaded, errs) = scenario::load_all(&all);
        if !errs.is_empty() {
            for e in &errs {
                eprintln!("{e}");
            }
            return Err(2);
        }
        for (t, g) in &globs {
            let m: Vec<_> = loaded.iter().filter(|l| g.matches(&l.scenario.id)).collect();
            if m.is_empty() {
                eprintln!("{t}: no scenario id in {} matches", d.display());
                return Err(2);
            }
            for l in m {
                if !files.contains(&l.file) {
                    files.push(l.file.clone());
                }
            }
        }
    }
    let (loaded, errs) = scenario::load_all(&files);
    if !errs.is_empty() {
        for e in &errs {
            eprintln!("{e}");
        }
        return Err(2);
    }
    Ok(loaded
        .into_iter()
        .filter(|l| tags.is_empty() || tags.iter().any(|t| l.scenario.tags.contains(t)))
        .collect())
}

/// `results/latest-suite` (the newest scenario run; `results/latest` may be a benchmark)
/// when it exists, else `results/latest`.
fn default_report_dir() -> PathBuf {
    let suite = PathBuf::from("results/latest-suite");
    if suite.exists() {
        suite
    } else {
        PathBuf::from("results/latest")
    }
}

/// A target naming a file rather than an id glob: it has a `/` or a YAML extension.
fn looks_like_path(t: &str) -> bool {
    t.contains('/') || t.ends_with(".yaml") || t.ends_with(".yml")
}

fn report_cmd(run: &Path) -> i32 {
    let text = match std::fs::read_to_string(run.join("summary.json")) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: {e}", run.join("summary.json").display());
            return 3;
        }
    };
    let s: report::Summary = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}: {e}", run.join("summary.json").display());
            return 3;
        }
    };
    for sc in &s.scenarios {
        say(&report::line(sc, &s.impls));
        for d in report::details(sc) {
            say(&d);
        }
    }
    if let Err(e) = report::write_all(run, &s, None) {
        eprintln!("error: {e:#}");
        return 3;
    }
    say(&format!("{}; reports in {}", report::headline(&s), run.display()));
    s.exit_code()
}

/// Checks `--impl`: every name must be `go` or `pingora`; duplicates are dropped (a
/// second run of the same implementation would overwrite the first's results).
fn parse_impls(raw: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for i in raw {
        let i = i.trim();
        if env::binary_name(i).is_none() {
            return Err(format!("--impl: unknown implementation {i:?}; choose from go, pingora (comma separated)"));
        }
        if !out.iter().any(|o| o == i) {
            out.push(i.to_string());
        }
    }
    if out.is_empty() {
        return Err("--impl: no implementation given; choose from go, pingora (comma separated)".into());
    }
    Ok(out)
}

async fn run(mut a: RunArgs) -> i32 {
    match parse_impls(&a.impls) {
        Ok(v) => a.impls = v,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    }
    if a.jobs == 0 {
        eprintln!("error: --jobs must be at least 1");
        return 2;
    }
    let list = match select(&a.targets, &a.tag) {
        Ok(l) => l,
        Err(c) => return c,
    };
    if list.is_empty() {
        eprintln!("no scenario selected");
        return 2;
    }
    let bin_dir = env::find_bin_dir(a.bin_dir.clone());
    for imp in &a.impls {
        match env::binary_name(imp) {
            None => unreachable!("checked by parse_impls"),
            Some(b) if !bin_dir.join(b).exists() => {
                eprintln!("error: {} not found (run `make build`, or pass --bin-dir / PARITY_BIN_DIR)", bin_dir.join(b).display());
                return 3;
            }
            _ => {}
        }
    }
    // Output places are checked before any scenario runs, not after the whole suite.
    if let Some(j) = &a.junit {
        let parent = j.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            eprintln!("error: --junit {}: folder {} does not exist", j.display(), parent.display());
            return 2;
        }
    }
    let bin_dir = std::fs::canonicalize(&bin_dir).unwrap_or(bin_dir);
    let started = chrono::Utc::now();
    let run_id = format!("{}-{}", started.format("%Y%m%dT%H%M%SZ"), std::process::id());
    let dir = a.out.join(&run_id);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: --out {}: cannot create {}: {e}", a.out.display(), dir.display());
        return 2;
    }
    // `latest` is the newest run of either kind (shared with `parity bench`);
    // `latest-suite` always names the newest scenario run.
    for link in ["latest", "latest-suite"] {
        let latest = a.out.join(link);
        let _ = std::fs::remove_file(&latest);
        let _ = std::os::unix::fs::symlink(&run_id, &latest);
    }

    let tty = std::io::stderr().is_terminal();
    let total = list.len() * a.impls.len();
    let pb = if tty {
        let pb = indicatif::ProgressBar::new(total as u64);
        pb.set_style(indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {msg}").unwrap());
        Some(pb)
    } else {
        None
    };
    eprintln!("parity run {run_id}: {} scenarios x {} ({}), jobs {}, routers from {}", list.len(), a.impls.join(","), a.impls.len(), a.jobs, bin_dir.display());

    let list = Arc::new(list);
    let sem = Arc::new(tokio::sync::Semaphore::new(a.jobs));
    let mut handles = Vec::new();
    for (si, l) in list.iter().enumerate() {
        for imp in &a.impls {
            let sem = sem.clone();
            let sc = l.scenario.clone();
            let imp = imp.clone();
            let bin_dir = bin_dir.clone();
            let log_dir = dir.join("logs").join(&sc.id).join(&imp);
            handles.push((si, imp.clone(), tokio::spawn(async move {
                let _p = sem.acquire_owned().await.unwrap();
                engine::run(&sc, &imp, &bin_dir, &log_dir).await
            })));
        }
    }
    let mut summary = report::Summary {
        schema_version: 1,
        run_id: run_id.clone(),
        started_at: started.to_rfc3339(),
        duration_ms: 0,
        impls: a.impls.clone(),
        scenarios: Vec::new(),
        interrupted: false,
        not_run: Vec::new(),
    };
    let planned: Vec<String> = list.iter().map(|l| l.scenario.id.clone()).collect();
    let set_partial = |s: &report::Summary| {
        *PARTIAL.lock().unwrap_or_else(|e| e.into_inner()) = Some(Partial { dir: dir.clone(), summary: s.clone(), junit: a.junit.clone(), planned: planned.clone() });
    };
    set_partial(&summary);
    let t0 = std::time::Instant::now();
    let mut pending: Vec<(usize, String, tokio::task::JoinHandle<engine::ImplRun>)> = handles;
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
        while next_print < list.len() && runs[next_print].len() == a.impls.len() {
            let l = &list[next_print];
            let sr = scenario_result(l, &dir, std::mem::take(&mut runs[next_print]));
            let mut lines = vec![report::line(&sr, &a.impls)];
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
    if let Err(e) = report::write_all(&dir, &summary, a.junit.as_deref()) {
        eprintln!("error: writing reports: {e:#}");
        return 3;
    }
    say(&format!("{} in {}; results in {}", report::headline(&summary), report::human_duration(summary.duration_ms), dir.display()));
    say(&report::tally(&summary));
    summary.exit_code()
}

fn scenario_result(l: &scenario::Loaded, dir: &Path, runs: Vec<(String, engine::ImplRun)>) -> report::ScenarioResult {
    let traces: Vec<(String, &[engine::Obs])> = runs.iter().map(|(i, r)| (i.clone(), r.trace.as_slice())).collect();
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
                latency_us: report::Latency { p50: verdict::percentile(&lat, 50.0), p99: verdict::percentile(&lat, 99.0) },
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
        impls,
        parity: parity.into(),
        first_difference: diff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn path_like_targets_are_not_globs() {
        assert!(looks_like_path("/tmp/does-not-exist.yaml"));
        assert!(looks_like_path("x.yml"));
        assert!(looks_like_path("scenarios/"));
        assert!(!looks_like_path("breaker-*"));
        assert!(!looks_like_path("routing-basics"));
    }

    #[test]
    fn impls_are_checked_and_deduplicated() {
        assert_eq!(parse_impls(&v(&["go", "go"])).unwrap(), v(&["go"]));
        assert_eq!(parse_impls(&v(&["pingora", "go", "pingora"])).unwrap(), v(&["pingora", "go"]));
        assert!(parse_impls(&v(&["rust"])).unwrap_err().contains("go, pingora"));
        assert!(parse_impls(&v(&[""])).is_err());
        assert!(parse_impls(&v(&[])).is_err());
    }
}
