//! The process: flags, start-up order, running until shutdown, the exit code
//! (docs/spec.md sections 1 and 8).
//!
//! [`run`] is the whole life of the router: it creates the state dir, loads the LKG file
//! into a new [`Store`], binds both listeners itself (a bind error comes back from the call
//! and ends `run` with exit code 1), then registers the services on a Pingora `Server` (the
//! proxy and the admin app on the listeners bound here, the control-plane client when
//! `--control-plane` is given) and runs it on a thread of its own. `run` returns the exit
//! code as soon as the drain after `shutdown` has ended (0), or a listening service failed
//! to start (1). `main` is the only caller of `std::process::exit`.
//!
//! Shutdown: Pingora's own graceful path sleeps `grace_period_seconds` whole (300 s by
//! default) before it stops its runtimes. We give it our own `ShutdownSignalWatch`
//! ([`DrainOnSignal`]): when `shutdown` resolves it returns `GracefulTerminate` (Pingora
//! stops accepting) and starts a drain thread that ends `run` with 0 as soon as no request
//! is active in the store, or when `--shutdown-grace-ms` has passed (cutting what still
//! runs, since the process then exits).

use crate::admin::AdminApp;
use crate::controlplane::{load_lkg, ControlPlane, Keepalive, LkgLoad};
use crate::proxy::RouterProxy;
use crate::store::Store;
use async_trait::async_trait;
use clap::Parser;
use futures_util::FutureExt;
use pingora::server::configuration::ServerConf;
use pingora::server::{ListenFds, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};
use std::future::Future;
use std::os::fd::IntoRawFd;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn parse_addr(s: &str) -> Result<String, String> {
    // host:port with a numeric port; the host may be a name or [v6]
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not host:port"))?;
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    port.parse::<u16>().map_err(|_| format!("{s:?} has no valid port"))?;
    Ok(s.to_string())
}

fn parse_cp(s: &str) -> Result<String, String> {
    if s.starts_with("ws://") || s.starts_with("wss://") {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a ws:// or wss:// URL"))
    }
}

fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not an integer >= 1")),
    }
}

/// Command-line flags (spec section 1).
#[derive(Parser, Debug, Clone)]
#[command(name = "pingora-router", about = "The Pingora build of the parity router")]
pub struct Flags {
    /// Data-plane listener, host:port.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_addr)]
    pub listen: String,
    /// Admin listener, host:port.
    #[arg(long, default_value = "127.0.0.1:9090", value_parser = parse_addr)]
    pub admin_listen: String,
    /// Control-plane WebSocket URL (ws:// or wss://); none: run on the LKG file alone.
    #[arg(long, value_parser = parse_cp)]
    pub control_plane: Option<String>,
    /// Directory of last-known-good.json (created if missing).
    #[arg(long, default_value = "./state")]
    pub state_dir: PathBuf,
    /// Worker threads (ServerConf.threads), >= 1. Default: number of CPUs.
    #[arg(long, value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// Longest wait for in-flight requests on SIGTERM, in ms.
    #[arg(long, default_value_t = 5000)]
    pub shutdown_grace_ms: u64,
    /// First reconnect backoff, in ms.
    #[arg(long, default_value_t = 100)]
    pub reconnect_initial_ms: u64,
    /// Backoff cap, in ms.
    #[arg(long, default_value_t = 5000)]
    pub reconnect_max_ms: u64,
    /// Control-plane keepalive: ping the control plane after this long without an
    /// answer, in ms, >= 1 (spec section 6).
    #[arg(long, default_value_t = Keepalive::DEFAULT.ping.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub cp_ping_ms: u64,
    /// Control-plane keepalive: the session is lost without an answer to a ping within
    /// this long, in ms, >= 1 (spec section 6).
    #[arg(long, default_value_t = Keepalive::DEFAULT.pong_timeout.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub cp_pong_timeout_ms: u64,
    /// One JSON line per request on stderr.
    #[arg(long)]
    pub access_log: bool,
    /// PEM certificate chain (leaf first); with `--tls-key` the data listener is TLS 1.2/1.3
    /// with ALPN h2 and http/1.1 (spec section 3, "TLS and HTTP/2 on the listener").
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 RSA or SEC 1 EC).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: client certificates are required and verified against it.
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
}

