//! Step executors, one file per step kind, dispatched from [`Step`] by [`run`]. Each
//! takes its planned step (templates already resolved, see [`crate::plan`]), acts on the
//! environment, and records what it saw and every failed expectation in the run's
//! [`Recorder`]. Steps that read state a router may update just after a response
//! (admin, metrics, access log) read again until it matches or [`SETTLE`] passes
//! ([`poll_until`]); `wait` steps poll until their own deadline.

pub mod control_plane;
pub mod expect_access_log;
pub mod expect_admin;
pub mod expect_control_plane;
pub mod expect_file;
pub mod expect_metrics;
pub mod expect_upstream;
pub mod key_spread;
pub mod push;
pub mod router;
pub mod send;
pub mod snapshot_metrics;
pub mod upstream;
pub mod tls;
pub mod wait;
pub mod toxic;

use crate::client::Resp;
use crate::env::Env;
use crate::scenario::{Scenario, Send, Step};
use crate::trace::Recorder;
use anyhow::Result;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `expect_admin`, `expect_metrics` and `expect_access_log` keep reading until
/// their values match: a router may update its state just after the client got the
/// response.
pub const SETTLE: Duration = Duration::from_millis(1000);

/// Pause between two reads of [`poll_until`].
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Calls `probe` until it reports success or `within` has passed (at least once), 20 ms
/// apart; returns the last value and whether it succeeded.
pub async fn poll_until<T, F, Fut>(within: Duration, mut probe: F) -> (T, bool)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (T, bool)>,
{
    let deadline = Instant::now() + within;
    loop {
        let (v, ok) = probe().await;
        if ok || Instant::now() >= deadline {
            return (v, ok);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// A `send` step running in the background until its `await` step.
pub struct Background {
    /// Index of the `send` step.
    pub step: usize,
    /// The planned send (its expectations are checked when it is awaited).
    pub send: Send,
    /// The task sending the requests.
    pub handle: tokio::task::JoinHandle<Vec<Resp>>,
}

/// What the steps of one run share: the environment, the recorder, and the background
/// sends in flight.
pub struct Ctx<'a> {
    /// The environment (router, upstreams, control plane).
    pub env: &'a mut Env,
    /// The scenario (router settings).
    pub sc: &'a Scenario,
    /// The trace and the failed expectations.
    pub rec: Recorder,
    /// Latency of every request sent, microseconds.
    pub latencies: Vec<u64>,
    /// Background sends by name.
    pub background: HashMap<String, Background>,
    /// Response chunks received by each background send, by name.
    pub progress: HashMap<String, Arc<AtomicU64>>,
    /// When each step ended (by 0-based index), for `wait` windows.
    pub step_ends: Vec<Option<Instant>>,
    /// Per upstream name: how many of its records earlier `expect_upstream` steps with
    /// `received` have compared (the next one compares from there).
    pub received_seen: HashMap<String, usize>,
    /// Spreads (key -> upstream) saved by `key_spread` steps, by name.
    pub spreads: HashMap<String, std::collections::BTreeMap<String, String>>,
}

impl<'a> Ctx<'a> {
    /// A context with an empty trace.
    pub fn new(env: &'a mut Env, sc: &'a Scenario, rec: Recorder) -> Ctx<'a> {
        Ctx { env, sc, rec, latencies: Vec::new(), background: HashMap::new(), progress: HashMap::new(), step_ends: Vec::new(), received_seen: HashMap::new(), spreads: HashMap::new() }
    }

    /// Records an observation (normalised).
    pub fn obs(&mut self, step: i64, kind: &str, value: Value) {
        self.rec.obs(step, kind, value);
    }

    /// Records a failed expectation.
    pub fn fail(&mut self, step: i64, kind: &str, msg: String) {
        self.rec.fail(step, kind, msg);
    }
}

/// Runs step `i`. `Err` is a harness failure (the run stops), not a failed expectation.
pub async fn run(ctx: &mut Ctx<'_>, i: i64, step: &Step) -> Result<()> {
    run_step(ctx, i, step).await?;
    let k = i.max(0) as usize;
    if ctx.step_ends.len() <= k {
        ctx.step_ends.resize(k + 1, None);
    }
    ctx.step_ends[k] = Some(Instant::now());
    Ok(())
}

async fn run_step(ctx: &mut Ctx<'_>, i: i64, step: &Step) -> Result<()> {
    match step {
        Step::Send(s) => send::run(ctx, i, s).await,
        Step::Await(a) => send::await_background(ctx, i, a).await,
        Step::Push(p) => push::run(ctx, i, p).await,
        Step::Upstream(u) => upstream::run(ctx, u).await?,
        Step::ControlPlane(a) => control_plane::run(ctx, a).await?,
        Step::Router(a) => router::run(ctx, i, a).await,
        Step::Wait(w) => wait::run(ctx, i, w).await,
        Step::ExpectAdmin(m) => expect_admin::run(ctx, i, m).await,
        Step::KeySpread(k) => key_spread::run(ctx, i, k).await,
        Step::ExpectMetrics(m) => expect_metrics::run(ctx, i, m).await?,
        Step::SnapshotMetrics(m) => snapshot_metrics::run(ctx, i, m).await,
        Step::ExpectControlPlane(e) => expect_control_plane::run(ctx, i, e),
        Step::ExpectAccessLog(a) => expect_access_log::run(ctx, i, a).await,
        Step::ExpectFile(f) => expect_file::run(ctx, i, f),
        Step::ExpectUpstream(u) => expect_upstream::run(ctx, i, u).await,
        Step::Toxic(t) => toxic::run(ctx, t).await?,
        Step::Tls(t) => tls::run(ctx, i, t).await,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn poll_until_stops_at_success_or_deadline() {
        let mut n = 0;
        let (v, ok) = poll_until(Duration::from_secs(5), || {
            n += 1;
            let v = n;
            async move { (v, v == 3) }
        })
        .await;
        assert_eq!((v, ok), (3, true));
        let t0 = Instant::now();
        let (_, ok) = poll_until(Duration::from_millis(60), || async { ((), false) }).await;
        assert!(!ok);
        assert!(t0.elapsed() >= Duration::from_millis(60));
    }
}
