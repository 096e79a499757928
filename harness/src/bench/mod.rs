//! `parity bench`: load profiles against direct, both routers, both bare proxies and nginx.
//! Owned by the benchmark work (issue 5); see `scenarios/bench/` and docs/benchmarks.md.
//!
//! A run: start the shared upstream (a separate `parity bench --serve-upstream` process)
//! and every target; closed-loop maximum throughput; the `wrk` cross-check on `direct`;
//! open-loop runs at the reference rate; the open-loop rate ladder; idle keep-alive
//! memory; optionally the hot-path micro-benchmarks. Targets are
//! interleaved (A B C ... A B C ...) within each phase. Results go to
//! `<out>/<run-id>/bench.json`, `report.md`, `report.html` and SVG plots, and
//! `<out>/latest` and `<out>/latest-bench` point at the run.

use crate::util::stats::median;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;

pub mod extras;
pub mod loadgen;
pub mod procs;
pub mod profile;
pub mod report;
pub mod targets;
pub mod upstream;

use profile::{Phase, Profile, RefRate};
use targets::{Absent, Running};

/// Arguments of `parity bench`.
#[derive(Debug, Args)]
#[command(override_usage = "parity bench <PROFILE> [--out DIR] [--bin-dir DIR]")]
pub struct BenchArgs {
    /// Required. The benchmark profile: `quick` (about 60 s, indicative figures), `full`
    /// (about 20 minutes) or the path of a profile file. A bare name is looked up as
    /// scenarios/bench/<name>.yaml in the current directory, then next to this executable
    /// (<exe dir>/../scenarios/bench/).
    #[arg(required_unless_present = "serve_upstream")]
    pub profile: Option<PathBuf>,
    /// Results root; the run goes to <out>/<run-id>/; <out>/latest and <out>/latest-bench
    /// point at it.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// Directory holding go-router, pingora-router, go-bare, pingora-bare
    /// (default: $PARITY_BIN_DIR, else the directory of this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Internal: serve the benchmark upstream on ADDR and print `listening <addr>`.
    #[arg(long, hide = true)]
    pub serve_upstream: Option<String>,
    /// Internal: worker threads of the served upstream.
    #[arg(long, hide = true, default_value_t = 1)]
    pub upstream_threads: usize,
    /// Internal: response body size of the served upstream.
    #[arg(long, hide = true, default_value_t = 64)]
    pub response_bytes: usize,
}

/// Summary statistics of one timed segment (one target, one phase, one repeat).
#[derive(Debug, Clone, Serialize)]
pub struct Seg {
    /// Target name.
    pub target: String,
    /// `closed`, `reference` or `ladder`.
    pub phase: String,
    /// Offered rate (open loop), requests/s.
    pub rate_rps: Option<f64>,
    /// Repeat index.
    pub repeat: usize,
    /// Latency percentiles, microseconds.
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Answered 2xx in the window.
    pub ok: u64,
    /// Failed requests in the window.
    pub errors: u64,
    /// Open loop: requests never answered before the drain deadline.
    pub dropped: u64,
    /// Answered requests per second.
    pub achieved_rps: f64,
    /// CPU (utime+stime of the target's process tree) per answered request, microseconds.
    pub cpu_us_per_req: f64,
    /// Peak and mean RSS of the target's tree during the segment, bytes.
    pub rss_peak_bytes: u64,
    pub rss_mean_bytes: u64,
    /// CPU share of the generator (this process) over the window, per client thread.
    pub generator_cpu_util: f64,
    /// Open loop: p99 of actual minus intended send time, microseconds.
    pub send_lag_p99_us: f64,
}

/// Memory sample of one target.
#[derive(Debug, Clone, Serialize)]
pub struct MemSample {
    /// Seconds since the start of the run.
    pub t: f64,
    /// Target name.
    pub target: String,
    /// Summed RSS of the tree, bytes.
    pub rss_bytes: u64,
}

