//! `parity report`: prints the reports of an earlier run again and rewrites its files;
//! given several run folders (the slices of `parity run --shard i/n`), merges them into
//! one run folder first.
use crate::report;
use crate::shard;
use crate::util::out::say;
use std::path::{Path, PathBuf};

/// Exit codes of `parity report`.
pub const EXIT_CODES: &str = "Exit codes (the verdict of the run reported):
  0  every scenario passed on every implementation and the traces were identical
  1  an expectation failed or the implementations diverged
  2  the run folders given cannot be merged (different implementations, a scenario or a
     slice given twice, slices of different counts)
  3  the run was interrupted or errored, a merged run lacks a slice, or a summary.json
     cannot be read or the reports cannot be written

Merging CI slices: each job runs `parity run --shard i/n --out results`; collect the
folders (e.g. as artifacts) and run `parity report shard1/ shard2/ ... --out results`:
the merged run goes to <out>/<run-id>/ (summary.json, report.md/html, junit.xml and
every slice's logs) and <out>/latest-suite points at it.";

/// Arguments of `parity report`.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// The run folder [default: results/latest-suite, else results/latest]; several
    /// folders are merged into a new run (slices of `parity run --shard`).
    pub runs: Vec<PathBuf>,
    /// Where a merged run goes: <out>/<run-id>/ (only with several run folders).
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
}

/// Reprints the run's reports, or merges several runs and prints the merged one; returns
/// the run's exit code (2 when the runs do not fit together, 3 when one cannot be read).
pub fn run(a: ReportArgs) -> i32 {
    match a.runs.len() {
        0 => report_dir(&default_report_dir()),
        1 => report_dir(&a.runs[0]),
        _ => merge_dirs(&a.runs, &a.out),
    }
}

/// Reads `<run>/summary.json`, printing the error (exit 3) when it cannot.
fn read_summary(run: &Path) -> Result<report::Summary, i32> {
    let p = run.join("summary.json");
    let text = std::fs::read_to_string(&p).map_err(|e| {
        eprintln!("error: {}: {e}", p.display());
        3
    })?;
    serde_json::from_str(&text).map_err(|e| {
        eprintln!("error: {}: {e}", p.display());
        3
    })
}

/// Merges the run folders `runs` into a new folder under `out` (summary, reports, every
/// slice's logs) and reports it.
fn merge_dirs(runs: &[PathBuf], out: &Path) -> i32 {
    let mut sums = Vec::new();
    for r in runs {
        match read_summary(r) {
            Ok(s) => sums.push(s),
            Err(c) => return c,
        }
    }
    let started = chrono::Utc::now();
    let run_id = format!("{}-{}-merged", started.format("%Y%m%dT%H%M%SZ"), std::process::id());
    let merged = match shard::merge(&sums, run_id.clone(), started.to_rfc3339()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let dir = out.join(&run_id);
    for r in runs {
        let logs = r.join("logs");
        if logs.is_dir() {
            if let Err(e) = shard::copy_tree(&logs, &dir.join("logs")) {
                eprintln!("error: {e:#}");
                return 3;
            }
        }
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: --out {}: cannot create {}: {e}", out.display(), dir.display());
        return 3;
    }
    let _ = std::fs::remove_file(out.join("latest-suite"));
    let _ = std::os::unix::fs::symlink(&run_id, out.join("latest-suite"));
    say(&format!("merged {} runs ({}) into {}", runs.len(), merged.merged_from.join(", "), dir.display()));
    if let Err(e) = report::write_all(&dir, &merged, None) {
        eprintln!("error: {e:#}");
        return 3;
    }
    report_dir(&dir)
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

fn report_dir(run: &Path) -> i32 {
    let s = match read_summary(run) {
        Ok(s) => s,
        Err(c) => return c,
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
