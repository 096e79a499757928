//! TLS on the router's data listener (issue 15), the client side: the test PKI made at
//! run time, the client transports ([`Transport`]), the client's TLS configurations and
//! the handshake probe of `tls` steps ([`probe`]).
//!
//! Nothing private is committed: [`TestPki::generate`] makes every key with rcgen when a
//! run needs it and writes them into the run's temp dir, which the run removes.

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// How the client talks to the router's data port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize, JsonSchema, clap::ValueEnum)]
pub enum Transport {
    /// Plain HTTP/1.1 over TCP (the default; the router runs without TLS).
    #[default]
    #[serde(rename = "h1")]
    #[value(name = "h1")]
    H1,
    /// The same HTTP/1.1 bytes over TLS (ALPN `http/1.1`); the router runs with
    /// `--tls-cert`/`--tls-key`.
    #[serde(rename = "h1+tls")]
    #[value(name = "h1+tls")]
    H1Tls,
    /// Each request sent as an HTTP/2 stream over TLS (ALPN `h2`), one connection per
    /// request (RFC 9113).
    #[serde(rename = "h2+tls")]
    #[value(name = "h2+tls")]
    H2Tls,
}

impl Transport {
    /// The name used in scenario files, reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Transport::H1 => "h1",
            Transport::H1Tls => "h1+tls",
            Transport::H2Tls => "h2+tls",
        }
    }

    /// Whether the router's listener must be TLS for this transport.
    pub fn needs_tls(self) -> bool {
        self != Transport::H1
    }

    /// The ALPN protocol the client offers (none for plain HTTP/1.1).
    pub fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            Transport::H1 => vec![],
            Transport::H1Tls => vec![b"http/1.1".to_vec()],
            Transport::H2Tls => vec![b"h2".to_vec()],
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The transport scenario `sc` runs over: `chosen` (`--transport`), else the first of its
/// `transports`, else `h1`.
pub fn transport_of(sc: &crate::scenario::Scenario, chosen: Option<Transport>) -> Transport {
    chosen.or_else(|| sc.transports.as_ref().and_then(|t| t.first().copied())).unwrap_or_default()
}

/// `sc` as run over `t`: a TLS transport gives the router a TLS listener (`router.tls`
/// without client certificates) when the scenario has none.
pub fn for_transport(sc: &crate::scenario::Scenario, t: Transport) -> crate::scenario::Scenario {
    let mut sc = sc.clone();
    if t.needs_tls() && sc.router.tls.is_none() {
        sc.router.tls = Some(Default::default());
    }
    sc
}

/// Header fields whose meaning is HTTP/1.1's connection handling (RFC 9113 §8.2.2), or an
/// upgrade or a `100-continue` exchange: a send naming one checks HTTP/1.1 behaviour.
const H1_FIELDS: [&str; 7] = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "expect"];

