//! `steward agent`: keeps a workload's certificate and access token fresh on disk. Renews at about
//! half the lifetime (±10% jitter), replaces files atomically, runs a reload hook, retries with
//! back-off while the server is down, and re-authenticates with the client secret once the
//! certificate has expired.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::Value;
use steward_crypto::x509::{self, KeyAlg};
use time::OffsetDateTime;

use crate::client::{http_client, read_credentials, write_private};
use crate::cmd_cert::{
    Auth, BUNDLE_FILE, CERT_FILE, KEY_FILE, Request, bundle_for, parse_ttl, request, write_files,
};

/// The access token file in the output directory (0600).
pub const TOKEN_FILE: &str = "token";

#[derive(Args)]
pub struct AgentArgs {
    /// Directory for key.pem, cert.pem, bundle.pem and token.
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// DNS name to request (repeatable).
    #[arg(long = "dns")]
    dns: Vec<String>,
    /// Certificate lifetime: seconds, or 30m / 12h (server default when absent).
    #[arg(long)]
    ttl: Option<String>,
    /// Also usable as a TLS server certificate.
    #[arg(long)]
    server_auth: bool,
    /// Key type for new keys: ecdsa-p256 (default) or ed25519.
    #[arg(long, default_value = "ecdsa-p256")]
    key_type: String,
    /// Generate a new key at every renewal (default: keep the key until re-authentication, so
    /// key.pem and cert.pem always match).
    #[arg(long)]
    rotate_key: bool,
    /// Shell command run after every certificate renewal (e.g. "systemctl reload envoy").
    #[arg(long)]
    reload: Option<String>,
    /// Scope of the access token (default: the identity's default scopes).
    #[arg(long)]
    scope: Option<String>,
    /// Keep only the certificate fresh, not an access token.
    #[arg(long)]
    no_token: bool,
    /// Fraction of the lifetime after which to renew (before jitter).
    #[arg(long, default_value_t = 0.5)]
    renew_fraction: f64,
    /// Longest wait between retries while the server is unreachable, in seconds.
    #[arg(long, default_value_t = 30)]
    max_backoff_secs: u64,
    /// Stop after the first successful round.
    #[arg(long)]
    once: bool,
}

struct Current {
    summary: x509::CertSummary,
    /// When the certificate file was written, which is when it was obtained: the file is replaced
    /// by a rename right after issuance.
    written: Option<OffsetDateTime>,
    cert_pem: String,
    key_pem: String,
}

fn read_current(dir: &Path) -> Option<Current> {
    let cert_pem = std::fs::read_to_string(dir.join(CERT_FILE)).ok()?;
    let key_pem = std::fs::read_to_string(dir.join(KEY_FILE)).ok()?;
    let ders = x509::certificates_from_pem_or_der(cert_pem.as_bytes()).ok()?;
    let summary = x509::parse_certificate(ders.first()?).ok()?;
    let written = std::fs::metadata(dir.join(CERT_FILE))
        .and_then(|m| m.modified())
        .ok()
        .map(OffsetDateTime::from);
    Some(Current {
        summary,
        written,
        cert_pem,
        key_pem,
    })
}

