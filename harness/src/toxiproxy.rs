//! Network faults with Shopify's Toxiproxy (<https://github.com/Shopify/toxiproxy>): the
//! scenario model of the `toxiproxy:` block and the `toxic` step, and the per-run
//! `toxiproxy-server` process driven through its HTTP API.
//!
//! A scenario with a `toxiproxy:` block gets one `toxiproxy-server` (from the bin dir, next
//! to the routers; `make build` installs it pinned to [`VERSION`]) on a free loopback port,
//! started before the router and killed at the end of the run, on a failure, and by
//! Ctrl-C (its process group is in [`crate::util::procs`]'s registry). For every upstream
//! the block names, a proxy named after the upstream listens on a fresh loopback port and
//! `{{up.NAME}}`, `{{up.NAME.port}}` and `{{up.NAME.hostport}}` resolve to that proxy, so
//! the router reaches the upstream only through it. With `control_plane: true` a proxy
//! named `control_plane` sits in front of the harness's control plane and the router's
//! `--control-plane` URL points at it. A `toxic` step adds or removes a toxic on one
//! proxy, or disables it (listener closed, every connection cut: connects are refused)
//! and enables it again on the same port.
//!
//! Toxiproxy's API (v2): `POST /proxies` `{name, listen, upstream, enabled}`;
//! `POST /proxies/{proxy}/toxics` `{name, type, stream, toxicity, attributes}`;
//! `DELETE /proxies/{proxy}/toxics/{toxic}`; `POST /proxies/{proxy}` `{enabled}`.
use anyhow::{bail, Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Toxiproxy release the project pins (`make tools` installs it).
pub const VERSION: &str = "v2.5.0";

/// The server's file name in the bin dir.
pub const BINARY: &str = "toxiproxy-server";

/// The name of the proxy in front of the control plane.
pub const CONTROL_PLANE_PROXY: &str = "control_plane";

/// How to install the server, for error messages.
pub fn install_hint() -> String {
    format!(
        "run `make tools` (or `make build`), which installs it with `GOBIN=<dir> go install github.com/Shopify/toxiproxy/v2/cmd/server@{VERSION}` \
         and copies it to bin/{BINARY}; or put a {BINARY} in the bin dir (--bin-dir / PARITY_BIN_DIR)"
    )
}

/// The `toxiproxy:` block of a scenario: what the router reaches through Toxiproxy.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToxiproxySpec {
    /// Upstreams (by name) the router reaches through a proxy of the same name;
    /// `{{up.NAME}}` and its port templates resolve to the proxy.
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// Put a proxy named `control_plane` in front of the control plane (the router's
    /// `--control-plane` URL points at it).
    #[serde(default)]
    pub control_plane: bool,
}

impl ToxiproxySpec {
    /// The names of every proxy of the block.
    pub fn proxy_names(&self) -> Vec<String> {
        let mut v = self.upstreams.clone();
        if self.control_plane {
            v.push(CONTROL_PLANE_PROXY.to_string());
        }
        v
    }
}

/// The `toxic` step: one change to one proxy. Exactly one of `add`, `remove`, `enabled`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToxicStep {
    /// The proxy: an upstream name of the `toxiproxy:` block, or `control_plane`.
    pub proxy: String,
    /// Add a toxic (it applies to the proxy's open connections at once, and to new ones).
    #[serde(default)]
    pub add: Option<Toxic>,
    /// Remove the toxic of this name.
    #[serde(default)]
    pub remove: Option<String>,
    /// `false`: close the proxy's listener and every connection through it (connects
    /// are refused); `true`: listen again on the same port. Toxics stay.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// One toxic (Toxiproxy's README, "Toxics").
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Toxic {
    /// Its name, for `remove` (default `TYPE_STREAM`, e.g. `latency_downstream`).
    #[serde(default)]
    pub name: Option<String>,
    /// The kind of fault.
    #[serde(rename = "type")]
    pub kind: ToxicType,
    /// Which direction: `downstream` (upstream → router, the default) or `upstream`
    /// (router → upstream).
    #[serde(default)]
    pub stream: ToxicStream,
    /// The toxic's attributes (all integers; names by type in [`ToxicType::attributes`]).
    #[serde(default)]
    pub attributes: BTreeMap<String, u64>,
    /// Probability that a connection gets the toxic, 0.0..=1.0 (default 1.0).
    #[serde(default = "one")]
    pub toxicity: f64,
}

fn one() -> f64 {
    1.0
}

impl Toxic {
    /// The toxic's name (`name`, else `TYPE_STREAM`).
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("{}_{}", self.kind.wire(), self.stream.wire()))
    }
}

