//! Certificates and mutual TLS: CSR issuance, trust bundle, CRL and deny-list, CA rollover, device
//! CAs and mapping rules, admission of client certificates, and `tls_client_auth` (RFC 8705).

use std::sync::Arc;

use serde_json::json;
use steward_core::{Identity, IdentityKind, Outcome};
use steward_crypto::x509::{self, LeafSpec};
use steward_proto as proto;
use steward_store::{Change, IdentityQuery, Mutation, PkiObject};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::Ctx;
use super::tokens::{AuthMethod, AuthenticatedClient, Confirmation, Form, OAuthError};
use crate::error::ServiceError;
use crate::pki::{
    Anchor, CaRole, DeviceCaBody, DeviceRuleBody, KIND_CA, KIND_DEVICE_CA, KIND_DEVICE_RULE,
    KIND_REVOKED, RevokedBody, RuleField,
};
use crate::state::Inner;
use crate::tls::{PeerCert, Rejection, VerifiedClient};

/// Clock skew allowed for on `notBefore` of issued certificates, in seconds.
const BACKDATE_SECS: i64 = 60;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Parses `spiffe://<td>/<env>/<kind>/<name>` of this trust domain.
fn parse_spiffe<'a>(td: &str, id: &'a str) -> Option<(&'a str, IdentityKind, &'a str)> {
    let rest = id
        .strip_prefix("spiffe://")?
        .strip_prefix(td)?
        .strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (env, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((env, IdentityKind::parse(kind)?, name))
}

impl Inner {
    // ------------------------------------------------------------------ handshake admission

    /// The identity whose SPIFFE ID this is (cached: the mapping never changes).
    pub async fn identity_for_spiffe(&self, spiffe: &str) -> Result<Option<Uuid>, ServiceError> {
        if let Some(id) = self.pki.spiffe_index.get(&spiffe.to_owned()) {
            return Ok(Some(*id));
        }
        let Some((env, kind, name)) = parse_spiffe(&self.config.trust_domain, spiffe) else {
            return Ok(None);
        };
        let page = self
            .store
            .list_identities(&IdentityQuery {
                owner_id: None,
                environment: Some(env.to_owned()),
                kind: Some(kind),
                status: None,
                name: Some(name.to_owned()),
                search: None,
                vendor: None,
                after: None,
                limit: 2,
                now: self.now(),
            })
            .await?;
        let found = page
            .items
            .iter()
            .find(|i| i.spiffe_id(&self.config.trust_domain) == spiffe)
            .map(|i| i.id);
        if let Some(id) = found {
            self.pki
                .spiffe_index
                .insert(spiffe.to_owned(), Arc::new(id));
        }
        Ok(found)
    }

    /// Step 2 of client-certificate checks (see `tls.rs`): the certificate must map to an
    /// identity that may authenticate now. Refusals are audited; `None` closes the connection.
    pub async fn admit_client(
        &self,
        v: VerifiedClient,
        source: Option<String>,
    ) -> Option<PeerCert> {
        let now = self.now();
        let spiffe = v
            .leaf
            .uris
            .iter()
            .find(|u| u.starts_with("spiffe://"))
            .cloned();
        let mapped: Result<Uuid, String> = match v.anchor {
            Anchor::Own => match spiffe.as_deref() {
                Some(s) => match self.identity_for_spiffe(s).await {
                    Ok(Some(id)) => Ok(id),
                    Ok(None) => Err(format!("no identity has the SPIFFE ID {s}")),
                    Err(_) => Err("identity lookup unavailable".into()),
                },
                None => Err("certificate has no SPIFFE ID".into()),
            },
            Anchor::Device(ca) => match self.pki.snapshot().map_device(ca, &v.leaf) {
                Some(r) => Ok(r.body.identity_id),
                None => Err(format!(
                    "no mapping rule of device CA {ca} matches subject {:?}",
                    v.leaf.subject
                )),
            },
        };
        let checked = match mapped {
            Ok(id) => match self.identity(id).await {
                Ok(Some(i)) => i
                    .check_can_authenticate(now)
                    .map(|_| id)
                    .map_err(|r| (Some(id), r.to_owned())),
                Ok(None) => Err((Some(id), "unknown identity".into())),
                Err(_) => Err((Some(id), "identity status unavailable".into())),
            },
            Err(r) => Err((None, r)),
        };
        match checked {
            Ok(identity_id) => Some(PeerCert {
                x5t_s256: v.x5t_s256,
                serial: v.leaf.serial,
                subject: v.leaf.subject,
                identity_id,
                spiffe_id: spiffe,
                anchor: v.anchor,
                not_after: v.leaf.not_after,
            }),
            Err((identity, reason)) => {
                metrics::counter!("steward_mtls_rejections_total").increment(1);
                let mut e = steward_core::AuditEvent::new(
                    now,
                    identity
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "anonymous".into()),
                    "mtls.handshake",
                    Outcome::Denied,
                )
                .request(None, source)
                .reason(format!("client certificate refused: {reason}"))
                .details(cert_details(&v.leaf, Some(v.anchor)));
                if let Some(i) = identity {
                    e = e.identity(i).target(format!("identity:{i}"));
                }
                if let Err(err) = self.store.commit(Change::audit_only(e)).await {
                    tracing::error!(error = %err, "could not audit a refused client certificate");
                }
                None
            }
        }
    }

    /// Audits a client certificate refused during the handshake (step 1).
    pub async fn audit_tls_rejection(&self, r: &Rejection, source: Option<String>) {
        metrics::counter!("steward_mtls_rejections_total").increment(1);
        let mut identity = None;
        if let Some(l) = &r.leaf
            && let Some(s) = l.uris.iter().find(|u| u.starts_with("spiffe://"))
            && let Ok(Some(id)) = self.identity_for_spiffe(s).await
        {
            identity = Some(id);
        }
        let mut e = steward_core::AuditEvent::new(
            self.now(),
            "anonymous",
            "mtls.handshake",
            Outcome::Failure,
        )
        .request(None, source)
        .reason(r.reason.clone())
        .details(
            r.leaf
                .as_ref()
                .map(|l| cert_details(l, None))
                .unwrap_or_else(|| json!({})),
        );
        if let Some(i) = identity {
            e = e.identity(i).target(format!("identity:{i}"));
        }
        if let Err(err) = self.store.commit(Change::audit_only(e)).await {
            tracing::error!(error = %err, "could not audit a refused TLS handshake");
        }
    }

    // ------------------------------------------------------------------ tls_client_auth

    /// RFC 8705 §2 `tls_client_auth`: the connection's verified client certificate authenticates
    /// the identity it maps to. `client_id`, when sent, must name that identity.
    pub async fn authenticate_tls_client(
        &self,
        form: &Form,
        ctx: &Ctx,
        action: &str,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let Some(cert) = ctx.client_cert.clone() else {
            return Err(OAuthError::invalid_client());
        };
        let client = cert.identity_id;
        if let Some(c) = form.get("client_id")
            && c != client.to_string()
        {
            return Err(self
                .tls_auth_failure(
                    ctx,
                    action,
                    client,
                    "client certificate belongs to another client",
                )
                .await);
        }
        let now = self.now();
        if cert.not_after <= now {
            return Err(self
                .tls_auth_failure(ctx, action, client, "client certificate has expired")
                .await);
        }
        if self.pki.snapshot().is_revoked(&cert.serial, now).is_some() {
            return Err(self
                .tls_auth_failure(ctx, action, client, "client certificate is revoked")
                .await);
        }
        let identity = match self.identity(client).await {
            Ok(Some(i)) => i,
            Ok(None) => {
                return Err(self
                    .tls_auth_failure(ctx, action, client, "unknown client")
                    .await);
            }
            Err(_) => return Err(OAuthError::unavailable()),
        };
        if let Err(r) = identity.check_can_authenticate(now) {
            return Err(self.tls_auth_failure(ctx, action, client, r).await);
        }
        Ok(AuthenticatedClient {
            identity,
            credential_id: Uuid::nil(),
            method: AuthMethod::TlsClientAuth,
            unclaimed: None,
        })
    }

    async fn tls_auth_failure(
        &self,
        ctx: &Ctx,
        action: &str,
        client: Uuid,
        reason: &str,
    ) -> OAuthError {
        metrics::counter!("steward_auth_failures_total").increment(1);
        let mut e =
            steward_core::AuditEvent::new(self.now(), client.to_string(), action, Outcome::Failure)
                .request(ctx.request_id.clone(), ctx.source.clone())
                .identity(client)
                .target(format!("identity:{client}"))
                .reason(reason);
        if let Some(c) = &ctx.client_cert {
            e = e.details(
                json!({"method": "tls_client_auth", "serial": c.serial, "x5t#S256": c.x5t_s256}),
            );
        }
        if self.store.commit(Change::audit_only(e)).await.is_err() {
            return OAuthError::unavailable();
        }
        OAuthError::invalid_client()
    }

    // ------------------------------------------------------------------ issuance

    /// Issues an X.509 SVID for `identity` from a checked CSR. Every refusal is audited.
    pub async fn issue_certificate(
        &self,
        ctx: &Ctx,
        identity: &Identity,
        method: &str,
        req: proto::IssueCertificate,
    ) -> Result<proto::IssuedCertificate, ServiceError> {
        match self.try_issue(ctx, identity, method, req).await {
            Ok(v) => Ok(v),
            Err((outcome, e)) => {
                let event = ctx
                    .event(self.now(), "certificate.issue", outcome)
                    .identity(identity.id)
                    .target(format!("identity:{}", identity.id))
                    .reason(e.to_string())
                    .details(json!({"method": method}));
                self.store.commit(Change::audit_only(event)).await?;
                Err(e)
            }
        }
    }

    async fn try_issue(
        &self,
        ctx: &Ctx,
        identity: &Identity,
        method: &str,
        req: proto::IssueCertificate,
    ) -> Result<proto::IssuedCertificate, (Outcome, ServiceError)> {
        let bad = |o: Outcome, m: String| (o, ServiceError::Invalid(m));
        let input = req.csr.trim();
        let bytes = if input.starts_with("-----BEGIN") {
            input.as_bytes().to_vec()
        } else {
            steward_crypto::b64::std_decode(input).map_err(|_| {
                bad(
                    Outcome::Failure,
                    "malformed CSR: expected PEM or base64 DER".into(),
                )
            })?
        };
        let csr = x509::parse_csr(&bytes).map_err(|e| bad(Outcome::Failure, format!("{e}")))?;
        let td = &self.config.trust_domain;
        let spiffe = identity.spiffe_id(td);
        if let Some(u) = csr.uris.iter().find(|u| **u != spiffe) {
            return Err(bad(
                Outcome::Denied,
                format!("the CSR asks for URI SAN {u}, but this identity's SPIFFE ID is {spiffe}"),
            ));
        }
        if !csr.other_sans.is_empty() {
            return Err(bad(
                Outcome::Denied,
                format!(
                    "only DNS and URI SANs may be requested; refused: {}",
                    csr.other_sans.join(", ")
                ),
            ));
        }
        let mut dns: Vec<String> = vec![];
        for d in &csr.dns_names {
            if !identity.allows_dns_name(d) {
                return Err(bad(
                    Outcome::Denied,
                    format!(
                        "DNS name {d} is not allowed for this identity (allowed_dns_names: {})",
                        if identity.allowed_dns_names.is_empty() {
                            "none".to_owned()
                        } else {
                            identity.allowed_dns_names.join(", ")
                        }
                    ),
                ));
            }
            let d = d.to_ascii_lowercase();
            if !dns.contains(&d) {
                dns.push(d);
            }
        }
        let pki = &self.config.pki;
        if req.server_auth
            && !pki
                .server_auth_kinds
                .iter()
                .any(|k| k == identity.kind.as_str())
        {
            return Err((
                Outcome::Denied,
                ServiceError::Forbidden(format!(
                    "{} identities may not hold serverAuth certificates",
                    identity.kind.as_str()
                )),
            ));
        }
        let ttl = req.ttl_secs.unwrap_or(pki.default_cert_ttl_secs);
        if ttl < pki.min_cert_ttl_secs || ttl > pki.max_cert_ttl_secs {
            return Err(bad(
                Outcome::Denied,
                format!(
                    "ttl_secs must be between {} and {}",
                    pki.min_cert_ttl_secs, pki.max_cert_ttl_secs
                ),
            ));
        }
        let now = self.now();
        let snap = self.pki.snapshot();
        let Some(issuer) = snap.active_issuer(now) else {
            return Err((
                Outcome::Failure,
                ServiceError::Internal("no active issuing CA".into()),
            ));
        };
        let Some(signer) = issuer.signer.clone() else {
            return Err((
                Outcome::Failure,
                ServiceError::Internal("issuing CA has no key".into()),
            ));
        };
        let not_after = (now + Duration::seconds(i64::from(ttl)))
            .min(identity.expires_at)
            .min(issuer.not_after);
        let not_after = steward_core::truncate_micros(not_after)
            .replace_nanosecond(0)
            .unwrap_or(not_after);
        if not_after <= now {
            return Err(bad(
                Outcome::Denied,
                "the identity expires before a certificate could be used".into(),
            ));
        }
        let not_before = (now - Duration::seconds(BACKDATE_SECS))
            .replace_nanosecond(0)
            .unwrap_or(now);
        let serial = x509::random_serial();
        let uris = vec![spiffe.clone()];
        let der = signer
            .issue_leaf(
                &csr.public_key,
                &LeafSpec {
                    common_name: &identity.name,
                    organization: td,
                    uri_sans: &uris,
                    dns_sans: &dns,
                    ip_sans: &[],
                    client_auth: true,
                    server_auth: req.server_auth,
                    not_before,
                    not_after,
                    serial: &serial,
                },
            )
            .map_err(|e| (Outcome::Failure, ServiceError::Internal(e.to_string())))?;
        let serial = x509::serial_hex(&serial);
        let event = ctx
            .event(now, "certificate.issue", Outcome::Success)
            .identity(identity.id)
            .target(format!("certificate:{serial}"))
            .details(json!({
                "serial": serial,
                "spiffe_id": spiffe,
                "not_after": rfc3339(not_after),
                "dns_names": dns,
                "server_auth": req.server_auth,
                "key": csr.key_description,
                "issuer": issuer.id,
                "method": method,
            }));
        // Durable before the response: no unaudited certificate leaves the server.
        self.store
            .commit(Change::audit_only(event))
            .await
            .map_err(|e| (Outcome::Failure, ServiceError::from(e)))?;
        metrics::counter!("steward_certificates_issued_total").increment(1);
        let certificate = x509::pem_encode("CERTIFICATE", &der);
        let chain: String = snap
            .chain_of(issuer)
            .iter()
            .map(|c| x509::pem_encode("CERTIFICATE", c))
            .collect();
        Ok(proto::IssuedCertificate {
            serial,
            identity_id: identity.id,
            spiffe_id: spiffe,
            dns_names: dns,
            server_auth: req.server_auth,
            not_before,
            not_after,
            full_chain: format!("{certificate}{chain}"),
            certificate,
            chain,
            trust_bundle: snap.bundle_at(now),
        })
    }

    // ------------------------------------------------------------------ bundle, CRL, CAs

    pub fn trust_bundle_pem(&self) -> String {
        self.pki.snapshot().bundle_at(self.now())
    }

    /// The SPIFFE bundle (JWKS with `use: x509-svid` keys, one certificate each).
    pub fn spiffe_bundle(&self) -> serde_json::Value {
        let now = self.now();
        let snap = self.pki.snapshot();
        let keys: Vec<serde_json::Value> = snap
            .published(now)
            .iter()
            .filter_map(|c| x509::public_key_jwk(&c.cert_der).ok())
            .collect();
        json!({
            "keys": keys,
            "spiffe_sequence": snap.loaded_at.unix_timestamp(),
            "spiffe_refresh_hint": 300,
        })
    }

    /// The CRL of the active issuing CA, listing every live deny-list entry (DER).
    pub fn crl_der(&self) -> Result<Vec<u8>, ServiceError> {
        let now = self.now();
        let snap = self.pki.snapshot();
        let issuer = snap
            .active_issuer(now)
            .and_then(|c| c.signer.clone())
            .ok_or_else(|| ServiceError::Internal("no active issuing CA".into()))?;
        let mut entries: Vec<(String, OffsetDateTime)> = snap
            .revoked
            .values()
            .filter(|r| now < r.expires_at)
            .map(|r| {
                (
                    r.serial.clone(),
                    OffsetDateTime::from_unix_timestamp(r.body.revoked_at).unwrap_or(now),
                )
            })
            .collect();
        entries.sort();
        let this_update = (now - Duration::seconds(BACKDATE_SECS))
            .replace_nanosecond(0)
            .unwrap_or(now);
        let next_update = this_update
            + Duration::seconds(
                i64::try_from(self.config.pki.crl_validity_secs.max(60)).unwrap_or(3600),
            );
        let number = u64::try_from(now.unix_timestamp()).unwrap_or(1);
        issuer
            .sign_crl(&entries, this_update, next_update, number)
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    pub fn list_cas(&self) -> Vec<proto::CaView> {
        let now = self.now();
        let snap = self.pki.snapshot();
        let active = snap.active_issuer(now).map(|c| c.id.clone());
        snap.cas
            .iter()
            .map(|c| proto::CaView {
                id: c.id.clone(),
                role: match c.role {
                    CaRole::Root => "root",
                    CaRole::Issuing => "issuing",
                }
                .into(),
                subject: x509::parse_certificate(&c.cert_der)
                    .map(|s| s.subject)
                    .unwrap_or_default(),
                not_before: c.not_before,
                not_after: c.not_after,
                activates_at: c.activates_at,
                active: active.as_deref() == Some(c.id.as_str()),
                imported: c.imported,
                certificate: x509::pem_encode("CERTIFICATE", &c.cert_der),
            })
            .collect()
    }

    /// Creates the next issuing CA; it is in the trust bundle at once and signs after `notice`.
    pub async fn rotate_ca(
        &self,
        ctx: &Ctx,
        notice: Option<u64>,
    ) -> Result<proto::CaView, ServiceError> {
        self.rotate_ca_fenced(ctx, notice, None).await
    }

    /// [`Self::rotate_ca`] for the automatic rollover, fenced by the PKI lease.
    pub async fn rotate_ca_fenced(
        &self,
        ctx: &Ctx,
        notice: Option<u64>,
        fence: Option<&crate::leases::Fence>,
    ) -> Result<proto::CaView, ServiceError> {
        let now = self.now();
        let notice = notice.unwrap_or(self.config.pki.ca_rollover_notice_secs);
        let notice = Duration::seconds(
            i64::try_from(notice)
                .unwrap_or(i64::MAX / 2)
                .min(365 * 86_400),
        );
        let snap = self.pki.snapshot();
        let (obj, activates_at) =
            crate::pki::rotation_change(&self.config, &snap, &self.master, now, notice)?;
        let id = obj.id.clone();
        let event = ctx
            .event(now, "ca.rotate", Outcome::Success)
            .target(format!("ca:{id}"))
            .details(json!({"ca": id, "activates_at": rfc3339(activates_at)}));
        match fence {
            Some(f) => {
                self.store
                    .commit(
                        Change::new()
                            .with(f.mutation())
                            .with(Mutation::InsertPkiObject(obj))
                            .audit(event),
                    )
                    .await?;
                self.reload_pki().await?;
            }
            None => self.insert_pki_object(obj, event).await?,
        }
        self.list_cas()
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| ServiceError::Internal("the new CA vanished".into()))
    }

    /// Reloads the PKI snapshot and republishes the bundle file.
    pub async fn reload_pki(&self) -> Result<(), ServiceError> {
        let snap = self
            .pki
            .reload(self.store.as_ref(), &self.master, self.now())
            .await?;
        crate::pki::write_bundle_file(&self.config, &snap.bundle_pem);
        Ok(())
    }

    // ------------------------------------------------------------------ deny-list

    pub async fn revoke_certificate(
        &self,
        ctx: &Ctx,
        req: proto::RevokeCertificate,
    ) -> Result<proto::RevokedCertificateView, ServiceError> {
        let now = self.now();
        let (serial, not_after) = match (&req.certificate, &req.serial) {
            (Some(pem), _) => {
                let ders = x509::certificates_from_pem_or_der(pem.as_bytes())
                    .map_err(|e| ServiceError::invalid(e.to_string()))?;
                let s = x509::parse_certificate(&ders[0])
                    .map_err(|e| ServiceError::invalid(e.to_string()))?;
                (s.serial, Some(s.not_after))
            }
            (None, Some(s)) => (
                x509::normalize_serial_hex(s)
                    .ok_or_else(|| ServiceError::invalid("serial must be hex"))?,
                req.not_after,
            ),
            (None, None) => return Err(ServiceError::invalid("give serial or certificate")),
        };
        if let Some(r) = &req.reason
            && (r.chars().count() > 1024 || r.chars().any(|c| c.is_control()))
        {
            return Err(ServiceError::invalid(
                "reason must be at most 1024 characters without control characters",
            ));
        }
        let expires_at = not_after
            .unwrap_or(now + Duration::seconds(i64::from(self.config.pki.max_cert_ttl_secs)));
        if expires_at <= now {
            return Err(ServiceError::invalid(
                "the certificate has already expired; nothing to revoke",
            ));
        }
        let now = steward_core::truncate_micros(now);
        let body = RevokedBody {
            revoked_at: now.unix_timestamp(),
            reason: req.reason.clone(),
            identity_id: None,
            revoked_by: ctx.actor.clone(),
        };
        let obj = PkiObject {
            kind: KIND_REVOKED.into(),
            id: serial.clone(),
            body: serde_json::to_value(&body).map_err(|e| ServiceError::Internal(e.to_string()))?,
            created_at: now,
            expires_at: Some(steward_core::truncate_micros(expires_at)),
        };
        let event = ctx
            .event(now, "certificate.revoke", Outcome::Success)
            .target(format!("certificate:{serial}"))
            .details(
                json!({"serial": serial, "expires_at": rfc3339(expires_at), "reason": req.reason}),
            );
        self.store
            .commit(Change::new().with(Mutation::PutPkiObject(obj)).audit(event))
            .await?;
        self.reload_pki().await?;
        Ok(proto::RevokedCertificateView {
            serial,
            revoked_at: now,
            expires_at,
            reason: req.reason,
        })
    }

    // ------------------------------------------------------------------ device CAs

    fn device_ca_view(d: &crate::pki::DeviceCa) -> proto::DeviceCaView {
        proto::DeviceCaView {
            id: d.id,
            name: d.body.name.clone(),
            subject: d.summary.subject.clone(),
            fingerprint: d.fingerprint.clone(),
            not_after: d.summary.not_after,
            created_at: d.created_at,
            created_by: d.body.created_by.clone(),
        }
    }

    pub fn list_device_cas(&self) -> Vec<proto::DeviceCaView> {
        self.pki
            .snapshot()
            .device_cas
            .iter()
            .map(Self::device_ca_view)
            .collect()
    }

    pub async fn create_device_ca(
        &self,
        ctx: &Ctx,
        req: proto::CreateDeviceCa,
    ) -> Result<proto::DeviceCaView, ServiceError> {
        let name = req.name.trim();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(ServiceError::invalid(
                "name must be 1 to 128 characters without control characters",
            ));
        }
        let ders = x509::certificates_from_pem_or_der(req.certificate.as_bytes())
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
        if ders.len() != 1 {
            return Err(ServiceError::invalid("give exactly one CA certificate"));
        }
        let der = &ders[0];
        let s = x509::parse_certificate(der).map_err(|e| ServiceError::invalid(e.to_string()))?;
        if !s.is_ca {
            return Err(ServiceError::invalid(
                "the certificate is not a CA (basicConstraints cA is not set)",
            ));
        }
        let now = self.now();
        if s.not_after <= now {
            return Err(ServiceError::invalid("the CA certificate has expired"));
        }
        x509::TrustStore::new(std::slice::from_ref(der))
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
        let snap = self.pki.snapshot();
        let fp = x509::x5t_s256(der);
        if snap.device_cas.iter().any(|d| d.fingerprint == fp)
            || snap.cas.iter().any(|c| c.cert_der == *der)
        {
            return Err(ServiceError::Store(steward_store::StoreError::Conflict(
                "this CA certificate is already registered".into(),
            )));
        }
        let id = Uuid::now_v7();
        let now = steward_core::truncate_micros(now);
        let body = DeviceCaBody {
            name: name.to_owned(),
            cert: steward_crypto::b64::std_encode(der),
            created_by: ctx.actor.clone(),
        };
        let obj = PkiObject {
            kind: KIND_DEVICE_CA.into(),
            id: id.to_string(),
            body: serde_json::to_value(&body).map_err(|e| ServiceError::Internal(e.to_string()))?,
            created_at: now,
            expires_at: Some(s.not_after),
        };
        let event = ctx
            .event(now, "device_ca.create", Outcome::Success)
            .target(format!("device_ca:{id}"))
            .details(json!({"name": name, "subject": s.subject, "fingerprint": fp, "not_after": rfc3339(s.not_after)}));
        self.insert_pki_object(obj, event).await?;
        self.pki
            .snapshot()
            .device_cas
            .iter()
            .find(|d| d.id == id)
            .map(Self::device_ca_view)
            .ok_or_else(|| ServiceError::Internal("the new device CA vanished".into()))
    }

    pub async fn delete_device_ca(&self, ctx: &Ctx, id: Uuid) -> Result<(), ServiceError> {
        let snap = self.pki.snapshot();
        if !snap.device_cas.iter().any(|d| d.id == id) {
            return Err(ServiceError::not_found(format!("device CA {id}")));
        }
        let mut change = Change::new().with(Mutation::DeletePkiObject {
            kind: KIND_DEVICE_CA.into(),
            id: id.to_string(),
        });
        for r in snap.rules.iter().filter(|r| r.body.device_ca == id) {
            change = change.with(Mutation::DeletePkiObject {
                kind: KIND_DEVICE_RULE.into(),
                id: r.id.to_string(),
            });
        }
        let event = ctx
            .event(self.now(), "device_ca.delete", Outcome::Success)
            .target(format!("device_ca:{id}"));
        self.store.commit(change.audit(event)).await?;
        self.reload_pki().await
    }

    fn rule_view(r: &crate::pki::DeviceRule) -> proto::DeviceRuleView {
        proto::DeviceRuleView {
            id: r.id,
            device_ca: r.body.device_ca,
            field: r.body.field.as_str().into(),
            pattern: r.body.pattern.clone(),
            identity: r.body.identity_id,
            created_at: r.created_at,
            created_by: r.body.created_by.clone(),
        }
    }

    pub fn list_device_rules(&self, ca: Uuid) -> Result<Vec<proto::DeviceRuleView>, ServiceError> {
        let snap = self.pki.snapshot();
        if !snap.device_cas.iter().any(|d| d.id == ca) {
            return Err(ServiceError::not_found(format!("device CA {ca}")));
        }
        Ok(snap
            .rules
            .iter()
            .filter(|r| r.body.device_ca == ca)
            .map(Self::rule_view)
            .collect())
    }

    pub async fn create_device_rule(
        &self,
        ctx: &Ctx,
        ca: Uuid,
        req: proto::CreateDeviceRule,
    ) -> Result<proto::DeviceRuleView, ServiceError> {
        let snap = self.pki.snapshot();
        if !snap.device_cas.iter().any(|d| d.id == ca) {
            return Err(ServiceError::not_found(format!("device CA {ca}")));
        }
        let field = RuleField::parse(&req.field).ok_or_else(|| {
            ServiceError::invalid("field must be subject_cn, subject, san_dns or san_uri")
        })?;
        if req.pattern.is_empty()
            || req.pattern.len() > 256
            || req.pattern.chars().any(char::is_control)
        {
            return Err(ServiceError::invalid(
                "pattern must be 1 to 256 characters without control characters",
            ));
        }
        let identity = self.get_identity(req.identity).await.map_err(|_| {
            ServiceError::invalid(format!("identity: unknown identity {}", req.identity))
        })?;
        let id = Uuid::now_v7();
        let now = steward_core::truncate_micros(self.now());
        let body = DeviceRuleBody {
            device_ca: ca,
            field,
            pattern: req.pattern.clone(),
            identity_id: identity.id,
            created_by: ctx.actor.clone(),
        };
        let obj = PkiObject {
            kind: KIND_DEVICE_RULE.into(),
            id: id.to_string(),
            body: serde_json::to_value(&body).map_err(|e| ServiceError::Internal(e.to_string()))?,
            created_at: now,
            expires_at: None,
        };
        let event = ctx
            .event(now, "device_rule.create", Outcome::Success)
            .target(format!("device_rule:{id}"))
            .identity(identity.id)
            .details(json!({"device_ca": ca, "field": field.as_str(), "pattern": req.pattern, "identity": identity.id}));
        self.insert_pki_object(obj, event).await?;
        self.pki
            .snapshot()
            .rules
            .iter()
            .find(|r| r.id == id)
            .map(Self::rule_view)
            .ok_or_else(|| ServiceError::Internal("the new rule vanished".into()))
    }

    pub async fn delete_device_rule(
        &self,
        ctx: &Ctx,
        ca: Uuid,
        rule: Uuid,
    ) -> Result<(), ServiceError> {
        let snap = self.pki.snapshot();
        if !snap
            .rules
            .iter()
            .any(|r| r.id == rule && r.body.device_ca == ca)
        {
            return Err(ServiceError::not_found(format!("rule {rule}")));
        }
        let event = ctx
            .event(self.now(), "device_rule.delete", Outcome::Success)
            .target(format!("device_rule:{rule}"));
        self.store
            .commit(
                Change::new()
                    .with(Mutation::DeletePkiObject {
                        kind: KIND_DEVICE_RULE.into(),
                        id: rule.to_string(),
                    })
                    .audit(event),
            )
            .await?;
        self.reload_pki().await
    }

    // ------------------------------------------------------------------ periodic upkeep

    /// Reloads the snapshot (other nodes' changes), purges expired PKI records, renews the
    /// server certificate, and starts an issuing-CA rollover when a third of its life is left.
    pub async fn pki_upkeep(&self) -> Result<(), ServiceError> {
        let now = self.now();
        let snap = self
            .pki
            .reload(self.store.as_ref(), &self.master, now)
            .await?;
        crate::pki::write_bundle_file(&self.config, &snap.bundle_pem);
        // Removing expired records and rolling the issuing CA over are single-node duties; the
        // reload above and the server's own TLS key below are every node's.
        let fence = self
            .leases
            .hold_or_skip(
                self.store.as_ref(),
                crate::leases::duty::PKI,
                crate::leases::ttl_for(std::time::Duration::from_secs(crate::pki::UPKEEP_SECS)),
                now,
            )
            .await;
        if let Some(fence) = &fence {
            self.pki_singleton_upkeep(&snap, now, fence).await?;
        }
        if !self.config.insecure_http {
            self.renew_server_key(false).await?;
        }
        Ok(())
    }

    /// The lease holder's part of [`Self::pki_upkeep`]: expired records, issuing-CA rollover.
    async fn pki_singleton_upkeep(
        &self,
        snap: &crate::pki::PkiSnapshot,
        now: time::OffsetDateTime,
        fence: &crate::leases::Fence,
    ) -> Result<(), ServiceError> {
        let mut dead = Change::new().with(fence.mutation());
        for (kind, ids) in [
            (
                KIND_REVOKED,
                snap.revoked
                    .values()
                    .filter(|r| r.expires_at <= now)
                    .map(|r| r.serial.clone())
                    .collect::<Vec<_>>(),
            ),
            (
                KIND_CA,
                snap.cas
                    .iter()
                    .filter(|c| c.not_after <= now)
                    .map(|c| c.id.clone())
                    .collect(),
            ),
        ] {
            for id in ids {
                dead = dead.with(Mutation::DeletePkiObject {
                    kind: kind.into(),
                    id,
                });
            }
        }
        if dead.mutations.len() > 1 {
            self.store.commit(dead).await?;
        }
        if let Some(active) = snap.active_issuer(now) {
            let life = active.not_after - active.not_before;
            let pending = snap
                .cas
                .iter()
                .any(|c| c.role == CaRole::Issuing && c.activates_at > now);
            if active.not_after - now < life / 3 && !pending && !active.imported {
                match self
                    .rotate_ca_fenced(&Ctx::system(), None, Some(fence))
                    .await
                {
                    Ok(c) => tracing::info!(ca = %c.id, "started an issuing-CA rollover"),
                    Err(e) => tracing::warn!(error = %e, "issuing-CA rollover failed"),
                }
            }
        }
        Ok(())
    }

    /// Issues the server's TLS certificate when there is none, when a third of its life is left,
    /// or when another issuing CA became active.
    pub async fn renew_server_key(&self, force: bool) -> Result<(), ServiceError> {
        let now = self.now();
        let snap = self.pki.snapshot();
        let due = match self.pki.server_key() {
            None => true,
            Some(k) => {
                let life = k.not_after - k.not_before;
                k.not_after - now < life / 3
                    || snap.active_issuer(now).is_some_and(|a| a.id != k.issuer_id)
            }
        };
        if !due && !force {
            return Ok(());
        }
        let (key, serial) = crate::pki::issue_server_key(&self.config, &snap, now)?;
        let event =
            steward_core::AuditEvent::new(now, "system", "certificate.issue", Outcome::Success)
                .target(format!("certificate:{serial}"))
                .details(json!({
                    "serial": serial,
                    "purpose": "server",
                    "not_after": rfc3339(key.not_after),
                    "issuer": key.issuer_id,
                }));
        self.store.commit(Change::audit_only(event)).await?;
        *self
            .pki
            .server_key
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(key);
        Ok(())
    }
}

