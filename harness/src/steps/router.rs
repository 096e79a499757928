//! `router`: restart, SIGTERM, expected exit, RSS bound, refused data port.
use super::Ctx;
use crate::scenario::RouterAction;
use crate::util::net::addr;
use serde_json::json;
use std::time::Duration;

/// Applies the action or checks the process.
pub async fn run(ctx: &mut Ctx<'_>, i: i64, a: &RouterAction) {
    match a {
        RouterAction::Restart => {
            let grace = ctx.sc.router.shutdown_grace_ms.unwrap_or(5000) + 5000;
            let code = ctx.env.router.stop(Duration::from_millis(grace)).await;
            let client = ctx.env.client.clone();
            let started = ctx.env.router.start(&client).await;
            ctx.obs(i, "router", json!({"restart_exit_code": code, "started": started.is_ok()}));
            if code != Some(0) {
                ctx.fail(i, "router", format!("exit code on SIGTERM {code:?}, expected 0"));
            }
            if let Err(e) = started {
                ctx.fail(i, "router", format!("restart failed: {e:#}"));
            }
        }
        RouterAction::Sigterm => {
            ctx.env.router.sigterm();
            ctx.obs(i, "router", json!("sigterm"));
        }
        RouterAction::ExpectExit { code, within_ms } => {
            let got = ctx.env.router.wait_exit(Duration::from_millis(*within_ms)).await;
            match got {
                Ok(c) => {
                    ctx.obs(i, "router", json!({"exit_code": c}));
                    if c != Some(*code) {
                        ctx.fail(i, "router", format!("exit code {c:?}, expected {code}"));
                    }
                }
                Err(e) => {
                    ctx.obs(i, "router", json!({"exit_code": "running"}));
                    ctx.fail(i, "router", format!("router {e}"));
                }
            }
        }
        RouterAction::ExpectRssBelow { bytes } => {
            let peak = ctx.env.router.sample_rss();
            ctx.obs(i, "router", json!({"rss_below": peak < *bytes}));
            if peak >= *bytes {
                ctx.fail(i, "router", format!("peak RSS {peak} bytes, expected below {bytes}"));
            }
        }
        RouterAction::Sighup => {
            ctx.env.router.sighup();
            ctx.obs(i, "router", json!("sighup"));
        }
        RouterAction::SwapTlsCert | RouterAction::BreakTlsCert => {
            let broken = matches!(a, RouterAction::BreakTlsCert);
            let res = match &ctx.env.pki {
                Some(p) => p.swap_server_cert(broken).map_err(|e| format!("{e:#}")),
                None => Err("the router has no TLS listener (router.tls)".into()),
            };
            ctx.obs(i, "router", json!({"tls_cert_replaced": res.is_ok(), "broken": broken}));
            if let Err(e) = res {
                ctx.fail(i, "router", format!("replacing the TLS files: {e}"));
            }
        }
        RouterAction::SwapClientCa => {
            let res = match &ctx.env.pki {
                Some(p) => p.swap_client_ca().map_err(|e| format!("{e:#}")),
                None => Err("the router has no TLS listener (router.tls)".into()),
            };
            ctx.obs(i, "router", json!({"client_ca_replaced": res.is_ok()}));
            if let Err(e) = res {
                ctx.fail(i, "router", format!("replacing the client CA file: {e}"));
            }
        }
        RouterAction::ExpectRefused => {
            let r = tokio::net::TcpStream::connect(addr(ctx.env.router.listen_port)).await;
            let refused = matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused);
            ctx.obs(i, "router", json!({"refused": refused}));
            if !refused {
                ctx.fail(i, "router", format!("data-plane port not refusing: {r:?}"));
            }
        }
    }
}
