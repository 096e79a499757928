//! `send` (requests to the data plane, now or in the background) and `await` (the end
//! of a background send): the responses are checked by [`crate::expect::check_send`].
use super::{Background, Ctx};
use crate::client::{send_all, Resp};
use crate::expect::check_send;
use crate::scenario::{Await, Send};
use serde_json::json;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// Sends the requests and checks them, or starts them in the background (`background:`).
pub async fn run(ctx: &mut Ctx<'_>, i: i64, s: &Send) {
    let client = ctx.env.client.clone();
    let port = ctx.env.router.listen_port;
    if let Some(name) = &s.background {
        let progress = Arc::new(AtomicU64::new(0));
        ctx.progress.insert(name.clone(), progress.clone());
        let handle = tokio::spawn(send_all(client, port, s.clone(), progress));
        ctx.background.insert(name.clone(), Background { step: i as usize, send: s.clone(), handle });
        ctx.obs(i, "send", json!({"background": name}));
    } else {
        let rs = send_all(client, port, s.clone(), Default::default()).await;
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

/// Records the latencies, the failed expectations and the observation of one send.
fn record(ctx: &mut Ctx<'_>, i: i64, s: &Send, rs: &[Resp]) {
    ctx.latencies.extend(rs.iter().map(|r| r.latency_us));
    let c = check_send(s, rs);
    for f in c.failures {
        ctx.fail(i, "send", f);
    }
    ctx.obs(i, "send", c.observed);
}
