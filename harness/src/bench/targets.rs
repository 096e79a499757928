//! Starting the benchmark targets as child processes and waiting until they answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::profile::Selection;

/// Every target name, in the report's order.
pub const KNOWN: &[&str] = &["direct", "go", "pingora", "go-bare", "pingora-bare", "nginx", "haproxy"];

/// The upstream keep-alive pool every target gets (docs/spec.md section 1, the pool
/// paragraph): idle connections kept per endpoint. The routers have it built in
/// (Go `MaxIdleConnsPerHost`, Pingora `upstream_keepalive_pool_size`); the harness writes
/// the same number into nginx (`keepalive`) and HAProxy (`pool-max-conn`).
pub const UPSTREAM_IDLE_POOL: usize = 16384;

/// The routing key every benchmark request carries (the routers' one route).
pub const ROUTING_KEY: &str = "bench";

/// A running target.
pub struct Running {
    /// Target name (one of [`KNOWN`]).
    pub name: String,
    /// Where the load goes.
    pub addr: SocketAddr,
    /// Root pid of the process tree whose CPU and memory are charged to this target.
    pub pid: i32,
    /// The child process (None for `direct`, which is the shared upstream).
    pub child: Option<Child>,
    /// Version or build note for the report.
    pub note: String,
    /// This target's own upstream (`None`: the run's shared upstream, or a remote one).
    pub upstream: Option<UpstreamProc>,
    /// Where the accept count of this target's upstream is read (`GET /_parity/accepts`).
    pub upstream_addr: Option<SocketAddr>,
    /// Runs on another host: no process tree here (no CPU or RSS figures).
    pub remote: bool,
    /// The most client connections the target accepts (HAProxy: [`haproxy_maxconn`]);
    /// `None`: no limit of its own.
    pub max_conns: Option<usize>,
}

/// An upstream process started by the run.
pub struct UpstreamProc {
    /// Its first listening address.
    pub addr: SocketAddr,
    /// Its pid (own process group).
    pub pid: i32,
    /// The child, killed on drop.
    pub child: Child,
}

/// A target that could not be run, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Absent {
    /// Target name.
    pub name: String,
    /// Reason shown in the report.
    pub reason: String,
}

use crate::util::net::free_ports;

/// The request header whose value `consistent_hash` placements hash (routers:
/// `hash_key: header:x-bench-key`; nginx: `hash $http_x_bench_key consistent`). The load
/// does not send it (every request hashes the empty key, as in both); the Ketama check does.
pub const HASH_HEADER: &str = "x-bench-key";

/// The upstream side of a target: the endpoints of its one placement and how it selects.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Endpoint addresses (1 ..= 256), in config order.
    pub endpoints: Vec<SocketAddr>,
    /// `None`: the classic single-`endpoint` config (and a one-server nginx `upstream`);
    /// `Some`: an `endpoints` list with this selection.
    pub selection: Option<Selection>,
}

/// An upstream process (`parity bench --serve-upstream`), listening on `ports` ports;
/// `Running::addr` is the first, the second value every one of them. `cpus`: where it
/// runs (the load generator's CPUs), `None`: not pinned.
pub async fn start_upstream(parity: &Path, ports: usize, threads: usize, body: usize, log: &Path, cpus: Option<&[usize]>) -> anyhow::Result<(Running, Vec<SocketAddr>)> {
    use tokio::io::AsyncBufReadExt;
    let mut cmd = Command::new(parity);
    if let Some(c) = cpus {
        super::procs::pin_command(&mut cmd, c);
    }
    let mut child = cmd
        .args(["bench", "--serve-upstream", "127.0.0.1:0"])
        .args(["--upstream-threads", &threads.to_string(), "--response-bytes", &body.to_string()])
        .args(["--upstream-ports", &ports.max(1).to_string()])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true)
        .process_group(0)
        .spawn()?;
    crate::util::procs::register_group(child.id().unwrap_or(0) as i32);
    let out = child.stdout.take().expect("piped");
    let mut lines = tokio::io::BufReader::new(out).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .map_err(|_| anyhow::anyhow!("upstream did not start within 10 s"))??
        .ok_or_else(|| anyhow::anyhow!("upstream exited"))?;
    let addrs = line
        .strip_prefix("listening ")
        .ok_or_else(|| anyhow::anyhow!("unexpected upstream line {line:?}"))?
        .split_whitespace()
        .map(|a| a.parse::<SocketAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    let addr = *addrs.first().ok_or_else(|| anyhow::anyhow!("upstream listens nowhere: {line:?}"))?;
    let pid = child.id().unwrap_or(0) as i32;
    let r = Running { name: "upstream".into(), addr, pid, child: Some(child), note: "parity bench upstream (hyper)".into(), upstream: None, upstream_addr: Some(addr), remote: false, max_conns: None };
    Ok((r, addrs))
}

