//! Usage and risk storage: observed use per scope and audience (daily and all-time), the sources
//! each credential was used from (bounded), identity risk scores, and the bulk reads of the
//! findings job. Both backends' SQL lives here; writes merge (counts add, first/last use widen).

use std::collections::{BTreeMap, HashSet};

use steward_core::risk::RiskFactor;
use steward_core::usage::{
    DailyUse, MAX_SOURCES_PER_KIND, OVERFLOW_VALUE, ScopeUse, SourceKind, SourceUse,
};
use steward_core::{Credential, to_micros};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::dialect::{Arg, Conn, Dialect, SqlBuilder, Stmt, credential_columns};
use crate::ops::{check_text, db_error};
use crate::rows::{Cols, to_json};
use crate::{Mutation, Page, StoreError};

/// Usage observed since the last flush, to be added to what is stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageBatch {
    pub scopes: Vec<UsageDelta>,
    pub sources: Vec<SourceDelta>,
}

/// Tokens of one identity carrying one (scope, audience) pair on one day. `scope` is empty for
/// tokens without a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub identity_id: Uuid,
    pub scope: String,
    pub audience: String,
    pub day: i64,
    pub uses: u64,
    pub first_used: OffsetDateTime,
    pub last_used: OffsetDateTime,
}

/// Uses of one credential from one source value (nil credential: certificate authentication).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDelta {
    pub identity_id: Uuid,
    pub credential_id: Uuid,
    pub kind: SourceKind,
    pub value: String,
    pub uses: u64,
    pub first_seen: OffsetDateTime,
    pub last_seen: OffsetDateTime,
}

impl UsageBatch {
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty() && self.sources.is_empty()
    }

    pub fn len(&self) -> usize {
        self.scopes.len() + self.sources.len()
    }

    /// Merges rows with the same key (a statement may not touch one row twice), in key order.
    pub fn normalized(&self) -> Self {
        let mut scopes: BTreeMap<(Uuid, &str, &str, i64), UsageDelta> = BTreeMap::new();
        for d in &self.scopes {
            scopes
                .entry((d.identity_id, &d.scope, &d.audience, d.day))
                .and_modify(|e| {
                    e.uses += d.uses;
                    e.first_used = e.first_used.min(d.first_used);
                    e.last_used = e.last_used.max(d.last_used);
                })
                .or_insert_with(|| d.clone());
        }
        let mut sources: BTreeMap<(Uuid, Uuid, SourceKind, &str), SourceDelta> = BTreeMap::new();
        for d in &self.sources {
            sources
                .entry((d.identity_id, d.credential_id, d.kind, &d.value))
                .and_modify(|e| {
                    e.uses += d.uses;
                    e.first_seen = e.first_seen.min(d.first_seen);
                    e.last_seen = e.last_seen.max(d.last_seen);
                })
                .or_insert_with(|| d.clone());
        }
        Self {
            scopes: scopes.into_values().collect(),
            sources: sources.into_values().collect(),
        }
    }
}

/// The stored risk score of an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskRecord {
    pub identity_id: Uuid,
    pub score: u8,
    pub factors: Vec<RiskFactor>,
    pub computed_at: OffsetDateTime,
}

/// Risk scores, highest first (then by identity id), cursor-paginated.
#[derive(Debug, Clone, Default)]
pub struct RiskQuery {
    pub min_score: u8,
    /// Cursor: the (score, identity id) of the last item of the previous page.
    pub after: Option<(u8, Uuid)>,
    /// Page size: 0 means 100, at most 1000.
    pub limit: u32,
}

/// An inclusive range of identity ids (ids are UUIDv7: creation order). The findings job
/// reads everything about one page of identities with one query per table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub first: Uuid,
    pub last: Uuid,
}

struct UsageStatements {
    /// Upserts every daily row of a batch from one JSON array (see [`upsert_rows`]).
    daily: &'static str,
    /// Upserts every all-time summary row of a batch from one JSON array.
    summary: &'static str,
    /// Adds to every existing source row of a batch from one JSON array; returns the keys it
    /// updated, so that only new sources take the row-by-row path.
    sources_update: &'static str,
    source_insert_bounded: &'static str,
    source_overflow: &'static str,
    put_risk: &'static str,
    purge_daily: &'static str,
    purge_sources: &'static str,
    count_purgeable: &'static str,
}

