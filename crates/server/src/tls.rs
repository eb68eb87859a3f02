//! HTTPS serving with optional client certificates: the accept loop (tokio-rustls + hyper-util),
//! the client-certificate verifier, and the peer certificate handed to handlers.
//!
//! Checks happen in two steps, both before any request on the connection is read:
//! 1. During the handshake ([`ConnVerifier`], synchronous): the chain must lead to Steward's CA or
//!    a registered device CA at the server clock's time, for clientAuth, with at most
//!    `pki.max_client_chain_intermediates` intermediates; the serial must not be deny-listed; a
//!    certificate from Steward's own CA must carry a SPIFFE ID of this trust domain. A failure is
//!    a TLS alert (handshake failure) plus an `mtls.handshake` audit record with the reason.
//! 2. Right after the handshake (asynchronous, [`crate::state::Inner::admit_client`]): the
//!    certificate must map to an identity (SPIFFE ID, or a device mapping rule) that may
//!    authenticate *now* — suspended, retired or expired identities are refused here, so a
//!    suspension takes effect at the very next handshake. The connection is closed without
//!    serving a request, and the refusal is audited.
//!
//! Session resumption is off: every connection runs the full verification.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use steward_crypto::x509::{self, ChainError};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::pki::Anchor;
use crate::state::AppState;

/// The client certificate of a connection that passed both checks; handlers find it in the
/// request extensions (and in [`crate::service::Ctx::client_cert`]).
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// RFC 8705 `x5t#S256` of the leaf.
    pub x5t_s256: String,
    /// Canonical hex serial.
    pub serial: String,
    pub subject: String,
    /// The identity the certificate maps to.
    pub identity_id: Uuid,
    /// The SPIFFE ID, for certificates from Steward's CA.
    pub spiffe_id: Option<String>,
    /// Steward's CA, or the registered device CA it chains to.
    pub anchor: Anchor,
    pub not_after: OffsetDateTime,
}

/// A chain that passed the handshake check, waiting for the identity check.
#[derive(Debug, Clone)]
pub struct VerifiedClient {
    pub leaf: x509::CertSummary,
    pub x5t_s256: String,
    pub anchor: Anchor,
}

/// Why a client certificate was refused during the handshake.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub reason: String,
    pub leaf: Option<x509::CertSummary>,
}

/// Where a connection's verifier leaves its verdict for the accept loop.
type Slot = Arc<Mutex<Option<Outcome>>>;

#[derive(Debug)]
enum Outcome {
    Accepted(VerifiedClient),
    Rejected(Rejection),
}

/// The server clock as rustls's time source, so certificate validity follows `state.now()`.
struct ClockTime(AppState);

impl std::fmt::Debug for ClockTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClockTime")
    }
}

impl rustls::time_provider::TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        let secs = u64::try_from(self.0.now().unix_timestamp()).ok()?;
        Some(UnixTime::since_unix_epoch(Duration::from_secs(secs)))
    }
}

/// Serves the server's current certificate (renewed by the PKI job).
struct Resolver(AppState);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.pki.server_key().map(|k| k.certified)
    }
}

/// The per-connection client-certificate verifier (see the module docs, step 1).
struct ConnVerifier {
    state: AppState,
    hints: Vec<DistinguishedName>,
    outcome: Slot,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl std::fmt::Debug for ConnVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnVerifier")
    }
}

impl ConnVerifier {
    fn reject(
        &self,
        leaf: Option<x509::CertSummary>,
        reason: String,
        err: CertificateError,
    ) -> Result<ClientCertVerified, rustls::Error> {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Outcome::Rejected(Rejection { reason, leaf }));
        Err(rustls::Error::InvalidCertificate(err))
    }
}

fn chain_alert(e: &ChainError) -> CertificateError {
    match e {
        ChainError::Expired => CertificateError::Expired,
        ChainError::NotYetValid => CertificateError::NotValidYet,
        ChainError::UnknownIssuer => CertificateError::UnknownIssuer,
        ChainError::BadSignature => CertificateError::BadSignature,
        ChainError::NotForClientAuth => CertificateError::InvalidPurpose,
        ChainError::Malformed(_) => CertificateError::BadEncoding,
        ChainError::TooLong(_) | ChainError::Other(_) => {
            CertificateError::ApplicationVerificationFailure
        }
    }
}

