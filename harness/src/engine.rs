//! Runs one scenario against one implementation: builds the environment, waits for the
//! initial config, executes the steps, records the observation trace and every failed
//! expectation. No step relies on a bare sleep for correctness: waits poll observable
//! state (admin API, metrics, control-plane frames, upstream counters) until a deadline.

use crate::env::Env;
use crate::metrics::SeriesKey;
use crate::scenario::*;
use anyhow::Result;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long `expect_admin` and `expect_metrics` keep reading until their values match:
/// a router may update its state just after the client got the response.
pub const SETTLE: Duration = Duration::from_millis(1000);

/// One observation: what a step saw, normalised (no ports, paths or timings), so that
/// the traces of two implementations compare equal when they behave the same.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Obs {
    /// Step index (0-based); -1 for the set-up.
    pub step: i64,
    /// Step kind (`send`, `push`, ...).
    pub kind: String,
    /// What was seen.
    pub value: Value,
}

/// Outcome of a scenario against one implementation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImplRun {
    /// `pass`, `fail` or `error`.
    pub status: String,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// Latency of every request sent, microseconds.
    #[serde(skip)]
    pub latencies_us: Vec<u64>,
    /// Peak router RSS (VmHWM), bytes.
    pub rss_peak_bytes: u64,
    /// Failed expectations, in order.
    pub failures: Vec<String>,
    /// Harness error (status `error`).
    pub error: Option<String>,
    /// The observation trace.
    pub trace: Vec<Obs>,
}

/// One response as the client saw it.
#[derive(Debug, Clone, Default)]
pub struct Resp {
    /// Status (None: no response).
    pub status: Option<u16>,
    /// Response headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body (possibly partial).
    pub body: Vec<u8>,
    /// The body arrived complete.
    pub complete: bool,
    /// Chunks read (with `read_chunks`).
    pub chunks: u32,
    /// Longest gap between head and first chunk or between chunks, ms.
    pub max_gap_ms: u64,
    /// Request latency (to the end of the body), µs.
    pub latency_us: u64,
    /// Transport error text, when any.
    pub failure: Option<String>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

struct Ctx<'a> {
    env: &'a mut Env,
    sc: &'a Scenario,
    trace: Vec<Obs>,
    failures: Vec<String>,
    latencies: Vec<u64>,
    background: HashMap<String, (usize, Send, tokio::task::JoinHandle<Vec<Resp>>)>,
    progress: HashMap<String, std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl Ctx<'_> {
    fn obs(&mut self, step: i64, kind: &str, value: Value) {
        let text = self.env.normalise(&value.to_string());
        let value = serde_json::from_str(&text).unwrap_or(value);
        self.trace.push(Obs { step, kind: kind.to_string(), value });
    }
    fn fail(&mut self, step: i64, kind: &str, msg: String) {
        let label = crate::report::step_label(step);
        if label == kind {
            self.failures.push(format!("{label}: {msg}"));
        } else {
            self.failures.push(format!("{label} ({kind}): {msg}"));
        }
    }
}

/// Runs `sc` against `imp`. Never panics on router misbehaviour; harness problems give
/// status `error`.
pub async fn run(sc: &Scenario, imp: &str, bin_dir: &Path, log_dir: &Path) -> ImplRun {
    let start = Instant::now();
    let mut env = match Env::create(sc, imp, bin_dir, log_dir).await {
        Ok(e) => e,
        Err(e) => {
            let missing = e.to_string().contains("not found");
            return ImplRun {
                status: if missing { "error" } else { "fail" }.into(),
                duration_ms: start.elapsed().as_millis() as u64,
                latencies_us: vec![],
                rss_peak_bytes: 0,
                failures: if missing { vec![] } else { vec![format!("set-up: {e:#}")] },
                error: if missing { Some(format!("{e:#}")) } else { None },
                trace: vec![Obs { step: -1, kind: "setup".into(), value: json!({"router_started": false}) }],
            };
        }
    };
    let mut ctx = Ctx { env: &mut env, sc, trace: vec![], failures: vec![], latencies: vec![], background: HashMap::new(), progress: HashMap::new() };
    let deadline = Duration::from_millis(sc.timeout_ms);
    let res = tokio::time::timeout(deadline, run_steps(&mut ctx)).await;
    match res {
        Err(_) => ctx.failures.push(format!("scenario deadline of {} ms passed", sc.timeout_ms)),
        Ok(Err(e)) => ctx.failures.push(format!("harness: {e:#}")),
        Ok(Ok(())) => {}
    }
    for (_, (_, _, h)) in ctx.background.drain() {
        h.abort();
    }
    let (trace, failures, latencies) = (ctx.trace, ctx.failures, ctx.latencies);
    env.teardown().await;
    let _ = std::fs::write(log_dir.join("trace.json"), serde_json::to_string_pretty(&trace).unwrap_or_default());
    ImplRun {
        status: if failures.is_empty() { "pass" } else { "fail" }.into(),
        duration_ms: start.elapsed().as_millis() as u64,
        latencies_us: latencies,
        rss_peak_bytes: env.router.rss_peak,
        failures,
        error: None,
        trace,
    }
}