/// Toxiproxy's toxic types.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ToxicType {
    /// Delay every chunk by `latency` ms ± `jitter` ms.
    Latency,
    /// Limit the rate to `rate` KB/s.
    Bandwidth,
    /// Delay the TCP close by `delay` ms.
    SlowClose,
    /// Drop all data; close the connection after `timeout` ms (0: never). A black hole.
    Timeout,
    /// Reset the connection (RST) after `timeout` ms.
    ResetPeer,
    /// Close the connection after `bytes` bytes.
    LimitData,
    /// Cut data into pieces of `average_size` ± `size_variation` bytes, `delay` µs apart.
    Slicer,
}

impl ToxicType {
    /// The name in Toxiproxy's API.
    pub fn wire(self) -> &'static str {
        match self {
            ToxicType::Latency => "latency",
            ToxicType::Bandwidth => "bandwidth",
            ToxicType::SlowClose => "slow_close",
            ToxicType::Timeout => "timeout",
            ToxicType::ResetPeer => "reset_peer",
            ToxicType::LimitData => "limit_data",
            ToxicType::Slicer => "slicer",
        }
    }

    /// The attribute names the type takes.
    pub fn attributes(self) -> &'static [&'static str] {
        match self {
            ToxicType::Latency => &["latency", "jitter"],
            ToxicType::Bandwidth => &["rate"],
            ToxicType::SlowClose => &["delay"],
            ToxicType::Timeout | ToxicType::ResetPeer => &["timeout"],
            ToxicType::LimitData => &["bytes"],
            ToxicType::Slicer => &["average_size", "size_variation", "delay"],
        }
    }
}

/// The direction a toxic acts on.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ToxicStream {
    /// Toward the router (responses, control-plane frames to the router).
    #[default]
    Downstream,
    /// Toward the upstream (requests, the router's frames to the control plane).
    Upstream,
}

impl ToxicStream {
    /// The name in Toxiproxy's API.
    pub fn wire(self) -> &'static str {
        match self {
            ToxicStream::Downstream => "downstream",
            ToxicStream::Upstream => "upstream",
        }
    }
}

/// Cross-checks of the `toxiproxy:` block and the `toxic` steps: `(field, message)` for
/// every violation. `upstreams` are the scenario's upstream names.
pub fn check(spec: Option<&ToxiproxySpec>, steps: &[(usize, &ToxicStep)], upstreams: &[String], control_plane: bool) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    if let Some(s) = spec {
        for (i, u) in s.upstreams.iter().enumerate() {
            if !upstreams.contains(u) {
                errs.push((format!("toxiproxy.upstreams[{i}]"), format!("unknown upstream {u:?}")));
            }
            if u == CONTROL_PLANE_PROXY {
                errs.push((format!("toxiproxy.upstreams[{i}]"), format!("{CONTROL_PLANE_PROXY:?} is the control plane's proxy; rename the upstream")));
            }
        }
        if s.control_plane && !control_plane {
            errs.push(("toxiproxy.control_plane".into(), "needs router.control_plane: true".into()));
        }
    }
    let names = spec.map(|s| s.proxy_names()).unwrap_or_default();
    for (i, t) in steps {
        let base = format!("steps[{i}].toxic");
        if spec.is_none() {
            errs.push((base.clone(), "needs a `toxiproxy:` block".into()));
        } else if !names.contains(&t.proxy) {
            errs.push((format!("{base}.proxy"), format!("unknown proxy {:?} (the toxiproxy block has {names:?})", t.proxy)));
        }
        let n = [t.add.is_some(), t.remove.is_some(), t.enabled.is_some()].iter().filter(|x| **x).count();
        if n != 1 {
            errs.push((base.clone(), "exactly one of add, remove, enabled".into()));
        }
        if let Some(a) = &t.add {
            for k in a.attributes.keys() {
                if !a.kind.attributes().contains(&k.as_str()) {
                    errs.push((format!("{base}.add.attributes.{k}"), format!("{} takes {:?}", a.kind.wire(), a.kind.attributes())));
                }
            }
            if !(0.0..=1.0).contains(&a.toxicity) {
                errs.push((format!("{base}.add.toxicity"), "must be within 0.0..=1.0".into()));
            }
        }
    }
    errs
}

/// A running `toxiproxy-server` and the proxies it serves for one run.
pub struct Toxiproxy {
    child: Option<tokio::process::Child>,
    /// The API port.
    pub api_port: u16,
    client: reqwest::Client,
    /// Listen port of each proxy, by name.
    pub proxies: BTreeMap<String, u16>,
}

impl Toxiproxy {
    /// The server's path in `bin_dir`, or an error that says how to install it.
    pub fn binary(bin_dir: &Path) -> Result<PathBuf> {
        let p = bin_dir.join(BINARY);
        if p.exists() {
            return Ok(p);
        }
        // "not found" makes the run an error (exit 3), as for a missing router binary.
        bail!("this scenario needs Toxiproxy, but {BINARY} was not found at {}: {}", p.display(), install_hint())
    }