/// `cnf` of a token for `client` (RFC 7800): the DPoP key thumbprint and, for `tls_client_auth`,
/// the certificate thumbprint (RFC 8705 §3.1). The token path calls this.
pub fn confirmation(
    jkt: Option<String>,
    client: &AuthenticatedClient,
    ctx: &Ctx,
) -> Option<Confirmation> {
    let x5t_s256 = match client.method {
        AuthMethod::TlsClientAuth => ctx.client_cert.as_ref().map(|c| c.x5t_s256.clone()),
        _ => None,
    };
    (jkt.is_some() || x5t_s256.is_some()).then_some(Confirmation { jkt, x5t_s256 })
}

/// The `credential_id` claim: absent for certificate authentication (no credential row).
pub fn credential_claim(client: &AuthenticatedClient) -> Option<Uuid> {
    (client.method != AuthMethod::TlsClientAuth).then_some(client.credential_id)
}

fn cert_details(l: &x509::CertSummary, anchor: Option<Anchor>) -> serde_json::Value {
    json!({
        "serial": l.serial,
        "subject": l.subject,
        "issuer": l.issuer,
        "not_before": rfc3339(l.not_before),
        "not_after": rfc3339(l.not_after),
        "uris": l.uris,
        "anchor": match anchor {
            Some(Anchor::Own) => Some("steward".to_owned()),
            Some(Anchor::Device(d)) => Some(format!("device_ca:{d}")),
            None => None,
        },
    })
}

impl Inner {
    /// Stores a PKI object with its audit record, then refreshes this node's PKI snapshot.
    async fn insert_pki_object(
        &self,
        obj: PkiObject,
        event: steward_core::AuditEvent,
    ) -> Result<(), ServiceError> {
        self.store
            .commit(
                Change::new()
                    .with(Mutation::InsertPkiObject(obj))
                    .audit(event),
            )
            .await?;
        self.reload_pki().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids_parse() {
        assert_eq!(
            parse_spiffe("td", "spiffe://td/prod/workload/api"),
            Some(("prod", IdentityKind::Workload, "api"))
        );
        assert_eq!(parse_spiffe("td", "spiffe://other/prod/workload/api"), None);
        assert_eq!(parse_spiffe("td", "spiffe://td/prod/nope/api"), None);
        assert_eq!(parse_spiffe("td", "spiffe://td/prod/workload/api/x"), None);
    }
}
