//! The `parity` command line: one file per command, dispatched from [`Cmd`].
//!
//! Every command returns its process exit code; `main` exits once with it.
pub mod bench;
pub mod chaos;
pub mod fuzz;
pub mod list;
pub mod report;
pub mod run;
pub mod schema;
pub mod selftest;
pub mod soak;
pub mod validate;

use crate::scenario;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

/// Exit codes of `parity run` (also the top-level help).
pub const EXIT_CODES: &str = "Exit codes:
  0  every scenario passed on every implementation and the traces were identical
  1  an expectation failed or the implementations diverged
  2  usage error: a scenario file is invalid or missing, nothing selected, a bad
     --impl/--jobs, an unwritable --junit/--out
  3  the harness itself failed (missing router binary, I/O error) or the run was
     interrupted (SIGINT, SIGTERM, SIGHUP)";

/// The command line.
#[derive(Parser)]
#[command(name = "parity", about = "Run the same failure scenarios against both routers", after_help = EXIT_CODES)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The commands, one file each under `commands/`.
#[derive(Subcommand)]
pub enum Cmd {
    /// Run scenarios against the routers and write results/<run-id>/.
    #[command(after_help = EXIT_CODES)]
    Run(run::RunArgs),
    /// List scenarios: id, tags, description.
    #[command(after_help = list::EXIT_CODES)]
    List(list::ListArgs),
    /// Check scenario files; errors name the file, line and field.
    #[command(after_help = validate::EXIT_CODES)]
    Validate(validate::ValidateArgs),
    /// Print the reports of an earlier run again (and rewrite report.md/html, junit.xml).
    #[command(after_help = report::EXIT_CODES)]
    Report(report::ReportArgs),
    /// Print the JSON Schema of scenario files.
    Schema,
    /// Prove the parity verdict: inject one difference at a time into one run of a pair.
    #[command(after_help = selftest::EXIT_CODES)]
    Selftest(selftest::SelftestArgs),
    /// Benchmark both routers against their bare proxies, nginx and the upstream alone (latency, throughput, CPU, memory).
    Bench(crate::bench::BenchArgs),
    /// Differential fuzzing: generated request and response streams through both routers; divergences shrunk to scenarios.
    #[command(after_help = fuzz::EXIT_CODES)]
    Fuzz(fuzz::FuzzArgs),
    /// Soak: each router for N seconds under load with config swaps, endpoint flaps, breaker trips and control-plane drops; lost requests and resource slopes.
    #[command(after_help = soak::EXIT_CODES)]
    Soak(soak::SoakArgs),
    /// Chaos: random schedules of config pushes, upstream faults, toxics, control-plane loss and restarts under load, the same on both routers; invariants and parity, failures shrunk to scenarios.
    #[command(after_help = chaos::EXIT_CODES)]
    Chaos(chaos::ChaosArgs),
}

/// Runs one command; returns the process exit code.
pub async fn dispatch(cmd: Cmd) -> i32 {
    match cmd {
        Cmd::Run(a) => run::run(a).await,
        Cmd::List(a) => list::run(a),
        Cmd::Validate(a) => validate::run(a),
        Cmd::Report(a) => report::run(a),
        Cmd::Schema => schema::run(),
        Cmd::Selftest(a) => selftest::run(a).await,
        Cmd::Bench(a) => bench::run(a).await,
        Cmd::Fuzz(a) => fuzz::run(a).await,
        Cmd::Soak(a) => soak::run(a).await,
        Cmd::Chaos(a) => chaos::run(a).await,
    }
}

/// The default scenarios folder: `./scenarios` when it exists, else `scenarios/` next
/// to the folder of this executable (`bin/parity` sits in the repository root, so that
/// is `<repo>/scenarios`); the error says where it looked.
pub fn default_scenarios_dir() -> Result<PathBuf, String> {
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

/// Resolves targets (files, folders, id globs) and tags; prints errors and returns exit
/// code 2 on an invalid file or a target that matches nothing.
pub fn select(targets: &[String], tags: &[String]) -> Result<Vec<scenario::Loaded>, i32> {
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

/// A target naming a file rather than an id glob: it has a `/` or a YAML extension.
pub fn looks_like_path(t: &str) -> bool {
    t.contains('/') || t.ends_with(".yaml") || t.ends_with(".yml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_like_targets_are_not_globs() {
        assert!(looks_like_path("/tmp/does-not-exist.yaml"));
        assert!(looks_like_path("x.yml"));
        assert!(looks_like_path("scenarios/"));
        assert!(!looks_like_path("breaker-*"));
        assert!(!looks_like_path("routing-basics"));
    }
}
