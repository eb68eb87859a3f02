//! Steward's server: the service layer over core, store and crypto, and its HTTP adapter.
//! [`start`] binds, bootstraps and serves; everything else is reachable through [`state::AppState`].
#![forbid(unsafe_code)]

pub mod audit;
pub mod bootstrap;
pub mod cache;
pub mod config;
pub mod console;
pub mod error;
pub mod health;
pub mod http;
pub mod jobs;
pub mod keys;
pub mod leases;
pub mod pki;
pub mod ratelimit;
pub mod report_render;
pub mod revocation;
pub mod service;
pub mod state;
pub mod tls;
pub mod usage;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use steward_core::{Clock, SystemClock};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use config::ServerConfig;
use error::ServiceError;
use state::{AppState, Inner};

/// Options that are not configuration: injected clock and master key.
#[derive(Default, Clone)]
pub struct StartOptions {
    /// Base64 master key (from `STEWARD_MASTER_KEY`); else `DATA_DIR/master.key`.
    pub master_key: Option<String>,
    /// Clock override for tests.
    pub clock: Option<Arc<dyn Clock>>,
}

/// A server that is up and serving.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: AppState,
    /// Path of the admin credentials file, when this start created it.
    pub admin_credentials: Option<PathBuf>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    serve: JoinHandle<std::io::Result<()>>,
    jobs: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// `https://ADDR`, or `http://ADDR` with `insecure_http`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.state.config.scheme(), self.addr)
    }

    /// Stops accepting connections, finishes in-flight requests, flushes usage, and returns.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.serve).await;
        for j in &self.jobs {
            j.abort();
        }
        jobs::flush_usage(&self.state).await;
        // Other nodes take over this node's single-node duties at once, not after expiry.
        self.state
            .leases
            .release_all(self.state.store.as_ref())
            .await;
    }

    /// Serves until SIGINT/SIGTERM.
    pub async fn run_until_signal(self) {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database: {0}")]
    Store(#[from] steward_store::StoreError),
    #[error("{0}")]
    Bootstrap(#[from] ServiceError),
}

fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => h,
            // Another recorder is installed (embedding application): keep a private one.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        })
        .clone()
}

/// Installs the process-wide rustls crypto provider (aws-lc-rs). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Binds, opens the store, bootstraps on first start, and starts serving in the background.
pub async fn start(
    mut config: ServerConfig,
    opts: StartOptions,
) -> Result<RunningServer, StartError> {
    install_crypto_provider();
    config.validate().map_err(StartError::Config)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    config.listen = addr;
    if config.database_url.is_none() || opts.master_key.is_none() {
        create_private_dir(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
    }
    let gathering = steward_store::GroupCommit {
        window: std::time::Duration::from_micros(config.commit_gather_us),
        target: steward_store::GATHER_TARGET,
    };
    let store = steward_store::open_with(&config.store_url(), gathering).await?;
    if config.database_url.is_none() {
        restrict_files(&config.data_dir, "steward.db");
    }
    let clock = opts.clock.clone().unwrap_or_else(|| Arc::new(SystemClock));
    let master = bootstrap::load_master_key(&config, opts.master_key.as_deref())?;
    let boot = bootstrap::bootstrap(&config, store.as_ref(), master, clock.now()).await?;
    let schedule = keys::Schedule {
        alg: steward_crypto::jws::SigningAlg::parse(&config.signing_alg)
            .map_err(|e| StartError::Config(e.to_string()))?,
        period: time::Duration::days(i64::from(config.key_rotation_days)),
        overlap: time::Duration::seconds(i64::from(config.registry.max_token_lifetime_secs) + 120),
    };
    let ring = keys::load_ring(store.as_ref(), &boot.master, clock.now()).await?;
    let pki_snapshot = pki::load_snapshot(store.as_ref(), &boot.master, clock.now()).await?;
    let issuer = config.issuer();
    let ttl = Inner::cache_ttl(&config);
    let authz = service::authz::AuthzCache::new(&config.authz, ttl)
        .map_err(|e| StartError::Config(e.to_string()))?;
    let inner = Inner {
        token_endpoint: format!("{issuer}/oauth2/token"),
        audit_origin: format!("steward/{}/audit", config.trust_domain),
        issuer,
        hasher: steward_crypto::secret_hash::SecretHasher::new(boot.master.derive("api-key-hmac")),
        dpop_nonce_key: boot.master.derive("dpop-nonce"),
        master: boot.master,
        note_signer: boot.note_signer,
        store,
        clock,
        ring: RwLock::new(Arc::new(ring)),
        ring_reload: tokio::sync::Mutex::new(()),
        ring_reload_on_demand: Mutex::new(None),
        identities: cache::TtlCache::new(100_000, ttl),
        credentials: cache::TtlCache::new(100_000, ttl),
        credentials_by_id: cache::TtlCache::new(100_000, ttl),
        public_keys: cache::TtlCache::new(100_000, ttl),
        credential_epoch: Default::default(),
        verified_tokens: cache::TtlCache::new(65_536, None),
        revoked: revocation::RevokedTokens::default(),
        usage: Mutex::new(Default::default()),
        limiter: ratelimit::FailureLimiter::new(
            config.auth_failure_limit,
            Duration::from_secs(config.auth_lockout_secs),
        ),
        metrics: metrics_handle(),
        ready: AtomicBool::new(true),
        bootstrap_admin: boot.admin_identity,
        authz,
        pki: pki::PkiState::new(pki_snapshot),
        leak_notifier: service::leaks::Notifier::spawn(config.leak_webhook_url.clone()),
        federation: service::federation::Federation::new(&config.federation),
        leases: leases::Leases::new(leases::Leases::node_holder_id(addr)),
        usage_recorder: usage::UsageRecorder::new(&config.usage),
        findings_runtime: Default::default(),
        jit: service::lifecycle::jit::JitCache::new(ttl),
        audit_tree: Default::default(),
        config,
    };
    let state = AppState(Arc::new(inner));
    if !state.config.insecure_http {
        state.renew_server_key(true).await?;
    }
    pki::write_bundle_file(&state.config, &state.pki.snapshot().bundle_pem);
    // Subscribe before loading the revoked-token mirror, so no revocation falls in between.
    let notices = state.store.subscribe();
    state.reload_revoked().await?;
    let mut jobs = jobs::spawn_all(&state, schedule);
    if let Some(rx) = notices {
        jobs.push(jobs::spawn_invalidator(state.clone(), rx));
    }
    jobs.push(pki::spawn_upkeep(&state));
    jobs.extend(service::findings::spawn_job(&state));
    jobs.push(service::lifecycle::reviews::spawn_deadline_job(&state));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serve = if state.config.insecure_http {
        let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
        })
    } else {
        // HTTPS with optional client certificates: our own accept loop (see `tls.rs`).
        tokio::spawn(tls::serve(
            listener,
            http::router(state.clone()),
            state.clone(),
            rx,
        ))
    };
    tracing::info!(%addr, backend = state.store.backend(), issuer = %state.issuer, "steward is serving");
    Ok(RunningServer {
        addr,
        state,
        admin_credentials: boot.credentials_file,
        shutdown: Some(tx),
        serve,
        jobs,
    })
}

/// Creates the data directory readable by its owner only (0700 on Unix).
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Makes the database file and its WAL/SHM companions owner-only (0600 on Unix).
fn restrict_files(dir: &std::path::Path, prefix: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(prefix) {
                    let _ =
                        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o600));
                }
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
