//! End to end: the built `pingora-router` binary against local scripted upstreams.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn serves_lkg_and_reports_state() {
    let up = Upstream::start("us");
    let r = RouterProc::start(Some(&config(4, &[("us-1", &up.addr, None, 8, 1000)])), &[]);
    let resp = http(&r.listen, "GET", "/echo", &[("X-Routing-Key", "key-us-1"), ("X-Forwarded-For", "10.0.0.1")], None).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("X-Router-Placement"), Some("us-1"));
    assert_eq!(resp.header("X-Upstream-Name"), Some("us"));
    let seen = resp.text().to_ascii_lowercase();
    assert!(seen.contains(&format!("host: {}", up.addr)), "{seen}");
    assert!(seen.contains("x-forwarded-host: test.local"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: http"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 10.0.0.1, 127.0.0.1"), "{seen}");
    assert!(seen.contains("x-routing-key: key-us-1"), "{seen}");
    assert!(!seen.contains("connection: close"), "hop-by-hop forwarded: {seen}");
    let st = r.state();
    assert_eq!(st["impl"], "pingora");
    assert_eq!(st["config_version"], 4);
    assert_eq!(st["placements"]["us-1"]["breaker"], "closed");
    assert_eq!(st["placements"]["us-1"]["fallback"], serde_json::Value::Null);
    let m = r.metrics();
    assert!(m.contains("router_requests_total{placement=\"us-1\",status=\"200\"} 1"), "{m}");
    assert!(m.contains("router_config_version 4"), "{m}");
    // local rejections
    let resp = http(&r.listen, "GET", "/", &[], None).unwrap();
    assert_eq!((resp.status, resp.header("X-Router-Error")), (400, Some("missing_routing_key")));
    let resp = http(&r.listen, "GET", "/", &[("X-Routing-Key", "nope")], None).unwrap();
    assert_eq!((resp.status, resp.header("X-Router-Error")), (404, Some("unknown_routing_key")));
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["error"], "unknown_routing_key");
    assert_eq!(resp.header("Content-Type"), Some("application/json"));
}

#[test]
fn no_config_and_corrupt_lkg() {
    let r = RouterProc::start(Some("{not json"), &[]);
    let resp = http(&r.listen, "GET", "/", &[("X-Routing-Key", "a")], None).unwrap();
    assert_eq!((resp.status, resp.header("X-Router-Error")), (503, Some("no_config")));
    assert_eq!(http(&r.admin, "GET", "/readyz", &[], None).unwrap().status, 503);
    assert!(r.dir.join("last-known-good.json.corrupt").exists());
    assert!(!r.dir.join("last-known-good.json").exists());
    assert!(r.metrics().contains("router_config_version -1"));
}

#[test]
fn connect_failure_retries_down_the_chain_for_bodiless_requests() {
    let up = Upstream::start("us");
    let (_held, dead) = closed_port();
    let r = RouterProc::start(
        Some(&config(1, &[("eu-1", &dead, Some("us-1"), 8, 1000), ("us-1", &up.addr, None, 8, 1000)])),
        &[],
    );
    let resp = http(&r.listen, "GET", "/ok", &[("X-Routing-Key", "key-eu-1")], None).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("X-Router-Placement"), Some("us-1"));
    // with a body: no retry, 502 naming the placement tried
    let resp = http(&r.listen, "POST", "/ok", &[("X-Routing-Key", "key-eu-1")], Some(b"hello")).unwrap();
    assert_eq!(resp.status, 502);
    assert_eq!(resp.header("X-Router-Error"), Some("upstream_connect_failed"));
    assert_eq!(resp.header("X-Router-Placement"), Some("eu-1"));
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let m = r.metrics();
    assert!(m.contains("router_upstream_failures_total{kind=\"connect\",placement=\"eu-1\"} 2"), "{m}");
    assert!(m.contains("router_failovers_total{from=\"eu-1\",to=\"us-1\"} 1"), "{m}");
    assert_eq!(r.state()["placements"]["eu-1"]["inflight"], 0);
    // end of chain: 502 after the last placement
    let resp = http(&r.listen, "GET", "/ok", &[("X-Routing-Key", "key-eu-1")], None).unwrap();
    assert_eq!(resp.status, 200);
    let r2 = RouterProc::start(Some(&config(1, &[("eu-1", &dead, None, 8, 1000)])), &[]);
    let resp = http(&r2.listen, "GET", "/ok", &[("X-Routing-Key", "key-eu-1")], None).unwrap();
    assert_eq!((resp.status, resp.header("X-Router-Error")), (502, Some("upstream_connect_failed")));
}

