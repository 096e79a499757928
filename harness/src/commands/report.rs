//! `parity report`: prints the reports of an earlier run again and rewrites its files.
use crate::report;
use crate::util::out::say;
use std::path::{Path, PathBuf};

/// Exit codes of `parity report`.
pub const EXIT_CODES: &str = "Exit codes (the verdict of the run reported):
  0  every scenario passed on every implementation and the traces were identical
  1  an expectation failed or the implementations diverged
  3  the run was interrupted or errored, or its summary.json cannot be read or the
     reports cannot be written";

/// Arguments of `parity report`.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// The run folder [default: results/latest-suite, else results/latest].
    pub run: Option<PathBuf>,
}

/// Reprints the run's reports; returns the run's exit code (3 when it cannot be read).
pub fn run(a: ReportArgs) -> i32 {
    report_dir(&a.run.unwrap_or_else(default_report_dir))
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
