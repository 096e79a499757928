//! The parts of a run that are not load segments: idle keep-alive memory, the `wrk`
//! cross-check, the hot-path micro-benchmarks, code size and the divergence list.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::targets::{Running, ROUTING_KEY};
use super::{loadgen, procs};

/// Memory held per idle keep-alive connection.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    /// Idle connections actually held open.
    pub connections: usize,
    /// RSS of the target's tree before and after opening them, bytes.
    pub rss_before: u64,
    pub rss_after: u64,
    /// (after - before) / connections, bytes.
    pub bytes_per_conn: f64,
    /// Why the measurement failed, if it did.
    pub error: Option<String>,
}

impl IdleResult {
    /// A failed measurement.
    pub fn failed(e: String) -> IdleResult {
        IdleResult { connections: 0, rss_before: 0, rss_after: 0, bytes_per_conn: f64::NAN, error: Some(e) }
    }
}

async fn settled_rss(pids: &[i32]) -> u64 {
    // Wait until two samples 100 ms apart differ by < 64 KiB (at most 2 s).
    let mut last = procs::usage(pids).rss_bytes;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = procs::usage(pids).rss_bytes;
        if now.abs_diff(last) < 64 * 1024 {
            return now;
        }
        last = now;
    }
    last
}

/// Opens `n` idle keep-alive connections to `r` (one request each), and measures the
/// growth of the tree's RSS.
pub async fn idle_memory(r: &Running, pids: &[i32], n: usize) -> anyhow::Result<IdleResult> {
    // Warm the target with a few connections first, so one-off allocations are not
    // charged to the idle connections.
    drop(loadgen::open_idle(r.addr, 64, 16, ROUTING_KEY).await?);
    let before = settled_rss(pids).await;
    let conns = loadgen::open_idle(r.addr, n, 64, ROUTING_KEY).await?;
    let after = settled_rss(pids).await;
    let k = conns.len();
    drop(conns);
    Ok(IdleResult {
        connections: k,
        rss_before: before,
        rss_after: after,
        bytes_per_conn: (after as f64 - before as f64) / k.max(1) as f64,
        error: None,
    })
}

/// Our closed-loop figure next to `wrk`'s on `direct`, same connections and duration.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCheckResult {
    /// `wrk` and its version, or why it did not run.
    pub tool: String,
    pub connections: usize,
    pub threads: usize,
    pub duration_s: u64,
    pub ours_rps: f64,
    pub ours_p50_us: f64,
    pub ours_p99_us: f64,
    pub ours_generator_cpu_util: f64,
    pub tool_rps: Option<f64>,
    pub tool_p50_us: Option<f64>,
    pub tool_p99_us: Option<f64>,
}

impl ToolCheckResult {
    /// One line for the progress output.
    pub fn summary(&self) -> String {
        format!(
            "ours {:.0}/s p50 {:.0}us p99 {:.0}us | {} {}/s p50 {}us p99 {}us",
            self.ours_rps,
            self.ours_p50_us,
            self.ours_p99_us,
            self.tool,
            self.tool_rps.map(|x| format!("{x:.0}")).unwrap_or("-".into()),
            self.tool_p50_us.map(|x| format!("{x:.0}")).unwrap_or("-".into()),
            self.tool_p99_us.map(|x| format!("{x:.0}")).unwrap_or("-".into()),
        )
    }
}

/// Parses a wrk duration like `123.45us`, `1.20ms`, `2.00s` into microseconds.
pub fn parse_wrk_time(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mul) = if let Some(x) = s.strip_suffix("us") {
        (x, 1.0)
    } else if let Some(x) = s.strip_suffix("ms") {
        (x, 1e3)
    } else if let Some(x) = s.strip_suffix('m') {
        (x, 60e6)
    } else if let Some(x) = s.strip_suffix('s') {
        (x, 1e6)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|v| v * mul)
}

/// Extracts (Requests/sec, p50 us, p99 us) from `wrk --latency` output.
pub fn parse_wrk(out: &str) -> (Option<f64>, Option<f64>, Option<f64>) {
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = t.strip_prefix("50%") {
            p50 = parse_wrk_time(v);
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = parse_wrk_time(v);
        }
    }
    (rps, p50, p99)
}

