//! `send` (requests to the data plane, now or in the background) and `await` (the end
//! of a background send): the responses are checked by [`crate::expect::check_send`].
use super::{Background, Ctx};
use crate::client::{send_all, Resp};
use crate::expect::check_send;
use crate::scenario::{Await, Send};
use crate::observe::normalise::{sort_concurrent, SendKind};
use serde_json::{json, Value};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Sends the requests and checks them, or starts them in the background (`background:`).
pub async fn run(ctx: &mut Ctx<'_>, i: i64, s: &Send) {
    let addr = ctx.env.data_addr();
    let conn = match ctx.env.conn_for(s.client_cert) {
        Ok(c) => c,
        Err(e) => {
            ctx.fail(i, "send", format!("client TLS configuration: {e:#}"));
            return;
        }
    };
    if let Some(name) = &s.background {
        let progress = Arc::new(AtomicU64::new(0));
        ctx.progress.insert(name.clone(), progress.clone());
        let handle = tokio::spawn(send_all(addr, i, s.clone(), progress, conn));
        ctx.background.insert(name.clone(), Background { step: i as usize, send: s.clone(), handle });
        ctx.obs(i, "send", json!({"background": name}));
    } else {
        let rs = send_all(addr, i, s.clone(), Default::default(), conn).await;
        record(ctx, i, s, &rs);
    }
}

/// Waits for the background send `a.name` and checks its responses under the step of
/// the `send`. An unknown name (validated away) does nothing.
pub async fn await_background(ctx: &mut Ctx<'_>, i: i64, a: &Await) {
    let Some(bg) = ctx.background.remove(&a.name) else { return };
    match tokio::time::timeout(Duration::from_millis(a.within_ms), bg.handle).await {
        Ok(Ok(rs)) => record(ctx, i, &bg.send, &rs),
        Ok(Err(e)) => ctx.fail(i, "await", format!("background send panicked: {e}")),
        Err(_) => {
            ctx.obs(i, "await", json!({"finished": false}));
            ctx.fail(i, "await", format!("background send {:?} not finished within {} ms", a.name, a.within_ms));
        }
    }
}

/// Checks the background sends never awaited (waiting up to 15 s for each).
pub async fn finish_background(ctx: &mut Ctx<'_>) {
    let names: Vec<String> = ctx.background.keys().cloned().collect();
    for n in names {
        let bg = ctx.background.remove(&n).unwrap();
        if let Ok(Ok(rs)) = tokio::time::timeout(Duration::from_secs(15), bg.handle).await {
            record(ctx, bg.step as i64, &bg.send, &rs);
        }
    }
}

/// Records the latencies, the failed expectations and the observation of one send: the
/// tallies of the traced dimensions, and under `requests` everything observed for each
/// request on both sides of the router: what the client saw (`client`) and what every
/// upstream received for it (`upstream`), normalised ([`crate::observe::normalise`]).
fn record(ctx: &mut Ctx<'_>, i: i64, s: &Send, rs: &[Resp]) {
    ctx.latencies.extend(rs.iter().map(|r| r.latency_us));
    let c = check_send(s, rs);
    for f in c.failures {
        ctx.fail(i, "send", f);
    }
    let kind = SendKind { malformed_allowed: crate::client::is_raw(s) || s.pad_header_bytes.is_some() };
    let norm = ctx.env.full_normaliser();
    let mut requests: Vec<Value> = rs
        .iter()
        .map(|r| {
            let ups: Vec<Value> = match &r.tag {
                Some(t) => ctx.env.received.tagged(t).iter().map(|u| norm.upstream_request(u)).collect(),
                None => vec![],
            };
            json!({"client": norm.exchange(&r.exchange, kind), "upstream": ups})
        })
        .collect();
    if s.concurrency > 1 {
        sort_concurrent(&mut requests);
    }
    let mut observed = c.observed;
    // Rule::NarrowedTrace: a step naming its traced dimensions is compared by them only.
    if let (Some(o), None) = (observed.as_object_mut(), &s.trace) {
        o.insert("requests".into(), Value::Array(requests));
    }
    ctx.obs(i, "send", observed);
}