/// The LKG config the routers load: one route `bench` to one placement on the upstream,
/// no health check and no breaker (both would only add background work here), limits
/// far above any load the benchmark offers. A placement with a selection lists its
/// endpoints (weight 1 each); `consistent_hash` hashes the [`HASH_HEADER`] field.
pub fn router_config(p: &Placement) -> serde_json::Value {
    let mut placement = serde_json::json!({
        "max_concurrency": 100000,
        "timeouts": { "connect_ms": 1000, "request_ms": 30000 }
    });
    match p.selection {
        None => placement["endpoint"] = format!("http://{}", p.endpoints[0]).into(),
        Some(sel) => {
            placement["endpoints"] = p.endpoints.iter().map(|a| serde_json::json!({ "url": format!("http://{a}") })).collect();
            placement["selection"] = sel.as_str().into();
            if sel == Selection::ConsistentHash {
                placement["hash_key"] = format!("header:{HASH_HEADER}").into();
            }
        }
    }
    serde_json::json!({ "version": 1, "routes": { ROUTING_KEY: "bench" }, "placements": { "bench": placement } })
}

/// The `upstream bench { ... }` lines naming the servers and the balancing method:
/// round robin is nginx's default, `random` and `hash $http_x_bench_key consistent` the
/// equivalents of the routers' `random` and `consistent_hash`. Servers are written
/// `127.0.0.1:PORT`, the string nginx's consistent hash splits into host and port.
fn nginx_servers(p: &Placement) -> String {
    let method = match p.selection {
        None | Some(Selection::RoundRobin) => String::new(),
        Some(Selection::Random) => "        random;\n".into(),
        Some(Selection::ConsistentHash) => format!("        hash $http_{} consistent;\n", HASH_HEADER.replace('-', "_")),
    };
    let servers: String = p.endpoints.iter().map(|a| format!("        server {a};\n")).collect();
    format!("{method}{servers}")
}