/// Whether scenario `sc` runs over `t`. A scenario listing `transports` runs over those.
/// Otherwise every scenario runs over `h1`, and over `h1+tls` and `h2+tls` unless it is
/// about HTTP/1.1 itself: it has a TLS block of its own (TLS scenarios list their
/// transports), a `send` with raw bytes (`raw`, `raw_writes`: malformed requests,
/// pipelining), a tunnel write, a padded head, a `read_delay_ms`, byte-exact response
/// checks (`expect.responses`) or connection-end checks (`expect.connection`), a
/// request or expected response header of [`H1_FIELDS`], or an upstream whose behaviour
/// is raw bytes or an upgrade (response framing under test). Over `h2+tls` also not with
/// `read_chunks` or a `wait` on `background_chunks` (chunk counts are HTTP/1.1 reads).
pub fn applies(sc: &crate::scenario::Scenario, t: Transport) -> bool {
    use crate::scenario::{Behaviour, Step};
    if let Some(ts) = &sc.transports {
        return ts.contains(&t);
    }
    if t == Transport::H1 {
        return true;
    }
    if sc.router.tls.is_some() {
        return false;
    }
    let h1_behaviour = |b: &Behaviour| matches!(b, Behaviour::Raw(_) | Behaviour::Upgrade);
    if sc.upstreams.values().any(|u| h1_behaviour(&u.behaviour)) {
        return false;
    }
    let named = |k: &String| H1_FIELDS.contains(&k.to_ascii_lowercase().as_str());
    for step in &sc.steps {
        match step {
            Step::Send(s) => {
                let e = &s.expect;
                if crate::client::is_raw(s)
                    || s.tunnel_write.is_some()
                    || s.pad_header_bytes.is_some()
                    || s.read_delay_ms > 0
                    || e.responses.is_some()
                    || e.connection.is_some()
                    || s.headers.keys().any(named)
                    || e.headers.keys().any(named)
                    || (t == Transport::H2Tls && s.read_chunks.is_some())
                {
                    return false;
                }
            }
            Step::Upstream(u) if u.behaviour.as_ref().is_some_and(h1_behaviour) => return false,
            Step::Wait(w) if t == Transport::H2Tls && w.background_chunks.is_some() => return false,
            _ => {}
        }
    }
    true
}

/// Which certificate the client presents in a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientCert {
    /// None.
    #[default]
    None,
    /// One signed by the run's CA (the `--client-ca` the router is given).
    Good,
    /// One signed by an unrelated CA.
    WrongCa,
    /// One signed by the run's second CA (`next`), which `router: swap_client_ca` makes
    /// the router's `--client-ca`.
    NextCa,
}