// `WHERE true` keeps SQLite from reading `ON CONFLICT` as a join constraint of the SELECT.
static SQLITE: UsageStatements = UsageStatements {
    daily: "INSERT INTO usage_daily (identity_id, scope, audience, day, uses, last_used) \
            SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 \
            FROM json_each(?) WHERE true \
            ON CONFLICT (identity_id, scope, audience, day) DO UPDATE SET \
            uses = usage_daily.uses + excluded.uses, \
            last_used = MAX(usage_daily.last_used, excluded.last_used)",
    summary: "INSERT INTO usage_summary (identity_id, scope, audience, uses, first_used, last_used) \
              SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 \
              FROM json_each(?) WHERE true \
              ON CONFLICT (identity_id, scope, audience) DO UPDATE SET \
              uses = usage_summary.uses + excluded.uses, \
              first_used = MIN(usage_summary.first_used, excluded.first_used), \
              last_used = MAX(usage_summary.last_used, excluded.last_used)",
    sources_update: "UPDATE credential_sources SET uses = credential_sources.uses + u.uses, \
                     first_seen = MIN(credential_sources.first_seen, u.first_seen), \
                     last_seen = MAX(credential_sources.last_seen, u.last_seen) \
                     FROM (SELECT value ->> 0 AS identity_id, value ->> 1 AS credential_id, \
                     value ->> 2 AS kind, value ->> 3 AS value, value ->> 4 AS uses, \
                     value ->> 5 AS first_seen, value ->> 6 AS last_seen FROM json_each(?)) AS u \
                     WHERE credential_sources.identity_id = u.identity_id \
                     AND credential_sources.credential_id = u.credential_id \
                     AND credential_sources.kind = u.kind AND credential_sources.value = u.value \
                     RETURNING credential_sources.identity_id, credential_sources.credential_id, \
                     credential_sources.kind, credential_sources.value",
    source_insert_bounded: "INSERT INTO credential_sources \
                            (identity_id, credential_id, kind, value, uses, first_seen, last_seen) \
                            SELECT ?, ?, ?, ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM credential_sources \
                            WHERE identity_id = ? AND credential_id = ? AND kind = ? AND value <> '') < ? \
                            ON CONFLICT (identity_id, credential_id, kind, value) DO UPDATE SET \
                            uses = credential_sources.uses + excluded.uses, \
                            first_seen = MIN(credential_sources.first_seen, excluded.first_seen), \
                            last_seen = MAX(credential_sources.last_seen, excluded.last_seen)",
    source_overflow: "INSERT INTO credential_sources \
                      (identity_id, credential_id, kind, value, uses, first_seen, last_seen) \
                      VALUES (?, ?, ?, '', ?, ?, ?) \
                      ON CONFLICT (identity_id, credential_id, kind, value) DO UPDATE SET \
                      uses = credential_sources.uses + excluded.uses, \
                      first_seen = MIN(credential_sources.first_seen, excluded.first_seen), \
                      last_seen = MAX(credential_sources.last_seen, excluded.last_seen)",
    put_risk: "INSERT INTO identity_risk (identity_id, score, factors, computed_at) VALUES (?, ?, ?, ?) \
               ON CONFLICT (identity_id) DO UPDATE SET score = excluded.score, \
               factors = excluded.factors, computed_at = excluded.computed_at",
    purge_daily: "DELETE FROM usage_daily WHERE (identity_id, scope, audience, day) IN \
                  (SELECT identity_id, scope, audience, day FROM usage_daily WHERE day < ? LIMIT ?)",
    purge_sources: "DELETE FROM credential_sources WHERE (identity_id, credential_id, kind, value) IN \
                    (SELECT identity_id, credential_id, kind, value FROM credential_sources \
                    WHERE last_seen < ? LIMIT ?)",
    count_purgeable: "SELECT (SELECT COUNT(*) FROM usage_daily WHERE day < ?) \
                      + (SELECT COUNT(*) FROM credential_sources WHERE last_seen < ?) AS n",
};

