//! The measurement of a benchmark run, phase by phase: start the upstream and the
//! targets, closed-loop maximum throughput, the `wrk` cross-check, open-loop runs at the
//! reference rate, the open-loop rate ladder, idle keep-alive memory, the concurrency
//! ladder (the order: [`plan`]), then stop the targets and run (or reuse) the hot-path
//! micro-benchmarks. Targets are interleaved (A B C ... A B C ...) within each phase.
use super::model::{MemSample, RunData, Seg};
use super::profile::{Phase, Profile, RefRate};
use super::targets::{Absent, Running};
use super::{extras, loadgen, procs, report, targets, BenchArgs, Partial, Setup};
use crate::util::stats::median;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Progress line on stderr with the elapsed time.
pub(super) fn progress(t0: Instant, msg: &str) {
    eprintln!("[bench {:6.1}s] {msg}", t0.elapsed().as_secs_f64());
}

/// The measurement itself (everything after the set-up); `partial` follows its progress.
pub(super) async fn measure(args: &BenchArgs, setup: &Setup, partial: Arc<Mutex<Partial>>) -> anyhow::Result<i32> {
    let Setup { profile, repo, bin_dir, run_id, out, work, t0, loadavg_start, nofile, nice, cpus, pool, remotes } = setup;
    let (t0, nofile, nice) = (*t0, *nofile, *nice);
    progress(t0, &format!("profile {} -> {}; bin dir {}; RLIMIT_NOFILE {nofile}; nice {nice}; CPUs: {}", profile.name, out.display(), bin_dir.display(), procs::CpuPlan::describe(cpus.as_ref())));

    let parity = std::env::current_exe()?;
    let ports = profile.multi_endpoint.as_ref().and_then(|m| m.endpoints.iter().max().copied()).unwrap_or(1);
    let load_cpus = cpus.as_ref().map(|c| c.load.as_slice());
    // The shared upstream: `direct` and every multi-endpoint instance. Single-endpoint
    // targets each get their own upstream process (below), so that the idle pools one
    // target keeps never take descriptors another one needs, and each accept count is
    // one target's.
    let (up, up_addrs) = if remotes.is_empty() {
        targets::start_upstream(&parity, ports, profile.upstream_threads, profile.response_bytes, &work.join("upstream.log"), load_cpus).await?
    } else {
        // Nothing runs here but the generator: a stand-in that is never loaded.
        targets::start_upstream(&parity, 1, 1, profile.response_bytes, &work.join("upstream.log"), load_cpus).await?
    };
    progress(t0, &format!("upstream on {} (pid {}, {} ports)", up.addr, up.pid, up_addrs.len()));
    let env = targets::Env { bin_dir, work, upstream: up.addr, threads: profile.threads, nofile, cpus: cpus.as_ref().map(|c| c.target.clone()), load_cpus: cpus.as_ref().map(|c| c.load.clone()), pool: *pool };
    let (running, absent) = if remotes.is_empty() {
        start_targets(profile, &env, &up, &up_addrs, &parity, t0).await
    } else {
        remote_targets(remotes, args.remote_upstream.as_deref(), t0).await?
    };
    {
        let mut p = partial.lock().unwrap();
        p.present = running.iter().map(|r| (r.name.clone(), r.note.clone())).collect();
        p.absent = absent.clone();
    }
    let pids: BTreeMap<String, Vec<i32>> =
        running.iter().map(|r| (r.name.clone(), if r.remote { Vec::new() } else { procs::tree_pids(r.pid) })).collect();
    // Kill every process of every target's tree on the way out, even on an error
    // (nginx workers outlive a killed master otherwise).
    let reaper = procs::Reaper(
        pids.iter()
            .filter(|(n, _)| n.as_str() != "direct")
            .flat_map(|(_, p)| p.clone())
            .chain([up.pid])
            .chain(running.iter().filter_map(|r| r.upstream.as_ref().map(|u| u.pid)))
            .collect(),
    );
    let mem = Arc::new(Mutex::new(Vec::<MemSample>::new()));
    let sampler = start_sampler(mem.clone(), pids.clone(), Duration::from_millis(profile.sample_ms.max(10)), t0);
    partial.lock().unwrap().mem = Some(mem.clone());
    let upstreams: BTreeMap<String, Option<std::net::SocketAddr>> = running.iter().map(|r| (r.name.clone(), r.upstream_addr)).collect();
    let mut ctx = Ctx { t0, profile, pids: &pids, upstreams: &upstreams, mem: mem.clone(), segs: Vec::new(), ref_hists: BTreeMap::new(), partial: partial.clone() };

    let (mut max_rps, mut tool_check_res, mut reference_rate_v, mut ladder_note) = (BTreeMap::new(), None, 0.0, None);
    let (mut idle, mut idle_start, mut idle_end, mut ketama) = (BTreeMap::new(), None, None, None);
    let mut tls_results = None;
    for step in plan(profile) {
        match step {
            Step::ClosedLoop => max_rps = closed_loop(&mut ctx, &running).await?,
            Step::ToolCheck => {
                tool_check_res = tool_check(profile, &running, &pids, t0).await;
                partial.lock().unwrap().tool_check = tool_check_res.clone();
            }
            Step::Reference => {
                reference_rate_v = reference_rate(&profile.reference_rate, &max_rps)?;
                progress(t0, &format!("reference rate {reference_rate_v} req/s"));
                partial.lock().unwrap().reference_rate = reference_rate_v;
                for rep in 0..profile.reference.repeats {
                    for r in &running {
                        let h = ctx.segment(r, "reference", Some(reference_rate_v), rep, &profile.reference).await?;
                        ctx.ref_hists.entry(r.name.clone()).or_insert_with(loadgen::new_hist).add(h).ok();
                    }
                }
            }
            Step::RateLadder => ladder_note = ladder(&mut ctx, &running, &max_rps).await?,
            Step::IdleMemory => {
                idle_start = Some(t0.elapsed().as_secs_f64());
                idle = idle_memory(profile, &running, &pids, t0).await;
                idle_end = Some(t0.elapsed().as_secs_f64());
            }
            Step::ConcurrencyLadder => {
                if let Some(c) = &profile.concurrency {
                    concurrency_ladder(&mut ctx, &running, c).await?;
                }
            }
            Step::Ketama => {
                if let Some(m) = &profile.multi_endpoint {
                    let k = super::multi::ketama_check(m, &running).await;
                    for a in &k.agreements {
                        progress(t0, &format!("ketama n={} {}: same endpoint for {}/{} keys", a.n, a.pair, a.same, a.keys));
                    }
                    ketama = Some(k);
                }
            }
            Step::Tls => {
                if let Some(tp) = &profile.tls {
                    tls_results = Some(tls_phase(tp, &env, t0).await?);
                }
            }
        }
    }
    let (tool_check, reference_rate) = (tool_check_res, reference_rate_v);

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
        idle_end,
        loadavg_start: loadavg_start.clone(),
        nice,
        nofile,
        interrupted: None,
        cpus: cpus.clone(),
        pool: *pool,
        remote: remotes.iter().map(|r| r.name.clone()).collect(),
        tls: tls_results,
    };
    report::write_all(&data, out)?;
    if let (Some(m), Some(k)) = (&profile.multi_endpoint, &ketama) {
        super::multi::write(&data, m, k, out)?;
    }
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