/// Runs our closed loop and then `wrk` on `direct`.
pub async fn tool_check(direct: &Running, profile: &super::Profile, pids: &[i32]) -> ToolCheckResult {
    let secs = (profile.tool_check.duration_ms / 1000).max(1);
    let pids2 = pids.to_vec();
    let spec = loadgen::LoadSpec {
        addr: direct.addr,
        connections: profile.connections,
        rate: None,
        warmup: Duration::from_millis(200),
        duration: Duration::from_secs(secs),
        drain: Duration::from_secs(5),
        routing_key: ROUTING_KEY.into(),
        threads: profile.client_threads,
    };
    let ours = loadgen::run(spec, std::sync::Arc::new(move || loadgen::ProbeSample { cpu_secs: procs::usage(&pids2).cpu_secs, upstream_accepts: None })).await;
    let (ours_rps, ours_p50, ours_p99, util) = match &ours {
        Ok(r) => (
            r.achieved_rps,
            r.hist.value_at_quantile(0.5) as f64 / 1e3,
            r.hist.value_at_quantile(0.99) as f64 / 1e3,
            r.self_cpu_secs / (r.window_secs * profile.client_threads as f64),
        ),
        Err(_) => (f64::NAN, f64::NAN, f64::NAN, f64::NAN),
    };
    let mut res = ToolCheckResult {
        tool: "wrk".into(),
        connections: profile.connections,
        threads: profile.client_threads,
        duration_s: secs,
        ours_rps,
        ours_p50_us: ours_p50,
        ours_p99_us: ours_p99,
        ours_generator_cpu_util: util,
        tool_rps: None,
        tool_p50_us: None,
        tool_p99_us: None,
    };
    let Some(wrk) = super::targets::which("wrk") else {
        res.tool = "wrk not installed (apt-get install wrk)".into();
        return res;
    };
    let out = tokio::process::Command::new(&wrk)
        .arg(format!("-t{}", profile.client_threads))
        .arg(format!("-c{}", profile.connections))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .args(["-H", &format!("X-Routing-Key: {ROUTING_KEY}")])
        .arg(format!("http://{}/", direct.addr))
        .output()
        .await;
    match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            let (r, a, b) = parse_wrk(&text);
            res.tool_rps = r;
            res.tool_p50_us = a;
            res.tool_p99_us = b;
            let v = std::process::Command::new(&wrk).arg("-v").output().ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
                .unwrap_or_default();
            res.tool = v.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            if res.tool.is_empty() {
                res.tool = "wrk".into();
            }
        }
        Err(e) => res.tool = format!("wrk failed: {e}"),
    }
    res
}

/// One hot-path micro-benchmark figure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bench {
    /// Benchmark name as printed by the tool.
    pub name: String,
    /// Nanoseconds per iteration (Go: ns/op; Criterion: the middle estimate).
    pub ns: f64,
}

/// The hot-path micro-benchmarks of both routers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Hotpath {
    /// Whether they were run in this run.
    pub ran: bool,
    /// The run they come from when taken from an earlier run.
    pub from_run: Option<String>,
    /// Free-text state ("no benchmarks found", exit codes...).
    pub note: String,
    pub go: Vec<Bench>,
    pub rust: Vec<Bench>,
}

/// Parses `go test -bench` output: `BenchmarkName-2   123456   987.6 ns/op ...`.
pub fn parse_go_bench(out: &str) -> Vec<Bench> {
    let mut v = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 4 && f[0].starts_with("Benchmark") && f[3] == "ns/op" {
            if let Ok(ns) = f[2].parse::<f64>() {
                let name = f[0].trim_start_matches("Benchmark");
                let name = match name.rsplit_once('-') {
                    Some((n, cpu)) if cpu.chars().all(|c| c.is_ascii_digit()) => n,
                    _ => name,
                };
                v.push(Bench { name: name.to_string(), ns });
            }
        }
    }
    v
}

