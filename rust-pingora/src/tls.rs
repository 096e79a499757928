//! The TLS data listener (docs/spec.md §1 flags, §3 "TLS and HTTP/2 on the listener", §7
//! metrics) on Pingora's rustls listener (`pingora::listeners::tls::TlsSettings`).
//!
//! - TLS 1.2 and 1.3 (what `TlsSettings::build` allows), ALPN `h2` then `http/1.1`
//!   (`TlsSettings::enable_h2`); a client offering no ALPN gets HTTP/1.1.
//! - The certificate comes from a [`ResolvesServerCert`] ([`CertResolver`]) reading the
//!   current [`Reloadable`] state, so a SIGHUP ([`ReloadOnHup`], a Pingora background
//!   service) swaps it for new handshakes without touching open connections.
//! - `--client-ca`: a [`ClientCertVerifier`] ([`ClientVerifier`]) delegating to rustls'
//!   `WebPkiClientVerifier` built from the current CA bundle; a missing or untrusted client
//!   certificate fails the handshake (rustls sends `certificate_required` for a missing one,
//!   over TLS 1.2 too, where Go sends `handshake_failure`; `unknown_ca` for an untrusted
//!   one).
//!   The CertificateRequest names the current bundle's CAs (`certificate_authorities`,
//!   RFC 8446 §4.2.4, RFC 5246 §7.4.4), as Go's `ClientCAs` does.
//! - Session tickets: rustls' `crypto::ring::Ticketer` (TLS 1.2 tickets, RFC 5077, and
//!   TLS 1.3 tickets, RFC 8446 §4.6.1): ChaCha20-Poly1305 keys made at random in memory,
//!   a new key every 6 hours, the previous one still accepted, so a ticket is valid for
//!   at most 12 hours (the lifetime hint it carries); keys are per process (a restart
//!   invalidates every ticket) and survive a SIGHUP reload.
//! - Metrics: [`HandshakeMetrics`] is the listener's `TlsAccept` callback: completed
//!   handshakes by `resumed`, failed ones (the failure hook is a pingora-core patch,
//!   `rust-pingora/vendor/README.md`). [`FirstByte`], the listener's pre-TLS callback,
//!   keeps a connection that ends before its first byte (a port probe) out of the
//!   handshake, so it is not counted, as the spec says (Go's `tlslisten` does the same).

use crate::store::Store;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{PreTlsProcess, TlsAccept};
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Peek;
use pingora::protocols::tls::TlsRef;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use std::any::Any;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The files of `--tls-cert`, `--tls-key` and `--client-ca` (all PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
    /// CA bundle client certificates must chain to; `None`: no client certificate asked.
    pub client_ca: Option<PathBuf>,
}

/// One load of [`TlsFiles`]: what new handshakes use.
struct Loaded {
    key: Arc<CertifiedKey>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// The subjects of the client CA bundle, sent in the CertificateRequest. rustls borrows
    /// them from the verifier for as long as the verifier lives (the whole process), while
    /// a reload may replace them: each distinct list is kept for the process's life (one
    /// list per start and per reload that changes the CA subjects, a few hundred bytes).
    hints: &'static [DistinguishedName],
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn open(path: &Path) -> Result<BufReader<File>, String> {
    File::open(path).map(BufReader::new).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot parse {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certs)
}

/// Load a certificate chain and its private key; errors say which file and why (the key
/// must match the leaf certificate).
fn load_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let certs = read_certs(cert)?;
    let der = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|e| format!("cannot parse {}: {e}", key.display()))?
        .ok_or_else(|| format!("no private key in {}", key.display()))?;
    let signer = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("unusable private key in {}: {e}", key.display()))?;
    let ck = CertifiedKey::new(certs, signer);
    ck.keys_match()
        .map_err(|e| format!("{} does not match {}: {e}", key.display(), cert.display()))?;
    Ok(Arc::new(ck))
}

/// Build the client certificate verifier of a CA bundle (rustls `WebPkiClientVerifier`:
/// a client certificate is required and must chain to one of the bundle's CAs).
fn load_verifier(ca: &Path) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(ca)? {
        roots.add(c).map_err(|e| format!("bad CA certificate in {}: {e}", ca.display()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| format!("cannot use {} as client CA: {e}", ca.display()))
}

impl TlsFiles {
    /// Load the files; `previous`: the load they replace, whose CA subject list is reused
    /// when unchanged.
    fn load(&self, previous: Option<&Loaded>) -> Result<Loaded, String> {
        let key = load_key(&self.cert, &self.key)?;
        let verifier = self.client_ca.as_deref().map(load_verifier).transpose()?;
        let subjects = verifier.as_ref().map_or(&[][..], |v| v.root_hint_subjects());
        let hints = match previous {
            Some(p) if p.hints.iter().map(|d| d.as_ref()).eq(subjects.iter().map(|d| d.as_ref())) => p.hints,
            _ if subjects.is_empty() => &[],
            _ => Box::leak(subjects.to_vec().into_boxed_slice()),
        };
        Ok(Loaded { key, verifier, hints })
    }
}

/// The listener's TLS material, reloadable: the files and what was last loaded from them.
pub struct Reloadable {
    files: TlsFiles,
    current: ArcSwap<Loaded>,
}

impl Reloadable {
    /// Load `files` once. `Err`: the `<what>` of the contract's `error: tls: <what>` line
    /// (a file that cannot be read or parsed, a key that does not match the certificate).
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, String> {
        let loaded = files.load(None)?;
        Ok(Arc::new(Reloadable { files, current: ArcSwap::from_pointee(loaded) }))
    }

    /// Re-read the files; on success new handshakes use them, on error the previous
    /// material stays and the error is returned. Open connections are never touched.
    pub fn reload(&self) -> Result<(), String> {
        let loaded = self.files.load(Some(&**self.current.load()))?;
        self.current.store(Arc::new(loaded));
        Ok(())
    }

    /// The leaf certificate new handshakes present (DER).
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current.load().key.cert[0].clone()
    }
}