/// nginx.conf with the same worker count and upstream keep-alive pool as the routers.
pub fn nginx_conf(dir: &Path, listen: SocketAddr, upstream: &Placement, threads: usize, nofile: u64, pool: usize) -> String {
    let d = dir.display();
    let servers = nginx_servers(upstream);
    let conns = nofile.saturating_sub(64).max(1024);
    format!(
        r#"# Written by parity bench: same workers and upstream keep-alive as the routers.
daemon off;
master_process on;
worker_processes {threads};
worker_rlimit_nofile {nofile};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {conns}; multi_accept off; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    upstream bench {{
{servers}        keepalive {pool};
        keepalive_timeout 60s;
        keepalive_requests 100000000;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"#
    )
}

/// haproxy.cfg equivalent to the nginx file and the routers: `nbthread` = the targets'
/// threads, HTTP keep-alive on both sides, any idle upstream connection reusable by any
/// request (`http-reuse always`, as the routers' pools), at most `pool` idle upstream
/// connections (`pool-max-conn`), idle ones purged after 60 s (`pool-purge-delay`; HAProxy
/// closes half of the unused ones per period), no logging (no `log` line), connect
/// timeout 1 s and server timeout 30 s as the routers' bench placement (`connect_ms`,
/// `request_ms`), client keep-alive 75 s as nginx. `maxconn` (client connections) is
/// [`haproxy_maxconn`].
pub fn haproxy_conf(listen: SocketAddr, upstream: SocketAddr, threads: usize, nofile: u64, pool: usize) -> String {
    let maxconn = haproxy_maxconn(nofile);
    format!(
        r#"# Written by parity bench: same threads and upstream keep-alive pool as the routers.
global
    nbthread {threads}
    maxconn {maxconn}
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 1s
    timeout server 30s
    timeout client 75s
    timeout http-keep-alive 75s
    timeout http-request 75s
frontend bench
    bind {listen}
    maxconn {maxconn}
    default_backend bench
backend bench
    server s1 {upstream} pool-max-conn {pool} pool-purge-delay 60s
"#
    )
}

/// The most client connections HAProxy accepts under RLIMIT_NOFILE `nofile`: it reserves
/// two descriptors per connection plus 14 and refuses to start (`Cannot raise FD limit`)
/// when that exceeds the limit (HAProxy 2.6). At 20,000 that is 9,993: the harness gives it
/// at most that many client connections (a rung or idle phase asking more is capped, and
/// the report says so); more would wait in the listen backlog until HAProxy's keep-alive
/// timeout frees a slot.
pub fn haproxy_maxconn(nofile: u64) -> u64 {
    (nofile.saturating_sub(14) / 2).max(256)
}

/// Everything needed to start a target.
pub struct Env<'a> {
    /// Directory of go-router, pingora-router, go-bare, pingora-bare.
    pub bin_dir: &'a Path,
    /// Scratch directory of this run (state dirs, logs, nginx.conf).
    pub work: &'a Path,
    /// The shared upstream.
    pub upstream: SocketAddr,
    /// Worker threads of every target.
    pub threads: usize,
    /// RLIMIT_NOFILE the children inherit.
    pub nofile: u64,
    /// CPUs the targets run on (`None`: not pinned).
    pub cpus: Option<Vec<usize>>,
    /// CPUs of the generator and the upstreams (`None`: not pinned).
    pub load_cpus: Option<Vec<usize>>,
    /// Idle upstream connections nginx and HAProxy keep ([`UPSTREAM_IDLE_POOL`] unless
    /// the command line asks for another figure to compare with an earlier pool rule).
    pub pool: usize,
}

/// Starts the target `name` (not `direct`) on the single-endpoint placement of
/// `env.upstream`. Err(reason) when it cannot run here.
pub async fn start(name: &str, env: &Env<'_>) -> Result<Running, String> {
    let p = Placement { endpoints: vec![env.upstream], selection: None };
    start_with(name, name, &p, env).await
}

/// Starts the target `base` (`go`, `pingora`, `go-bare`, `pingora-bare`, `nginx`) as
/// the instance `name` (its work directory and report name) with the placement `p`
/// (the bare proxies always use `p.endpoints[0]`). Err(reason) when it cannot run here.
pub async fn start_with(name: &str, base: &str, p: &Placement, env: &Env<'_>) -> Result<Running, String> {
    start_inner(name, base, p, env, None).await
}

/// Starts a TLS instance `name` of the target `base` (one of
/// [`super::tls::TLS_TARGETS`]) on `env.upstream` with the certificate `certs`: the
/// routers and bare proxies get `--tls-cert`/`--tls-key`, nginx `listen ... ssl http2`,
/// HAProxy `bind ... ssl crt ... alpn h2,http/1.1`. Ready when a TLS request answers 2xx;
/// a binary that does not know the flags exits, and the reason is its error line.
pub async fn start_tls(name: &str, base: &str, env: &Env<'_>, certs: &super::tls::Certs) -> Result<Running, String> {
    let p = Placement { endpoints: vec![env.upstream], selection: None };
    start_inner(name, base, &p, env, Some(certs)).await
}

/// How many times a target is started on new ports after it exited on a port taken
/// meanwhile ("address already in use").
const BIND_ATTEMPTS: usize = 4;

/// [`start_once`], again on new ports while the target exits because a port it was
/// handed (picked free, then released) was taken by another program in between.
async fn start_inner(name: &str, base: &str, p: &Placement, env: &Env<'_>, tls: Option<&super::tls::Certs>) -> Result<Running, String> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match start_once(name, base, p, env, tls).await {
            Err(e) if attempt < BIND_ATTEMPTS && e.to_ascii_lowercase().contains("in use") => {
                eprintln!("  {name}: a port was taken before it bound ({e}); starting it again on new ports");
            }
            r => return r,
        }
    }
}