/// One phase of a run that talks to the running targets; [`plan`] gives their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Closed-loop maximum throughput per target.
    ClosedLoop,
    /// Our generator against `wrk` on `direct` (when the profile enables it).
    ToolCheck,
    /// Open loop at the reference rate (needs [`Step::ClosedLoop`]'s maxima).
    Reference,
    /// The open-loop rate ladder (needs [`Step::ClosedLoop`]'s maxima).
    RateLadder,
    /// Idle keep-alive memory: `idle_connections` connections held idle.
    IdleMemory,
    /// The concurrency ladder (issue 14), up to 10,000 client connections.
    ConcurrencyLadder,
    /// Multi-endpoint profiles: the routers' Ketama choices against nginx's.
    Ketama,
    /// The TLS and HTTP/2 phase (issue 15): TLS instances of the targets, started for it.
    Tls,
}

/// The phases a run of `profile` goes through, in order. The idle-memory phase comes after
/// the 32-connection load phases (so the RSS 10,000 idle connections leave behind does not
/// inflate their figures) and *before* the concurrency ladder: after its 10,000-connection
/// rung the allocators keep that heap, and new idle connections then cost ~0 bytes of RSS
/// each, which measures nothing. (The ladder's low rungs' RSS includes what the idle phase
/// left behind; docs/benchmarks.md says so.)
pub fn plan(profile: &Profile) -> Vec<Step> {
    let mut steps = vec![Step::ClosedLoop];
    if profile.tool_check.enabled {
        steps.push(Step::ToolCheck);
    }
    steps.push(Step::Reference);
    if profile.ladder.phase.repeats > 0 {
        steps.push(Step::RateLadder);
    }
    if profile.idle_connections > 0 {
        steps.push(Step::IdleMemory);
    }
    if profile.concurrency.is_some() {
        steps.push(Step::ConcurrencyLadder);
    }
    if profile.multi_endpoint.is_some() {
        steps.push(Step::Ketama);
    }
    if profile.tls.is_some() {
        steps.push(Step::Tls);
    }
    steps
}