/// rustls certificate resolver over [`Reloadable`]: every handshake gets the current
/// certificate (one certificate, whatever the SNI).
#[derive(Clone)]
pub struct CertResolver(pub Arc<Reloadable>);

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertResolver({})", self.0.files.cert.display())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load().key.clone())
    }
}

/// rustls client certificate verifier over [`Reloadable`] (only built with `--client-ca`):
/// client authentication is offered and mandatory, each check is the current CA bundle's
/// `WebPkiClientVerifier`, and the CertificateRequest names the current bundle's CAs.
#[derive(Clone)]
pub struct ClientVerifier(pub Arc<Reloadable>);

impl std::fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientVerifier({:?})", self.0.files.client_ca)
    }
}

impl ClientVerifier {
    fn inner(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        self.0
            .current
            .load()
            .verifier
            .clone()
            .ok_or_else(|| rustls::Error::General("no client CA loaded".into()))
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.current.load().hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner()?.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

/// The listener's pre-TLS step (Pingora `PreTlsProcess`, run after accept and before the
/// handshake): wait for the connection's first byte, which stays in the stream for the
/// handshake (`Peek`, rewound). A connection that ends (or fails) before sending a byte
/// is dropped here, without a handshake: docs/spec.md §7, such a connection (a port
/// probe, a client that gave up) is no handshake error. The wait is bounded by
/// Pingora's 60 s limit on the whole downstream handshake, as the TLS handshake is.
pub struct FirstByte;

#[async_trait]
impl PreTlsProcess for FirstByte {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let mut first = [0u8; 1];
        match stream.try_peek(&mut first).await {
            Ok(_) => Ok(()),
            Err(e) => pingora::Error::e_because(
                pingora::ErrorType::ConnectionClosed,
                "closed before its first byte (no TLS handshake)",
                e,
            ),
        }
    }
}

/// The listener's handshake callbacks: count completed handshakes in
/// `router_tls_handshakes_total{resumed}` and failed ones in
/// `router_tls_handshake_errors_total` (a failure includes a client that closes during
/// its ClientHello; one that closes before its first byte never gets here, [`FirstByte`]).
pub struct HandshakeMetrics(pub Arc<Store>);

#[async_trait]
impl TlsAccept for HandshakeMetrics {
    async fn handshake_complete_callback(&self, tls: &TlsRef) -> Option<Arc<dyn Any + Send + Sync>> {
        self.0.metrics.count_tls_handshake(tls.resumed());
        None
    }

    async fn handshake_failed_callback(&self, _err: &pingora::Error) {
        self.0.metrics.tls_handshake_errors.inc();
    }
}

/// Pingora `TlsSettings` of the data listener for `reloadable` (see the module doc), the
/// handshakes counted in `store`'s metrics ([`HandshakeMetrics`]).
/// `Err`: rustls could not make a ticketer (no system randomness).
pub fn settings(reloadable: &Arc<Reloadable>, store: Arc<Store>) -> Result<TlsSettings, String> {
    settings_with(reloadable, Some(Box::new(HandshakeMetrics(store))))
}

/// The listener's `TlsSettings` of [`settings`] with the handshake callbacks `callbacks`
/// (`None`: none): the certificate of `reloadable` (and its client CA), TLS 1.2 and 1.3,
/// ALPN `h2` then `http/1.1`, session tickets. `pingora-bare` (the benchmarks' bare
/// proxy) uses it without callbacks, so that its TLS is the router's.
/// `Err`: rustls could not make a ticketer (no system randomness).
pub fn settings_with(reloadable: &Arc<Reloadable>, callbacks: Option<pingora::listeners::TlsAcceptCallbacks>) -> Result<TlsSettings, String> {
    let mut s = match callbacks {
        Some(c) => TlsSettings::with_callbacks(c),
        // No callbacks and no files: the certificate comes from the resolver below.
        None => TlsSettings::intermediate("", ""),
    }
    .map_err(|e| e.to_string())?;
    s.set_cert_resolver(Arc::new(CertResolver(reloadable.clone())));
    if reloadable.files.client_ca.is_some() {
        s.set_client_cert_verifier(Arc::new(ClientVerifier(reloadable.clone())));
    }
    s.enable_h2();
    s.set_ticketer(rustls::crypto::ring::Ticketer::new().map_err(|e| format!("session tickets: {e}"))?);
    Ok(s)
}

/// Pingora background service: on each SIGHUP, [`Reloadable::reload`]; counts
/// `router_tls_reloads_total{result}` and logs one line (the error, the old certificate
/// kept, on failure). Without TLS (`reloadable` `None`) it only keeps SIGHUP from ending
/// the process (its default action): the signal is ignored.
pub struct ReloadOnHup {
    /// What to reload; `None`: a plain listener.
    pub reloadable: Option<Arc<Reloadable>>,
    /// Whose metrics count the reloads.
    pub store: Arc<Store>,
}

#[async_trait]
impl BackgroundService for ReloadOnHup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("pingora-router: tls: no SIGHUP handler, certificates will not reload: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    let Some(reloadable) = &self.reloadable else { continue };
                    match reloadable.reload() {
                        Ok(()) => {
                            self.store.metrics.tls_reloads.with_label_values(&["ok"]).inc();
                            eprintln!("pingora-router: tls: certificates reloaded");
                        }
                        Err(e) => {
                            self.store.metrics.tls_reloads.with_label_values(&["error"]).inc();
                            eprintln!("pingora-router: tls: reload failed, keeping the old certificate: {e}");
                        }
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
