//! Test harness: a real server on 127.0.0.1:0 with a manual clock, plus small HTTP helpers.
//! Every test gets its own data directory, so tests run in parallel without sharing state.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward_core::ManualClock;
use steward_server::{RunningServer, ServerConfig, StartOptions};

/// `STEWARD_IT_BACKEND=postgres` runs the whole suite on PostgreSQL (a fresh database per test,
/// on the server at `STEWARD_TEST_DATABASE_URL`); the default is embedded SQLite.
pub fn postgres_backend() -> bool {
    std::env::var("STEWARD_IT_BACKEND").is_ok_and(|b| b == "postgres")
}

pub fn admin_pg_url() -> String {
    std::env::var("STEWARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates a fresh PostgreSQL database and returns (its URL, its name).
pub async fn fresh_pg_database() -> (String, String) {
    use sqlx::{ConnectOptions, Connection};
    let admin = admin_pg_url();
    let opts: sqlx::postgres::PgConnectOptions = admin.parse().expect("STEWARD_TEST_DATABASE_URL");
    let mut conn = opts
        .connect()
        .await
        .expect("PostgreSQL reachable at STEWARD_TEST_DATABASE_URL");
    let name = format!("steward_it_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    conn.close().await.ok();
    let mut url = url::Url::parse(&admin).expect("url");
    url.set_path(&name);
    (url.to_string(), name)
}

pub struct TestServer {
    pub server: RunningServer,
    /// The PostgreSQL database of this test, dropped with the server.
    pub pg_database: Option<String>,
    pub base: String,
    pub admin_id: String,
    pub admin_secret: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = ServerConfig {
            data_dir: dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            // Plain HTTP on loopback unless a test opts into HTTPS (the certs tests do).
            insecure_http: true,
            ..Default::default()
        };
        let pg = if postgres_backend() {
            let (url, name) = fresh_pg_database().await;
            cfg.database_url = Some(url);
            Some(name)
        } else {
            None
        };
        f(&mut cfg);
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let server = steward_server::start(
            cfg,
            StartOptions {
                master_key: None,
                clock: Some(clock.clone()),
            },
        )
        .await
        .expect("server starts");
        let path = server
            .admin_credentials
            .clone()
            .expect("bootstrap wrote admin credentials");
        let creds: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read creds"))
                .expect("json");
        let http = if server.state.config.insecure_http {
            reqwest::Client::new()
        } else {
            // HTTPS: trust exactly the server's own CA bundle.
            let bundle = server.state.trust_bundle_pem();
            reqwest::Client::builder()
                .tls_certs_only(
                    reqwest::Certificate::from_pem_bundle(bundle.as_bytes()).expect("bundle"),
                )
                .build()
                .expect("https client")
        };
        Self {
            base: server.base_url(),
            admin_id: creds["client_id"].as_str().expect("client_id").to_owned(),
            admin_secret: creds["client_secret"]
                .as_str()
                .expect("client_secret")
                .to_owned(),
            server,
            pg_database: pg,
            http,
            clock,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Posts a form to the token endpoint with HTTP Basic client authentication.
    pub async fn token_basic(
        &self,
        client_id: &str,
        secret: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut f: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        f.extend_from_slice(form);
        let resp = self
            .http
            .post(self.url("/oauth2/token"))
            .basic_auth(client_id, Some(secret))
            .form(&f)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        (status, resp.json().await.unwrap_or(Value::Null), headers)
    }

    pub async fn admin_token(&self) -> String {
        let (s, v, _) = self
            .token_basic(&self.admin_id, &self.admin_secret, &[])
            .await;
        assert_eq!(s, StatusCode::OK, "admin token: {v}");
        v["access_token"].as_str().expect("token").to_owned()
    }

    /// Calls the admin API with a fresh admin token.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.admin_token().await;
        self.api_with(&token, method, path, body).await
    }

    pub async fn api_with(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn create_owner(&self, name: &str) -> String {
        let (s, v) = self
            .api(
                Method::POST,
                "/v1/owners",
                Some(
                    json!({"name": name, "kind": "team", "contact": format!("{name}@example.com")}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["id"].as_str().expect("id").to_owned()
    }

    pub fn in_days(&self, d: i64) -> String {
        (self.clock_now() + time::Duration::days(d))
            .format(&time::format_description::well_known::Rfc3339)
            .expect("fmt")
    }

    pub fn clock_now(&self) -> time::OffsetDateTime {
        use steward_core::Clock;
        self.clock.now()
    }

    /// Creates a workload identity with the given extra fields merged over sane defaults.
    pub async fn create_identity(&self, owner: &str, name: &str, extra: Value) -> Value {
        let mut body = json!({
            "name": name, "kind": "workload", "owner": owner, "purpose": "test workload",
            "environment": "prod", "expires_at": self.in_days(30),
            "scopes": ["payments:read", "payments:write"], "default_scopes": ["payments:read"],
            "audiences": ["https://payments.internal", "https://ledger.internal"],
        });
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        let (s, v) = self.api(Method::POST, "/v1/identities", Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    /// Creates an API key and returns (credential id, secret).
    pub async fn api_key(&self, identity: &str) -> (String, String) {
        let (s, v) = self
            .api(
                Method::POST,
                &format!("/v1/identities/{identity}/credentials"),
                Some(json!({"type": "api_key"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (
            v["id"].as_str().expect("id").to_owned(),
            v["client_secret"].as_str().expect("secret").to_owned(),
        )
    }

    /// A workload with one API key: (identity id, secret).
    pub async fn workload(&self, name: &str) -> (String, String) {
        let owner = self.create_owner(&format!("team-{name}")).await;
        let i = self.create_identity(&owner, name, json!({})).await;
        let id = i["id"].as_str().expect("id").to_owned();
        let (_, secret) = self.api_key(&id).await;
        (id, secret)
    }

    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let (s, v) = self
            .api(Method::GET, &format!("/v1/audit?limit=1000&{query}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    pub async fn audit_size(&self) -> u64 {
        self.server
            .state
            .store
            .audit_head()
            .await
            .expect("head")
            .size
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let Some(name) = self.pg_database.take() else {
            return;
        };
        // Best-effort clean-up on a separate runtime: FORCE closes the server's pooled connections.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(drop_pg_database(&name));
        })
        .join();
    }
}

/// Drops a test database, best effort; FORCE closes connections a server may still hold.
pub async fn drop_pg_database(name: &str) {
    use sqlx::ConnectOptions;
    if let Ok(opts) = admin_pg_url().parse::<sqlx::postgres::PgConnectOptions>()
        && let Ok(mut c) = opts.connect().await
    {
        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(&mut c)
            .await;
    }
}
