//! Leak reports: a reported Steward key is revoked at once, an `NHI2:2025` finding is raised on
//! its identity, everything is audited, and the owner is notified by webhook off the request path.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use steward_core::apikey::{ApiKey, redact};
use steward_core::{Credential, CredentialKind, CredentialState, Outcome};
use steward_store::{Change, FindingQuery, FindingRecord, FindingStatus, Mutation, StoreError};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Ctx;
use crate::error::ServiceError;
use crate::state::Inner;

/// The scope a Steward token needs to report leaks.
pub const LEAK_REPORT_SCOPE: &str = "steward:leaks:report";
/// Most entries accepted in one report.
pub const MAX_ENTRIES: usize = 1000;
/// Finding type raised for a leaked credential.
pub const FINDING_TYPE: &str = "secret_leaked";
/// Queued webhook notifications; beyond this, notifications are dropped (and logged).
const NOTIFY_QUEUE: usize = 1024;

/// A public key that may sign leak reports (GitHub's `Github-Public-Key-Identifier`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LeakReportKey {
    pub key_id: String,
    /// `-----BEGIN PUBLIC KEY-----` PEM of an ECDSA P-256 key.
    pub pem: String,
}

/// One entry of a report, in GitHub's secret-scanning partner format.
#[derive(Debug, Clone, Deserialize)]
pub struct LeakEntry {
    pub token: String,
    #[serde(rename = "type", default)]
    pub token_type: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub source: String,
}

/// What happened to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakLabel {
    Revoked,
    AlreadyRevoked,
    /// Unknown, or not a Steward key at all: the same answer either way.
    NotOurs,
}

/// The reply for one entry, parallel to the request (never echoes the token).
#[derive(Debug, Clone, Serialize)]
pub struct LeakReply {
    pub token_type: String,
    pub label: LeakLabel,
}

/// Who reported: a signing partner key, or a Steward identity.
#[derive(Debug, Clone)]
pub enum Reporter {
    Partner { key_id: String },
    Identity { id: Uuid },
}

impl Reporter {
    fn describe(&self) -> String {
        match self {
            Self::Partner { key_id } => format!("partner:{key_id}"),
            Self::Identity { id } => format!("identity:{id}"),
        }
    }
}

/// Sends owner notifications to the configured webhook from a background task.
pub struct Notifier {
    tx: Option<tokio::sync::mpsc::Sender<Value>>,
}

impl Notifier {
    /// Starts the delivery task when a webhook is configured (call inside the runtime).
    pub fn spawn(webhook_url: Option<String>) -> Self {
        let Some(url) = webhook_url else {
            return Self { tx: None };
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Value>(NOTIFY_QUEUE);
        tokio::spawn(async move {
            let client = match reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "leak notifier: cannot build an HTTP client");
                    return;
                }
            };
            while let Some(payload) = rx.recv().await {
                deliver(&client, &url, &payload).await;
            }
        });
        Self { tx: Some(tx) }
    }

    fn notify(&self, payload: Value) {
        if let Some(tx) = &self.tx
            && tx.try_send(payload).is_err()
        {
            metrics::counter!("steward_leak_notifications_dropped_total").increment(1);
            tracing::warn!("leak notifier queue is full; a notification was dropped");
        }
    }
}

/// POSTs one notification, retrying transient failures a few times with back-off.
async fn deliver(client: &reqwest::Client, url: &str, payload: &Value) {
    for attempt in 0..4u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250 * 2u64.pow(attempt))).await;
        }
        match client.post(url).json(payload).send().await {
            Ok(r) if r.status().is_success() => {
                metrics::counter!("steward_leak_notifications_total").increment(1);
                return;
            }
            Ok(r) if r.status().is_client_error() => {
                tracing::warn!(status = %r.status(), "leak notification refused by the webhook");
                return;
            }
            Ok(r) => tracing::warn!(status = %r.status(), attempt, "leak notification failed"),
            Err(e) => tracing::warn!(error = %e, attempt, "leak notification failed"),
        }
    }
    metrics::counter!("steward_leak_notifications_failed_total").increment(1);
}

