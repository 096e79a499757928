//! Process-tree accounting from /proc (procfs): CPU time and resident memory.
//!
//! CPU is `utime + stime` (clock ticks, `sysconf(_SC_CLK_TCK)`, usually 10 ms) summed
//! over a process and its descendants; memory is the sum of their RSS (shared pages of a
//! multi-process target such as nginx count once per process).

/// The pid `root` and all its descendants (found by walking `ppid` over /proc).
pub fn tree_pids(root: i32) -> Vec<i32> {
    let mut parent = Vec::new();
    if let Ok(all) = procfs::process::all_processes() {
        for p in all.flatten() {
            if let Ok(st) = p.stat() {
                parent.push((st.pid, st.ppid));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        for &(pid, ppid) in &parent {
            if ppid == cur && !out.contains(&pid) {
                out.push(pid);
            }
        }
        i += 1;
    }
    out
}

/// Resource use of a set of processes at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// utime + stime, seconds, summed.
    pub cpu_secs: f64,
    /// Resident set size, bytes, summed.
    pub rss_bytes: u64,
}

/// Reads the current usage of `pids` (processes that have gone are skipped).
pub fn usage(pids: &[i32]) -> Usage {
    let tps = procfs::ticks_per_second() as f64;
    let page = procfs::page_size();
    let mut u = Usage::default();
    for &pid in pids {
        if let Ok(st) = procfs::process::Process::new(pid).and_then(|p| p.stat()) {
            u.cpu_secs += (st.utime + st.stime) as f64 / tps;
            u.rss_bytes += st.rss * page;
        }
    }
    u
}

/// utime + stime of this process (all threads), seconds.
pub fn self_cpu_secs() -> f64 {
    usage(&[std::process::id() as i32]).cpu_secs
}

/// Sends SIGKILL to every pid it holds when dropped (the benchmark's own children).
pub struct Reaper(pub Vec<i32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if pid > 1 {
                // SAFETY: kill(2) on pids this run started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Sets this process's nice value to `nice` (children started afterwards inherit it), so
/// that background work on a shared machine perturbs the measurement less. Lowering the
/// value needs privileges; on failure the current value stays. Returns the value in force.
pub fn set_nice(nice: i32) -> i32 {
    // SAFETY: plain syscalls on this process.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, nice);
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    }
}

/// Raises the soft RLIMIT_NOFILE to `want` (capped by the hard limit); children started
/// afterwards inherit it. Returns the new soft limit.
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        let target = want.min(r.rlim_max as u64);
        if (r.rlim_cur as u64) < target {
            r.rlim_cur = target as libc::rlim_t;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur as u64
    }
}


/// CPU isolation of a run (issue 14): the load generator (this process) and the upstream
/// on one set of CPUs, every target on the other, so that a target's latency measures the
/// proxy and not the scheduler's sharing of a core with the load. The CPUs this process
/// may use are split in two halves: the lower half for the load, the upper for the target
/// (on a 2-CPU host: CPU 0 and CPU 1). With a single usable CPU nothing is pinned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CpuPlan {
    /// CPUs of the load generator and the upstream.
    pub load: Vec<usize>,
    /// CPUs of the target under test.
    pub target: Vec<usize>,
}

impl CpuPlan {
    /// Splits `usable` (ascending CPU ids) in two halves; `None` with fewer than 2.
    pub fn split(usable: &[usize]) -> Option<CpuPlan> {
        if usable.len() < 2 {
            return None;
        }
        let half = usable.len() / 2;
        Some(CpuPlan { load: usable[..half].to_vec(), target: usable[half..].to_vec() })
    }

    /// The plan for this host: the CPUs this process may run on, split.
    pub fn for_host() -> Option<CpuPlan> {
        let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
        let usable: Vec<usize> = (0..nix::sched::CpuSet::count()).filter(|c| set.is_set(*c).unwrap_or(false)).collect();
        CpuPlan::split(&usable)
    }

    /// One line for the report, e.g. `load generator and upstream on CPU 0, target on CPU 1`.
    pub fn describe(plan: Option<&CpuPlan>) -> String {
        let list = |v: &[usize]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        match plan {
            Some(p) => format!("load generator and upstream pinned to CPU {}, the target to CPU {} (sched_setaffinity)", list(&p.load), list(&p.target)),
            None => "not pinned (fewer than 2 usable CPUs): generator, upstream and target share the CPU".into(),
        }
    }
}

/// A `CpuSet` of `cpus`.
pub fn cpu_set(cpus: &[usize]) -> nix::sched::CpuSet {
    let mut set = nix::sched::CpuSet::new();
    for c in cpus {
        let _ = set.set(*c);
    }
    set
}

/// Pins every thread of this process to `cpus` (threads started later inherit the
/// affinity of the thread that starts them, and children that of the thread that forks).
/// Returns how many threads could not be pinned.
pub fn pin_self(cpus: &[usize]) -> usize {
    let set = cpu_set(cpus);
    let mut failed = 0;
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for e in rd.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<i32>().ok()) else { continue };
            if nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid), &set).is_err() {
                failed += 1;
            }
        }
    }
    failed
}

/// Makes `cmd`'s process start on `cpus` (set between fork and exec, so every thread of
/// the program, Go's and tokio's included, inherits it).
pub fn pin_command(cmd: &mut tokio::process::Command, cpus: &[usize]) {
    let set = cpu_set(cpus);
    // SAFETY: the closure runs in the forked child before exec and only makes one
    // async-signal-safe system call (sched_setaffinity) on a value copied in.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(std::io::Error::from)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpus_split_into_a_load_half_and_a_target_half() {
        assert_eq!(CpuPlan::split(&[0, 1]), Some(CpuPlan { load: vec![0], target: vec![1] }));
        assert_eq!(CpuPlan::split(&[0, 1, 2, 3, 4]), Some(CpuPlan { load: vec![0, 1], target: vec![2, 3, 4] }));
        assert_eq!(CpuPlan::split(&[3]), None);
        assert!(CpuPlan::describe(None).contains("not pinned"));
    }

    #[tokio::test]
    async fn a_pinned_command_runs_on_its_cpus_only() {
        let Some(plan) = CpuPlan::for_host() else { return };
        let mut cmd = tokio::process::Command::new("grep");
        cmd.args(["Cpus_allowed_list", "/proc/self/status"]).stdout(std::process::Stdio::piped());
        pin_command(&mut cmd, &plan.target);
        let out = cmd.output().await.unwrap();
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let want = plan.target.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let got = line.split(':').nth(1).unwrap().trim().to_string();
        // The kernel prints ranges ("2-3") or single CPUs ("1").
        let expanded: Vec<String> = got.split(',').flat_map(|r| match r.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap()).map(|c| c.to_string()).collect::<Vec<_>>(),
            None => vec![r.to_string()],
        }).collect();
        assert_eq!(expanded, want, "{line}");
    }

    #[test]
    fn tree_finds_children_and_usage_counts_them() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let me = std::process::id() as i32;
        let pids = tree_pids(me);
        assert!(pids.contains(&(child.id() as i32)), "{pids:?}");
        let u = usage(&pids);
        assert!(u.rss_bytes > 1 << 20, "rss {}", u.rss_bytes);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
