//! First start and every start: master key, store identity checks, signing keys, audit note key,
//! the CA, and — on an empty store — the bootstrap owner, admin identity and its credentials file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;
use steward_core::apikey::{ApiKey, KeyType};
use steward_core::identity::NewIdentity;
use steward_core::{Credential, CredentialKind, Identity, IdentityKind, Outcome, Owner, OwnerKind};
use steward_crypto::master::MasterKey;
use steward_crypto::note::NoteSigner;
use steward_store::{Change, Mutation, Store, StoreError};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::config::ServerConfig;
use crate::error::ServiceError;

/// Scope that grants the whole admin API.
pub const ADMIN_SCOPE: &str = "steward:admin";
pub const ADMIN_CREDENTIALS_FILE: &str = "admin-credentials.json";

pub struct Bootstrapped {
    pub master: MasterKey,
    pub note_signer: NoteSigner,
    pub admin_identity: Option<Uuid>,
    /// Set when this start created the admin credentials file.
    pub credentials_file: Option<PathBuf>,
}

/// Loads the master key from `STEWARD_MASTER_KEY` or `DATA_DIR/master.key` (created 0600 if absent).
pub fn load_master_key(
    config: &ServerConfig,
    from_env: Option<&str>,
) -> Result<MasterKey, ServiceError> {
    if let Some(k) = from_env {
        return MasterKey::from_base64(k)
            .map_err(|e| ServiceError::Internal(format!("STEWARD_MASTER_KEY: {e}")));
    }
    let path = config.data_dir.join("master.key");
    let (key, created) =
        MasterKey::load_or_create(&path).map_err(|e| ServiceError::Internal(e.to_string()))?;
    if created {
        tracing::info!(path = %path.display(), "created a new master key");
    }
    Ok(key)
}

async fn setting_once(
    store: &dyn Store,
    key: &str,
    make: impl FnOnce() -> Result<String, ServiceError>,
) -> Result<String, ServiceError> {
    if let Some(v) = store.get_setting(key).await? {
        return Ok(v);
    }
    let value = make()?;
    match store
        .commit(Change::new().with(Mutation::InsertSetting {
            key: key.into(),
            value: value.clone(),
        }))
        .await
    {
        Ok(_) => Ok(value),
        Err(StoreError::Conflict(_)) => store
            .get_setting(key)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("setting {key} vanished"))),
        Err(e) => Err(e.into()),
    }
}

pub async fn bootstrap(
    config: &ServerConfig,
    store: &dyn Store,
    master: MasterKey,
    now: OffsetDateTime,
) -> Result<Bootstrapped, ServiceError> {
    let check = master.check_value();
    let stored = setting_once(store, "master_key_check", || Ok(check.clone())).await?;
    if stored != check {
        return Err(ServiceError::Internal(
            "the master key does not match this database: set STEWARD_MASTER_KEY (or DATA_DIR/master.key) to the key this database was created with".into(),
        ));
    }
    let td = setting_once(store, "trust_domain", || Ok(config.trust_domain.clone())).await?;
    if td != config.trust_domain {
        return Err(ServiceError::Internal(format!(
            "this database belongs to trust domain {td:?}, but the configured trust domain is {:?}",
            config.trust_domain
        )));
    }
    let schedule = crate::keys::Schedule {
        alg: steward_crypto::jws::SigningAlg::parse(&config.signing_alg)
            .map_err(|e| ServiceError::Internal(e.to_string()))?,
        period: Duration::days(i64::from(config.key_rotation_days)),
        overlap: Duration::seconds(i64::from(config.registry.max_token_lifetime_secs) + 120),
    };
    crate::keys::ensure_schedule(store, &master, schedule, now).await?;
    let ca_bundle = crate::pki::ensure_ca(config, store, &master, now).await?;

    let note_name = format!("steward-{}", config.trust_domain);
    let sealed = setting_once(store, "audit_note_key", || {
        let (_, pkcs8) =
            NoteSigner::generate(&note_name).map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(steward_crypto::b64::std_encode(
            &master.seal(b"steward/audit-note-key", &pkcs8),
        ))
    })
    .await?;
    let pkcs8 = steward_crypto::b64::std_decode(&sealed)
        .ok()
        .and_then(|s| master.open(b"steward/audit-note-key", &s).ok())
        .ok_or_else(|| ServiceError::Internal("cannot unseal the audit note key".into()))?;
    let note_signer = NoteSigner::from_pkcs8(&note_name, &pkcs8)
        .map_err(|e| ServiceError::Internal(e.to_string()))?;

    let (admin_identity, credentials_file) = match store.get_setting("admin_identity").await? {
        Some(id) => (Uuid::parse_str(&id).ok(), None),
        None => create_admin(config, store, &master, now, &ca_bundle).await?,
    };
    Ok(Bootstrapped {
        master,
        note_signer,
        admin_identity,
        credentials_file,
    })
}

