//! `pingora-bare`: the smallest proxy Pingora allows, for the benchmarks (issue 5).
//!
//! A `ProxyHttp` whose only logic is to return the one upstream peer. Everything else
//! (threads, upstream keep-alive pool of `POOL_MAX_IDLE` idle connections, 60 s idle
//! timeout, the client connections' L4 buffers) is set
//! exactly as the router sets it (docs/spec.md section 1), so that `parity bench` can tell
//! the cost of the Pingora stack apart from the cost of the router's own logic.
//!
//! With `--tls-cert` and `--tls-key` the listener is TLS as the router's (docs/spec.md
//! section 3, "TLS and HTTP/2 on the listener"; the router's own `rust_pingora::tls`
//! settings without its handshake metrics): TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`,
//! session tickets, and the router's HTTP/2 stream limit; as `go-bare --tls-cert`, for
//! the TLS and HTTP/2 benchmarks (issue 15).
//!
//! Usage: `pingora-bare --listen ADDR --upstream HOST:PORT --threads N [--tls-cert FILE --tls-key FILE]`.
//! Exit codes: 2 bad flags (one given without the other included), 1 unusable TLS files
//! (`error: tls: <why>`).

use std::time::Duration;

use async_trait::async_trait;
use clap::Parser;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

/// Command line of the bare proxy (the flags are shared with `go-bare`).
#[derive(Parser, Debug)]
#[command(name = "pingora-bare", about = "Bare Pingora reverse proxy to one upstream")]
struct Args {
    /// Listener address, `host:port`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The one upstream, `host:port` (plain HTTP/1.1).
    #[arg(long)]
    upstream: String,
    /// Worker threads (`ServerConf.threads`), N >= 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    threads: u64,
    /// PEM certificate chain, leaf first: with `--tls-key` the listener is TLS with
    /// HTTP/2 and HTTP/1.1.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

/// The proxy: one fixed peer, nothing else.
struct Bare {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream.as_str(), false, String::new());
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }
}

fn main() {
    let args = Args::parse();
    let conf = ServerConf {
        threads: args.threads as usize,
        upstream_keepalive_pool_size: rust_pingora::upstream::POOL_MAX_IDLE,
        // As the router: work stealing only with more than one thread (NoSteal, a tokio
        // current-thread runtime, with one), so the two differ only by the router's logic.
        work_stealing: args.threads > 1,
        // SIGTERM: stop at once (Pingora's default grace period is minutes).
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        // Per-process paths: several bare proxies may run at once.
        pid_file: format!("/tmp/pingora-bare-{}.pid", std::process::id()),
        upgrade_sock: format!("/tmp/pingora-bare-{}.sock", std::process::id()),
        ..ServerConf::default()
    };
    // The TLS files are read before anything starts: unusable ones end the process.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = rust_pingora::tls::TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: None };
            match rust_pingora::tls::Reloadable::load(files).and_then(|r| rust_pingora::tls::settings_with(&r, None)) {
                Ok(settings) => Some(settings),
                Err(e) => {
                    eprintln!("error: tls: {e}");
                    std::process::exit(1);
                }
            }
        }
        _ => None,
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = http_proxy_service(
        &server.configuration,
        Bare {
            upstream: args.upstream,
        },
    );
    let mut listener = pingora::listeners::ListenerConfig::tcp(&args.listen).l4_buffer(rust_pingora::upstream::client_l4_buffers());
    if let Some(settings) = tls {
        listener = listener.tls(settings);
        // The router's HTTP/2 stream limit (net/http's, which go-bare has); Pingora's
        // default is 100.
        if let Some(app) = svc.app_logic_mut() {
            let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
            h2.max_concurrent_streams(250);
            app.h2_options = Some(h2);
        }
    }
    svc.add_listener(listener);
    server.add_service(svc);
    server.run_forever();
}