/// Starts every target of the profile (`direct` is the upstream itself); a target that
/// cannot start is absent, with the reason. A multi-endpoint profile starts, after
/// `direct`, one instance per selection, endpoint count and target
/// ([`super::multi::instances`]) on the first `n` of `up_addrs`.
async fn start_targets(profile: &Profile, env: &targets::Env<'_>, up: &Running, up_addrs: &[std::net::SocketAddr], parity: &std::path::Path, t0: Instant) -> (Vec<Running>, Vec<Absent>) {
    let mut running: Vec<Running> = Vec::new();
    let mut absent = Vec::new();
    if let Some(m) = &profile.multi_endpoint {
        if profile.targets.iter().any(|t| t == "direct") {
            running.push(Running { name: "direct".into(), addr: up.addr, pid: up.pid, child: None, note: "the upstream itself (first port)".into(), upstream: None, upstream_addr: Some(up.addr), remote: false, max_conns: None });
        }
        for inst in super::multi::instances(profile, m) {
            let p = targets::Placement { endpoints: up_addrs[..inst.n].to_vec(), selection: Some(inst.selection) };
            match targets::start_with(&inst.name, &inst.base, &p, env).await {
                Ok(r) => {
                    progress(t0, &format!("{} ready on {} (pid {})", inst.name, r.addr, r.pid));
                    running.push(r)
                }
                Err(reason) => {
                    progress(t0, &format!("{} absent: {reason}", inst.name));
                    absent.push(Absent { name: inst.name.clone(), reason })
                }
            }
        }
        return (running, absent);
    }
    for name in &profile.targets {
        if name == "direct" {
            running.push(Running { name: "direct".into(), addr: up.addr, pid: up.pid, child: None, note: "the upstream itself".into(), upstream: None, upstream_addr: Some(up.addr), remote: false, max_conns: None });
            continue;
        }
        // The target's own upstream, on the generator's CPUs like the shared one.
        let log = env.work.join(format!("upstream-{name}.log"));
        let own = match targets::start_upstream(parity, 1, profile.upstream_threads, profile.response_bytes, &log, env.load_cpus.as_deref()).await {
            Ok((u, _)) => u,
            Err(e) => {
                progress(t0, &format!("{name} absent: its upstream did not start: {e:#}"));
                absent.push(Absent { name: name.clone(), reason: format!("its upstream did not start: {e:#}") });
                continue;
            }
        };
        let env_own = targets::Env {
            bin_dir: env.bin_dir,
            work: env.work,
            upstream: own.addr,
            threads: env.threads,
            nofile: env.nofile,
            cpus: env.cpus.clone(),
            load_cpus: env.load_cpus.clone(),
            pool: env.pool,
        };
        match targets::start(name, &env_own).await {
            Ok(mut r) => {
                progress(t0, &format!("{name} ready on {} (pid {}; its upstream {} pid {})", r.addr, r.pid, own.addr, own.pid));
                let Running { addr, pid, child, .. } = own;
                r.upstream = child.map(|child| targets::UpstreamProc { addr, pid, child });
                r.upstream_addr = Some(addr);
                running.push(r)
            }
            Err(reason) => {
                progress(t0, &format!("{name} absent: {reason}"));
                absent.push(Absent { name: name.clone(), reason })
            }
        }
    }
    (running, absent)
}