fn unit_ns(u: &str) -> Option<f64> {
    Some(match u {
        "ps" => 1e-3,
        "ns" => 1.0,
        "µs" | "us" | "μs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    })
}

/// Parses Criterion output: `name   time:   [1.0 µs 1.1 µs 1.2 µs]` (the name may stand
/// alone on the line before).
pub fn parse_criterion(out: &str) -> Vec<Bench> {
    let mut v = Vec::new();
    let mut prev = "";
    for line in out.lines() {
        if let Some(i) = line.find("time:") {
            let name = line[..i].trim();
            let name = if name.is_empty() { prev.trim() } else { name };
            let rest = line[i + 5..].trim().trim_start_matches('[').trim_end_matches(']');
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() >= 4 {
                if let (Ok(x), Some(m)) = (f[2].parse::<f64>(), unit_ns(f[3])) {
                    v.push(Bench { name: name.to_string(), ns: x * m });
                }
            }
        }
        if !line.trim().is_empty() {
            prev = line;
        }
    }
    v
}

/// Runs both routers' micro-benchmarks, saves their raw output and `hotpath.json` in
/// `out`.
pub async fn run_hotpath(repo: &Path, out: &Path) -> Hotpath {
    let mut h = Hotpath { ran: true, ..Default::default() };
    let mut notes = Vec::new();
    let go_dir = repo.join("go-baseline");
    if go_dir.join("go.mod").is_file() {
        let mut go = tokio::process::Command::new("go");
        go.args(["test", "-run", "^$", "-bench", ".", "-benchmem", "./..."]).current_dir(&go_dir);
        if let Some(text) = capture(go, "go test -bench", 900, &out.join("hotpath-go.txt"), &mut notes).await {
            h.go = parse_go_bench(&text);
            notes.push(format!("go test -bench: {} benchmarks", h.go.len()));
        }
    } else {
        notes.push("go-baseline/go.mod missing".into());
    }
    let mut cargo = tokio::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.args(["bench", "-p", "rust-pingora", "--benches"]).current_dir(repo);
    let label = "cargo bench -p rust-pingora --benches";
    if let Some(text) = capture(cargo, label, 1800, &out.join("hotpath-rust.txt"), &mut notes).await {
        h.rust = parse_criterion(&text);
        notes.push(format!("{label}: {} benchmarks", h.rust.len()));
    }
    h.note = notes.join("; ");
    let _ = std::fs::write(out.join("hotpath.json"), serde_json::to_vec_pretty(&h).unwrap_or_default());
    h
}

/// Runs one hot-path benchmark command in its own process group (killed if dropped),
/// stdout and stderr together written to `save`; `None` with a note in `notes` when it
/// could not start or ran past `timeout_s` seconds. The exit status goes into `notes`.
async fn capture(
    mut cmd: tokio::process::Command,
    label: &str,
    timeout_s: u64,
    save: &Path,
    notes: &mut Vec<String>,
) -> Option<String> {
    cmd.kill_on_drop(true).process_group(0);
    match tokio::time::timeout(Duration::from_secs(timeout_s), cmd.output()).await {
        Ok(Ok(o)) => {
            let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
            let _ = std::fs::write(save, &text);
            notes.push(format!("{label}: {}", o.status));
            Some(text)
        }
        Ok(Err(e)) => {
            notes.push(format!("{label} failed to start: {e}"));
            None
        }
        Err(_) => {
            notes.push(format!("{label} timed out after {timeout_s} s"));
            None
        }
    }
}

/// The hot-path results of the newest earlier run under `out_root` that has them.
pub fn previous_hotpath(out_root: &Path) -> Hotpath {
    let mut runs: Vec<_> = std::fs::read_dir(out_root)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.path().join("hotpath.json").is_file())
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    runs.sort();
    if let Some(last) = runs.last() {
        if let Ok(text) = std::fs::read_to_string(out_root.join(last).join("hotpath.json")) {
            if let Ok(mut h) = serde_json::from_str::<Hotpath>(&text) {
                h.ran = false;
                h.from_run = Some(last.to_string_lossy().to_string());
                return h;
            }
        }
    }
    Hotpath { note: "this profile does not run them (`hotpath: false`) and no earlier run in the results folder has them; `make bench` runs them".into(), ..Default::default() }
}

/// Lines of one module of a router.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleSize {
    /// `internal/<pkg>` or `src/<file>.rs`.
    pub module: String,
    /// Non-blank lines of code (Go: non-test files; Rust: before `#[cfg(test)]`).
    pub code: usize,
    /// Non-blank lines of tests.
    pub tests: usize,
}

fn nonblank(s: &str) -> usize {
    s.lines().filter(|l| !l.trim().is_empty()).count()
}