/// Everything measured in one run; the report is made from it.
pub struct RunData {
    pub run_id: String,
    pub profile: Profile,
    pub repo: PathBuf,
    pub present: Vec<(String, String)>,
    pub absent: Vec<Absent>,
    pub segs: Vec<Seg>,
    /// Reference-rate histograms merged over the repeats, per target.
    pub ref_hists: BTreeMap<String, Histogram<u64>>,
    pub reference_rate: f64,
    pub idle: BTreeMap<String, extras::IdleResult>,
    pub mem: Vec<MemSample>,
    pub tool_check: Option<extras::ToolCheckResult>,
    pub hotpath: extras::Hotpath,
    pub elapsed_secs: f64,
    pub ladder_note: Option<String>,
    /// Seconds since the start when the idle-connection phase began.
    pub idle_start: Option<f64>,
    /// /proc/loadavg (1, 5, 15 min) when the run started.
    pub loadavg_start: String,
    /// Nice value the run had (see `Profile::nice`).
    pub nice: i32,
    pub nofile: u64,
    /// The signal that interrupted the run (a partial report), if any.
    pub interrupted: Option<String>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Progress line on stderr with the elapsed time.
fn progress(t0: Instant, msg: &str) {
    eprintln!("[bench {:6.1}s] {msg}", t0.elapsed().as_secs_f64());
}

fn repo_root(profile: &Path) -> PathBuf {
    let abs = std::fs::canonicalize(profile).unwrap_or_else(|_| profile.to_path_buf());
    for a in abs.ancestors() {
        if a.join("docs/spec.md").is_file() {
            return a.to_path_buf();
        }
    }
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

fn default_bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("PARITY_BIN_DIR") {
        return PathBuf::from(d);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("bin"))
}

/// Resolves the profile argument: an existing path as given; a bare name (`quick`,
/// `full`, with or without `.yaml`) as `scenarios/bench/<name>.yaml` under the current
/// directory, else under `<dir of this executable>/../scenarios/bench/`.
pub fn resolve_profile(arg: &Path) -> Result<PathBuf, String> {
    if arg.is_file() {
        return Ok(arg.to_path_buf());
    }
    let s = arg.to_string_lossy();
    if arg.components().count() == 1 {
        let file = if s.ends_with(".yaml") || s.ends_with(".yml") { s.to_string() } else { format!("{s}.yaml") };
        let mut dirs = vec![PathBuf::from("scenarios/bench")];
        if let Some(exe_dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
            dirs.push(exe_dir.join("../scenarios/bench"));
        }
        for d in &dirs {
            let p = d.join(&file);
            if p.is_file() {
                return Ok(p);
            }
        }
        let tried: Vec<String> = dirs.iter().map(|d| d.join(&file).display().to_string()).collect();
        return Err(format!("no benchmark profile {s:?}: not a file, and not found as {}", tried.join(" or ")));
    }
    Err(format!("no benchmark profile {}: no such file", arg.display()))
}

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
        return upstream::serve_process(addr, args.upstream_threads, args.response_bytes);
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
    let setup = Setup { profile, repo, bin_dir, run_id, out, work, t0, loadavg_start, nofile, nice };
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
                loadavg_start: setup.loadavg_start.clone(),
                nice: setup.nice,
                nofile: setup.nofile,
                interrupted: Some(sig.to_string()),
            };
            match report::write_all(&data, &setup.out) {
                Ok(()) => eprintln!("interrupted: partial report in {}/report.md (bench.json has \"interrupted\": true)", setup.out.display()),
                Err(e) => eprintln!("interrupted: could not write the partial report: {e:#}"),
            }
            Ok(3)
        }
    }
}