/// The TLS and HTTP/2 phase (issue 15): generates the certificate, starts a TLS instance
/// of every target of `tp` on the shared upstream (same threads and CPUs as the plain
/// ones; a target that cannot do TLS here is absent with its reason), measures the modes
/// with the targets interleaved per mode and repeat, then stops the instances.
async fn tls_phase(tp: &super::tls::TlsProfile, env: &targets::Env<'_>, t0: Instant) -> anyhow::Result<super::tls::TlsResults> {
    use super::tls::{self, Mode};
    let certs = tls::make_certs(&env.work.join("tls"))?;
    let mut res = tls::TlsResults::default();
    let mut running = Vec::new();
    for name in &tp.targets {
        match targets::start_tls(&format!("{name}+tls"), name, env, &certs).await {
            Ok(r) => {
                progress(t0, &format!("{name} (TLS) ready on {} (pid {})", r.addr, r.pid));
                res.present.push((name.clone(), r.note.clone()));
                running.push((name.clone(), r));
            }
            Err(reason) => {
                progress(t0, &format!("{name} (TLS) absent: {reason}"));
                res.absent.push(Absent { name: name.clone(), reason });
            }
        }
    }
    let pids: Vec<Vec<i32>> = running.iter().map(|(_, r)| procs::tree_pids(r.pid)).collect();
    let reaper = procs::Reaper(pids.concat());
    for rep in 0..tp.phase.repeats {
        for mode in Mode::ALL {
            for ((name, r), p) in running.iter().zip(&pids) {
                let s = tls::measure(name, r.addr, p, mode, rep, tp, &certs.roots).await;
                progress(t0, &format!("tls {name} {} #{rep}: {:.0}/s, {:.1} us CPU each, {} errors{}", mode.as_str(), s.per_sec, s.cpu_us_per_op, s.errors, s.resumed_share.map(|x| format!(", {:.0}% resumed", x * 100.0)).unwrap_or_default()));
                res.segs.push(s);
            }
        }
    }
    drop(reaper);
    for (_, mut r) in running {
        if let Some(c) = r.child.as_mut() {
            let _ = c.wait().await;
        }
    }
    Ok(res)
}

/// Background memory sampler over every target's tree, every `period`.
fn start_sampler(mem: Arc<Mutex<Vec<MemSample>>>, pids: BTreeMap<String, Vec<i32>>, period: Duration, t0: Instant) -> tokio::task::JoinHandle<()> {
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
}

/// Closed-loop maximum throughput, interleaved; the median achieved rate per target.
async fn closed_loop(ctx: &mut Ctx<'_>, running: &[Running]) -> anyhow::Result<BTreeMap<String, f64>> {
    let profile = ctx.profile;
    for rep in 0..profile.closed_loop.repeats {
        for r in running {
            ctx.segment(r, "closed", None, rep, &profile.closed_loop).await?;
        }
    }
    Ok(running.iter().map(|r| (r.name.clone(), median(ctx.values(&r.name, "closed", None, |s| s.achieved_rps)))).collect())
}

/// The generator against `wrk` on `direct`, when the profile asks for it.
async fn tool_check(profile: &Profile, running: &[Running], pids: &BTreeMap<String, Vec<i32>>, t0: Instant) -> Option<extras::ToolCheckResult> {
    if !profile.tool_check.enabled {
        return None;
    }
    let d = running.iter().find(|r| r.name == "direct")?;
    let tc = extras::tool_check(d, profile, &pids["direct"]).await;
    progress(t0, &format!("tool check: {}", tc.summary()));
    Some(tc)
}

