//! The command line of `parity bench` and where its inputs are found: the profile
//! (a name or a file), the bin dir, the repository root.
use clap::Args;
use std::path::{Path, PathBuf};

/// Arguments of `parity bench`.
#[derive(Debug, Args)]
#[command(override_usage = "parity bench <PROFILE> [--out DIR] [--bin-dir DIR] [--remote NAME=HOST:PORT ... [--remote-admin NAME=HOST:PORT ...] [--remote-upstream HOST:PORT]]")]
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
    /// Drive a target that is already running elsewhere instead of starting targets here:
    /// NAME (a target name: go, pingora, go-bare, pingora-bare, nginx, haproxy, or direct
    /// for the upstream itself) = the address of its listener. Repeatable; with it, only
    /// the named targets run. No CPU or RSS figures for them (docs/benchmarks.md, Remote
    /// targets).
    #[arg(long, value_name = "NAME=HOST:PORT")]
    pub remote: Vec<String>,
    /// A remote router's admin listener (NAME=HOST:PORT): the run waits for its
    /// `/readyz` and names its `impl` and config version in the report.
    #[arg(long, value_name = "NAME=HOST:PORT")]
    pub remote_admin: Vec<String>,
    /// The remote targets' upstream, a `parity bench --serve-upstream` on another host:
    /// its accept count gives the upstream connections opened per request.
    #[arg(long, value_name = "HOST:PORT")]
    pub remote_upstream: Option<String>,
    /// Idle upstream connections nginx and HAProxy keep (default: the contract's pool,
    /// the routers' built-in figure). Only to compare with routers built with another
    /// pool rule (e.g. 256 for binaries from before issue 14); never tune one side only.
    #[arg(long, value_name = "N")]
    pub reference_pool: Option<usize>,
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

/// One remote target: where its listener (and, for a router, its admin API) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Target name (one of `targets::KNOWN`).
    pub name: String,
    /// Its listener.
    pub addr: std::net::SocketAddr,
    /// Its admin listener (routers), if given.
    pub admin: Option<std::net::SocketAddr>,
}

fn name_addr(s: &str) -> Result<(String, std::net::SocketAddr), String> {
    let (n, a) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=HOST:PORT"))?;
    if !super::targets::KNOWN.contains(&n) {
        return Err(format!("{s:?}: unknown target {n:?} (known: {:?})", super::targets::KNOWN));
    }
    use std::net::ToSocketAddrs;
    let addr = a.to_socket_addrs().map_err(|e| format!("{s:?}: {e}"))?.next().ok_or_else(|| format!("{s:?}: no address"))?;
    Ok((n.to_string(), addr))
}

impl BenchArgs {
    /// The `--remote` targets with their `--remote-admin` addresses, in the order given.
    ///
    /// # Errors
    /// A malformed or unknown NAME=HOST:PORT, an admin address for a target that is not
    /// `--remote`, or a name given twice.
    pub fn remotes(&self) -> Result<Vec<Remote>, String> {
        let mut out: Vec<Remote> = Vec::new();
        for r in &self.remote {
            let (name, addr) = name_addr(r)?;
            if out.iter().any(|x| x.name == name) {
                return Err(format!("--remote {name} given twice"));
            }
            out.push(Remote { name, addr, admin: None });
        }
        for r in &self.remote_admin {
            let (name, addr) = name_addr(r)?;
            let t = out.iter_mut().find(|x| x.name == name).ok_or_else(|| format!("--remote-admin {name}: no --remote {name}=..."))?;
            t.admin = Some(addr);
        }
        Ok(out)
    }
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

