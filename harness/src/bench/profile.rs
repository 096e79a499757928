//! Benchmark profiles: the YAML files under `scenarios/bench/` (see docs/benchmarks.md).

use serde::{Deserialize, Serialize};

/// One timed phase: warm-up (not recorded), then the measured window, repeated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// How many times each target runs this phase (targets interleaved: A B C A B C ...).
    pub repeats: usize,
    /// Warm-up before the measured window, in milliseconds (sent but not recorded).
    pub warmup_ms: u64,
    /// Measured window, in milliseconds.
    pub duration_ms: u64,
}

/// The rate ladder: open-loop rates as fractions of the fastest proxy's closed-loop rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ladder {
    /// Fractions (e.g. 0.25, 0.5, 1.0) of `max(max_rps)` over the proxy targets.
    pub fractions: Vec<f64>,
    #[serde(flatten)]
    pub phase: Phase,
}

/// When a target counts as saturated at a rate (it then skips higher rates of the ladder).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saturation {
    /// Achieved rate below this fraction of the offered rate.
    pub min_achieved: f64,
    /// Failed or dropped requests above this fraction.
    pub max_error_ratio: f64,
    /// p99 above this many milliseconds.
    pub max_p99_ms: f64,
}

/// The reference rate: a number of requests per second, or `auto`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RefRate {
    /// A fixed rate in requests per second.
    Fixed(f64),
    /// `"auto"`: half of nginx's closed-loop maximum (or, without nginx, half of the
    /// smallest maximum among the bare proxies).
    Auto(String),
}

/// The independent cross-check of the load generator on `direct` (`wrk`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCheck {
    /// Run it at all.
    pub enabled: bool,
    /// Length of each of the two runs (ours and the tool's), milliseconds.
    pub duration_ms: u64,
}

/// A benchmark profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Profile name (goes into the report).
    pub name: String,
    /// What the profile is for and how far to trust its figures; printed at the top of
    /// the report.
    #[serde(default)]
    pub description: Option<String>,
    /// Worker threads of every target: GOMAXPROCS, `ServerConf.threads`, nginx
    /// `worker_processes`.
    pub threads: usize,
    /// Tokio worker threads of the built-in upstream (a separate process).
    pub upstream_threads: usize,
    /// Tokio worker threads of the load generator (inside `parity`).
    pub client_threads: usize,
    /// Fixed number of client connections, opened before each run.
    pub connections: usize,
    /// Body size of the upstream's response, in bytes.
    pub response_bytes: usize,
    /// Targets to run, in interleaving order (absent binaries are reported as absent).
    pub targets: Vec<String>,
    /// Closed-loop maximum-throughput runs.
    pub closed_loop: Phase,
    /// The reference rate at which `targets.<name>.p50_us` etc. are reported.
    pub reference_rate: RefRate,
    /// Open-loop runs at the reference rate.
    pub reference: Phase,
    /// The open-loop rate ladder.
    pub ladder: Ladder,
    /// Saturation criteria for the ladder.
    pub saturation: Saturation,
    /// Idle keep-alive connections opened per target to measure memory per connection
    /// (0 skips the measurement).
    pub idle_connections: usize,
    /// Load-generator cross-check with `wrk` on `direct`.
    pub tool_check: ToolCheck,
    /// Run `go test -bench` and `cargo bench -p rust-pingora` (slow: full profile only).
    pub hotpath: bool,
    /// Open loop: longest wait, after the last intended send, for outstanding answers;
    /// what is still unanswered then is counted as dropped (milliseconds).
    pub drain_ms: u64,
    /// Time budget of the whole run in seconds (0: none). The ladder stops early, with a
    /// note in the report, when its next rate would not fit.
    #[serde(default)]
    pub max_seconds: u64,
    /// Nice value for parity and every process it starts (default -10: ahead of
    /// background builds on a shared machine; needs root, else the current value stays).
    #[serde(default = "default_nice")]
    pub nice: i32,
    /// RSS/CPU sampling period, milliseconds.
    pub sample_ms: u64,
}

fn default_nice() -> i32 {
    -10
}

impl Profile {
    /// Reads and checks a profile file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Profile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading profile {}: {e}", path.display()))?;
        let p: Profile = serde_yaml_ng::from_str(&text).map_err(|e| {
            let msg = e.to_string();
            // serde reports an unknown field without a position: find the key's line.
            let line = e.location().map(|l| l.line()).or_else(|| {
                let field = msg.split('`').nth(1).filter(|_| msg.starts_with("unknown field"))?;
                text.lines().position(|l| l.trim_start().starts_with(&format!("{field}:"))).map(|i| i + 1)
            });
            // The position goes in front (`file:line:`), not at the end of the message.
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            match line {
                Some(n) => anyhow::anyhow!("{}:{n}: not a benchmark profile: {msg}", path.display()),
                None => anyhow::anyhow!("{}: not a benchmark profile: {msg}", path.display()),
            }
        })?;
        let p = p.check().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(p)
    }

    /// The checks serde cannot express.
    fn check(self) -> anyhow::Result<Profile> {
        let p = self;
        anyhow::ensure!(p.threads >= 1, "threads must be >= 1");
        anyhow::ensure!(p.upstream_threads >= 1, "upstream_threads must be >= 1");
        anyhow::ensure!(p.client_threads >= 1, "client_threads must be >= 1");
        anyhow::ensure!(p.connections >= 1, "connections must be >= 1");
        anyhow::ensure!(p.reference.repeats >= 1, "reference.repeats must be >= 1");
        if let RefRate::Auto(s) = &p.reference_rate {
            anyhow::ensure!(s == "auto", "reference_rate must be a number or \"auto\"");
        }
        for t in &p.targets {
            anyhow::ensure!(
                super::targets::KNOWN.contains(&t.as_str()),
                "unknown target {t:?} (known: {:?})",
                super::targets::KNOWN
            );
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_profile_names_file_and_line() {
        let dir = std::env::temp_dir().join(format!("parity-profile-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("scenario.yaml");
        std::fs::write(&f, "# a scenario file\nid: x\ndescription: y\n").unwrap();
        let e = Profile::load(&f).unwrap_err().to_string();
        assert!(e.contains("scenario.yaml:2: not a benchmark profile: unknown field `id`"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_shipped_profiles_load() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/bench");
        for name in ["quick", "full"] {
            let p = Profile::load(&dir.join(format!("{name}.yaml"))).unwrap();
            assert_eq!(p.name, name);
        }
    }
}
