//! Runs one scenario against one implementation: builds the environment, resolves the
//! scenario into its [`Plan`], waits for the initial config, executes the planned steps
//! ([`crate::steps`]) and returns the trace and every failed expectation. No step relies
//! on a bare sleep for correctness: waits poll observable state (admin API, metrics,
//! control-plane frames, upstream counters) until a deadline.

use crate::control_plane::CpEvent;
use crate::env::Env;
use crate::plan::Plan;
use crate::scenario::Scenario;
use crate::steps::{self, poll_until, Ctx};
use crate::tls::Transport;
use crate::trace::{Obs, Recorder};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// Runs `sc` against `imp` (router binary from `bin_dir`, its output and `trace.json`
/// into `log_dir`). Never panics on router misbehaviour; harness problems give status
/// `error`, a router that does not start gives `fail`.
pub async fn run(sc: &Scenario, imp: &str, bin_dir: &Path, log_dir: &Path) -> ImplRun {
    run_with(sc, imp, bin_dir, log_dir, None).await
}

/// [`run`], with the self-test's injecting proxy `inject` in the environment.
pub async fn run_with(sc: &Scenario, imp: &str, bin_dir: &Path, log_dir: &Path, inject: Option<&crate::env::InjectSpec>) -> ImplRun {
    run_full(sc, imp, bin_dir, log_dir, inject, Transport::H1).await
}

/// [`run`] with `send` steps over `transport`; a TLS transport needs `sc.router.tls`
/// (see [`crate::tls::for_transport`]).
pub async fn run_over(sc: &Scenario, imp: &str, bin_dir: &Path, log_dir: &Path, transport: Transport) -> ImplRun {
    run_full(sc, imp, bin_dir, log_dir, None, transport).await
}

async fn run_full(sc: &Scenario, imp: &str, bin_dir: &Path, log_dir: &Path, inject: Option<&crate::env::InjectSpec>, transport: Transport) -> ImplRun {
    let start = Instant::now();
    let mut env = match Env::create_with(sc, imp, bin_dir, log_dir, inject).await {
        Ok(mut e) => {
            e.transport = transport;
            e
        }
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
    // Templates are resolved once, now that the environment is up.
    let plan = Plan::new(sc, &env.bindings());
    let rec = Recorder::new(env.normaliser());
    let mut ctx = Ctx::new(&mut env, sc, rec);
    let deadline = Duration::from_millis(sc.timeout_ms);
    let res = tokio::time::timeout(deadline, run_plan(&mut ctx, &plan)).await;
    match res {
        Err(_) => ctx.rec.failures.push(format!("scenario deadline of {} ms passed", sc.timeout_ms)),
        Ok(Err(e)) => ctx.rec.failures.push(format!("harness: {e:#}")),
        Ok(Ok(())) => {}
    }
    for (_, bg) in ctx.background.drain() {
        bg.handle.abort();
    }
    let (Recorder { trace, failures, .. }, latencies) = (ctx.rec, ctx.latencies);
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

/// The set-up, every planned step in order, then the background sends never awaited.
async fn run_plan(ctx: &mut Ctx<'_>, plan: &Plan) -> Result<()> {
    setup(ctx).await;
    for (i, step) in plan.steps.iter().enumerate() {
        steps::run(ctx, i as i64, step).await?;
    }
    steps::send::finish_background(ctx).await;
    Ok(())
}

/// Set-up: with a control plane and a config, waits for the hello and the ack of the
/// initial config; with a last-known-good file only, waits until the router is ready.
async fn setup(ctx: &mut Ctx<'_>) {
    if let (Some(cp), Some(cfg)) = (&ctx.env.cp, &ctx.sc.config) {
        if ctx.sc.router.push_on_hello {
            let v = cfg.get("version").and_then(|v| v.as_u64());
            let t0 = Instant::now();
            let a = cp.answer(0, Some(v), Duration::from_secs(10)).await;
            let ok = matches!(a, Some(CpEvent::Ack { .. }));
            ctx.obs(-1, "setup", json!({"initial_config_acked": ok}));
            match a {
                Some(CpEvent::Ack { .. }) => {}
                Some(CpEvent::Nack { code, path, .. }) => {
                    ctx.fail(-1, "setup", format!("initial config rejected by the router: code {code}, path {path}"));
                }
                _ => {
                    ctx.fail(-1, "setup", format!("initial config not answered within {:.1} s", t0.elapsed().as_secs_f64()));
                }
            }
        }
    } else if !ctx.sc.router.control_plane && ctx.sc.config.is_some() {
        let env = &*ctx.env;
        let ((), ok) = poll_until(Duration::from_secs(10), move || async move {
            let r = env.client.get(format!("http://127.0.0.1:{}/readyz", env.router.admin_port)).send().await;
            ((), matches!(r, Ok(r) if r.status().as_u16() == 200))
        })
        .await;
        ctx.obs(-1, "setup", json!({"ready_on_lkg": ok}));
        if !ok {
            ctx.fail(-1, "setup", "router not ready on the LKG file within 10 s".into());
        }
    }
}