/// The open-loop reference rate: fixed by the profile, or (`auto`) half of nginx's
/// closed-loop maximum, else of the slower bare proxy, else of the slowest target other
/// than `direct`, rounded to a whole req/s.
///
/// # Errors
/// `auto` with no positive closed-loop rate to derive it from.
pub fn reference_rate(rule: &RefRate, max_rps: &BTreeMap<String, f64>) -> anyhow::Result<f64> {
    Ok(match rule {
        RefRate::Fixed(x) => *x,
        RefRate::Auto(_) => {
            let pick = |n: &str| max_rps.get(n).copied().filter(|x| *x > 0.0);
            let bare_min = ["go-bare", "pingora-bare"].iter().filter_map(|n| pick(n)).fold(f64::INFINITY, f64::min);
            let any_min = max_rps.iter().filter(|(n, _)| n.as_str() != "direct").map(|(_, v)| *v).fold(f64::INFINITY, f64::min);
            let base = pick("nginx").unwrap_or(if bare_min.is_finite() { bare_min } else { any_min });
            anyhow::ensure!(base.is_finite() && base > 0.0, "no closed-loop rate to derive the reference rate from");
            (base * 0.5).round()
        }
    })
}

/// The open-loop rate ladder at fractions of the fastest proxy's closed-loop rate; a
/// target leaves the ladder once saturated. Returns a note when the profile's time
/// budget stopped it early.
async fn ladder(ctx: &mut Ctx<'_>, running: &[Running], max_rps: &BTreeMap<String, f64>) -> anyhow::Result<Option<String>> {
    let (profile, t0) = (ctx.profile, ctx.t0);
    let ladder_base = max_rps.iter().filter(|(n, _)| n.as_str() != "direct").map(|(_, v)| *v).fold(0.0, f64::max);
    let ladder_base = if ladder_base > 0.0 { ladder_base } else { max_rps.get("direct").copied().unwrap_or(0.0) };
    let mut saturated: BTreeMap<String, bool> = BTreeMap::new();
    if profile.ladder.phase.repeats == 0 || ladder_base <= 0.0 {
        return Ok(None);
    }
    for f in &profile.ladder.fractions {
        let rate = (ladder_base * f).round().max(1.0);
        let left = running.iter().filter(|r| !saturated.get(&r.name).copied().unwrap_or(false)).count();
        let cost = left as f64 * profile.ladder.phase.repeats as f64
            * ((profile.ladder.phase.warmup_ms + profile.ladder.phase.duration_ms) as f64 / 1000.0 + 0.15);
        // Keep room for the idle-connection phase that follows (about 0.5 s per target
        // and 1000 connections, measured on the reference box).
        let idle_reserve = running.len() as f64 * (0.5 + profile.idle_connections as f64 / 2000.0)
            + profile.concurrency.as_ref().map_or(0.0, |c| concurrency_cost(c, running.len()));
        if profile.max_seconds > 0 && t0.elapsed().as_secs_f64() + cost + idle_reserve + 1.5 > profile.max_seconds as f64 {
            let msg = format!("ladder stopped before {rate} req/s: the profile's time budget of {} s", profile.max_seconds);
            progress(t0, &msg);
            ctx.partial.lock().unwrap().ladder_note = Some(msg.clone());
            return Ok(Some(msg));
        }
        for rep in 0..profile.ladder.phase.repeats {
            for r in running.iter().filter(|r| !saturated.get(&r.name).copied().unwrap_or(false)) {
                ctx.segment(r, "ladder", Some(rate), rep, &profile.ladder.phase).await?;
            }
        }
        for r in running {
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
    Ok(None)
}

/// Idle keep-alive memory per target (nothing when the profile asks for no connections).
async fn idle_memory(profile: &Profile, running: &[Running], pids: &BTreeMap<String, Vec<i32>>, t0: Instant) -> BTreeMap<String, extras::IdleResult> {
    let mut idle = BTreeMap::new();
    if profile.idle_connections == 0 {
        return idle;
    }
    for r in running {
        if r.remote {
            idle.insert(r.name.clone(), extras::IdleResult::failed("remote target: its RSS is not readable from here".into()));
            continue;
        }
        let res = extras::idle_memory(r, &pids[&r.name], profile.idle_connections.min(r.max_conns.map_or(usize::MAX, |m| m.saturating_sub(64)))).await;
        match &res {
            Ok(x) => progress(t0, &format!("idle {}: {} conns, +{} bytes each", r.name, x.connections, x.bytes_per_conn as i64)),
            Err(e) => progress(t0, &format!("idle {}: failed: {e:#}", r.name)),
        }
        idle.insert(r.name.clone(), res.unwrap_or_else(|e| extras::IdleResult::failed(format!("{e:#}"))));
    }
    idle
}

/// The concurrency ladder (issue 14): per rung (client connections), closed loop for
/// every target (interleaved, `repeats` times), then open loop at each fraction of *that
/// target's* median maximum at the rung, then (for the comparison at one offered rate)
/// open loop at half of the slowest proxy's maximum at the rung (phase `scale-common`).
/// Segment phases: `scale-closed`, `scale-open`, `scale-common`; `Seg::connections` is
/// the rung.
async fn concurrency_ladder(ctx: &mut Ctx<'_>, running: &[Running], c: &super::profile::Concurrency) -> anyhow::Result<()> {
    let t0 = ctx.t0;
    for &conns in &c.connections {
        progress(t0, &format!("concurrency ladder: {conns} connections"));
        for rep in 0..c.phase.repeats {
            for r in running {
                ctx.segment_with(r, "scale-closed", None, rep, &c.phase, conns, None).await?;
            }
        }
        let max_at = |ctx: &Ctx<'_>, name: &str| {
            median(ctx.segs.iter().filter(|s| s.target == name && s.phase == "scale-closed" && s.connections == conns).map(|s| s.achieved_rps).collect())
        };
        for &f in &c.fractions {
            for rep in 0..c.phase.repeats {
                for r in running {
                    let max = max_at(ctx, &r.name);
                    if !(max > 0.0) {
                        continue;
                    }
                    let rate = (max * f).round().max(1.0);
                    ctx.segment_with(r, "scale-open", Some(rate), rep, &c.phase, conns, Some(f)).await?;
                }
            }
        }
        // One offered rate for every target: half of the slowest proxy's maximum here.
        let slowest = running.iter().filter(|r| r.name != "direct").map(|r| max_at(ctx, &r.name)).filter(|m| *m > 0.0).fold(f64::INFINITY, f64::min);
        if slowest.is_finite() {
            let rate = (slowest * COMMON_FRACTION).round().max(1.0);
            for rep in 0..c.phase.repeats {
                for r in running {
                    ctx.segment_with(r, "scale-common", Some(rate), rep, &c.phase, conns, None).await?;
                }
            }
        }
    }
    Ok(())
}

/// Estimated seconds the concurrency ladder takes with `targets` targets: every segment's
/// warm-up and window, plus opening its connections (about 20,000 per second here).
pub fn concurrency_cost(c: &super::profile::Concurrency, targets: usize) -> f64 {
    let per_seg = (c.phase.warmup_ms + c.phase.duration_ms) as f64 / 1000.0 + 0.15;
    let segs_per_rung = (2 + c.fractions.len()) as f64 * c.phase.repeats as f64 * targets as f64;
    c.connections.iter().map(|n| segs_per_rung * (per_seg + *n as f64 / 20_000.0)).sum()
}

/// The concurrency ladder's common rate: this share of the slowest proxy's closed-loop
/// maximum at the rung, offered to every target.
pub const COMMON_FRACTION: f64 = 0.5;

/// The `--remote` targets: nothing is started; each is checked with one benchmark request
/// (and a router's `/readyz` on its admin listener when given).
async fn remote_targets(remotes: &[super::args::Remote], upstream: Option<&str>, t0: Instant) -> anyhow::Result<(Vec<Running>, Vec<Absent>)> {
    let up: Option<std::net::SocketAddr> = match upstream {
        Some(a) => {
            use std::net::ToSocketAddrs;
            Some(a.to_socket_addrs()?.next().ok_or_else(|| anyhow::anyhow!("--remote-upstream {a}: no address"))?)
        }
        None => None,
    };
    if let Some(a) = up {
        match super::upstream::read_accepts(a) {
            Some(n) => progress(t0, &format!("remote upstream {a}: {n} connections accepted so far")),
            None => progress(t0, &format!("remote upstream {a}: no accept count (not `parity bench --serve-upstream`?): upstream connections per request unknown")),
        }
    }
    let (mut running, mut absent) = (Vec::new(), Vec::new());
    for r in remotes {
        let mut note = format!("remote: {}", r.addr);
        if let Some(admin) = r.admin {
            match remote_admin_note(admin).await {
                Ok(n) => note += &format!("; admin {admin}: {n}"),
                Err(e) => {
                    absent.push(Absent { name: r.name.clone(), reason: format!("admin {admin}: {e:#}") });
                    continue;
                }
            }
        }
        match loadgen::probe_once(r.addr, targets::ROUTING_KEY).await {
            Ok(true) => {
                progress(t0, &format!("{} (remote) answers on {}", r.name, r.addr));
                running.push(Running { name: r.name.clone(), addr: r.addr, pid: 0, child: None, note, upstream: None, upstream_addr: up, remote: true, max_conns: None });
            }
            Ok(false) => absent.push(Absent { name: r.name.clone(), reason: format!("{} answered a benchmark request with a non-2xx status", r.addr) }),
            Err(e) => absent.push(Absent { name: r.name.clone(), reason: format!("{}: {e:#}", r.addr) }),
        }
    }
    Ok((running, absent))
}

/// `ready, impl go, config_version 1` from a router's admin API (`/readyz`,
/// `/admin/state`, docs/spec.md section 7).
async fn remote_admin_note(admin: std::net::SocketAddr) -> anyhow::Result<String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let ready = client.get(format!("http://{admin}/readyz")).send().await?;
    anyhow::ensure!(ready.status().is_success(), "/readyz answered {}", ready.status());
    let state: serde_json::Value = client.get(format!("http://{admin}/admin/state")).send().await?.json().await?;
    Ok(format!("ready, impl {}, config_version {}", state["impl"].as_str().unwrap_or("?"), state["config_version"]))
}

