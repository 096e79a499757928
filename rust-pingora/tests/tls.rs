//! Upstream TLS (docs/spec.md section 3): CA file, SNI/verified name, client certificate,
//! and that an empty `server_name` means the endpoint host (never "no verification").
//! Uses the `openssl` command to make certificates and to serve (`s_server -www`); the test
//! is skipped with a message when `openssl` is not installed.

mod common;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn sh(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn make_pki(dir: &Path) {
    sh(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca"]);
    for (name, san) in [("server", "DNS:api.internal"), ("client", "DNS:client")] {
        sh(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr"), "-subj", &format!("/CN={name}")]);
        std::fs::write(dir.join(format!("{name}.ext")), format!("subjectAltName={san}\n")).unwrap();
        sh(dir, &["x509", "-req", "-in", &format!("{name}.csr"), "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", &format!("{name}.pem"), "-days", "2", "-extfile", &format!("{name}.ext")]);
    }
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `openssl s_server -www` on a port it picks itself (`-accept 127.0.0.1:0`, so that no
/// parallel test can take the port between a pick and the bind), and that port: read from
/// its `ACCEPT 127.0.0.1:PORT` line, printed once it listens. The rest of its output is
/// drained so that it never blocks on a full pipe.
fn s_server(dir: &Path, require_client: bool) -> (Server, u16) {
    use std::io::BufRead;
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(["s_server", "-www", "-accept", "127.0.0.1:0", "-cert", "server.pem", "-key", "server.key"]);
    if require_client {
        cmd.args(["-Verify", "1", "-CAfile", "ca.pem"]);
    }
    let mut s = Server(cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap());
    let mut out = std::io::BufReader::new(s.0.stdout.take().unwrap());
    let port = loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "s_server exited before listening");
        if let Some(addr) = line.trim().strip_prefix("ACCEPT ") {
            break addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).expect("ACCEPT line with a port");
        }
    };
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (s, port)
}

fn doc(port: u16, tls: serde_json::Value) -> String {
    serde_json::json!({
        "version": 1,
        "routes": {"k": "p"},
        "placements": {"p": {"endpoint": format!("https://127.0.0.1:{port}"), "max_concurrency": 4,
                             "timeouts": {"connect_ms": 2000, "request_ms": 3000}, "tls": tls}}
    })
    .to_string()
}

#[test]
fn tls_verification_sni_and_client_certificates() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not installed: TLS test skipped");
        return;
    }
    let dir = std::env::temp_dir().join(format!("pingora-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    make_pki(&dir);
    let p = |f: &str| dir.join(f).to_string_lossy().into_owned();

    let (_srv, port) = s_server(&dir, false);
    let cases = [
        (serde_json::json!({"ca_file": p("ca.pem"), "server_name": "api.internal"}), 200),
        // wrong name: verification fails -> connect failure
        (serde_json::json!({"ca_file": p("ca.pem"), "server_name": "other.internal"}), 502),
        // empty name = endpoint host 127.0.0.1, not in the certificate: must fail, not skip
        (serde_json::json!({"ca_file": p("ca.pem"), "server_name": ""}), 502),
        // system roots do not trust the test CA
        (serde_json::json!({"server_name": "api.internal"}), 502),
    ];
    for (tls, want) in cases {
        let r = RouterProc::start(Some(&doc(port, tls.clone())), &[]);
        let resp = http(&r.listen, "GET", "/", &[("X-Routing-Key", "k")], None).unwrap();
        assert_eq!(resp.status, want, "{tls}: {:?}", resp.text());
        if want == 502 {
            assert_eq!(resp.header("X-Router-Error"), Some("upstream_connect_failed"));
        }
    }

    // two placements on the same endpoint in one router: the one that trusts only the
    // system roots fails even after the other succeeded. (`s_server -www` closes after each
    // response, so pool isolation itself is shown by the harness scenario upstream-tls.)
    let two = serde_json::json!({
        "version": 1,
        "routes": {"good": "pgood", "noca": "pnoca"},
        "placements": {
            "pgood": {"endpoint": format!("https://127.0.0.1:{port}"), "max_concurrency": 4,
                      "timeouts": {"connect_ms": 2000, "request_ms": 3000},
                      "tls": {"ca_file": p("ca.pem"), "server_name": "api.internal"}},
            "pnoca": {"endpoint": format!("https://127.0.0.1:{port}"), "max_concurrency": 4,
                      "timeouts": {"connect_ms": 2000, "request_ms": 3000},
                      "tls": {"server_name": "api.internal"}}
        }
    })
    .to_string();
    let r = RouterProc::start(Some(&two), &[]);
    // keep-alive requests so that pgood's connection goes back to the pool
    for _ in 0..2 {
        let resp = http_keepalive_pair(&r.listen, "good");
        assert_eq!(resp, 200);
    }
    let resp = http(&r.listen, "GET", "/", &[("X-Routing-Key", "noca")], None).unwrap();
    assert_eq!(resp.status, 502, "pooled connection of another placement reused");
    drop(r);

    let (_srv, port) = s_server(&dir, true);
    let with = serde_json::json!({"ca_file": p("ca.pem"), "server_name": "api.internal",
                                  "client_cert_file": p("client.pem"), "client_key_file": p("client.key")});
    let r = RouterProc::start(Some(&doc(port, with)), &[]);
    assert_eq!(http(&r.listen, "GET", "/", &[("X-Routing-Key", "k")], None).unwrap().status, 200);
    drop(r);
    let without = serde_json::json!({"ca_file": p("ca.pem"), "server_name": "api.internal"});
    let r = RouterProc::start(Some(&doc(port, without)), &[]);
    let resp = http(&r.listen, "GET", "/", &[("X-Routing-Key", "k")], None).unwrap();
    assert!(resp.status == 502, "no client certificate must fail: {}", resp.status);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One request with keep-alive on the client side (the router may pool its upstream
/// connection); returns the status.
fn http_keepalive_pair(addr: &str, key: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Routing-Key: {key}\r\n\r\n").as_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    head.split_whitespace().nth(1).unwrap().parse().unwrap()
}
