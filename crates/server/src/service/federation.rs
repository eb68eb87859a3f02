//! Federation and delegation: trust-policy use cases (`/v1/trust-policies`, explain), and RFC 8693
//! token exchange at `/oauth2/token` for external JWTs, Steward tokens, and agent delegation chains.
//!
//! Client authentication is optional for token exchange (RFC 8693 §2.1 leaves it to the
//! deployment): the subject token (and actor token) are the proof. When a client does
//! authenticate, it must succeed, and it becomes the new token's `client_id`. A refused exchange
//! tells the client only `invalid_grant` (or `invalid_scope`/`invalid_target`/`invalid_request`);
//! the precise reason goes to the audit log and to `explain`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use steward_core::trust::{Actor, RegisteredClaimError, RuleResult, TrustPolicy, TrustPolicySpec};
use steward_core::{Identity, Outcome, scope};
use steward_crypto::CryptoError;
use steward_crypto::jws::{self, Decoded, KeySet};
use steward_proto::trust as wire;
use steward_store::{Change, Mutation, TrustPolicyQuery, TrustPolicyRecord};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Ctx;
use super::jwks_cache::{JwksCache, JwksSettings};
use super::tokens::{AccessClaims, Audience, AuthenticatedClient, Form, Issued, OAuthError};
use crate::error::ServiceError;
use crate::state::Inner;

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const TT_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const TT_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const TT_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// Audit action of every exchange, accepted or refused.
pub const EXCHANGE_ACTION: &str = "token.exchange";

/// `federation` settings of the server configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// Most actors in one delegation chain (`act` nesting).
    pub max_delegation_depth: u32,
    /// Clock skew tolerated on external tokens' `exp`, `nbf` and `iat`, in seconds.
    pub clock_skew_secs: u32,
    /// How long a fetched JWK Set is used, in seconds; past it, a failed refresh refuses tokens.
    pub jwks_cache_ttl_secs: u64,
    /// Shortest interval between two fetches of one JWKS URL (refresh on an unknown `kid`).
    pub jwks_refresh_interval_secs: u64,
    /// Timeout of one JWKS fetch, in seconds.
    pub jwks_fetch_timeout_secs: u64,
    /// Largest JWKS document accepted, in bytes.
    pub jwks_max_bytes: usize,
    /// Most JWKS URLs cached at once.
    pub jwks_max_entries: usize,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            max_delegation_depth: 3,
            clock_skew_secs: 60,
            jwks_cache_ttl_secs: 300,
            jwks_refresh_interval_secs: 30,
            jwks_fetch_timeout_secs: 5,
            jwks_max_bytes: 256 * 1024,
            jwks_max_entries: 1024,
        }
    }
}

