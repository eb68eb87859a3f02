//! SQLite's by-identity audit index, filled by the writer in runs instead of on every commit:
//! a query for one identity returns the same records whether they sit in the index, in the
//! un-indexed tail or across the bound, and the upgrade indexes the records already there.

use std::path::Path;
use std::sync::Arc;

use sqlx::{Connection, Row, SqliteConnection};
use steward_store::sqlite::SqliteOptions;
use steward_store::{AuditQuery, Change, Store};
use uuid::Uuid;

use crate::support::{commit, event};

async fn open(path: &Path, run: u64) -> Arc<dyn Store> {
    let options = SqliteOptions {
        audit_index_run: run,
        ..SqliteOptions::default()
    };
    steward_store::sqlite::open_with(path, options)
        .await
        .expect("open")
}

/// Commits one record per identity given (`None`: a record of no identity), one per batch, with
/// runs too long for any of them to be indexed, then closes the store.
async fn write_unindexed(path: &Path, identities: impl Iterator<Item = Option<Uuid>>) {
    let store = open(path, 1_000_000).await;
    for identity in identities {
        let e = match identity {
            Some(id) => event("token.issue").identity(id),
            None => event("system.tick"),
        };
        commit(&store, Change::audit_only(e)).await;
    }
}

async fn raw(path: &Path) -> SqliteConnection {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    SqliteConnection::connect_with(&options)
        .await
        .expect("connect")
}

/// The bound and the number of index entries, read outside the store.
async fn index_state(path: &Path) -> (i64, i64) {
    let mut conn = raw(path).await;
    let upto: i64 = sqlx::query("SELECT upto FROM audit_identity_indexed WHERE id = 1")
        .fetch_one(&mut conn)
        .await
        .expect("bound")
        .get("upto");
    let entries: i64 = sqlx::query("SELECT COUNT(*) AS n FROM audit_identity_index")
        .fetch_one(&mut conn)
        .await
        .expect("entries")
        .get("n");
    (upto, entries)
}

/// Every record of `identity` (optionally of one action), walked page by page in both orders.
async fn walk(
    store: &Arc<dyn Store>,
    identity: Uuid,
    action: Option<&str>,
    limit: u32,
) -> Vec<u64> {
    let query = |after_seq| AuditQuery {
        identity_id: Some(identity),
        action: action.map(str::to_owned),
        after_seq,
        limit,
        ..AuditQuery::default()
    };
    let mut forward = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_audit(&query(after)).await.expect("list");
        assert!(page.items.len() <= limit as usize);
        forward.extend(page.items.iter().map(|r| r.seq));
        let Some(next) = page.next else { break };
        after = Some(next.parse().expect("cursor"));
    }
    let mut backward = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .audit_recent(&query(None), before)
            .await
            .expect("recent");
        backward.extend(page.items.iter().map(|r| r.seq));
        let Some(next) = page.next else { break };
        before = Some(next.parse().expect("cursor"));
    }
    backward.reverse();
    assert_eq!(forward, backward, "both orders return the same records");
    forward
}

