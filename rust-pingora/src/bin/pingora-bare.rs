//! `pingora-bare`: the smallest proxy Pingora allows, for the benchmarks (issue 5).
//!
//! A `ProxyHttp` whose only logic is to return the one upstream peer. Everything else
//! (threads, upstream keep-alive pool of `POOL_MAX_IDLE` idle connections, 60 s idle
//! timeout, the client connections' L4 buffers) is set
//! exactly as the router sets it (docs/spec.md section 1), so that `parity bench` can tell
//! the cost of the Pingora stack apart from the cost of the router's own logic.
//!
//! Usage: `pingora-bare --listen ADDR --upstream HOST:PORT --threads N`.

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
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = http_proxy_service(
        &server.configuration,
        Bare {
            upstream: args.upstream,
        },
    );
    svc.add_listener(pingora::listeners::ListenerConfig::tcp(&args.listen).l4_buffer(rust_pingora::upstream::client_l4_buffers()));
    server.add_service(svc);
    server.run_forever();
}