impl FederationConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=16).contains(&self.max_delegation_depth) {
            return Err("federation.max_delegation_depth must be 1 to 16".into());
        }
        if self.clock_skew_secs > 600 {
            return Err("federation.clock_skew_secs must be at most 600".into());
        }
        if self.jwks_cache_ttl_secs == 0 || self.jwks_fetch_timeout_secs == 0 {
            return Err(
                "federation.jwks_cache_ttl_secs and jwks_fetch_timeout_secs must be positive"
                    .into(),
            );
        }
        if self.jwks_max_bytes < 1024 || self.jwks_max_entries == 0 {
            return Err(
                "federation.jwks_max_bytes must be at least 1024 and jwks_max_entries positive"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A stored policy, compiled, with its inline keys parsed.
pub struct LoadedPolicy {
    pub id: Uuid,
    pub version: i64,
    pub policy: TrustPolicy,
    inline_keys: Option<KeySet>,
}

#[derive(Default)]
struct Snapshot {
    by_issuer: HashMap<String, Vec<Arc<LoadedPolicy>>>,
}

/// Per-process federation state: the compiled trust policies and the JWKS cache.
pub struct Federation {
    pub config: FederationConfig,
    pub jwks: JwksCache,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    /// Bumped by every invalidation; a reload stores its result only if unchanged.
    generation: AtomicU64,
    reload: tokio::sync::Mutex<()>,
}

impl Federation {
    pub fn new(config: &FederationConfig) -> Self {
        Self {
            jwks: JwksCache::new(JwksSettings {
                ttl: time::Duration::seconds(
                    i64::try_from(config.jwks_cache_ttl_secs).unwrap_or(i64::MAX / 2),
                ),
                refresh_interval: time::Duration::seconds(
                    i64::try_from(config.jwks_refresh_interval_secs).unwrap_or(i64::MAX / 2),
                ),
                timeout: std::time::Duration::from_secs(config.jwks_fetch_timeout_secs),
                max_bytes: config.jwks_max_bytes,
                max_entries: config.jwks_max_entries,
            }),
            config: config.clone(),
            snapshot: RwLock::new(None),
            generation: AtomicU64::new(0),
            reload: tokio::sync::Mutex::new(()),
        }
    }

    /// Drops the compiled policies after a change (here or, through a notice, on another node).
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn skew(&self) -> i64 {
        i64::from(self.config.clock_skew_secs)
    }
}

fn load(record: &TrustPolicyRecord) -> Result<LoadedPolicy, String> {
    let spec: TrustPolicySpec = serde_json::from_value(record.document.clone())
        .map_err(|e| format!("stored document does not parse: {e}"))?;
    let policy = TrustPolicy::compile(spec).map_err(|e| e.to_string())?;
    let inline_keys = match &policy.spec.jwks {
        Some(j) => Some(
            KeySet::from_foreign_jwks(j, super::jwks_cache::MAX_KEYS)
                .map_err(|e| format!("inline jwks: {e}"))?
                .0,
        ),
        None => None,
    };
    Ok(LoadedPolicy {
        id: record.id,
        version: record.version,
        policy,
        inline_keys,
    })
}

pub fn view(r: &TrustPolicyRecord, spec: &TrustPolicySpec) -> wire::TrustPolicyView {
    wire::TrustPolicyView {
        id: r.id,
        name: spec.name.clone(),
        description: spec.description.clone(),
        preset: spec.preset.as_str().into(),
        issuer: spec.issuer.clone(),
        jwks_uri: spec.jwks_uri.clone(),
        jwks: spec.jwks.clone(),
        audiences: spec.audiences.clone(),
        identity: spec.identity,
        allow: spec
            .allow
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
            .collect(),
        max_token_age_secs: spec.max_token_age_secs,
        single_use: spec.single_use,
        algorithms: spec.algorithms.clone(),
        scopes: spec.scopes.clone(),
        token_lifetime_secs: spec.token_lifetime_secs,
        enabled: spec.enabled,
        version: r.version,
        created_by: r.created_by.clone(),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// RFC 7396 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// One check of the verification pipeline (for explain and audit).
struct Check {
    check: &'static str,
    ok: bool,
    detail: String,
}

/// The result of running one policy over one token.
struct PolicyRun {
    checks: Vec<Check>,
    rules: Vec<RuleResult>,
    matched_rule: Option<usize>,
    /// Why the policy refused, and whether that is an authentication failure or a denial.
    failure: Option<(Outcome, String)>,
}

impl PolicyRun {
    fn new() -> Self {
        Self {
            checks: Vec::with_capacity(8),
            rules: Vec::new(),
            matched_rule: None,
            failure: None,
        }
    }
    fn pass(&mut self, check: &'static str, detail: impl Into<String>) {
        self.checks.push(Check {
            check,
            ok: true,
            detail: detail.into(),
        });
    }
    fn fail(mut self, check: &'static str, outcome: Outcome, detail: String) -> Self {
        self.checks.push(Check {
            check,
            ok: false,
            detail: detail.clone(),
        });
        self.failure = Some((outcome, format!("{check}: {detail}")));
        self
    }
}

/// A refused exchange: what the client is told, and what the audit log records.
struct Refusal {
    error: &'static str,
    description: &'static str,
    outcome: Outcome,
    reason: String,
    identity: Option<Uuid>,
    details: Value,
}

impl Refusal {
    fn grant(outcome: Outcome, description: &'static str, reason: impl Into<String>) -> Self {
        Self {
            error: "invalid_grant",
            description,
            outcome,
            reason: reason.into(),
            identity: None,
            details: Value::Null,
        }
    }
    fn with(mut self, identity: Option<Uuid>, details: Value) -> Self {
        if self.identity.is_none() {
            self.identity = identity;
        }
        if self.details.is_null() {
            self.details = details;
        }
        self
    }
}

const SUBJECT_REFUSED: &str = "the subject_token was not accepted";
const ACTOR_REFUSED: &str = "the actor_token was not accepted";

/// Where a presented token came from, once verified.
enum Source {
    /// A Steward access token.
    Steward(Box<AccessClaims>),
    /// An external JWT accepted by a trust policy.
    External {
        policy: Arc<LoadedPolicy>,
        claims: Map<String, Value>,
        rule: usize,
    },
}

/// A verified subject or actor token.
struct Party {
    identity: Arc<Identity>,
    source: Source,
}

impl Party {
    /// Scopes this party can pass on: a Steward token's scopes (still held by the identity), or
    /// the identity's scopes within the policy's cap.
    fn scope_cap(&self) -> Vec<String> {
        match &self.source {
            Source::Steward(c) => {
                let held: Vec<String> = c
                    .scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                scope::intersect(&held, &self.identity.scopes)
            }
            Source::External { policy, .. } => match &policy.policy.spec.scopes {
                Some(cap) => scope::intersect(&self.identity.scopes, cap),
                None => self.identity.scopes.clone(),
            },
        }
    }

    fn act(&self) -> Option<&Actor> {
        match &self.source {
            Source::Steward(c) => c.act.as_ref(),
            Source::External { .. } => None,
        }
    }

    fn exp_cap(&self) -> Option<i64> {
        match &self.source {
            Source::Steward(c) => Some(c.exp),
            Source::External { .. } => None,
        }
    }

    /// Audit description of the party.
    fn describe(&self) -> Value {
        match &self.source {
            Source::Steward(c) => json!({
                "kind": "steward", "identity": self.identity.id, "jti": c.jti,
                "scope": c.scope, "act": c.act,
            }),
            Source::External {
                policy,
                claims,
                rule,
            } => json!({
                "kind": "external", "identity": self.identity.id,
                "trust_policy": policy.id, "trust_policy_name": policy.policy.spec.name,
                "rule": rule, "iss": claims.get("iss"), "sub": claims.get("sub"),
                "jti": claims.get("jti"),
            }),
        }
    }
}

fn registered_check(e: &RegisteredClaimError) -> &'static str {
    use RegisteredClaimError as E;
    match e {
        E::Issuer(_) => "issuer",
        E::Audience(_) => "audience",
        E::Malformed(_) => "claims",
        E::NoExpiry | E::Expired { .. } => "expiry",
        E::NotYetValid { .. } => "not_before",
        E::IssuedInFuture { .. } => "issued_at",
        E::NoIssuedAt | E::TooOld { .. } => "max_age",
    }
}

fn crypto_detail(e: &CryptoError, kid: Option<&str>) -> String {
    match e {
        CryptoError::KeyNotFound => format!(
            "no key with kid {:?} in the issuer's key set",
            kid.unwrap_or("")
        ),
        CryptoError::BadSignature => "the signature does not verify with the issuer's key".into(),
        other => other.to_string(),
    }
}

impl Inner {
    // ------------------------------------------------------------------ policy snapshot

    async fn trust_snapshot(&self) -> Result<Arc<Snapshot>, ServiceError> {
        if let Some(s) = self.federation.current() {
            return Ok(s);
        }
        let _guard = self.federation.reload.lock().await;
        if let Some(s) = self.federation.current() {
            return Ok(s);
        }
        let generation = self.federation.generation.load(Ordering::SeqCst);
        let mut snap = Snapshot::default();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_trust_policies(&TrustPolicyQuery {
                    after,
                    limit: 1000,
                    ..Default::default()
                })
                .await?;
            for r in &page.items {
                match load(r) {
                    Ok(lp) => snap
                        .by_issuer
                        .entry(lp.policy.spec.issuer.clone())
                        .or_default()
                        .push(Arc::new(lp)),
                    Err(e) => {
                        tracing::error!(trust_policy = %r.id, error = %e, "trust policy cannot be used")
                    }
                }
            }
            match page.next.as_deref().map(Uuid::parse_str) {
                Some(Ok(n)) => after = Some(n),
                _ => break,
            }
        }
        let snap = Arc::new(snap);
        if self.federation.generation.load(Ordering::SeqCst) == generation {
            *self
                .federation
                .snapshot
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Some(snap.clone());
        }
        Ok(snap)
    }

    // ------------------------------------------------------------------ CRUD

    async fn checked_spec(
        &self,
        doc: Value,
    ) -> Result<(TrustPolicySpec, TrustPolicy), ServiceError> {
        let spec: TrustPolicySpec = serde_json::from_value(doc)
            .map_err(|e| ServiceError::invalid(format!("invalid trust policy: {e}")))?;
        let compiled = TrustPolicy::compile(spec)?;
        if let Some(j) = &compiled.spec.jwks {
            let (keys, skipped) = KeySet::from_foreign_jwks(j, super::jwks_cache::MAX_KEYS)
                .map_err(|e| ServiceError::invalid(format!("invalid jwks: {e}")))?;
            if keys.is_empty() {
                return Err(ServiceError::invalid(format!(
                    "invalid jwks: no usable signature key with a kid ({})",
                    skipped.join("; ")
                )));
            }
        }
        let identity = compiled.spec.identity;
        if self.store.get_identity(identity).await?.is_none() {
            return Err(ServiceError::invalid(format!(
                "invalid identity: unknown identity {identity}"
            )));
        }
        Ok((compiled.spec.clone(), compiled))
    }

    pub async fn create_trust_policy(
        &self,
        ctx: &Ctx,
        req: wire::CreateTrustPolicy,
    ) -> Result<wire::TrustPolicyView, ServiceError> {
        let doc = serde_json::to_value(&req).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let (spec, _) = self.checked_spec(doc).await?;
        let now = self.now();
        let record = TrustPolicyRecord {
            id: Uuid::now_v7(),
            name: spec.name.clone(),
            issuer: spec.issuer.clone(),
            identity_id: spec.identity,
            document: serde_json::to_value(&spec)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
            created_by: ctx.actor.clone(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let event = ctx
            .event(now, "trust_policy.create", Outcome::Success)
            .target(format!("trust_policy:{}", record.id))
            .identity(spec.identity)
            .details(json!({"name": spec.name, "policy": record.document}));
        self.store
            .commit(
                Change::new()
                    .with(Mutation::InsertTrustPolicy(record.clone()))
                    .audit(event),
            )
            .await?;
        self.federation.invalidate();
        let stored = self
            .store
            .get_trust_policy(record.id)
            .await?
            .unwrap_or(record);
        Ok(view(&stored, &spec))
    }

    async fn trust_record(
        &self,
        id: Uuid,
    ) -> Result<(TrustPolicyRecord, TrustPolicySpec), ServiceError> {
        let r = self
            .store
            .get_trust_policy(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("trust policy {id}")))?;
        let spec = serde_json::from_value(r.document.clone())
            .map_err(|e| ServiceError::Internal(format!("trust policy {id}: {e}")))?;
        Ok((r, spec))
    }

    pub async fn get_trust_policy(&self, id: Uuid) -> Result<wire::TrustPolicyView, ServiceError> {
        let (r, spec) = self.trust_record(id).await?;
        Ok(view(&r, &spec))
    }

    pub async fn list_trust_policies(
        &self,
        q: &TrustPolicyQuery,
    ) -> Result<steward_proto::List<wire::TrustPolicyView>, ServiceError> {
        let page = self.store.list_trust_policies(q).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for r in &page.items {
            let spec: TrustPolicySpec = serde_json::from_value(r.document.clone())
                .map_err(|e| ServiceError::Internal(format!("trust policy {}: {e}", r.id)))?;
            items.push(view(r, &spec));
        }
        Ok(steward_proto::List {
            items,
            next_cursor: page.next,
        })
    }

    pub async fn update_trust_policy(
        &self,
        ctx: &Ctx,
        id: Uuid,
        req: wire::UpdateTrustPolicy,
    ) -> Result<wire::TrustPolicyView, ServiceError> {
        let (before, before_spec) = self.trust_record(id).await?;
        if req.expected_version.is_some_and(|v| v != before.version) {
            return Err(steward_store::StoreError::Stale(format!("trust policy {id}")).into());
        }
        let mut doc = before.document.clone();
        merge_patch(&mut doc, &Value::Object(req.fields));
        // A new inline key set replaces a URL and the other way round.
        if let Value::Object(m) = &doc
            && m.contains_key("jwks")
            && m.contains_key("jwks_uri")
        {
            return Err(ServiceError::invalid(
                "invalid jwks: give jwks_uri or an inline jwks, not both (set the other to null)",
            ));
        }
        let (spec, _) = self.checked_spec(doc).await?;
        let now = self.now();
        let after = TrustPolicyRecord {
            name: spec.name.clone(),
            issuer: spec.issuer.clone(),
            identity_id: spec.identity,
            document: serde_json::to_value(&spec)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
            updated_at: now,
            version: before.version + 1,
            ..before.clone()
        };
        let mut changes = Map::new();
        if let (Value::Object(x), Value::Object(y)) = (&before.document, &after.document) {
            for k in x.keys().chain(y.keys()) {
                if x.get(k) != y.get(k) && !changes.contains_key(k) {
                    changes.insert(k.clone(), json!({"before": x.get(k), "after": y.get(k)}));
                }
            }
        }
        let event = ctx
            .event(now, "trust_policy.update", Outcome::Success)
            .target(format!("trust_policy:{id}"))
            .identity(spec.identity)
            .details(json!({"name": spec.name, "changes": changes, "previous_identity": before_spec.identity}));
        self.store
            .commit(
                Change::new()
                    .with(Mutation::UpdateTrustPolicy {
                        policy: after.clone(),
                        expected_version: before.version,
                    })
                    .audit(event),
            )
            .await?;
        self.federation.invalidate();
        Ok(view(&after, &spec))
    }

    pub async fn delete_trust_policy(&self, ctx: &Ctx, id: Uuid) -> Result<(), ServiceError> {
        let (before, spec) = self.trust_record(id).await?;
        let event = ctx
            .event(self.now(), "trust_policy.delete", Outcome::Success)
            .target(format!("trust_policy:{id}"))
            .identity(spec.identity)
            .details(json!({"name": spec.name, "issuer": spec.issuer, "version": before.version}));
        self.store
            .commit(
                Change::new()
                    .with(Mutation::DeleteTrustPolicy {
                        id,
                        expected_version: before.version,
                    })
                    .audit(event),
            )
            .await?;
        self.federation.invalidate();
        Ok(())
    }

    // ------------------------------------------------------------------ verification

    /// Runs one policy over one decoded external token, in the token endpoint's order: issuer,
    /// algorithm, keys, signature, registered claims, preset, rules.
    async fn run_policy(
        &self,
        lp: &LoadedPolicy,
        decoded: &Decoded,
        now: OffsetDateTime,
        explain: bool,
    ) -> PolicyRun {
        let mut run = PolicyRun::new();
        let spec = &lp.policy.spec;
        let iss = decoded.claim_str("iss").unwrap_or("");
        if iss != spec.issuer {
            return run.fail(
                "issuer",
                Outcome::Failure,
                format!(
                    "token iss {iss:?} is not the policy's issuer {:?}",
                    spec.issuer
                ),
            );
        }
        run.pass("issuer", format!("iss is {iss:?}"));
        if !spec.enabled {
            return run.fail("enabled", Outcome::Denied, "the policy is disabled".into());
        }
        let alg = decoded.alg.as_str();
        if !lp.policy.accepts_algorithm(alg) {
            return run.fail(
                "algorithm",
                Outcome::Failure,
                format!(
                    "alg {alg} is not in the policy's algorithms ({})",
                    spec.algorithms.join(", ")
                ),
            );
        }
        run.pass("algorithm", format!("alg {alg} is allowed"));
        let (keys, note) = match (&lp.inline_keys, &spec.jwks_uri) {
            (Some(k), _) => (k.clone(), None),
            (None, Some(uri)) => match self.federation.jwks.keys_for(uri, decoded.kid(), now).await
            {
                Ok(k) => (k.keys, k.note),
                Err(e) => return run.fail("keys", Outcome::Failure, e),
            },
            (None, None) => {
                return run.fail("keys", Outcome::Failure, "the policy names no keys".into());
            }
        };
        run.pass("keys", format!("{} key(s) available", keys.len()));
        if let Err(e) = keys.verify_decoded(decoded, None) {
            let mut detail = crypto_detail(&e, decoded.kid());
            if let Some(n) = note {
                detail = format!("{detail} ({n})");
            }
            return run.fail("signature", Outcome::Failure, detail);
        }
        run.pass(
            "signature",
            format!("verified with kid {:?}", decoded.kid().unwrap_or("")),
        );
        if let Err(e) = lp.policy.check_registered(
            &decoded.claims,
            now.unix_timestamp(),
            self.federation.skew(),
        ) {
            return run.fail(registered_check(&e), Outcome::Failure, e.to_string());
        }
        run.pass(
            "registered_claims",
            "aud, exp, nbf, iat and age are acceptable",
        );
        if let Err(e) = lp.policy.check_preset(&decoded.claims) {
            return run.fail("preset", Outcome::Denied, e);
        }
        run.pass("preset", format!("{} token shape", spec.preset.as_str()));
        if explain {
            run.rules = lp.policy.explain_rules(&decoded.claims);
            run.matched_rule = run.rules.iter().find(|r| r.matched).map(|r| r.rule);
            if run.matched_rule.is_none() {
                let why = lp
                    .policy
                    .evaluate_rules(&decoded.claims)
                    .err()
                    .unwrap_or_default();
                return run.fail("rules", Outcome::Denied, why);
            }
        } else {
            match lp.policy.evaluate_rules(&decoded.claims) {
                Ok(r) => run.matched_rule = Some(r),
                Err(why) => return run.fail("rules", Outcome::Denied, why),
            }
        }
        run.pass(
            "rules",
            format!("rule {} matched", run.matched_rule.unwrap_or_default()),
        );
        run
    }

    /// `POST /v1/trust-policies/{id}/explain`: every check for `token` under one policy. Nothing
    /// is stored, and a single-use token is not consumed.
    pub async fn explain_trust_policy(
        &self,
        id: Uuid,
        token: &str,
    ) -> Result<wire::ExplainResponse, ServiceError> {
        let (record, _) = self.trust_record(id).await?;
        let lp = load(&record).map_err(ServiceError::Internal)?;
        let now = self.now();
        let identity = lp.policy.spec.identity;
        let decoded = match jws::decode(token) {
            Ok(d) => d,
            Err(e) => {
                let claims = jws::peek_claims(token)
                    .map(Value::Object)
                    .unwrap_or(Value::Null);
                let detail = e.to_string();
                return Ok(wire::ExplainResponse {
                    policy: id,
                    accepted: false,
                    reason: Some(format!("decode: {detail}")),
                    checks: vec![wire::ExplainCheck {
                        check: "decode".into(),
                        ok: false,
                        detail,
                    }],
                    rules: vec![],
                    matched_rule: None,
                    identity,
                    header: Value::Null,
                    claims,
                });
            }
        };
        let mut run = self.run_policy(&lp, &decoded, now, true).await;
        if run.failure.is_none() {
            match self.identity(identity).await? {
                Some(i) => match i.check_can_authenticate(now) {
                    Ok(()) => run.pass("identity", format!("identity {identity} is active")),
                    Err(r) => {
                        run = run.fail(
                            "identity",
                            Outcome::Denied,
                            format!("identity {identity}: {r}"),
                        )
                    }
                },
                None => {
                    run = run.fail(
                        "identity",
                        Outcome::Denied,
                        format!("identity {identity} does not exist"),
                    )
                }
            }
        }
        if run.failure.is_none() && lp.policy.spec.single_use {
            match decoded.claim_str("jti") {
                Some(j) if !j.is_empty() => run.pass(
                    "single_use",
                    "the token has a jti; it is accepted once (explain does not consume it)",
                ),
                _ => {
                    run = run.fail(
                        "single_use",
                        Outcome::Denied,
                        "the policy accepts tokens once, by jti, and this token has none".into(),
                    )
                }
            }
        }
        Ok(wire::ExplainResponse {
            policy: id,
            accepted: run.failure.is_none(),
            reason: run.failure.map(|(_, r)| r),
            checks: run
                .checks
                .into_iter()
                .map(|c| wire::ExplainCheck {
                    check: c.check.into(),
                    ok: c.ok,
                    detail: c.detail,
                })
                .collect(),
            rules: run
                .rules
                .iter()
                .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
                .collect(),
            matched_rule: run.matched_rule,
            identity,
            header: Value::Object(decoded.header.clone()),
            claims: Value::Object(decoded.claims.clone()),
        })
    }

    /// Verifies an external JWT against every enabled trust policy for its issuer: exactly one
    /// must accept it. Returns the mapped identity.
    async fn external_party(
        &self,
        token: &str,
        now: OffsetDateTime,
        what: &'static str,
    ) -> Result<Party, Refusal> {
        let refused = if what == "actor" {
            ACTOR_REFUSED
        } else {
            SUBJECT_REFUSED
        };
        let peek = || {
            jws::peek_claims(token)
                .map(|c| json!({"iss": c.get("iss"), "sub": c.get("sub"), "token": what}))
                .unwrap_or_else(|| json!({"token": what}))
        };
        let decoded = jws::decode(token).map_err(|e| {
            Refusal::grant(Outcome::Failure, refused, format!("{what} token: {e}"))
                .with(None, peek())
        })?;
        let iss = decoded.claim_str("iss").unwrap_or("").to_owned();
        let context = json!({"iss": iss, "sub": decoded.claim_str("sub"), "token": what});
        let snap = self.trust_snapshot().await.map_err(|e| {
            Refusal::grant(
                Outcome::Failure,
                refused,
                format!("trust policies unavailable: {e}"),
            )
        })?;
        let candidates: Vec<&Arc<LoadedPolicy>> = snap
            .by_issuer
            .get(&iss)
            .map(|v| v.iter().filter(|p| p.policy.spec.enabled).collect())
            .unwrap_or_default();
        if candidates.is_empty() {
            return Err(Refusal::grant(
                Outcome::Failure,
                refused,
                format!("{what} token: no enabled trust policy for issuer {iss:?}"),
            )
            .with(None, context));
        }
        let mut accepted: Vec<(&Arc<LoadedPolicy>, usize)> = Vec::new();
        let mut failures: Vec<(String, Outcome, String)> = Vec::new();
        for lp in candidates {
            let run = self.run_policy(lp, &decoded, now, false).await;
            match run.failure {
                None => accepted.push((lp, run.matched_rule.unwrap_or_default())),
                Some((o, r)) => failures.push((lp.policy.spec.name.clone(), o, r)),
            }
        }
        let (lp, rule) = match accepted.as_slice() {
            [one] => *one,
            [] => {
                let outcome = if failures.iter().any(|f| f.1 == Outcome::Denied) {
                    Outcome::Denied
                } else {
                    Outcome::Failure
                };
                let reason = match failures.as_slice() {
                    [(name, _, r)] => format!("{what} token refused by trust policy {name:?}: {r}"),
                    many => format!(
                        "{what} token refused by every trust policy for {iss:?}: {}",
                        many.iter()
                            .map(|(n, _, r)| format!("{n:?}: {r}"))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                };
                return Err(Refusal::grant(outcome, refused, reason).with(None, context));
            }
            many => {
                return Err(Refusal::grant(
                    Outcome::Denied,
                    refused,
                    format!(
                        "{what} token is accepted by {} trust policies ({}); the mapping is ambiguous, narrow their rules",
                        many.len(),
                        many.iter()
                            .map(|(p, _)| format!("{:?}", p.policy.spec.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .with(None, context));
            }
        };
        let id = lp.policy.spec.identity;
        let ctx_details = json!({"iss": iss, "sub": decoded.claim_str("sub"), "token": what,
            "trust_policy": lp.id, "trust_policy_name": lp.policy.spec.name, "rule": rule});
        let identity = match self.identity(id).await {
            Ok(Some(i)) => i,
            Ok(None) => {
                return Err(Refusal::grant(
                    Outcome::Denied,
                    refused,
                    format!("{what} token maps to identity {id}, which does not exist"),
                )
                .with(Some(id), ctx_details));
            }
            Err(e) => {
                return Err(Refusal::grant(
                    Outcome::Failure,
                    refused,
                    format!("identity lookup failed: {e}"),
                )
                .with(Some(id), ctx_details));
            }
        };
        if let Err(r) = identity.check_can_authenticate(now) {
            return Err(Refusal::grant(
                Outcome::Denied,
                refused,
                format!("{what} token maps to identity {id}: {r}"),
            )
            .with(Some(id), ctx_details));
        }
        Ok(Party {
            identity,
            source: Source::External {
                policy: lp.clone(),
                claims: decoded.claims,
                rule,
            },
        })
    }

    /// A Steward access token presented as subject or actor token: fully verified, and not
    /// sender-constrained (exchanging a DPoP- or certificate-bound token would shed its binding).
    async fn steward_party(&self, token: &str, what: &'static str) -> Result<Party, Refusal> {
        let refused = if what == "actor" {
            ACTOR_REFUSED
        } else {
            SUBJECT_REFUSED
        };
        let v = self.verify_token(token).await.map_err(|r| {
            Refusal::grant(Outcome::Failure, refused, format!("{what} token: {r}"))
                .with(None, json!({"token": what, "iss": self.issuer}))
        })?;
        if v.claims.cnf.is_some() {
            return Err(Refusal::grant(
                Outcome::Denied,
                refused,
                format!("{what} token is sender-constrained (DPoP or certificate-bound) and cannot be exchanged"),
            )
            .with(Some(v.identity.id), json!({"token": what, "jti": v.claims.jti})));
        }
        Ok(Party {
            identity: v.identity,
            source: Source::Steward(Box::new(v.claims)),
        })
    }

    async fn party(
        &self,
        token: &str,
        token_type: &str,
        now: OffsetDateTime,
        what: &'static str,
    ) -> Result<Party, Refusal> {
        if !matches!(token_type, TT_ACCESS_TOKEN | TT_JWT | TT_ID_TOKEN) {
            return Err(Refusal {
                error: "invalid_request",
                description: "unsupported token type: use urn:ietf:params:oauth:token-type:jwt, id_token or access_token",
                outcome: Outcome::Failure,
                reason: format!("{what}_token_type {token_type:?} is not supported"),
                identity: None,
                details: json!({"token": what}),
            });
        }
        let iss = jws::peek_claims(token)
            .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_owned));
        if iss.as_deref() == Some(self.issuer.as_str()) {
            self.steward_party(token, what).await
        } else {
            self.external_party(token, now, what).await
        }
    }

    /// Every actor of a delegated token must still be able to authenticate (checked by
    /// `verify_token`): suspending an agent ends the tokens it acts with.
    pub(crate) async fn check_actor_chain(
        &self,
        act: &Actor,
        now: OffsetDateTime,
    ) -> Result<(), &'static str> {
        if act.depth() > self.federation.config.max_delegation_depth as usize {
            return Err("token act chain is too deep");
        }
        for sub in act.chain() {
            let id = Uuid::parse_str(sub).map_err(|_| "token act chain is malformed")?;
            match self.identity(id).await {
                Ok(Some(i)) => i
                    .check_can_authenticate(now)
                    .map_err(|_| "an actor of this delegated token can no longer authenticate")?,
                Ok(None) => return Err("an actor of this delegated token is unknown"),
                Err(_) => return Err("identity status unavailable"),
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------ token exchange

    /// `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693).
    pub(crate) async fn token_exchange(
        &self,
        form: &Form,
        headers: &HeaderMap,
        ctx: &Ctx,
    ) -> Result<Issued, OAuthError> {
        // Optional client authentication: when presented, it must succeed.
        let presents_auth = headers.contains_key(axum::http::header::AUTHORIZATION)
            || form.get("client_secret").is_some()
            || form.get("client_assertion").is_some()
            || ctx.client_cert.is_some();
        let client = if presents_auth {
            Some(
                self.authenticate_client(form, headers, ctx, EXCHANGE_ACTION)
                    .await?,
            )
        } else {
            None
        };
        match self.exchange(form, headers, ctx, client.as_ref()).await {
            Ok(issued) => Ok(issued),
            Err(ExchangeError::OAuth(e)) => Err(e),
            Err(ExchangeError::Refused(r)) => Err(self.refuse(ctx, client.as_ref(), r).await),
        }
    }

    /// Audits a refused exchange with its precise reason; the client sees only the error code.
    async fn refuse(
        &self,
        ctx: &Ctx,
        client: Option<&AuthenticatedClient>,
        r: Refusal,
    ) -> OAuthError {
        metrics::counter!("steward_token_exchanges_total", "outcome" => "refused").increment(1);
        let actor = client
            .map(|c| c.identity.id.to_string())
            .or_else(|| r.identity.map(|i| i.to_string()))
            .unwrap_or_else(|| "anonymous".into());
        let mut event =
            steward_core::AuditEvent::new(self.now(), actor, EXCHANGE_ACTION, r.outcome)
                .request(ctx.request_id.clone(), ctx.source.clone())
                .reason(r.reason)
                .details(json!({
                    "grant_type": TOKEN_EXCHANGE,
                    "error": r.error,
                    "client_id": client.map(|c| c.identity.id),
                    "context": r.details,
                }));
        if let Some(i) = r.identity {
            event = event.identity(i).target(format!("identity:{i}"));
        }
        if self.store.commit(Change::audit_only(event)).await.is_err() {
            return OAuthError::unavailable();
        }
        let status = StatusCode::BAD_REQUEST;
        OAuthError::new(status, r.error, r.description)
    }

    async fn exchange(
        &self,
        form: &Form,
        headers: &HeaderMap,
        ctx: &Ctx,
        client: Option<&AuthenticatedClient>,
    ) -> Result<Issued, ExchangeError> {
        let subject_token = form
            .get("subject_token")
            .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
        let subject_type = form
            .get("subject_token_type")
            .ok_or_else(|| OAuthError::invalid_request("subject_token_type is required"))?;
        if let Some(rt) = form.get("requested_token_type")
            && !matches!(rt, TT_ACCESS_TOKEN | TT_JWT)
        {
            return Err(OAuthError::invalid_request(
                "requested_token_type must be urn:ietf:params:oauth:token-type:access_token",
            )
            .into());
        }
        let actor_token = form.get("actor_token");
        let actor_type = form.get("actor_token_type");
        if actor_token.is_some() != actor_type.is_some() {
            return Err(OAuthError::invalid_request(
                "actor_token and actor_token_type go together (RFC 8693 §2.1)",
            )
            .into());
        }
        let requested = match form.get("scope") {
            Some(s) => scope::parse_scope_param(s).map_err(|e| {
                OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", e.to_string())
            })?,
            None => vec![],
        };
        let now = self.now();
        let subject = self
            .party(subject_token, subject_type, now, "subject")
            .await?;
        let sid = subject.identity.id;
        let base = json!({"subject": subject.describe()});
        let actor = match (actor_token, actor_type) {
            (Some(t), Some(tt)) => Some(
                self.party(t, tt, now, "actor")
                    .await
                    .map_err(|r| r.with(Some(sid), base.clone()))?,
            ),
            _ => None,
        };
        let deny =
            |error: &'static str, description: &'static str, reason: String, details: &Value| {
                ExchangeError::Refused(Refusal {
                    error,
                    description,
                    outcome: Outcome::Denied,
                    reason,
                    identity: Some(sid),
                    details: details.clone(),
                })
            };
        let mut details = base.clone();

        // Delegation: who acts, and may they?
        let act: Option<Actor> = match &actor {
            None => subject.act().cloned(),
            Some(a) => {
                let aid = a.identity.id;
                details["actor"] = a.describe();
                if let Source::Steward(c) = &a.source
                    && !c.aud.contains(&self.issuer)
                {
                    return Err(deny(
                        "invalid_grant",
                        ACTOR_REFUSED,
                        format!(
                            "actor token (jti {}) is not meant for this server: its aud must include {}",
                            c.jti, self.issuer
                        ),
                        &details,
                    ));
                }
                if a.act().is_some() {
                    return Err(deny(
                        "invalid_grant",
                        ACTOR_REFUSED,
                        format!(
                            "actor token of {aid} is itself delegated (it has an act claim); the actor must present its own token"
                        ),
                        &details,
                    ));
                }
                if aid == sid {
                    return Err(deny(
                        "invalid_grant",
                        ACTOR_REFUSED,
                        format!("actor {aid} is the subject itself"),
                        &details,
                    ));
                }
                if !subject
                    .identity
                    .may_act
                    .iter()
                    .any(|m| m == &aid.to_string())
                {
                    return Err(deny(
                        "invalid_grant",
                        "the actor may not act for the subject",
                        format!(
                            "actor {aid} is not allowed to act for identity {sid} (not in its may_act)"
                        ),
                        &details,
                    ));
                }
                let chain = Actor {
                    sub: aid.to_string(),
                    act: subject.act().cloned().map(Box::new),
                };
                let max = self.federation.config.max_delegation_depth as usize;
                if chain.depth() > max {
                    return Err(deny(
                        "invalid_grant",
                        "the delegation chain is too long",
                        format!(
                            "delegation chain too deep: {} actors ({}), at most {max}",
                            chain.depth(),
                            chain.chain().join(" <- ")
                        ),
                        &details,
                    ));
                }
                Some(chain)
            }
        };

        // Scopes: only ever narrower than the subject allows, and within the actor's.
        let allowed = subject.scope_cap();
        let mut scopes = if requested.is_empty() {
            match &subject.source {
                Source::Steward(_) => allowed.clone(),
                Source::External { .. } => {
                    scope::intersect(&subject.identity.default_scopes, &allowed)
                }
            }
        } else {
            if let Some(bad) = requested.iter().find(|s| !allowed.contains(s)) {
                return Err(deny(
                    "invalid_scope",
                    "the requested scope exceeds what the subject token allows",
                    format!(
                        "scope {bad} is not held by the subject (it may have {:?}); widening is refused",
                        allowed
                    ),
                    &details,
                ));
            }
            requested.clone()
        };
        if let Some(a) = &actor {
            let cap = a.scope_cap();
            scopes = scope::intersect(&scopes, &cap);
            if scopes.is_empty() && !requested.is_empty() {
                return Err(deny(
                    "invalid_scope",
                    "no requested scope is held by both the subject and the actor",
                    format!(
                        "none of {requested:?} is held by actor {} (it holds {cap:?})",
                        a.identity.id
                    ),
                    &details,
                ));
            }
        }

        // Audience: never wider than the subject token's (or the identity's for external tokens).
        let allowed_aud: Vec<String> = match &subject.source {
            Source::Steward(c) => c.aud.0.clone(),
            Source::External { .. } => {
                if subject.identity.audiences.is_empty() {
                    vec![self.issuer.clone()]
                } else {
                    subject.identity.audiences.clone()
                }
            }
        };
        let mut aud: Vec<String> = Vec::new();
        for a in form.all("resource").into_iter().chain(form.all("audience")) {
            if !allowed_aud.iter().any(|x| x == a) {
                return Err(deny(
                    "invalid_target",
                    "the requested audience exceeds what the subject token allows",
                    format!(
                        "audience {a} is outside the subject's audiences {allowed_aud:?}; widening is refused"
                    ),
                    &details,
                ));
            }
            if !aud.iter().any(|x| x == a) {
                aud.push(a.to_owned());
            }
        }
        if aud.is_empty() {
            aud = allowed_aud;
        }

        // Lifetime: the identity's (within the server's maximum), the policy's cap, and never
        // past the subject's or actor's own token.
        let iat = now.unix_timestamp();
        let mut exp = iat + i64::from(subject.identity.token_lifetime(&self.config.registry));
        if let Source::External { policy, .. } = &subject.source
            && let Some(cap) = policy.policy.spec.token_lifetime_secs
        {
            exp = exp.min(iat + i64::from(cap));
        }
        for cap in [subject.exp_cap(), actor.as_ref().and_then(Party::exp_cap)]
            .into_iter()
            .flatten()
        {
            exp = exp.min(cap);
        }
        if exp <= iat {
            return Err(deny(
                "invalid_grant",
                SUBJECT_REFUSED,
                "the subject or actor token expires now".into(),
                &details,
            ));
        }

        let jkt = self
            .check_dpop(headers, &subject.identity, now)
            .await
            .map_err(ExchangeError::OAuth)?;

        // Single-use external tokens are consumed last, so a refusal above does not burn them.
        for p in std::iter::once(&subject).chain(actor.iter()) {
            if let Source::External { policy, claims, .. } = &p.source
                && policy.policy.spec.single_use
            {
                let what = if std::ptr::eq(p, &subject) {
                    "subject"
                } else {
                    "actor"
                };
                let refused = if what == "actor" {
                    ACTOR_REFUSED
                } else {
                    SUBJECT_REFUSED
                };
                let Some(jti) = claims
                    .get("jti")
                    .and_then(Value::as_str)
                    .filter(|j| !j.is_empty() && j.len() <= 256)
                else {
                    return Err(deny(
                        "invalid_grant",
                        refused,
                        format!(
                            "{what} token has no jti, but trust policy {:?} accepts each token once",
                            policy.policy.spec.name
                        ),
                        &details,
                    ));
                };
                let texp = claims.get("exp").and_then(Value::as_i64).unwrap_or(iat);
                let until = OffsetDateTime::from_unix_timestamp(texp + self.federation.skew())
                    .unwrap_or(now + time::Duration::hours(1));
                match self
                    .store
                    .claim_once(
                        &format!("federation:{}", policy.policy.spec.issuer),
                        jti,
                        until,
                    )
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(deny(
                            "invalid_grant",
                            refused,
                            format!(
                                "{what} token jti {jti:?} was already used (trust policy {:?} is single-use)",
                                policy.policy.spec.name
                            ),
                            &details,
                        ));
                    }
                    Err(_) => return Err(OAuthError::unavailable().into()),
                }
            }
        }

        let identity = &subject.identity;
        let client_id = client
            .map(|c| c.identity.id)
            .or(actor.as_ref().map(|a| a.identity.id))
            .unwrap_or(sid);
        let jti = steward_crypto::rand::token(16);
        let credential_id = match &subject.source {
            Source::Steward(c) => c.credential_id,
            Source::External { .. } => None,
        };
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: sid.to_string(),
            aud: Audience(aud),
            exp,
            iat,
            nbf: iat,
            jti: jti.clone(),
            client_id: client_id.to_string(),
            scope: scope::join_scopes(&scopes),
            env: identity.environment.clone(),
            kind: identity.kind.as_str().to_owned(),
            credential_id,
            cnf: jkt.clone().map(|j| super::tokens::Confirmation {
                jkt: Some(j),
                x5t_s256: None,
            }),
            act: act.clone(),
            // Exchanged tokens never carry a JIT grant (their lifetime is capped by the subject's).
            jit: None,
        };
        let ring = self.signing_ring().await;
        let token = ring.signer.sign_jwt("at+jwt", &claims).map_err(|_| {
            OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "token signing failed",
            )
        })?;
        let token_type = if jkt.is_some() { "DPoP" } else { "Bearer" };
        details["jti"] = json!(jti);
        details["grant_type"] = json!(TOKEN_EXCHANGE);
        details["subject_token_type"] = json!(subject_type);
        details["actor_token_type"] = json!(actor_type);
        details["client_id"] = json!(client_id);
        details["authenticated_client"] = json!(client.map(|c| c.identity.id));
        details["scope"] = json!(claims.scope);
        details["aud"] = json!(claims.aud.0);
        details["exp"] = json!(exp);
        details["act"] = json!(act);
        details["act_chain"] = json!(act.as_ref().map(Actor::chain));
        details["token_type"] = json!(token_type);
        details["kid"] = json!(ring.signer.kid());
        let event = steward_core::AuditEvent::new(
            now,
            client_id.to_string(),
            EXCHANGE_ACTION,
            Outcome::Success,
        )
        .request(ctx.request_id.clone(), ctx.source.clone())
        .identity(sid)
        .target(format!("token:{jti}"))
        .details(details);
        if self.store.commit(Change::audit_only(event)).await.is_err() {
            return Err(OAuthError::unavailable().into());
        }
        metrics::counter!("steward_token_exchanges_total", "outcome" => "issued").increment(1);
        Ok(Issued {
            body: steward_proto::TokenResponse {
                access_token: token,
                token_type: token_type.into(),
                expires_in: u64::try_from(exp - iat).unwrap_or(0),
                scope: Some(claims.scope.clone()),
                issued_token_type: Some(TT_ACCESS_TOKEN.into()),
            },
            dpop_nonce: None,
        })
    }
}

enum ExchangeError {
    OAuth(OAuthError),
    Refused(Refusal),
}

impl From<OAuthError> for ExchangeError {
    fn from(e: OAuthError) -> Self {
        Self::OAuth(e)
    }
}

impl From<Refusal> for ExchangeError {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc7396() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1]});
        merge_patch(&mut t, &json!({"a": [2, 3], "n": 1}));
        assert_eq!(t, json!({"a": [2, 3], "n": 1}));
    }

    #[test]
    fn config_defaults_validate() {
        assert!(FederationConfig::default().validate().is_ok());
        let c = FederationConfig {
            max_delegation_depth: 0,
            ..Default::default()
        };
        assert!(c.validate().is_err());
    }
}
