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

#[cfg(test)]
mod tests {
    use super::*;

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