async fn start_once(name: &str, base: &str, p: &Placement, env: &Env<'_>, tls: Option<&super::tls::Certs>) -> Result<Running, String> {
    let tls_flags: Vec<String> = tls.map(|c| vec![format!("--tls-cert={}", c.cert.display()), format!("--tls-key={}", c.key.display())]).unwrap_or_default();
    // Two distinct ports (the routers' admin listener takes the second).
    let [port, admin] = free_ports::<2>().map_err(|e| e.to_string())?;
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dir = env.work.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("stderr.log")).map_err(|e| e.to_string())?;
    let threads = env.threads.to_string();
    let (prog, args, note): (PathBuf, Vec<String>, String) = match base {
        "go" | "pingora" => {
            let prog = env.bin_dir.join(if base == "go" { "go-router" } else { "pingora-router" });
            let state = dir.join("state");
            std::fs::create_dir_all(&state).map_err(|e| e.to_string())?;
            let cfg = serde_json::to_vec_pretty(&router_config(p)).unwrap();
            std::fs::write(state.join("last-known-good.json"), cfg).map_err(|e| e.to_string())?;
            let args = vec![
                format!("--listen=127.0.0.1:{port}"),
                format!("--admin-listen=127.0.0.1:{admin}"),
                format!("--state-dir={}", state.display()),
                format!("--threads={threads}"),
            ];
            let args = [args, tls_flags.clone()].concat();
            let note = match p.selection {
                None => "router, LKG config: one route, one placement".into(),
                Some(sel) => format!("router, LKG config: one route, one placement of {} endpoints, {}", p.endpoints.len(), sel.as_str()),
            };
            (prog, args, note)
        }
        "go-bare" | "pingora-bare" => {
            let prog = env.bin_dir.join(base);
            let args = vec![
                format!("--listen=127.0.0.1:{port}"),
                format!("--upstream={}", p.endpoints[0]),
                format!("--threads={threads}"),
            ];
            let args = [args, tls_flags.clone()].concat();
            (prog, args, "bare proxy".into())
        }
        "nginx" => {
            let prog = match which("nginx") {
                Some(p) => p,
                None => return Err("nginx is not installed (apt-get install nginx-light)".into()),
            };
            for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
                let _ = std::fs::create_dir_all(dir.join(sub));
            }
            let conf = dir.join("nginx.conf");
            let mut text = nginx_conf(&dir, listen, p, env.threads, env.nofile, env.pool);
            if let Some(c) = tls {
                text = super::tls::nginx_tls_conf(&text, listen, c);
            }
            std::fs::write(&conf, text).map_err(|e| e.to_string())?;
            let args = vec!["-p".into(), dir.display().to_string(), "-c".into(), conf.display().to_string()];
            let v = std::process::Command::new(&prog).arg("-v").output().ok()
                .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string()).unwrap_or_default();
            (prog, args, v)
        }
        "haproxy" => {
            let prog = match which("haproxy") {
                Some(p) => p,
                None => return Err("haproxy is not installed (apt-get install haproxy)".into()),
            };
            let conf = dir.join("haproxy.cfg");
            let mut text = haproxy_conf(listen, p.endpoints[0], env.threads, env.nofile, env.pool);
            if let Some(c) = tls {
                text = super::tls::haproxy_tls_conf(&text, listen, c);
            }
            std::fs::write(&conf, text).map_err(|e| e.to_string())?;
            // -db: stay in the foreground (one process, its threads).
            let args = vec!["-db".into(), "-f".into(), conf.display().to_string()];
            let v = std::process::Command::new(&prog).arg("-v").output().ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string()).unwrap_or_default();
            (prog, args, v)
        }
        other => return Err(format!("unknown target {other}")),
    };
    if !prog.exists() {
        return Err(format!("{} not built", prog.display()));
    }
    let mut cmd = Command::new(&prog);
    if let Some(c) = &env.cpus {
        super::procs::pin_command(&mut cmd, c);
    }
    let child = cmd
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .process_group(0) // own group: an interrupt kills it with its workers (nginx)
        .spawn()
        .map_err(|e| format!("{}: {e}", prog.display()))?;
    let pid = child.id().unwrap_or(0) as i32;
    crate::util::procs::register_group(pid);
    let mut r = Running { name: name.into(), addr: listen, pid, child: Some(child), note, upstream: None, upstream_addr: Some(env.upstream), remote: false, max_conns: None };
    if base == "haproxy" {
        let m = haproxy_maxconn(env.nofile) as usize;
        r.max_conns = Some(m);
        r.note = format!("{}; at most {m} client connections (maxconn: 2 descriptors per connection at RLIMIT_NOFILE {})", r.note, env.nofile);
    }
    if let Some(c) = tls {
        let child = r.child.as_mut().expect("started");
        let version = super::tls::wait_ready(listen, &c.roots, child, &dir.join("stderr.log")).await?;
        r.note = format!("{} over TLS ({version} negotiated with parity's rustls client)", r.note);
        return Ok(r);
    }
    // Ready when a benchmark request through it answers 2xx.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(true) = super::loadgen::probe_once(listen, ROUTING_KEY).await {
            return Ok(r);
        }
        if let Some(c) = r.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                let tail = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
                let tail: String = tail.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                return Err(format!("exited ({st}) before answering: {tail}"));
            }
        }
        if Instant::now() > deadline {
            return Err("did not answer 200 within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first `name` on PATH (plus /usr/sbin, where Debian puts nginx).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n).map(|i| SocketAddr::from(([127, 0, 0, 1], 9001 + i))).collect()
    }

    #[test]
    fn the_single_endpoint_config_is_unchanged_and_a_placement_lists_its_endpoints() {
        let one = router_config(&Placement { endpoints: addrs(1), selection: None });
        assert_eq!(one["placements"]["bench"]["endpoint"], "http://127.0.0.1:9001");
        assert!(one["placements"]["bench"].get("selection").is_none());
        let ch = router_config(&Placement { endpoints: addrs(3), selection: Some(Selection::ConsistentHash) });
        let p = &ch["placements"]["bench"];
        assert_eq!(p["endpoints"][2]["url"], "http://127.0.0.1:9003");
        assert_eq!(p["selection"], "consistent_hash");
        assert_eq!(p["hash_key"], "header:x-bench-key");
        let rr = router_config(&Placement { endpoints: addrs(2), selection: Some(Selection::RoundRobin) });
        assert!(rr["placements"]["bench"].get("hash_key").is_none());
    }

    #[test]
    fn nginx_gets_the_same_servers_and_the_equivalent_method() {
        let dir = Path::new("/tmp/x");
        let listen: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let conf = |sel| nginx_conf(dir, listen, &Placement { endpoints: addrs(4), selection: sel }, 1, 4096, 256);
        let ch = conf(Some(Selection::ConsistentHash));
        assert!(ch.contains("        hash $http_x_bench_key consistent;\n        server 127.0.0.1:9001;\n"), "{ch}");
        assert!(ch.contains("server 127.0.0.1:9004;\n        keepalive 256;"), "{ch}");
        assert!(conf(Some(Selection::Random)).contains("        random;\n        server 127.0.0.1:9001;"));
        let rr = conf(Some(Selection::RoundRobin));
        assert!(!rr.contains("random;") && !rr.contains("hash ") && rr.matches("server 127.0.0.1:").count() == 4);
        let one = nginx_conf(dir, listen, &Placement { endpoints: addrs(1), selection: None }, 1, 4096, 256);
        assert!(one.contains("upstream bench {\n        server 127.0.0.1:9001;\n        keepalive 256;"), "{one}");
    }

    #[test]
    fn haproxy_gets_the_threads_the_pool_and_no_log() {
        let listen: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let c = haproxy_conf(listen, addrs(1)[0], 1, 20000, UPSTREAM_IDLE_POOL);
        assert!(c.contains("    nbthread 1\n"), "{c}");
        assert!(c.contains(&format!("server s1 127.0.0.1:9001 pool-max-conn {UPSTREAM_IDLE_POOL} pool-purge-delay 60s")), "{c}");
        assert!(c.contains("http-reuse always") && c.contains("bind 127.0.0.1:8000"), "{c}");
        assert!(!c.contains("log"), "no logging: {c}");
        assert!(c.contains("    maxconn 9993\n"), "HAProxy's own limit at 20,000 descriptors: {c}");
    }
}
