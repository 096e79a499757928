//! The isolated environment of one scenario against one implementation: a temp dir with
//! the router's state dir, fresh loopback ports, the mock upstreams, the control plane and
//! the router process.
//!
//! Router processes run in their own process group, are registered in a process-wide
//! table so that Ctrl-C can kill them all ([`kill_all`]), are stopped with SIGTERM then
//! SIGKILL after a deadline, and are killed when their [`RouterProc`] is dropped (a
//! failure or panic never leaves one running). Their stdout and stderr go to files.

use crate::control_plane::ControlPlane;
use crate::plan::{Bindings, UpstreamBinding};
use crate::scenario::Scenario;
use crate::trace::Normaliser;
use crate::upstreams::Upstream;
use crate::util::procs::{register_group, unregister_group};
use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Temp dirs of live environments, removed by [`kill_all`] (their `TempDir` guards do not
/// run when the process exits on Ctrl-C).
static TEMP_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());


/// SIGKILLs the process group of every router still running and removes the temp dirs
/// of live environments (Ctrl-C, fatal errors).
pub fn kill_all() {
    crate::util::procs::kill_groups();
    for d in TEMP_DIRS.lock().unwrap().drain(..) {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Implementation names and their binaries in the bin dir.
pub fn binary_name(imp: &str) -> Option<&'static str> {
    match imp {
        "go" => Some("go-router"),
        "pingora" => Some("pingora-router"),
        _ => None,
    }
}

/// Finds the bin dir: the flag, then `PARITY_BIN_DIR`, then the folder of this
/// executable when it holds a router, then `./bin`.
pub fn find_bin_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(f) = flag {
        return f;
    }
    if let Ok(e) = std::env::var("PARITY_BIN_DIR") {
        if !e.is_empty() {
            return PathBuf::from(e);
        }
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            if d.join("go-router").exists() || d.join("pingora-router").exists() {
                return d.to_path_buf();
            }
        }
    }
    PathBuf::from("bin")
}

/// A router process (possibly restarted several times on the same ports and state dir).
pub struct RouterProc {
    /// `go` or `pingora`.
    pub imp: String,
    bin: PathBuf,
    args: Vec<String>,
    /// Data-plane port.
    pub listen_port: u16,
    /// Admin port.
    pub admin_port: u16,
    log_dir: PathBuf,
    child: Option<tokio::process::Child>,
    starts: u32,
    /// Peak resident set (VmHWM) over every process started, bytes.
    pub rss_peak: u64,
    /// Exit code of the last process that ended (None: killed by a signal or running).
    pub last_exit: Option<Option<i32>>,
}

