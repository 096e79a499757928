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

/// A placement's endpoint selection (docs/spec.md §2 `selection`, §3 *Endpoint selection*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Weighted round robin (nginx: the default of an `upstream` block).
    RoundRobin,
    /// Weighted random (nginx: `random`).
    Random,
    /// Ketama consistent hashing (nginx: `hash $http_x_bench_key consistent`).
    ConsistentHash,
}

impl Selection {
    /// The config value (`round_robin`, `random`, `consistent_hash`).
    pub fn as_str(self) -> &'static str {
        match self {
            Selection::RoundRobin => "round_robin",
            Selection::Random => "random",
            Selection::ConsistentHash => "consistent_hash",
        }
    }

    /// Short form used in instance names (`rr`, `rand`, `ch`).
    pub fn short(self) -> &'static str {
        match self {
            Selection::RoundRobin => "rr",
            Selection::Random => "rand",
            Selection::ConsistentHash => "ch",
        }
    }
}

/// Multi-endpoint placements (issue 13): every router and nginx target runs once per
/// selection and endpoint count, as the instance `<target>:<sel>:<n>` (e.g.
/// `pingora:ch:16`), its placement (nginx: `upstream` block) holding the first `n` ports
/// of the one upstream process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiEndpoint {
    /// Endpoint counts, each 1 ..= 256; must contain 1 (the baseline the cost of
    /// selection is measured against).
    pub endpoints: Vec<usize>,
    /// Selections to run (each with every endpoint count).
    pub selections: Vec<Selection>,
    /// Distinct keys sent through every `consistent_hash` instance to compare the
    /// endpoint each router chooses with nginx's `hash ... consistent` (0 skips it).
    #[serde(default)]
    pub ketama_keys: usize,
}

/// The concurrency ladder (issue 14): the same measurements at several numbers of client
/// connections. Per rung and target: the closed-loop maximum, then open-loop runs at fixed
/// fractions of *that target's own* maximum at that rung (so every target is measured at
/// the same relative load), with p50/p99/p99.9, CPU per request, RSS and the upstream
/// connections the target opened per request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// Client connections per rung, ascending (e.g. 32, 256, 1024, 4096, 10000).
    pub connections: Vec<usize>,
    /// Open-loop rates as fractions of each target's closed-loop maximum at the rung
    /// (e.g. 0.5, 0.8); empty: closed loop only.
    pub fractions: Vec<f64>,
    /// Each rung's closed-loop and open-loop windows (targets interleaved, as elsewhere).
    #[serde(flatten)]
    pub phase: Phase,
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
    /// Multi-endpoint placements (absent: one placement of one endpoint, as always).
    #[serde(default)]
    pub multi_endpoint: Option<MultiEndpoint>,
    /// The concurrency ladder (absent: none).
    #[serde(default)]
    pub concurrency: Option<Concurrency>,
    /// The TLS and HTTP/2 phase (issue 15; absent: none): [`super::tls::TlsProfile`].
    #[serde(default)]
    pub tls: Option<super::tls::TlsProfile>,
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
        if let Some(c) = &p.concurrency {
            anyhow::ensure!(!c.connections.is_empty(), "concurrency.connections must not be empty");
            anyhow::ensure!(c.connections.iter().all(|n| *n >= 1), "concurrency.connections: each >= 1");
            anyhow::ensure!(c.connections.windows(2).all(|w| w[0] < w[1]), "concurrency.connections must ascend");
            anyhow::ensure!(c.fractions.iter().all(|f| *f > 0.0 && *f <= 1.0), "concurrency.fractions: each in (0, 1]");
            anyhow::ensure!(c.phase.repeats >= 1, "concurrency.repeats must be >= 1");
            anyhow::ensure!(p.multi_endpoint.is_none(), "a profile has either multi_endpoint or concurrency, not both");
        }
        if let Some(t) = &p.tls {
            t.check()?;
            anyhow::ensure!(p.multi_endpoint.is_none(), "a profile has either multi_endpoint or tls, not both");
        }
        if let Some(m) = &p.multi_endpoint {
            anyhow::ensure!(m.endpoints.contains(&1), "multi_endpoint.endpoints must contain 1 (the baseline)");
            anyhow::ensure!(m.endpoints.iter().all(|n| (1..=256).contains(n)), "multi_endpoint.endpoints: each 1 ..= 256");
            anyhow::ensure!(!m.selections.is_empty(), "multi_endpoint.selections must not be empty");
            for t in &p.targets {
                anyhow::ensure!(
                    ["direct", "go", "pingora", "nginx"].contains(&t.as_str()),
                    "target {t:?} has no placement: a multi_endpoint profile runs direct, go, pingora and nginx"
                );
            }
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
        let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../scenarios/bench");
        for name in ["quick", "full", "multi-endpoint", "scale", "tls"] {
            let p = Profile::load(&dir.join(format!("{name}.yaml"))).unwrap();
            assert_eq!(p.name, name);
        }
        // The TLS phase: on in full, off in quick.
        assert!(Profile::load(&dir.join("full.yaml")).unwrap().tls.is_some());
        assert!(Profile::load(&dir.join("quick.yaml")).unwrap().tls.is_none());
        // the TLS phase alone measures what full measures
        let (full, tls) = (Profile::load(&dir.join("full.yaml")).unwrap().tls.unwrap(), Profile::load(&dir.join("tls.yaml")).unwrap().tls.unwrap());
        assert_eq!(serde_json::to_value(&full).unwrap(), serde_json::to_value(&tls).unwrap());
        let m = Profile::load(&dir.join("multi-endpoint.yaml")).unwrap().multi_endpoint.unwrap();
        assert_eq!(m.endpoints, [1, 4, 16]);
    }

    #[test]
    fn a_multi_endpoint_profile_needs_the_baseline_of_one_endpoint() {
        let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("../scenarios/bench");
        let text = std::fs::read_to_string(dir.join("multi-endpoint.yaml")).unwrap();
        let p: Profile = serde_yaml_ng::from_str(&text).unwrap();
        let mut bad = p.clone();
        bad.multi_endpoint.as_mut().unwrap().endpoints = vec![4, 16];
        assert!(bad.check().unwrap_err().to_string().contains("must contain 1"));
        let mut bare = p;
        bare.targets.push("go-bare".into());
        assert!(bare.check().unwrap_err().to_string().contains("has no placement"));
    }
}