impl Flags {
    /// The TLS files of the data listener; `None`: plain HTTP/1.1. `Err`: the flag
    /// combination spec section 1 refuses (exit 2): one of `--tls-cert`/`--tls-key`
    /// without the other, `--client-ca` without `--tls-cert`.
    pub fn tls_files(&self) -> Result<Option<crate::tls::TlsFiles>, String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.client_ca.clone(),
            })),
            (Some(_), None) => Err("--tls-cert requires --tls-key".into()),
            (None, Some(_)) => Err("--tls-key requires --tls-cert".into()),
            (None, None) if self.client_ca.is_some() => Err("--client-ca requires --tls-cert".into()),
            (None, None) => Ok(None),
        }
    }
}

/// Parse the command line. `Err(code)`: `--help` / `--version` were printed (0), or one
/// `error: …` line was printed for bad flags (2); the process should exit with `code`.
pub fn parse_flags() -> Result<Flags, i32> {
    let flags = Flags::try_parse().map_err(|e| {
        use clap::error::ErrorKind;
        match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                print!("{e}");
                0
            }
            _ => {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or("bad flags").trim();
                let first = first.strip_prefix("error: ").unwrap_or(first);
                eprintln!("error: {first}");
                2
            }
        }
    })?;
    if let Err(e) = flags.tls_files() {
        eprintln!("error: {e}");
        return Err(2);
    }
    Ok(flags)
}

/// What ends [`run`]: a future that resolves on the first SIGTERM or SIGINT. The handlers
/// are installed before this returns, on a small thread of their own, so call it at the
/// very start of the process: a signal that arrives while Pingora is still starting its
/// services is then not fatal.
pub fn shutdown_signals() -> impl Future<Output = ()> + Send + 'static {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("signal runtime");
            rt.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
                let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
                // SIGHUP is the TLS reload (crate::tls::ReloadOnHup, a background service
                // that listens once Pingora runs); tokio's handler, installed here for the
                // whole process, keeps an early SIGHUP from ending it (default action).
                let _hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
                let _ = ready_tx.send(());
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
                let _ = tx.send(true);
                std::future::pending::<()>().await;
            });
        })
        .expect("signal thread");
    let _ = ready_rx.recv();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

type ShutdownFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Pingora's shutdown watch for the router: waits for `shutdown`, then returns
/// `GracefulTerminate` (Pingora stops accepting) and starts the drain thread, which sends
/// exit code 0 to [`run`] once the store has no active request or the grace has passed.
struct DrainOnSignal {
    shutdown: Mutex<Option<ShutdownFuture>>,
    store: Arc<Store>,
    grace: Duration,
    exit: mpsc::Sender<i32>,
}

#[async_trait]
impl ShutdownSignalWatch for DrainOnSignal {
    async fn recv(&self) -> ShutdownSignal {
        let shutdown = self.shutdown.lock().unwrap().take();
        match shutdown {
            Some(f) => f.await,
            None => std::future::pending().await, // asked once only
        }
        self.store.begin_drain();
        let deadline = Instant::now() + self.grace;
        let store = self.store.clone();
        let exit = self.exit.clone();
        std::thread::spawn(move || {
            // Let Pingora close its listeners first, then wait for in-flight requests.
            while store.active_requests() != 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = exit.send(0);
        });
        ShutdownSignal::GracefulTerminate
    }
}

/// A listening service started on a listener bound by [`run`]: before the inner service
/// builds its listeners, the bound socket is put into the listen-fd table Pingora hands to
/// every service (the table of its zero-downtime upgrade), under the same address string,
/// so Pingora's `ListenerEndpointBuilder::listen` takes it instead of binding (it then only
/// raises the backlog with `listen(2)`). If the inner service panics while starting or
/// running, [`run`] ends with exit code 1 instead of the process running on without that
/// listener.
struct OnBoundListener<S> {
    inner: S,
    name: String,
    addr: String,
    listener: Option<std::net::TcpListener>,
    exit: mpsc::Sender<i32>,
}