/// The run's certificates: a CA, the router's certificate for `localhost` and
/// `127.0.0.1` (and a second one, "next", for the reload scenario), a client certificate
/// from the same CA, an unrelated CA with its own client certificate, and a second CA
/// ("next CA", for the client CA reload scenario) with its own client certificate. PEM
/// files in [`TestPki::dir`]; the router reads `server.pem`/`server.key` (`--tls-cert`,
/// `--tls-key`) and `ca.pem` (`--client-ca`).
pub struct TestPki {
    /// Where the files are.
    pub dir: PathBuf,
    ca: CertificateDer<'static>,
    server: CertificateDer<'static>,
    next_server: CertificateDer<'static>,
    client: (CertificateDer<'static>, Vec<u8>),
    wrong_client: (CertificateDer<'static>, Vec<u8>),
    next_client: (CertificateDer<'static>, Vec<u8>),
}

/// The common names of the run's CAs and the names [`CaHints::names`] gives them.
const CA_NAMES: [(&str, &str); 3] = [("parity test CA", "ca"), ("parity unrelated CA", "wrong_ca"), ("parity next CA", "next_ca")];

/// A key pair and its certificate signed by an issuer (or self-signed for a CA).
struct Made {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn ca(name: &str) -> Result<(rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    let cert = p.self_signed(&key)?;
    Ok((cert, rcgen::Issuer::new(p, key)))
}

fn leaf(names: &[&str], cn: &str, client: bool, issuer: &rcgen::Issuer<'static, rcgen::KeyPair>) -> Result<Made> {
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair};
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.extended_key_usages = vec![if client { ExtendedKeyUsagePurpose::ClientAuth } else { ExtendedKeyUsagePurpose::ServerAuth }];
    let cert = p.signed_by(&key, issuer)?;
    Ok(Made { cert, key })
}

impl TestPki {
    /// Makes every key and certificate and writes them under `dir` (created):
    /// `ca.pem`, `server.pem`, `server.key`, `server-next.pem`, `server-next.key`,
    /// `client.pem`, `client.key`, `wrong-ca.pem`, `wrong-client.pem`, `wrong-client.key`,
    /// `next-ca.pem`, `next-client.pem`, `next-client.key`.
    /// Keys are ECDSA P-256 in PKCS#8 PEM.
    pub fn generate(dir: &Path) -> Result<TestPki> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let (ca_made, issuer) = ca(CA_NAMES[0].0)?;
        let (wrong_made, wrong_issuer) = ca(CA_NAMES[1].0)?;
        let (next_made, next_issuer) = ca(CA_NAMES[2].0)?;
        let names = ["localhost", "127.0.0.1"];
        let server = leaf(&names, "parity router", false, &issuer)?;
        let next = leaf(&names, "parity router (next)", false, &issuer)?;
        let client = leaf(&[], "parity client", true, &issuer)?;
        let wrong = leaf(&[], "parity client (wrong CA)", true, &wrong_issuer)?;
        let next_client = leaf(&[], "parity client (next CA)", true, &next_issuer)?;
        let w = |name: &str, text: String| std::fs::write(dir.join(name), text).with_context(|| format!("write {name}"));
        w("ca.pem", ca_made.pem())?;
        w("wrong-ca.pem", wrong_made.pem())?;
        w("next-ca.pem", next_made.pem())?;
        for (stem, m) in [("server", &server), ("server-next", &next), ("client", &client), ("wrong-client", &wrong), ("next-client", &next_client)] {
            w(&format!("{stem}.pem"), m.cert.pem())?;
            w(&format!("{stem}.key"), m.key.serialize_pem())?;
        }
        Ok(TestPki {
            dir: dir.to_path_buf(),
            ca: ca_made.der().clone(),
            server: server.cert.der().clone(),
            next_server: next.cert.der().clone(),
            client: (client.cert.der().clone(), client.key.serialize_der()),
            wrong_client: (wrong.cert.der().clone(), wrong.key.serialize_der()),
            next_client: (next_client.cert.der().clone(), next_client.key.serialize_der()),
        })
    }

    /// `--tls-cert`.
    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    /// `--tls-key`.
    pub fn key_file(&self) -> PathBuf {
        self.dir.join("server.key")
    }
    /// `--client-ca`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Replaces the router's certificate files (`server.pem`, `server.key`) with the
    /// "next" certificate (each file written aside and renamed over, so the router never
    /// reads half a file), or with text that is not PEM when `broken`.
    pub fn swap_server_cert(&self, broken: bool) -> Result<()> {
        for (src, dst) in [("server-next.pem", "server.pem"), ("server-next.key", "server.key")] {
            let text = if broken { b"not a PEM file\n".to_vec() } else { std::fs::read(self.dir.join(src))? };
            let tmp = self.dir.join(format!("{dst}.tmp"));
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, self.dir.join(dst))?;
        }
        Ok(())
    }

    /// Replaces the router's `--client-ca` file (`ca.pem`) with the second CA
    /// (`next-ca.pem`), written aside and renamed over. The server certificates stay signed
    /// by the first CA (clients keep trusting the router): only which client certificates
    /// the router accepts changes, after its reload.
    pub fn swap_client_ca(&self) -> Result<()> {
        let tmp = self.dir.join("ca.pem.tmp");
        std::fs::write(&tmp, std::fs::read(self.dir.join("next-ca.pem"))?)?;
        std::fs::rename(&tmp, self.ca_file())?;
        Ok(())
    }

    /// Which of the run's server certificates `der` is: `initial`, `next` or `other`.
    pub fn which_server_cert(&self, der: &[u8]) -> &'static str {
        if der == self.server.as_ref() {
            "initial"
        } else if der == self.next_server.as_ref() {
            "next"
        } else {
            "other"
        }
    }

    /// A client configuration trusting the run's CA, presenting `cert`, offering `alpn`
    /// (in order; empty: no ALPN extension), limited to TLS `version` (`Some(12)`,
    /// `Some(13)`) or both, with its own in-memory session cache (tickets on, so a second
    /// connection with the same configuration tries to resume).
    pub fn client_config(&self, cert: ClientCert, alpn: &[Vec<u8>], version: Option<u8>) -> Result<Arc<rustls::ClientConfig>> {
        Ok(self.client_config_with_hints(cert, alpn, version)?.0)
    }

