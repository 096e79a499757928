//! `snapshot_metrics`: records the named metrics of `GET /metrics` and the control
//! plane's answers so far, expecting nothing. `parity chaos` takes one at the boundaries
//! of its schedule (case start, before and after each router restart, case end) and
//! holds the counters' deltas to what its clients saw (`chaos::metrics_check`).
//!
//! Observation (`snapshot_metrics`): `{"series": {"name{l=\"v\"}": value, ...},
//! "cp": {"acks": [version, ...], "nacks": [code, ...]}, "scrape": "failed"?}`; `cp` is
//! read just *before* the scrape, so every answer it lists was counted by the router
//! before the scrape (a router counts a config before it answers).
use super::Ctx;
use crate::control_plane::CpEvent;
use crate::scenario::SnapshotMetrics;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

/// Longest a `quiet_ms` snapshot keeps reading.
const QUIET_WITHIN: Duration = Duration::from_secs(2);

/// The control plane's acks (versions) and nacks (codes), in arrival order.
fn cp_answers(ctx: &Ctx<'_>) -> Value {
    let Some(cp) = ctx.env.cp.as_ref() else { return Value::Null };
    let (mut acks, mut nacks) = (vec![], vec![]);
    for e in cp.events() {
        match e {
            CpEvent::Ack { version } => acks.push(json!(version)),
            CpEvent::Nack { code, .. } => nacks.push(json!(code)),
            _ => {}
        }
    }
    json!({"acks": acks, "nacks": nacks})
}

/// One read: the control plane's answers, then the scrape (`None`: it failed).
async fn read(ctx: &Ctx<'_>, names: &[String]) -> (Value, Option<Map<String, Value>>) {
    let cp = cp_answers(ctx);
    let series = match ctx.env.metrics().await {
        Ok(s) => Some(s.series.iter().filter(|(k, _)| names.contains(&k.name)).map(|(k, v)| (k.to_string(), json!(v))).collect()),
        Err(_) => None,
    };
    (cp, series)
}

/// Takes the snapshot (reading until quiet when `quiet_ms` is set) and records it. A
/// failed scrape is recorded as such (`"scrape": "failed"`), not as zeros.
pub async fn run(ctx: &mut Ctx<'_>, i: i64, m: &SnapshotMetrics) {
    let mut last = read(ctx, &m.names).await;
    if let Some(q) = m.quiet_ms {
        let deadline = Instant::now() + QUIET_WITHIN;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(q)).await;
            let now = read(ctx, &m.names).await;
            let quiet = now.1.is_some() && now == last;
            last = now;
            if quiet {
                break;
            }
        }
    }
    let (cp, series) = last;
    let mut o = Map::new();
    match series {
        Some(s) => {
            o.insert("series".into(), Value::Object(s));
        }
        None => {
            o.insert("scrape".into(), json!("failed"));
        }
    }
    o.insert("cp".into(), cp);
    ctx.obs(i, "snapshot_metrics", Value::Object(o));
}