#[async_trait]
impl<S: ServiceWithDependents + 'static> ServiceWithDependents for OnBoundListener<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        if let (Some(fds), Some(listener)) = (&fds, self.listener.take()) {
            fds.lock().add(self.addr.clone(), listener.into_raw_fd());
        }
        let started = std::panic::AssertUnwindSafe(self.inner.start_service(fds, shutdown, listeners_per_fd, ready_notifier))
            .catch_unwind()
            .await;
        if started.is_err() {
            eprintln!("error: the {} service on {} stopped with a panic", self.name, self.addr);
            let _ = self.exit.send(1);
        }
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

/// Bind `addr` (host:port) for a Pingora listener: `SO_REUSEADDR` as Pingora sets it,
/// non-blocking as tokio needs it.
fn bind(addr: &str) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn server_conf(flags: &Flags) -> ServerConf {
    let threads = flags
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    ServerConf {
        threads,
        upstream_keepalive_pool_size: crate::upstream::POOL_MAX_IDLE,
        // With one thread there is nothing to steal from: Pingora's "NoSteal" flavour runs
        // the service on a tokio current-thread runtime, which saves the multi-thread
        // scheduler's cross-thread bookkeeping (about 12% CPU per request, wrk closed
        // loop, 1 thread). With more threads, work stealing (the default) keeps balancing
        // connections.
        work_stealing: threads > 1,
        // `run` returns when the drain ends; Pingora's sleep is only an upper bound.
        grace_period_seconds: Some(flags.shutdown_grace_ms.div_ceil(1000) + 5),
        graceful_shutdown_timeout_seconds: Some(1),
        // Pingora stops calling `upstream_peer` after `max_retries` attempts (default 16);
        // a bodiless request may try every endpoint of every placement of its chain once
        // (spec §3 step 6), plus the stale-pooled-connection re-attempts of the default.
        max_retries: crate::config::MAX_CHAIN * crate::config::MAX_ENDPOINTS + 16,
        ..ServerConf::default()
    }
}

/// Run the router with `flags` until `shutdown` resolves and the drain ends; returns the
/// process exit code (0 after the drain, 1 on a fatal start error: state dir not
/// creatable, a listener that cannot bind, a listening service that failed).
pub fn run(flags: Flags, shutdown: impl Future<Output = ()> + Send + 'static) -> i32 {
    if let Err(e) = std::fs::create_dir_all(&flags.state_dir) {
        eprintln!("error: cannot create state dir {}: {e}", flags.state_dir.display());
        return 1;
    }
    let store = Store::new(flags.state_dir.clone(), flags.access_log);
    match load_lkg(&flags.state_dir) {
        LkgLoad::Missing => {}
        LkgLoad::Loaded(cfg) => store.install(cfg),
        LkgLoad::Corrupt(why) => eprintln!("pingora-router: last-known-good file rejected: {why}"),
    }
    // TLS files are read before anything is bound: a bad one is fatal (exit 1).
    let tls = match flags.tls_files() {
        Ok(None) => None,
        Ok(Some(files)) => match crate::tls::Reloadable::load(files) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("error: tls: {e}");
                return 1;
            }
        },
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let bind_or_report = |addr: &str| bind(addr).map_err(|e| eprintln!("error: cannot bind {addr}: {e}"));
    let Ok(proxy_listener) = bind_or_report(&flags.listen) else { return 1 };
    let Ok(admin_listener) = bind_or_report(&flags.admin_listen) else { return 1 };

    eprintln!("pingora-router: listening on {}, admin on {}", flags.listen, flags.admin_listen);

    let (exit_tx, exit_rx) = mpsc::channel::<i32>();
    let listeners = (proxy_listener, admin_listener);
    let spawned = std::thread::Builder::new()
        .name("pingora-server".into())
        .spawn(move || serve(&flags, store, listeners, tls, Box::pin(shutdown), exit_tx));
    if let Err(e) = spawned {
        eprintln!("error: cannot start the server thread: {e}");
        return 1;
    }
    // The senders live in the server thread (which sends when `Server::run` returns), its
    // services and the drain thread, so this returns with the first code sent.
    exit_rx.recv().unwrap_or(0)
}