    /// [`TestPki::client_config`], and what its handshakes record of the server's
    /// CertificateRequest ([`CaHints`]).
    pub fn client_config_with_hints(&self, cert: ClientCert, alpn: &[Vec<u8>], version: Option<u8>) -> Result<(Arc<rustls::ClientConfig>, CaHints)> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match version {
            Some(12) => &[&rustls::version::TLS12],
            Some(13) => &[&rustls::version::TLS13],
            _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let b = rustls::ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?.with_root_certificates(roots);
        let pair = match cert {
            ClientCert::None => None,
            ClientCert::Good => Some(&self.client),
            ClientCert::WrongCa => Some(&self.wrong_client),
            ClientCert::NextCa => Some(&self.next_client),
        };
        let key = match pair {
            None => None,
            Some((c, k)) => {
                let signer = provider.key_provider.load_private_key(PrivateKeyDer::Pkcs8(k.clone().into()))?;
                Some(Arc::new(rustls::sign::CertifiedKey::new(vec![c.clone()], signer)))
            }
        };
        let hints = CaHints::default();
        let resolver = Recorder { key, hints: hints.clone() };
        let mut cfg = b.with_client_cert_resolver(Arc::new(resolver));
        cfg.alpn_protocols = alpn.to_vec();
        Ok((Arc::new(cfg), hints))
    }
}

/// The CA names (RFC 8446 §4.2.4 `certificate_authorities`; TLS 1.2: RFC 5246 §7.4.4
/// `certificate_authorities`) of the last CertificateRequest a client configuration of
/// [`TestPki::client_config_with_hints`] received: `None` until the server asks for a
/// certificate, then the DER distinguished names it listed (possibly none).
#[derive(Debug, Clone, Default)]
pub struct CaHints(Arc<std::sync::Mutex<Option<Vec<Vec<u8>>>>>);

impl CaHints {
    /// Takes what was recorded (the next handshake starts from `None`).
    pub fn take(&self) -> Option<Vec<Vec<u8>>> {
        self.0.lock().expect("hints lock").take()
    }

    /// The run's CA each of `names` is (`ca`, `wrong_ca`, `next_ca`), found by its
    /// common name in the DER; `other` for a name that is none of them.
    pub fn names(names: &[Vec<u8>]) -> Vec<String> {
        names
            .iter()
            .map(|dn| {
                let hit = CA_NAMES.iter().find(|(cn, _)| dn.windows(cn.len()).any(|w| w == cn.as_bytes()));
                hit.map_or("other", |(_, n)| n).to_string()
            })
            .collect()
    }
}

/// rustls client certificate resolver: presents the configured certificate (if any)
/// whatever the server asks for, and records the CA names of the request.
#[derive(Debug)]
struct Recorder {
    key: Option<Arc<rustls::sign::CertifiedKey>>,
    hints: CaHints,
}