    /// Starts the server from `bin_dir` on a free loopback port (output in
    /// `log_dir/toxiproxy.log`) and waits up to 10 s for its API to answer.
    pub async fn start(bin_dir: &Path, log_dir: &Path, client: reqwest::Client) -> Result<Toxiproxy> {
        let bin = Toxiproxy::binary(bin_dir)?;
        let mut last = None;
        // The port is picked free and then handed over: another program may take it in
        // between, so a server that exits before answering is retried on a new port.
        for _ in 0..4 {
            let api_port = crate::util::net::free_port()?;
            let log = std::fs::File::create(log_dir.join("toxiproxy.log"))?;
            let mut cmd = tokio::process::Command::new(&bin);
            cmd.args(["-host", "127.0.0.1", "-port", &api_port.to_string()])
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .process_group(0)
                .kill_on_drop(true);
            let child = cmd.spawn().with_context(|| format!("start {}", bin.display()))?;
            if let Some(pid) = child.id() {
                crate::util::procs::register_group(pid as i32);
            }
            let mut t = Toxiproxy { child: Some(child), api_port, client: client.clone(), proxies: BTreeMap::new() };
            match t.wait_ready(Duration::from_secs(10)).await {
                Ok(()) => return Ok(t),
                Err(e) => {
                    t.stop();
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("toxiproxy-server did not start")))
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(r) = self.client.get(self.url("/version")).timeout(Duration::from_millis(500)).send().await {
                // Another program may have taken the port between free_port() and the
                // server's bind (seen in a chaos run): then the answer is not Toxiproxy's
                // (a mock upstream answers 200 to anything), or it is another run's
                // Toxiproxy while ours exits on "address already in use". Only a Toxiproxy
                // answer (its request-id header) with our server still running 50 ms
                // later counts.
                if r.status().is_success() && r.headers().contains_key("x-toxiproxy-request-id") {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    match self.child.as_mut().map(|c| c.try_wait()) {
                        Some(Ok(None)) => return Ok(()),
                        _ => bail!("toxiproxy-server exited although port {} answered: another program holds it", self.api_port),
                    }
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    bail!("toxiproxy-server exited with {st} before its API answered");
                }
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("toxiproxy-server's API did not answer within {} ms", within.as_millis());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut rq = self.client.request(method.clone(), self.url(path)).timeout(Duration::from_secs(5));
        if let Some(b) = &body {
            rq = rq.json(b);
        }
        let r = rq.send().await.with_context(|| format!("toxiproxy {method} {path}"))?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("toxiproxy {method} {path} {}: {status} {text}", body.map(|b| b.to_string()).unwrap_or_default());
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates proxy `name` in front of `upstream` on a fresh loopback port; returns it.
    pub async fn create_proxy(&mut self, name: &str, upstream: SocketAddr) -> Result<u16> {
        self.create_proxy_on(name, upstream, 0).await
    }

    /// Creates proxy `name` in front of `upstream` listening on loopback port `port` (0:
    /// any free one); returns the port.
    pub async fn create_proxy_on(&mut self, name: &str, upstream: SocketAddr, port: u16) -> Result<u16> {
        let v = self
            .call(reqwest::Method::POST, "/proxies", Some(json!({"name": name, "listen": format!("127.0.0.1:{port}"), "upstream": upstream.to_string(), "enabled": true})))
            .await?;
        let listen = v.get("listen").and_then(Value::as_str).context("toxiproxy: no listen address in the answer")?;
        let port: u16 = listen.rsplit(':').next().and_then(|p| p.parse().ok()).with_context(|| format!("toxiproxy: listen address {listen:?}"))?;
        self.proxies.insert(name.to_string(), port);
        Ok(port)
    }

    /// Starts the server for a scenario's `toxiproxy` block and creates a proxy in front
    /// of each upstream it names (`upstreams`: the running mock upstreams by name).
    pub async fn for_upstreams(
        spec: &ToxiproxySpec,
        bin_dir: &Path,
        log_dir: &Path,
        client: reqwest::Client,
        upstreams: &BTreeMap<String, crate::upstreams::Upstream>,
    ) -> Result<Toxiproxy> {
        let mut t = Toxiproxy::start(bin_dir, log_dir, client).await?;
        // Proxy ports ascend in the byte order of the upstream names, as the upstreams'
        // own ports do (env.rs): a multi-endpoint placement orders its endpoints by socket
        // address, so its round-robin sequence must not depend on the ports of the run.
        let held: Vec<std::net::TcpListener> = spec.upstreams.iter().map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
        let mut ports: Vec<u16> = held.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?;
        ports.sort_unstable();
        let mut names: Vec<&String> = spec.upstreams.iter().collect();
        names.sort();
        drop(held);
        for (name, port) in names.into_iter().zip(ports) {
            let up = upstreams.get(name).with_context(|| format!("toxiproxy: no upstream {name:?}"))?;
            t.create_proxy_on(name, crate::util::net::addr(up.port), port).await?;
        }
        Ok(t)
    }

    /// Creates the `control_plane` proxy in front of the control plane's `port` when the
    /// block asks for it.
    pub async fn front_control_plane(&mut self, spec: Option<&ToxiproxySpec>, port: u16) -> Result<()> {
        if spec.is_some_and(|s| s.control_plane) {
            self.create_proxy(CONTROL_PLANE_PROXY, crate::util::net::addr(port)).await?;
        }
        Ok(())
    }

    /// The router's `--control-plane` URL through the `control_plane` proxy, if there is one.
    pub fn control_plane_url(&self) -> Option<String> {
        self.port_of(CONTROL_PLANE_PROXY).map(|p| format!("ws://127.0.0.1:{p}/"))
    }

    /// `(text, placeholder)` pairs for the trace normaliser (rule `ports`): a proxy's
    /// address reads as the upstream it fronts (`{{up.NAME.hostport}}`), the control
    /// plane's as `{{control_plane}}`.
    pub fn substitutions(&self) -> Vec<(String, String)> {
        self.proxies
            .iter()
            .map(|(name, port)| {
                let to = if name == CONTROL_PLANE_PROXY { "{{control_plane}}".to_string() } else { format!("{{{{up.{name}.hostport}}}}") };
                (format!("127.0.0.1:{port}"), to)
            })
            .collect()
    }

    /// The listen port of proxy `name`.
    pub fn port_of(&self, name: &str) -> Option<u16> {
        self.proxies.get(name).copied()
    }

    /// Applies one `toxic` step.
    pub async fn apply(&self, s: &ToxicStep) -> Result<()> {
        let p = &s.proxy;
        if let Some(t) = &s.add {
            let body = json!({"name": t.name(), "type": t.kind.wire(), "stream": t.stream.wire(), "toxicity": t.toxicity, "attributes": t.attributes});
            self.call(reqwest::Method::POST, &format!("/proxies/{p}/toxics"), Some(body)).await?;
        }
        if let Some(n) = &s.remove {
            self.call(reqwest::Method::DELETE, &format!("/proxies/{p}/toxics/{n}"), None).await?;
        }
        if let Some(e) = s.enabled {
            self.call(reqwest::Method::POST, &format!("/proxies/{p}"), Some(json!({"enabled": e}))).await?;
        }
        Ok(())
    }

    /// Kills the server (its whole process group) now.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pid) = c.id() {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
                crate::util::procs::unregister_group(pid as i32);
            }
            let _ = c.start_kill();
        }
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toxic_step_parses_with_defaults() {
        let t: ToxicStep = serde_yaml_ng::from_str("{proxy: primary, add: {type: latency, attributes: {latency: 100, jitter: 10}}}").unwrap();
        let a = t.add.as_ref().unwrap();
        assert_eq!((a.kind, a.stream, a.toxicity), (ToxicType::Latency, ToxicStream::Downstream, 1.0));
        assert_eq!(a.name(), "latency_downstream");
        assert!(serde_yaml_ng::from_str::<ToxicStep>("{proxy: p, add: {type: nope}}").is_err());
    }

    #[test]
    fn checks_name_unknown_proxies_attributes_and_one_action() {
        let spec = ToxiproxySpec { upstreams: vec!["primary".into(), "ghost".into()], control_plane: true };
        let bad: ToxicStep = serde_yaml_ng::from_str("{proxy: other, add: {type: bandwidth, attributes: {latency: 1}}, remove: x}").unwrap();
        let good: ToxicStep = serde_yaml_ng::from_str("{proxy: control_plane, enabled: false}").unwrap();
        let errs = check(Some(&spec), &[(3, &bad), (4, &good)], &["primary".into()], false);
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["toxiproxy.upstreams[1]", "toxiproxy.control_plane", "steps[3].toxic.proxy", "steps[3].toxic", "steps[3].toxic.add.attributes.latency"]);
        let errs = check(None, &[(0, &good)], &[], true);
        assert_eq!(errs[0].1, "needs a `toxiproxy:` block");
    }

    #[test]
    fn the_makefile_installs_the_pinned_version() {
        let mk = include_str!("../../Makefile");
        assert!(mk.contains(&format!("TOXIPROXY_VERSION := {VERSION}")), "Makefile and toxiproxy::VERSION disagree");
    }

    #[test]
    fn a_missing_server_says_how_to_install_it() {
        let e = Toxiproxy::binary(Path::new("/nonexistent")).unwrap_err().to_string();
        assert!(e.contains("make tools") && e.contains("go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.5.0"), "{e}");
    }
}