#[tokio::test]
async fn identity_queries_span_the_index_and_the_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("steward.db");
    let store = open(&path, 5).await;
    let (x, y) = (Uuid::now_v7(), Uuid::now_v7());
    let mut expected_x = Vec::new();
    let mut expected_y_denied = Vec::new();
    // One record per commit, so the writer checks the bound after each: x, y and records of
    // no identity, interleaved.
    for n in 0..23u64 {
        let e = match n % 3 {
            0 => event("token.issue").identity(x),
            1 if n % 2 == 0 => event("token.deny").identity(y),
            1 => event("token.issue").identity(y),
            _ => event("system.tick"),
        };
        let is_x = n % 3 == 0;
        let is_y_denied = n % 3 == 1 && n % 2 == 0;
        let seqs = commit(&store, Change::audit_only(e)).await;
        if is_x {
            expected_x.extend(seqs);
        } else if is_y_denied {
            expected_y_denied.extend(seqs);
        }
    }
    let (upto, entries) = index_state(&path).await;
    assert!(
        (20..=23).contains(&upto),
        "the writer indexed runs of 5 as it went: bound {upto}"
    );
    let indexed_with_identity = (1..=upto).filter(|s| (s - 1) % 3 != 2).count();
    assert_eq!(
        entries, indexed_with_identity as i64,
        "records of no identity are not indexed"
    );
    assert!(upto < 23, "the last records are still in the tail");

    for limit in [1, 2, 3, 7, 100] {
        assert_eq!(
            walk(&store, x, None, limit).await,
            expected_x,
            "limit {limit}"
        );
        assert_eq!(
            walk(&store, y, Some("token.deny"), limit).await,
            expected_y_denied,
            "limit {limit}"
        );
    }
    assert!(walk(&store, Uuid::now_v7(), None, 10).await.is_empty());

    // Records indexed by another writer meanwhile are neither lost nor returned twice: index
    // everything behind the store's back, and the same queries give the same answers.
    let mut conn = raw(&path).await;
    sqlx::raw_sql(
        "INSERT OR IGNORE INTO audit_identity_index (identity, record) \
         SELECT identity_id, seq FROM audit WHERE identity_id IS NOT NULL; \
         UPDATE audit_identity_indexed SET upto = (SELECT MAX(seq) FROM audit);",
    )
    .execute(&mut conn)
    .await
    .expect("index the tail");
    assert_eq!(walk(&store, x, None, 2).await, expected_x);
    assert_eq!(
        walk(&store, y, Some("token.deny"), 1).await,
        expected_y_denied
    );
}

#[tokio::test]
async fn the_upgrade_indexes_the_records_already_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("steward.db");
    let x = Uuid::now_v7();
    let both = [Some(x), None];
    write_unindexed(&path, (0..8).map(|n| both[n % 2])).await;
    // Back to the schema before migration 11: the plain index, no index table.
    let mut conn = raw(&path).await;
    sqlx::raw_sql(
        "DROP TABLE audit_identity_index; DROP TABLE audit_identity_indexed; \
         CREATE INDEX audit_identity_id_seq_idx ON audit (identity_id, seq); \
         DELETE FROM steward_schema_migrations WHERE version = 11;",
    )
    .execute(&mut conn)
    .await
    .expect("downgrade");
    conn.close().await.expect("close");

    let store = open(&path, 1_000_000).await;
    assert_eq!(index_state(&path).await, (8, 4));
    assert_eq!(walk(&store, x, None, 3).await, vec![1, 3, 5, 7]);
    let mut conn = raw(&path).await;
    let plain: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM sqlite_master WHERE name = 'audit_identity_id_seq_idx'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("schema")
    .get("n");
    assert_eq!(plain, 0, "the per-commit index is gone");
}

#[tokio::test]
async fn a_long_lag_is_caught_up_one_run_per_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("steward.db");
    let x = Uuid::now_v7();
    write_unindexed(&path, (0..12).map(|_| Some(x))).await;
    assert_eq!(index_state(&path).await, (0, 0), "nothing indexed yet");
    let store = open(&path, 5).await;
    // The writer indexes after answering, so a bound read right after a commit may or may not
    // include that batch's run; a commit is answered only after the previous run finished.
    let mut bounds = Vec::new();
    for _ in 0..4 {
        commit(&store, Change::audit_only(event("token.issue").identity(x))).await;
        bounds.push(index_state(&path).await.0);
    }
    // Runs end at 5, 10 and 15 (after the batches of records 13, 14 and 15); record 16 starts
    // no run. After the i-th commit, the bound is that of the run before it or of its own.
    for (i, b) in (1i64..).zip(&bounds) {
        let (before, own) = ((5 * (i - 1)).min(15), (5 * i).min(15));
        assert!(
            *b == before || *b == own,
            "commit {i}: bound {b}, all: {bounds:?}"
        );
    }
    assert_eq!(bounds[3], 15, "caught up to the last whole run");
    assert_eq!(
        walk(&store, x, None, 4).await,
        (1..=16).collect::<Vec<u64>>()
    );
}