impl rustls::client::ResolvesClientCert for Recorder {
    fn resolve(&self, root_hint_subjects: &[&[u8]], _sigschemes: &[rustls::SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
        *self.hints.0.lock().expect("hints lock") = Some(root_hint_subjects.iter().map(|s| s.to_vec()).collect());
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// Connects to `addr` and completes a TLS handshake with `cfg` (server name
/// `localhost`).
pub async fn connect(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("localhost").expect("valid name");
    tokio_rustls::TlsConnector::from(cfg).connect(name, tcp).await
}

/// What one TLS connection of a `tls` step showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handshake {
    /// The handshake completed and the server did not end the connection with an alert
    /// within [`PROBE_READ`] (TLS 1.3 servers verify a client certificate after the
    /// client's handshake is over, so a refusal arrives as the first read).
    pub ok: bool,
    /// The alert the server sent, by its RFC 8446 §6 name as rustls spells it
    /// (`CertificateRequired`, `UnknownCA`, ...), or `closed`/`reset`/`io` when the
    /// connection ended without one.
    pub alert: Option<String>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<String>,
    /// The session was resumed (rustls's handshake kind).
    pub resumed: bool,
    /// `1.2` or `1.3`.
    pub version: Option<String>,
    /// Which certificate the server presented ([`TestPki::which_server_cert`]).
    pub server_cert: Option<String>,
}

/// How long [`probe`] reads after the handshake, for an alert (and session tickets).
pub const PROBE_READ: Duration = Duration::from_millis(300);

/// Connects with `cfg`, completes the handshake, then reads for [`PROBE_READ`] (which
/// also takes in TLS 1.3 session tickets): the outcome. Never fails.
pub async fn probe(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, pki: &TestPki) -> Handshake {
    let mut h = Handshake { ok: false, alert: None, alpn: None, resumed: false, version: None, server_cert: None };
    let mut s = match tokio::time::timeout(Duration::from_secs(5), connect(addr, cfg)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            h.alert = Some(alert_of(&e));
            return h;
        }
        Err(_) => {
            h.alert = Some("timeout".into());
            return h;
        }
    };
    {
        let (_, c) = s.get_ref();
        h.alpn = c.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
        h.resumed = c.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        h.version = c.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_2 => "1.2".to_string(),
            rustls::ProtocolVersion::TLSv1_3 => "1.3".to_string(),
            o => format!("{o:?}"),
        });
        h.server_cert = c.peer_certificates().and_then(|cs| cs.first()).map(|d| pki.which_server_cert(d).to_string());
    }
    let deadline = tokio::time::Instant::now() + PROBE_READ;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => {
                h.ok = true;
                return h;
            }
            Ok(Ok(0)) => {
                h.alert = Some("closed".into());
                return h;
            }
            Ok(Ok(_)) => {} // h2 SETTINGS, or anything the server says first
            Ok(Err(e)) => {
                h.alert = Some(alert_of(&e));
                return h;
            }
        }
    }
}

