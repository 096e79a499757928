//! `wait`: polls observable state (admin field, metric, hellos, control-plane
//! connections, refused data port, background chunks, upstream requests) until it
//! holds or the step's deadline passes.
use super::{poll_until, Ctx};
use crate::control_plane::CpEvent;
use crate::expect::json_eq;
use crate::metrics::SeriesKey;
use crate::scenario::Wait;
use crate::util::net::addr;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Polls the condition until it holds or `within_ms` passes.
pub async fn run(ctx: &mut Ctx<'_>, i: i64, w: &Wait) {
    let within = Duration::from_millis(w.within_ms);
    let want = w.equals.clone();
    let mut last = Value::Null;
    let met = if let Some(ptr) = &w.admin {
        let (env, want) = (&*ctx.env, &want);
        let (got, ok) = poll_until(within, move || async move {
            let got = env.admin_state().await.ok().and_then(|s| s.pointer(ptr).cloned()).unwrap_or(Value::Null);
            let ok = match (want, w.at_least) {
                (Some(v), _) => json_eq(&got, v),
                (None, Some(n)) => got.as_f64().map(|x| x >= n).unwrap_or(false),
                _ => false,
            };
            (got, ok)
        })
        .await;
        last = got;
        ok
    } else if let Some(m) = &w.metric {
        let key = SeriesKey::parse(m).unwrap();
        let (env, want, key) = (&*ctx.env, &want, &key);
        let (got, ok) = poll_until(within, move || async move {
            // Absent and a failed scrape are their own values, never 0.
            let (got, v) = match env.metrics().await {
                Ok(s) => match s.value(key) {
                    Some(x) => (json!(x), Some(x)),
                    None => (json!("<absent>"), None),
                },
                Err(_) => (json!("<scrape failed>"), None),
            };
            let ok = match (want, w.at_least, v) {
                (Some(want), _, Some(x)) => want.as_f64() == Some(x),
                (None, Some(n), Some(x)) => x >= n,
                _ => false,
            };
            (got, ok)
        })
        .await;
        last = got;
        ok
    } else if let Some(n) = w.hellos {
        let cp = ctx.env.cp.as_ref().expect("validated");
        let ok = cp
            .wait_for(|ev| ev.iter().filter(|e| matches!(e, CpEvent::Hello { .. })).count() >= n as usize, within)
            .await;
        last = json!(cp.hellos());
        ok
    } else if let Some(n) = w.cp_connections {
        let cp = ctx.env.cp.as_ref().expect("validated");
        let ok = cp.wait_live(n, within).await;
        last = json!(cp.live());
        ok
    } else if let Some(n) = w.cp_closed {
        let cp = ctx.env.cp.as_ref().expect("validated");
        let ok = cp.wait_closed(n, within).await;
        last = json!(cp.closed());
        ok
    } else if w.data_port_refused.is_some() {
        let want = w.data_port_refused == Some(true);
        let port = ctx.env.router.listen_port;
        let ((), ok) = poll_until(within, || async move {
            let r = tokio::net::TcpStream::connect(addr(port)).await;
            let refused = matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
            ((), refused == want)
        })
        .await;
        last = json!(ok);
        ok
    } else if let Some(name) = &w.background_chunks {
        let p = ctx.progress.get(name).cloned().unwrap_or_default();
        let n = w.at_least.unwrap_or(1.0);
        let ((), ok) = poll_until(within, || {
            let v = p.load(Ordering::SeqCst) as f64;
            async move { ((), v >= n) }
        })
        .await;
        last = json!(p.load(Ordering::SeqCst));
        ok
    } else if let Some(name) = &w.upstream_requests {
        let sh = ctx.env.upstreams[name].shared().clone();
        let n = w.at_least.unwrap_or(1.0);
        let ((), ok) = poll_until(within, || {
            let v = sh.requests.load(Ordering::SeqCst) as f64;
            async move { ((), v >= n) }
        })
        .await;
        last = json!(sh.requests.load(Ordering::SeqCst));
        ok
    } else {
        false
    };
    // The window: how long after the end of step `after_step` the condition was met.
    let in_window = match (&w.window, met) {
        (Some(win), true) => {
            let from = ctx.step_ends.get(win.after_step.wrapping_sub(1)).copied().flatten();
            let elapsed = from.map(|t| t.elapsed().as_millis() as u64);
            let ok = elapsed.map(|e| e >= win.min_ms && e <= win.max_ms).unwrap_or(false);
            if !ok {
                ctx.fail(i, "wait", format!("met {} ms after step {}, outside the window {}..={} ms", elapsed.map(|e| e.to_string()).unwrap_or_else(|| "?".into()), win.after_step, win.min_ms, win.max_ms));
            }
            Some(ok)
        }
        _ => None,
    };
    // The value read when the condition was met (or last): counters a wait reads count.
    // Rule background-progress: the progress of load the harness itself runs concurrently
    // (body chunks of a background send, requests an upstream received meanwhile) at the
    // moment the condition held is scheduling, so only whether it held is compared.
    // cp_closed is an at-least count of connections a reconnecting router keeps making:
    // how far past `n` it was when read is timing as well.
    let progress = w.background_chunks.is_some() || w.upstream_requests.is_some() || w.cp_closed.is_some();
    let mut seen = if progress { json!({"met": met}) } else { json!({"met": met, "value": last}) };
    if let Some(ok) = in_window {
        seen["in_window"] = json!(ok);
    }
    ctx.obs(i, "wait", seen);
    if !met {
        let what = w.admin.clone().or(w.metric.clone()).or(w.upstream_requests.clone()).or(w.background_chunks.clone()).unwrap_or_else(|| {
            if w.data_port_refused.is_some() {
                "data_port_refused".into()
            } else if w.hellos.is_some() {
                "hellos".into()
            } else if w.cp_closed.is_some() {
                "cp_closed".into()
            } else {
                "cp_connections".into()
            }
        });
        let target = want.map(|v| format!("= {v}")).or(w.at_least.map(|n| format!(">= {n}"))).or(w.hellos.map(|n| format!(">= {n}"))).or(w.cp_connections.map(|n| format!("= {n}"))).or(w.cp_closed.map(|n| format!(">= {n}"))).unwrap_or_default();
        ctx.fail(i, "wait", format!("{what} {target} not reached within {} ms (last seen: {last})", w.within_ms));
    }
}
