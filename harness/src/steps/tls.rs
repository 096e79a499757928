//! `tls`: handshakes with the router's TLS listener ([`crate::tls::probe`]), one after the
//! other with one client configuration, so a later connection may resume the session of
//! an earlier one. The trace holds, per connection, the outcome, the ALPN protocol, the
//! version, whether it resumed and which certificate the router presented; the alert and
//! the CA names of the router's CertificateRequest only when the step expects them (stacks
//! may pick different alerts).
use super::Ctx;
use crate::scenario::{HandshakeExpect, TlsProbe, TlsVersion};
use serde_json::json;

/// Runs the handshakes and checks them.
pub async fn run(ctx: &mut Ctx<'_>, i: i64, t: &TlsProbe) {
    let Some(pki) = ctx.env.pki.as_ref() else {
        ctx.fail(i, "tls", "the router has no TLS listener (router.tls)".into());
        return;
    };
    let alpn: Vec<Vec<u8>> = t.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    let version = t.version.map(|v| match v {
        TlsVersion::V12 => 12,
        TlsVersion::V13 => 13,
    });
    let (cfg, hints) = match pki.client_config_with_hints(t.client_cert, &alpn, version) {
        Ok(c) => c,
        Err(e) => {
            ctx.fail(i, "tls", format!("client configuration: {e:#}"));
            return;
        }
    };
    let addr = ctx.env.data_addr();
    let mut seen = Vec::new();
    for _ in 0..t.connections {
        let h = crate::tls::probe(addr, cfg.clone(), pki).await;
        // the CA names of this connection's CertificateRequest; none asked: `[]`
        let names = crate::tls::CaHints::names(&hints.take().unwrap_or_default());
        seen.push((h, names));
    }
    let e = &t.expect;
    let mut fails = Vec::new();
    let mut obs = Vec::new();
    for (n, (h, names)) in seen.iter().enumerate() {
        let who = format!("connection {}: ", n + 1);
        let mut o = json!({
            "handshake": if h.ok { "ok" } else { "failed" },
            "alpn": h.alpn,
            "resumed": h.resumed,
            "version": h.version,
            "server_cert": h.server_cert,
        });
        if e.alert.is_some() {
            o["alert"] = json!(h.alert);
        }
        if e.ca_names.is_some() {
            o["ca_names"] = json!(names);
        }
        obs.push(o);
        if let Some(want) = e.handshake {
            if (want == HandshakeExpect::Ok) != h.ok {
                fails.push(format!("{who}handshake {}, expected {want:?} (alert {:?})", if h.ok { "ok" } else { "failed" }, h.alert));
            }
        }
        if let Some(want) = &e.alpn {
            if &h.alpn != want {
                fails.push(format!("{who}ALPN {:?}, expected {want:?}", h.alpn));
            }
        }
        if let Some(want) = e.resumed.as_ref().and_then(|r| r.get(n)) {
            if h.resumed != *want {
                fails.push(format!("{who}resumed {}, expected {want}", h.resumed));
            }
        }
        if let Some(want) = &e.server_cert {
            if h.server_cert.as_ref() != Some(want) {
                fails.push(format!("{who}server certificate {:?}, expected {want:?}", h.server_cert));
            }
        }
        if let Some(want) = &e.ca_names {
            if names != want {
                fails.push(format!("{who}CertificateRequest CA names {names:?}, expected {want:?}"));
            }
        }
        if let Some(want) = &e.alert {
            if h.alert.as_ref() != Some(want) {
                fails.push(format!("{who}alert {:?}, expected {want:?}", h.alert));
            }
        }
    }
    ctx.obs(i, "tls", json!({"connections": obs}));
    for f in fails {
        ctx.fail(i, "tls", f);
    }
}
