//! The soak's upstreams: small keep-alive HTTP/1.1 servers (hyper) that answer every
//! request `200 ok` (or `500` while failing), count requests, record the time of each
//! health probe (`GET /probe`), and can go down (listener and every connection closed,
//! connects refused) and come back on the same port.
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The health-check path the soak configs give every checked placement.
pub const PROBE_PATH: &str = "/probe";

struct State {
    name: String,
    failing: AtomicBool,
    requests: AtomicU64,
    /// Seconds since `t0` of every probe received.
    probes: Mutex<Vec<f64>>,
    t0: Instant,
    /// Bumped by `down`: every connection task ends when it changes.
    generation: watch::Sender<u64>,
}

/// One soak upstream on a fixed loopback port.
pub struct SoakUpstream {
    /// Its port (kept across down/up).
    pub port: u16,
    state: Arc<State>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SoakUpstream {
    /// Binds a fresh loopback port and serves. `t0` is the run's clock origin.
    pub async fn start(name: &str, t0: Instant) -> Result<SoakUpstream> {
        let l = TcpListener::bind("127.0.0.1:0").await.context("bind soak upstream")?;
        let port = l.local_addr()?.port();
        let state = Arc::new(State {
            name: name.to_string(),
            failing: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            probes: Mutex::new(Vec::new()),
            t0,
            generation: watch::channel(0).0,
        });
        let u = SoakUpstream { port, state, listener: Mutex::new(None) };
        u.serve(l);
        Ok(u)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn serve(&self, l: TcpListener) {
        let st = self.state.clone();
        let h = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { continue };
                let st = st.clone();
                let mut gen = st.generation.subscribe();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |rq: Request<hyper::body::Incoming>| {
                        let st = st.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&st, rq)) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = gen.changed() => {}
                    }
                });
            }
        });
        *self.listener.lock().unwrap() = Some(h);
    }

    /// Closes the listener and every connection: connects are refused until [`Self::up`].
    pub fn down(&self) {
        if let Some(h) = self.listener.lock().unwrap().take() {
            h.abort();
        }
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Listens again on the same port (retried for up to 2 s while the port is busy).
    pub async fn up(&self) -> Result<()> {
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => {
                    self.serve(l);
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => return Err(e).context("rebind soak upstream"),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    /// Answer 500 to every non-probe request (`true`) or 200 (`false`).
    pub fn set_failing(&self, f: bool) {
        self.state.failing.store(f, Ordering::SeqCst);
    }

    /// Non-probe requests received.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Times (s since the run's start) of every probe received.
    pub fn probe_times(&self) -> Vec<f64> {
        self.state.probes.lock().unwrap().clone()
    }
}

impl Drop for SoakUpstream {
    fn drop(&mut self) {
        self.down();
    }
}

fn answer(st: &State, rq: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let probe = rq.uri().path() == PROBE_PATH;
    let status = if probe {
        st.probes.lock().unwrap().push(st.t0.elapsed().as_secs_f64());
        200
    } else {
        st.requests.fetch_add(1, Ordering::Relaxed);
        if st.failing.load(Ordering::SeqCst) {
            500
        } else {
            200
        }
    };
    Response::builder()
        .status(status)
        .header("x-upstream-name", st.name.as_str())
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(b"ok\n")))
        .expect("static response")
}
