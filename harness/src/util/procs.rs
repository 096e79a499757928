//! The process-group registry of this `parity` process: every child it starts (router,
//! bench target, nginx, load upstream) leads its own process group (`process_group(0)`)
//! and is registered here, so that an interrupt, an error or a panic can SIGKILL all of
//! them, with their workers and anything they forked, in one call ([`kill_groups`]).
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::sync::Mutex;

/// Process-group ids of the live children (one registry per process: the signal path
/// has no other way to reach them).
static GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Records `pgid` (a child started with `process_group(0)`: its pid). Ids of 0 and 1
/// (no child, init) are ignored.
pub fn register_group(pgid: i32) {
    if pgid > 1 {
        GROUPS.lock().unwrap_or_else(|e| e.into_inner()).push(pgid);
    }
}

/// Forgets `pgid` (its leader has exited and been reaped, so the id may be reused).
pub fn unregister_group(pgid: i32) {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).retain(|&g| g != pgid);
}

/// SIGKILLs every registered process group and forgets them. Safe to call more than once.
pub fn kill_groups() {
    let groups = std::mem::take(&mut *GROUPS.lock().unwrap_or_else(|e| e.into_inner()));
    for pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// Calls [`kill_groups`] when dropped: on return, on `?` errors and on panics (unwinding),
/// so that no child outlives the command holding the guard.
pub struct GroupGuard;

impl Drop for GroupGuard {
    fn drop(&mut self) {
        kill_groups();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: i32) -> bool {
        // Zombies still answer kill(0); a reaped or dead process shows as state Z or gone.
        procfs::process::Process::new(pid).and_then(|p| p.stat()).map(|s| s.state != 'Z').unwrap_or(false)
    }

    #[test]
    fn group_guard_kills_the_whole_group() {
        use std::os::unix::process::CommandExt;
        // A shell in its own group that forks a grandchild (as nginx forks workers).
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        register_group(child.id() as i32);
        assert!(alive(grandchild));
        drop(GroupGuard);
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while alive(grandchild) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(!alive(grandchild), "grandchild {grandchild} survived");
    }
}
