//! The client of `send` steps: HTTP/1.1 requests through reqwest (bodies streamed,
//! chunks counted and timed) or raw bytes on a fresh TCP connection (malformed requests,
//! upgrades), `concurrency` at a time. It reports what it saw as a [`Resp`] and never
//! fails: transport errors and timeouts are part of the response.

use crate::scenario::Send;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One response as the client saw it.
#[derive(Debug, Clone, Default)]
pub struct Resp {
    /// Status (None: no response).
    pub status: Option<u16>,
    /// Response headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body (possibly partial).
    pub body: Vec<u8>,
    /// The body arrived complete.
    pub complete: bool,
    /// Chunks read (with `read_chunks`).
    pub chunks: u32,
    /// Longest gap between head and first chunk or between chunks, ms.
    pub max_gap_ms: u64,
    /// Request latency (to the end of the body), µs.
    pub latency_us: u64,
    /// Transport error text, when any.
    pub failure: Option<String>,
}

impl Resp {
    /// The first value of header `name` (lower case), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Sends the step's `count` requests to the router's data port `port`, `concurrency` at a
/// time; the responses in request order. `progress` counts response body chunks received over all the step's requests.
pub async fn send_all(client: reqwest::Client, port: u16, s: Send, progress: Arc<AtomicU64>) -> Vec<Resp> {
    let s = Arc::new(s);
    let futs = (0..s.count).map(|_| {
        let c = client.clone();
        let s = s.clone();
        let p = progress.clone();
        async move { one_request(&c, port, &s, &p).await }
    });
    futures_util::stream::iter(futs).buffered(s.concurrency as usize).collect().await
}

async fn one_request(client: &reqwest::Client, port: u16, s: &Send, progress: &AtomicU64) -> Resp {
    let t0 = Instant::now();
    let timeout = Duration::from_millis(s.timeout_ms);
    let mut r = match &s.raw {
        Some(raw) => tokio::time::timeout(timeout, raw_request(port, raw, s.tunnel_write.as_deref())).await.unwrap_or_else(|_| Resp {
            failure: Some("timeout".into()),
            ..Default::default()
        }),
        None => match tokio::time::timeout(timeout, http_request(client, port, s, progress)).await {
            Ok(r) => r,
            Err(_) => Resp { failure: Some("timeout".into()), ..Default::default() },
        },
    };
    r.latency_us = t0.elapsed().as_micros() as u64;
    r
}

async fn http_request(client: &reqwest::Client, port: u16, s: &Send, progress: &AtomicU64) -> Resp {
    let url = format!("http://127.0.0.1:{port}{}", s.path);
    let method = reqwest::Method::from_bytes(s.method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut rb = client.request(method, url);
    if let Some(k) = &s.key {
        rb = rb.header("X-Routing-Key", k);
    }
    if let Some(n) = s.pad_header_bytes {
        rb = rb.header("X-Padding", "p".repeat(n));
    }
    for (k, v) in &s.headers {
        rb = rb.header(k, v);
    }
    if let Some(b) = &s.body {
        rb = rb.body(b.clone());
    } else if let Some(n) = s.body_bytes {
        const CHUNK: usize = 64 * 1024;
        let chunks = n / CHUNK as u64;
        let rest = (n % CHUNK as u64) as usize;
        let block = bytes::Bytes::from(vec![b'a'; CHUNK]);
        let last = bytes::Bytes::from(vec![b'a'; rest]);
        let st = futures_util::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(block.clone())))
            .chain(futures_util::stream::iter(if rest > 0 { vec![Ok(last)] } else { vec![] }));
        rb = rb.header("Content-Length", n.to_string()).body(reqwest::Body::wrap_stream(st));
    }
    let mut resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return Resp { failure: Some(error_chain(&e)), ..Default::default() },
    };
    let head_at = Instant::now();
    let mut out = Resp {
        status: Some(resp.status().as_u16()),
        headers: resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        ..Default::default()
    };
    let mut last = head_at;
    loop {
        if let Some(max) = s.read_chunks {
            if out.chunks >= max {
                // Enough: stop reading (dropping the response closes the connection).
                out.complete = true;
                break;
            }
        }
        match resp.chunk().await {
            Ok(Some(c)) => {
                let now = Instant::now();
                out.max_gap_ms = out.max_gap_ms.max(now.duration_since(last).as_millis() as u64);
                last = now;
                out.chunks += 1;
                progress.fetch_add(1, Ordering::SeqCst);
                if out.body.len() < 1 << 20 {
                    out.body.extend_from_slice(&c);
                }
            }
            Ok(None) => {
                out.complete = true;
                break;
            }
            Err(e) => {
                out.failure = Some(error_chain(&e));
                break;
            }
        }
    }
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// Writes raw bytes on a fresh connection and reads one response (head and a
/// Content-Length body), or until the router closes.
async fn raw_request(port: u16, raw: &str, tunnel: Option<&str>) -> Resp {
    let mut s = match tokio::net::TcpStream::connect(crate::util::net::addr(port)).await {
        Ok(s) => s,
        Err(e) => return Resp { failure: Some(e.to_string()), ..Default::default() },
    };
    if let Err(e) = s.write_all(raw.as_bytes()).await {
        return Resp { failure: Some(e.to_string()), ..Default::default() };
    }
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16384];
    loop {
        let mut hdrs = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut hdrs);
        if let Ok(httparse::Status::Complete(n)) = resp.parse(&buf) {
            let headers: Vec<(String, String)> = resp
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            let status = resp.code;
            if let (Some(101), Some(t)) = (status, tunnel) {
                let mut body = buf[n..].to_vec();
                if s.write_all(t.as_bytes()).await.is_err() {
                    return Resp { status, headers, failure: Some("tunnel write failed".into()), ..Default::default() };
                }
                while body.len() < t.len() {
                    match s.read(&mut tmp).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => body.extend_from_slice(&tmp[..k]),
                    }
                }
                let complete = body.len() >= t.len();
                return Resp { status, headers, body, complete, ..Default::default() };
            }
            let len: usize = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.trim().parse().ok()).unwrap_or(0);
            let mut body = buf[n..].to_vec();
            while body.len() < len {
                match s.read(&mut tmp).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => body.extend_from_slice(&tmp[..k]),
                }
            }
            let complete = body.len() >= len;
            body.truncate(len);
            return Resp { status, headers, body, complete, ..Default::default() };
        }
        match s.read(&mut tmp).await {
            Ok(0) => return Resp { failure: Some("connection closed without a response".into()), ..Default::default() },
            Err(e) => return Resp { failure: Some(e.to_string()), ..Default::default() },
            Ok(k) => buf.extend_from_slice(&tmp[..k]),
        }
    }
}

