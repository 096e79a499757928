//! Building Pingora `HttpPeer`s for a placement's endpoints (docs/spec.md sections 1, 3).
//!
//! One template per endpoint, built when the placement is (re)built: address resolved
//! once, `PeerOptions.connection_timeout = connect_ms`, `idle_timeout = 60 s` (the pool
//! rule of section 1), no `read_timeout` (the header deadline `request_ms` is enforced by
//! the proxy, see `proxy.rs`), and for `https://` the CA file, client certificate and the
//! SNI/verified name. The SNI is never empty: Pingora's rustls connector turns an empty SNI
//! into "skip all verification", which the contract forbids, so an absent or empty
//! `server_name` becomes the endpoint host.

use crate::config::{EndpointCfg, Placement, TlsCfg};
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{CertKey, WrappedX509};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// Idle time after which pooled upstream connections are closed (spec section 1).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Most idle upstream connections kept (spec section 1, `ServerConf.upstream_keepalive_pool_size`;
/// Pingora keeps one LRU for all endpoints). Sized above any concurrency one process can
/// hold (every in-flight request is a client and an upstream descriptor), so the count
/// never closes a connection that the next burst of requests needs: with the former 256,
/// 1024 client connections made the pool close and reopen an upstream connection for
/// 0.3-0.45 requests in 1 (issue 14). Idle connections still close after
/// [`POOL_IDLE_TIMEOUT`].
pub const POOL_MAX_IDLE: usize = 16384;

/// The L4 buffers of a client connection: no read buffer in front of the socket (the
/// HTTP/1 session reads the head into its own 4 KiB buffer and bodies into their own), and
/// Pingora's default write buffer of one segment (1460 bytes). Pingora's default read
/// buffer of 64 KiB is allocated per accepted connection and held while it is idle
/// (issue 14: idle keep-alive memory).
pub fn client_l4_buffers() -> pingora::listeners::L4BufferSettings {
    pingora::listeners::L4BufferSettings::new(0, pingora::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE)
}

/// The peer template of a placement, or why it cannot be built (DNS failure, unreadable
/// TLS material). A placement whose peer cannot be built fails every connect attempt.
pub type PeerResult = Result<HttpPeer, String>;

fn read_pem_certs(path: &str) -> Result<Vec<Vec<u8>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?;
    let mut rd = std::io::BufReader::new(&data[..]);
    let certs: Vec<Vec<u8>> = rustls_pemfile::certs(&mut rd)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("parsing {path}: {e}"))?
        .into_iter()
        .map(|c| c.to_vec())
        .collect();
    if certs.is_empty() {
        return Err(format!("{path}: no PEM certificates"));
    }
    Ok(certs)
}

fn read_pem_key(path: &str) -> Result<Vec<u8>, String> {
    let data = std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?;
    let mut rd = std::io::BufReader::new(&data[..]);
    match rustls_pemfile::private_key(&mut rd) {
        Ok(Some(k)) => Ok(k.secret_der().to_vec()),
        Ok(None) => Err(format!("{path}: no PEM private key")),
        Err(e) => Err(format!("parsing {path}: {e}")),
    }
}

/// Resolve `host:port` once (first address). Blocking DNS for names; IP literals do not
/// touch the network.
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolving {host}: no address"))
}

/// The name sent as SNI and verified for endpoint `e` of `p`: `tls.server_name`, or the
/// endpoint host when absent or empty.
pub fn tls_name(p: &Placement, e: &EndpointCfg) -> String {
    match p.tls.as_ref().and_then(|t| t.server_name.as_deref()) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => e.origin.host.clone(),
    }
}

fn apply_tls(peer: &mut HttpPeer, tls: &TlsCfg) -> Result<(), String> {
    if let Some(ca) = &tls.ca_file {
        let certs = read_pem_certs(ca)?;
        let wrapped: Vec<WrappedX509> = certs
            .into_iter()
            .map(|der| {
                // Validate before handing to Pingora, whose parser panics on bad DER.
                x509_ok(&der)?;
                Ok(WrappedX509::new(der, pingora::utils::tls::parse_x509))
            })
            .collect::<Result<_, String>>()?;
        peer.options.ca = Some(Arc::from(wrapped.into_boxed_slice()));
    }
    if let (Some(c), Some(k)) = (&tls.client_cert_file, &tls.client_key_file) {
        let certs = read_pem_certs(c)?;
        for der in &certs {
            x509_ok(der)?;
        }
        let key = read_pem_key(k)?;
        peer.client_cert_key = Some(Arc::new(CertKey::new(certs, key)));
    }
    Ok(())
}