/// Creates the bootstrap owner, the admin identity and its API key in one transaction, and writes
/// the key to `DATA_DIR/admin-credentials.json` (0600). The key is never shown anywhere else.
async fn create_admin(
    config: &ServerConfig,
    store: &dyn Store,
    master: &MasterKey,
    now: OffsetDateTime,
    ca_bundle: &str,
) -> Result<(Option<Uuid>, Option<PathBuf>), ServiceError> {
    let owner = Owner::new(
        Uuid::now_v7(),
        "steward-operators",
        OwnerKind::Team,
        &config.admin_contact,
        now,
    )?;
    let env = config
        .registry
        .environments
        .first()
        .cloned()
        .unwrap_or_else(|| "prod".into());
    let identity = Identity::create(
        Uuid::now_v7(),
        NewIdentity {
            name: "steward-admin".into(),
            kind: Some(IdentityKind::ServiceAccount),
            owner_id: owner.id,
            purpose: "Bootstrap administrator of this Steward deployment".into(),
            environment: env,
            expires_at: Some(
                now + config
                    .registry
                    .max_identity_lifetime(IdentityKind::ServiceAccount),
            ),
            scopes: vec![ADMIN_SCOPE.into()],
            default_scopes: Some(vec![ADMIN_SCOPE.into()]),
            ..Default::default()
        },
        &owner,
        &config.registry,
        "system",
        now,
    )?;
    let key = ApiKey::generate(KeyType::ClientSecret, &mut steward_crypto::rand::fill);
    let hasher = steward_crypto::secret_hash::SecretHasher::new(master.derive("api-key-hmac"));
    let hash = hasher.hash(key.expose_secret().as_bytes());
    let credential = Credential {
        id: Uuid::now_v7(),
        identity_id: identity.id,
        kind: CredentialKind::ApiKey,
        secret_hash: Some(hash.to_vec()),
        jwk: None,
        fingerprint: steward_crypto::b64::url_encode(&hash[..9]),
        created_at: now,
        expires_at: Credential::expiry_for(
            CredentialKind::ApiKey,
            None,
            &identity,
            &config.registry,
            now,
        )?,
        last_used_at: None,
        revoked_at: None,
        revoke_reason: None,
        rotated_from: None,
        created_by: "system".into(),
        version: 1,
    };
    let issuer = config.issuer();
    let file = steward_proto::CredentialsFile {
        client_id: identity.id.to_string(),
        client_secret: key.expose_secret().to_owned(),
        issuer: issuer.clone(),
        token_endpoint: format!("{issuer}/oauth2/token"),
        ca_bundle: Some(ca_bundle.to_owned()),
    };
    let final_path = config.data_dir.join(ADMIN_CREDENTIALS_FILE);
    let tmp_path = config
        .data_dir
        .join(format!(".{ADMIN_CREDENTIALS_FILE}.tmp"));
    write_private_file(&tmp_path, &file)?;
    let ev = |action: &str, target: String| {
        steward_core::AuditEvent::new(now, "system", action, Outcome::Success)
            .target(target)
            .reason("bootstrap")
    };
    let change = Change::new()
        .with(Mutation::InsertSetting { key: "admin_identity".into(), value: identity.id.to_string() })
        .with(Mutation::InsertOwner(owner.clone()))
        .with(Mutation::InsertIdentity(identity.clone()))
        .with(Mutation::InsertCredential(credential.clone()))
        .audit(ev("owner.create", format!("owner:{}", owner.id)).details(json!({"name": owner.name})))
        .audit(
            ev("identity.create", format!("identity:{}", identity.id))
                .identity(identity.id)
                .details(json!({"name": identity.name, "scopes": identity.scopes})),
        )
        .audit(
            ev("credential.create", format!("credential:{}", credential.id))
                .identity(identity.id)
                .details(json!({"credential_id": credential.id, "type": "api_key", "fingerprint": credential.fingerprint})),
        );
    match store.commit(change).await {
        Ok(_) => {
            std::fs::rename(&tmp_path, &final_path).map_err(|e| {
                ServiceError::Internal(format!("cannot write {}: {e}", final_path.display()))
            })?;
            tracing::info!(path = %final_path.display(), "bootstrap: wrote the admin credentials file (shown nowhere else)");
            Ok((Some(identity.id), Some(final_path)))
        }
        Err(StoreError::Conflict(_)) => {
            // Another node bootstrapped concurrently; its admin serves.
            let _ = std::fs::remove_file(&tmp_path);
            let id = store
                .get_setting("admin_identity")
                .await?
                .and_then(|s| Uuid::parse_str(&s).ok());
            Ok((id, None))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp_path);
            Err(e.into())
        }
    }
}

/// Writes JSON to a new file readable only by its owner (0600), replacing a stale temp file.
pub fn write_private_file(path: &Path, value: &impl serde::Serialize) -> Result<(), ServiceError> {
    let _ = std::fs::remove_file(path);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| ServiceError::Internal(format!("cannot create {}: {e}", path.display())))?;
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|e| ServiceError::Internal(e.to_string()))?;
    f.write_all(&bytes)
        .and_then(|_| f.write_all(b"\n"))
        .and_then(|_| f.sync_all())
        .map_err(|e| ServiceError::Internal(format!("cannot write {}: {e}", path.display())))
}