impl RouterProc {
    /// PID of the running process.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| c.id()).map(|p| p as i32)
    }

    /// Starts the process and waits up to 10 s for `GET /healthz` to answer 200.
    pub async fn start(&mut self, client: &reqwest::Client) -> Result<()> {
        self.starts += 1;
        let out = std::fs::File::create(self.log_dir.join(format!("router.{}.stdout", self.starts)))?;
        let err = std::fs::File::create(self.log_dir.join(format!("router.{}.stderr", self.starts)))?;
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(&self.args)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("start {}", self.bin.display()))?;
        if let Some(pid) = child.id() {
            register_group(pid as i32);
        }
        self.child = Some(child);
        self.last_exit = None;
        let url = format!("http://127.0.0.1:{}/healthz", self.admin_port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = client.get(&url).timeout(Duration::from_millis(500)).send().await {
                if r.status().as_u16() == 200 {
                    // Make sure it is our process answering (another program may have
                    // taken the port between our pick and the router's bind).
                    let st = client
                        .get(format!("http://127.0.0.1:{}/admin/state", self.admin_port))
                        .timeout(Duration::from_millis(500))
                        .send()
                        .await;
                    let imp = match st {
                        Ok(r) => r.json::<serde_json::Value>().await.ok().and_then(|v| v.get("impl").and_then(|i| i.as_str()).map(String::from)),
                        Err(_) => None,
                    };
                    let exited = self.child.as_mut().map(|c| matches!(c.try_wait(), Ok(Some(_)))).unwrap_or(true);
                    if !exited && imp.as_deref() == Some(self.imp.as_str()) {
                        return self.check_data_port().await;
                    }
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.forget(st.code());
                    bail!("{} exited with {:?} before /healthz answered: {}", self.imp, st.code(), self.stderr_tail());
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{}: /healthz did not answer 200 within 10 s: {}", self.imp, self.stderr_tail());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// After `/healthz` answered, the data port must accept connections (spec: healthz
    /// answers once both listeners are bound). A router whose bind lost a race for the
    /// port (picked free by the harness, taken meanwhile) may keep running without it: that
    /// is reported as "address in use" so the caller retries on fresh ports, and noted in
    /// `router.notes` in the log folder.
    async fn check_data_port(&mut self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            match tokio::net::TcpStream::connect(crate::util::net::addr(self.listen_port)).await {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    let note = format!(
                        "start {}: /healthz answered 200 but the data port {} refused connections for 2 s ({e}); retried on new ports\n",
                        self.starts, self.listen_port
                    );
                    use std::io::Write;
                    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(self.log_dir.join("router.notes")) {
                        let _ = f.write_all(note.as_bytes());
                    }
                    bail!("data port {} not listening although /healthz answered (address in use?)", self.listen_port);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn forget(&mut self, code: Option<i32>) {
        if let Some(pid) = self.pid() {
            unregister_group(pid);
        }
        self.child = None;
        self.last_exit = Some(code);
    }

    /// Access-log lines (JSON objects with `ts`) of the current process's stderr.
    pub fn access_log(&self) -> Vec<serde_json::Value> {
        let p = self.log_dir.join(format!("router.{}.stderr", self.starts));
        let t = std::fs::read_to_string(p).unwrap_or_default();
        t.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
            .filter(|v| v.get("ts").is_some())
            .collect()
    }

    /// Last lines of the current process's stderr.
    pub fn stderr_tail(&self) -> String {
        let p = self.log_dir.join(format!("router.{}.stderr", self.starts));
        let t = std::fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = t.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// Reads VmHWM of the running process into `rss_peak`; returns the current peak.
    pub fn sample_rss(&mut self) -> u64 {
        if let Some(pid) = self.pid() {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                for l in s.lines() {
                    if let Some(v) = l.strip_prefix("VmHWM:") {
                        let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                        self.rss_peak = self.rss_peak.max(kb * 1024);
                    }
                }
            }
        }
        self.rss_peak
    }

    /// Sends SIGTERM to the running process.
    pub fn sigterm(&mut self) {
        self.sample_rss();
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }

    /// Sends SIGHUP to the running process (TLS certificate reload).
    pub fn sighup(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGHUP);
        }
    }

    /// Waits for the process to exit; returns its exit code (None: signal) or Err on
    /// timeout (the process keeps running).
    pub async fn wait_exit(&mut self, within: Duration) -> Result<Option<i32>> {
        let Some(c) = self.child.as_mut() else {
            return Ok(self.last_exit.flatten());
        };
        match tokio::time::timeout(within, c.wait()).await {
            Ok(Ok(st)) => {
                self.forget(st.code());
                Ok(st.code())
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => bail!("did not exit within {} ms", within.as_millis()),
        }
    }

    /// SIGTERM, then SIGKILL to the group after `grace`. Returns the exit code when the
    /// process ended by itself.
    pub async fn stop(&mut self, grace: Duration) -> Option<i32> {
        if self.child.is_none() {
            return self.last_exit.flatten();
        }
        self.sigterm();
        match self.wait_exit(grace).await {
            Ok(c) => c,
            Err(_) => {
                self.kill();
                None
            }
        }
    }

    /// SIGKILL to the process group, now.
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            unregister_group(pid);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
        }
    }

}

impl Drop for RouterProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Everything one scenario run needs.
pub struct Env {
    /// Temp dir (state dir, TLS files); removed on drop.
    pub dir: tempfile::TempDir,
    /// The router's `--state-dir`.
    pub state_dir: PathBuf,
    /// Upstreams by name.
    pub upstreams: BTreeMap<String, Upstream>,
    /// The control plane, when the scenario has one.
    pub cp: Option<ControlPlane>,
    /// The router.
    pub router: RouterProc,
    /// A port nothing listens on.
    pub unused_port: u16,
    /// Holds [`Env::unused_port`] for the run.
    _unused: crate::util::net::ReservedPort,
    /// HTTP client for admin calls and sends: no proxy, no pooled connections.
    pub client: reqwest::Client,
    /// What every mock upstream received, per request (shared by all upstreams).
    pub received: crate::observe::upstream::Recorder,
    /// The self-test's injecting proxy, when this run carries one
    /// ([`crate::selftest`]); None in every normal run.
    pub injected: Option<Injected>,
    /// Toxiproxy and its proxies, when the scenario has a `toxiproxy` block.
    pub toxi: Option<crate::toxiproxy::Toxiproxy>,
    /// The run's certificates, when the router's listener is TLS (`router.tls`).
    pub pki: Option<crate::tls::TestPki>,
    /// How `send` steps reach the data port (set by [`crate::engine::run_over`]).
    pub transport: crate::tls::Transport,
}

/// Where to put the self-test's injecting proxy in an environment.
#[derive(Debug, Clone)]
pub struct InjectSpec {
    /// The one difference.
    pub injection: crate::selftest::inject::Injection,
    /// For an upstream-side injection: which upstream the proxy sits in front of.
    pub upstream: Option<String>,
}

/// A running injecting proxy and where it sits.
pub struct Injected {
    /// The proxy.
    pub proxy: crate::selftest::inject::Proxy,
    /// The side.
    pub side: crate::selftest::inject::Side,
    /// The upstream it fronts (upstream side).
    pub upstream: Option<String>,
}

/// A plain HTTP client: no proxy, no idle connections kept (every request on a fresh
/// connection, so router restarts never hit a stale one).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

impl Env {
    /// Builds the environment and starts the router (not yet waiting for the initial
    /// config). `log_dir` receives the router's output.
    pub async fn create(sc: &Scenario, imp: &str, bin_dir: &Path, log_dir: &Path) -> Result<Env> {
        Env::create_with(sc, imp, bin_dir, log_dir, None).await
    }

    /// [`Env::create`], with the self-test's injecting proxy `inject` placed in front of the
    /// data port, the admin port or one upstream.
    pub async fn create_with(sc: &Scenario, imp: &str, bin_dir: &Path, log_dir: &Path, inject: Option<&InjectSpec>) -> Result<Env> {
        let bin_name = binary_name(imp).with_context(|| format!("unknown implementation {imp:?}"))?;
        let bin = bin_dir.join(bin_name);
        if !bin.exists() {
            bail!("router binary {} not found (run `make build` or pass --bin-dir)", bin.display());
        }
        std::fs::create_dir_all(log_dir)?;
        let dir = tempfile::Builder::new().prefix("parity-").tempdir()?;
        TEMP_DIRS.lock().unwrap().push(dir.path().to_path_buf());
        let state_dir = dir.path().join("state");
        let mut upstreams = BTreeMap::new();
        let received = crate::observe::upstream::Recorder::new();
        // Ports ascend in the byte order of the upstream names: a multi-endpoint placement
        // orders its endpoints by socket address (docs/spec.md section 3, "Endpoint
        // selection"), so a scenario's endpoint order, and with it a round-robin sequence,
        // is the order of its upstream names in every run.
        let mut listeners = Vec::with_capacity(sc.upstreams.len());
        for _ in &sc.upstreams {
            listeners.push(std::net::TcpListener::bind("127.0.0.1:0").context("bind upstream")?);
        }
        listeners.sort_by_key(|l| l.local_addr().map(|a| a.port()).unwrap_or(0));
        for ((name, spec), std_l) in sc.upstreams.iter().zip(listeners) {
            upstreams.insert(name.clone(), Upstream::start_on(std_l, name, spec, dir.path(), received.clone()).await?);
        }
        // Held (bound, not listening) for the whole run: refuses connections, and no
        // port picked later (router, upstreams of a parallel run) can be the same.
        let unused = crate::util::net::ReservedPort::new(0)?;
        let unused_port = unused.port();
        let [listen_port, admin_port] = crate::util::net::free_ports::<2>()?;
        let mut env = Env {
            dir,
            state_dir,
            upstreams,
            cp: None,
            router: RouterProc {
                imp: imp.to_string(),
                bin,
                args: Vec::new(),
                listen_port,
                admin_port,
                log_dir: log_dir.to_path_buf(),
                child: None,
                starts: 0,
                rss_peak: 0,
                last_exit: None,
            },
            unused_port,
            _unused: unused,
            client: client(),
            received,
            injected: None,
            toxi: None,
            pki: None,
            transport: crate::tls::Transport::H1,
        };
        if let Some(spec) = inject {
            use crate::selftest::inject::{Proxy, Side};
            let side = spec.injection.side();
            let target = match (side, &spec.upstream) {
                (Side::Upstream, Some(u)) => crate::util::net::addr(env.upstreams.get(u).with_context(|| format!("no upstream {u:?}"))?.port),
                (Side::Upstream, None) => bail!("an upstream-side injection needs an upstream"),
                (Side::Client, _) => crate::util::net::addr(listen_port),
                (Side::Admin, _) => crate::util::net::addr(admin_port),
            };
            let proxy = Proxy::start(target, spec.injection.clone()).await?;
            env.injected = Some(Injected { proxy, side, upstream: spec.upstream.clone() });
        }
        if let Some(t) = &sc.toxiproxy {
            env.toxi = Some(crate::toxiproxy::Toxiproxy::for_upstreams(t, bin_dir, log_dir, env.client.clone(), &env.upstreams).await?);
        }
        let bindings = env.bindings();
        let initial = sc.config.as_ref().map(|c| bindings.fill_value(c).to_string());
        if sc.router.control_plane {
            env.cp = Some(ControlPlane::start(initial.clone(), sc.router.push_on_hello).await?);
            if let (Some(t), Some(cp)) = (env.toxi.as_mut(), env.cp.as_ref()) {
                t.front_control_plane(sc.toxiproxy.as_ref(), cp.port).await?;
            }
        } else if let Some(text) = &initial {
            std::fs::create_dir_all(&env.state_dir)?;
            std::fs::write(env.state_dir.join("last-known-good.json"), text)?;
        }
        if let Some(t) = &sc.router.lkg_text {
            std::fs::create_dir_all(&env.state_dir)?;
            std::fs::write(env.state_dir.join("last-known-good.json"), bindings.fill(t))?;
        }
        let r = &sc.router;
        let mut args = vec![
            format!("--listen=127.0.0.1:{listen_port}"),
            format!("--admin-listen=127.0.0.1:{admin_port}"),
            format!("--state-dir={}", env.state_dir.display()),
            format!("--threads={}", r.threads),
            format!("--reconnect-initial-ms={}", r.reconnect_initial_ms),
            format!("--reconnect-max-ms={}", r.reconnect_max_ms),
        ];
        if let Some(cp) = &env.cp {
            let url = env.toxi.as_ref().and_then(|t| t.control_plane_url()).unwrap_or_else(|| cp.url());
            args.push(format!("--control-plane={url}"));
        }
        if r.access_log {
            args.push("--access-log".into());
        }
        if let Some(g) = r.shutdown_grace_ms {
            args.push(format!("--shutdown-grace-ms={g}"));
        }
        if let Some(p) = r.cp_ping_ms {
            args.push(format!("--cp-ping-ms={p}"));
        }
        if let Some(t) = r.cp_pong_timeout_ms {
            args.push(format!("--cp-pong-timeout-ms={t}"));
        }
        if let Some(tls) = &r.tls {
            let pki = crate::tls::TestPki::generate(&env.dir.path().join("tls"))?;
            args.push(format!("--tls-cert={}", pki.cert_file().display()));
            args.push(format!("--tls-key={}", pki.key_file().display()));
            if tls.client_ca {
                args.push(format!("--client-ca={}", pki.ca_file().display()));
            }
            env.pki = Some(pki);
        }
        let client = env.client.clone();
        // Ports are picked free and then handed to the router, so another program can take
        // one in between: on a bind failure, pick new ports and try again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut a = args.clone();
            a[0] = format!("--listen=127.0.0.1:{}", env.router.listen_port);
            a[1] = format!("--admin-listen=127.0.0.1:{}", env.router.admin_port);
            std::fs::write(log_dir.join("router.args"), a.join(" "))?;
            env.router.args = a;
            match env.router.start(&client).await {
                Ok(()) => return Ok(env),
                Err(e) if attempt < 4 && format!("{e:#}").contains("in use") => {
                    env.router.kill();
                    [env.router.listen_port, env.router.admin_port] = crate::util::net::free_ports::<2>()?;
                    // A client- or admin-side injecting proxy forwards to the old port:
                    // start it again in front of the new one.
                    if let (Some(inj), Some(spec)) = (env.injected.as_mut(), inject) {
                        use crate::selftest::inject::{Proxy, Side};
                        let port = match inj.side {
                            Side::Client => Some(env.router.listen_port),
                            Side::Admin => Some(env.router.admin_port),
                            Side::Upstream => None,
                        };
                        if let Some(port) = port {
                            inj.proxy = Proxy::start(crate::util::net::addr(port), spec.injection.clone()).await?;
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// How `send` steps connect: the run's transport and, over TLS, a client configuration
    /// trusting the run's CA with the ALPN of the transport and certificate `cert`
    /// (absent: the good one when the router requires client certificates, else none).
    pub fn conn_for(&self, cert: Option<crate::tls::ClientCert>) -> Result<crate::client::Conn> {
        let transport = self.transport;
        let Some(pki) = self.pki.as_ref().filter(|_| transport.needs_tls()) else {
            return Ok(crate::client::Conn { transport: crate::tls::Transport::H1, tls: None });
        };
        let required = self.router.args.iter().any(|a| a.starts_with("--client-ca="));
        let cert = cert.unwrap_or(if required { crate::tls::ClientCert::Good } else { crate::tls::ClientCert::None });
        Ok(crate::client::Conn { transport, tls: Some(pki.client_config(cert, &transport.alpn(), None)?) })
    }

    /// The values of the scenario's templates in this environment (constant once the
    /// environment is up: restarts keep the ports).
    pub fn bindings(&self) -> Bindings {
        Bindings {
            unused_port: self.unused_port,
            state_dir: self.state_dir.clone(),
            upstreams: self
                .upstreams
                .iter()
                .map(|(name, up)| {
                    // An upstream-side injecting proxy takes the upstream's place in configs.
                    match self.proxy_for(name) {
                        Some(p) => (name.clone(), UpstreamBinding { origin: format!("http://127.0.0.1:{p}"), port: p, ca_file: up.ca_file.clone() }),
                        // A Toxiproxy proxy in front of it does too (same scheme: it relays bytes).
                        None if self.toxi.as_ref().and_then(|t| t.port_of(name)).is_some() => {
                            let p = self.toxi.as_ref().and_then(|t| t.port_of(name)).unwrap_or(up.port);
                            (name.clone(), UpstreamBinding { origin: up.origin().replace(&format!(":{}", up.port), &format!(":{p}")), port: p, ca_file: up.ca_file.clone() })
                        }
                        None => (name.clone(), UpstreamBinding { origin: up.origin(), port: up.port, ca_file: up.ca_file.clone() }),
                    }
                })
                .collect(),
        }
    }

    /// The port of the injecting proxy in front of upstream `name`, if any.
    fn proxy_for(&self, name: &str) -> Option<u16> {
        match &self.injected {
            Some(i) if i.side == crate::selftest::inject::Side::Upstream && i.upstream.as_deref() == Some(name) => Some(i.proxy.port),
            _ => None,
        }
    }

    /// Where the client sends: the router's data port (or the client-side proxy).
    pub fn data_addr(&self) -> std::net::SocketAddr {
        match &self.injected {
            Some(i) if i.side == crate::selftest::inject::Side::Client => crate::util::net::addr(i.proxy.port),
            _ => crate::util::net::addr(self.router.listen_port),
        }
    }

    /// The admin port the harness reads (the router's, or the admin-side proxy).
    pub fn admin_read_port(&self) -> u16 {
        match &self.injected {
            Some(i) if i.side == crate::selftest::inject::Side::Admin => i.proxy.port,
            _ => self.router.admin_port,
        }
    }

    /// The observation normaliser of this run (every rule of
    /// [`crate::observe::normalise::Rule`], with this run's ports and paths).
    pub fn full_normaliser(&self) -> crate::observe::normalise::Normaliser {
        crate::observe::normalise::Normaliser::new(self.substitutions())
    }

    /// The rules that replace this run's specific text (ports, paths) by stable
    /// placeholders, so that traces of two environments compare equal.
    pub fn normaliser(&self) -> Normaliser {
        Normaliser::new(self.substitutions())
    }

    /// `(run-specific text, placeholder)` pairs, most specific first (rules `ports` and
    /// `temp-paths` of [`crate::observe::normalise::Rule`]).
    pub fn substitutions(&self) -> Vec<(String, String)> {
        let mut rules = vec![
            (self.state_dir.display().to_string(), "{{state_dir}}".to_string()),
            (self.dir.path().display().to_string(), "{{tmp}}".to_string()),
        ];
        for (name, up) in &self.upstreams {
            rules.push((format!("127.0.0.1:{}", up.port), format!("{{{{up.{name}.hostport}}}}")));
        }
        rules.push((format!("127.0.0.1:{}", self.unused_port), "{{unused}}".into()));
        rules.push((format!("127.0.0.1:{}", self.router.listen_port), "{{router}}".into()));
        rules.push((format!("127.0.0.1:{}", self.router.admin_port), "{{admin}}".into()));
        if let Some(i) = &self.injected {
            let to = match (&i.side, &i.upstream) {
                (crate::selftest::inject::Side::Upstream, Some(u)) => format!("{{{{up.{u}.hostport}}}}"),
                (crate::selftest::inject::Side::Client, _) => "{{router}}".into(),
                _ => "{{admin}}".into(),
            };
            rules.push((format!("127.0.0.1:{}", i.proxy.port), to));
        }
        if let Some(t) = &self.toxi {
            rules.extend(t.substitutions());
        }
        rules
    }

    /// `GET /admin/state` as JSON.
    pub async fn admin_state(&self) -> Result<Value> {
        let r = self
            .client
            .get(format!("http://127.0.0.1:{}/admin/state", self.admin_read_port()))
            .timeout(Duration::from_secs(2))
            .send()
            .await?;
        Ok(r.json().await?)
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self) -> Result<crate::metrics::Scrape> {
        let r = self
            .client
            .get(format!("http://127.0.0.1:{}/metrics", self.admin_read_port()))
            .timeout(Duration::from_secs(2))
            .send()
            .await?;
        Ok(crate::metrics::Scrape::parse(&r.text().await?))
    }

    /// Stops the router (SIGTERM, SIGKILL after 5 s), the control plane and upstreams.
    pub async fn teardown(&mut self) {
        self.router.sample_rss();
        self.router.stop(Duration::from_secs(5)).await;
        if let Some(t) = self.toxi.as_mut() {
            t.stop();
        }
        if let Some(cp) = &self.cp {
            cp.stop().await;
        }
        for up in self.upstreams.values() {
            up.shutdown().await;
        }
        TEMP_DIRS.lock().unwrap().retain(|d| d != self.dir.path());
    }
}
