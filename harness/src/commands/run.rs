//! `parity run`: checks the arguments, selects the scenarios, prepares the results
//! folder and hands the rest to the [`suite`](crate::suite) scheduler. SIGINT, SIGTERM
//! and SIGHUP end a run with every router killed and the partial results kept (exit 3).
use crate::{env, suite};
use std::path::{Path, PathBuf};

/// Arguments of `parity run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Scenario files, folders (any location) or id globs such as `breaker-*`
    /// (matched against scenarios/). Default: scenarios/.
    pub targets: Vec<String>,
    /// Implementations, comma separated: go, pingora.
    #[arg(long = "impl", value_delimiter = ',', default_value = "go,pingora")]
    pub impls: Vec<String>,
    /// Only scenarios with this tag (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Results root: the run goes to <out>/<run-id>/, <out>/latest points at it.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Also write the JUnit XML here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Scenario × implementation runs at a time.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Where go-router and pingora-router are (default: $PARITY_BIN_DIR, the folder of
    /// this executable, ./bin).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Run only slice i of n of the selected scenarios (e.g. `2/4`), for a CI job matrix;
    /// merge the slices' folders afterwards with `parity report A B ...`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<crate::shard::Shard>,
    /// Client transport: run every selected scenario that applies to it over it (h1,
    /// h1+tls, h2+tls; docs/scenarios.md "Transports"). Default: each scenario over the
    /// first of its own `transports` (h1 when it names none).
    #[arg(long, value_enum)]
    pub transport: Option<crate::tls::Transport>,
}

/// Runs the suite until it ends or a signal arrives; returns the exit code.
pub async fn run(a: RunArgs) -> i32 {
    tokio::select! {
        c = prepare_and_run(a) => c,
        sig = shutdown_signal() => {
            env::kill_all();
            let kept = suite::write_interrupted();
            eprintln!("interrupted ({sig}): every router process was killed; partial results are kept{kept}");
            3
        }
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

/// Checks `--impl`: every name must be `go` or `pingora`; duplicates are dropped (a
/// second run of the same implementation would overwrite the first's results).
pub fn parse_impls(raw: &[String]) -> Result<Vec<String>, String> {
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

async fn prepare_and_run(mut a: RunArgs) -> i32 {
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
    let list = match super::select(&a.targets, &a.tag) {
        Ok(l) => l,
        Err(c) => return c,
    };
    if list.is_empty() {
        eprintln!("no scenario selected");
        return 2;
    }
    let list: Vec<_> = match a.transport {
        Some(t) => {
            let n = list.len();
            let kept: Vec<_> = list.into_iter().filter(|l| crate::tls::applies(&l.scenario, t)).collect();
            eprintln!("--transport {t}: {} of the {n} selected scenarios apply", kept.len());
            if kept.is_empty() {
                eprintln!("no scenario selected");
                return 2;
            }
            kept
        }
        None => list,
    };
    let list = match a.shard {
        Some(sh) => {
            let n = list.len();
            let part = sh.take(list);
            if part.is_empty() {
                // More slices than scenarios: an empty slice is a valid, passing piece of
                // the matrix (its summary records the slice so the merge sees it).
                eprintln!("shard {sh}: no scenario of the {n} selected falls in this slice");
            }
            part
        }
        None => list,
    };
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
    suite::run(suite::Suite { list, impls: a.impls, jobs: a.jobs, bin_dir, dir, run_id, started, junit: a.junit, shard: a.shard, transport: a.transport }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
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