/// Checks the leak settings of a configuration.
pub fn validate_config(keys: &[LeakReportKey], webhook: Option<&str>) -> Result<(), String> {
    for k in keys {
        if k.key_id.is_empty() {
            return Err("leak_report_keys: key_id must not be empty".into());
        }
        steward_crypto::ecdsa::EcdsaP256PublicKey::from_pem(&k.pem)
            .map_err(|e| format!("leak_report_keys[{}]: {e}", k.key_id))?;
    }
    if let Some(u) = webhook {
        let parsed =
            url::Url::parse(u).map_err(|e| format!("leak_webhook_url is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("leak_webhook_url must be an http or https URL".into());
        }
    }
    Ok(())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Inner {
    /// Verifies a partner signature (base64 DER ECDSA P-256/SHA-256 over the raw body) against
    /// the configured key `key_id`.
    pub fn verify_leak_signature(
        &self,
        key_id: &str,
        signature_b64: &str,
        body: &[u8],
    ) -> Result<(), ServiceError> {
        let key = self
            .config
            .leak_report_keys
            .iter()
            .find(|k| k.key_id == key_id)
            .ok_or_else(|| ServiceError::Unauthorized("unknown signing key".into()))?;
        let key = steward_crypto::ecdsa::EcdsaP256PublicKey::from_pem(&key.pem).map_err(|e| {
            tracing::error!(key_id, error = %e, "configured leak-report key is invalid");
            ServiceError::Unauthorized("unknown signing key".into())
        })?;
        let sig = steward_crypto::b64::std_decode(signature_b64.trim())
            .map_err(|_| ServiceError::Unauthorized("malformed signature".into()))?;
        key.verify_asn1(body, &sig)
            .map_err(|_| ServiceError::Unauthorized("invalid signature".into()))
    }

    /// Handles one authenticated report: every entry gets a reply, in order.
    pub async fn report_leaks(
        &self,
        ctx: &Ctx,
        reporter: &Reporter,
        entries: Vec<LeakEntry>,
    ) -> Result<Vec<LeakReply>, ServiceError> {
        if entries.len() > MAX_ENTRIES {
            return Err(ServiceError::invalid(format!(
                "a report holds at most {MAX_ENTRIES} entries"
            )));
        }
        let mut replies = Vec::with_capacity(entries.len());
        let (mut revoked, mut already, mut not_ours) = (0u32, 0u32, 0u32);
        for e in &entries {
            let label = self.handle_leak(ctx, reporter, e).await?;
            match label {
                LeakLabel::Revoked => revoked += 1,
                LeakLabel::AlreadyRevoked => already += 1,
                LeakLabel::NotOurs => not_ours += 1,
            }
            replies.push(LeakReply {
                token_type: e.token_type.clone(),
                label,
            });
        }
        let event = ctx
            .event(self.now(), "leak.report", Outcome::Success)
            .details(json!({
                "reporter": reporter.describe(),
                "entries": entries.len(),
                "revoked": revoked,
                "already_revoked": already,
                "not_ours": not_ours,
            }));
        self.store.commit(Change::audit_only(event)).await?;
        metrics::counter!("steward_leaks_revoked_total").increment(u64::from(revoked));
        Ok(replies)
    }

    async fn handle_leak(
        &self,
        ctx: &Ctx,
        reporter: &Reporter,
        e: &LeakEntry,
    ) -> Result<LeakLabel, ServiceError> {
        let Ok(key) = ApiKey::parse(e.token.trim()) else {
            return Ok(LeakLabel::NotOurs);
        };
        let hash = self.hasher.hash(key.expose_secret().as_bytes());
        // A concurrent report of the same key makes the optimistic update stale: re-read once.
        for _ in 0..3 {
            let Some(cred) = self.store.find_credential_by_hash(&hash).await? else {
                return Ok(LeakLabel::NotOurs);
            };
            if cred.kind != CredentialKind::ApiKey
                || !cred
                    .secret_hash
                    .as_deref()
                    .is_some_and(|h| steward_crypto::constant_time_eq(h, &hash))
            {
                return Ok(LeakLabel::NotOurs);
            }
            match self.revoke_leaked(ctx, reporter, e, &key, cred).await {
                Err(ServiceError::Store(StoreError::Stale(_) | StoreError::Conflict(_))) => {
                    continue;
                }
                other => return other,
            }
        }
        Err(ServiceError::Internal(
            "leak report kept conflicting with concurrent changes".into(),
        ))
    }

    async fn revoke_leaked(
        &self,
        ctx: &Ctx,
        reporter: &Reporter,
        e: &LeakEntry,
        key: &ApiKey,
        before: Credential,
    ) -> Result<LeakLabel, ServiceError> {
        let now = self.now();
        let was_revoked = before.state(now) == CredentialState::Revoked;
        let label = if was_revoked {
            LeakLabel::AlreadyRevoked
        } else {
            LeakLabel::Revoked
        };
        let url = e.url.chars().take(2048).collect::<String>();
        let source = e.source.chars().take(64).collect::<String>();
        let mut change = Change::new();
        let mut after = before.clone();
        if !was_revoked {
            after.revoke(Some("leaked".into()), now)?;
            change = change
                .with(Mutation::UpdateCredential {
                    credential: after.clone(),
                    expected_version: before.version,
                })
                .audit(
                    ctx.event(now, "credential.revoke", Outcome::Success)
                        .target(format!("credential:{}", after.id))
                        .identity(after.identity_id)
                        .reason("leaked")
                        .details(json!({
                            "credential_id": after.id,
                            "type": after.kind.as_str(),
                            "fingerprint": after.fingerprint,
                            "reporter": reporter.describe(),
                            "url": url,
                            "source": source,
                        })),
                );
        }
        // One open finding per leaked credential; later reports refresh it.
        let dedup_key = format!("{FINDING_TYPE}:credential:{}", before.id);
        let existing = self
            .store
            .list_findings(&FindingQuery {
                dedup_key: Some(dedup_key.clone()),
                status: Some(FindingStatus::Open),
                limit: 1,
                ..Default::default()
            })
            .await?
            .items
            .into_iter()
            .next();
        let report = json!({"url": url, "source": source, "reporter": reporter.describe(), "at": rfc3339(now)});
        let (finding, action) = match existing {
            Some(f) => {
                let mut g = f.clone();
                g.last_seen = now;
                let mut reports = g.evidence["reports"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if reports.len() < 20 {
                    reports.push(report);
                }
                g.evidence["reports"] = Value::Array(reports);
                g.version += 1;
                change = change.with(Mutation::UpdateFinding {
                    finding: g.clone(),
                    expected_version: f.version,
                });
                (g, "finding.update")
            }
            None => {
                let f = FindingRecord {
                    id: Uuid::now_v7(),
                    identity_id: Some(before.identity_id),
                    kind: FINDING_TYPE.into(),
                    severity: if was_revoked { "medium" } else { "critical" }.into(),
                    status: FindingStatus::Open,
                    owasp_nhi: "NHI2:2025".into(),
                    nist_csf: "PR.AA-01".into(),
                    evidence: json!({
                        "credential_id": before.id,
                        "fingerprint": before.fingerprint,
                        "key": key.redacted(),
                        "revoked": !was_revoked,
                        "reports": [report],
                    }),
                    dedup_key,
                    first_seen: now,
                    last_seen: now,
                    resolved_at: None,
                    version: 1,
                    accepted_until: None,
                    accepted_reason: None,
                    accepted_by: None,
                };
                change = change.with(Mutation::InsertFinding(f.clone()));
                (f, "finding.raise")
            }
        };
        change = change.audit(
            ctx.event(now, action, Outcome::Success)
                .target(format!("finding:{}", finding.id))
                .identity(before.identity_id)
                .details(json!({
                    "type": FINDING_TYPE,
                    "owasp_nhi": finding.owasp_nhi,
                    "nist_csf": finding.nist_csf,
                    "severity": finding.severity,
                    "credential_id": before.id,
                    "url": url,
                })),
        );
        self.store.commit(change).await?;
        self.invalidate_credential(&after);
        if !was_revoked {
            tracing::warn!(credential = %after.id, identity = %after.identity_id, key = %key.redacted(), "leaked key revoked");
            self.notify_owner(&after, key, &url, &source, reporter, finding.id, now)
                .await;
        }
        Ok(label)
    }

    #[allow(clippy::too_many_arguments)]
    async fn notify_owner(
        &self,
        c: &Credential,
        key: &ApiKey,
        url: &str,
        source: &str,
        reporter: &Reporter,
        finding: Uuid,
        now: OffsetDateTime,
    ) {
        let identity = self.store.get_identity(c.identity_id).await.ok().flatten();
        let owner = match &identity {
            Some(i) => self.store.get_owner(i.owner_id).await.ok().flatten(),
            None => None,
        };
        self.leak_notifier.notify(json!({
            "event": "steward.leak.revoked",
            "at": rfc3339(now),
            "identity": identity.as_ref().map(|i| json!({"id": i.id, "name": i.name, "environment": i.environment})),
            "owner": owner.as_ref().map(|o| json!({"id": o.id, "name": o.name, "contact": o.contact})),
            "credential": {"id": c.id, "fingerprint": c.fingerprint, "key": redact(key.expose_secret())},
            "url": url,
            "source": source,
            "reporter": reporter.describe(),
            "finding_id": finding,
            "owasp_nhi": "NHI2:2025",
        }));
    }
}