static POSTGRES: UsageStatements = UsageStatements {
    daily: "INSERT INTO usage_daily (identity_id, scope, audience, day, uses, last_used) \
            SELECT (r ->> 0)::uuid, r ->> 1, r ->> 2, (r ->> 3)::bigint, (r ->> 4)::bigint, \
            (r ->> 5)::bigint FROM json_array_elements($1::json) AS r \
            ON CONFLICT (identity_id, scope, audience, day) DO UPDATE SET \
            uses = usage_daily.uses + excluded.uses, \
            last_used = GREATEST(usage_daily.last_used, excluded.last_used)",
    summary: "INSERT INTO usage_summary (identity_id, scope, audience, uses, first_used, last_used) \
              SELECT (r ->> 0)::uuid, r ->> 1, r ->> 2, (r ->> 3)::bigint, (r ->> 4)::bigint, \
              (r ->> 5)::bigint FROM json_array_elements($1::json) AS r \
              ON CONFLICT (identity_id, scope, audience) DO UPDATE SET \
              uses = usage_summary.uses + excluded.uses, \
              first_used = LEAST(usage_summary.first_used, excluded.first_used), \
              last_used = GREATEST(usage_summary.last_used, excluded.last_used)",
    sources_update: "UPDATE credential_sources AS c SET uses = c.uses + u.uses, \
                     first_seen = LEAST(c.first_seen, u.first_seen), \
                     last_seen = GREATEST(c.last_seen, u.last_seen) \
                     FROM (SELECT (r ->> 0)::uuid AS identity_id, (r ->> 1)::uuid AS credential_id, \
                     r ->> 2 AS kind, r ->> 3 AS value, (r ->> 4)::bigint AS uses, \
                     (r ->> 5)::bigint AS first_seen, (r ->> 6)::bigint AS last_seen \
                     FROM json_array_elements($1::json) AS r) AS u \
                     WHERE c.identity_id = u.identity_id AND c.credential_id = u.credential_id \
                     AND c.kind = u.kind AND c.value = u.value \
                     RETURNING c.identity_id, c.credential_id, c.kind, c.value",
    source_insert_bounded: "INSERT INTO credential_sources \
                            (identity_id, credential_id, kind, value, uses, first_seen, last_seen) \
                            SELECT $1, $2, $3, $4, $5, $6, $7 WHERE (SELECT COUNT(*) FROM credential_sources \
                            WHERE identity_id = $8 AND credential_id = $9 AND kind = $10 AND value <> '') < $11 \
                            ON CONFLICT (identity_id, credential_id, kind, value) DO UPDATE SET \
                            uses = credential_sources.uses + excluded.uses, \
                            first_seen = LEAST(credential_sources.first_seen, excluded.first_seen), \
                            last_seen = GREATEST(credential_sources.last_seen, excluded.last_seen)",
    source_overflow: "INSERT INTO credential_sources \
                      (identity_id, credential_id, kind, value, uses, first_seen, last_seen) \
                      VALUES ($1, $2, $3, '', $4, $5, $6) \
                      ON CONFLICT (identity_id, credential_id, kind, value) DO UPDATE SET \
                      uses = credential_sources.uses + excluded.uses, \
                      first_seen = LEAST(credential_sources.first_seen, excluded.first_seen), \
                      last_seen = GREATEST(credential_sources.last_seen, excluded.last_seen)",
    put_risk: "INSERT INTO identity_risk (identity_id, score, factors, computed_at) VALUES ($1, $2, $3, $4) \
               ON CONFLICT (identity_id) DO UPDATE SET score = excluded.score, \
               factors = excluded.factors, computed_at = excluded.computed_at",
    purge_daily: "DELETE FROM usage_daily WHERE (identity_id, scope, audience, day) IN \
                  (SELECT identity_id, scope, audience, day FROM usage_daily WHERE day < $1 LIMIT $2)",
    purge_sources: "DELETE FROM credential_sources WHERE (identity_id, credential_id, kind, value) IN \
                    (SELECT identity_id, credential_id, kind, value FROM credential_sources \
                    WHERE last_seen < $1 LIMIT $2)",
    count_purgeable: "SELECT (SELECT COUNT(*) FROM usage_daily WHERE day < $1) \
                      + (SELECT COUNT(*) FROM credential_sources WHERE last_seen < $2) AS n",
};

