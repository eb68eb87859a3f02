//! `steward cert issue|renew`: generates the key here (it never leaves the machine), sends a CSR,
//! and writes `key.pem` (0600), `cert.pem` (leaf + chain) and `bundle.pem`, each atomically.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use steward_crypto::x509::{self, KeyAlg};
use steward_proto::IssuedCertificate;

use crate::client::{ca_bundle, http_client, read_credentials, write_private};
use crate::output;

#[derive(Subcommand)]
pub enum CertCmd {
    /// Get a certificate with the credentials file's client secret.
    Issue(CertArgs),
    /// Replace the certificate in --out-dir, authenticating with it over mutual TLS.
    Renew(RenewArgs),
}

#[derive(Args, Clone)]
pub struct CertArgs {
    /// Directory for key.pem, cert.pem and bundle.pem.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// DNS name to request (repeatable; must be in the identity's allowed_dns_names).
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// Lifetime: seconds, or 30m / 12h.
    #[arg(long)]
    pub ttl: Option<String>,
    /// Also usable as a TLS server certificate.
    #[arg(long)]
    pub server_auth: bool,
    /// Key type: ecdsa-p256 (default) or ed25519.
    #[arg(long, default_value = "ecdsa-p256")]
    pub key_type: String,
}

#[derive(Args, Clone)]
pub struct RenewArgs {
    #[command(flatten)]
    pub cert: CertArgs,
    /// Keep the current key instead of generating a new one.
    #[arg(long)]
    pub keep_key: bool,
}

/// File names inside the output directory.
pub const KEY_FILE: &str = "key.pem";
pub const CERT_FILE: &str = "cert.pem";
pub const BUNDLE_FILE: &str = "bundle.pem";

/// Parses `3600`, `30m`, `12h` or `1d` into seconds.
pub fn parse_ttl(s: &str) -> Result<u32> {
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        Some('d') => (&s[..s.len() - 1], 86_400),
        _ => (s, 1),
    };
    let n: u32 = num
        .parse()
        .map_err(|_| anyhow!("ttl {s:?}: use seconds or a duration like 30m, 12h"))?;
    n.checked_mul(mult)
        .ok_or_else(|| anyhow!("ttl {s:?} is too large"))
}

/// What a certificate request needs besides the key.
pub struct Request<'a> {
    pub server: &'a str,
    pub ttl_secs: Option<u32>,
    pub server_auth: bool,
}

/// How the request authenticates.
pub enum Auth<'a> {
    /// HTTP Basic with the credentials file's client id and secret.
    Secret { client_id: &'a str, secret: &'a str },
    /// The current certificate and key (PEM) over mutual TLS.
    Certificate { identity_pem: &'a [u8] },
}

/// Sends `csr_pem` and returns the issued certificate. Errors carry the server's message.
pub async fn request(
    req: &Request<'_>,
    auth: Auth<'_>,
    bundle: Option<&str>,
    csr_pem: &str,
) -> Result<IssuedCertificate> {
    let identity = match &auth {
        Auth::Certificate { identity_pem } => Some(*identity_pem),
        Auth::Secret { .. } => None,
    };
    let http = http_client(bundle, identity)?;
    let url = format!("{}/v1/certificates", req.server.trim_end_matches('/'));
    let mut r = http.post(&url).json(&json!({
        "csr": csr_pem,
        "ttl_secs": req.ttl_secs,
        "server_auth": req.server_auth,
    }));
    if let Auth::Secret { client_id, secret } = auth {
        r = r.basic_auth(enc(client_id), Some(enc(secret)));
    }
    let resp = r
        .send()
        .await
        .with_context(|| format!("cannot reach {}", req.server))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "certificate request refused ({status}): {}",
            body.get("message")
                .and_then(Value::as_str)
                .unwrap_or("no details")
        );
    }
    serde_json::from_value(body).context("unexpected certificate response")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Writes the key (0600) first, then the certificate chain and the bundle (each atomically).
pub fn write_files(dir: &Path, key_pem: Option<&str>, issued: &IssuedCertificate) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Some(k) = key_pem {
        write_private(&dir.join(KEY_FILE), k.as_bytes())?;
    }
    write_public(&dir.join(CERT_FILE), issued.full_chain.as_bytes())?;
    write_public(&dir.join(BUNDLE_FILE), issued.trust_bundle.as_bytes())?;
    Ok(())
}