#[test]
fn header_deadline_is_504_but_does_not_limit_the_body() {
    let up = Upstream::start("slow");
    let r = RouterProc::start(Some(&config(1, &[("p", &up.addr, None, 8, 300)])), &[]);
    let t = Instant::now();
    let resp = http(&r.listen, "GET", "/slowhdr/2000", &[("X-Routing-Key", "key-p")], None).unwrap();
    let took = t.elapsed();
    assert_eq!(resp.status, 504);
    assert_eq!(resp.header("X-Router-Error"), Some("upstream_timeout"));
    assert_eq!(resp.header("X-Router-Placement"), Some("p"));
    assert!(took >= Duration::from_millis(290) && took < Duration::from_millis(1500), "{took:?}");
    // a body streaming slower than request_ms between chunks passes whole
    let resp = http(&r.listen, "GET", "/stream/4/250", &[("X-Routing-Key", "key-p")], None).unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.complete, "stream was cut: {:?}", resp.text());
    assert_eq!(resp.text(), "chunk0;chunk1;chunk2;chunk3;");
    let m = r.metrics();
    assert!(m.contains("router_upstream_failures_total{kind=\"timeout\",placement=\"p\"} 1"), "{m}");
    assert!(m.contains("router_errors_total{code=\"upstream_timeout\"} 1"), "{m}");
}

#[test]
fn streamed_chunks_arrive_before_the_response_ends() {
    let up = Upstream::start("s");
    let r = RouterProc::start(Some(&config(1, &[("p", &up.addr, None, 8, 1000)])), &[]);
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&r.listen).unwrap();
    s.write_all(b"GET /stream/2/700 HTTP/1.1\r\nHost: x\r\nX-Routing-Key: key-p\r\nConnection: close\r\n\r\n").unwrap();
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("chunk0;") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    // the first chunk comes ~700 ms in, the second ~1400 ms: it must not wait for the end
    assert!(t.elapsed() < Duration::from_millis(1300), "first chunk was buffered: {:?}", t.elapsed());
}

#[test]
fn protocol_error_and_5xx_and_committed_abort() {
    let up = Upstream::start("u");
    let r = RouterProc::start(Some(&config(1, &[("p", &up.addr, None, 8, 1000)])), &[]);
    let resp = http(&r.listen, "GET", "/garbage", &[("X-Routing-Key", "key-p")], None).unwrap();
    assert_eq!((resp.status, resp.header("X-Router-Error")), (502, Some("upstream_protocol_error")));
    let resp = http(&r.listen, "GET", "/status/503", &[("X-Routing-Key", "key-p")], None).unwrap();
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("X-Router-Error"), None, "upstream status passes through");
    let resp = http(&r.listen, "GET", "/abort", &[("X-Routing-Key", "key-p")], None).unwrap();
    assert_eq!(resp.status, 200);
    assert!(!resp.complete, "aborted body must be short");
    assert!(resp.body.len() < 100);
    assert!(!resp.text().contains("error"), "no error body after commit");
    let resp = http(&r.listen, "GET", "/abortchunked", &[("X-Routing-Key", "key-p")], None).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Transfer-Encoding"), Some("chunked"));
    assert!(!resp.complete, "no final chunk after an upstream abort");
    assert_eq!(resp.text(), "hello");
    let m = r.metrics();
    for (kind, n) in [("protocol", 1), ("status_5xx", 1), ("aborted", 2)] {
        assert!(m.contains(&format!("router_upstream_failures_total{{kind=\"{kind}\",placement=\"p\"}} {n}")), "{kind}: {m}");
    }
}