struct Ctx<'a> {
    t0: Instant,
    profile: &'a Profile,
    pids: &'a BTreeMap<String, Vec<i32>>,
    /// Per target: the upstream whose accept count is its connections opened.
    upstreams: &'a BTreeMap<String, Option<std::net::SocketAddr>>,
    mem: Arc<Mutex<Vec<MemSample>>>,
    segs: Vec<Seg>,
    ref_hists: BTreeMap<String, Histogram<u64>>,
    partial: Arc<Mutex<Partial>>,
}

impl Ctx<'_> {
    /// Runs one segment with the profile's connections; records its summary and returns
    /// its histogram.
    async fn segment(&mut self, r: &Running, phase: &str, rate: Option<f64>, repeat: usize, ph: &Phase) -> anyhow::Result<Histogram<u64>> {
        self.segment_with(r, phase, rate, repeat, ph, self.profile.connections, None).await
    }

    /// Runs one segment over `conns` client connections (`fraction`: the concurrency
    /// ladder's share of the target's maximum that `rate` is); records its summary and
    /// returns its histogram.
    #[allow(clippy::too_many_arguments)]
    async fn segment_with(&mut self, r: &Running, phase: &str, rate: Option<f64>, repeat: usize, ph: &Phase, conns: usize, fraction: Option<f64>) -> anyhow::Result<Histogram<u64>> {
        let pids = self.pids[&r.name].clone();
        let up = self.upstreams.get(&r.name).copied().flatten();
        // A remote target has no process tree here: no CPU figure (NaN), never 0.
        let probe: loadgen::Probe = Arc::new(move || loadgen::ProbeSample {
            cpu_secs: if pids.is_empty() { f64::NAN } else { procs::usage(&pids).cpu_secs },
            upstream_accepts: up.and_then(super::upstream::read_accepts),
        });
        let spec = loadgen::LoadSpec {
            addr: r.addr,
            // A target with its own connection limit (HAProxy) gets at most that many;
            // the segment still counts under the rung it belongs to.
            connections: conns.min(r.max_conns.unwrap_or(usize::MAX)),
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
                    errors: conns as u64,
                    dropped: 0,
                    achieved_rps: 0.0,
                    window_secs: ph.duration_ms as f64 / 1000.0,
                    probe_delta: f64::NAN,
                    upstream_accepts: None,
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
            connections: conns,
            fraction,
            upstream_accepts: res.upstream_accepts,
        };
        progress(
            self.t0,
            &format!(
                "{phase:12} #{repeat} {:12} c={conns:<5} {:>9} -> {:8.0}/s p50 {:7.0}us p99 {:8.0}us cpu {:5.1}us/req up-conns/req {:.4} err {} drop {} gen {:3.0}%",
                r.name,
                rate.map(|x| format!("{x:.0}/s")).unwrap_or_else(|| "closed".into()),
                seg.achieved_rps,
                seg.p50_us,
                seg.p99_us,
                seg.cpu_us_per_req,
                seg.upstream_conns_per_req(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(v: &[(&str, f64)]) -> BTreeMap<String, f64> {
        v.iter().map(|(n, r)| (n.to_string(), *r)).collect()
    }

    #[test]
    fn reference_rate_is_half_of_nginx_else_the_slower_bare_proxy() {
        let auto = RefRate::Auto("auto".into());
        let all = rates(&[("direct", 90_000.0), ("nginx", 30_001.0), ("go-bare", 20_000.0), ("pingora-bare", 24_000.0), ("go", 15_000.0)]);
        assert_eq!(reference_rate(&auto, &all).unwrap(), 15_001.0);
        let no_nginx = rates(&[("direct", 90_000.0), ("go-bare", 20_000.0), ("pingora-bare", 24_000.0), ("go", 15_000.0)]);
        assert_eq!(reference_rate(&auto, &no_nginx).unwrap(), 10_000.0);
        let routers_only = rates(&[("direct", 90_000.0), ("go", 15_000.0), ("pingora", 17_000.0)]);
        assert_eq!(reference_rate(&auto, &routers_only).unwrap(), 7_500.0);
        assert!(reference_rate(&auto, &rates(&[("direct", 90_000.0)])).is_err());
        assert_eq!(reference_rate(&RefRate::Fixed(1234.0), &BTreeMap::new()).unwrap(), 1234.0);
    }

    fn shipped(name: &str) -> Profile {
        let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../scenarios/bench");
        Profile::load(&dir.join(format!("{name}.yaml"))).unwrap()
    }

    #[test]
    fn idle_memory_runs_before_the_concurrency_ladder_and_after_the_32_connection_phases() {
        use Step::*;
        // full: every phase; the idle phase after the rate ladder, before the 10,000 rung.
        // The TLS phase last: its fresh TLS instances do not see what the ladder left.
        assert_eq!(plan(&shipped("full")), [ClosedLoop, ToolCheck, Reference, RateLadder, IdleMemory, ConcurrencyLadder, Tls]);
        // scale: no wrk check, no rate ladder.
        assert_eq!(plan(&shipped("scale")), [ClosedLoop, Reference, IdleMemory, ConcurrencyLadder]);
        assert_eq!(plan(&shipped("quick")), [ClosedLoop, ToolCheck, Reference, RateLadder, IdleMemory, ConcurrencyLadder]);
        // tls: the TLS phase after the short plain runs a run needs.
        assert_eq!(plan(&shipped("tls")), [ClosedLoop, Reference, Tls]);
        let multi = plan(&shipped("multi-endpoint"));
        assert_eq!(multi.last(), Some(&Ketama));
        assert!(!multi.contains(&ConcurrencyLadder));
        // A profile without idle connections skips the phase.
        let mut p = shipped("scale");
        p.idle_connections = 0;
        assert_eq!(plan(&p), [ClosedLoop, Reference, ConcurrencyLadder]);
    }
}