/// The alert name in an I/O error from tokio-rustls, or a kind of connection end.
pub fn alert_of(e: &std::io::Error) -> String {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return match inner {
            rustls::Error::AlertReceived(a) => format!("{a:?}"),
            o => format!("tls: {o}"),
        };
    }
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => "reset".into(),
        std::io::ErrorKind::UnexpectedEof => "closed".into(),
        _ => "io".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rustls server over the PKI's files, as a router would load them, with client
    /// certificates required when `client_auth`.
    fn server(pki: &TestPki, client_auth: bool) -> tokio_rustls::TlsAcceptor {
        use rustls::pki_types::pem::PemObject;
        let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(pki.cert_file()).unwrap().map(|c| c.unwrap()).collect();
        let key = PrivateKeyDer::from_pem_file(pki.key_file()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
        let mut cfg = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(pki.ca_file()).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
            b.with_client_cert_verifier(v).with_single_cert(certs, key).unwrap()
        } else {
            b.with_no_client_auth().with_single_cert(certs, key).unwrap()
        };
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        cfg.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    }

    async fn serve(acc: tokio_rustls::TlsAcceptor) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let acc = acc.clone();
                tokio::spawn(async move {
                    if let Ok(mut t) = acc.accept(s).await {
                        let mut b = [0u8; 64];
                        let _ = t.read(&mut b).await;
                    }
                });
            }
        });
        a
    }

    #[test]
    fn transports_parse_by_their_names() {
        use clap::ValueEnum;
        for t in [Transport::H1, Transport::H1Tls, Transport::H2Tls] {
            assert_eq!(Transport::from_str(t.name(), false).unwrap(), t);
            assert_eq!(serde_yaml_ng::from_str::<Transport>(t.name()).unwrap(), t);
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(t.name()));
        }
        assert!(Transport::from_str("h2", false).is_err());
        assert!(!Transport::H1.needs_tls() && Transport::H2Tls.needs_tls());
        assert_eq!(Transport::H2Tls.alpn(), vec![b"h2".to_vec()]);
    }

    fn scenario(yaml: &str) -> crate::scenario::Scenario {
        crate::scenario::load::parse(yaml, Path::new("t.yaml")).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn transport_selection_follows_the_default_rule() {
        let plain = scenario("id: a\ndescription: d\nsteps:\n  - send: {key: k, expect: {status: 200}}\n");
        for t in [Transport::H1, Transport::H1Tls, Transport::H2Tls] {
            assert!(applies(&plain, t), "{t}");
        }
        assert_eq!(transport_of(&plain, None), Transport::H1);
        assert_eq!(transport_of(&plain, Some(Transport::H2Tls)), Transport::H2Tls);
        assert!(for_transport(&plain, Transport::H2Tls).router.tls.is_some());
        assert!(for_transport(&plain, Transport::H1).router.tls.is_none());
        let raw = scenario("id: a\ndescription: d\nsteps:\n  - send: {raw: \"GET / HTTP/1.1\\r\\n\\r\\n\"}\n");
        assert!(applies(&raw, Transport::H1) && !applies(&raw, Transport::H1Tls) && !applies(&raw, Transport::H2Tls));
        let upgrade = scenario("id: a\ndescription: d\nsteps:\n  - send: {headers: {Upgrade: websocket}}\n");
        assert!(!applies(&upgrade, Transport::H2Tls));
        let conn = scenario("id: a\ndescription: d\nsteps:\n  - send: {expect: {connection: eof}}\n");
        assert!(!applies(&conn, Transport::H1Tls));
        let chunks = scenario("id: a\ndescription: d\nsteps:\n  - send: {read_chunks: 3}\n");
        assert!(applies(&chunks, Transport::H1Tls) && !applies(&chunks, Transport::H2Tls));
        let raw_up = scenario("id: a\ndescription: d\nupstreams: {u: {behaviour: {raw: {bytes: x}}}}\nsteps: []\n");
        assert!(!applies(&raw_up, Transport::H2Tls));
        let listed = scenario("id: a\ndescription: d\ntransports: [h2+tls]\nrouter: {tls: {client_ca: true}}\nsteps: []\n");
        assert!(!applies(&listed, Transport::H1) && applies(&listed, Transport::H2Tls) && !applies(&listed, Transport::H1Tls));
        assert_eq!(transport_of(&listed, None), Transport::H2Tls);
        assert_eq!(for_transport(&listed, Transport::H2Tls).router.tls, Some(crate::scenario::TlsSpec { client_ca: true }));
    }

    #[test]
    fn pki_files_are_pem_and_chain_to_their_cas() {
        let d = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(d.path()).unwrap();
        for f in ["ca.pem", "server.pem", "server-next.pem", "client.pem", "wrong-ca.pem", "wrong-client.pem"] {
            assert!(std::fs::read_to_string(d.path().join(f)).unwrap().starts_with("-----BEGIN CERTIFICATE-----"), "{f}");
        }
        for f in ["server.key", "server-next.key", "client.key", "wrong-client.key"] {
            assert!(std::fs::read_to_string(d.path().join(f)).unwrap().contains("PRIVATE KEY-----"), "{f}");
        }
        assert_eq!(pki.which_server_cert(&pki.server), "initial");
        assert_eq!(pki.which_server_cert(&pki.next_server), "next");
        assert_eq!(pki.which_server_cert(&pki.ca), "other");
        pki.swap_server_cert(false).unwrap();
        assert_eq!(std::fs::read(d.path().join("server.pem")).unwrap(), std::fs::read(d.path().join("server-next.pem")).unwrap());
        pki.swap_server_cert(true).unwrap();
        assert!(!std::fs::read_to_string(d.path().join("server.key")).unwrap().contains("BEGIN"));
        let before = std::fs::read(pki.ca_file()).unwrap();
        pki.swap_client_ca().unwrap();
        let after = std::fs::read(pki.ca_file()).unwrap();
        assert_ne!(before, after);
        assert_eq!(after, std::fs::read(d.path().join("next-ca.pem")).unwrap());
        assert!(!d.path().join("ca.pem.tmp").exists());
    }

    #[tokio::test]
    async fn probe_sees_alpn_resumption_and_client_cert_outcomes() {
        let d = tempfile::tempdir().unwrap();
        let pki = TestPki::generate(d.path()).unwrap();
        let open = serve(server(&pki, false)).await;
        let both = [b"h2".to_vec(), b"http/1.1".to_vec()];
        let cfg = pki.client_config(ClientCert::None, &both, None).unwrap();
        let first = probe(open, cfg.clone(), &pki).await;
        assert!(first.ok, "{first:?}");
        assert_eq!(first.alpn.as_deref(), Some("h2"));
        assert_eq!(first.server_cert.as_deref(), Some("initial"));
        assert!(!first.resumed);
        let second = probe(open, cfg, &pki).await;
        assert!(second.ok && second.resumed, "{second:?}");
        let h1 = probe(open, pki.client_config(ClientCert::None, &[b"http/1.1".to_vec()], Some(12)).unwrap(), &pki).await;
        assert_eq!((h1.alpn.as_deref(), h1.version.as_deref()), (Some("http/1.1"), Some("1.2")));
        let none = probe(open, pki.client_config(ClientCert::None, &[], None).unwrap(), &pki).await;
        assert!(none.ok && none.alpn.is_none());

        let mtls = serve(server(&pki, true)).await;
        let good = probe(mtls, pki.client_config(ClientCert::Good, &both, None).unwrap(), &pki).await;
        assert!(good.ok, "{good:?}");
        // the CertificateRequest's CA names (rustls' WebPkiClientVerifier lists its roots),
        // over TLS 1.3 and 1.2; none recorded when no certificate is asked for
        for ver in [Some(13), Some(12)] {
            let (cfg, hints) = pki.client_config_with_hints(ClientCert::Good, &both, ver).unwrap();
            assert!(probe(mtls, cfg, &pki).await.ok);
            assert_eq!(CaHints::names(&hints.take().expect("no CertificateRequest")), vec!["ca"], "{ver:?}");
            assert!(hints.take().is_none());
        }
        let (cfg, hints) = pki.client_config_with_hints(ClientCert::Good, &both, None).unwrap();
        assert!(probe(open, cfg, &pki).await.ok);
        assert!(hints.take().is_none(), "a CertificateRequest from a server that asks for none");
        assert_eq!(CaHints::names(&[b"0\x11parity next CA".to_vec(), b"x".to_vec()]), vec!["next_ca", "other"]);
        // after the server's CA changes, the next CA's client is accepted
        std::fs::copy(d.path().join("next-ca.pem"), pki.ca_file()).unwrap();
        let next = serve(server(&pki, true)).await;
        assert!(probe(next, pki.client_config(ClientCert::NextCa, &both, None).unwrap(), &pki).await.ok);
        assert!(!probe(next, pki.client_config(ClientCert::Good, &both, None).unwrap(), &pki).await.ok);
        for (cert, ver) in [(ClientCert::None, Some(13)), (ClientCert::WrongCa, Some(13)), (ClientCert::None, Some(12)), (ClientCert::WrongCa, Some(12))] {
            let bad = probe(mtls, pki.client_config(cert, &both, ver).unwrap(), &pki).await;
            assert!(!bad.ok && bad.alert.is_some(), "{cert:?} {ver:?}: {bad:?}");
        }
    }
}