/// Code size per module: `go-baseline/internal/*` (+ `cmd/router`) and `rust-pingora/src/*`.
pub fn code_size(repo: &Path) -> (Vec<ModuleSize>, Vec<ModuleSize>) {
    let mut go = Vec::new();
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(repo.join("go-baseline/internal"))
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    dirs.push(repo.join("go-baseline/cmd/router"));
    dirs.sort();
    for d in dirs {
        let (mut code, mut tests) = (0, 0);
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for f in rd.flatten() {
            let p = f.path();
            let name = p.file_name().unwrap_or_default().to_string_lossy().to_string();
            if !name.ends_with(".go") {
                continue;
            }
            let n = nonblank(&std::fs::read_to_string(&p).unwrap_or_default());
            if name.ends_with("_test.go") {
                tests += n
            } else {
                code += n
            }
        }
        let module = d.strip_prefix(repo.join("go-baseline")).unwrap_or(&d).display().to_string();
        go.push(ModuleSize { module, code, tests });
    }
    let mut rust = Vec::new();
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(repo.join("rust-pingora/src"))
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "rs")).collect())
        .unwrap_or_default();
    files.sort();
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let (code, tests) = match text.find("#[cfg(test)]") {
            Some(i) => (nonblank(&text[..i]), nonblank(&text[i..])),
            None => (nonblank(&text), 0),
        };
        rust.push(ModuleSize { module: format!("src/{}", p.file_name().unwrap().to_string_lossy()), code, tests });
    }
    (go, rust)
}

/// The entries of docs/divergences.md: `"<section>: <bold lead of each bullet>"`, or the
/// section headings (levels 2 and 3) where a section has no bold-led bullets.
pub fn divergences(repo: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(repo.join("docs/divergences.md")).map_err(|e| format!("docs/divergences.md: {e}"))?;
    Ok(divergence_entries(&text))
}

/// See [`divergences`].
pub fn divergence_entries(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    let mut section_had_entry = true;
    for l in text.lines() {
        if let Some(h) = l.strip_prefix("### ").or_else(|| l.strip_prefix("## ")) {
            if let (Some(s), false) = (&section, section_had_entry) {
                out.push(s.clone());
            }
            section = Some(h.trim().to_string());
            section_had_entry = false;
        } else if let Some(rest) = l.strip_prefix("- **") {
            if let Some(end) = rest.find("**") {
                let lead = rest[..end].trim_end_matches(['.', ':']).to_string();
                out.push(match &section {
                    Some(s) => format!("{s}: {lead}"),
                    None => lead,
                });
                section_had_entry = true;
            }
        }
    }
    if let (Some(s), false) = (&section, section_had_entry) {
        out.push(s.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divergence_entries_are_listed() {
        let t = "# D\n\n## Go: net/http\n\n- **431 for oversized headers** comes from...\n  more\n- **Header name case**: x\n\n## Pingora: empty\n\ntext\n";
        assert_eq!(
            divergence_entries(t),
            vec!["Go: net/http: 431 for oversized headers", "Go: net/http: Header name case", "Pingora: empty"]
        );
    }

    #[test]
    fn wrk_output_is_parsed() {
        let out = "Running 1s test @ http://127.0.0.1:1/\n  Latency Distribution\n     50%  118.00us\n     75%  150.00us\n     90%  200.00us\n     99%    1.23ms\n  41000 requests in 1.00s, 5.00MB read\nRequests/sec:  40999.12\nTransfer/sec:      5.00MB\n";
        let (r, a, b) = parse_wrk(out);
        assert_eq!(r, Some(40999.12));
        assert_eq!(a, Some(118.0));
        assert_eq!(b, Some(1230.0));
        assert_eq!(parse_wrk_time("2.00s"), Some(2e6));
    }

    #[test]
    fn go_and_criterion_output_is_parsed() {
        let go = "goos: linux\nBenchmarkRoute-2   \t 1000000\t      1234 ns/op\t  16 B/op\nBenchmarkX/sub_case-2  10  5.5 ns/op\nPASS\n";
        let g = parse_go_bench(go);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].name, "Route");
        assert_eq!(g[0].ns, 1234.0);
        assert_eq!(g[1].name, "X/sub_case");
        let cr = "route                   time:   [1.0000 µs 1.5000 µs 2.0000 µs]\nvery/long/benchmark/name/here\n                        time:   [10.0 ns 20.0 ns 30.0 ns]\n                        thrpt:  [91.994 MiB/s 93.580 MiB/s 94.815 MiB/s]\n                 change:\n                        time:   [-21.893% -18.923% -15.740%] (p = 0.00 < 0.05)\n";
        let c = parse_criterion(cr);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].name, "route");
        assert_eq!(c[0].ns, 1500.0);
        assert_eq!(c[1].name, "very/long/benchmark/name/here");
        assert_eq!(c[1].ns, 20.0);
    }
}
