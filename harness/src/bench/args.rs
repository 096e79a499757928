//! The command line of `parity bench` and where its inputs are found: the profile
//! (a name or a file), the bin dir, the repository root.
use clap::Args;
use std::path::{Path, PathBuf};

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
    /// Internal: how many ports the served upstream listens on (ADDR's host, one
    /// ephemeral port each when ADDR's port is 0); multi-endpoint profiles use them as
    /// a placement's endpoints.
    #[arg(long, hide = true, default_value_t = 1)]
    pub upstream_ports: usize,
}

/// The repository root: the first ancestor of the profile holding `docs/spec.md`, else
/// the current directory.
pub fn repo_root(profile: &Path) -> PathBuf {
    let abs = std::fs::canonicalize(profile).unwrap_or_else(|_| profile.to_path_buf());
    for a in abs.ancestors() {
        if a.join("docs/spec.md").is_file() {
            return a.to_path_buf();
        }
    }
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// The bin dir when `--bin-dir` is not given: `$PARITY_BIN_DIR`, else the folder of
/// this executable.
pub fn default_bin_dir() -> PathBuf {
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