/// The measurement itself (everything after the set-up); `partial` follows its progress.
async fn measure(args: &BenchArgs, setup: &Setup, partial: Arc<Mutex<Partial>>) -> anyhow::Result<i32> {
    let Setup { profile, repo, bin_dir, run_id, out, work, t0, loadavg_start, nofile, nice } = setup;
    let (t0, nofile, nice) = (*t0, *nofile, *nice);
    progress(t0, &format!("profile {} -> {}; bin dir {}; RLIMIT_NOFILE {nofile}; nice {nice}", profile.name, out.display(), bin_dir.display()));

    let parity = std::env::current_exe()?;
    let up = targets::start_upstream(&parity, profile.upstream_threads, profile.response_bytes, &work.join("upstream.log")).await?;
    progress(t0, &format!("upstream on {} (pid {})", up.addr, up.pid));

    let env = targets::Env { bin_dir: &bin_dir, work: &work, upstream: up.addr, threads: profile.threads, nofile };
    let mut running: Vec<Running> = Vec::new();
    let mut absent = Vec::new();
    for name in &profile.targets {
        if name == "direct" {
            running.push(Running { name: "direct".into(), addr: up.addr, pid: up.pid, child: None, note: "the upstream itself".into() });
            continue;
        }
        match targets::start(name, &env).await {
            Ok(r) => {
                progress(t0, &format!("{name} ready on {} (pid {})", r.addr, r.pid));
                running.push(r)
            }
            Err(reason) => {
                progress(t0, &format!("{name} absent: {reason}"));
                absent.push(Absent { name: name.clone(), reason })
            }
        }
    }
    {
        let mut p = partial.lock().unwrap();
        p.present = running.iter().map(|r| (r.name.clone(), r.note.clone())).collect();
        p.absent = absent.clone();
    }
    let pids: BTreeMap<String, Vec<i32>> =
        running.iter().map(|r| (r.name.clone(), procs::tree_pids(r.pid))).collect();
    // Kill every process of every target's tree on the way out, even on an error
    // (nginx workers outlive a killed master otherwise).
    let reaper = procs::Reaper(pids.iter().filter(|(n, _)| n.as_str() != "direct").flat_map(|(_, p)| p.clone()).chain([up.pid]).collect());

    // Background memory sampler over every target's tree.
    let mem = Arc::new(Mutex::new(Vec::<MemSample>::new()));
    let sampler = {
        let (mem, pids) = (mem.clone(), pids.clone());
        let period = Duration::from_millis(profile.sample_ms.max(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let t = t0.elapsed().as_secs_f64();
                let mut v = mem.lock().unwrap();
                for (name, p) in &pids {
                    v.push(MemSample { t, target: name.clone(), rss_bytes: procs::usage(p).rss_bytes });
                }
            }
        })
    };

    partial.lock().unwrap().mem = Some(mem.clone());
    let mut ctx = Ctx { t0, profile, pids: &pids, mem: mem.clone(), segs: Vec::new(), ref_hists: BTreeMap::new(), partial: partial.clone() };

    // 1. Closed loop, interleaved.
    for rep in 0..profile.closed_loop.repeats {
        for r in &running {
            ctx.segment(r, "closed", None, rep, &profile.closed_loop).await?;
        }
    }
    let max_rps: BTreeMap<String, f64> = running
        .iter()
        .map(|r| (r.name.clone(), median(ctx.values(&r.name, "closed", None, |s| s.achieved_rps))))
        .collect();

    // 2. The generator against wrk on direct.
    let tool_check = if profile.tool_check.enabled {
        match running.iter().find(|r| r.name == "direct") {
            Some(d) => Some(extras::tool_check(d, profile, &pids["direct"]).await),
            None => None,
        }
    } else {
        None
    };
    if let Some(tc) = &tool_check {
        progress(t0, &format!("tool check: {}", tc.summary()));
    }
    partial.lock().unwrap().tool_check = tool_check.clone();

    // 3. Reference rate.
    let reference_rate = match &profile.reference_rate {
        RefRate::Fixed(x) => *x,
        RefRate::Auto(_) => {
            let pick = |n: &str| max_rps.get(n).copied().filter(|x| *x > 0.0);
            let bare_min = ["go-bare", "pingora-bare"].iter().filter_map(|n| pick(n)).fold(f64::INFINITY, f64::min);
            let any_min = max_rps.iter().filter(|(n, _)| n.as_str() != "direct").map(|(_, v)| *v).fold(f64::INFINITY, f64::min);
            let base = pick("nginx").unwrap_or(if bare_min.is_finite() { bare_min } else { any_min });
            anyhow::ensure!(base.is_finite() && base > 0.0, "no closed-loop rate to derive the reference rate from");
            (base * 0.5).round()
        }
    };
    progress(t0, &format!("reference rate {reference_rate} req/s"));
    partial.lock().unwrap().reference_rate = reference_rate;
    for rep in 0..profile.reference.repeats {
        for r in &running {
            let h = ctx.segment(r, "reference", Some(reference_rate), rep, &profile.reference).await?;
            ctx.ref_hists.entry(r.name.clone()).or_insert_with(loadgen::new_hist).add(h).ok();
        }
    }

    // 4. The ladder, relative to the fastest proxy.
    let ladder_base = max_rps.iter().filter(|(n, _)| n.as_str() != "direct").map(|(_, v)| *v).fold(0.0, f64::max);
    let ladder_base = if ladder_base > 0.0 { ladder_base } else { max_rps.get("direct").copied().unwrap_or(0.0) };
    let mut saturated: BTreeMap<String, bool> = BTreeMap::new();
    let mut ladder_note = None;
    if profile.ladder.phase.repeats > 0 && ladder_base > 0.0 {
        for f in &profile.ladder.fractions {
            let rate = (ladder_base * f).round().max(1.0);
            let left = running.iter().filter(|r| !saturated.get(&r.name).copied().unwrap_or(false)).count();
            let cost = left as f64 * profile.ladder.phase.repeats as f64
                * ((profile.ladder.phase.warmup_ms + profile.ladder.phase.duration_ms) as f64 / 1000.0 + 0.15);
            // Keep room for the idle-connection phase that follows (about 0.5 s per target
            // and 1000 connections, measured on the reference box).
            let idle_reserve = running.len() as f64 * (0.5 + profile.idle_connections as f64 / 2000.0);
            if profile.max_seconds > 0 && t0.elapsed().as_secs_f64() + cost + idle_reserve + 1.5 > profile.max_seconds as f64 {
                let msg = format!("ladder stopped before {rate} req/s: the profile's time budget of {} s", profile.max_seconds);
                progress(t0, &msg);
                partial.lock().unwrap().ladder_note = Some(msg.clone());
                ladder_note = Some(msg);
                break;
            }
            for rep in 0..profile.ladder.phase.repeats {
                for r in running.iter().filter(|r| !saturated.get(&r.name).copied().unwrap_or(false)) {
                    ctx.segment(r, "ladder", Some(rate), rep, &profile.ladder.phase).await?;
                }
            }
            for r in &running {
                if saturated.get(&r.name).copied().unwrap_or(false) {
                    continue;
                }
                let sat = &profile.saturation;
                let ach = median(ctx.values(&r.name, "ladder", Some(rate), |s| s.achieved_rps));
                let p99 = median(ctx.values(&r.name, "ladder", Some(rate), |s| s.p99_us));
                let err = median(ctx.values(&r.name, "ladder", Some(rate), |s| {
                    (s.errors + s.dropped) as f64 / ((s.ok + s.errors + s.dropped).max(1)) as f64
                }));
                if ach < sat.min_achieved * rate || err > sat.max_error_ratio || p99 > sat.max_p99_ms * 1000.0 {
                    progress(t0, &format!("{} saturated at {rate} req/s", r.name));
                    saturated.insert(r.name.clone(), true);
                }
            }
        }
    }

    // 5. Idle keep-alive memory, last: the RSS the idle connections leave behind (allocators
    // rarely give it back) must not inflate the load phases' memory figures.
    let mut idle = BTreeMap::new();
    let idle_start = (profile.idle_connections > 0).then(|| t0.elapsed().as_secs_f64());
    if profile.idle_connections > 0 {
        for r in &running {
            let res = extras::idle_memory(r, &pids[&r.name], profile.idle_connections).await;
            match &res {
                Ok(x) => progress(t0, &format!("idle {}: {} conns, +{} bytes each", r.name, x.connections, x.bytes_per_conn as i64)),
                Err(e) => progress(t0, &format!("idle {}: failed: {e:#}", r.name)),
            }
            idle.insert(r.name.clone(), res.unwrap_or_else(|e| extras::IdleResult::failed(format!("{e:#}"))));
        }
    }

    // 6. Stop the targets, then the slow micro-benchmarks (the box is free again).
    sampler.abort();
    let present: Vec<(String, String)> = running.iter().map(|r| (r.name.clone(), r.note.clone())).collect();
    drop(reaper);
    for mut r in running {
        if let Some(c) = r.child.as_mut() {
            let _ = c.wait().await;
        }
    }
    drop(up);
    let hotpath = if profile.hotpath {
        progress(t0, "hot-path micro-benchmarks (go test -bench, cargo bench -p rust-pingora)");
        extras::run_hotpath(repo, out).await
    } else {
        extras::previous_hotpath(&args.out)
    };

    let data = RunData {
        run_id: run_id.clone(),
        profile: profile.clone(),
        repo: repo.clone(),
        present,
        absent,
        segs: ctx.segs,
        ref_hists: ctx.ref_hists,
        reference_rate,
        idle,
        mem: mem.lock().unwrap().clone(),
        tool_check,
        hotpath,
        elapsed_secs: t0.elapsed().as_secs_f64(),
        ladder_note,
        idle_start,
        loadavg_start: loadavg_start.clone(),
        nice,
        nofile,
        interrupted: None,
    };
    report::write_all(&data, out)?;
    // `latest` is shared with `parity run` (the newest run of either kind);
    // `latest-bench` always names the newest benchmark.
    for link in ["latest", "latest-bench"] {
        let latest = args.out.join(link);
        let _ = std::fs::remove_file(&latest);
        std::os::unix::fs::symlink(run_id, &latest)?;
    }
    progress(t0, &format!("done: {}/report.md ({:.1}s)", out.display(), t0.elapsed().as_secs_f64()));
    Ok(0)
}