fn x509_ok(der: &[u8]) -> Result<(), String> {
    // Cheap structural check: a DER SEQUENCE. Full parsing happens in rustls later.
    if der.len() < 4 || der[0] != 0x30 {
        return Err("certificate is not DER".into());
    }
    Ok(())
}

/// The connection-pool group of an endpoint (spec section 1, "Pool identity"): hash of
/// placement id, url, timeouts and `tls` block, the Go router's rule for keeping an
/// upstream Transport (`upstream.Same`). Pingora's pool is keyed by peer and group key and
/// outlives config versions, so an endpoint removed and added again finds its idle
/// connections; other timeouts are another pool, as the Go router builds another Transport
/// for them (found by parity chaos: a reset after delivery on a connection one router had
/// reused and the other had not was retried by one only).
pub fn pool_group(p: &Placement, e: &EndpointCfg) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    p.id.hash(&mut h);
    e.url.hash(&mut h);
    p.connect_ms.hash(&mut h);
    p.request_ms.hash(&mut h);
    format!("{:?}", p.tls).hash(&mut h);
    p.protocol.hash(&mut h);
    h.finish()
}

/// Streams one upstream h2 connection carries at once (`protocol: h2`) before Pingora's
/// connector opens another: Pingora's own server default for `SETTINGS_MAX_CONCURRENT_STREAMS`.
pub const H2_STREAMS_PER_CONNECTION: usize = 100;

/// Build the peer template of endpoint `e` of placement `p`.
pub fn build_peer(p: &Placement, e: &EndpointCfg) -> PeerResult {
    let addr = resolve(&e.origin.host, e.origin.port)?;
    let tls = e.origin.tls;
    let sni = if tls { tls_name(p, e) } else { String::new() };
    let mut peer = HttpPeer::new(addr, tls, sni);
    // Pingora's pool key is address + scheme + SNI (+ client cert): without a group key a
    // placement without a CA file could reuse a connection another placement verified
    // against its own CA. One pool per endpoint of a placement (Pingora's connection pool
    // is per peer; Go keeps one Transport per endpoint), stable across config updates that
    // keep the same id, url and TLS settings.
    peer.group_key = pool_group(p, e);
    peer.options.connection_timeout = Some(Duration::from_millis(p.connect_ms));
    peer.options.idle_timeout = Some(POOL_IDLE_TIMEOUT);
    peer.options.read_timeout = None;
    peer.options.write_timeout = None;
    // Any Upgrade protocol may become a tunnel (spec section 3), not only WebSocket:
    // Pingora then leaves upgrade requests alone and `upstream_request_filter` normalises
    // their hop-by-hop fields itself (Connection: Upgrade plus the Upgrade value).
    peer.options.http_upstream_request_policy.h1_upgrade =
        pingora::upstreams::peer::H1UpgradePolicy::Preserve;
    // Pingora would refuse a request whose `Connection` names `Host` or an
    // `X-Forwarded-*` field; the contract strips the named fields and forwards, which
    // `upstream_request_filter` does (the router then sets those fields itself).
    peer.options.http_upstream_request_policy.strip_connection_nominated = false;
    if tls {
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
        if let Some(t) = &p.tls {
            apply_tls(&mut peer, t)?;
        }
        // `protocol: h2` (spec section 3, *Upstream HTTP/2*): ALPN offers h2 alone; Pingora
        // keeps the h2 connection in its connector's pool (per peer and group key) and
        // multiplexes up to `H2_STREAMS_PER_CONNECTION` streams on it before opening another.
        if p.protocol == crate::config::UpstreamProtocol::H2 {
            peer.options.set_http_version(2, 2);
            peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
    }
    Ok(peer)
}