async fn run_steps(ctx: &mut Ctx<'_>) -> Result<()> {
    // Set-up: with a control plane and a config, wait for the hello and the ack.
    if let (Some(cp), Some(cfg)) = (&ctx.env.cp, &ctx.sc.config) {
        if ctx.sc.router.push_on_hello {
            let v = cfg.get("version").and_then(|v| v.as_u64());
            let t0 = std::time::Instant::now();
            let a = cp.answer(0, Some(v), Duration::from_secs(10)).await;
            let ok = matches!(a, Some(crate::control_plane::CpEvent::Ack { .. }));
            ctx.obs(-1, "setup", json!({"initial_config_acked": ok}));
            match a {
                Some(crate::control_plane::CpEvent::Ack { .. }) => {}
                Some(crate::control_plane::CpEvent::Nack { code, path, .. }) => {
                    ctx.fail(-1, "setup", format!("initial config rejected by the router: code {code}, path {path}"));
                }
                _ => {
                    ctx.fail(-1, "setup", format!("initial config not answered within {:.1} s", t0.elapsed().as_secs_f64()));
                }
            }
        }
    } else if !ctx.sc.router.control_plane && ctx.sc.config.is_some() {
        let ok = wait_until(Duration::from_secs(10), || async {
            let r = ctx.env.client.get(format!("http://127.0.0.1:{}/readyz", ctx.env.router.admin_port)).send().await;
            matches!(r, Ok(r) if r.status().as_u16() == 200)
        })
        .await;
        ctx.obs(-1, "setup", json!({"ready_on_lkg": ok}));
        if !ok {
            ctx.fail(-1, "setup", "router not ready on the LKG file within 10 s".into());
        }
    }
    for (i, step) in ctx.sc.steps.iter().enumerate() {
        let i = i as i64;
        match step {
            Step::Send(s) => {
                let s = s.clone();
                if let Some(name) = &s.background {
                    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
                    ctx.progress.insert(name.clone(), progress.clone());
                    let h = tokio::spawn(do_send(ctx.env.client.clone(), ctx.env.router.listen_port, fill_send(ctx.env, &s), progress));
                    ctx.background.insert(name.clone(), (i as usize, s.clone(), h));
                    ctx.obs(i, "send", json!({"background": name}));
                } else {
                    let rs = do_send(ctx.env.client.clone(), ctx.env.router.listen_port, fill_send(ctx.env, &s), Default::default()).await;
                    check_send(ctx, i, &s, &rs);
                }
            }
            Step::Await(a) => {
                let Some((si, s, h)) = ctx.background.remove(&a.name) else { continue };
                match tokio::time::timeout(Duration::from_millis(a.within_ms), h).await {
                    Ok(Ok(rs)) => {
                        let _ = si;
                        check_send(ctx, i, &s, &rs);
                    }
                    Ok(Err(e)) => ctx.fail(i, "await", format!("background send panicked: {e}")),
                    Err(_) => {
                        ctx.obs(i, "await", json!({"finished": false}));
                        ctx.fail(i, "await", format!("background send {:?} not finished within {} ms", a.name, a.within_ms));
                    }
                }
            }
            Step::Push(p) => do_push(ctx, i, p).await?,
            Step::Upstream(u) => {
                let up = &ctx.env.upstreams[&u.name];
                if let Some(b) = &u.behaviour {
                    up.set_behaviour(b.clone()).await?;
                }
                if let Some(h) = u.health_status {
                    up.set_health(h);
                }
                match u.up {
                    Some(false) => up.down().await,
                    Some(true) => up.up().await?,
                    None => {}
                }
                if u.release == Some(true) {
                    up.release();
                }
            }
            Step::ControlPlane(a) => {
                let cp = ctx.env.cp.as_ref().expect("validated");
                match a {
                    CpAction::Stop => cp.stop().await,
                    CpAction::Start => cp.restart().await?,
                    CpAction::Drop => cp.drop_connections(),
                }
            }
            Step::Router(a) => do_router(ctx, i, a).await?,
            Step::Wait(w) => do_wait(ctx, i, w).await,
            Step::ExpectAdmin(m) => {
                // A router may record an outcome just after the response reached the
                // client: read again until everything matches or SETTLE passes.
                let settle = Instant::now() + SETTLE;
                let (seen, fails) = loop {
                    let st = ctx.env.admin_state().await.unwrap_or(Value::Null);
                    let mut seen = serde_json::Map::new();
                    let mut fails = vec![];
                    for (ptr, want) in m {
                        let want = ctx.env.fill_value(want);
                        let got = st.pointer(ptr).cloned().unwrap_or(Value::String("<absent>".into()));
                        seen.insert(ptr.clone(), got.clone());
                        if !json_eq(&got, &want) {
                            fails.push(format!("admin {ptr} = {got}, expected {want}"));
                        }
                    }
                    if fails.is_empty() || Instant::now() >= settle {
                        break (seen, fails);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                for f in fails {
                    ctx.fail(i, "expect_admin", f);
                }
                ctx.obs(i, "expect_admin", Value::Object(seen));
            }
            Step::ExpectMetrics(m) => {
                let settle = Instant::now() + SETTLE;
                let (seen, fails) = loop {
                    let scrape = ctx.env.metrics().await.unwrap_or_default();
                    let mut seen = serde_json::Map::new();
                    let mut fails = vec![];
                    for (k, want) in m {
                        let key = SeriesKey::parse(k).map_err(anyhow::Error::msg)?;
                        let got = scrape.get(&key);
                        seen.insert(k.clone(), json!(got));
                        if got != *want {
                            fails.push(format!("{k} = {got}, expected {want}"));
                        }
                    }
                    if fails.is_empty() || Instant::now() >= settle {
                        break (seen, fails);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                for f in fails {
                    ctx.fail(i, "expect_metrics", f);
                }
                ctx.obs(i, "expect_metrics", Value::Object(seen));
            }
            Step::ExpectControlPlane(e) => {
                let cp = ctx.env.cp.as_ref().expect("validated");
                let hellos: Vec<(String, Option<u64>)> = cp
                    .events()
                    .into_iter()
                    .filter_map(|e| match e {
                        crate::control_plane::CpEvent::Hello { imp, version } => Some((imp, version)),
                        _ => None,
                    })
                    .collect();
                let mut seen = serde_json::Map::new();
                let mut fails = vec![];
                if let Some(n) = e.hellos {
                    seen.insert("hellos".into(), json!(hellos.len()));
                    if hellos.len() != n as usize {
                        fails.push(format!("{} hellos, expected {n}", hellos.len()));
                    }
                }
                if let Some(v) = e.last_hello_version {
                    let got = hellos.last().and_then(|h| h.1);
                    seen.insert("last_hello_version".into(), json!(got));
                    if got != v {
                        fails.push(format!("last hello config_version {got:?}, expected {v:?}"));
                    }
                }
                if e.hello_impl_matches == Some(true) {
                    let ok = !hellos.is_empty() && hellos.iter().all(|h| h.0 == ctx.env.router.imp);
                    seen.insert("hello_impl_matches".into(), json!(ok));
                    if !ok {
                        fails.push(format!("hello impl fields {:?}, expected {:?}", hellos.iter().map(|h| &h.0).collect::<Vec<_>>(), ctx.env.router.imp));
                    }
                }
                for f in fails {
                    ctx.fail(i, "expect_control_plane", f);
                }
                ctx.obs(i, "expect_control_plane", Value::Object(seen));
            }
            Step::ExpectAccessLog(a) => {
                let settle = Instant::now() + SETTLE;
                let (seen, fails) = loop {
                    let lines = ctx.env.router.access_log();
                    let mut fails = vec![];
                    let mut seen = serde_json::Map::new();
                    if let Some(n) = a.count {
                        seen.insert("count".into(), json!(lines.len()));
                        if lines.len() != n {
                            fails.push(format!("{} access-log lines, expected {n}", lines.len()));
                        }
                    }
                    // The last lines in any order: a router may log a request just after
                    // the client got its response, so sequential requests can log out of
                    // order. Each expected entry must match a distinct line.
                    let tail: Vec<&Value> = lines.iter().rev().take(a.last.len()).rev().collect();
                    let mut shown = vec![];
                    let mut normed: Vec<Value> = Vec::new();
                    for got in &tail {
                        let mut norm = (*got).clone();
                        if let Some(o) = norm.as_object_mut() {
                            let ts_ok = o.get("ts").and_then(|t| t.as_str()).map(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()) == Some(true);
                            let d_ok = o.get("duration_ms").map(|d| d.is_number()) == Some(true);
                            o.insert("ts".into(), json!(ts_ok));
                            o.insert("duration_ms".into(), json!(d_ok));
                            if !ts_ok || !d_ok {
                                fails.push(format!("access-log line: ts must be RFC 3339 and duration_ms a number: {got}"));
                            }
                        }
                        normed.push(norm);
                    }
                    if tail.len() < a.last.len() {
                        fails.push(format!("{} access-log lines, expected at least {}", tail.len(), a.last.len()));
                    }
                    let mut used = vec![false; normed.len()];
                    for want in &a.last {
                        let want: BTreeMap<String, Value> = want.iter().map(|(k, v)| (k.clone(), ctx.env.fill_value(v))).collect();
                        let hit = normed.iter().enumerate().position(|(j, g)| {
                            !used[j] && want.iter().all(|(f, v)| json_eq(&g.get(f).cloned().unwrap_or(Value::Null), v) && g.get(f).is_some())
                        });
                        match hit {
                            Some(j) => used[j] = true,
                            None => fails.push(format!("no access-log line matches {}", serde_json::to_string(&want).unwrap_or_default())),
                        }
                    }
                    normed.sort_by_key(|v| v.to_string());
                    shown.extend(normed);
                    seen.insert("last".into(), Value::Array(shown));
                    if fails.is_empty() || Instant::now() >= settle {
                        break (seen, fails);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                for f in fails {
                    ctx.fail(i, "expect_access_log", f);
                }
                ctx.obs(i, "expect_access_log", Value::Object(seen));
            }
            Step::ExpectFile(f) => {
                let path = ctx.env.fill(&f.path);
                let text = std::fs::read_to_string(&path).ok();
                let mut seen = serde_json::Map::new();
                if let Some(want) = f.exists {
                    seen.insert("exists".into(), json!(text.is_some()));
                    if text.is_some() != want {
                        ctx.fail(i, "expect_file", format!("{path} exists = {}, expected {want}", text.is_some()));
                    }
                }
                if let Some(want) = f.json_version {
                    let got = text.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()).and_then(|v| v.get("version").and_then(|x| x.as_u64()));
                    seen.insert("json_version".into(), json!(got));
                    if got != Some(want) {
                        ctx.fail(i, "expect_file", format!("{path} version {got:?}, expected {want}"));
                    }
                }
                ctx.obs(i, "expect_file", Value::Object(seen));
            }
            Step::ExpectUpstream(u) => {
                let sh = ctx.env.upstreams[&u.name].shared().clone();
                let mut seen = serde_json::Map::new();
                if let Some(n) = u.requests {
                    let got = sh.requests.load(Ordering::SeqCst);
                    seen.insert("requests".into(), json!(got));
                    if got != n {
                        ctx.fail(i, "expect_upstream", format!("upstream {} received {got} requests, expected {n}", u.name));
                    }
                }
                if let Some(n) = u.body_bytes {
                    let got = sh.body_bytes.load(Ordering::SeqCst);
                    seen.insert("body_bytes".into(), json!(got));
                    if got != n {
                        ctx.fail(i, "expect_upstream", format!("upstream {} received {got} body bytes, expected {n}", u.name));
                    }
                }
                ctx.obs(i, "expect_upstream", Value::Object(seen));
            }
        }
    }
    // Background sends never awaited are still checked.
    let names: Vec<String> = ctx.background.keys().cloned().collect();
    for n in names {
        let (si, s, h) = ctx.background.remove(&n).unwrap();
        if let Ok(Ok(rs)) = tokio::time::timeout(Duration::from_secs(15), h).await {
            check_send(ctx, si as i64, &s, &rs);
        }
    }
    Ok(())
}

/// Compares JSON values; numbers compare by value (1 == 1.0).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

async fn wait_until<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fill_send(env: &Env, s: &Send) -> Send {
    let mut s = s.clone();
    s.path = env.fill(&s.path);
    s.headers = s.headers.iter().map(|(k, v)| (k.clone(), env.fill(v))).collect();
    s.raw = s.raw.as_ref().map(|r| env.fill(r));
    s
}

/// Sends the step's requests, `concurrency` at a time.
/// `progress` counts response body chunks received over all the step's requests.
pub async fn do_send(client: reqwest::Client, port: u16, s: Send, progress: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Vec<Resp> {
    let s = std::sync::Arc::new(s);
    let futs = (0..s.count).map(|_| {
        let c = client.clone();
        let s = s.clone();
        let p = progress.clone();
        async move { one_request(&c, port, &s, &p).await }
    });
    futures_util::stream::iter(futs).buffered(s.concurrency as usize).collect().await
}

async fn one_request(client: &reqwest::Client, port: u16, s: &Send, progress: &std::sync::atomic::AtomicU64) -> Resp {
    let t0 = Instant::now();
    let timeout = Duration::from_millis(s.timeout_ms);
    let mut r = match &s.raw {
        Some(raw) => tokio::time::timeout(timeout, raw_request(port, raw, s.tunnel_write.as_deref())).await.unwrap_or_else(|_| Resp {
            failure: Some("timeout".into()),
            ..Default::default()
        }),
        None => match tokio::time::timeout(timeout, http_request(client, port, s, progress)).await {
            Ok(r) => r,
            Err(_) => Resp { failure: Some("timeout".into()), ..Default::default() },
        },
    };
    r.latency_us = t0.elapsed().as_micros() as u64;
    r
}

async fn http_request(client: &reqwest::Client, port: u16, s: &Send, progress: &std::sync::atomic::AtomicU64) -> Resp {
    let url = format!("http://127.0.0.1:{port}{}", s.path);
    let method = reqwest::Method::from_bytes(s.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut rb = client.request(method, url);
    if let Some(k) = &s.key {
        rb = rb.header("X-Routing-Key", k);
    }
    if let Some(n) = s.pad_header_bytes {
        rb = rb.header("X-Padding", "p".repeat(n));
    }
    for (k, v) in &s.headers {
        rb = rb.header(k, v);
    }
    if let Some(b) = &s.body {
        rb = rb.body(b.clone());
    } else if let Some(n) = s.body_bytes {
        const CHUNK: usize = 64 * 1024;
        let chunks = n / CHUNK as u64;
        let rest = (n % CHUNK as u64) as usize;
        let block = bytes::Bytes::from(vec![b'a'; CHUNK]);
        let last = bytes::Bytes::from(vec![b'a'; rest]);
        let st = futures_util::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(block.clone())))
            .chain(futures_util::stream::iter(if rest > 0 { vec![Ok(last)] } else { vec![] }));
        rb = rb.header("Content-Length", n.to_string()).body(reqwest::Body::wrap_stream(st));
    }
    let mut resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return Resp { failure: Some(error_chain(&e)), ..Default::default() },
    };
    let head_at = Instant::now();
    let mut out = Resp {
        status: Some(resp.status().as_u16()),
        headers: resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        ..Default::default()
    };
    let mut last = head_at;
    loop {
        if let Some(max) = s.read_chunks {
            if out.chunks >= max {
                // Enough: stop reading (dropping the response closes the connection).
                out.complete = true;
                break;
            }
        }
        match resp.chunk().await {
            Ok(Some(c)) => {
                let now = Instant::now();
                out.max_gap_ms = out.max_gap_ms.max(now.duration_since(last).as_millis() as u64);
                last = now;
                out.chunks += 1;
                progress.fetch_add(1, Ordering::SeqCst);
                if out.body.len() < 1 << 20 {
                    out.body.extend_from_slice(&c);
                }
            }
            Ok(None) => {
                out.complete = true;
                break;
            }
            Err(e) => {
                out.failure = Some(error_chain(&e));
                break;
            }
        }
    }
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// Writes raw bytes on a fresh connection and reads one response (head and a
/// Content-Length body), or until the router closes.
async fn raw_request(port: u16, raw: &str, tunnel: Option<&str>) -> Resp {
    let mut s = match tokio::net::TcpStream::connect(crate::upstreams::addr(port)).await {
        Ok(s) => s,
        Err(e) => return Resp { failure: Some(e.to_string()), ..Default::default() },
    };
    if let Err(e) = s.write_all(raw.as_bytes()).await {
        return Resp { failure: Some(e.to_string()), ..Default::default() };
    }
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    loop {
        let mut hdrs = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut hdrs);
        if let Ok(httparse::Status::Complete(n)) = resp.parse(&buf) {
            let headers: Vec<(String, String)> = resp
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            let status = resp.code;
            if let (Some(101), Some(t)) = (status, tunnel) {
                let mut body = buf[n..].to_vec();
                if s.write_all(t.as_bytes()).await.is_err() {
                    return Resp { status, headers, failure: Some("tunnel write failed".into()), ..Default::default() };
                }
                while body.len() < t.len() {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => body.extend_from_slice(&tmp[..k]),
                    }
                }
                let complete = body.len() >= t.len();
                return Resp { status, headers, body, complete, ..Default::default() };
            }
            let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.trim().parse().ok()).unwrap_or(0);
            let mut body = buf[n..].to_vec();
            while body.len() < len {
                match s.read(&mut tmp).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => body.extend_from_slice(&tmp[..k]),
                }
            }
            let complete = body.len() >= len;
            body.truncate(len);
            return Resp { status, headers, body, complete, ..Default::default() };
        }
        match s.read(&mut tmp).await {
            Ok(0) => return Resp { failure: Some("connection closed without a response".into()), ..Default::default() },
            Err(e) => return Resp { failure: Some(e.to_string()), ..Default::default() },
            Ok(k) => buf.extend_from_slice(&tmp[..k]),
        }
    }
}

fn opt(s: Option<&str>) -> String {
    s.unwrap_or("-").to_string()
}

fn check_send(ctx: &mut Ctx<'_>, i: i64, s: &Send, rs: &[Resp]) {
    let e = &s.expect;
    let n = rs.len();
    let mut tally: BTreeMap<&str, BTreeMap<String, u32>> = BTreeMap::new();
    let mut fails: Vec<String> = Vec::new();
    let mut extra = serde_json::Map::new();
    for (k, r) in rs.iter().enumerate() {
        ctx.latencies.push(r.latency_us);
        let st = r.status.map(|s| s.to_string()).unwrap_or_else(|| "none".into());
        let err = opt(r.header("x-router-error"));
        let up = opt(r.header("x-upstream-name"));
        let pl = opt(r.header("x-router-placement"));
        *tally.entry("status").or_default().entry(st.clone()).or_default() += 1;
        *tally.entry("error").or_default().entry(err.clone()).or_default() += 1;
        *tally.entry("upstream").or_default().entry(up.clone()).or_default() += 1;
        *tally.entry("placement").or_default().entry(pl.clone()).or_default() += 1;
        if r.status.is_some() {
            *tally.entry("complete").or_default().entry(r.complete.to_string()).or_default() += 1;
        }
        let who = if n > 1 { format!("response {}/{n}: ", k + 1) } else { String::new() };
        let detail = || match &r.failure {
            Some(f) => format!(" ({f})"),
            None => String::new(),
        };
        if let Some(want) = e.status {
            if r.status != Some(want) {
                fails.push(format!("{who}status {st}, expected {want}{}", detail()));
            }
        }
        if let Some(want) = &e.error {
            if r.header("x-router-error") != want.as_deref() {
                fails.push(format!("{who}X-Router-Error {err}, expected {}", opt(want.as_deref())));
            }
        }
        if let Some(want) = &e.upstream {
            if r.header("x-upstream-name") != want.as_deref() {
                fails.push(format!("{who}X-Upstream-Name {up}, expected {}", opt(want.as_deref())));
            }
        }
        if let Some(want) = &e.placement {
            if r.header("x-router-placement") != want.as_deref() {
                fails.push(format!("{who}X-Router-Placement {pl}, expected {}", opt(want.as_deref())));
            }
        }
        if let Some(want) = &e.body {
            if r.body != want.as_bytes() {
                fails.push(format!("{who}body {:?}, expected {want:?}", String::from_utf8_lossy(&r.body)));
            }
        }
        if let Some(true) = e.error_body {
            let v: Option<Value> = serde_json::from_slice(&r.body).ok();
            let ok = v.as_ref().map(|v| {
                v.get("error").and_then(|x| x.as_str()).is_some()
                    && v.get("error").and_then(|x| x.as_str()) == r.header("x-router-error")
                    && v.get("message").and_then(|x| x.as_str()).is_some()
            }) == Some(true)
                && r.header("content-type").map(|c| c.starts_with("application/json")) == Some(true);
            *tally.entry("error_body").or_default().entry(ok.to_string()).or_default() += 1;
            if !ok {
                fails.push(format!("{who}not a router error document: {:?} (content-type {:?})", String::from_utf8_lossy(&r.body), r.header("content-type")));
            }
        }
        for (h, want) in &e.headers {
            let want = want.as_ref().map(|w| ctx.env.fill(w));
            let got = r.header(&h.to_ascii_lowercase()).map(|s| s.to_string());
            *tally.entry("headers").or_default().entry(format!("{h}={}", opt(got.as_deref()))).or_default() += 1;
            if got != want {
                fails.push(format!("{who}header {h} = {:?}, expected {:?}", got, want));
            }
        }
        if !e.echo_headers.is_empty() {
            let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            let hs: Vec<(String, String)> = serde_json::from_value(v.get("headers").cloned().unwrap_or(Value::Null)).unwrap_or_default();
            for (h, want) in &e.echo_headers {
                let want = want.as_ref().map(|w| ctx.env.fill(w));
                let got: Vec<&str> = hs.iter().filter(|(k, _)| *k == h.to_ascii_lowercase()).map(|(_, v)| v.as_str()).collect();
                let got = if got.is_empty() { None } else { Some(got.join(", ")) };
                *tally.entry("echo_headers").or_default().entry(format!("{h}={}", opt(got.as_deref()))).or_default() += 1;
                if got != want {
                    fails.push(format!("{who}upstream received {h} = {:?}, expected {:?}", got, want));
                }
            }
        }
        if let Some(want) = e.complete {
            if r.complete != want {
                fails.push(format!("{who}body complete = {}, expected {want}{}", r.complete, detail()));
            }
        }
        if let Some(want) = e.no_response {
            if r.status.is_none() != want {
                fails.push(format!("{who}no_response = {}, expected {want}{}", r.status.is_none(), detail()));
            }
        }
        if let Some(min) = e.chunks_at_least {
            let ok = r.chunks >= min;
            *tally.entry("chunks_at_least").or_default().entry(ok.to_string()).or_default() += 1;
            if !ok {
                fails.push(format!("{who}{} chunks, expected at least {min}{}", r.chunks, detail()));
            }
        }
        if let Some(max) = e.max_chunk_gap_ms {
            let ok = r.max_gap_ms <= max;
            *tally.entry("chunk_gap_ok").or_default().entry(ok.to_string()).or_default() += 1;
            if !ok {
                fails.push(format!("{who}a chunk came {} ms after the previous one, expected at most {max}", r.max_gap_ms));
            }
        }
    }
    let counts = |name: &str, want: &BTreeMap<String, u32>, fails: &mut Vec<String>| {
        let got = tally.get(name).cloned().unwrap_or_default();
        let mut g2 = got.clone();
        for (k, w) in want {
            let g = g2.remove(k).unwrap_or(0);
            if g != *w {
                fails.push(format!("{name} {k}: {g} responses, expected {w} (all: {got:?})"));
            }
        }
    };
    counts("status", &e.status_counts, &mut fails);
    counts("error", &e.error_counts, &mut fails);
    counts("upstream", &e.upstream_counts, &mut fails);
    // Only the first few failures of a step, to keep reports readable.
    let total = fails.len();
    for f in fails.into_iter().take(5) {
        ctx.fail(i, "send", f);
    }
    if total > 5 {
        ctx.fail(i, "send", format!("... and {} more", total - 5));
    }
    let default_dims: Vec<String> = if s.raw.is_some() || s.pad_header_bytes.is_some() {
        vec!["status".into()]
    } else {
        ["status", "error", "upstream", "placement", "complete"].iter().map(|x| x.to_string()).collect()
    };
    let dims = s.trace.clone().unwrap_or(default_dims);
    for (k, v) in tally {
        let core = ["status", "error", "upstream", "placement", "complete"].contains(&k);
        if !core || dims.iter().any(|d| d == k) {
            extra.insert(k.to_string(), json!(v));
        }
    }
    ctx.obs(i, "send", Value::Object(extra));
}

async fn do_push(ctx: &mut Ctx<'_>, i: i64, p: &Push) -> Result<()> {
    let (frame, version, config_text) = if let Some(f) = &p.frame {
        (f.clone(), None, None)
    } else {
        let mut text = match (&p.config, &p.config_text) {
            (Some(c), _) => ctx.env.fill_value(c).to_string(),
            (_, Some(t)) => ctx.env.fill(t),
            _ => unreachable!("validated"),
        };
        if let Some(n) = p.pad_to_bytes {
            // Spaces inside the object (before its closing brace), so that they belong to
            // the config member's raw value, which is what the size limit measures.
            let pad = " ".repeat(n.saturating_sub(text.len()));
            match text.rfind('}') {
                Some(k) => text.insert_str(k, &pad),
                None => text.push_str(&pad),
            }
        }
        let version = serde_json::from_str::<Value>(&text).ok().and_then(|v| v.get("version").and_then(|x| x.as_u64()));
        (crate::control_plane::config_frame(&text), version, Some(text))
    };
    // A nack of a frame that is not a config has version null.
    // An ack is matched by version; a nack by its version when the scenario gives one,
    // else it is the first answer after the push.
    let want_version: Option<Option<u64>> = if let Some(n) = &p.nack { n.version } else { Some(p.ack.or(version)) };
    let idx = match ctx.env.cp.as_ref().expect("validated").send_frame(frame) {
        Ok(i) => i,
        Err(e) => {
            ctx.obs(i, "push", json!({"sent": false}));
            ctx.fail(i, "push", format!("{e}"));
            return Ok(());
        }
    };
    let ans = ctx.env.cp.as_ref().expect("validated").answer(idx, want_version, Duration::from_millis(p.within_ms)).await;
    let seen = match &ans {
        Some(crate::control_plane::CpEvent::Ack { version }) => json!({"ack": version}),
        Some(crate::control_plane::CpEvent::Nack { version, code, path }) => json!({"nack": {"version": version, "code": code, "path": path}}),
        _ => json!({"answer": null}),
    };
    ctx.obs(i, "push", seen.clone());
    match (&ans, p.ack, &p.nack) {
        (Some(crate::control_plane::CpEvent::Ack { version }), Some(v), _) if *version == Some(v) => {
            if let Some(t) = config_text {
                ctx.env.cp.as_ref().expect("validated").set_current(t);
            }
        }
        (Some(crate::control_plane::CpEvent::Nack { code, path, version }), _, Some(n)) => {
            if *code != n.code {
                ctx.fail(i, "push", format!("nack code {code:?}, expected {:?} ({seen})", n.code));
            }
            if let Some(want) = &n.path {
                if path != want {
                    ctx.fail(i, "push", format!("nack path {path:?}, expected {want:?}"));
                }
            }
            if let Some(want) = n.version {
                if *version != want {
                    ctx.fail(i, "push", format!("nack version {version:?}, expected {want:?}"));
                }
            }
        }
        _ => {
            let all: Vec<_> = ctx.env.cp.as_ref().expect("validated").events().into_iter().skip(idx).collect();
            ctx.fail(
                i,
                "push",
                format!("expected {} within {} ms; saw {seen}; frames since the push: {all:?}", if p.ack.is_some() { format!("ack {:?}", p.ack) } else { format!("nack {:?}", p.nack.as_ref().map(|n| &n.code)) }, p.within_ms),
            );
        }
    }
    Ok(())
}

async fn do_router(ctx: &mut Ctx<'_>, i: i64, a: &RouterAction) -> Result<()> {
    match a {
        RouterAction::Restart => {
            let grace = ctx.sc.router.shutdown_grace_ms.unwrap_or(5000) + 5000;
            let code = ctx.env.router.stop(Duration::from_millis(grace)).await;
            let client = ctx.env.client.clone();
            let started = ctx.env.router.start(&client).await;
            ctx.obs(i, "router", json!({"restart_exit_code": code, "started": started.is_ok()}));
            if code != Some(0) {
                ctx.fail(i, "router", format!("exit code on SIGTERM {code:?}, expected 0"));
            }
            if let Err(e) = started {
                ctx.fail(i, "router", format!("restart failed: {e:#}"));
            }
        }
        RouterAction::Sigterm => {
            ctx.env.router.sigterm();
            ctx.obs(i, "router", json!("sigterm"));
        }
        RouterAction::ExpectExit { code, within_ms } => {
            let got = ctx.env.router.wait_exit(Duration::from_millis(*within_ms)).await;
            match got {
                Ok(c) => {
                    ctx.obs(i, "router", json!({"exit_code": c}));
                    if c != Some(*code) {
                        ctx.fail(i, "router", format!("exit code {c:?}, expected {code}"));
                    }
                }
                Err(e) => {
                    ctx.obs(i, "router", json!({"exit_code": "running"}));
                    ctx.fail(i, "router", format!("router {e}"));
                }
            }
        }
        RouterAction::ExpectRssBelow { bytes } => {
            let peak = ctx.env.router.sample_rss();
            ctx.obs(i, "router", json!({"rss_below": peak < *bytes}));
            if peak >= *bytes {
                ctx.fail(i, "router", format!("peak RSS {peak} bytes, expected below {bytes}"));
            }
        }
        RouterAction::ExpectRefused => {
            let r = tokio::net::TcpStream::connect(crate::upstreams::addr(ctx.env.router.listen_port)).await;
            let refused = matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
            ctx.obs(i, "router", json!({"refused": refused}));
            if !refused {
                ctx.fail(i, "router", format!("data-plane port not refusing: {r:?}"));
            }
        }
    }
    Ok(())
}

async fn do_wait(ctx: &mut Ctx<'_>, i: i64, w: &Wait) {
    let within = Duration::from_millis(w.within_ms);
    let want = w.equals.as_ref().map(|v| ctx.env.fill_value(v));
    let mut last = Value::Null;
    let deadline = Instant::now() + within;
    let met = if let Some(ptr) = &w.admin {
        loop {
            let got = ctx.env.admin_state().await.ok().and_then(|s| s.pointer(ptr).cloned()).unwrap_or(Value::Null);
            let ok = match (&want, w.at_least) {
                (Some(v), _) => json_eq(&got, v),
                (None, Some(n)) => got.as_f64().map(|x| x >= n).unwrap_or(false),
                _ => false,
            };
            last = got;
            if ok || Instant::now() >= deadline {
                break ok;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else if let Some(m) = &w.metric {
        let key = SeriesKey::parse(m).unwrap();
        loop {
            let got = ctx.env.metrics().await.map(|s| s.get(&key)).unwrap_or(f64::NAN);
            last = json!(got);
            let ok = match (&want, w.at_least) {
                (Some(v), _) => v.as_f64() == Some(got),
                (None, Some(n)) => got >= n,
                _ => false,
            };
            if ok || Instant::now() >= deadline {
                break ok;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else if let Some(n) = w.hellos {
        let cp = ctx.env.cp.as_ref().expect("validated");
        let ok = cp
            .wait_for(|ev| ev.iter().filter(|e| matches!(e, crate::control_plane::CpEvent::Hello { .. })).count() >= n as usize, within)
            .await;
        last = json!(cp.hellos());
        ok
    } else if let Some(n) = w.cp_connections {
        let cp = ctx.env.cp.as_ref().expect("validated");
        let ok = cp.wait_live(n, within).await;
        last = json!(cp.live());
        ok
    } else if w.data_port_refused.is_some() {
        let want = w.data_port_refused == Some(true);
        let port = ctx.env.router.listen_port;
        let ok = wait_until(within, || async move {
            let r = tokio::net::TcpStream::connect(crate::upstreams::addr(port)).await;
            let refused = matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
            refused == want
        })
        .await;
        last = json!(ok);
        ok
    } else if let Some(name) = &w.background_chunks {
        let p = ctx.progress.get(name).cloned().unwrap_or_default();
        let n = w.at_least.unwrap_or(1.0);
        let ok = wait_until(within, || {
            let v = p.load(Ordering::SeqCst) as f64;
            async move { v >= n }
        })
        .await;
        last = json!(p.load(Ordering::SeqCst));
        ok
    } else if let Some(name) = &w.upstream_requests {
        let sh = ctx.env.upstreams[name].shared().clone();
        let n = w.at_least.unwrap_or(1.0);
        let ok = wait_until(within, || {
            let v = sh.requests.load(Ordering::SeqCst) as f64;
            async move { v >= n }
        })
        .await;
        last = json!(sh.requests.load(Ordering::SeqCst));
        ok
    } else {
        false
    };
    ctx.obs(i, "wait", json!({"met": met}));
    if !met {
        let what = w.admin.clone().or(w.metric.clone()).or(w.upstream_requests.clone()).or(w.background_chunks.clone()).unwrap_or_else(|| {
            if w.data_port_refused.is_some() {
                "data_port_refused".into()
            } else if w.hellos.is_some() {
                "hellos".into()
            } else {
                "cp_connections".into()
            }
        });
        let target = want.map(|v| format!("= {v}")).or(w.at_least.map(|n| format!(">= {n}"))).or(w.hellos.map(|n| format!(">= {n}"))).or(w.cp_connections.map(|n| format!("= {n}"))).unwrap_or_default();
        ctx.fail(i, "wait", format!("{what} {target} not reached within {} ms (last seen: {last})", w.within_ms));
    }
}
