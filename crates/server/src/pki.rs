//! The built-in CA as every node holds it in memory: CA certificates and the active issuing CA,
//! the trust bundle, device CAs and mapping rules, the serial deny-list and the server's TLS key.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use steward_crypto::master::MasterKey;
use steward_crypto::x509::{self, CaSigner, KeyAlg, TrustStore};
use steward_store::{Change, Mutation, PkiObject, Store, StoreError};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::config::ServerConfig;
use crate::error::ServiceError;

/// Record kinds in the store's `pki_objects` table.
pub const KIND_CA: &str = "ca";
pub const KIND_DEVICE_CA: &str = "device_ca";
pub const KIND_DEVICE_RULE: &str = "device_rule";
pub const KIND_REVOKED: &str = "revoked_serial";

/// Settings of the CA, of workload certificates and of mutual TLS.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PkiConfig {
    /// Key algorithm of CA keys created by Steward: `ecdsa-p256` (default) or `ed25519`.
    pub ca_key_alg: String,
    /// Validity of the root CA created at bootstrap, in days.
    pub root_ca_days: u32,
    /// Validity of an issuing CA, in days. A successor is created when a third is left.
    pub issuing_ca_days: u32,
    /// A new issuing CA is in the trust bundle this many seconds before it signs anything.
    pub ca_rollover_notice_secs: u64,
    /// Workload certificate lifetime when the request names none, in seconds.
    pub default_cert_ttl_secs: u32,
    /// Longest workload certificate lifetime, in seconds.
    pub max_cert_ttl_secs: u32,
    /// Shortest workload certificate lifetime, in seconds.
    pub min_cert_ttl_secs: u32,
    /// Lifetime of the server's own TLS certificate, in days (renewed when a third is left).
    pub server_cert_days: u32,
    /// Extra DNS names or IP addresses of the server certificate (`localhost`, `127.0.0.1` and
    /// `::1` are always included).
    pub tls_san: Vec<String>,
    /// Identity kinds that may ask for `serverAuth` certificates.
    pub server_auth_kinds: Vec<String>,
    /// Most intermediate certificates a client chain may carry.
    pub max_client_chain_intermediates: usize,
    /// `nextUpdate - thisUpdate` of the CRL, in seconds.
    pub crl_validity_secs: u64,
    /// At bootstrap, import this CA certificate (PEM; further certificates in the file are its
    /// chain) instead of generating a CA. Needs `import_ca_key`.
    pub import_ca_cert: Option<PathBuf>,
    /// PKCS#8 PEM private key of `import_ca_cert`.
    pub import_ca_key: Option<PathBuf>,
}

impl Default for PkiConfig {
    fn default() -> Self {
        Self {
            ca_key_alg: "ecdsa-p256".into(),
            root_ca_days: 3650,
            issuing_ca_days: 180,
            ca_rollover_notice_secs: 86_400,
            default_cert_ttl_secs: 3600,
            max_cert_ttl_secs: 86_400,
            min_cert_ttl_secs: 5,
            server_cert_days: 7,
            tls_san: vec![],
            server_auth_kinds: vec![
                "workload".into(),
                "service_account".into(),
                "agent".into(),
                "device".into(),
            ],
            max_client_chain_intermediates: 2,
            crl_validity_secs: 3600,
            import_ca_cert: None,
            import_ca_key: None,
        }
    }
}

impl PkiConfig {
    pub fn key_alg(&self) -> Result<KeyAlg, String> {
        KeyAlg::parse(&self.ca_key_alg)
            .ok_or_else(|| "pki.ca_key_alg must be ecdsa-p256 or ed25519".to_owned())
    }

    pub fn validate(&self) -> Result<(), String> {
        self.key_alg()?;
        if self.min_cert_ttl_secs == 0
            || self.min_cert_ttl_secs > self.default_cert_ttl_secs
            || self.default_cert_ttl_secs > self.max_cert_ttl_secs
        {
            return Err(
                "pki: need 0 < min_cert_ttl_secs <= default_cert_ttl_secs <= max_cert_ttl_secs"
                    .into(),
            );
        }
        if self.root_ca_days == 0 || self.issuing_ca_days == 0 || self.server_cert_days == 0 {
            return Err("pki: CA and server certificate lifetimes must be positive".into());
        }
        if self.import_ca_cert.is_some() != self.import_ca_key.is_some() {
            return Err("pki: import_ca_cert and import_ca_key go together".into());
        }
        for k in &self.server_auth_kinds {
            if steward_core::IdentityKind::parse(k).is_none() {
                return Err(format!(
                    "pki.server_auth_kinds: unknown identity kind {k:?}"
                ));
            }
        }
        Ok(())
    }
}