impl ClientCertVerifier for ConnVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let now =
            OffsetDateTime::from_unix_timestamp(i64::try_from(now.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or_else(|_| self.state.now());
        let leaf = match x509::parse_certificate(end_entity.as_ref()) {
            Ok(l) => l,
            Err(e) => {
                return self.reject(None, e.to_string(), CertificateError::BadEncoding);
            }
        };
        let snap = self.state.pki.snapshot();
        let inter: Vec<&[u8]> = intermediates.iter().map(|c| c.as_ref()).collect();
        let max = self.state.config.pki.max_client_chain_intermediates;
        let anchor = match snap
            .trust
            .verify_client(end_entity.as_ref(), &inter, now, max)
        {
            Ok(i) => snap.anchors.get(i).copied().unwrap_or(Anchor::Own),
            Err(e) => {
                let alert = chain_alert(&e);
                return self.reject(Some(leaf), e.to_string(), alert);
            }
        };
        if let Some(r) = snap.is_revoked(&leaf.serial, now) {
            let reason = format!(
                "client certificate serial {} is revoked{}",
                r.serial,
                r.body
                    .reason
                    .as_deref()
                    .map(|x| format!(" ({x})"))
                    .unwrap_or_default()
            );
            return self.reject(Some(leaf), reason, CertificateError::Revoked);
        }
        if anchor == Anchor::Own {
            let prefix = format!("spiffe://{}/", self.state.config.trust_domain);
            let spiffe: Vec<&String> = leaf
                .uris
                .iter()
                .filter(|u| u.starts_with("spiffe://"))
                .collect();
            if spiffe.len() != 1 || !spiffe[0].starts_with(&prefix) {
                return self.reject(
                    Some(leaf),
                    format!(
                        "client certificate must carry exactly one SPIFFE ID of trust domain {}",
                        self.state.config.trust_domain
                    ),
                    CertificateError::ApplicationVerificationFailure,
                );
            }
        }
        let x5t_s256 = x509::x5t_s256(end_entity.as_ref());
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Outcome::Accepted(VerifiedClient {
                leaf,
                x5t_s256,
                anchor,
            }));
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Shared, per-process parts of the TLS configuration.
struct TlsShared {
    provider: Arc<rustls::crypto::CryptoProvider>,
    time: Arc<ClockTime>,
    resolver: Arc<Resolver>,
}

impl TlsShared {
    /// A server config for one connection, with its own verifier and outcome slot.
    fn config(&self, state: &AppState) -> Result<(Arc<rustls::ServerConfig>, Slot), rustls::Error> {
        let outcome = Arc::new(Mutex::new(None));
        let snap = state.pki.snapshot();
        let verifier = ConnVerifier {
            state: state.clone(),
            hints: snap
                .trust
                .subjects()
                .iter()
                .map(|s| DistinguishedName::in_sequence(s))
                .collect(),
            outcome: outcome.clone(),
            algs: self.provider.signature_verification_algorithms,
        };
        let mut cfg =
            rustls::ServerConfig::builder_with_details(self.provider.clone(), self.time.clone())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
                .with_client_cert_verifier(Arc::new(verifier))
                .with_cert_resolver(self.resolver.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Ok((Arc::new(cfg), outcome))
    }
}

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TLS connections until `shutdown` fires, then drains in-flight connections.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    state: AppState,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let shared = Arc::new(TlsShared {
        provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        time: Arc::new(ClockTime(state.clone())),
        resolver: Arc::new(Resolver(state.clone())),
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Bounded: each connection holds a permit until it ends (see `ServerConfig::max_connections`).
    let slots = Arc::new(tokio::sync::Semaphore::new(state.config.max_connections));
    let mut shutdown = shutdown;
    loop {
        let (tcp, addr) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // At capacity: refuse this connection at once rather than queue it without bound.
            metrics::counter!("steward_connections_refused_total").increment(1);
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (shared, state, app) = (shared.clone(), state.clone(), app.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            connection(tcp, addr, shared, state, app, watcher).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
    Ok(())
}

async fn connection(
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    shared: Arc<TlsShared>,
    state: AppState,
    app: Router,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let (cfg, outcome) = match shared.config(&state) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "TLS configuration failed");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let source = Some(addr.ip().to_string());
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
    let taken = outcome.lock().unwrap_or_else(|p| p.into_inner()).take();
    let mut tls = match accepted {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            if let Some(Outcome::Rejected(r)) = taken {
                state.audit_tls_rejection(&r, source).await;
            } else {
                tracing::debug!(error = %e, peer = %addr, "TLS handshake failed");
            }
            return;
        }
        Err(_) => return,
    };
    let peer = match taken {
        Some(Outcome::Accepted(v)) => match state.admit_client(v, source).await {
            Some(p) => Some(Arc::new(p)),
            None => {
                use tokio::io::AsyncWriteExt;
                let _ = tls.shutdown().await;
                return;
            }
        },
        _ => None,
    };
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(addr));
        if let Some(p) = &peer {
            req.extensions_mut().insert(p.clone());
        }
        let mut app = app.clone();
        async move {
            use tower::Service;
            app.call(req).await
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A client must send a request's headers within the request timeout (at most 30 s), and an
    // idle keep-alive connection is closed after as long: slow or silent clients cannot pile up.
    let header_timeout = Duration::from_secs(state.config.request_timeout_secs.clamp(1, 30));
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(header_timeout))
        .keep_alive_timeout(header_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(tls), svc)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, peer = %addr, "connection ended with an error");
    }
}
