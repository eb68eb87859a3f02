//! Opening stores: storage URLs, foreign or corrupt SQLite files (refused and left untouched),
//! and an unreachable PostgreSQL server (refused quickly). These need no PostgreSQL server.

use std::time::{Duration, Instant};

use sqlx::{Connection, SqliteConnection};
use steward_store::StoreError;

#[tokio::test]
async fn sqlite_urls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let store = steward_store::open(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    assert_eq!(store.backend(), "sqlite");
    store.ping().await.unwrap();
    drop(store);
    assert!(path.exists());

    for bad in [
        "sqlite::memory:",
        "sqlite://",
        "mysql://x/y",
        "sqlite://x.db?mode=ro",
        "/plain/path",
    ] {
        let r = steward_store::open(bad).await;
        assert!(matches!(r, Err(StoreError::Backend(_))), "{bad}: {r:?}");
    }
}

#[tokio::test]
async fn a_file_that_is_not_sqlite_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    let garbage: Vec<u8> = (0..8192u32).map(|n| (n * 7919 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    match steward_store::sqlite::open(&path).await {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("is not a Steward database"), "{m}"),
        Err(other) => panic!("expected Corrupt, got {other:?}"),
        Ok(_) => panic!("expected Corrupt, got a store"),
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file is left untouched"
    );
}

#[tokio::test]
async fn a_foreign_sqlite_database_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::raw_sql("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER); INSERT INTO invoices VALUES (1, 10);")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    match steward_store::open(&format!("sqlite://{}", path.display())).await {
        Err(StoreError::Corrupt(m)) => {
            assert!(
                m.contains("is not a Steward database") && m.contains("invoices"),
                "{m}"
            )
        }
        Err(other) => panic!("expected Corrupt, got {other:?}"),
        Ok(_) => panic!("expected Corrupt, got a store"),
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is left untouched"
    );
    assert!(
        !dir.path().join("steward.db-wal").exists(),
        "not switched to WAL"
    );
}

#[tokio::test]
async fn an_empty_file_becomes_a_steward_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    std::fs::write(&path, b"").unwrap();
    let store = steward_store::sqlite::open(&path).await.unwrap();
    assert_eq!(store.audit_head().await.unwrap().size, 0);
}

#[tokio::test]
async fn a_missing_directory_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/steward.db");
    let r = steward_store::sqlite::open(&path).await;
    assert!(
        matches!(&r, Err(StoreError::Unavailable(m)) if m.contains("steward.db")),
        "{:?}",
        r.err()
    );
}

#[tokio::test]
async fn an_unreachable_postgres_is_unavailable_quickly() {
    let started = Instant::now();
    // Port 1 on localhost: connection refused.
    let r = steward_store::open("postgres://steward:s3cret-password@127.0.0.1:1/steward").await;
    match r {
        Err(StoreError::Unavailable(m)) => {
            assert!(m.contains("127.0.0.1:1"), "{m}");
            assert!(
                !m.contains("s3cret-password"),
                "the password never appears: {m}"
            );
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("expected Unavailable, got a store"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    drop(steward_store::sqlite::open(&path).await.unwrap());
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("INSERT INTO steward_schema_migrations (version, name, checksum, applied_at) VALUES (999, 'future', x'00', 0)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    match steward_store::sqlite::open(&path).await {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("999") && m.contains("newer"), "{m}"),
        Err(other) => panic!("expected Corrupt, got {other:?}"),
        Ok(_) => panic!("expected Corrupt, got a store"),
    }
}