#[test]
fn concurrency_limit_is_exact_and_local() {
    let up = Upstream::start("u");
    let r = RouterProc::start(Some(&config(1, &[("p", &up.addr, None, 1, 5000)])), &[]);
    let listen = r.listen.clone();
    let h = std::thread::spawn(move || http(&listen, "GET", "/hold/800", &[("X-Routing-Key", "key-p")], None).unwrap());
    r.wait_state(5, "inflight 1", |s| s["placements"]["p"]["inflight"] == 1);
    let resp = http(&r.listen, "GET", "/ok", &[("X-Routing-Key", "key-p")], None).unwrap();
    assert_eq!((resp.status, resp.header("X-Router-Error")), (503, Some("concurrency_limit")));
    assert_eq!(resp.header("X-Router-Placement"), Some("p"));
    assert_eq!(h.join().unwrap().status, 200);
    r.wait_state(5, "inflight 0", |s| s["placements"]["p"]["inflight"] == 0);
    assert_eq!(http(&r.listen, "GET", "/ok", &[("X-Routing-Key", "key-p")], None).unwrap().status, 200);
}

#[test]
fn content_length_with_transfer_encoding_is_400_and_not_forwarded() {
    let up = Upstream::start("u");
    let r = RouterProc::start(Some(&config(1, &[("p", &up.addr, None, 8, 1000)])), &[]);
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&r.listen).unwrap();
    s.write_all(
        b"POST /ok HTTP/1.1\r\nHost: x\r\nX-Routing-Key: key-p\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .unwrap();
    let mut raw = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_end(&mut raw);
    let resp = parse_response(&raw).unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(up.hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn sigterm_drains_in_flight_then_exits_zero() {
    let up = Upstream::start("u");
    let mut r = RouterProc::start(Some(&config(1, &[("p", &up.addr, None, 8, 5000)])), &["--shutdown-grace-ms", "5000"]);
    let listen = r.listen.clone();
    let h = std::thread::spawn(move || http(&listen, "GET", "/hold/700", &[("X-Routing-Key", "key-p")], None).unwrap());
    r.wait_state(5, "inflight 1", |s| s["placements"]["p"]["inflight"] == 1);
    let t = Instant::now();
    r.signal("TERM");
    let resp = h.join().unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.complete);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = r.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "router did not exit after drain");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(3), "exit waited too long: {:?}", t.elapsed());
}

#[test]
fn sigterm_cuts_requests_at_the_grace_deadline() {
    let up = Upstream::start("u");
    let mut r = RouterProc::start(Some(&config(1, &[("p", &up.addr, None, 8, 10000)])), &["--shutdown-grace-ms", "300"]);
    let listen = r.listen.clone();
    let h = std::thread::spawn(move || http(&listen, "GET", "/hold/5000", &[("X-Routing-Key", "key-p")], None));
    r.wait_state(5, "inflight 1", |s| s["placements"]["p"]["inflight"] == 1);
    let t = Instant::now();
    r.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(4);
    let status = loop {
        if let Some(st) = r.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "router did not exit at the grace deadline");
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = t.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(took >= Duration::from_millis(250) && took < Duration::from_millis(2000), "{took:?}");
    assert!(h.join().unwrap().is_err(), "the running request must be cut");
}

