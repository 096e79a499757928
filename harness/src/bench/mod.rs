//! `parity bench`: load profiles against direct, both routers, both bare proxies and nginx.
//! Owned by the benchmark work (issue 5); see `scenarios/bench/`.

use clap::Args;

/// Arguments of `parity bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmark profile (YAML) under scenarios/bench/.
    pub profile: std::path::PathBuf,
    /// Results root; the run goes to <out>/<run-id>/ and <out>/latest points at it.
    #[arg(long, default_value = "results")]
    pub out: std::path::PathBuf,
}

/// Runs a benchmark profile. Returns the process exit code.
pub async fn run(_args: BenchArgs) -> anyhow::Result<i32> {
    anyhow::bail!("parity bench is not implemented yet")
}
