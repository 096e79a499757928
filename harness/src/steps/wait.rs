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
            let got = env.metrics().await.map(|s| s.get(key)).unwrap_or(f64::NAN);
            let ok = match (want, w.at_least) {
                (Some(v), _) => v.as_f64() == Some(got),
                (None, Some(n)) => got >= n,
                _ => false,
            };
            (got, ok)
        })
        .await;
        last = json!(got);
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
