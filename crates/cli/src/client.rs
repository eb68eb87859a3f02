//! HTTP client for the admin API: exchanges the credentials file's key for an access token
//! (cached until shortly before expiry, mode 0600), and turns error bodies into one-line errors.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use steward_proto::CredentialsFile;

pub struct Client {
    http: reqwest::Client,
    pub server: String,
    /// The CA bundle (PEM) this client trusts: `STEWARD_CA_BUNDLE`, else the credentials file's.
    pub ca_bundle: Option<String>,
    creds: Option<CredentialsFile>,
    token: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct CachedToken {
    access_token: String,
    expires_at: i64,
    server: String,
}

pub fn read_credentials(path: &Path) -> Result<CredentialsFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read credentials file {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a Steward credentials file", path.display()))
}

/// Writes a file readable only by its owner, atomically (write to a temp file, then rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).ok();
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn cache_path(client_id: &str) -> Option<PathBuf> {
    let base = std::env::var_os("STEWARD_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|p| PathBuf::from(p).join("steward")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("steward"))
        })?;
    Some(base.join(format!("token-{client_id}.json")))
}

/// The CA bundle to trust: the file named by `STEWARD_CA_BUNDLE`, else `from_credentials`.
pub fn ca_bundle(from_credentials: Option<&str>) -> Result<Option<String>> {
    if let Some(p) = std::env::var_os("STEWARD_CA_BUNDLE") {
        let p = PathBuf::from(p);
        return Ok(Some(std::fs::read_to_string(&p).with_context(|| {
            format!("cannot read the CA bundle {}", p.display())
        })?));
    }
    Ok(from_credentials.map(str::to_owned))
}

/// An HTTP client that trusts exactly `ca_bundle` when given (Steward's own CA), and presents
/// `identity` (PEM certificate chain plus key) as its client certificate when given.
pub fn http_client(ca_bundle: Option<&str>, identity: Option<&[u8]>) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
    if let Some(pem) = ca_bundle {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .context("the CA bundle is not valid PEM")?;
        b = b.tls_certs_only(certs);
    }
    if let Some(id) = identity {
        b = b.identity(
            reqwest::Identity::from_pem(id)
                .context("the client certificate or key is not valid PEM")?,
        );
    }
    b.build().context("cannot build the HTTP client")
}

/// Exchanges a client secret for an access token (`client_credentials`, `client_secret_basic`).
pub async fn fetch_token(
    http: &reqwest::Client,
    token_endpoint: &str,
    client_id: &str,
    secret: &str,
    scope: Option<&str>,
    audience: &[String],
) -> Result<steward_proto::TokenResponse> {
    let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    for a in audience {
        form.push(("resource", a));
    }
    let enc = |s: &str| url_encode(s);
    let resp = http
        .post(token_endpoint)
        .basic_auth(enc(client_id), Some(enc(secret)))
        .form(&form)
        .send()
        .await
        .with_context(|| format!("cannot reach {token_endpoint}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "token request refused ({status}): {} {}",
            body.get("error").and_then(Value::as_str).unwrap_or("error"),
            body.get("error_description")
                .and_then(Value::as_str)
                .unwrap_or("")
        );
    }
    Ok(serde_json::from_value(body)?)
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Client {
    pub fn new(server: Option<String>, creds_path: Option<&Path>) -> Result<Self> {
        let creds = match creds_path {
            Some(p) if p.exists() => Some(read_credentials(p)?),
            Some(p) if std::env::var_os("STEWARD_CREDENTIALS").is_some() => {
                bail!("credentials file {} does not exist", p.display())
            }
            _ => None,
        };
        let server = server
            .or_else(|| creds.as_ref().map(|c| c.issuer.clone()))
            .unwrap_or_else(|| "https://127.0.0.1:7443".into())
            .trim_end_matches('/')
            .to_owned();
        let ca_bundle = ca_bundle(creds.as_ref().and_then(|c| c.ca_bundle.as_deref()))?;
        let http = http_client(ca_bundle.as_deref(), None)?;
        Ok(Self {
            http,
            server,
            ca_bundle,
            creds,
            token: std::env::var("STEWARD_TOKEN").ok(),
        })
    }

    async fn access_token(&mut self) -> Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let creds = self.creds.clone().ok_or_else(|| {
            anyhow!("no credentials: pass --credentials FILE (or STEWARD_CREDENTIALS), e.g. steward-data/admin-credentials.json")
        })?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let cache = cache_path(&creds.client_id);
        if let Some(p) = &cache
            && let Ok(c) = std::fs::read_to_string(p)
                .map_err(anyhow::Error::from)
                .and_then(|t| Ok(serde_json::from_str::<CachedToken>(&t)?))
            && c.expires_at > now + 30
            && c.server == self.server
        {
            self.token = Some(c.access_token.clone());
            return Ok(c.access_token);
        }
        let endpoint = format!("{}/oauth2/token", self.server);
        let t = fetch_token(
            &self.http,
            &endpoint,
            &creds.client_id,
            &creds.client_secret,
            None,
            &[],
        )
        .await?;
        if let Some(p) = &cache {
            let c = CachedToken {
                access_token: t.access_token.clone(),
                expires_at: now + i64::try_from(t.expires_in).unwrap_or(0),
                server: self.server.clone(),
            };
            // The cache is an optimisation: failing to write it is not an error.
            let _ = serde_json::to_vec(&c).map(|b| write_private(p, &b));
        }
        self.token = Some(t.access_token.clone());
        Ok(t.access_token)
    }

    /// Calls the admin API; non-2xx answers become errors carrying the server's message.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let token = self.access_token().await?;
        let url = format!("{}{}", self.server, path);
        let mut req = self.http.request(method, &url).bearer_auth(&token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.server))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let v: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status == reqwest::StatusCode::UNAUTHORIZED
            && let Some(c) = &self.creds
            && let Some(p) = cache_path(&c.client_id)
        {
            let _ = std::fs::remove_file(p);
        }
        if !status.is_success() {
            let msg = v
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string());
            bail!(
                "{} ({}): {msg}",
                v.get("error").and_then(Value::as_str).unwrap_or("error"),
                status.as_u16()
            );
        }
        Ok(v)
    }

    pub async fn get(&mut self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&mut self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }
}
