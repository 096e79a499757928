//! HTTP/1.1 at the edges (issue 10, docs/conformance.md): the built `pingora-router` against
//! a recording upstream that answers canned bytes, with raw client sockets, so that nothing
//! between the test and the router cleans the bytes.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An upstream that records every request head it reads and answers each request with
/// `reply(head)`: the bytes to write and whether to close afterwards. Request bodies
/// (Content-Length or chunked) are read and dropped.
struct Recorder {
    addr: String,
    heads: Arc<Mutex<Vec<String>>>,
}

type Reply = fn(&str) -> (Vec<u8>, bool);

impl Recorder {
    fn start(reply: Reply) -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let h = heads.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let h = h.clone();
                std::thread::spawn(move || serve(s, reply, h));
            }
        });
        Recorder { addr, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn serve(mut s: TcpStream, reply: Reply, heads: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let lower = head.to_ascii_lowercase();
        if lower.contains("transfer-encoding: chunked") {
            while !buf.windows(5).any(|w| w == b"0\r\n\r\n") {
                match s.read(&mut tmp) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            }
            let i = buf.windows(5).position(|w| w == b"0\r\n\r\n").unwrap();
            buf.drain(..i + 5);
        } else if let Some(cl) = lower.lines().find_map(|l| l.strip_prefix("content-length:")) {
            let n: usize = cl.trim().parse().unwrap_or(0);
            while buf.len() < n {
                match s.read(&mut tmp) {
                    Ok(0) | Err(_) => return,
                    Ok(k) => buf.extend_from_slice(&tmp[..k]),
                }
            }
            buf.drain(..n);
        }
        heads.lock().unwrap().push(head.clone());
        if head.starts_with("GET /slow") {
            std::thread::sleep(Duration::from_millis(300));
        }
        let (bytes, close) = reply(&head);
        if s.write_all(&bytes).is_err() || close {
            let _ = s.shutdown(std::net::Shutdown::Write);
            std::thread::sleep(Duration::from_millis(20));
            return;
        }
    }
}

/// `200 ok <target>` for every request.
fn ok_target(head: &str) -> (Vec<u8>, bool) {
    let target = head.split(' ').nth(1).unwrap_or("?");
    let body = format!("ok {target}");
    (format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes(), false)
}

