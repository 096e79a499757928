//! `parity fuzz`: differential fuzzing of both routers ([`crate::fuzz`], `docs/fuzzing.md`).
use crate::fuzz::catalogue::Catalogue;
use crate::fuzz::findings::{self, RunFigures};
use crate::fuzz::runner::{self, Progress, RunOpts};
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit codes of `parity fuzz`.
pub const EXIT_CODES: &str = "Exit codes:
  0  no undocumented divergence and no broken invariant
  1  at least one finding (results/<run>/findings/)
  2  usage error (bad --time, --impls, unreadable spec/divergences.yaml)
  3  the harness failed (a router did not start)";

/// Arguments of `parity fuzz`.
#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// Seed: the same seed gives the same cases.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this long (`60s`, `30m`, `1h`); default: until interrupted or --cases.
    #[arg(long)]
    pub time: Option<String>,
    /// Stop after this many cases.
    #[arg(long)]
    pub cases: Option<u64>,
    /// Index of the first case (cases are generated from the seed and their index alone):
    /// `--from 66016 --cases 1` runs a finding's original case again.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Results folder; the run writes <out>/fuzz-<time>-seed<N>/.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Implementations, comma-separated (two: differential; one: invariants only).
    #[arg(long, default_value = "go,pingora")]
    pub impls: String,
    /// Where the router binaries are (default: PARITY_BIN_DIR, beside parity, ./bin).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Cases in flight per router.
    #[arg(long, default_value_t = 48)]
    pub concurrency: usize,
    /// Cases per batch (metrics are compared per batch).
    #[arg(long, default_value_t = 384)]
    pub batch: usize,
    /// The documented divergences (default: spec/divergences.yaml).
    #[arg(long)]
    pub divergences: Option<PathBuf>,
    /// Most shrink steps per finding kind.
    #[arg(long, default_value_t = 200)]
    pub shrink_steps: u32,
    /// Most time spent shrinking one kind (also after --time is over).
    #[arg(long, default_value = "20s")]
    pub shrink_time: String,
}

/// Parses `90`, `90s`, `30m`, `2h`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1000)
    };
    let v: u64 = num.trim().parse().map_err(|_| format!("bad duration {s:?} (e.g. 60s, 30m, 1h)"))?;
    Ok(Duration::from_millis(v * mult_ms))
}

fn default_catalogue() -> PathBuf {
    let here = PathBuf::from("spec/divergences.yaml");
    if here.exists() {
        return here;
    }
    std::env::current_exe().ok().and_then(|e| e.parent().and_then(|d| d.parent()).map(|r| r.join("spec/divergences.yaml"))).unwrap_or(here)
}

/// Runs `parity fuzz`; returns the exit code.
pub async fn run(a: FuzzArgs) -> i32 {
    let time = match a.time.as_deref().map(parse_duration).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --time: {e}");
            return 2;
        }
    };
    let shrink_time = match parse_duration(&a.shrink_time) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --shrink-time: {e}");
            return 2;
        }
    };
    let impls: Vec<String> = a.impls.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if impls.is_empty() || impls.len() > 2 || impls.iter().any(|i| crate::env::binary_name(i).is_none()) {
        eprintln!("error: --impls takes go, pingora or go,pingora (got {:?})", a.impls);
        return 2;
    }
    if a.concurrency == 0 || a.batch == 0 {
        eprintln!("error: --concurrency and --batch must be at least 1");
        return 2;
    }
    let cat_path = a.divergences.clone().unwrap_or_else(default_catalogue);
    let catalogue = match Catalogue::load(&cat_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 2;
        }
    };
    let dir = a.out.join(format!("fuzz-{}-seed{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), a.seed));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: --out {}: {e}", dir.display());
        return 2;
    }
    let _guard = crate::util::procs::GroupGuard;
    let opts = RunOpts {
        seed: a.seed,
        time,
        cases: a.cases,
        from: a.from,
        dir: dir.clone(),
        impls: impls.clone(),
        bin_dir: crate::env::find_bin_dir(a.bin_dir.clone()),
        batch: a.batch,
        concurrency: a.concurrency,
        catalogue,
        shrink_steps: a.shrink_steps,
        shrink_time,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    let load0 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let t0 = Instant::now();
    eprintln!(
        "parity fuzz: seed {} impls {} catalogue {} ({} documented divergences) -> {}",
        a.seed,
        impls.join(","),
        cat_path.display(),
        opts.catalogue.entries.len(),
        dir.display()
    );
    let s2 = stop.clone();
    let sig = tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("\ninterrupted: writing the findings so far");
        s2.store(true, Ordering::SeqCst);
    });
    let p2 = progress.clone();
    let ticker = tokio::spawn(async move {
        let mut iv = tokio::time::interval(Duration::from_secs(2));
        iv.tick().await;
        loop {
            iv.tick().await;
            eprintln!("{}", runner::progress_line(&p2, t0));
        }
    });
    let res = runner::run(opts, stop.clone(), progress.clone()).await;
    ticker.abort();
    sig.abort();
    let (mut store, routers) = match res {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 3;
        }
    };
    let mut restarts = std::collections::BTreeMap::new();
    for r in &routers {
        restarts.insert(r.imp.clone(), r.restarts.load(Ordering::SeqCst));
        r.stop().await;
    }
    let cases = progress.cases.load(Ordering::SeqCst);
    let wall = t0.elapsed().as_secs_f64();
    let fuzz_s = progress.fuzz_us.load(Ordering::SeqCst) as f64 / 1e6;
    let fig = RunFigures {
        seed: a.seed,
        impls,
        cases,
        wall_s: wall,
        fuzz_s,
        rate: cases as f64 / wall.max(0.001),
        fuzz_rate: cases as f64 / fuzz_s.max(0.001),
        load: (load0.split_whitespace().take(3).collect::<Vec<_>>().join(" "), std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
        restarts,
        interrupted: stop.load(Ordering::SeqCst),
    };
    let written = findings::write_findings(&dir, &mut store).and_then(|w| findings::write_summary(&dir, &store, &fig).map(|_| w));
    match written {
        Ok(files) => {
            for f in files {
                eprintln!("finding: {}", f.display());
            }
        }
        Err(e) => {
            eprintln!("error: writing findings: {e:#}");
            return 3;
        }
    }
    println!(
        "parity fuzz seed {}: {} cases per router in {:.0} s = {:.0} cases/s per router ({:.0}/s while fuzzing), load {} -> {}",
        fig.seed, fig.cases, fig.wall_s, fig.rate, fig.fuzz_rate, fig.load.0, fig.load.1
    );
    println!("{}", store.short());
    println!("summary: {}", dir.join("summary.md").display());
    if store.undocumented() > 0 {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("x").is_err());
    }
}