fn sql<D: Dialect>() -> &'static UsageStatements {
    if D::NAME == "postgres" {
        &POSTGRES
    } else {
        &SQLITE
    }
}

fn count(v: u64, what: &str) -> Result<i64, StoreError> {
    crate::ops::to_i64(v, what)
}

/// Risk scores per multi-row upsert.
pub(crate) const RISK_ROWS: usize = 512;

/// Stores consecutive risk scores of one change (distinct identities) with one upsert.
pub(crate) async fn put_risks<D: Dialect>(
    conn: &mut Conn<D>,
    risks: &[&RiskRecord],
) -> Result<(), StoreError> {
    if risks.is_empty() {
        return Ok(());
    }
    let rows = risks
        .iter()
        .map(|r| {
            Ok(Stmt::new("")
                .uuid(r.identity_id)
                .int(i64::from(r.score.min(100)))
                .owned_text(to_json("risk factors", &r.factors)?)
                .time(r.computed_at))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut b = SqlBuilder::<D>::new(
        "INSERT INTO identity_risk (identity_id, score, factors, computed_at) VALUES ",
    );
    b.values_rows(rows).sql(
        " ON CONFLICT (identity_id) DO UPDATE SET score = excluded.score, \
         factors = excluded.factors, computed_at = excluded.computed_at",
    );
    D::exec(conn, b.build()).await.map_err(db_error::<D>)?;
    Ok(())
}

/// Applies a usage or risk mutation inside the writer's transaction.
pub(crate) async fn apply<D: Dialect>(conn: &mut Conn<D>, m: &Mutation) -> Result<(), StoreError> {
    match m {
        Mutation::RecordUsage(batch) => record::<D>(conn, &batch.normalized()).await,
        Mutation::PutIdentityRisk(r) => {
            let stmt = Stmt::new(sql::<D>().put_risk)
                .uuid(r.identity_id)
                .int(i64::from(r.score.min(100)))
                .owned_text(to_json("risk factors", &r.factors)?)
                .time(r.computed_at);
            D::exec(conn, stmt).await.map_err(db_error::<D>)?;
            Ok(())
        }
        Mutation::PurgeUsage {
            before_day,
            sources_before,
            limit,
        } => {
            let s = sql::<D>();
            let limit = i64::from(*limit);
            D::exec(conn, Stmt::new(s.purge_daily).int(*before_day).int(limit))
                .await
                .map_err(db_error::<D>)?;
            D::exec(
                conn,
                Stmt::new(s.purge_sources).time(*sources_before).int(limit),
            )
            .await
            .map_err(db_error::<D>)?;
            Ok(())
        }
        _ => Err(StoreError::Backend("not a usage mutation".into())),
    }
}

/// Upserts `rows` with one statement, whatever their number, as the writer does with a batch's
/// audit records (`ops::insert_audit`): the rows travel as one JSON array of
/// `[identity, scope, audience, day or uses, uses or first use, last use]` (times in
/// microseconds) bound to a single parameter, which the database unpacks. Rows must have
/// distinct keys (one statement may not upsert a row twice): see [`UsageBatch::normalized`].
async fn upsert_rows<D: Dialect>(
    conn: &mut Conn<D>,
    sql_text: &'static str,
    rows: &[UsageDelta],
    daily: bool,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut out: Vec<(Uuid, &str, &str, i64, i64, i64)> = Vec::with_capacity(rows.len());
    for d in rows {
        let uses = count(d.uses, "usage count")?;
        out.push(if daily {
            (
                d.identity_id,
                &d.scope,
                &d.audience,
                d.day,
                uses,
                to_micros(d.last_used),
            )
        } else {
            (
                d.identity_id,
                &d.scope,
                &d.audience,
                uses,
                to_micros(d.first_used),
                to_micros(d.last_used),
            )
        });
    }
    let stmt = Stmt::new(sql_text).owned_text(to_json("usage rows", &out)?);
    D::exec(conn, stmt).await.map_err(db_error::<D>)?;
    Ok(())
}

async fn record<D: Dialect>(conn: &mut Conn<D>, b: &UsageBatch) -> Result<(), StoreError> {
    let s = sql::<D>();
    upsert_rows::<D>(conn, s.daily, &b.scopes, true).await?;
    // The all-time summary: one row per (identity, scope, audience) over every day of the batch.
    let mut summary: BTreeMap<(Uuid, &str, &str), UsageDelta> = BTreeMap::new();
    for d in &b.scopes {
        summary
            .entry((d.identity_id, &d.scope, &d.audience))
            .and_modify(|e| {
                e.uses += d.uses;
                e.first_used = e.first_used.min(d.first_used);
                e.last_used = e.last_used.max(d.last_used);
            })
            .or_insert_with(|| d.clone());
    }
    let summary: Vec<UsageDelta> = summary.into_values().collect();
    upsert_rows::<D>(conn, s.summary, &summary, false).await?;
    let known = update_sources::<D>(conn, &b.sources).await?;
    for d in &b.sources {
        let key = (
            d.identity_id,
            d.credential_id,
            d.kind.as_str().to_owned(),
            d.value.clone(),
        );
        if !known.contains(&key) {
            record_new_source::<D>(conn, d).await?;
        }
    }
    Ok(())
}

/// Adds `sources` (distinct keys: see [`UsageBatch::normalized`]) to the rows that already exist,
/// in one statement; returns the keys it found. In steady state every source is known, so a
/// flush costs one statement here however many credentials were used.
async fn update_sources<D: Dialect>(
    conn: &mut Conn<D>,
    sources: &[SourceDelta],
) -> Result<HashSet<SourceKey>, StoreError> {
    if sources.is_empty() {
        return Ok(HashSet::new());
    }
    let mut rows: Vec<(Uuid, Uuid, &str, &str, i64, i64, i64)> = Vec::with_capacity(sources.len());
    for d in sources {
        rows.push((
            d.identity_id,
            d.credential_id,
            d.kind.as_str(),
            &d.value,
            count(d.uses, "source count")?,
            to_micros(d.first_seen),
            to_micros(d.last_seen),
        ));
    }
    let stmt = Stmt::new(sql::<D>().sources_update).owned_text(to_json("source rows", &rows)?);
    let found = D::fetch_all(conn, stmt).await.map_err(db_error::<D>)?;
    let mut known = HashSet::with_capacity(found.len());
    for row in &found {
        let c = Cols::<D>::new(row, "credential_sources");
        known.insert((
            c.uuid("identity_id")?,
            c.uuid("credential_id")?,
            c.text("kind")?,
            c.text("value")?,
        ));
    }
    Ok(known)
}

/// A stored source row's key: identity, credential, kind, value.
type SourceKey = (Uuid, Uuid, String, String);

/// Inserts a source row not stored yet while fewer than [`MAX_SOURCES_PER_KIND`] values of its
/// kind are kept for the credential; else counts it in the overflow row.
async fn record_new_source<D: Dialect>(
    conn: &mut Conn<D>,
    d: &SourceDelta,
) -> Result<(), StoreError> {
    let s = sql::<D>();
    let uses = count(d.uses, "source count")?;
    let kind = d.kind.as_str();
    if d.value != OVERFLOW_VALUE {
        let inserted = D::exec(
            conn,
            Stmt::new(s.source_insert_bounded)
                .uuid(d.identity_id)
                .uuid(d.credential_id)
                .text(kind)
                .text(&d.value)
                .int(uses)
                .time(d.first_seen)
                .time(d.last_seen)
                .uuid(d.identity_id)
                .uuid(d.credential_id)
                .text(kind)
                .int(i64::from(MAX_SOURCES_PER_KIND)),
        )
        .await
        .map_err(db_error::<D>)?;
        if inserted > 0 {
            return Ok(());
        }
    }
    D::exec(
        conn,
        Stmt::new(s.source_overflow)
            .uuid(d.identity_id)
            .uuid(d.credential_id)
            .text(kind)
            .int(uses)
            .time(d.first_seen)
            .time(d.last_seen),
    )
    .await
    .map_err(db_error::<D>)?;
    Ok(())
}

/// Text checks for the usage mutations.
pub(crate) fn check_text_of(m: &Mutation) -> Result<(), StoreError> {
    if let Mutation::RecordUsage(b) = m {
        for d in &b.scopes {
            check_text("usage scope", &d.scope)?;
            check_text("usage audience", &d.audience)?;
        }
        for d in &b.sources {
            check_text("usage source", &d.value)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- reads

fn scope_use<D: Dialect>(row: &crate::dialect::Row<D>) -> Result<ScopeUse, StoreError> {
    let c = Cols::<D>::new(row, "usage_summary");
    Ok(ScopeUse {
        identity_id: c.uuid("identity_id")?,
        scope: c.text("scope")?,
        audience: c.text("audience")?,
        uses: c.unsigned("uses")?,
        first_used: c.time("first_used")?,
        last_used: c.time("last_used")?,
    })
}

fn source_use<D: Dialect>(row: &crate::dialect::Row<D>) -> Result<SourceUse, StoreError> {
    let c = Cols::<D>::new(row, "credential_sources");
    Ok(SourceUse {
        identity_id: c.uuid("identity_id")?,
        credential_id: c.uuid("credential_id")?,
        kind: c.parsed("kind", SourceKind::parse)?,
        value: c.text("value")?,
        uses: c.unsigned("uses")?,
        first_seen: c.time("first_seen")?,
        last_seen: c.time("last_seen")?,
    })
}

fn risk<D: Dialect>(row: &crate::dialect::Row<D>) -> Result<RiskRecord, StoreError> {
    let c = Cols::<D>::new(row, "identity_risk");
    Ok(RiskRecord {
        identity_id: c.uuid("identity_id")?,
        score: u8::try_from(c.int("score")?)
            .ok()
            .filter(|s| *s <= 100)
            .ok_or_else(|| StoreError::Corrupt("identity_risk.score: out of range".into()))?,
        factors: c.json("factors")?,
        computed_at: c.time("computed_at")?,
    })
}

fn range_query<'a, D: Dialect>(head: &'static str, r: IdRange, tail: &'static str) -> Stmt<'a> {
    let mut b = SqlBuilder::<D>::new(head);
    b.sql(" WHERE identity_id >= ")
        .arg(Arg::uuid(r.first))
        .sql(" AND identity_id <= ")
        .arg(Arg::uuid(r.last))
        .sql(tail);
    b.build()
}

async fn all<D: Dialect, T>(
    conn: &mut Conn<D>,
    stmt: Stmt<'_>,
    map: impl Fn(&crate::dialect::Row<D>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let rows = D::fetch_all(conn, stmt).await.map_err(db_error::<D>)?;
    rows.iter().map(map).collect()
}

pub(crate) async fn days_of<D: Dialect>(
    conn: &mut Conn<D>,
    identity: Uuid,
    since_day: i64,
) -> Result<Vec<DailyUse>, StoreError> {
    let mut b = SqlBuilder::<D>::new(
        "SELECT identity_id, scope, audience, day, uses, last_used FROM usage_daily WHERE identity_id = ",
    );
    b.arg(Arg::uuid(identity))
        .sql(" AND day >= ")
        .arg(Arg::int(since_day))
        .sql(" ORDER BY day, scope, audience");
    all::<D, _>(conn, b.build(), |row| {
        let c = Cols::<D>::new(row, "usage_daily");
        Ok(DailyUse {
            identity_id: c.uuid("identity_id")?,
            day: c.int("day")?,
            scope: c.text("scope")?,
            audience: c.text("audience")?,
            uses: c.unsigned("uses")?,
            last_used: c.time("last_used")?,
        })
    })
    .await
}

pub(crate) async fn summaries_between<D: Dialect>(
    conn: &mut Conn<D>,
    r: IdRange,
) -> Result<Vec<ScopeUse>, StoreError> {
    let stmt = range_query::<D>(
        "SELECT identity_id, scope, audience, uses, first_used, last_used FROM usage_summary",
        r,
        " ORDER BY identity_id, scope, audience",
    );
    all::<D, _>(conn, stmt, scope_use::<D>).await
}

pub(crate) async fn summaries_of<D: Dialect>(
    conn: &mut Conn<D>,
    identity: Uuid,
) -> Result<Vec<ScopeUse>, StoreError> {
    summaries_between::<D>(
        conn,
        IdRange {
            first: identity,
            last: identity,
        },
    )
    .await
}

pub(crate) async fn sources_between<D: Dialect>(
    conn: &mut Conn<D>,
    r: IdRange,
) -> Result<Vec<SourceUse>, StoreError> {
    let stmt = range_query::<D>(
        "SELECT identity_id, credential_id, kind, value, uses, first_seen, last_seen FROM credential_sources",
        r,
        " ORDER BY identity_id, credential_id, kind, value",
    );
    all::<D, _>(conn, stmt, source_use::<D>).await
}

pub(crate) async fn credentials_between<D: Dialect>(
    conn: &mut Conn<D>,
    r: IdRange,
) -> Result<Vec<Credential>, StoreError> {
    let stmt = range_query::<D>(
        concat!("SELECT ", credential_columns!(), " FROM credentials"),
        r,
        " ORDER BY identity_id, created_at, id",
    );
    all::<D, _>(conn, stmt, crate::rows::credential::<D>).await
}

pub(crate) async fn risks_between<D: Dialect>(
    conn: &mut Conn<D>,
    r: IdRange,
) -> Result<Vec<RiskRecord>, StoreError> {
    let stmt = range_query::<D>(
        "SELECT identity_id, score, factors, computed_at FROM identity_risk",
        r,
        " ORDER BY identity_id",
    );
    all::<D, _>(conn, stmt, risk::<D>).await
}

pub(crate) async fn list_risks<D: Dialect>(
    conn: &mut Conn<D>,
    q: &RiskQuery,
) -> Result<Page<RiskRecord>, StoreError> {
    let size = match q.limit {
        0 => 100,
        n => n.min(1000),
    };
    let mut b = SqlBuilder::<D>::new(
        "SELECT identity_id, score, factors, computed_at FROM identity_risk WHERE score >= ",
    );
    b.arg(Arg::int(i64::from(q.min_score)));
    if let Some((score, id)) = q.after {
        b.sql(" AND (score < ")
            .arg(Arg::int(i64::from(score)))
            .sql(" OR (score = ")
            .arg(Arg::int(i64::from(score)))
            .sql(" AND identity_id > ")
            .arg(Arg::uuid(id))
            .sql("))");
    }
    b.sql(" ORDER BY score DESC, identity_id LIMIT ")
        .arg(Arg::int(i64::from(size) + 1));
    let mut items = all::<D, _>(conn, b.build(), risk::<D>).await?;
    let next = if items.len() > size as usize {
        items.truncate(size as usize);
        items
            .last()
            .map(|r| format!("{}:{}", r.score, r.identity_id))
    } else {
        None
    };
    Ok(Page { items, next })
}

/// Rows a purge with these bounds would remove (daily usage and sources together).
pub(crate) async fn count_purgeable<D: Dialect>(
    conn: &mut Conn<D>,
    before_day: i64,
    sources_before: OffsetDateTime,
) -> Result<u64, StoreError> {
    let stmt = Stmt::new(sql::<D>().count_purgeable)
        .int(before_day)
        .int(to_micros(sources_before));
    let row = D::fetch_optional(conn, stmt).await.map_err(db_error::<D>)?;
    match row {
        Some(r) => Cols::<D>::new(&r, "usage_daily").unsigned("n"),
        None => Ok(0),
    }
}