#[test]
fn bad_flags_exit_2_with_one_error_line() {
    for args in [vec!["--threads", "0"], vec!["--nope"], vec!["--control-plane", "http://x"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pingora-router")).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error:"), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pingora-router")).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn active_health_marks_unhealthy_and_fails_over_without_trying() {
    let up = Upstream::start("us");
    let (_held, dead) = closed_port();
    let doc = serde_json::json!({
        "version": 2,
        "routes": {"k": "eu-1"},
        "placements": {
            "eu-1": {"endpoint": format!("http://{dead}"), "fallback": "us-1", "max_concurrency": 4,
                     "timeouts": {"connect_ms": 200, "request_ms": 1000},
                     "health_check": {"path": "/healthz", "interval_ms": 20, "timeout_ms": 100,
                                      "unhealthy_threshold": 2, "healthy_threshold": 1}},
            "us-1": {"endpoint": format!("http://{}", up.addr), "max_concurrency": 4,
                     "timeouts": {"connect_ms": 200, "request_ms": 1000},
                     "health_check": {"path": "/healthz", "interval_ms": 20, "timeout_ms": 100,
                                      "unhealthy_threshold": 2, "healthy_threshold": 1}}
        }
    })
    .to_string();
    let r = RouterProc::start(Some(&doc), &[]);
    r.wait_state(5, "eu-1 unhealthy", |s| s["placements"]["eu-1"]["healthy"] == false);
    assert_eq!(r.state()["placements"]["us-1"]["healthy"], true);
    let resp = http(&r.listen, "GET", "/ok", &[("X-Routing-Key", "k")], None).unwrap();
    assert_eq!(resp.header("X-Router-Placement"), Some("us-1"));
    let m = r.metrics();
    assert!(!m.contains("kind=\"connect\""), "an unhealthy placement is not tried: {m}");
    assert!(m.contains("router_endpoint_healthy{placement=\"eu-1\"} 0"), "{m}");
    assert!(m.contains("router_failovers_total{from=\"eu-1\",to=\"us-1\"} 1"), "{m}");
}

#[test]
fn upgrade_becomes_a_tunnel_after_101() {
    let up = Upstream::start("ws");
    let r = RouterProc::start(Some(&config(1, &[("p", &up.addr, None, 8, 1000)])), &[]);
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&r.listen).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"GET /upgrade HTTP/1.1\r\nHost: x\r\nX-Routing-Key: key-p\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n",
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("X-Router-Placement: p"), "{head}");
    s.write_all(b"ping-through-tunnel").unwrap();
    let mut echoed = Vec::new();
    while echoed.len() < 19 {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "tunnel closed");
        echoed.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&echoed, b"ping-through-tunnel");
}

/// The stub upstream answers every `/upgrade` with `101` to `websocket`: a request that
/// offered another protocol, or asked for no upgrade (`Upgrade` without the `upgrade`
/// connection option), gets 502 `upstream_protocol_error` instead of a tunnel (RFC 9110
/// sections 7.8 and 15.2.2), counted as a protocol failure.
#[test]
fn a_101_to_no_upgrade_or_another_protocol_is_502() {
    let up = Upstream::start("ws");
    let r = RouterProc::start(Some(&config(1, &[("p", &up.addr, None, 8, 1000)])), &[]);
    let offers: [&[(&str, &str)]; 2] = [
        &[("X-Routing-Key", "key-p"), ("Upgrade", "websocket")],
        &[("X-Routing-Key", "key-p"), ("Connection", "Upgrade"), ("Upgrade", "custom-proto/1")],
    ];
    for headers in offers {
        let resp = http(&r.listen, "GET", "/upgrade", headers, None).unwrap();
        assert_eq!(resp.status, 502, "{headers:?}");
        assert_eq!(resp.header("X-Router-Error"), Some("upstream_protocol_error"), "{headers:?}");
    }
    let m = r.metrics();
    assert!(m.contains("router_upstream_failures_total{kind=\"protocol\",placement=\"p\"} 2"), "{m}");
}

#[test]
fn client_going_away_frees_the_slot_without_an_outcome() {
    let up = Upstream::start("u");
    let doc = serde_json::json!({
        "version": 1, "routes": {"k": "p"},
        "placements": {"p": {"endpoint": format!("http://{}", up.addr), "max_concurrency": 1,
            "timeouts": {"connect_ms": 200, "request_ms": 5000},
            "circuit_breaker": {"failure_threshold": 1, "open_ms": 60000, "half_open_max_requests": 1, "success_threshold": 1}}}
    })
    .to_string();
    let r = RouterProc::start(Some(&doc), &[]);
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(&r.listen).unwrap();
    s.write_all(b"GET /hold/4000 HTTP/1.1\r\nHost: x\r\nX-Routing-Key: k\r\n\r\n").unwrap();
    r.wait_state(5, "inflight 1", |s| s["placements"]["p"]["inflight"] == 1);
    drop(s);
    r.wait_state(2, "slot freed before the upstream answers", |s| s["placements"]["p"]["inflight"] == 0);
    assert_eq!(r.state()["placements"]["p"]["breaker"], "closed");
    assert!(!r.metrics().contains("router_upstream_failures_total"), "no failure recorded");
    assert_eq!(http(&r.listen, "GET", "/ok", &[("X-Routing-Key", "k")], None).unwrap().status, 200);
}

