//! Resilience: leases for single-node duties (fencing of a deposed holder; two real nodes on one
//! PostgreSQL sharing and handing over the duties), one audit sequence under two concurrently
//! writing nodes, losing and regaining the database behind a TCP proxy the test controls, and the
//! overload limits of every endpoint (global in-flight bound, body limit, timeout, slow clients,
//! connection cap).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use steward_server::leases::duty;
use steward_server::{RunningServer, ServerConfig, StartOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::harness::{TestServer, drop_pg_database, fresh_pg_database};

/// Polls `done` every 20 ms until it holds; panics after `limit`. Returns the time it took.
async fn until<F, Fut>(limit: Duration, what: &str, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

// ------------------------------------------------------------------ leases

#[tokio::test]
async fn a_node_that_lost_its_lease_cannot_act_for_the_duty() {
    let t = TestServer::start().await;
    let s = &t.server.state;
    let store = s.store.as_ref();
    let now = t.clock_now();
    let ttl = time::Duration::minutes(1);
    // This node holds the checkpoint, key-rotation and PKI duties...
    let cp = s
        .leases
        .hold(store, duty::AUDIT_CHECKPOINT, ttl, now)
        .await
        .unwrap()
        .expect("a lone node gets the lease");
    let keys = s
        .leases
        .hold(store, duty::SIGNING_KEYS, ttl, now)
        .await
        .unwrap()
        .unwrap();
    let pki = s
        .leases
        .hold(store, duty::PKI, ttl, now)
        .await
        .unwrap()
        .unwrap();
    // ...then it is paused past the expiry, and another node takes all three over.
    let later = now + time::Duration::minutes(5);
    for name in [duty::AUDIT_CHECKPOINT, duty::SIGNING_KEYS, duty::PKI] {
        let other = store
            .try_acquire_lease(name, "other-node", ttl, later)
            .await
            .unwrap()
            .expect("an expired lease is taken over");
        assert_eq!(other.holder, "other-node");
    }
    // Waking up, the old holder still has its fences, but every write they guard is refused.
    t.admin_token().await; // a new audit record, so a checkpoint would be new
    let before = store.latest_checkpoint().await.unwrap();
    let e = s.checkpoint_fenced(Some(&cp)).await.unwrap_err();
    assert!(e.to_string().contains("stale"), "{e}");
    assert_eq!(store.latest_checkpoint().await.unwrap(), before);

    let schedule = steward_server::keys::Schedule {
        alg: steward_crypto::jws::SigningAlg::EdDSA,
        period: time::Duration::days(30),
        overlap: time::Duration::hours(1),
    };
    let key_count = store.list_signing_keys().await.unwrap().len();
    // Far enough ahead that the schedule needs new keys.
    let far = now + time::Duration::days(90);
    let e =
        steward_server::keys::ensure_schedule_fenced(store, &s.master, schedule, far, Some(&keys))
            .await
            .unwrap_err();
    assert!(e.to_string().contains("stale"), "{e}");
    assert_eq!(store.list_signing_keys().await.unwrap().len(), key_count);

    let cas = store.list_pki_objects("ca").await.unwrap().len();
    let ctx = steward_server::service::Ctx::system();
    assert!(s.rotate_ca_fenced(&ctx, None, Some(&pki)).await.is_err());
    assert_eq!(store.list_pki_objects("ca").await.unwrap().len(), cas);

    // And the node learns it lost the lease the next time it tries to hold it.
    let again = s
        .leases
        .hold(
            store,
            duty::AUDIT_CHECKPOINT,
            ttl,
            later + time::Duration::seconds(1),
        )
        .await
        .unwrap();
    assert_eq!(again, None);
    assert!(
        !s.leases
            .held()
            .iter()
            .any(|l| l.name == duty::AUDIT_CHECKPOINT)
    );
    // The unfenced paths (bootstrap, operator requests) are unaffected.
    assert!(s.checkpoint().await.is_ok());
}

const ISSUER: &str = "https://steward.cluster.test";

/// A node on the shared database `url`; the first one (no `master`) bootstraps.
async fn start_node(
    url: &str,
    master: Option<String>,
    dir: &Path,
    tweak: impl FnOnce(&mut ServerConfig),
) -> RunningServer {
    let mut cfg = ServerConfig {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(url.to_owned()),
        issuer: Some(ISSUER.into()),
        insecure_http: true,
        ..Default::default()
    };
    tweak(&mut cfg);
    steward_server::start(
        cfg,
        StartOptions {
            master_key: master,
            clock: None,
        },
    )
    .await
    .expect("node starts")
}

/// Admin client id and secret from the bootstrap credentials file.
fn admin_credentials(node: &RunningServer) -> (String, String) {
    let path = node
        .admin_credentials
        .clone()
        .expect("this node bootstrapped");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    (
        v["client_id"].as_str().unwrap().to_owned(),
        v["client_secret"].as_str().unwrap().to_owned(),
    )
}

async fn issue(http: &reqwest::Client, base: &str, id: &str, secret: &str) -> Option<String> {
    let r = http
        .post(format!("{base}/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .ok()?;
    if r.status() != StatusCode::OK {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    v["access_token"].as_str().map(str::to_owned)
}

fn jti_of(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    v["jti"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn two_nodes_share_single_node_duties_and_hand_them_over() {
    let (url, db) = fresh_pg_database().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(&url, None, dir_a.path(), |c| c.checkpoint_interval_secs = 1).await;
    let master = std::fs::read_to_string(dir_a.path().join("master.key")).unwrap();
    let b = start_node(&url, Some(master.trim().into()), dir_b.path(), |c| {
        c.checkpoint_interval_secs = 1
    })
    .await;
    let store = a.state.store.clone();
    // Within a few ticks each duty is held, by exactly one of the two nodes.
    for name in [duty::AUDIT_CHECKPOINT, duty::PKI] {
        let held_by = |n: &RunningServer| n.state.leases.held().iter().any(|l| l.name == name);
        // A node records a lease in memory just after the store grants it: wait for both.
        until(Duration::from_secs(15), name, || async {
            store
                .get_lease(name)
                .await
                .unwrap()
                .is_some_and(|l| l.is_live(time::OffsetDateTime::now_utc()))
                && (held_by(&a) || held_by(&b))
        })
        .await;
        let stored = store.get_lease(name).await.unwrap().unwrap();
        assert_ne!(
            held_by(&a),
            held_by(&b),
            "{name}: exactly one node holds it"
        );
        let holder = if held_by(&a) { &a } else { &b };
        assert_eq!(stored.holder, holder.state.leases.holder());
    }
    let stored = store
        .get_lease(duty::AUDIT_CHECKPOINT)
        .await
        .unwrap()
        .unwrap();
    let (leaving, staying) = if stored.holder == a.state.leases.holder() {
        (a, b)
    } else {
        (b, a)
    };
    let (id, secret) = admin_credentials(if leaving.admin_credentials.is_some() {
        &leaving
    } else {
        &staying
    });
    // The holder stops gracefully: it releases its leases, and the other node takes the duty over
    // at its next tick (not after the lease's expiry).
    leaving.shutdown().await;
    let took = until(Duration::from_secs(5), "hand-over", || async {
        staying
            .state
            .leases
            .held()
            .iter()
            .any(|l| l.name == duty::AUDIT_CHECKPOINT)
    })
    .await;
    let now_held = store
        .get_lease(duty::AUDIT_CHECKPOINT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now_held.holder, staying.state.leases.holder());
    assert!(now_held.epoch > stored.epoch);
    assert!(took < Duration::from_secs(3), "hand-over took {took:?}");
    // The new holder does the duty: the checkpoint catches up with new audit records.
    let http = reqwest::Client::new();
    assert!(
        issue(&http, &staying.base_url(), &id, &secret)
            .await
            .is_some()
    );
    until(
        Duration::from_secs(5),
        "checkpoint by the new holder",
        || async {
            let head = store.audit_head().await.unwrap().size;
            store
                .latest_checkpoint()
                .await
                .unwrap()
                .is_some_and(|c| c.size == head)
        },
    )
    .await;
    staying.shutdown().await;
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn two_nodes_writing_at_once_keep_one_gap_free_verifiable_audit_log() {
    let (url, db) = fresh_pg_database().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(&url, None, dir_a.path(), |_| {}).await;
    let master = std::fs::read_to_string(dir_a.path().join("master.key")).unwrap();
    let b = start_node(&url, Some(master.trim().into()), dir_b.path(), |_| {}).await;
    let (id, secret) = admin_credentials(&a);
    let http = reqwest::Client::new();
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..16 {
        let base = if n % 2 == 0 {
            a.base_url()
        } else {
            b.base_url()
        };
        let (http, id, secret) = (http.clone(), id.clone(), secret.clone());
        clients.spawn(async move {
            let mut jtis = Vec::new();
            for _ in 0..40 {
                let token = issue(&http, &base, &id, &secret).await.expect("token");
                jtis.push(jti_of(&token));
            }
            jtis
        });
    }
    let issued: Vec<String> = clients.join_all().await.into_iter().flatten().collect();
    assert_eq!(issued.len(), 640);
    // One log: contiguous sequence numbers, every hash recomputes, and each token has exactly
    // one `token.issue` record, whichever node issued it.
    let store = a.state.store.clone();
    let report = steward_server::audit::verify_store(store.as_ref(), None)
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    let head = store.audit_head().await.unwrap();
    assert_eq!(report.records, head.size);
    let records = store.audit_range(1, 10_000).await.unwrap();
    assert_eq!(records.len() as u64, head.size);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "gap-free");
    }
    let mut audited = std::collections::HashMap::<String, usize>::new();
    for r in records.iter().filter(|r| r.event.action == "token.issue") {
        if let Some(j) = r.event.details["jti"].as_str() {
            *audited.entry(j.to_owned()).or_default() += 1;
        }
    }
    for j in &issued {
        assert_eq!(
            audited.get(j),
            Some(&1),
            "token {j} has exactly one audit record"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
    drop_pg_database(&db).await;
}

// ------------------------------------------------------------------ losing the database

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Up,
    /// Every connection is closed and new ones are closed on accept (a restart, a failover).
    Cut,
    /// Connections stay open but nothing passes (a partition: the worst case, nothing fails fast).
    Blackhole,
}

/// A TCP proxy in front of PostgreSQL that the test cuts and restores.
struct Proxy {
    addr: SocketAddr,
    link: watch::Sender<Link>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(db_url: &str) -> Self {
        let u = url::Url::parse(db_url).unwrap();
        let upstream =
            tokio::net::lookup_host((u.host_str().unwrap().to_owned(), u.port().unwrap_or(5432)))
                .await
                .unwrap()
                .next()
                .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (link, rx) = watch::channel(Link::Up);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mode = rx.clone();
                if *mode.borrow() == Link::Cut {
                    continue; // dropped: closed at once
                }
                tokio::spawn(async move {
                    if let Ok(up) = TcpStream::connect(upstream).await {
                        pipe(client, up, mode).await;
                    }
                });
            }
        });
        Self { addr, link, task }
    }

    fn set(&self, link: Link) {
        self.link.send_replace(link);
    }

    /// `db_url` with the proxy's address instead of the server's.
    fn url(&self, db_url: &str) -> String {
        let mut u = url::Url::parse(db_url).unwrap();
        u.set_host(Some("127.0.0.1")).unwrap();
        u.set_port(Some(self.addr.port())).unwrap();
        u.to_string()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(mut client: TcpStream, mut up: TcpStream, mut mode: watch::Receiver<Link>) {
    let (mut cr, mut cw) = client.split();
    let (mut ur, mut uw) = up.split();
    let (mut b1, mut b2) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        let link = *mode.borrow_and_update();
        match link {
            Link::Cut => return,
            Link::Blackhole => {
                if mode.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Link::Up => {}
        }
        tokio::select! {
            changed = mode.changed() => if changed.is_err() { return },
            r = cr.read(&mut b1) => match r {
                Ok(n) if n > 0 => if uw.write_all(&b1[..n]).await.is_err() { return },
                _ => return,
            },
            r = ur.read(&mut b2) => match r {
                Ok(n) if n > 0 => if cw.write_all(&b2[..n]).await.is_err() { return },
                _ => return,
            },
        }
    }
}

async fn db_outage(link: Link) {
    let (url, db) = fresh_pg_database().await;
    let proxy = Proxy::start(&url).await;
    let t = TestServer::start_with(|c| {
        c.database_url = Some(proxy.url(&url));
        c.request_timeout_secs = 5;
    })
    .await;
    let owner = t.create_owner("outage").await;
    let (id, secret) = t.workload("svc").await;
    let admin = t.admin_token().await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let get = |path: &'static str| {
        let (http, url) = (http.clone(), t.url(path));
        async move { http.get(url).send().await.map(|r| r.status()).ok() }
    };
    let identity = |name: &str| {
        json!({"name": name, "kind": "workload", "owner": owner, "purpose": "outage test",
               "environment": "prod", "expires_at": t.in_days(30)})
    };
    assert_eq!(get("/readyz").await, Some(StatusCode::OK));

    proxy.set(link);
    let noticed = until(
        Duration::from_secs(10),
        "readyz reports the loss",
        || async { get("/readyz").await == Some(StatusCode::SERVICE_UNAVAILABLE) },
    )
    .await;
    // Writes are refused at once with 503 and Retry-After, never queued behind a lost database.
    let start = Instant::now();
    let r = http
        .post(t.url("/v1/identities"))
        .bearer_auth(&admin)
        .json(&identity("during"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unavailable");
    let r = http
        .post(t.url("/oauth2/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "temporarily_unavailable"
    );
    // Reads that need the database are 503 too (a valid token is not "unauthorized").
    let r = http
        .get(t.url("/v1/identities"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // What is served from memory still works: keys for local token verification, liveness.
    assert_eq!(get("/.well-known/jwks.json").await, Some(StatusCode::OK));
    assert_eq!(get("/healthz").await, Some(StatusCode::OK));

    // The database returns: the node recovers by itself.
    proxy.set(Link::Up);
    let recovered = until(Duration::from_secs(15), "ready again", || async {
        get("/readyz").await == Some(StatusCode::OK)
    })
    .await;
    until(Duration::from_secs(10), "writes succeed again", || async {
        http.post(t.url("/v1/identities"))
            .bearer_auth(&admin)
            .json(&identity("after"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::CREATED)
    })
    .await;
    let (s, _, _) = t.token_basic(&id, &secret, &[]).await;
    assert_eq!(s, StatusCode::OK);
    let report = steward_server::audit::verify_store(t.server.state.store.as_ref(), None)
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    eprintln!("{link:?}: loss noticed after {noticed:?}, recovery after {recovered:?}");
    drop(t);
    drop_pg_database(&db).await;
}

#[tokio::test]
async fn a_cut_database_connection_makes_the_node_unready_and_it_recovers_by_itself() {
    db_outage(Link::Cut).await;
}

#[tokio::test]
async fn a_black_holed_database_makes_the_node_unready_and_it_recovers_by_itself() {
    db_outage(Link::Blackhole).await;
}

// ------------------------------------------------------------------ overload

/// Opens a plain-HTTP request whose body never arrives: it stays in flight until dropped.
async fn stalled_request(addr: SocketAddr, method: &str, path: &str, auth: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: steward\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"a\":"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn the_in_flight_limit_is_global_across_routes() {
    let t = TestServer::start_with(|c| c.max_in_flight_requests = 2).await;
    // Two token requests hold both slots (their bodies never come).
    let held = vec![
        stalled_request(t.server.addr, "POST", "/oauth2/token", "").await,
        stalled_request(t.server.addr, "POST", "/oauth2/token", "").await,
    ];
    // Any other route is now shed at once with 503 and Retry-After.
    until(Duration::from_secs(5), "other routes are shed", || async {
        t.http.get(t.url("/healthz")).send().await.unwrap().status()
            == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let r = t
        .http
        .get(t.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "overloaded");
    // Once they end, the capacity is back.
    drop(held);
    until(Duration::from_secs(5), "capacity is back", || async {
        t.http.get(t.url("/healthz")).send().await.unwrap().status() == StatusCode::OK
    })
    .await;
}

/// Every route of the OpenAPI document with a request body, with its path parameters filled in.
async fn write_routes(t: &TestServer) -> Vec<(Method, String)> {
    let spec: Value = t
        .http
        .get(t.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut routes = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (name, method) in [
            ("post", Method::POST),
            ("put", Method::PUT),
            ("patch", Method::PATCH),
        ] {
            if item.get(name).is_none() {
                continue;
            }
            let mut concrete = String::new();
            for seg in path.split('/').skip(1) {
                concrete.push('/');
                match seg {
                    "{action}" => concrete.push_str("suspend"),
                    s if s.starts_with('{') => concrete.push_str(&uuid::Uuid::now_v7().to_string()),
                    s => concrete.push_str(s),
                }
            }
            routes.push((method, concrete));
        }
    }
    assert!(routes.len() >= 20, "{routes:?}");
    routes
}

#[tokio::test]
async fn every_endpoint_has_a_body_limit_and_a_timeout() {
    let t = TestServer::start_with(|c| {
        c.max_body_bytes = 1024;
        c.request_timeout_secs = 1;
    })
    .await;
    let admin = t.admin_token().await;
    let routes = write_routes(&t).await;
    for (method, path) in &routes {
        // A body over the limit is refused with 413, before anything else reads it.
        let mut req = t
            .http
            .request(method.clone(), t.url(path))
            .body(vec![b' '; 4096]);
        req = if path.starts_with("/oauth2/") {
            req.header("content-type", "application/x-www-form-urlencoded")
        } else if path == "/v1/leaks" {
            // The partner-signature path reads the body before checking the signature.
            req.header("github-public-key-identifier", "k")
                .header("github-public-key-signature", "c2ln")
                .header("content-type", "application/json")
        } else {
            req.bearer_auth(&admin)
                .header("content-type", "application/json")
        };
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{method} {path}");

        // A body that never finishes is cut off by the request timeout (408), not waited for.
        let auth = if path.starts_with("/oauth2/") || path == "/v1/leaks" {
            if path == "/v1/leaks" {
                "github-public-key-identifier: k\r\ngithub-public-key-signature: c2ln\r\n".into()
            } else {
                String::new()
            }
        } else {
            format!("Authorization: Bearer {admin}\r\n")
        };
        let mut s = stalled_request(t.server.addr, method.as_str(), path, &auth).await;
        let mut answer = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within 5 s"))
            .unwrap();
        let line = String::from_utf8_lossy(&answer[..n]);
        assert!(
            line.starts_with("HTTP/1.1 408"),
            "{method} {path}: {line:?}"
        );
    }
}

/// A TLS client trusting the test server's CA.
async fn tls_connect(
    t: &TestServer,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    let bundle = t.server.state.trust_bundle_pem();
    use rustls_pki_types::pem::PemObject;
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(t.server.addr).await?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_connections_are_capped() {
    let t = TestServer::start_with(|c| {
        c.insecure_http = false;
        c.request_timeout_secs = 1;
        c.max_connections = 4;
    })
    .await;
    // A client that never finishes its request headers is disconnected (slowloris).
    let mut slow = tls_connect(&t).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let start = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
        .await
        .expect("the server closes a connection whose headers never end");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(start.elapsed() < Duration::from_secs(4));
    drop(slow);

    // At most 4 connections: a 5th is closed at once, before the TLS handshake.
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut c = tls_connect(&t).await.unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let n = c.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        open.push(c);
    }
    assert!(
        tls_connect(&t).await.is_err(),
        "a 5th connection is refused"
    );
    drop(open);
    until(Duration::from_secs(5), "capacity is back", || async {
        tls_connect(&t).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn not_ready_refuses_writes_but_serves_what_needs_no_database() {
    // The gate alone, on either backend: flip readiness as the watch would.
    let t = TestServer::start().await;
    let (id, secret) = t.workload("gate").await;
    let admin = t.admin_token().await;
    t.server.state.set_ready(false);
    let r = t
        .http
        .post(t.url("/v1/owners"))
        .bearer_auth(&admin)
        .json(&json!({"name": "x", "kind": "team", "contact": "x@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "1");
    let (s, v, h) = t.token_basic(&id, &secret, &[]).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"], "temporarily_unavailable");
    assert_eq!(h["cache-control"], "no-store");
    let (s, _) = t.api_with(&admin, Method::GET, "/v1/owners", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let r = t.http.get(t.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = t
        .http
        .get(t.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Nothing was written while refusing.
    let size = t.audit_size().await;
    t.server.state.set_ready(true);
    assert_eq!(t.audit_size().await, size);
    let (s, _, _) = t.token_basic(&id, &secret, &[]).await;
    assert_eq!(s, StatusCode::OK);
}

// ------------------------------------------------------------------ checkpoints

/// A checkpoint extends the node's kept Merkle tree with the records appended since the last
/// one (across several read pages), and its root is the root of the whole log.
#[tokio::test]
async fn checkpoints_extend_the_tree_with_new_records_only() {
    let t = TestServer::start().await;
    let s = &t.server.state;
    let store = s.store.as_ref();
    let event = |n: usize| {
        steward_core::AuditEvent::new(
            t.clock_now(),
            "checkpoint-test",
            format!("test.event{}", n % 3),
            steward_core::Outcome::Success,
        )
    };
    let root_of_log = || async {
        let head = store.audit_head().await.unwrap();
        let leaves = store.audit_leaf_hashes(head.size).await.unwrap();
        (head.size, steward_crypto::merkle::root(&leaves))
    };
    let first = s.checkpoint().await.unwrap();
    assert_eq!((first.size, first.root_hash), root_of_log().await);
    // More records than one page of the catch-up read.
    for chunk in 0..3 {
        let mut change = steward_store::Change::new();
        for n in 0..2_000 {
            change = change.audit(event(chunk * 2_000 + n));
        }
        store.commit(change).await.unwrap();
    }
    let second = s.checkpoint().await.unwrap();
    assert_eq!(second.size, first.size + 6_000);
    assert_eq!((second.size, second.root_hash), root_of_log().await);
    // Nothing new: the same checkpoint; one more record: a new root.
    assert_eq!(s.checkpoint().await.unwrap(), second);
    store
        .commit(steward_store::Change::audit_only(event(0)))
        .await
        .unwrap();
    let third = s.checkpoint().await.unwrap();
    assert_eq!((third.size, third.root_hash), root_of_log().await);
    assert_ne!(third.root_hash, second.root_hash);
    // The background job's step: the tree follows the log without a checkpoint being signed,
    // and the next checkpoint starts from where it got to.
    let mut change = steward_store::Change::new();
    for n in 0..5_000 {
        change = change.audit(event(n));
    }
    store.commit(change).await.unwrap();
    let head = store.audit_head().await.unwrap();
    assert_eq!(s.advance_audit_tree().await.unwrap(), head.size);
    assert_eq!(store.latest_checkpoint().await.unwrap().unwrap(), third);
    let fourth = s.checkpoint().await.unwrap();
    assert_eq!((fourth.size, fourth.root_hash), root_of_log().await);
}
