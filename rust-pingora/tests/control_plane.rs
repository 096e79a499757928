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