/// The canned response named by the request path `/r/<name>`.
fn canned(head: &str) -> (Vec<u8>, bool) {
    let name = head.split(' ').nth(1).unwrap_or("").trim_start_matches("/r/");
    let (b, close): (&[u8], bool) = match name {
        "cl-dup" => (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok", false),
        "cl-list" => (b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", true),
        "te-gzip" => (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", true),
        "status-999" => (b"HTTP/1.1 999 Odd\r\nContent-Length: 2\r\n\r\nok", true),
        "reason" => (b"HTTP/1.1 200 Fine Thanks\r\nContent-Length: 2\r\n\r\nok", false),
        "chunked" => (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", false),
        "chunk-ext" => (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5; a = \"q\\\"\x80\" ;b\t\r\nhello\r\n0;z=1\r\n\r\n", false),
        "chunk-ext-ctl" => (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x01\r\nhello\r\n0\r\n\r\n", false),
        "chunk-ext-lf" => (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=1\nab\r\n0\r\n\r\n", false),
        "204-cl" => (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", true),
        "304-cl" => (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nContent-Type: text/plain\r\nETag: \"x\"\r\n\r\n", false),
        "102-cl" => (b"HTTP/1.1 102 Processing\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
        "103" => (b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false),
        // a committed response that fails: 10 bytes announced, 3 sent, then FIN; late, so
        // that a request pipelined behind it is already waiting in the router's socket
        "short-late" => {
            std::thread::sleep(Duration::from_millis(200));
            (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true)
        }
        "many" => {
            let mut v = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..300 {
                v.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
            }
            v.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
            return (v, false);
        }
        _ => return ok_target(head),
    };
    (b.to_vec(), close)
}

/// How the client connection ended after the responses.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Eof,
    Reset,
    Open,
}

/// Write each sequence of `(delay ms, bytes)` on its own connection, then a GET: both are
/// answered 200 and the connection stays open (the sequence was valid and left no bytes).
fn each_passes_then_a_get(addr: &str, sequences: Vec<Vec<(u64, Vec<u8>)>>) {
    let then_get = get("/after", "");
    for (i, writes) in sequences.iter().enumerate() {
        let mut writes: Vec<(u64, &[u8])> = writes.iter().map(|(d, b)| (*d, b.as_slice())).collect();
        writes.push((50, &then_get));
        let (out, end) = exchange(addr, &writes, IDLE);
        assert_eq!(responses(&out, &[]).iter().map(Msg::status).collect::<Vec<_>>(), [200, 200], "sequence {i}");
        assert_eq!(end, End::Open);
    }
}

/// Write `writes` (delay before each, bytes) on a fresh connection and read everything that
/// arrives until the router closes or is idle for `idle`.
fn exchange(addr: &str, writes: &[(u64, &[u8])], idle: Duration) -> (Vec<u8>, End) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut w = s.try_clone().unwrap();
    let writes: Vec<(u64, Vec<u8>)> = writes.iter().map(|(d, b)| (*d, b.to_vec())).collect();
    let writer = std::thread::spawn(move || {
        for (d, b) in writes {
            std::thread::sleep(Duration::from_millis(d));
            if w.write_all(&b).is_err() {
                return;
            }
        }
    });
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let mut last = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    let end = loop {
        if Instant::now() > deadline {
            break End::Open;
        }
        match s.read(&mut buf) {
            Ok(0) => break End::Eof,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                last = Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break End::Reset,
            Err(_) => {
                if last.elapsed() > idle && writer.is_finished() {
                    break End::Open;
                }
            }
        }
    };
    let _ = writer.join();
    (out, end)
}

/// One response as it arrived: the status line, the header lines, the body.
#[derive(Debug)]
struct Msg {
    status_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Msg {
    fn status(&self) -> u16 {
        self.status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }
}

/// Split the bytes of a connection into responses; `head` marks responses to HEAD requests
/// (in order of final responses).
fn responses(raw: &[u8], head: &[bool]) -> Vec<Msg> {
    let mut out: Vec<Msg> = Vec::new();
    let mut i = 0;
    let mut finals = 0;
    while let Some(e) = raw[i..].windows(4).position(|w| w == b"\r\n\r\n") {
        let text = String::from_utf8_lossy(&raw[i..i + e]).into_owned();
        i += e + 4;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
            .collect();
        let mut m = Msg { status_line, headers, body: Vec::new() };
        let st = m.status();
        let is_head = (200..).contains(&st) && head.get(finals).copied().unwrap_or(false);
        if st >= 200 {
            finals += 1;
        }
        if (100..200).contains(&st) || st == 204 || st == 304 || is_head {
        } else if m.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let Some(le) = raw[i..].windows(2).position(|w| w == b"\r\n") else { break };
                let n = usize::from_str_radix(String::from_utf8_lossy(&raw[i..i + le]).trim(), 16).unwrap_or(0);
                i += le + 2;
                if n == 0 {
                    i = (i + 2).min(raw.len());
                    break;
                }
                m.body.extend_from_slice(&raw[i..(i + n).min(raw.len())]);
                i = (i + n + 2).min(raw.len());
            }
        } else if let Some(cl) = m.header("content-length") {
            let n: usize = cl.parse().unwrap_or(0);
            m.body = raw[i..(i + n).min(raw.len())].to_vec();
            i = (i + n).min(raw.len());
        } else {
            m.body = raw[i..].to_vec();
            i = raw.len();
        }
        out.push(m);
    }
    out
}

fn lkg(up: &str) -> String {
    serde_json::json!({
        "version": 1,
        "routes": {"k": "p1"},
        "placements": {"p1": {"endpoint": format!("http://{up}"), "max_concurrency": 64,
                               "timeouts": {"connect_ms": 300, "request_ms": 3000}}}
    })
    .to_string()
}

fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: client.example\r\nX-Routing-Key: k\r\n{extra}\r\n").into_bytes()
}

const IDLE: Duration = Duration::from_millis(400);

#[test]
fn pipelined_requests_are_each_forwarded_once_and_answered_in_order() {
    let up = Recorder::start(ok_target);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    // issue 10 input 1: the second request arrives while the first is in flight (300 ms)
    let (raw, end) = exchange(&r.listen, &[(0, &get("/slow1", "")), (50, &get("/pipe2", ""))], IDLE);
    let got = responses(&raw, &[]);
    assert_eq!(got.iter().map(|m| (m.status(), m.body.clone())).collect::<Vec<_>>(), vec![
        (200, b"ok /slow1".to_vec()),
        (200, b"ok /pipe2".to_vec())
    ]);
    assert_eq!(end, End::Open);
    // three in one write, a POST with a body in front, a router-made 404 in front
    let mut three = get("/a1", "");
    three.extend(get("/a2", ""));
    three.extend(b"POST /a3 HTTP/1.1\r\nHost: h\r\nX-Routing-Key: k\r\nContent-Length: 5\r\n\r\nhello");
    three.extend(b"GET /e HTTP/1.1\r\nHost: h\r\nX-Routing-Key: nope\r\n\r\n");
    three.extend(get("/a4", "Connection: close\r\n"));
    three.extend(get("/never", ""));
    let (raw, end) = exchange(&r.listen, &[(0, &three)], IDLE);
    let got = responses(&raw, &[]);
    let bodies: Vec<(u16, String)> = got.iter().map(|m| (m.status(), String::from_utf8_lossy(&m.body).into_owned())).collect();
    assert_eq!(bodies.len(), 5, "{bodies:?}");
    assert_eq!(bodies[..3], [(200, "ok /a1".into()), (200, "ok /a2".into()), (200, "ok /a3".into())]);
    assert_eq!(bodies[3].0, 404);
    assert_eq!(bodies[4], (200, "ok /a4".into()));
    assert_eq!(end, End::Eof, "Connection: close ends the connection");
    let targets: Vec<String> = up.heads().iter().map(|h| h.split(' ').nth(1).unwrap().to_string()).collect();
    assert_eq!(targets, ["/slow1", "/pipe2", "/a1", "/a2", "/a3", "/a4"]);
    assert!(!r.metrics().contains("code=\"bad_request\""), "a forwarded request was answered 400");
}

#[test]
fn absolute_form_is_forwarded_as_origin_form_and_bad_targets_are_refused() {
    let up = Recorder::start(ok_target);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    // issue 10 input 2
    let raw = b"GET http://front.example:8080/abs/p?x=1;y=%zz HTTP/1.1\r\nHost: other.example\r\nX-Routing-Key: k\r\n\r\n";
    let (out, _) = exchange(&r.listen, &[(0, raw)], IDLE);
    assert_eq!(responses(&out, &[])[0].status(), 200);
    let head = up.heads().pop().unwrap();
    assert!(head.starts_with("GET /abs/p?x=1;y=%zz HTTP/1.1\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("\r\nx-forwarded-host: front.example:8080\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nHost: {}\r\n", up.addr)) || head.contains(&format!("\r\nhost: {}\r\n", up.addr)), "{head}");
    let (out, _) = exchange(&r.listen, &[(0, b"GET HTTPS://front.example HTTP/1.1\r\nHost: front.example\r\nX-Routing-Key: k\r\n\r\n")], IDLE);
    assert_eq!(responses(&out, &[])[0].status(), 200);
    assert!(up.heads().pop().unwrap().starts_with("GET / HTTP/1.1\r\n"));
    // byte for byte, whatever the bytes: `"{|}^`, an invalid escape in the query
    for target in ["/a\"b{|}^", "/q?c=%zz&d=%"] {
        let (out, _) = exchange(&r.listen, &[(0, &get(target, ""))], IDLE);
        assert_eq!(responses(&out, &[])[0].status(), 200, "{target}");
        assert!(up.heads().pop().unwrap().starts_with(&format!("GET {target} HTTP/1.1\r\n")), "{target}");
    }
    // refused, never forwarded: not one of the four forms, a fragment, raw SP / DEL, an
    // invalid escape in the path, `*` on GET, userinfo, CONNECT
    let before = up.heads().len();
    for bad in [
        &b"GET abc/def HTTP/1.1\r\n"[..],
        b"GET front.example:443 HTTP/1.1\r\n",
        b"GET /f#frag HTTP/1.1\r\n",
        b"GET /a b HTTP/1.1\r\n",
        b"GET  /ds HTTP/1.1\r\n",
        b"GET /a\x7fb HTTP/1.1\r\n",
        b"GET /%zz HTTP/1.1\r\n",
        b"GET /a%2 HTTP/1.1\r\n",
        b"GET * HTTP/1.1\r\n",
        b"GET http://u@front.example/ HTTP/1.1\r\n",
        b"CONNECT front.example:443 HTTP/1.1\r\n",
        b"CONNECT / HTTP/1.1\r\n",
    ] {
        let mut req = bad.to_vec();
        req.extend_from_slice(b"Host: h\r\nX-Routing-Key: k\r\n\r\n");
        let (out, end) = exchange(&r.listen, &[(0, &req)], IDLE);
        let got = responses(&out, &[]);
        assert_eq!(got.first().map(Msg::status), Some(400), "{}", String::from_utf8_lossy(bad));
        assert_eq!(end, End::Eof, "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(up.heads().len(), before, "a refused target reached the upstream");
    // OPTIONS * goes up as it is (RFC 9110 section 9.3.7)
    let (out, _) = exchange(&r.listen, &[(0, b"OPTIONS * HTTP/1.1\r\nHost: h\r\nX-Routing-Key: k\r\n\r\n")], IDLE);
    assert_eq!(responses(&out, &[])[0].status(), 200);
    assert!(up.heads().pop().unwrap().starts_with("OPTIONS * HTTP/1.1\r\n"));
}

#[test]
fn upstream_framing_is_cleaned_or_refused() {
    let up = Recorder::start(canned);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    let one = |path: &str| {
        let (out, _) = exchange(&r.listen, &[(0, &get(path, ""))], IDLE);
        responses(&out, &[]).into_iter().next().expect("a response")
    };
    // issue 10 input 3
    let m = one("/r/cl-dup");
    assert_eq!((m.status(), m.all("content-length"), m.body.as_slice()), (200, vec!["2"], &b"ok"[..]));
    for bad in ["/r/cl-list", "/r/te-gzip", "/r/status-999"] {
        let m = one(bad);
        assert_eq!((m.status(), m.header("x-router-error")), (502, Some("upstream_protocol_error")), "{bad}");
    }
    // the standard reason phrase
    assert_eq!(one("/r/reason").status_line, "HTTP/1.1 200 OK");
    // a 502 keeps the connection: the request pipelined behind it is served
    let mut two = get("/r/cl-list", "");
    two.extend(get("/after502", ""));
    let (out, end) = exchange(&r.listen, &[(0, &two)], IDLE);
    let got = responses(&out, &[]);
    assert_eq!(got.iter().map(Msg::status).collect::<Vec<_>>(), [502, 200], "{got:?}");
    assert_eq!((got[1].body.as_slice(), end), (&b"ok /after502"[..], End::Open));
    // an upstream head with 300 fields
    assert_eq!(one("/r/many").status(), 200);
}

#[test]
fn no_body_statuses_lose_their_framing_fields() {
    let up = Recorder::start(canned);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    // issue 10 input 6, with a request pipelined behind it
    let mut two = get("/r/204-cl", "");
    two.extend(get("/after", ""));
    let (out, _) = exchange(&r.listen, &[(0, &two)], IDLE);
    let got = responses(&out, &[]);
    assert_eq!(got[0].status(), 204);
    assert!(got[0].header("content-length").is_none() && got[0].header("transfer-encoding").is_none(), "{got:?}");
    assert_eq!((got[1].status(), got[1].body.as_slice()), (200, &b"ok /after"[..]));
    let (out, _) = exchange(&r.listen, &[(0, &get("/r/304-cl", ""))], IDLE);
    let m = &responses(&out, &[])[0];
    assert_eq!(m.status(), 304);
    assert!(m.header("content-length").is_none() && m.header("content-type").is_none(), "{m:?}");
    assert_eq!(m.header("etag"), Some("\"x\""));
    let (out, _) = exchange(&r.listen, &[(0, &get("/r/102-cl", ""))], IDLE);
    let got = responses(&out, &[]);
    assert_eq!(got.iter().map(Msg::status).collect::<Vec<_>>(), [102, 200]);
    assert!(got[0].header("content-length").is_none(), "{got:?}");
}

#[test]
fn http10_clients_get_no_chunked_framing_and_no_1xx() {
    let up = Recorder::start(canned);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    // issue 10 input 4
    for extra in ["", "Connection: keep-alive\r\n"] {
        let req = format!("GET /r/chunked HTTP/1.0\r\nHost: h\r\nX-Routing-Key: k\r\n{extra}\r\n");
        let (out, end) = exchange(&r.listen, &[(0, req.as_bytes())], IDLE);
        let got = responses(&out, &[]);
        assert_eq!(got.len(), 1);
        assert!(got[0].status_line.starts_with("HTTP/1.0 200"), "{:?}", got[0]);
        assert!(got[0].header("transfer-encoding").is_none(), "{:?}", got[0]);
        assert_eq!(got[0].body, b"hello world");
        assert_eq!(end, End::Eof);
    }
    // RFC 9110 section 15.2: no 103 for an HTTP/1.0 client
    let (out, _) = exchange(&r.listen, &[(0, b"GET /r/103 HTTP/1.0\r\nHost: h\r\nX-Routing-Key: k\r\n\r\n")], IDLE);
    assert_eq!(responses(&out, &[]).iter().map(Msg::status).collect::<Vec<_>>(), [200]);
    // and an HTTP/1.0 request without Host is forwarded without X-Forwarded-Host
    let (out, _) = exchange(&r.listen, &[(0, b"GET /nohost HTTP/1.0\r\nX-Routing-Key: k\r\n\r\n")], IDLE);
    assert_eq!(responses(&out, &[])[0].status(), 200);
    assert!(!up.heads().pop().unwrap().to_ascii_lowercase().contains("\r\nx-forwarded-host:"));
}

#[test]
fn the_head_limit_is_bytes_only() {
    let up = Recorder::start(ok_target);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    // issue 10 input 5: 257 and 5000 small header lines
    for n in [257, 5000] {
        let extra: String = (0..n).map(|i| format!("X-H{i}: v\r\n")).collect();
        let (out, _) = exchange(&r.listen, &[(0, &get("/many", &extra))], IDLE);
        assert_eq!(responses(&out, &[]).first().map(Msg::status), Some(200), "{n} header lines");
    }
    // exactly 65536 bytes of head pass, 65537 are 431
    let base = get("/sz", "X-Pad: \r\n").len();
    for (total, want) in [(65536, 200), (65537, 431)] {
        let pad = "p".repeat(total - base);
        let req = get("/sz", &format!("X-Pad: {pad}\r\n"));
        assert_eq!(req.len(), total);
        let (out, _) = exchange(&r.listen, &[(0, &req)], IDLE);
        assert_eq!(responses(&out, &[]).first().map(Msg::status), Some(want), "{total} bytes");
    }
}

#[test]
fn host_is_validated_on_http11() {
    let up = Recorder::start(ok_target);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    // issue 10 input 7 and siblings
    for host in ["", "Host: \r\n", "Host: a b.example\r\n", "Host: a.example/evil\r\n", "Host: a.example:abc\r\n", "Host: a\r\nHost: b\r\n"] {
        let req = format!("GET /h HTTP/1.1\r\n{host}X-Routing-Key: k\r\n\r\n");
        let (out, end) = exchange(&r.listen, &[(0, req.as_bytes())], IDLE);
        assert_eq!(responses(&out, &[]).first().map(Msg::status), Some(400), "{host:?}");
        assert_eq!(end, End::Eof, "{host:?}");
    }
    assert!(up.heads().is_empty());
    for host in ["Host: [::1]:80\r\n", "Host: a_b.example\r\n", "Host: a.example:\r\n"] {
        let req = format!("GET /h HTTP/1.1\r\n{host}X-Routing-Key: k\r\n\r\n");
        let (out, _) = exchange(&r.listen, &[(0, req.as_bytes())], IDLE);
        assert_eq!(responses(&out, &[]).first().map(Msg::status), Some(200), "{host:?}");
    }
}

#[test]
fn upgrade_without_the_upgrade_option_is_hop_by_hop() {
    let up = Recorder::start(ok_target);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    // issue 10 input 8
    let (out, _) = exchange(&r.listen, &[(0, &get("/hop", "Connection: close, X-Hop\r\nX-Hop: 1\r\nUpgrade: foo\r\n"))], IDLE);
    assert_eq!(responses(&out, &[])[0].status(), 200);
    let head = up.heads().pop().unwrap().to_ascii_lowercase();
    for gone in ["\r\nupgrade:", "\r\nconnection:", "\r\nx-hop:"] {
        assert!(!head.contains(gone), "{gone} forwarded: {head}");
    }
    // an HTTP/1.0 request cannot upgrade either
    let (out, _) = exchange(&r.listen, &[(0, b"GET /u10 HTTP/1.0\r\nHost: h\r\nX-Routing-Key: k\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")], IDLE);
    assert_eq!(responses(&out, &[])[0].status(), 200);
    assert!(!up.heads().pop().unwrap().to_ascii_lowercase().contains("\r\nupgrade:"));
}

#[test]
fn request_framing_lists_are_refused_duplicates_collapsed() {
    let up = Recorder::start(ok_target);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    let (out, end) = exchange(&r.listen, &[(0, b"POST /l HTTP/1.1\r\nHost: h\r\nX-Routing-Key: k\r\nContent-Length: 2, 2\r\n\r\nhi")], IDLE);
    assert_eq!((responses(&out, &[])[0].status(), end), (400, End::Eof));
    assert!(up.heads().is_empty());
    // Transfer-Encoding other than exactly one `chunked` coding (Go's net/http: 501)
    for te in ["Transfer-Encoding: chunked, chunked\r\n", "Transfer-Encoding: ,chunked\r\n", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"] {
        let req = format!("POST /t HTTP/1.1\r\nHost: h\r\nX-Routing-Key: k\r\n{te}\r\n0\r\n\r\n");
        let (out, end) = exchange(&r.listen, &[(0, req.as_bytes())], IDLE);
        assert_eq!((responses(&out, &[])[0].status(), end), (400, End::Eof), "{te:?}");
    }
    assert!(up.heads().is_empty());
    let (out, _) = exchange(&r.listen, &[(0, b"POST /d HTTP/1.1\r\nHost: h\r\nX-Routing-Key: k\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi")], IDLE);
    assert_eq!(responses(&out, &[])[0].status(), 200);
    let head = up.heads().pop().unwrap().to_ascii_lowercase();
    assert_eq!(head.matches("content-length:").count(), 1, "{head}");
}

#[test]
fn unmet_expectations_and_framing_trailers_are_refused() {
    let up = Recorder::start(ok_target);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    // RFC 9110 section 10.1.1: an expectation other than 100-continue (Go: the gate's 400)
    for expect in ["Expect: foo\r\n", "Expect: 100-continuex\r\n", "Expect: foo\r\nExpect: 100-continue\r\n"] {
        let (out, end) = exchange(&r.listen, &[(0, &get("/e", expect))], IDLE);
        assert_eq!((responses(&out, &[])[0].status(), end), (400, End::Eof), "{expect:?}");
    }
    // RFC 9110 section 6.6.2: trailers must not carry framing fields
    for trailer in ["Trailer: Content-Length\r\n", "Trailer: x-a, transfer-encoding\r\n"] {
        let req = format!("POST /t HTTP/1.1\r\nHost: h\r\nX-Routing-Key: k\r\nTransfer-Encoding: chunked\r\n{trailer}\r\n0\r\n\r\n");
        let (out, end) = exchange(&r.listen, &[(0, req.as_bytes())], IDLE);
        assert_eq!((responses(&out, &[])[0].status(), end), (400, End::Eof), "{trailer:?}");
    }
    assert!(up.heads().is_empty());
    // what is met or allowed still goes through
    let (out, _) = exchange(&r.listen, &[(0, &get("/e", "Expect: \r\nTrailer: x-checksum\r\n"))], IDLE);
    assert_eq!(responses(&out, &[])[0].status(), 200);
}

#[test]
fn router_answers_discard_an_unread_body_as_net_http_does() {
    let up = Recorder::start(ok_target);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    let then_get = get("/after", "");
    // a small body (Content-Length, chunked) is read and discarded: the 404 / 400 keeps the
    // connection and a second request on it is answered (net/http: maxPostHandlerReadBytes)
    for first in [
        &b"POST /p HTTP/1.1\r\nHost: h\r\nX-Routing-Key: nope\r\nContent-Length: 10\r\n\r\n0123456789"[..],
        b"POST /p HTTP/1.1\r\nHost: h\r\nX-Routing-Key: nope\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789",
    ] {
        let (out, end) = exchange(&r.listen, &[(0, first), (200, &then_get)], IDLE);
        let got = responses(&out, &[]);
        let what = String::from_utf8_lossy(first);
        assert_eq!(got.iter().map(Msg::status).collect::<Vec<_>>()[..], [if what.contains("nope") { 404 } else { 400 }, 200], "{what}");
        assert!(got[0].header("connection").is_none(), "{what}: {:?}", got[0]);
        assert_eq!((got[1].body.as_slice(), end), (&b"ok /after"[..], End::Open), "{what}");
    }
    // 300 KiB: more than net/http reads, so the 404 says close and the connection ends
    let mut big = format!("POST /p HTTP/1.1\r\nHost: h\r\nX-Routing-Key: nope\r\nContent-Length: {}\r\n\r\n", 300 << 10).into_bytes();
    big.extend(std::iter::repeat_n(b'x', 300 << 10));
    let (out, end) = exchange(&r.listen, &[(0, &big), (200, &then_get)], IDLE);
    let got = responses(&out, &[]);
    assert_eq!(got.iter().map(Msg::status).collect::<Vec<_>>(), [404], "{got:?}");
    assert_eq!((got[0].header("connection"), end), (Some("close"), End::Eof));
    // the same unbounded in advance: 300 KiB of chunks
    let mut big = b"POST /p HTTP/1.1\r\nHost: h\r\nX-Routing-Key: nope\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..300 {
        big.extend(b"400\r\n");
        big.extend(std::iter::repeat_n(b'x', 1024));
        big.extend(b"\r\n");
    }
    big.extend(b"0\r\n\r\n");
    let (out, end) = exchange(&r.listen, &[(0, &big), (200, &then_get)], IDLE);
    let got = responses(&out, &[]);
    assert_eq!(got.iter().map(Msg::status).collect::<Vec<_>>(), [404], "{got:?}");
    assert_eq!((got[0].header("connection"), end), (Some("close"), End::Eof));
    // Expect: 100-continue never answered with 100: the body is not asked for, so close
    let (out, end) = exchange(&r.listen, &[(0, b"POST /p HTTP/1.1\r\nHost: h\r\nX-Routing-Key: nope\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n")], IDLE);
    let got = responses(&out, &[]);
    assert_eq!(got.iter().map(Msg::status).collect::<Vec<_>>(), [404], "{got:?}");
    assert_eq!((got[0].header("connection"), end), (Some("close"), End::Eof));
    assert!(up.heads().iter().all(|h| h.starts_with("GET /after ")), "{:?}", up.heads());
}

#[test]
fn a_malformed_request_trailer_section_is_a_bad_request() {
    let up = Recorder::start(ok_target);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    // RFC 9112 sections 7.1.2 and 5 (pingora-core patch, TrailerCheck): field lines as in
    // the head, CRLF line ends, at most 65536 bytes; anything else is 400, connection closed
    let pre = "POST /t HTTP/1.1\r\nHost: h\r\nX-Routing-Key: k\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n";
    let long = |n: usize| format!("X-L: {}\r\n\r\n", "v".repeat(n - 9));
    for section in [
        "a\r\n\r\n".to_string(),
        "X-T : 1\r\n\r\n".into(),
        "X-T: 1\r\n 2\r\n\r\n".into(),
        ": 1\r\n\r\n".into(),
        "X-T: a\x01b\r\n\r\n".into(),
        "X-T: 1\n\r\n".into(),
        "\n".into(),
        long(65537),
    ] {
        let req = format!("{pre}{section}");
        let (out, end) = exchange(&r.listen, &[(0, req.as_bytes())], IDLE);
        let got = responses(&out, &[]);
        assert_eq!((got.first().map(Msg::status), end), (Some(400), End::Eof), "{:.40?}", section);
        assert_eq!(got[0].header("x-router-error"), Some("bad_request"));
    }
    // refused at the bad byte, before the line's end
    let (out, end) = exchange(&r.listen, &[(0, format!("{pre}X-T: 1\r\n ").as_bytes())], IDLE);
    assert_eq!((responses(&out, &[]).first().map(Msg::status), end), (Some(400), End::Eof));
    // valid sections, split over writes too, pass and are dropped; the connection lives on
    each_passes_then_a_get(&r.listen, vec![
        vec![(0, format!("{pre}X-T: 1\r\nX-E:\r\nX-O: a \t b\u{e9}\r\n\r\n").into_bytes())],
        vec![(0, format!("{pre}{}", long(65536)).into_bytes())],
        vec![(0, format!("{pre}X-").into_bytes()), (50, b"T: 1\r".to_vec()), (50, b"\n\r\n".to_vec())],
    ]);
}

#[test]
fn a_chunk_extension_is_token_or_quoted_string_syntax() {
    // RFC 9112 section 7.1.1 (pingora-core patch, chunk_line_check): httparse took any byte
    // but CR in an extension, so "f; a=1\nab...\r\n" was size 0xf here and a bare-LF line
    // end for the Go router (parity fuzz framing.client-status). Request: 400, closed.
    let up = Recorder::start(canned);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    let pre = "POST /t HTTP/1.1\r\nHost: h\r\nX-Routing-Key: k\r\nTransfer-Encoding: chunked\r\n\r\n";
    for body in [
        "f; a=1\nab32b1cdaba31eb\r\nc\r\nd1fa30300aff\r\n0\r\n\r\n",
        "2;a\x01\r\nab\r\n0\r\n\r\n",
        "2;a b\r\nab\r\n0\r\n\r\n",
        "2;\r\nab\r\n0\r\n\r\n",
        "2;a=\"\x7f\"\r\nab\r\n0\r\n\r\n",
        "2;a=b\"c\"\r\nab\r\n0\r\n\r\n",
    ] {
        let (out, end) = exchange(&r.listen, &[(0, format!("{pre}{body}").as_bytes())], IDLE);
        let got = responses(&out, &[]);
        assert_eq!((got.first().map(Msg::status), end), (Some(400), End::Eof), "{body:?}");
        assert_eq!(got[0].header("x-router-error"), Some("bad_request"));
    }
    // refused at the bad byte, before the line's end
    let (out, end) = exchange(&r.listen, &[(0, format!("{pre}2;a\x01").as_bytes())], IDLE);
    assert_eq!((responses(&out, &[]).first().map(Msg::status), end), (Some(400), End::Eof));
    // every valid form passes, split over writes too; the connection lives on
    each_passes_then_a_get(&r.listen, vec![
        vec![(0, format!("{pre}2; a = \"q\\\"\t\" ;b ;c=d \r\nab\r\n0;z\r\n\r\n").into_bytes())],
        vec![(0, format!("{pre}2 ;a=\"x").into_bytes()), (50, b";y\"\r".to_vec()), (50, b"\nab\r\n0\r\n\r\n".to_vec())],
    ]);
    // at most 8192 bytes before the line's LF (PARTIAL_CHUNK_HEAD_LIMIT, the Go router's
    // ChunkLine), also when the whole line comes in one read
    for (ext, want) in [(8187, 200), (8188, 400)] {
        let body = format!("2;a={}\r\nab\r\n0\r\n\r\n", "x".repeat(ext));
        let (out, _) = exchange(&r.listen, &[(0, format!("{pre}{body}").as_bytes())], IDLE);
        assert_eq!(responses(&out, &[]).first().map(Msg::status), Some(want), "extension of {ext} bytes");
    }
    // Response: a valid extension passes; a refused one fails the committed 200 (no last
    // chunk, connection closed), as the Go router's HeadConn does
    let (out, end) = exchange(&r.listen, &[(0, &get("/r/chunk-ext", ""))], IDLE);
    let got = responses(&out, &[]);
    assert_eq!((got[0].status(), got[0].body.as_slice(), end), (200, &b"hello"[..], End::Open));
    assert!(out.ends_with(b"0\r\n\r\n"), "{:?}", String::from_utf8_lossy(&out));
    for bad in ["/r/chunk-ext-ctl", "/r/chunk-ext-lf"] {
        let (out, end) = exchange(&r.listen, &[(0, &get(bad, ""))], IDLE);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200 ") && !text.ends_with("0\r\n\r\n"), "{bad}: {text:?}");
        assert_eq!(end, End::Eof, "{bad}: {text:?}");
    }
}

#[test]
fn an_http10_request_asking_close_gets_connection_close() {
    let up = Recorder::start(ok_target);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    // RFC 9112 section 9.6 (pingora-core patch hunk 4): close in any Connection line
    for conn in ["Connection: close\r\n", "Connection: keep-alive\r\nConnection: close\r\n", "Connection: Keep-Alive, Close\r\n"] {
        let req = format!("GET /c HTTP/1.0\r\nHost: h\r\nX-Routing-Key: k\r\n{conn}\r\n");
        let (out, end) = exchange(&r.listen, &[(0, req.as_bytes())], IDLE);
        let got = responses(&out, &[]);
        assert_eq!((got[0].status(), got[0].header("connection"), end), (200, Some("close"), End::Eof), "{conn:?}");
    }
    // without close: no Connection on a closing HTTP/1.0 response, keep-alive on a kept one
    let (out, _) = exchange(&r.listen, &[(0, b"GET /n HTTP/1.0\r\nHost: h\r\nX-Routing-Key: k\r\n\r\n")], IDLE);
    assert_eq!(responses(&out, &[])[0].header("connection"), None);
}

/// A committed response that fails (spec §3 step 8: the upstream announced 10 bytes, sent 3
/// and closed) while the client has pipelined a second request behind it, unread by the
/// router: the connection still ends with FIN, after the bytes sent, for a client that
/// reads only later. Closing a socket with unread input sends RST (RFC 9293 section 3.6.1)
/// and the reset can destroy the response before the client reads it (RFC 9112 section
/// 9.6): the router half-closes and discards the input first (the lingering close).
#[test]
fn a_failed_committed_response_ends_with_fin_despite_pipelined_input() {
    let up = Recorder::start(canned);
    let r = RouterProc::start(Some(&lkg(&up.addr)), &[]);
    let mut s = TcpStream::connect(&r.listen).unwrap();
    s.write_all(&get("/r/short-late", "")).unwrap();
    // the second request is written once the first is upstream (the router is then not
    // reading the client), before the upstream answers
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.heads().is_empty() {
        assert!(Instant::now() < deadline, "the request never reached the upstream");
        std::thread::sleep(Duration::from_millis(5));
    }
    s.write_all(&get("/second", "")).unwrap();
    // a client that reads late: the router has ended the connection by then
    std::thread::sleep(Duration::from_millis(600));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break End::Eof,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break End::Reset,
            Err(_) => break End::Open,
        }
    };
    assert_eq!(end, End::Eof, "read: {:?}", String::from_utf8_lossy(&out));
    let got = responses(&out, &[]);
    assert_eq!((got.len(), got[0].status(), got[0].body.as_slice()), (1, 200, &b"abc"[..]));
    assert_eq!(up.heads().len(), 1, "nothing after the failed response is forwarded");
}