/// A CA certificate as stored: the DER certificate and, when Steward may sign with it, its
/// private key sealed under the master key.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CaBody {
    /// `root` or `issuing`.
    role: String,
    /// Base64 DER.
    cert: String,
    /// Base64 of the sealed PKCS#8 key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed_key: Option<String>,
    /// Unix seconds from which it signs (issuing CAs).
    activates_at: i64,
    #[serde(default)]
    imported: bool,
}

/// A device CA registered by an operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceCaBody {
    pub name: String,
    /// Base64 DER.
    pub cert: String,
    pub created_by: String,
}

/// Which field of a device certificate a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleField {
    /// The subject's common name.
    SubjectCn,
    /// The whole subject DN as text (e.g. `CN=gw-1, O=Plant 1`).
    Subject,
    /// Any DNS SAN.
    SanDns,
    /// Any URI SAN.
    SanUri,
}

impl RuleField {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SubjectCn => "subject_cn",
            Self::Subject => "subject",
            Self::SanDns => "san_dns",
            Self::SanUri => "san_uri",
        }
    }
}

/// A mapping rule: certificates from `device_ca` whose `field` matches `pattern` are `identity_id`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRuleBody {
    pub device_ca: Uuid,
    pub field: RuleField,
    /// Glob: `*` matches any run of characters, everything else literally (case-sensitive).
    pub pattern: String,
    pub identity_id: Uuid,
    pub created_by: String,
}

/// A deny-listed serial.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokedBody {
    pub revoked_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_id: Option<Uuid>,
    pub revoked_by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaRole {
    Root,
    Issuing,
}

