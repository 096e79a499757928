//! The router binary against a WebSocket control plane run by the test.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

async fn next_json(ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("frame in time").unwrap().unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_config_ack_lkg_and_reconnect() {
    let up = Upstream::start("cp-up");
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", l.local_addr().unwrap());
    let r = tokio::task::spawn_blocking(move || {
        RouterProc::start(None, &["--control-plane", &url, "--reconnect-initial-ms", "50", "--reconnect-max-ms", "200"])
    })
    .await
    .unwrap();

    let (s, _) = l.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(hello, json!({"type":"hello","impl":"pingora","config_version":null}));

    let cfg: Value = serde_json::from_str(&config(11, &[("p", &up.addr, None, 4, 1000)])).unwrap();
    ws.send(Message::text(json!({"type":"config","config":cfg}).to_string())).await.unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"type":"ack","version":11}));
    // the LKG file was written before the ack
    let lkg: Value = serde_json::from_slice(&std::fs::read(r.dir.join("last-known-good.json")).unwrap()).unwrap();
    assert_eq!(lkg, cfg);
    ws.send(Message::text(r#"{"type":"config","config":{"version":10,"routes":{},"placements":{}}}"#)).await.unwrap();
    let nack = next_json(&mut ws).await;
    assert_eq!(nack["type"], "nack");
    assert_eq!(nack["version"], 10);
    assert_eq!(nack["error"]["code"], "stale_version");
    assert_eq!(nack["error"]["path"], "/version");
    ws.send(Message::text("[1,2]")).await.unwrap();
    let nack = next_json(&mut ws).await;
    assert_eq!((nack["error"]["code"].as_str(), &nack["version"]), (Some("malformed_json"), &Value::Null));

    let st = tokio::task::spawn_blocking({
        let admin = r.admin.clone();
        move || serde_json::from_slice::<Value>(&http(&admin, "GET", "/admin/state", &[], None).unwrap().body).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(st["config_version"], 11);
    assert_eq!(st["control_plane"], json!({"connected": true, "reconnects": 0}));

    // drop the session: the router reconnects and says which version it has
    drop(ws);
    let (s, _) = tokio::time::timeout(Duration::from_secs(10), l.accept()).await.unwrap().unwrap();
    let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"type":"hello","impl":"pingora","config_version":11}));
    let admin = r.admin.clone();
    let m = tokio::task::spawn_blocking(move || String::from_utf8(http(&admin, "GET", "/metrics", &[], None).unwrap().body).unwrap())
        .await
        .unwrap();
    assert!(m.contains("router_control_plane_reconnects_total 1"), "{m}");
    assert!(m.contains("router_config_accepted_total 1"), "{m}");
    assert!(m.contains("router_config_rejected_total{code=\"stale_version\"} 1"), "{m}");
    let resp = tokio::task::spawn_blocking({
        let listen = r.listen.clone();
        move || http(&listen, "GET", "/ok", &[("X-Routing-Key", "key-p")], None).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    drop(r);
}

/// Spec section 6, "Keepalive": a control plane that goes silent on an established
/// session (no Pong, no other frame, the connection left open: a black hole) is detected
/// by an unanswered ping; the router closes the session, counts it in
/// `router_control_plane_pong_timeouts_total` and reconnects with the backoff. Without
/// the keepalive the first session would stay "connected" for ever. A session that
/// answers keeps going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_control_plane_is_dropped_after_an_unanswered_ping() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", l.local_addr().unwrap());
    let r = tokio::task::spawn_blocking(move || {
        RouterProc::start(
            None,
            &[
                "--control-plane", &url, "--reconnect-initial-ms", "50", "--reconnect-max-ms", "200",
                "--cp-ping-ms", "50", "--cp-pong-timeout-ms", "100",
            ],
        )
    })
    .await
    .unwrap();

    let (s, _) = l.accept().await.unwrap();
    let mut silent = tokio_tungstenite::accept_async(s).await.unwrap();
    assert_eq!(next_json(&mut silent).await["type"], "hello");
    // from here `silent` is never read again: the router's pings get no Pong
    let went_silent = std::time::Instant::now();
    let (s, _) = tokio::time::timeout(Duration::from_secs(10), l.accept()).await.expect("a new session in time").unwrap();
    assert!(went_silent.elapsed() >= Duration::from_millis(100), "session given up before a ping could time out");
    // the old connection was closed by the router: reading it now ends
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = silent.next().await {}
    })
    .await;
    assert!(end.is_ok(), "the silent session's connection is still open");

    let mut answering = tokio_tungstenite::accept_async(s).await.unwrap();
    assert_eq!(next_json(&mut answering).await["type"], "hello");
    // reading answers the router's pings (tungstenite sends the Pong on the next read)
    let pings = Arc::new(AtomicUsize::new(0));
    let counter = pings.clone();
    tokio::spawn(async move {
        while let Some(Ok(m)) = answering.next().await {
            if matches!(m, Message::Ping(_)) {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pings.load(Ordering::SeqCst) < 5 {
        assert!(std::time::Instant::now() < deadline, "no pings on the answering session");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (st, m) = tokio::task::spawn_blocking(move || (r.state(), r.metrics())).await.unwrap();
    assert_eq!(st["control_plane"], json!({"connected": true, "reconnects": 1}));
    assert!(m.contains("router_control_plane_pong_timeouts_total 1\n"), "{m}");
}

/// The keepalive flags take a whole number of milliseconds >= 1 (spec section 1): 0 or
/// a non-number is a bad flag (exit 2, one `error:` line); `--help` lists both.
#[test]
fn keepalive_flags_must_be_at_least_one_ms() {
    for args in [["--cp-ping-ms", "0"], ["--cp-pong-timeout-ms", "0"], ["--cp-ping-ms", "x"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pingora-router")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error:") && err.trim_end().lines().count() == 1, "{err}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pingora-router")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--cp-ping-ms") && help.contains("--cp-pong-timeout-ms"), "{help}");
}