/// When to renew `c`: `fraction` of its lifetime, moved by up to ±10% of the lifetime by a jitter
/// derived from its serial (stable for one certificate, spread across a fleet).
///
/// The lifetime counts from when the certificate was obtained (`obtained`, kept within the
/// validity), not from `notBefore`: issuers backdate `notBefore` for clock skew (Steward by a
/// minute), and with short lifetimes the backdate would put every renewal in the past.
fn renew_time(
    c: &x509::CertSummary,
    obtained: Option<OffsetDateTime>,
    fraction: f64,
) -> OffsetDateTime {
    let start = obtained.map_or(c.not_before, |t| t.clamp(c.not_before, c.not_after));
    let life = (c.not_after - start).as_seconds_f64().max(1.0);
    let byte = u8::from_str_radix(
        c.serial
            .get(c.serial.len().saturating_sub(2)..)
            .unwrap_or("80"),
        16,
    )
    .unwrap_or(128);
    let jitter = (f64::from(byte) / 255.0 - 0.5) * 0.2;
    let at = (fraction + jitter).clamp(0.05, 0.95);
    (start + time::Duration::seconds_f64(life * at)).min(c.not_after)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn log(msg: &str) {
    let t = now()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    eprintln!("{t} steward agent: {msg}");
}

/// Gets a new certificate: over mutual TLS with the current one while it is valid, else (or when
/// that is refused) by re-authenticating with the client secret and a fresh key.
async fn refresh_cert(
    a: &AgentArgs,
    server: &str,
    creds: &steward_proto::CredentialsFile,
    current: Option<&Current>,
) -> Result<steward_proto::IssuedCertificate> {
    let dir = &a.out_dir;
    let alg = KeyAlg::parse(&a.key_type)
        .ok_or_else(|| anyhow!("--key-type must be ecdsa-p256 or ed25519"))?;
    let ttl = a.ttl.as_deref().map(parse_ttl).transpose()?;
    let req = Request {
        server,
        ttl_secs: ttl,
        server_auth: a.server_auth,
    };
    let bundle = bundle_for(dir, creds.ca_bundle.as_deref())?;
    if let Some(c) = current.filter(|c| now() < c.summary.not_after) {
        let kc = if a.rotate_key {
            x509::generate_key_and_csr(alg, "steward-workload", &[], &a.dns)?
        } else {
            x509::csr_for_key(&c.key_pem, "steward-workload", &[], &a.dns)?
        };
        let identity = format!("{}{}", c.cert_pem, c.key_pem);
        match request(
            &req,
            Auth::Certificate {
                identity_pem: identity.as_bytes(),
            },
            bundle.as_deref(),
            &kc.csr_pem,
        )
        .await
        {
            Ok(issued) => {
                write_files(dir, a.rotate_key.then_some(kc.key_pem.as_str()), &issued)?;
                return Ok(issued);
            }
            Err(e) => log(&format!(
                "renewal over mutual TLS failed ({e:#}); re-authenticating"
            )),
        }
    }
    let kc = x509::generate_key_and_csr(alg, "steward-workload", &[], &a.dns)?;
    let issued = request(
        &req,
        Auth::Secret {
            client_id: &creds.client_id,
            secret: &creds.client_secret,
        },
        bundle.as_deref(),
        &kc.csr_pem,
    )
    .await?;
    write_files(dir, Some(&kc.key_pem), &issued)?;
    Ok(issued)
}

/// Exchanges the certificate for a certificate-bound access token (`tls_client_auth`) and
/// writes it to `token` (0600). Returns its lifetime.
async fn refresh_token(
    a: &AgentArgs,
    server: &str,
    creds: &steward_proto::CredentialsFile,
) -> Result<u64> {
    let c = read_current(&a.out_dir).ok_or_else(|| anyhow!("no certificate yet"))?;
    let bundle = std::fs::read_to_string(a.out_dir.join(BUNDLE_FILE)).ok();
    let identity = format!("{}{}", c.cert_pem, c.key_pem);
    let http = http_client(bundle.as_deref(), Some(identity.as_bytes()))?;
    let mut form = vec![
        ("grant_type", "client_credentials".to_owned()),
        ("client_id", creds.client_id.clone()),
    ];
    if let Some(s) = &a.scope {
        form.push(("scope", s.clone()));
    }
    let url = format!("{}/oauth2/token", server.trim_end_matches('/'));
    let resp = http
        .post(&url)
        .form(&form)
        .send()
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "token request refused ({status}): {}",
            body.get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("no details")
        );
    }
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("token response without access_token"))?;
    write_private(&a.out_dir.join(TOKEN_FILE), token.as_bytes())?;
    Ok(body.get("expires_in").and_then(Value::as_u64).unwrap_or(60))
}

async fn run_hook(cmd: &str, dir: &Path) {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("STEWARD_CERT_FILE", dir.join(CERT_FILE))
        .env("STEWARD_KEY_FILE", dir.join(KEY_FILE))
        .env("STEWARD_BUNDLE_FILE", dir.join(BUNDLE_FILE))
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(Duration::from_secs(60), child).await {
        Ok(Ok(s)) if s.success() => {}
        Ok(Ok(s)) => log(&format!("reload hook exited with {s}")),
        Ok(Err(e)) => log(&format!("reload hook could not run: {e}")),
        Err(_) => log("reload hook timed out after 60 s"),
    }
}

