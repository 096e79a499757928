//! Test support: a scripted HTTP/1.1 upstream, the router binary on ephemeral ports, and
//! a raw blocking HTTP client that reports exactly what arrived on the wire.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A scripted upstream. Paths:
/// `/ok` 200 "ok"; `/slowhdr/<ms>` headers after ms; `/hold/<ms>` same;
/// `/stream/<n>/<gap_ms>` chunked, n chunks `gap_ms` apart; `/abort` CL 100, 10 bytes, close;
/// `/garbage` non-HTTP bytes then close; `/status/<code>`; `/healthz` 200; `/echo` echoes
/// request headers in the body.
pub struct Upstream {
    pub addr: String,
    pub hits: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn start(name: &'static str) -> Upstream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let h = h.clone();
                std::thread::spawn(move || serve_conn(s, name, h));
            }
        });
        Upstream { addr, hits }
    }
}

fn serve_conn(s: TcpStream, name: &str, hits: Arc<AtomicUsize>) {
    let mut rd = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut line = String::new();
        if rd.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut head = line.clone();
        let mut clen = 0usize;
        let mut chunked = false;
        loop {
            let mut h = String::new();
            if rd.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                clen = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
            head.push_str(&h);
            if h == "\r\n" {
                break;
            }
        }
        if chunked {
            loop {
                let mut sz = String::new();
                rd.read_line(&mut sz).unwrap();
                let n = usize::from_str_radix(sz.trim(), 16).unwrap_or(0);
                let mut buf = vec![0; n + 2];
                rd.read_exact(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
            }
        } else if clen > 0 {
            let mut buf = vec![0; clen];
            rd.read_exact(&mut buf).unwrap();
        }
        if path != "/healthz" {
            hits.fetch_add(1, Ordering::SeqCst);
        }
        let parts: Vec<&str> = path.split('/').collect();
        let ok = |w: &mut TcpStream, body: &str| {
            let r = format!(
                "HTTP/1.1 200 OK\r\nX-Upstream-Name: {name}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            w.write_all(r.as_bytes())
        };
        let res = match parts.get(1).copied().unwrap_or("") {
            "slowhdr" | "hold" => {
                std::thread::sleep(Duration::from_millis(parts[2].parse().unwrap()));
                ok(&mut w, "ok")
            }
            "stream" => {
                let n: usize = parts[2].parse().unwrap();
                let gap: u64 = parts[3].parse().unwrap();
                let mut r = w.write_all(
                    format!("HTTP/1.1 200 OK\r\nX-Upstream-Name: {name}\r\nTransfer-Encoding: chunked\r\n\r\n")
                        .as_bytes(),
                );
                for i in 0..n {
                    std::thread::sleep(Duration::from_millis(gap));
                    let c = format!("chunk{i};");
                    r = r.and_then(|_| w.write_all(format!("{:x}\r\n{c}\r\n", c.len()).as_bytes()));
                }
                r.and_then(|_| w.write_all(b"0\r\n\r\n"))
            }
            "abort" => {
                let _ = w.write_all(
                    format!("HTTP/1.1 200 OK\r\nX-Upstream-Name: {name}\r\nContent-Length: 100\r\n\r\n0123456789")
                        .as_bytes(),
                );
                std::thread::sleep(Duration::from_millis(50));
                let _ = w.shutdown(Shutdown::Both);
                return;
            }
            "abortchunked" => {
                let _ = w.write_all(
                    format!("HTTP/1.1 200 OK\r\nX-Upstream-Name: {name}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                        .as_bytes(),
                );
                std::thread::sleep(Duration::from_millis(50));
                let _ = w.shutdown(Shutdown::Both);
                return;
            }
            "garbage" => {
                let _ = w.write_all(b"THIS IS NOT HTTP\r\n\r\n");
                let _ = w.shutdown(Shutdown::Both);
                return;
            }
            "status" => {
                let code: u16 = parts[2].parse().unwrap();
                w.write_all(
                    format!("HTTP/1.1 {code} X\r\nX-Upstream-Name: {name}\r\nContent-Length: 2\r\n\r\nno").as_bytes(),
                )
            }
            "echo" => ok(&mut w, &head),
            "upgrade" => {
                let _ = w.write_all(
                    format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Upstream-Name: {name}\r\n\r\n").as_bytes(),
                );
                // tunnel: echo bytes back until close
                let mut buf = [0u8; 1024];
                loop {
                    match rd.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if w.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            _ => ok(&mut w, "ok"),
        };
        if res.is_err() {
            return;
        }
    }
}

/// A port that was free a moment ago: it is released before returning, so a parallel
/// test's router or upstream may take it before the caller's child binds it. Children
/// started on it must retry on a bind failure (as [`RouterProc::start`] does).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `n` distinct ports that were free a moment ago (each held until all are picked, so two
/// never coincide); released before returning, as [`free_port`].
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// A loopback port held by a TCP socket that is bound but never listens, and its address
/// `127.0.0.1:PORT`: a connection to it is refused (as to a port nothing uses), and no
/// ephemeral bind (a parallel test's router or upstream) can pick it while the socket
/// lives. For a dead endpoint: a port merely closed could be taken by another test meanwhile.
pub fn closed_port() -> (tokio::net::TcpSocket, String) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    (sock, addr)
}

/// `n` distinct [`closed_port`]s: the sockets (to keep while the ports must stay closed)
/// and their addresses.
pub fn closed_ports(n: usize) -> (Vec<tokio::net::TcpSocket>, Vec<String>) {
    (0..n).map(|_| closed_port()).unzip()
}

/// How many times [`RouterProc::start`] picks new ports after the router could not bind.
pub const BIND_ATTEMPTS: usize = 5;

/// The router binary running on ephemeral ports with an LKG file.
pub struct RouterProc {
    pub child: Child,
    pub listen: String,
    pub admin: String,
    pub dir: PathBuf,
}

/// Why one start of the router did not come up.
enum StartFailure {
    /// It exited reporting `error: cannot bind ADDR` (a port taken since it was picked).
    PortTaken(String),
    /// Anything else: the test fails with this message.
    Other(String),
}

impl RouterProc {
    /// Starts the router with `lkg` as its last-known-good file and `extra` flags on two
    /// free ports, and waits until both listeners answer. The ports are picked free and
    /// then handed over, so another test may bind one first: the router then exits 1 with
    /// `error: cannot bind` (docs/spec.md section 1) and the start is retried on new ports,
    /// up to [`BIND_ATTEMPTS`] times. Panics when it does not come up otherwise.
    pub fn start(lkg: Option<&str>, extra: &[&str]) -> RouterProc {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pingora-router-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(doc) = lkg {
            std::fs::write(dir.join("last-known-good.json"), doc).unwrap();
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(&dir, extra) {
                Ok(r) => return r,
                Err(StartFailure::PortTaken(log)) if attempt < BIND_ATTEMPTS => {
                    eprintln!("router start {attempt}: port taken meanwhile, retrying on new ports: {}", log.trim_end());
                }
                Err(StartFailure::PortTaken(log)) => panic!("router did not come up: ports taken {attempt} times: {log}"),
                Err(StartFailure::Other(why)) => panic!("{why}"),
            }
        }
    }

    /// One start on two newly picked ports. The router writes `pingora-router: listening
    /// on` once both listeners are bound: from then on the ports are its own, so the
    /// health check below cannot be answered by another test's process.
    fn start_once(dir: &std::path::Path, extra: &[&str]) -> Result<RouterProc, StartFailure> {
        let [listen_port, admin_port] = free_ports::<2>();
        let listen = format!("127.0.0.1:{listen_port}");
        let admin = format!("127.0.0.1:{admin_port}");
        let stderr_path = dir.join("router.stderr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_pingora-router"))
            .args(["--listen", &listen, "--admin-listen", &admin, "--threads", "2"])
            .arg("--state-dir")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let log = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if log().contains("pingora-router: listening on") {
                break;
            }
            if let Some(st) = child.try_wait().unwrap() {
                let log = log();
                return Err(if st.code() == Some(1) && log.contains("error: cannot bind") {
                    StartFailure::PortTaken(log)
                } else {
                    StartFailure::Other(format!("router did not come up: exited ({st}) before listening: {log}"))
                });
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StartFailure::Other(format!("router did not come up: no listening line within 10 s: {}", log())));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Both ports are the router's own now; its Drop kills it from here on.
        let r = RouterProc { child, listen, admin, dir: dir.to_path_buf() };
        loop {
            if let Ok(resp) = http(&r.admin, "GET", "/healthz", &[], None) {
                if resp.status == 200 {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "router did not come up (admin /healthz)");
            std::thread::sleep(Duration::from_millis(10));
        }
        // the data listener is bound by the same server; wait for it too
        while TcpStream::connect(&r.listen).is_err() {
            assert!(Instant::now() < deadline, "data listener did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(r)
    }

    pub fn state(&self) -> serde_json::Value {
        let r = http(&self.admin, "GET", "/admin/state", &[], None).unwrap();
        serde_json::from_slice(&r.body).unwrap()
    }

    pub fn metrics(&self) -> String {
        String::from_utf8(http(&self.admin, "GET", "/metrics", &[], None).unwrap().body).unwrap()
    }

    /// Wait until `f(state)` holds, or panic after `secs`.
    pub fn wait_state(&self, secs: u64, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if f(&self.state()) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {}", self.state());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill").args(["-s", sig, &self.child.id().to_string()]).status().unwrap();
        assert!(st.success());
    }
}

impl Drop for RouterProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() || std::env::var_os("KEEP_ROUTER_LOGS").is_some() {
            let log = std::fs::read_to_string(self.dir.join("router.stderr")).unwrap_or_default();
            let tail: String = log.chars().rev().take(20000).collect::<Vec<_>>().into_iter().rev().collect();
            eprintln!("--- router stderr (tail) ---\n{tail}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What arrived for one request.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was complete per its framing (final chunk / full Content-Length).
    pub complete: bool,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), reading until close.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    if let Some(b) = body {
        s.write_all(b)?;
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw); // a reset still leaves what arrived
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    let err = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| err("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).ok_or_else(|| err("status"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect();
    let rest = &raw[end + 4..];
    let get = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    let (body, complete) = if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        let mut i = 0;
        let mut complete = false;
        while let Some(le) = rest[i..].windows(2).position(|w| w == b"\r\n") {
            let n = usize::from_str_radix(String::from_utf8_lossy(&rest[i..i + le]).trim(), 16).unwrap_or(0);
            i += le + 2;
            if n == 0 {
                complete = true;
                break;
            }
            if i + n > rest.len() {
                body.extend_from_slice(&rest[i..]);
                break;
            }
            body.extend_from_slice(&rest[i..i + n]);
            i += n + 2;
        }
        (body, complete)
    } else if let Some(cl) = get("content-length") {
        let n: usize = cl.parse().unwrap_or(0);
        (rest[..rest.len().min(n)].to_vec(), rest.len() >= n)
    } else {
        (rest.to_vec(), true)
    };
    Ok(Resp { status, headers, body, complete })
}

/// A config document with one placement per `(id, endpoint, fallback, max_concurrency,
/// request_ms)`; routes `key-<id>` -> id.
pub fn config(version: u64, placements: &[(&str, &str, Option<&str>, u32, u64)]) -> String {
    let mut routes = serde_json::Map::new();
    let mut pl = serde_json::Map::new();
    for (id, ep, fb, mc, req_ms) in placements {
        routes.insert(format!("key-{id}"), serde_json::json!(id));
        let mut p = serde_json::json!({
            "endpoint": format!("http://{ep}"),
            "max_concurrency": mc,
            "timeouts": {"connect_ms": 300, "request_ms": req_ms},
        });
        if let Some(f) = fb {
            p["fallback"] = serde_json::json!(f);
        }
        pl.insert(id.to_string(), p);
    }
    serde_json::json!({"version": version, "routes": routes, "placements": pl}).to_string()
}
