//! The data model of a benchmark run: per-segment summaries ([`Seg`]), memory samples
//! ([`MemSample`]) and everything one run measured ([`RunData`]), from which the report
//! and `bench.json` are made.
use super::extras;
use super::profile::Profile;
use super::targets::Absent;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// Client connections the generator held open during the segment.
    pub connections: usize,
    /// Concurrency ladder, open loop: the fraction of the target's own closed-loop
    /// maximum at this connection count that `rate_rps` is (`None` elsewhere).
    pub fraction: Option<f64>,
    /// TCP connections the target's upstream accepted during the measured window, i.e.
    /// upstream connections the target opened (`None`: not known, e.g. a remote upstream
    /// that is not `parity bench --serve-upstream`).
    pub upstream_accepts: Option<u64>,
}

impl Seg {
    /// Upstream connections opened per answered request (NaN when unknown or no answers).
    pub fn upstream_conns_per_req(&self) -> f64 {
        match self.upstream_accepts {
            Some(a) if self.ok > 0 => a as f64 / self.ok as f64,
            _ => f64::NAN,
        }
    }
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
    /// Seconds since the start when the idle-connection phase ended (the concurrency
    /// ladder, if any, follows it).
    pub idle_end: Option<f64>,
    /// /proc/loadavg (1, 5, 15 min) when the run started.
    pub loadavg_start: String,
    /// Nice value the run had (see `Profile::nice`).
    pub nice: i32,
    pub nofile: u64,
    /// The signal that interrupted the run (a partial report), if any.
    pub interrupted: Option<String>,
    /// Where the generator, the upstream and the targets ran (`None`: not pinned).
    pub cpus: Option<super::procs::CpuPlan>,
    /// Idle upstream connections nginx and HAProxy were given (the routers' is built in).
    pub pool: usize,
    /// Targets driven on other hosts (`--remote`): their names.
    pub remote: Vec<String>,
    /// The TLS and HTTP/2 phase's figures (`None`: the profile has no `tls` key, or the
    /// run ended before it).
    pub tls: Option<super::tls::TlsResults>,
}

