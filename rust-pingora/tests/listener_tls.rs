//! The TLS data listener (docs/spec.md section 1 flags, section 3 "TLS and HTTP/2 on the
//! listener", section 7 `router_tls_*`): flag errors, ALPN, X-Forwarded-Proto, HTTP/2
//! routing, session resumption counted, client certificates (none, good, another CA),
//! SIGHUP reload (good and bad files), RST_STREAM on a mid-body upstream abort.
//! Certificates are made here with rcgen in a temporary directory (nothing committed).

mod common;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// A CA and the PEM files of certificates it signs.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), ca.pem()).unwrap();
        Pki { ca, dir: dir.to_path_buf() }
    }

    /// Write `<file>.pem` and `<file>.key`; returns (cert DER, key DER).
    fn issue(&self, file: &str, names: &[&str], client: bool) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, file);
        p.extended_key_usages =
            vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca).unwrap();
        std::fs::write(self.dir.join(format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(self.dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
        (cert.der().clone(), PrivateKeyDer::try_from(key.serialize_der()).unwrap())
    }

    fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pingora-listener-tls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn client_config(ca: &CertificateDer<'static>, alpn: &[&[u8]], cert: Option<&(CertificateDer<'static>, PrivateKeyDer<'static>)>) -> Arc<rustls::ClientConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let b = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut c = match cert {
        Some((c, k)) => b.with_client_auth_cert(vec![c.clone()], k.clone_key()).unwrap(),
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(c)
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(addr: &str, cfg: &Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    TlsConnector::from(cfg.clone()).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

/// One HTTP/1.1 request over TLS (`Connection: close`); the whole answer as text.
async fn h1(addr: &str, cfg: &Arc<rustls::ClientConfig>, path: &str) -> std::io::Result<(Option<Vec<u8>>, String)> {
    let mut t = connect(addr, cfg).await?;
    let alpn = t.get_ref().1.alpn_protocol().map(|a| a.to_vec());
    t.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nX-Routing-Key: k\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    t.read_to_end(&mut out).await?;
    Ok((alpn, String::from_utf8_lossy(&out).into_owned()))
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

fn wait_metric(r: &RouterProc, series: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = metric(&r.metrics(), series).unwrap_or(-1.0);
        if v >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "{series} stayed at {v}, want >= {at_least}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn doc(up: &str) -> String {
    serde_json::json!({
        "version": 1,
        "routes": {"k": "p"},
        "placements": {"p": {"endpoint": format!("http://{up}"), "max_concurrency": 8,
                             "timeouts": {"connect_ms": 1000, "request_ms": 3000}}}
    })
    .to_string()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn tls_flag_errors() {
    let bin = env!("CARGO_BIN_EXE_pingora-router");
    let dir = tmpdir("flags");
    for (args, code, line) in [
        (vec!["--tls-cert", "x.pem"], 2, "error: --tls-cert requires --tls-key"),
        (vec!["--tls-key", "x.key"], 2, "error: --tls-key requires --tls-cert"),
        (vec!["--client-ca", "ca.pem"], 2, "error: --client-ca requires --tls-cert"),
        (vec!["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"], 1, "error: tls: cannot read /nonexistent/c.pem"),
    ] {
        let out = Command::new(bin)
            .args(["--listen", &format!("127.0.0.1:{}", free_port()), "--admin-listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--state-dir")
            .arg(&dir)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.lines().any(|l| l.starts_with(line)), "{args:?}: {err}");
    }
    // a key that does not belong to the certificate
    let pki = Pki::new(&dir, "ca");
    pki.issue("a", &["localhost"], false);
    pki.issue("b", &["localhost"], false);
    let out = Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{}", free_port()), "--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--state-dir")
        .arg(&dir)
        .args(["--tls-cert", &s(&dir.join("a.pem")), "--tls-key", &s(&dir.join("b.key"))])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: tls: "));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_listener_alpn_h2_xfp_resumption_and_metrics() {
    let dir = tmpdir("main");
    let pki = Pki::new(&dir, "ca");
    pki.issue("server", &["localhost", "127.0.0.1"], false);
    let up = Upstream::start("u1");
    let plain = RouterProc::start(Some(&doc(&up.addr)), &[]);
    assert!(!plain.metrics().contains("router_tls_"), "TLS series on a plain listener");
    // plain listener: X-Forwarded-Proto stays http
    let resp = http(&plain.listen, "GET", "/echo", &[("X-Routing-Key", "k")], None).unwrap();
    assert!(resp.text().to_ascii_lowercase().contains("x-forwarded-proto: http\r\n"), "{}", resp.text());
    // without TLS, SIGHUP is ignored (not the default action, which ends the process)
    let mut plain = plain;
    plain.signal("HUP");
    assert_eq!(http(&plain.listen, "GET", "/ok", &[("X-Routing-Key", "k")], None).unwrap().status, 200);
    assert!(plain.child.try_wait().unwrap().is_none(), "SIGHUP ended the plain router");
    drop(plain);

    let r = RouterProc::start(
        Some(&doc(&up.addr)),
        &["--tls-cert", &s(&dir.join("server.pem")), "--tls-key", &s(&dir.join("server.key"))],
    );
    let m = r.metrics();
    for series in [
        "router_tls_handshakes_total{resumed=\"false\"}",
        "router_tls_handshakes_total{resumed=\"true\"}",
        "router_tls_reloads_total{result=\"ok\"}",
        "router_tls_reloads_total{result=\"error\"}",
    ] {
        assert_eq!(metric(&m, series), Some(0.0), "{series} in {m}");
    }
    assert!(metric(&m, "router_tls_handshake_errors_total").is_some());
    let ca = pki.ca_der();
    rt().block_on(async {
        // ALPN: h2 preferred, http/1.1 when asked, none -> HTTP/1.1
        for (offer, want) in [
            (vec![&b"h2"[..], b"http/1.1"], Some(b"h2".to_vec())),
            (vec![&b"http/1.1"[..]], Some(b"http/1.1".to_vec())),
            (vec![], None),
        ] {
            let t = connect(&r.listen, &client_config(&ca, &offer, None)).await.unwrap();
            assert_eq!(t.get_ref().1.alpn_protocol().map(|a| a.to_vec()), want, "offer {offer:?}");
        }
        // HTTP/1.1 over TLS: X-Forwarded-Proto https
        let cfg = client_config(&ca, &[b"http/1.1"], None);
        let (_, text) = h1(&r.listen, &cfg, "/echo").await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.to_ascii_lowercase().contains("x-forwarded-proto: https\r\n"), "{text}");
        // the same config resumes on a second connection (its ticket came with the first)
        let (_, text) = h1(&r.listen, &cfg, "/ok").await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");

        // HTTP/2: routed, X-Forwarded-Proto https, :authority as X-Forwarded-Host, no
        // connection-specific fields in the response
        let t = connect(&r.listen, &client_config(&ca, &[b"h2"], None)).await.unwrap();
        let (mut send, conn) = h2::client::handshake(t).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::builder()
            .uri("https://localhost/echo")
            .header("x-routing-key", "k")
            .body(())
            .unwrap();
        let (resp, _) = send.send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        for f in ["connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"] {
            assert!(resp.headers().get(f).is_none(), "{f} in an h2 response");
        }
        let mut body = resp.into_body();
        let mut text = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            text.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&text).to_ascii_lowercase();
        assert!(text.contains("x-forwarded-proto: https\r\n"), "{text}");
        assert!(text.contains("x-forwarded-host: localhost\r\n"), "{text}");

        // mid-body upstream abort: RST_STREAM on that stream, the connection lives on
        let req = http::Request::builder().uri("https://localhost/abort").header("x-routing-key", "k").body(()).unwrap();
        let (resp, _) = send.clone().ready().await.unwrap().send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut err = None;
        while let Some(chunk) = body.data().await {
            match chunk {
                Ok(c) => {
                    let _ = body.flow_control().release_capacity(c.len());
                }
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let err = err.expect("the aborted body ended cleanly");
        assert!(err.is_reset(), "not a RST_STREAM: {err:?}");
        let req = http::Request::builder().uri("https://localhost/ok").header("x-routing-key", "k").body(()).unwrap();
        let (resp, _) = send.clone().ready().await.unwrap().send_request(req, true).unwrap();
        assert_eq!(resp.await.unwrap().status(), 200, "the connection did not survive the reset");

        // the 64 KiB head limit on the header list size (RFC 9113 section 6.5.2): fixed
        // fields 260 bytes (:method GET, :scheme https, :authority localhost, :path /ok,
        // x-routing-key k, the name x-pad, 32 each) plus the x-pad value
        for (pad, want) in [(65276usize, 200u16), (65277, 431)] {
            let req = http::Request::builder()
                .uri("https://localhost/ok")
                .header("x-routing-key", "k")
                .header("x-pad", "a".repeat(pad))
                .body(())
                .unwrap();
            let (resp, _) = send.clone().ready().await.unwrap().send_request(req, true).unwrap();
            let resp = resp.await.unwrap();
            assert_eq!(resp.status(), want, "header list of {} bytes", 260 + pad);
            if want == 431 {
                assert_eq!(resp.headers().get("x-router-error").unwrap(), "request_headers_too_large");
            }
        }
    });
    wait_metric(&r, "router_tls_handshakes_total{resumed=\"true\"}", 1.0);
    wait_metric(&r, "router_tls_handshakes_total{resumed=\"false\"}", 4.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// docs/spec.md §7: a connection that ends before its first byte (the port check
/// `RouterProc::start` makes, a probe) is no handshake error; one that ends inside its
/// ClientHello is (Go's `tlslisten` counts the same: only after a byte was read).
#[test]
fn tls_connection_closed_before_its_first_byte_is_no_handshake_error() {
    let dir = tmpdir("probe");
    let pki = Pki::new(&dir, "ca");
    pki.issue("server", &["localhost", "127.0.0.1"], false);
    let up = Upstream::start("u1");
    let r = RouterProc::start(
        Some(&doc(&up.addr)),
        &["--tls-cert", &s(&dir.join("server.pem")), "--tls-key", &s(&dir.join("server.key"))],
    );
    let errors = |r: &RouterProc| metric(&r.metrics(), "router_tls_handshake_errors_total").unwrap();
    assert_eq!(errors(&r), 0.0, "the start's port check was counted");
    let cfg = client_config(&pki.ca_der(), &[b"http/1.1"], None);
    let probe_then_request = |r: &RouterProc, want_ok: f64| {
        for _ in 0..3 {
            drop(std::net::TcpStream::connect(&r.listen).unwrap());
        }
        // a whole exchange after the probes: their connections were accepted before it
        let (_, text) = rt().block_on(h1(&r.listen, &cfg, "/ok")).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        wait_metric(r, "router_tls_handshakes_total{resumed=\"false\"}", want_ok);
    };
    probe_then_request(&r, 1.0);
    assert_eq!(errors(&r), 0.0, "a connection closed before its first byte was counted");
    // one byte of a TLS record header, then the end: a failed handshake
    {
        let mut c = std::net::TcpStream::connect(&r.listen).unwrap();
        std::io::Write::write_all(&mut c, &[0x16]).unwrap();
    }
    wait_metric(&r, "router_tls_handshake_errors_total", 1.0);
    probe_then_request(&r, 1.0);
    assert_eq!(errors(&r), 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_client_certificates_and_sighup_reload() {
    let dir = tmpdir("mtls");
    let pki = Pki::new(&dir, "ca");
    let other = Pki::new(&dir, "other-ca");
    let (first_leaf, _) = pki.issue("server", &["localhost", "127.0.0.1"], false);
    let good = pki.issue("client", &["client"], true);
    let wrong = other.issue("stranger", &["client"], true);
    let up = Upstream::start("u1");
    let r = RouterProc::start(
        Some(&doc(&up.addr)),
        &[
            "--tls-cert",
            &s(&dir.join("server.pem")),
            "--tls-key",
            &s(&dir.join("server.key")),
            "--client-ca",
            &s(&dir.join("ca.pem")),
        ],
    );
    let ca = pki.ca_der();
    let errors0 = metric(&r.metrics(), "router_tls_handshake_errors_total").unwrap();
    rt().block_on(async {
        let (_, text) = h1(&r.listen, &client_config(&ca, &[], Some(&good)), "/ok").await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        // no certificate, another CA's: the handshake fails (a TLS 1.3 client learns it at
        // its first read)
        for cert in [None, Some(&wrong)] {
            let res = h1(&r.listen, &client_config(&ca, &[], cert), "/ok").await;
            assert!(
                res.as_ref().map_or(true, |(_, t)| t.is_empty()),
                "accepted with {:?}: {res:?}",
                cert.is_some()
            );
        }
    });
    wait_metric(&r, "router_tls_handshake_errors_total", errors0 + 2.0);

    // SIGHUP with a new server certificate: new handshakes get it
    let (second_leaf, _) = pki.issue("server", &["localhost", "127.0.0.1"], false);
    assert_ne!(first_leaf, second_leaf);
    r.signal("HUP");
    wait_metric(&r, "router_tls_reloads_total{result=\"ok\"}", 1.0);
    let leaf = |r: &RouterProc| {
        rt().block_on(async {
            let t = connect(&r.listen, &client_config(&ca, &[], Some(&good))).await.unwrap();
            t.get_ref().1.peer_certificates().unwrap()[0].clone()
        })
    };
    assert_eq!(leaf(&r), second_leaf);
    // a bad file: error counted, the previous certificate kept, still serving
    std::fs::write(dir.join("server.key"), "not a key").unwrap();
    r.signal("HUP");
    wait_metric(&r, "router_tls_reloads_total{result=\"error\"}", 1.0);
    assert_eq!(leaf(&r), second_leaf);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_h2_drain_sends_goaway_and_finishes_open_streams() {
    let dir = tmpdir("drain");
    let pki = Pki::new(&dir, "ca");
    pki.issue("server", &["localhost", "127.0.0.1"], false);
    let up = Upstream::start("u1");
    let r = RouterProc::start(
        Some(&doc(&up.addr)),
        &[
            "--tls-cert",
            &s(&dir.join("server.pem")),
            "--tls-key",
            &s(&dir.join("server.key")),
            "--shutdown-grace-ms",
            "5000",
        ],
    );
    let ca = pki.ca_der();
    rt().block_on(async {
        let t = connect(&r.listen, &client_config(&ca, &[b"h2"], None)).await.unwrap();
        let (send, conn) = h2::client::handshake(t).await.unwrap();
        let conn = tokio::spawn(conn);
        let req = http::Request::builder().uri("https://localhost/hold/600").header("x-routing-key", "k").body(()).unwrap();
        let (resp, _) = send.clone().ready().await.unwrap().send_request(req, true).unwrap();
        // the stream is in flight (the upstream holds its headers) when SIGTERM arrives
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric(&r.metrics(), "router_inflight{placement=\"p\"}").unwrap_or(0.0) < 1.0 {
            assert!(Instant::now() < deadline, "the request never became active");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        r.signal("TERM");
        let resp = resp.await.expect("the open stream was not finished");
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        while let Some(chunk) = body.data().await {
            chunk.expect("the open stream's body was cut");
        }
        // the connection ended with GOAWAY(NO_ERROR), not a reset
        match conn.await.unwrap() {
            Ok(()) => {}
            Err(e) => assert!(e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR), "{e:?}"),
        }
        // a stream opened afterwards is refused
        let req = http::Request::builder().uri("https://localhost/ok").header("x-routing-key", "k").body(()).unwrap();
        let refused = match send.ready().await {
            Err(_) => true,
            Ok(mut s) => match s.send_request(req, true) {
                Err(_) => true,
                Ok((resp, _)) => resp.await.is_err(),
            },
        };
        assert!(refused, "a stream opened after GOAWAY was served");
    });
    let _ = std::fs::remove_dir_all(&dir);
}