/// The Pingora part of [`run`], on the `pingora-server` thread: the services registered on
/// a `Server` and `Server::run` until the shutdown. Sends 0 on `exit` if `Server::run`
/// ever returns.
fn serve(
    flags: &Flags,
    store: Arc<Store>,
    (proxy_listener, admin_listener): (std::net::TcpListener, std::net::TcpListener),
    tls: Option<Arc<crate::tls::Reloadable>>,
    shutdown: ShutdownFuture,
    exit: mpsc::Sender<i32>,
) {
    let mut server = Server::new_with_opt_and_conf(None, server_conf(flags));
    server.bootstrap();

    let mut proxy =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, RouterProxy::new(store.clone()), "router");
    // CONNECT reaches the hooks, which answer it 400 `bad_request` (docs/spec.md: the router
    // proxies no CONNECT tunnels); Pingora's own answer would be a bare 405.
    if let Some(app) = proxy.app_logic_mut() {
        let mut options = pingora::apps::HttpServerOptions::default();
        options.allow_connect_method_proxying = true;
        app.server_options = Some(options);
        // HTTP/2: the h2 crate's own header-list limit (Pingora's default 64 KiB) would
        // answer an oversized head with a bare 431 before any hook; above the contract's
        // 64 KiB, up to this, the router answers its JSON 431 (`request_filter`).
        let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
        h2.max_header_list_size(128 * 1024 + 320);
        // net/http's SETTINGS_MAX_CONCURRENT_STREAMS (Pingora's default is 100), so that a
        // client's stream beyond it is refused at the same count by both routers.
        h2.max_concurrent_streams(250);
        app.h2_options = Some(h2);
    }
    let mut listener = pingora::listeners::ListenerConfig::tcp(&flags.listen).l4_buffer(crate::upstream::client_l4_buffers());
    if let Some(reloadable) = &tls {
        // The TLS data listener (crate::tls): Pingora's rustls acceptor on the same bound
        // socket; the SIGHUP reload is a background service.
        match crate::tls::settings(reloadable, store.clone()) {
            Ok(settings) => listener = listener.tls(settings),
            Err(e) => {
                eprintln!("error: tls: {e}");
                let _ = exit.send(1);
                return;
            }
        }
        store.metrics.enable_tls();
    }
    // SIGHUP: reload the TLS files, or (plain listener) ignore the signal.
    let mut hup = background_service("tls-reload", crate::tls::ReloadOnHup { reloadable: tls.clone(), store: store.clone() });
    hup.threads = Some(1);
    server.add_service(hup);
    if tls.is_some() {
        // A connection closed before its first byte is no handshake (crate::tls::FirstByte).
        proxy.endpoints().set_pre_tls_callback(Arc::new(crate::tls::FirstByte));
    }
    proxy.add_listener(listener);
    server.add_service(OnBoundListener {
        inner: proxy,
        name: "proxy".into(),
        addr: flags.listen.clone(),
        listener: Some(proxy_listener),
        exit: exit.clone(),
    });

    let mut admin = Service::new("admin".to_string(), AdminApp { store: store.clone() });
    admin.add_tcp(&flags.admin_listen);
    admin.threads = Some(1);
    server.add_service(OnBoundListener {
        inner: admin,
        name: "admin".into(),
        addr: flags.admin_listen.clone(),
        listener: Some(admin_listener),
        exit: exit.clone(),
    });

    if let Some(url) = &flags.control_plane {
        let mut cp = background_service(
            "control-plane",
            ControlPlane {
                store: store.clone(),
                url: url.clone(),
                initial_ms: flags.reconnect_initial_ms,
                max_ms: flags.reconnect_max_ms.max(1),
                keepalive: Keepalive {
                    ping: Duration::from_millis(flags.cp_ping_ms),
                    pong_timeout: Duration::from_millis(flags.cp_pong_timeout_ms),
                },
            },
        );
        cp.threads = Some(1);
        server.add_service(cp);
    }

    let watch = DrainOnSignal {
        shutdown: Mutex::new(Some(shutdown)),
        store,
        grace: Duration::from_millis(flags.shutdown_grace_ms),
        exit: exit.clone(),
    };
    server.run(RunArgs { shutdown_signal: Box::new(watch) });
    let _ = exit.send(0);
}
