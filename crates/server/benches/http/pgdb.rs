//! A fresh PostgreSQL database per bench run (created on the server the URL names, dropped
//! afterwards), shared by the `http` and `suite` benches.

use std::time::Duration;

use sqlx::Connection as _;
use uuid::Uuid;

/// The URL with any password removed, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable URL>".into(),
    }
}

/// Connects to the PostgreSQL server and creates a fresh database. Returns the admin connection,
/// the database name and its URL.
pub async fn create_pg_database(url: &str) -> Result<(sqlx::PgConnection, String, String), String> {
    let mut conn = tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(url))
        .await
        .map_err(|_| "connection timed out after 5 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let name = format!(
        "steward_bench_{}",
        &Uuid::new_v4().simple().to_string()[..12]
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .map_err(|e| format!("CREATE DATABASE: {e}"))?;
    let mut u = url::Url::parse(url).map_err(|e| format!("parsing the PostgreSQL URL: {e}"))?;
    u.set_path(&format!("/{name}"));
    Ok((conn, name, u.to_string()))
}

pub async fn drop_pg_database(conn: &mut sqlx::PgConnection, name: &str) -> Result<(), String> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(conn)
    .await
    .map(|_| ())
    .map_err(|e| format!("DROP DATABASE: {e}"))
}