struct Ctx<'a> {
    t0: Instant,
    profile: &'a Profile,
    pids: &'a BTreeMap<String, Vec<i32>>,
    mem: Arc<Mutex<Vec<MemSample>>>,
    segs: Vec<Seg>,
    ref_hists: BTreeMap<String, Histogram<u64>>,
    partial: Arc<Mutex<Partial>>,
}

impl Ctx<'_> {
    /// Runs one segment; records its summary and returns its histogram.
    async fn segment(&mut self, r: &Running, phase: &str, rate: Option<f64>, repeat: usize, ph: &Phase) -> anyhow::Result<Histogram<u64>> {
        let pids = self.pids[&r.name].clone();
        let probe: loadgen::Probe = Arc::new(move || procs::usage(&pids).cpu_secs);
        let spec = loadgen::LoadSpec {
            addr: r.addr,
            connections: self.profile.connections,
            rate,
            warmup: Duration::from_millis(ph.warmup_ms),
            duration: Duration::from_millis(ph.duration_ms),
            drain: Duration::from_millis(self.profile.drain_ms),
            routing_key: targets::ROUTING_KEY.into(),
            threads: self.profile.client_threads,
        };
        let ts = self.t0.elapsed().as_secs_f64();
        let res = match loadgen::run(spec, probe).await {
            Ok(r) => r,
            Err(e) => {
                // A target that died or refuses connections: record the failure, go on.
                progress(self.t0, &format!("{phase} #{repeat} {}: run failed: {e:#}", r.name));
                loadgen::LoadResult {
                    hist: loadgen::new_hist(),
                    send_lag: loadgen::new_hist(),
                    ok: 0,
                    errors: self.profile.connections as u64,
                    dropped: 0,
                    achieved_rps: 0.0,
                    window_secs: ph.duration_ms as f64 / 1000.0,
                    probe_delta: f64::NAN,
                    self_cpu_secs: f64::NAN,
                }
            }
        };
        let te = self.t0.elapsed().as_secs_f64();
        let (mut peak, mut sum, mut n) = (0u64, 0u64, 0u64);
        for s in self.mem.lock().unwrap().iter().filter(|s| s.target == r.name && s.t >= ts && s.t <= te) {
            peak = peak.max(s.rss_bytes);
            sum += s.rss_bytes;
            n += 1;
        }
        let h = &res.hist;
        let q = |x: f64| if h.len() > 0 { us(h.value_at_quantile(x)) } else { f64::NAN };
        let seg = Seg {
            target: r.name.clone(),
            phase: phase.into(),
            rate_rps: rate,
            repeat,
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if h.len() > 0 { us(h.max()) } else { f64::NAN },
            ok: res.ok,
            errors: res.errors,
            dropped: res.dropped,
            achieved_rps: res.achieved_rps,
            cpu_us_per_req: if res.ok > 0 { res.probe_delta * 1e6 / res.ok as f64 } else { f64::NAN },
            rss_peak_bytes: peak,
            rss_mean_bytes: if n > 0 { sum / n } else { 0 },
            generator_cpu_util: res.self_cpu_secs / (res.window_secs.max(1e-9) * self.profile.client_threads as f64),
            send_lag_p99_us: if rate.is_some() && res.send_lag.len() > 0 { us(res.send_lag.value_at_quantile(0.99)) } else { f64::NAN },
        };
        progress(
            self.t0,
            &format!(
                "{phase:9} #{repeat} {:12} {:>9} -> {:8.0}/s p50 {:7.0}us p99 {:8.0}us cpu {:5.1}us/req err {} drop {} gen {:3.0}%",
                r.name,
                rate.map(|x| format!("{x:.0}/s")).unwrap_or_else(|| "closed".into()),
                seg.achieved_rps,
                seg.p50_us,
                seg.p99_us,
                seg.cpu_us_per_req,
                seg.errors,
                seg.dropped,
                seg.generator_cpu_util * 100.0
            ),
        );
        self.partial.lock().unwrap().segs.push(seg.clone());
        self.segs.push(seg);
        Ok(res.hist)
    }

    fn values(&self, target: &str, phase: &str, rate: Option<f64>, f: impl Fn(&Seg) -> f64) -> Vec<f64> {
        self.segs
            .iter()
            .filter(|s| s.target == target && s.phase == phase && s.rate_rps == rate)
            .map(f)
            .collect()
    }
}