#[test]
fn listener_that_cannot_bind_exits_1() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = std::env::temp_dir().join(format!("pingora-bind-{}", std::process::id()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pingora-router"))
        .args(["--listen", &addr, "--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--state-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_right_after_healthz_still_exits_zero() {
    for _ in 0..3 {
        let mut r = RouterProc::start(None, &[]);
        r.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(st) = r.child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "no exit");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(status.code(), Some(0));
    }
}

/// A config with placement `p` over `endpoints` (host:port, weight), fallback `fb` (a
/// single-endpoint placement `q` on `fb_addr`), a breaker opening at the first failure.
fn pool_config(endpoints: &[(&str, u32)], fb_addr: Option<&str>) -> String {
    let eps: Vec<_> = endpoints.iter().map(|(a, w)| serde_json::json!({"url": format!("http://{a}"), "weight": w})).collect();
    let mut p = serde_json::json!({"endpoints": eps, "max_concurrency": 8,
        "timeouts": {"connect_ms": 300, "request_ms": 1000},
        "circuit_breaker": {"failure_threshold": 1, "open_ms": 60000, "half_open_max_requests": 1, "success_threshold": 1}});
    let mut pl = serde_json::Map::new();
    if let Some(fb) = fb_addr {
        p["fallback"] = serde_json::json!("q");
        pl.insert("q".into(), serde_json::json!({"endpoint": format!("http://{fb}"), "max_concurrency": 8,
            "timeouts": {"connect_ms": 300, "request_ms": 1000}}));
    }
    pl.insert("p".into(), p);
    serde_json::json!({"version": 1, "routes": {"key-p": "p"}, "placements": pl}).to_string()
}

/// Spec §3 step 6 and §5 per endpoint: a connect failure on one endpoint of a bodiless
/// request retries the placement's next endpoint (no failover, no client error); the failed
/// endpoint's own breaker opens while its sibling keeps serving and the placement's
/// aggregate stays closed.
#[test]
fn connect_failure_retries_within_the_placement_and_opens_only_that_endpoints_breaker() {
    let up = Upstream::start("live");
    let (_held, dead) = closed_port();
    let r = RouterProc::start(Some(&pool_config(&[(&dead, 1), (&up.addr, 1)], None)), &[]);
    for _ in 0..4 {
        let resp = http(&r.listen, "GET", "/ok", &[("X-Routing-Key", "key-p")], None).unwrap();
        assert_eq!((resp.status, resp.header("X-Upstream-Name")), (200, Some("live")));
        assert_eq!(resp.header("X-Router-Placement"), Some("p"));
    }
    let st = r.state();
    let p = &st["placements"]["p"];
    assert_eq!((p["healthy"].as_bool(), p["breaker"].as_str(), p["selection"].as_str()), (Some(true), Some("closed"), Some("round_robin")));
    assert_eq!(p["endpoint"], format!("http://{dead}"), "first endpoint in config order");
    assert_eq!(p["endpoints"][0]["breaker"], "open");
    assert_eq!(p["endpoints"][1]["breaker"], "closed");
    assert_eq!(p["endpoints"][1]["weight"], 1);
    assert_eq!(p["inflight"], 0);
    let m = r.metrics();
    let (d, u) = (format!("http://{dead}"), format!("http://{}", up.addr));
    assert!(m.contains(&format!("router_peer_failures_total{{endpoint=\"{d}\",kind=\"connect\",placement=\"p\"}} 1")), "{m}");
    assert!(m.contains(&format!("router_peer_requests_total{{endpoint=\"{u}\",placement=\"p\"}} 4")), "{m}");
    assert!(m.contains(&format!("router_peer_breaker_state{{endpoint=\"{d}\",placement=\"p\"}} 1")), "{m}");
    assert!(m.contains(&format!("router_peer_breaker_state{{endpoint=\"{u}\",placement=\"p\"}} 0")), "{m}");
    assert!(m.contains("router_upstream_failures_total{kind=\"connect\",placement=\"p\"} 1"), "{m}");
    assert!(m.contains("router_breaker_state{placement=\"p\"} 0"), "{m}");
    assert!(!m.contains("router_failovers_total{"), "{m}");
    assert!(!m.contains(&format!("router_peer_requests_total{{endpoint=\"{d}\"")), "a refused endpoint got no request: {m}");
}

/// All endpoints of a placement refuse: each is tried once, then the fallback serves; a
/// request with a body is not retried (502 naming the placement).
#[test]
fn every_endpoint_refusing_moves_down_the_chain_and_bodies_are_not_retried() {
    let up = Upstream::start("fallback");
    let (_held, dead) = closed_ports(2);
    let [d1, d2]: [String; 2] = dead.try_into().unwrap();
    let cfg = pool_config(&[(&d1, 1), (&d2, 1)], Some(&up.addr));
    // breakers open after one failure each: use a fresh router per request kind
    let r = RouterProc::start(Some(&cfg), &[]);
    let resp = http(&r.listen, "GET", "/ok", &[("X-Routing-Key", "key-p")], None).unwrap();
    assert_eq!((resp.status, resp.header("X-Router-Placement")), (200, Some("q")));
    let m = r.metrics();
    for d in [&d1, &d2] {
        assert!(m.contains(&format!("router_peer_failures_total{{endpoint=\"http://{d}\",kind=\"connect\",placement=\"p\"}} 1")), "{m}");
    }
    assert!(m.contains("router_failovers_total{from=\"p\",to=\"q\"} 1"), "{m}");
    // now both breakers are open: the placement is unavailable, the walk skips it
    let st = r.state();
    assert_eq!(st["placements"]["p"]["breaker"], "open");
    let resp = http(&r.listen, "GET", "/ok", &[("X-Routing-Key", "key-p")], None).unwrap();
    assert_eq!((resp.status, resp.header("X-Router-Placement")), (200, Some("q")));
    let r2 = RouterProc::start(Some(&cfg), &[]);
    let resp = http(&r2.listen, "POST", "/ok", &[("X-Routing-Key", "key-p")], Some(b"body")).unwrap();
    assert_eq!((resp.status, resp.header("X-Router-Error")), (502, Some("upstream_connect_failed")));
    assert_eq!(resp.header("X-Router-Placement"), Some("p"));
    assert!(r2.metrics().contains("router_upstream_failures_total{kind=\"connect\",placement=\"p\"} 1"));
}

/// More refusing endpoints than Pingora's default `max_retries` (16): each is still tried
/// once before the fallback serves (spec §3 step 6).
#[test]
fn twenty_refusing_endpoints_are_each_tried_before_the_fallback() {
    let up = Upstream::start("fallback");
    let (_held, dead) = closed_ports(20);
    let eps: Vec<(&str, u32)> = dead.iter().map(|d| (d.as_str(), 1)).collect();
    let r = RouterProc::start(Some(&pool_config(&eps, Some(&up.addr))), &[]);
    let resp = http(&r.listen, "GET", "/ok", &[("X-Routing-Key", "key-p")], None).unwrap();
    assert_eq!((resp.status, resp.header("X-Router-Placement")), (200, Some("q")));
    let m = r.metrics();
    assert!(m.contains("router_upstream_failures_total{kind=\"connect\",placement=\"p\"} 20"), "{m}");
    assert!(m.contains("router_failovers_total{from=\"p\",to=\"q\"} 1"), "{m}");
}
