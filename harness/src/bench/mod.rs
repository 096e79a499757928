//! `parity bench`: load profiles against direct, both routers, both bare proxies and nginx.
//! Profiles are in `scenarios/bench/`; the method and the report are described in
//! docs/benchmarks.md.
//!
//! A run: start the shared upstream (a separate `parity bench --serve-upstream` process)
//! and every target; closed-loop maximum throughput; the `wrk` cross-check on `direct`;
//! open-loop runs at the reference rate; the open-loop rate ladder; idle keep-alive
//! memory; optionally the hot-path micro-benchmarks. Targets are
//! interleaved (A B C ... A B C ...) within each phase. Results go to
//! `<out>/<run-id>/bench.json`, `report.md`, `report.html` and SVG plots, and
//! `<out>/latest` and `<out>/latest-bench` point at the run.
//!
//! Files: [`args`] (command line, profile lookup), [`profile`] (profile files),
//! [`targets`] (starting the targets), [`upstream`] (the shared upstream), [`loadgen`]
//! (open- and closed-loop load generator), [`procs`] (CPU and memory of process trees),
//! [`measure`] (the phases of a run), [`extras`] (wrk cross-check, idle memory, hot
//! paths), [`multi`] (multi-endpoint placements: instances, the nginx Ketama check and
//! the selection-cost summary), [`scale`] (the concurrency ladder's report part), [`model`] (what a run measured), [`report`] (report.md, report.html, plots).
//! This file: the set-up of a run and its interrupt path.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub mod args;
pub mod extras;
pub mod loadgen;
pub mod measure;
pub mod model;
pub mod multi;
pub mod procs;
pub mod profile;
pub mod report;
pub mod scale;
pub mod targets;
pub mod tls;
pub mod upstream;

pub use args::{resolve_profile, BenchArgs};
pub use model::{MemSample, RunData, Seg};
use args::{default_bin_dir, repo_root};
use measure::measure;
use profile::Profile;
use targets::Absent;

/// What a run has measured so far, shared with the interrupt handler so that an
/// interrupted run can still write a partial report.
#[derive(Default)]
struct Partial {
    present: Vec<(String, String)>,
    absent: Vec<Absent>,
    segs: Vec<Seg>,
    reference_rate: f64,
    tool_check: Option<extras::ToolCheckResult>,
    ladder_note: Option<String>,
    mem: Option<Arc<Mutex<Vec<MemSample>>>>,
}

/// The fixed facts of a run, set up before anything starts.
struct Setup {
    profile: Profile,
    repo: PathBuf,
    bin_dir: PathBuf,
    run_id: String,
    out: PathBuf,
    work: PathBuf,
    t0: Instant,
    loadavg_start: String,
    nofile: u64,
    nice: i32,
    /// CPU isolation: generator and upstream on `load`, targets on `target`.
    cpus: Option<procs::CpuPlan>,
    /// Idle upstream connections of nginx and HAProxy.
    pool: usize,
    /// Targets on other hosts (`--remote`); empty: every target starts here.
    remotes: Vec<args::Remote>,
}

/// Waits for SIGINT, SIGTERM or SIGHUP; returns the signal's name.
async fn interrupt_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

/// Runs a benchmark profile. Returns the process exit code: 0 done, 2 the profile is
/// missing or invalid, 3 a harness failure or an interrupt (SIGINT, SIGTERM, SIGHUP:
/// every started process is killed and a partial report is written).
pub async fn run(args: BenchArgs) -> anyhow::Result<i32> {
    if let Some(addr) = &args.serve_upstream {
        return upstream::serve_process(addr, args.upstream_ports, args.upstream_threads, args.response_bytes);
    }
    let Some(arg) = args.profile.clone() else {
        eprintln!("error: parity bench needs a profile: `quick`, `full` or a profile file (scenarios/bench/*.yaml)");
        return Ok(2);
    };
    let profile_path = match resolve_profile(&arg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    let profile = match Profile::load(&profile_path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(2);
        }
    };
    let remotes = match args.remotes() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(2);
        }
    };
    let repo = repo_root(&profile_path);
    let bin_dir = args.bin_dir.clone().unwrap_or_else(default_bin_dir);
    let bin_dir = std::fs::canonicalize(&bin_dir).unwrap_or(bin_dir);
    let run_id = chrono::Utc::now().format("%Y%m%d-%H%M%S-bench").to_string();
    let out = args.out.join(&run_id);
    let work = out.join("work");
    std::fs::create_dir_all(&work)?;
    let work = std::fs::canonicalize(&work)?;
    let t0 = Instant::now();
    let loadavg_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    let nofile = procs::raise_nofile(1 << 20);
    let nice = procs::set_nice(profile.nice);
    // CPU isolation (issue 14): this process (the generator) and, by inheritance, the
    // upstream on one half of the CPUs; targets are started on the other half.
    let cpus = procs::CpuPlan::for_host();
    if let Some(c) = &cpus {
        let failed = procs::pin_self(&c.load);
        if failed > 0 {
            eprintln!("warning: {failed} thread(s) of parity could not be pinned to CPU {:?}", c.load);
        }
    }
    let pool = args.reference_pool.unwrap_or(targets::UPSTREAM_IDLE_POOL);
    let setup = Setup { profile, repo, bin_dir, run_id, out, work, t0, loadavg_start, nofile, nice, cpus, pool, remotes };
    let partial = Arc::new(Mutex::new(Partial::default()));
    // Every child is in its own process group, registered in procs; this guard kills
    // them all on every way out of here (return, error, panic).
    let _guard = crate::util::procs::GroupGuard;
    tokio::select! {
        r = measure(&args, &setup, partial.clone()) => r,
        sig = interrupt_signal() => {
            crate::util::procs::kill_groups();
            eprintln!("interrupted ({sig}): stopped every started process; writing a partial report");
            let p = std::mem::take(&mut *partial.lock().unwrap_or_else(|e| e.into_inner()));
            let mem = p.mem.map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).clone()).unwrap_or_default();
            let data = RunData {
                run_id: setup.run_id.clone(),
                profile: setup.profile.clone(),
                repo: setup.repo.clone(),
                present: p.present,
                absent: p.absent,
                segs: p.segs,
                ref_hists: BTreeMap::new(),
                reference_rate: p.reference_rate,
                idle: BTreeMap::new(),
                mem,
                tool_check: p.tool_check,
                hotpath: extras::Hotpath { note: "the run was interrupted before them".into(), ..Default::default() },
                elapsed_secs: setup.t0.elapsed().as_secs_f64(),
                ladder_note: p.ladder_note,
                idle_start: None,
                idle_end: None,
                loadavg_start: setup.loadavg_start.clone(),
                nice: setup.nice,
                nofile: setup.nofile,
                interrupted: Some(sig.to_string()),
                cpus: setup.cpus.clone(),
                pool: setup.pool,
                remote: setup.remotes.iter().map(|r| r.name.clone()).collect(),
                tls: None,
            };
            match report::write_all(&data, &setup.out) {
                Ok(()) => eprintln!("interrupted: partial report in {}/report.md (bench.json has \"interrupted\": true)", setup.out.display()),
                Err(e) => eprintln!("interrupted: could not write the partial report: {e:#}"),
            }
            Ok(3)
        }
    }
}