async fn stop_signal() {
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

pub async fn agent(server: Option<String>, creds_path: &Path, a: AgentArgs) -> Result<ExitCode> {
    if !(0.1..=0.9).contains(&a.renew_fraction) {
        bail!("--renew-fraction must be between 0.1 and 0.9");
    }
    let creds = read_credentials(creds_path)?;
    let server = server
        .unwrap_or_else(|| creds.issuer.clone())
        .trim_end_matches('/')
        .to_owned();
    std::fs::create_dir_all(&a.out_dir)
        .with_context(|| format!("cannot create {}", a.out_dir.display()))?;
    let max_backoff = Duration::from_secs(a.max_backoff_secs.max(1));
    let mut backoff = Duration::from_secs(1);
    let mut token_due = now();
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let current = read_current(&a.out_dir);
        let mut ok = true;
        let cert_due = current
            .as_ref()
            .is_none_or(|c| now() >= renew_time(&c.summary, c.written, a.renew_fraction));
        if cert_due {
            match refresh_cert(&a, &server, &creds, current.as_ref()).await {
                Ok(issued) => {
                    log(&format!(
                        "certificate {} for {} valid until {}",
                        issued.serial,
                        issued.spiffe_id,
                        issued
                            .not_after
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default()
                    ));
                    token_due = now();
                    if let Some(cmd) = &a.reload {
                        run_hook(cmd, &a.out_dir).await;
                    }
                }
                Err(e) => {
                    log(&format!("certificate refresh failed: {e:#}"));
                    ok = false;
                }
            }
        }
        if ok && !a.no_token && now() >= token_due {
            match refresh_token(&a, &server, &creds).await {
                Ok(secs) => {
                    let half = i64::try_from(secs / 2).unwrap_or(30).max(1);
                    token_due = now() + time::Duration::seconds(half);
                }
                Err(e) => {
                    log(&format!("access token refresh failed: {e:#}"));
                    ok = false;
                }
            }
        }
        if ok && a.once {
            return Ok(ExitCode::SUCCESS);
        }
        let wait = if ok {
            backoff = Duration::from_secs(1);
            let mut next = read_current(&a.out_dir)
                .map(|c| renew_time(&c.summary, c.written, a.renew_fraction))
                .unwrap_or_else(|| now() + time::Duration::seconds(1));
            if !a.no_token {
                next = next.min(token_due);
            }
            let secs = (next - now()).as_seconds_f64().clamp(0.2, 3600.0);
            Duration::from_secs_f64(secs)
        } else {
            let w = backoff;
            backoff = (backoff * 2).min(max_backoff);
            // ±20% jitter so a fleet does not retry in lockstep.
            let mut b = [0u8; 1];
            steward_crypto::rand::fill(&mut b);
            w.mul_f64(0.8 + f64::from(b[0]) / 255.0 * 0.4)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stop => {
                log("stopping");
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(serial: &str, not_before: OffsetDateTime, secs: i64) -> x509::CertSummary {
        x509::CertSummary {
            serial: serial.into(),
            subject: String::new(),
            subject_cn: None,
            issuer: String::new(),
            not_before,
            not_after: not_before + time::Duration::seconds(secs),
            uris: vec![],
            dns_names: vec![],
            is_ca: false,
        }
    }

    #[test]
    fn renew_time_is_about_half_the_lifetime() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        for serial in ["40aa00", "40aaff", "40aa80"] {
            let c = summary(serial, t0, 1000);
            let at = (renew_time(&c, None, 0.5) - t0).whole_seconds();
            assert!((400..=600).contains(&at), "{serial}: {at}");
        }
    }

    #[test]
    fn a_backdated_not_before_does_not_pull_the_renewal_into_the_past() {
        // Issued at t0 for 8 s, notBefore backdated by a minute: renewal is 3.2–4.8 s after t0.
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let c = summary("40aa00", t0 - time::Duration::seconds(60), 68);
        let at = renew_time(&c, Some(t0), 0.5) - t0;
        assert!(
            (3.2..=4.8).contains(&at.as_seconds_f64()),
            "renews {at} after issuance"
        );
        // A write time outside the validity is clamped into it.
        let late = renew_time(&c, Some(t0 + time::Duration::hours(1)), 0.5);
        assert!(late <= c.not_after);
        let early = renew_time(&c, Some(t0 - time::Duration::hours(1)), 0.5);
        assert_eq!(early, renew_time(&c, None, 0.5));
    }
}