/// Atomic write of a non-secret file (0644): temp file in the same directory, then rename.
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn key_alg(s: &str) -> Result<KeyAlg> {
    KeyAlg::parse(s).ok_or_else(|| anyhow!("--key-type must be ecdsa-p256 or ed25519"))
}

/// The bundle to trust for `dir`: `STEWARD_CA_BUNDLE`, else `dir/bundle.pem`, else `fallback`.
pub fn bundle_for(dir: &Path, fallback: Option<&str>) -> Result<Option<String>> {
    if std::env::var_os("STEWARD_CA_BUNDLE").is_some() {
        return ca_bundle(None);
    }
    match std::fs::read_to_string(dir.join(BUNDLE_FILE)) {
        Ok(b) => Ok(Some(b)),
        Err(_) => Ok(fallback.map(str::to_owned)),
    }
}

pub async fn cert(
    server: Option<String>,
    creds_path: &Path,
    cmd: CertCmd,
    json_out: bool,
) -> Result<ExitCode> {
    let issued = match cmd {
        CertCmd::Issue(a) => {
            let creds = read_credentials(creds_path)?;
            let server = server.unwrap_or_else(|| creds.issuer.clone());
            let kc =
                x509::generate_key_and_csr(key_alg(&a.key_type)?, "steward-workload", &[], &a.dns)?;
            let bundle = ca_bundle(creds.ca_bundle.as_deref())?;
            let ttl = a.ttl.as_deref().map(parse_ttl).transpose()?;
            let issued = request(
                &Request {
                    server: &server,
                    ttl_secs: ttl,
                    server_auth: a.server_auth,
                },
                Auth::Secret {
                    client_id: &creds.client_id,
                    secret: &creds.client_secret,
                },
                bundle.as_deref(),
                &kc.csr_pem,
            )
            .await?;
            write_files(&a.out_dir, Some(&kc.key_pem), &issued)?;
            (issued, a.out_dir)
        }
        CertCmd::Renew(r) => {
            let a = r.cert;
            let dir = &a.out_dir;
            let key_pem = std::fs::read_to_string(dir.join(KEY_FILE))
                .with_context(|| format!("cannot read {}", dir.join(KEY_FILE).display()))?;
            let cert_pem = std::fs::read_to_string(dir.join(CERT_FILE))
                .with_context(|| format!("cannot read {}", dir.join(CERT_FILE).display()))?;
            let creds = read_credentials(creds_path).ok();
            let server = server
                .or_else(|| creds.as_ref().map(|c| c.issuer.clone()))
                .ok_or_else(|| anyhow!("--server is required without a credentials file"))?;
            let bundle = bundle_for(dir, creds.as_ref().and_then(|c| c.ca_bundle.as_deref()))?;
            let kc = if r.keep_key {
                x509::csr_for_key(&key_pem, "steward-workload", &[], &a.dns)?
            } else {
                x509::generate_key_and_csr(key_alg(&a.key_type)?, "steward-workload", &[], &a.dns)?
            };
            let identity = format!("{cert_pem}{}", key_pem.as_str());
            let ttl = a.ttl.as_deref().map(parse_ttl).transpose()?;
            let issued = request(
                &Request {
                    server: &server,
                    ttl_secs: ttl,
                    server_auth: a.server_auth,
                },
                Auth::Certificate {
                    identity_pem: identity.as_bytes(),
                },
                bundle.as_deref(),
                &kc.csr_pem,
            )
            .await?;
            let new_key = (!r.keep_key).then_some(kc.key_pem.as_str());
            write_files(dir, new_key, &issued)?;
            (issued, a.out_dir)
        }
    };
    let (issued, dir) = issued;
    let summary = json!({
        "serial": issued.serial,
        "spiffe_id": issued.spiffe_id,
        "dns_names": issued.dns_names,
        "not_after": issued.not_after.format(&time::format_description::well_known::Rfc3339)?,
        "key": dir.join(KEY_FILE).display().to_string(),
        "certificate": dir.join(CERT_FILE).display().to_string(),
        "bundle": dir.join(BUNDLE_FILE).display().to_string(),
    });
    if json_out {
        output::json(&summary)
    } else {
        output::record(&summary)
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_forms() {
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("30m").unwrap(), 1800);
        assert_eq!(parse_ttl("2h").unwrap(), 7200);
        assert!(parse_ttl("x").is_err());
    }
}