/// One CA certificate of this deployment.
#[derive(Clone)]
pub struct CaEntry {
    pub id: String,
    pub role: CaRole,
    pub cert_der: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub activates_at: OffsetDateTime,
    pub imported: bool,
    pub signer: Option<Arc<CaSigner>>,
    sealed_key: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct DeviceCa {
    pub id: Uuid,
    pub body: DeviceCaBody,
    pub cert_der: Vec<u8>,
    pub summary: x509::CertSummary,
    pub fingerprint: String,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct DeviceRule {
    pub id: Uuid,
    pub body: DeviceRuleBody,
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct Revoked {
    pub serial: String,
    pub body: RevokedBody,
    pub expires_at: OffsetDateTime,
}

/// Which trust anchor a client certificate chained to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Steward's own CA: the certificate's SPIFFE ID names the identity.
    Own,
    /// A registered device CA: mapping rules name the identity.
    Device(Uuid),
}

/// Everything the TLS and certificate paths read, swapped atomically on change.
pub struct PkiSnapshot {
    pub cas: Vec<CaEntry>,
    pub device_cas: Vec<DeviceCa>,
    pub rules: Vec<DeviceRule>,
    pub revoked: HashMap<String, Revoked>,
    pub trust: TrustStore,
    /// Parallel to the trust store's anchors.
    pub anchors: Vec<Anchor>,
    /// Trust-bundle PEM at load time (every unexpired CA certificate, roots first).
    pub bundle_pem: String,
    pub loaded_at: OffsetDateTime,
}

impl PkiSnapshot {
    /// The issuing CA that signs at `now`: the most recently activated one with a key.
    pub fn active_issuer(&self, now: OffsetDateTime) -> Option<&CaEntry> {
        self.cas
            .iter()
            .filter(|c| {
                c.role == CaRole::Issuing
                    && c.signer.is_some()
                    && c.activates_at <= now
                    && c.not_before <= now
                    && now < c.not_after
            })
            .max_by_key(|c| c.activates_at)
    }

    /// CA certificates to publish at `now`: every unexpired one (pending issuing CAs included).
    pub fn published(&self, now: OffsetDateTime) -> Vec<&CaEntry> {
        let mut v: Vec<&CaEntry> = self.cas.iter().filter(|c| now < c.not_after).collect();
        v.sort_by_key(|c| (c.role == CaRole::Issuing, c.activates_at));
        v
    }

    pub fn bundle_at(&self, now: OffsetDateTime) -> String {
        self.published(now)
            .iter()
            .map(|c| x509::pem_encode("CERTIFICATE", &c.cert_der))
            .collect()
    }

    /// The chain (issuing CA up to, not including, the root) to send with a leaf of `issuer`.
    pub fn chain_of(&self, issuer: &CaEntry) -> Vec<Vec<u8>> {
        if issuer.role == CaRole::Root {
            return vec![];
        }
        vec![issuer.cert_der.clone()]
    }

    pub fn is_revoked(&self, serial: &str, now: OffsetDateTime) -> Option<&Revoked> {
        self.revoked.get(serial).filter(|r| now < r.expires_at)
    }

    /// The identity a device certificate maps to under the rules of its device CA.
    pub fn map_device(&self, ca: Uuid, leaf: &x509::CertSummary) -> Option<&DeviceRule> {
        self.rules.iter().find(|r| {
            r.body.device_ca == ca
                && match r.body.field {
                    RuleField::SubjectCn => leaf
                        .subject_cn
                        .as_deref()
                        .is_some_and(|cn| glob(&r.body.pattern, cn)),
                    RuleField::Subject => glob(&r.body.pattern, &leaf.subject),
                    RuleField::SanDns => leaf.dns_names.iter().any(|d| glob(&r.body.pattern, d)),
                    RuleField::SanUri => leaf.uris.iter().any(|u| glob(&r.body.pattern, u)),
                }
        })
    }
}

/// `*` matches any run of characters (including none); everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

fn ca_aad(id: &str) -> Vec<u8> {
    format!("steward/ca-key/{id}").into_bytes()
}

fn ca_id(der: &[u8]) -> String {
    steward_crypto::x509::x5t_s256(der)
        .chars()
        .take(22)
        .collect()
}

fn corrupt(what: &str) -> ServiceError {
    ServiceError::Internal(format!("stored PKI record is unreadable: {what}"))
}

fn ca_entry(o: &PkiObject, master: &MasterKey) -> Result<CaEntry, ServiceError> {
    let b: CaBody = serde_json::from_value(o.body.clone()).map_err(|_| corrupt("CA body"))?;
    let der = steward_crypto::b64::std_decode(&b.cert).map_err(|_| corrupt("CA certificate"))?;
    let summary = x509::parse_certificate(&der).map_err(|_| corrupt("CA certificate"))?;
    let sealed = match &b.sealed_key {
        Some(s) => Some(steward_crypto::b64::std_decode(s).map_err(|_| corrupt("CA key"))?),
        None => None,
    };
    let role = if b.role == "root" {
        CaRole::Root
    } else {
        CaRole::Issuing
    };
    let signer = match (&sealed, role) {
        (Some(s), CaRole::Issuing) => {
            let pkcs8 = master.open(&ca_aad(&o.id), s).map_err(|_| {
                ServiceError::Internal(format!("cannot unseal the key of CA {}", o.id))
            })?;
            Some(Arc::new(
                CaSigner::new(&der, &pkcs8).map_err(|e| ServiceError::Internal(e.to_string()))?,
            ))
        }
        _ => None,
    };
    Ok(CaEntry {
        id: o.id.clone(),
        role,
        not_before: summary.not_before,
        not_after: summary.not_after,
        activates_at: OffsetDateTime::from_unix_timestamp(b.activates_at)
            .map_err(|_| corrupt("activates_at"))?,
        imported: b.imported,
        cert_der: der,
        signer,
        sealed_key: sealed,
    })
}

/// How a CA record is stored: its role, when it starts signing, and whether it was imported.
struct CaMeta {
    role: CaRole,
    activates_at: OffsetDateTime,
    imported: bool,
}

fn ca_object(
    id: &str,
    meta: CaMeta,
    der: &[u8],
    sealed: Option<&[u8]>,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<PkiObject, ServiceError> {
    let CaMeta {
        role,
        activates_at,
        imported,
    } = meta;
    let body = CaBody {
        role: match role {
            CaRole::Root => "root",
            CaRole::Issuing => "issuing",
        }
        .into(),
        cert: steward_crypto::b64::std_encode(der),
        sealed_key: sealed.map(steward_crypto::b64::std_encode),
        activates_at: activates_at.unix_timestamp(),
        imported,
    };
    Ok(PkiObject {
        kind: KIND_CA.into(),
        id: id.into(),
        body: serde_json::to_value(body).map_err(|e| ServiceError::Internal(e.to_string()))?,
        created_at: steward_core::truncate_micros(now),
        expires_at: Some(not_after),
    })
}

/// Reads every PKI record and builds a snapshot (unsealing issuing-CA keys).
pub async fn load_snapshot(
    store: &dyn Store,
    master: &MasterKey,
    now: OffsetDateTime,
) -> Result<PkiSnapshot, ServiceError> {
    let mut cas = vec![];
    for o in store.list_pki_objects(KIND_CA).await? {
        cas.push(ca_entry(&o, master)?);
    }
    let mut device_cas = vec![];
    for o in store.list_pki_objects(KIND_DEVICE_CA).await? {
        let (Ok(id), Ok(body)) = (
            Uuid::parse_str(&o.id),
            serde_json::from_value::<DeviceCaBody>(o.body.clone()),
        ) else {
            return Err(corrupt("device CA"));
        };
        let der = steward_crypto::b64::std_decode(&body.cert).map_err(|_| corrupt("device CA"))?;
        let summary = x509::parse_certificate(&der).map_err(|_| corrupt("device CA"))?;
        device_cas.push(DeviceCa {
            id,
            fingerprint: x509::x5t_s256(&der),
            body,
            cert_der: der,
            summary,
            created_at: o.created_at,
        });
    }
    let mut rules = vec![];
    for o in store.list_pki_objects(KIND_DEVICE_RULE).await? {
        let (Ok(id), Ok(body)) = (
            Uuid::parse_str(&o.id),
            serde_json::from_value::<DeviceRuleBody>(o.body.clone()),
        ) else {
            return Err(corrupt("device rule"));
        };
        rules.push(DeviceRule {
            id,
            body,
            created_at: o.created_at,
        });
    }
    let mut revoked = HashMap::new();
    for o in store.list_pki_objects(KIND_REVOKED).await? {
        let body: RevokedBody =
            serde_json::from_value(o.body.clone()).map_err(|_| corrupt("revoked serial"))?;
        let expires_at = o.expires_at.unwrap_or(OffsetDateTime::UNIX_EPOCH);
        revoked.insert(
            o.id.clone(),
            Revoked {
                serial: o.id,
                body,
                expires_at,
            },
        );
    }
    build_snapshot(cas, device_cas, rules, revoked, now)
}

fn build_snapshot(
    cas: Vec<CaEntry>,
    device_cas: Vec<DeviceCa>,
    rules: Vec<DeviceRule>,
    revoked: HashMap<String, Revoked>,
    now: OffsetDateTime,
) -> Result<PkiSnapshot, ServiceError> {
    let mut anchor_certs = vec![];
    let mut anchors = vec![];
    for c in cas.iter().filter(|c| now < c.not_after) {
        anchor_certs.push(c.cert_der.clone());
        anchors.push(Anchor::Own);
    }
    for d in device_cas.iter().filter(|d| now < d.summary.not_after) {
        anchor_certs.push(d.cert_der.clone());
        anchors.push(Anchor::Device(d.id));
    }
    let trust =
        TrustStore::new(&anchor_certs).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let mut snap = PkiSnapshot {
        cas,
        device_cas,
        rules,
        revoked,
        trust,
        anchors,
        bundle_pem: String::new(),
        loaded_at: now,
    };
    snap.bundle_pem = snap.bundle_at(now);
    Ok(snap)
}

/// The in-memory PKI state of this node.
pub struct PkiState {
    snap: RwLock<Arc<PkiSnapshot>>,
    reload_lock: tokio::sync::Mutex<()>,
    /// The server's TLS certificate chain and key (absent when serving plain HTTP).
    pub server_key: RwLock<Option<ServerKey>>,
    /// SPIFFE ID → identity id (immutable: name, kind and environment never change).
    pub spiffe_index: crate::cache::TtlCache<String, Uuid>,
}

/// The server's TLS certificate, its key, and when it should be replaced.
#[derive(Clone)]
pub struct ServerKey {
    pub certified: Arc<rustls::sign::CertifiedKey>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub issuer_id: String,
}

impl PkiState {
    pub fn new(snap: PkiSnapshot) -> Self {
        Self {
            snap: RwLock::new(Arc::new(snap)),
            reload_lock: tokio::sync::Mutex::new(()),
            server_key: RwLock::new(None),
            spiffe_index: crate::cache::TtlCache::new(100_000, None),
        }
    }

    pub fn snapshot(&self) -> Arc<PkiSnapshot> {
        self.snap.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rebuilds the snapshot from the store (after a local change, or periodically for changes
    /// made by other nodes).
    pub async fn reload(
        &self,
        store: &dyn Store,
        master: &MasterKey,
        now: OffsetDateTime,
    ) -> Result<Arc<PkiSnapshot>, ServiceError> {
        let _g = self.reload_lock.lock().await;
        let snap = Arc::new(load_snapshot(store, master, now).await?);
        *self.snap.write().unwrap_or_else(|p| p.into_inner()) = snap.clone();
        Ok(snap)
    }

    pub fn server_key(&self) -> Option<ServerKey> {
        self.server_key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Creates (or imports) the CA on first start; returns the trust bundle PEM. Several nodes may
/// race: a unique setting in the same transaction lets exactly one CA win.
pub async fn ensure_ca(
    config: &ServerConfig,
    store: &dyn Store,
    master: &MasterKey,
    now: OffsetDateTime,
) -> Result<String, ServiceError> {
    if store.list_pki_objects(KIND_CA).await?.is_empty() {
        let now = steward_core::truncate_micros(now);
        let mut change = Change::new().with(Mutation::InsertSetting {
            key: "pki_bootstrap".into(),
            value: now.unix_timestamp().to_string(),
        });
        match (&config.pki.import_ca_cert, &config.pki.import_ca_key) {
            (Some(c), Some(k)) => {
                for o in import_ca(c, k, master, now)? {
                    change = change.with(Mutation::InsertPkiObject(o));
                }
            }
            _ => {
                for o in generate_ca(config, master, now)? {
                    change = change.with(Mutation::InsertPkiObject(o));
                }
            }
        }
        match store.commit(change).await {
            Ok(_) => tracing::info!("bootstrap: created the certificate authority"),
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let snap = load_snapshot(store, master, now).await?;
    if snap.active_issuer(now).is_none() {
        return Err(ServiceError::Internal(
            "no usable issuing CA: every issuing CA has expired or is not active yet".into(),
        ));
    }
    Ok(snap.bundle_pem)
}

fn generate_ca(
    config: &ServerConfig,
    master: &MasterKey,
    now: OffsetDateTime,
) -> Result<Vec<PkiObject>, ServiceError> {
    let alg = config.pki.key_alg().map_err(ServiceError::Internal)?;
    let td = &config.trust_domain;
    let nb = now - Duration::minutes(5);
    let root_after = now + Duration::days(i64::from(config.pki.root_ca_days));
    let root = x509::generate_root(alg, &format!("Steward root CA {td}"), td, nb, root_after)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let root_id = ca_id(&root.cert_der);
    let root_signer = CaSigner::new(&root.cert_der, &root.key_pkcs8)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let (issuing, int_after) = new_issuing(config, &root_signer, alg, nb, now)?;
    let int_id = ca_id(&issuing.cert_der);
    Ok(vec![
        ca_object(
            &root_id,
            CaMeta {
                role: CaRole::Root,
                activates_at: now,
                imported: false,
            },
            &root.cert_der,
            Some(&master.seal(&ca_aad(&root_id), &root.key_pkcs8)),
            now,
            root_after,
        )?,
        ca_object(
            &int_id,
            CaMeta {
                role: CaRole::Issuing,
                activates_at: now,
                imported: false,
            },
            &issuing.cert_der,
            Some(&master.seal(&ca_aad(&int_id), &issuing.key_pkcs8)),
            now,
            int_after,
        )?,
    ])
}

fn new_issuing(
    config: &ServerConfig,
    root: &CaSigner,
    alg: KeyAlg,
    not_before: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(x509::GeneratedCert, OffsetDateTime), ServiceError> {
    let not_after =
        (now + Duration::days(i64::from(config.pki.issuing_ca_days))).min(root.not_after);
    let td = &config.trust_domain;
    let label = steward_crypto::rand::token(4);
    let c = x509::generate_intermediate(
        root,
        alg,
        &format!("Steward issuing CA {td} {label}"),
        td,
        not_before,
        not_after,
    )
    .map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok((c, not_after))
}

fn import_ca(
    cert_path: &std::path::Path,
    key_path: &std::path::Path,
    master: &MasterKey,
    now: OffsetDateTime,
) -> Result<Vec<PkiObject>, ServiceError> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .map_err(|e| ServiceError::Internal(format!("cannot read {}: {e}", p.display())))
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    let certs = x509::certificates_from_pem_or_der(cert_pem.as_bytes())
        .map_err(|e| ServiceError::Internal(format!("{}: {e}", cert_path.display())))?;
    let first = x509::pem_encode("CERTIFICATE", &certs[0]);
    let (signer, pkcs8) = CaSigner::from_pem(&first, &key_pem)
        .map_err(|e| ServiceError::Internal(format!("importing the CA: {e}")))?;
    if signer.not_after <= now {
        return Err(ServiceError::Internal(
            "importing the CA: the certificate has expired".into(),
        ));
    }
    let id = ca_id(&certs[0]);
    let mut out = vec![ca_object(
        &id,
        CaMeta {
            role: CaRole::Issuing,
            activates_at: now,
            imported: true,
        },
        &certs[0],
        Some(&master.seal(&ca_aad(&id), &pkcs8)),
        now,
        signer.not_after,
    )?];
    for c in &certs[1..] {
        let s = x509::parse_certificate(c)
            .map_err(|e| ServiceError::Internal(format!("importing the CA chain: {e}")))?;
        out.push(ca_object(
            &ca_id(c),
            CaMeta {
                role: CaRole::Root,
                activates_at: now,
                imported: true,
            },
            c,
            None,
            now,
            s.not_after,
        )?);
    }
    Ok(out)
}

/// Creates a successor issuing CA under the root, published now and signing from
/// `now + notice`. Fails for imported CAs (their root key is not here).
pub fn rotation_change(
    config: &ServerConfig,
    snap: &PkiSnapshot,
    master: &MasterKey,
    now: OffsetDateTime,
    notice: Duration,
) -> Result<(PkiObject, OffsetDateTime), ServiceError> {
    let now = steward_core::truncate_micros(now);
    let root = snap
        .cas
        .iter()
        .filter(|c| c.role == CaRole::Root && c.sealed_key.is_some() && now < c.not_after)
        .max_by_key(|c| c.not_after)
        .ok_or_else(|| {
            ServiceError::invalid(
                "no root CA key is held by Steward (imported CA): import a new issuing CA instead",
            )
        })?;
    let sealed = root.sealed_key.as_deref().unwrap_or_default();
    let pkcs8 = master
        .open(&ca_aad(&root.id), sealed)
        .map_err(|_| ServiceError::Internal("cannot unseal the root CA key".into()))?;
    let root_signer =
        CaSigner::new(&root.cert_der, &pkcs8).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let alg = config.pki.key_alg().map_err(ServiceError::Internal)?;
    let (c, not_after) = new_issuing(config, &root_signer, alg, now - Duration::minutes(5), now)?;
    let id = ca_id(&c.cert_der);
    let activates_at = now + notice;
    let obj = ca_object(
        &id,
        CaMeta {
            role: CaRole::Issuing,
            activates_at,
            imported: false,
        },
        &c.cert_der,
        Some(&master.seal(&ca_aad(&id), &c.key_pkcs8)),
        now,
        not_after,
    )?;
    Ok((obj, activates_at))
}

/// SANs of the server certificate: localhost, loopback addresses, configured extras, the listen
/// address when it is specific, and the issuer's host.
pub fn server_sans(config: &ServerConfig) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns = vec!["localhost".to_owned()];
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    let mut add = |s: &str| {
        let s = s.trim().trim_start_matches('[').trim_end_matches(']');
        if s.is_empty() {
            return;
        }
        match s.parse::<IpAddr>() {
            Ok(ip) => {
                if !ip.is_unspecified() && !ips.contains(&ip) {
                    ips.push(ip)
                }
            }
            Err(_) => {
                let d = s.to_ascii_lowercase();
                if !dns.contains(&d) {
                    dns.push(d)
                }
            }
        }
    };
    for s in &config.pki.tls_san {
        add(s);
    }
    add(&config.listen.ip().to_string());
    if let Some(host) = config
        .issuer
        .as_deref()
        .and_then(|i| url::Url::parse(i).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
    {
        add(&host);
    }
    (dns, ips)
}

/// Issues the server's TLS certificate from the active issuing CA with a fresh key.
pub fn issue_server_key(
    config: &ServerConfig,
    snap: &PkiSnapshot,
    now: OffsetDateTime,
) -> Result<(ServerKey, String), ServiceError> {
    let issuer = snap
        .active_issuer(now)
        .ok_or_else(|| ServiceError::Internal("no active issuing CA".into()))?;
    let signer = issuer
        .signer
        .as_ref()
        .ok_or_else(|| ServiceError::Internal("issuing CA has no key".into()))?;
    let (dns, ips) = server_sans(config);
    let serial = x509::random_serial();
    let not_before = now - Duration::minutes(5);
    let not_after =
        (now + Duration::days(i64::from(config.pki.server_cert_days))).min(issuer.not_after);
    let cn = dns.first().cloned().unwrap_or_else(|| "steward".into());
    let generated = signer
        .issue_with_new_key(
            KeyAlg::EcdsaP256,
            &x509::LeafSpec {
                common_name: &cn,
                organization: &config.trust_domain,
                uri_sans: &[],
                dns_sans: &dns,
                ip_sans: &ips,
                client_auth: false,
                server_auth: true,
                not_before,
                not_after,
                serial: &serial,
            },
        )
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let mut chain = vec![rustls_pki_types::CertificateDer::from(
        generated.cert_der.clone(),
    )];
    for c in snap.chain_of(issuer) {
        chain.push(rustls_pki_types::CertificateDer::from(c));
    }
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(
        generated.key_pkcs8.to_vec(),
    ));
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| ServiceError::Internal(format!("server TLS key: {e}")))?;
    Ok((
        ServerKey {
            certified: Arc::new(rustls::sign::CertifiedKey::new(chain, signing)),
            not_before,
            not_after,
            issuer_id: issuer.id.clone(),
        },
        x509::serial_hex(&serial),
    ))
}

/// Writes the trust bundle to `DATA_DIR/ca-bundle.pem` (public) when it changed.
pub fn write_bundle_file(config: &ServerConfig, pem: &str) {
    if !config.data_dir.is_dir() {
        return;
    }
    let path = config.data_dir.join("ca-bundle.pem");
    if std::fs::read_to_string(&path).is_ok_and(|old| old == pem) {
        return;
    }
    let tmp = config.data_dir.join(".ca-bundle.pem.tmp");
    let ok = std::fs::write(&tmp, pem).and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = ok {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the trust bundle file");
    }
}

/// Seconds between two runs of [`crate::state::Inner::pki_upkeep`].
pub const UPKEEP_SECS: u64 = 5;

/// Every 5 seconds: [`crate::state::Inner::pki_upkeep`] (reload, purge, renewals, rollover).
pub fn spawn_upkeep(state: &crate::state::AppState) -> tokio::task::JoinHandle<()> {
    let s = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(UPKEEP_SECS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = s.pki_upkeep().await {
                tracing::warn!(error = %e, "PKI upkeep failed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        assert!(glob("gw-*.plant1", "gw-17.plant1"));
        assert!(glob("*", "anything"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXcYYb"));
        assert!(!glob("gw-*", "xgw-1"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(!glob("ab*ba", "aba"));
    }
}
