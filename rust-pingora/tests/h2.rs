//! HTTP/2 semantics of the Pingora router (docs/spec.md section 3, *TLS and HTTP/2 on the
//! listener*, *Upstream HTTP/2*; issue 15):
//! - a committed response whose upstream dies mid-body keeps its head and the bytes sent,
//!   then its stream ends with `RST_STREAM` `INTERNAL_ERROR` (0x2), the connection going on;
//! - an h2 request whose HEADERS do not end the stream has a body even without
//!   `content-length` (RFC 9113 section 8.1): after a connect failure it is not retried or
//!   failed over (502 `upstream_connect_failed` naming the failed placement), while a
//!   bodiless one is;
//! - a `protocol: h2` placement whose https upstream selects no ALPN protocol fails to
//!   connect (502 `upstream_connect_failed`, kind `connect`) and its health checks fail
//!   too; the same upstream over `http/1.1` answers.
//!
//! Certificates are made here with rcgen in a temporary directory (nothing committed).

mod common;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A temporary directory with `ca.pem` and, signed by that CA for `localhost` and
/// `127.0.0.1`, `server.pem`/`server.key`; the CA's DER and the server's key pair.
struct Pki {
    dir: PathBuf,
    ca: CertificateDer<'static>,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("pingora-h2-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "h2-test-ca");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "server");
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        let server = (cert.der().clone(), PrivateKeyDer::try_from(key.serialize_der()).unwrap());
        Pki { dir, ca: ca.der().clone(), server }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    /// The router flags of a TLS listener with this PKI's server certificate.
    fn tls_flags(&self) -> [String; 4] {
        ["--tls-cert".into(), self.path("server.pem"), "--tls-key".into(), self.path("server.key")]
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn router(doc: &str, pki: &Pki) -> RouterProc {
    let flags = pki.tls_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    RouterProc::start(Some(doc), &flags)
}

/// An h2 connection to the router's TLS listener (ALPN `h2` only).
async fn h2_connect(addr: &str, ca: &CertificateDer<'static>) -> h2::client::SendRequest<bytes::Bytes> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// One h2 request (`key` as X-Routing-Key); `body` is sent in a DATA frame after HEADERS
/// without `content-length`. Returns the status, the response fields and the body read
/// until its end or the stream's error.
async fn h2_send(
    send: &h2::client::SendRequest<bytes::Bytes>,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&'static [u8]>,
) -> (u16, http::HeaderMap, Vec<u8>, Option<h2::Error>) {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .header("x-routing-key", key)
        .body(())
        .unwrap();
    let (resp, mut tx) = send.clone().ready().await.unwrap().send_request(req, body.is_none()).unwrap();
    if let Some(b) = body {
        tx.send_data(bytes::Bytes::from_static(b), true).unwrap();
    }
    let resp = resp.await.unwrap();
    let (parts, mut rx) = resp.into_parts();
    let mut data = Vec::new();
    let mut err = None;
    while let Some(chunk) = rx.data().await {
        match chunk {
            Ok(c) => {
                let _ = rx.flow_control().release_capacity(c.len());
                data.extend_from_slice(&c);
            }
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    (parts.status.as_u16(), parts.headers, data, err)
}

/// A loopback address whose connections are refused for as long as the socket lives
/// (bound, never listening, so no other test's listener can take the port meanwhile).
fn dead_port() -> (tokio::net::TcpSocket, String) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    (sock, addr)
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

/// Wait until `series` equals `want` on the router's /metrics (10 s deadline).
fn wait_metric(r: &RouterProc, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = metric(&r.metrics(), series);
        if v == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{series} is {v:?}, want {want}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn h2_mid_body_abort_sends_the_head_then_resets_the_stream() {
    let pki = Pki::new("abort");
    let up = Upstream::start("u1");
    let doc = serde_json::json!({
        "version": 1,
        "routes": {"k": "p"},
        "placements": {"p": {"endpoint": format!("http://{}", up.addr), "max_concurrency": 8,
                             "timeouts": {"connect_ms": 1000, "request_ms": 3000}}}
    })
    .to_string();
    let r = router(&doc, &pki);
    rt().block_on(async {
        let send = h2_connect(&r.listen, &pki.ca).await;
        for _ in 0..2 {
            // `/abort`: Content-Length 100, 10 bytes, then the upstream closes
            let (status, _, body, err) = h2_send(&send, "GET", "/abort", "k", None).await;
            assert_eq!(status, 200);
            // the 10 bytes forwarded before the upstream closed arrive before the reset
            assert_eq!(body.as_slice(), &b"0123456789"[..]);
            let err = err.expect("the aborted body ended cleanly");
            assert!(err.is_reset(), "not a RST_STREAM: {err:?}");
            // INTERNAL_ERROR, after the HEADERS and DATA queued before it (the status and
            // bytes above arrived): the h2 crate's reset on drop with the reason the router
            // set (vendor/h2.patch); unpatched it is CANCEL and the queued DATA is dropped.
            assert_eq!(err.reason(), Some(h2::Reason::INTERNAL_ERROR), "{err:?}");
        }
        // the connection and its other streams go on
        let (status, _, body, err) = h2_send(&send, "GET", "/ok", "k", None).await;
        assert_eq!((status, body.as_slice(), err.is_none()), (200, &b"ok"[..], true));
    });
    wait_metric(&r, "router_upstream_failures_total{kind=\"aborted\",placement=\"p\"}", 2.0);
}

#[test]
fn h2_request_body_without_content_length_is_not_failed_over() {
    let pki = Pki::new("body");
    let up = Upstream::start("u2");
    let (_dead, dead) = dead_port();
    let doc = serde_json::json!({
        "version": 1,
        "routes": {"k": "p1"},
        "placements": {
            "p1": {"endpoint": format!("http://{dead}"), "fallback": "p2", "max_concurrency": 8,
                   "timeouts": {"connect_ms": 300, "request_ms": 3000}},
            "p2": {"endpoint": format!("http://{}", up.addr), "max_concurrency": 8,
                   "timeouts": {"connect_ms": 300, "request_ms": 3000}}
        }
    })
    .to_string();
    let r = router(&doc, &pki);
    rt().block_on(async {
        let send = h2_connect(&r.listen, &pki.ca).await;
        // bodiless (HEADERS with END_STREAM): fails over to p2
        let (status, h, body, _) = h2_send(&send, "GET", "/ok", "k", None).await;
        assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
        assert_eq!(h.get("x-router-placement").unwrap(), "p2");
        // a body in DATA frames, no content-length: never retried
        let (status, h, body, _) = h2_send(&send, "POST", "/echo", "k", Some(b"data")).await;
        assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
        assert_eq!(h.get("x-router-error").unwrap(), "upstream_connect_failed");
        assert_eq!(h.get("x-router-placement").unwrap(), "p1");
        assert!(String::from_utf8_lossy(&body).contains("upstream_connect_failed"));
    });
    let m = r.metrics();
    assert_eq!(metric(&m, "router_failovers_total{from=\"p1\",to=\"p2\"}"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "router_upstream_failures_total{kind=\"connect\",placement=\"p1\"}"), Some(2.0), "{m}");
    assert_eq!(up.hits.load(Ordering::SeqCst), 1, "the POST reached the fallback");
}

/// An https upstream speaking HTTP/1.1 whose TLS server offers no ALPN protocol: each
/// request read is answered `200 ok` and counted.
fn tls_h1_upstream(pki: &Pki) -> (String, Arc<AtomicUsize>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        rt().block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            loop {
                let Ok((tcp, _)) = l.accept().await else { continue };
                let (acceptor, h) = (acceptor.clone(), h.clone());
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else { return };
                    let mut buf = Vec::new();
                    let mut b = [0u8; 4096];
                    loop {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&b[..n]),
                        }
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            h.fetch_add(1, Ordering::SeqCst);
                            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        })
    });
    (addr, hits)
}

#[test]
fn h2_placement_fails_to_connect_when_the_upstream_selects_no_h2() {
    let pki = Pki::new("alpn");
    let (addr, hits) = tls_h1_upstream(&pki);
    let fallback = Upstream::start("fb");
    let tls = serde_json::json!({"ca_file": pki.path("ca.pem"), "server_name": "localhost"});
    let timeouts = serde_json::json!({"connect_ms": 1000, "request_ms": 3000});
    let doc = serde_json::json!({
        "version": 1,
        "routes": {"h1": "ph1", "h2": "ph2", "fb": "pfb", "hc": "phc"},
        "placements": {
            "ph1": {"endpoint": format!("https://{addr}"), "max_concurrency": 8, "timeouts": timeouts, "tls": tls},
            "ph2": {"endpoint": format!("https://{addr}"), "protocol": "h2", "max_concurrency": 8, "timeouts": timeouts, "tls": tls},
            "pfb": {"endpoint": format!("https://{addr}"), "protocol": "h2", "fallback": "pb", "max_concurrency": 8,
                    "timeouts": timeouts, "tls": tls},
            "pb": {"endpoint": format!("http://{}", fallback.addr), "max_concurrency": 8, "timeouts": timeouts},
            "phc": {"endpoint": format!("https://{addr}"), "protocol": "h2", "max_concurrency": 8, "timeouts": timeouts, "tls": tls,
                    "health_check": {"path": "/healthz", "interval_ms": 50, "timeout_ms": 500,
                                     "unhealthy_threshold": 2, "healthy_threshold": 1}}
        }
    })
    .to_string();
    let r = RouterProc::start(Some(&doc), &[]);
    // the upstream answers HTTP/1.1
    let resp = http(&r.listen, "GET", "/ok", &[("X-Routing-Key", "h1")], None).unwrap();
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"ok"[..]));
    // ALPN offered h2 alone, nothing selected: a connect failure, never HTTP/1.1
    let resp = http(&r.listen, "GET", "/ok", &[("X-Routing-Key", "h2")], None).unwrap();
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(resp.header("x-router-error"), Some("upstream_connect_failed"));
    assert_eq!(resp.header("x-router-placement"), Some("ph2"));
    // as a connect failure, a bodiless request fails over
    let resp = http(&r.listen, "GET", "/ok", &[("X-Routing-Key", "fb")], None).unwrap();
    assert_eq!((resp.status, resp.header("x-router-placement")), (200, Some("pb")), "{}", resp.text());
    // the h2 health probe fails the same way: the endpoint becomes unhealthy
    wait_metric(&r, "router_endpoint_healthy{placement=\"phc\"}", 0.0);
    let m = r.metrics();
    assert_eq!(metric(&m, "router_upstream_failures_total{kind=\"connect\",placement=\"ph2\"}"), Some(1.0), "{m}");
    assert_eq!(metric(&m, "router_upstream_failures_total{kind=\"connect\",placement=\"pfb\"}"), Some(1.0), "{m}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "only the http/1.1 placement's request was read");
}
