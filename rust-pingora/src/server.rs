//! Flags, start-up and shutdown (docs/spec.md sections 1 and 8).
//!
//! Start-up order: parse flags, load the LKG file, check that both listeners can bind,
//! then hand three services to a Pingora `Server` (the proxy, the admin app, the
//! control-plane background service, which also starts the health probe loops).
//!
//! Shutdown: Pingora's own graceful path sleeps `grace_period_seconds` whole (300 s by
//! default) before it stops its runtimes. We install our own `ShutdownSignalWatch` that
//! treats SIGTERM and SIGINT alike: it returns `GracefulTerminate` (Pingora stops accepting)
//! and starts a drain thread that exits the process with status 0 as soon as no request is
//! in flight, or when `--shutdown-grace-ms` has passed (cutting what still runs).

use crate::admin::AdminApp;
use crate::control_plane::{load_lkg, ControlPlane, LkgLoad};
use crate::proxy::RouterProxy;
use crate::state::{Router, ACTIVE_REQUESTS};
use async_trait::async_trait;
use clap::Parser;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
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
    /// One JSON line per request on stderr.
    #[arg(long)]
    pub access_log: bool,
}

/// Parse flags; on error print one `error:` line and exit 2 (`--help`: exit 0).
pub fn parse_flags() -> Flags {
    match Flags::try_parse() {
        Ok(f) => f,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    print!("{e}");
                    std::process::exit(0);
                }
                _ => {
                    let text = e.to_string();
                    let first = text.lines().next().unwrap_or("bad flags").trim();
                    let first = first.strip_prefix("error: ").unwrap_or(first);
                    eprintln!("error: {first}");
                    std::process::exit(2);
                }
            }
        }
    }
}

fn fatal(msg: String) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

/// SIGTERM and SIGINT both mean "graceful": return `GracefulTerminate` so Pingora stops
/// accepting, and start the drain thread.
struct DrainOnSignal {
    grace: Duration,
    signalled: tokio::sync::watch::Receiver<bool>,
}

/// Install the SIGTERM/SIGINT handlers at the very start of the process (before the LKG
/// load and long before `/healthz` answers), on a small thread of their own, so a signal
/// that arrives while Pingora is still starting its services is not fatal.
fn watch_signals() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("signal runtime");
            rt.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
                let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
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
    rx
}

#[async_trait]
impl ShutdownSignalWatch for DrainOnSignal {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.signalled.clone();
        let _ = rx.wait_for(|s| *s).await;
        let deadline = Instant::now() + self.grace;
        std::thread::spawn(move || {
            // Let Pingora close its listeners first, then wait for in-flight requests.
            loop {
                if ACTIVE_REQUESTS.load(Ordering::Acquire) == 0 || Instant::now() >= deadline {
                    std::process::exit(0);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        ShutdownSignal::GracefulTerminate
    }
}

/// Run the router with the given flags; returns only by exiting the process.
pub fn run(flags: Flags) -> ! {
    let signalled = watch_signals();
    if let Err(e) = std::fs::create_dir_all(&flags.state_dir) {
        fatal(format!("cannot create state dir {}: {e}", flags.state_dir.display()));
    }
    let router = Router::new(flags.state_dir.clone(), flags.access_log);
    match load_lkg(&flags.state_dir) {
        LkgLoad::Missing => {}
        LkgLoad::Loaded(cfg) => router.install(cfg),
        LkgLoad::Corrupt(why) => eprintln!("pingora-router: last-known-good file rejected: {why}"),
    }
    for addr in [&flags.listen, &flags.admin_listen] {
        if let Err(e) = std::net::TcpListener::bind(addr.as_str()) {
            fatal(format!("cannot bind {addr}: {e}"));
        }
    }

    eprintln!("pingora-router: listening on {}, admin on {}", flags.listen, flags.admin_listen);

    let threads = flags
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let conf = ServerConf {
        threads,
        upstream_keepalive_pool_size: 256,
        // With one thread there is nothing to steal from: Pingora's "NoSteal" flavour runs
        // the service on a tokio current-thread runtime, which saves the multi-thread
        // scheduler's cross-thread bookkeeping (about 12% CPU per request, wrk closed
        // loop, 1 thread). With more threads, work stealing (the default) keeps balancing
        // connections.
        work_stealing: threads > 1,
        // Our drain thread exits the process first; Pingora's sleep is only an upper bound.
        grace_period_seconds: Some(flags.shutdown_grace_ms.div_ceil(1000) + 5),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        RouterProxy { router: router.clone() },
        "router",
    );
    proxy.add_tcp(&flags.listen);

    let mut admin = Service::new("admin".to_string(), AdminApp { router: router.clone() });
    admin.add_tcp(&flags.admin_listen);
    admin.threads = Some(1);

    let mut cp = background_service(
        "control-plane",
        ControlPlane {
            router: router.clone(),
            url: flags.control_plane.clone(),
            initial_ms: flags.reconnect_initial_ms,
            max_ms: flags.reconnect_max_ms.max(1),
        },
    );
    cp.threads = Some(1);

    // Pingora binds each listener inside its service's thread and panics there
    // ("Failed to build listeners") when the bind fails, e.g. when the port was taken after
    // the check above; the process would run on without that listener. The contract makes
    // a bind failure fatal (exit 1), so that panic ends the process.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Failed to build listeners") {
            fatal(format!("cannot bind a listener: {msg}"));
        }
    }));

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(cp);
    let _keep: Arc<Router> = router;
    server.run(RunArgs { shutdown_signal: Box::new(DrainOnSignal { grace: Duration::from_millis(flags.shutdown_grace_ms), signalled }) });
    std::process::exit(0);
}
