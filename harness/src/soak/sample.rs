//! Resource samples of the router process from /proc (procfs) and their trend.
use serde::Serialize;
use std::collections::HashSet;

/// One sample of the router process.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the start of the load.
    pub t_s: f64,
    /// Resident set (VmRSS), bytes.
    pub rss_bytes: u64,
    /// Open file descriptors (entries of /proc/PID/fd).
    pub fds: u64,
    /// Threads of the process (OS threads: Go's Ms, Tokio's workers and blocking pool).
    pub threads: u64,
    /// The process's established TCP connections to the soak upstreams' ports.
    pub upstream_conns: u64,
}

/// Samples process `pid` at time `t_s`; `None` when it is gone. `upstream_ports` are
/// the ports whose connections are counted as upstream connections.
pub fn sample(pid: i32, t_s: f64, upstream_ports: &[u16]) -> Option<Sample> {
    let p = procfs::process::Process::new(pid).ok()?;
    let st = p.status().ok()?;
    let rss_bytes = st.vmrss.unwrap_or(0) * 1024;
    let threads = st.threads as u64;
    let mut inodes = HashSet::new();
    let mut fds = 0u64;
    if let Ok(list) = p.fd() {
        for fd in list.flatten() {
            fds += 1;
            if let procfs::process::FDTarget::Socket(i) = fd.target {
                inodes.insert(i);
            }
        }
    }
    let mut upstream_conns = 0u64;
    for table in [p.tcp(), p.tcp6()].into_iter().flatten() {
        for e in table {
            if e.state == procfs::net::TcpState::Established && inodes.contains(&e.inode) && upstream_ports.contains(&e.remote_address.port()) {
                upstream_conns += 1;
            }
        }
    }
    Some(Sample { t_s, rss_bytes, fds, threads, upstream_conns })
}

/// Least-squares slope of `y` over `x` (units of y per unit of x); 0 with fewer than
/// two distinct x.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return 0.0;
    }
    points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_noise_around_a_constant() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        assert!((slope(&line) - 3.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..100).map(|i| (i as f64, if i % 2 == 0 { 10.0 } else { 12.0 })).collect();
        assert!(slope(&flat).abs() < 0.01);
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id() as i32, 0.0, &[]).expect("own process");
        assert!(s.rss_bytes > 0 && s.fds > 0 && s.threads >= 1);
        assert_eq!(s.upstream_conns, 0);
    }
}
