//! Usage recording on the token path: an in-memory, sharded aggregate of tokens per identity,
//! day, scope set and audiences, and of each credential's sources, flushed in batches.
//!
//! Recording a token costs one hash, one shard lock and one map update; nothing is allocated
//! once a (identity, day, scopes, audiences) combination or a source has been seen since the
//! last flush. The flush (every 5 s, and at shutdown) expands the aggregate into per-scope ×
//! per-audience rows, maps source addresses to environments, and writes them in bounded
//! bookkeeping commits (no audit event, like credential last-use times).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use steward_core::netaddr::Cidr;
use steward_core::usage::{
    MAX_SOURCES_PER_KIND, OVERFLOW_VALUE, SourceKind, clean_user_agent, day_of,
};
use steward_store::{Change, Mutation, SourceDelta, UsageBatch, UsageDelta};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::service::Ctx;
use crate::service::tokens::AuthenticatedClient;
use crate::state::{AppState, Inner};

const SHARDS: usize = 16;
/// Rows per flush commit, so that one flush never holds the writer for long.
const ROWS_PER_COMMIT: usize = 1_000;
/// Failed flushes kept for a retry; beyond this, usage is dropped (and counted).
const MAX_PENDING_BATCHES: usize = 64;

/// Usage settings (`[usage]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageConfig {
    /// Networks of each environment (`prod = ["10.1.0.0/16"]`): a token request from one of
    /// them records that environment as the environment of use. Empty: not recorded.
    pub network_environments: std::collections::BTreeMap<String, Vec<String>>,
    /// Memory the in-memory aggregate may use between flushes, in KiB (approximate: string
    /// bytes plus a fixed cost per entry); beyond it, new combinations are dropped and counted
    /// in `steward_usage_dropped_total`, and new source values go to the overflow count.
    pub max_memory_kib: usize,
    /// Daily usage rows older than this many days are purged by the findings job (the all-time
    /// summary is kept).
    pub retention_days: u32,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            network_environments: Default::default(),
            max_memory_kib: 64 * 1024,
            retention_days: 400,
        }
    }
}

impl UsageConfig {
    pub fn validate(&self, environments: &[String]) -> Result<(), String> {
        for (env, nets) in &self.network_environments {
            if !environments.contains(env) {
                return Err(format!(
                    "usage.network_environments: {env:?} is not a configured environment"
                ));
            }
            for n in nets {
                Cidr::parse(n).map_err(|e| format!("usage.network_environments.{env}: {e}"))?;
            }
        }
        if self.retention_days < 30 {
            return Err("usage.retention_days must be at least 30".into());
        }
        Ok(())
    }
}

/// Tokens of one identity on one day with one scope string and audience list.
struct GrantEntry {
    identity: Uuid,
    day: i64,
    /// The token's `scope` claim (space-separated; empty for none).
    scope: Box<str>,
    audiences: Box<[Box<str>]>,
    uses: u64,
    first_us: i64,
    last_us: i64,
}

#[derive(Default)]
struct Seen {
    values: Vec<(Box<str>, u64, i64, i64)>,
    overflow: Option<(u64, i64, i64)>,
}

/// Approximate bytes of one aggregate entry besides its strings.
const ENTRY_COST: usize = 96;

impl Seen {
    /// Counts a use of `v`; a new value is kept only when `room`. Returns the bytes added.
    fn add(&mut self, v: &str, t: i64, room: bool) -> usize {
        if let Some(e) = self.values.iter_mut().find(|e| &*e.0 == v) {
            e.1 += 1;
            e.3 = e.3.max(t);
            return 0;
        }
        if room && self.values.len() < MAX_SOURCES_PER_KIND as usize {
            self.values.push((v.into(), 1, t, t));
            return v.len() + 32;
        } else {
            let o = self.overflow.get_or_insert((0, t, t));
            o.0 += 1;
            o.1 = o.1.min(t);
            o.2 = o.2.max(t);
        }
        0
    }
}

#[derive(Default)]
struct SourceEntry {
    addresses: Seen,
    agents: Seen,
}

#[derive(Default)]
struct Shard {
    grants: HashMap<u64, GrantEntry>,
    sources: HashMap<(Uuid, Uuid), SourceEntry>,
    /// Approximate memory held, in bytes.
    bytes: usize,
}

/// The token path's usage aggregate (one per process).
pub struct UsageRecorder {
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
    max_bytes_per_shard: usize,
    environments: Vec<(Cidr, String)>,
    pending: Mutex<Vec<UsageBatch>>,
    dropped: AtomicU64,
}

fn micros(t: OffsetDateTime) -> i64 {
    steward_core::to_micros(t)
}

impl UsageRecorder {
    /// Builds the recorder; invalid networks were refused by [`UsageConfig::validate`].
    pub fn new(config: &UsageConfig) -> Self {
        let mut environments: Vec<(Cidr, String)> = config
            .network_environments
            .iter()
            .flat_map(|(env, nets)| {
                nets.iter()
                    .filter_map(|n| Cidr::parse(n).ok())
                    .map(move |c| (c, env.clone()))
            })
            .collect();
        // Most specific network first.
        environments.sort_by_key(|e| std::cmp::Reverse(e.0.prefix()));
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            max_bytes_per_shard: (config.max_memory_kib.saturating_mul(1024) / SHARDS).max(4096),
            environments,
            pending: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
        }
    }

    fn shard(&self, identity: Uuid) -> &Mutex<Shard> {
        let i = (self.hasher.hash_one(identity) as usize) % SHARDS;
        &self.shards[i]
    }

    fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("steward_usage_dropped_total").increment(1);
    }

    /// Records one issued token. `credential` is nil for certificate authentication.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        identity: Uuid,
        credential: Uuid,
        scope: &str,
        audiences: &[String],
        source: Option<&str>,
        user_agent: Option<&str>,
        now: OffsetDateTime,
    ) {
        let day = day_of(now);
        let t = micros(now);
        let key = self.hasher.hash_one((identity, day, scope, audiences));
        let mut shard = self
            .shard(identity)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let full = shard.bytes >= self.max_bytes_per_shard;
        // Open addressing over the 64-bit key space: on a (rare) collision, probe the next key.
        let mut k = key;
        let mut recorded = false;
        for _ in 0..4 {
            match shard.grants.get_mut(&k) {
                Some(e)
                    if e.identity == identity
                        && e.day == day
                        && &*e.scope == scope
                        && e.audiences.len() == audiences.len()
                        && e.audiences.iter().zip(audiences).all(|(a, b)| &**a == b) =>
                {
                    e.uses += 1;
                    e.last_us = e.last_us.max(t);
                    recorded = true;
                    break;
                }
                Some(_) => k = k.wrapping_add(1),
                None if !full => {
                    shard.bytes += ENTRY_COST
                        + scope.len()
                        + audiences.iter().map(|a| a.len() + 16).sum::<usize>();
                    shard.grants.insert(
                        k,
                        GrantEntry {
                            identity,
                            day,
                            scope: scope.into(),
                            audiences: audiences.iter().map(|a| a.as_str().into()).collect(),
                            uses: 1,
                            first_us: t,
                            last_us: t,
                        },
                    );
                    recorded = true;
                    break;
                }
                None => break,
            }
        }
        if !recorded {
            self.drop_one();
        }
        let ua = user_agent.map(str::trim).filter(|u| !u.is_empty());
        if source.is_none() && ua.is_none() {
            return;
        }
        if !shard.sources.contains_key(&(identity, credential)) {
            if full {
                self.drop_one();
                return;
            }
            shard.bytes += ENTRY_COST;
        }
        let shard = &mut *shard;
        let entry = shard.sources.entry((identity, credential)).or_default();
        let mut added = 0;
        if let Some(s) = source {
            added += entry.addresses.add(s, t, !full);
        }
        if let Some(u) = ua {
            if u.len() <= steward_core::usage::MAX_USER_AGENT_LEN
                && !u.chars().any(char::is_control)
            {
                added += entry.agents.add(u, t, !full);
            } else {
                added += entry.agents.add(&clean_user_agent(u), t, !full);
            }
        }
        shard.bytes += added;
    }

    fn environment_of(&self, addr: &str) -> Option<&str> {
        let ip: IpAddr = addr.parse().ok()?;
        self.environments
            .iter()
            .find(|(c, _)| c.contains(ip))
            .map(|(_, e)| e.as_str())
    }

    /// Takes everything recorded so far, as rows.
    pub fn take(&self) -> UsageBatch {
        let mut batch = UsageBatch::default();
        for shard in &self.shards {
            let Shard {
                grants, sources, ..
            } = std::mem::take(&mut *shard.lock().unwrap_or_else(|p| p.into_inner()));
            for g in grants.into_values() {
                let (first, last) = (
                    steward_core::from_micros(g.first_us),
                    steward_core::from_micros(g.last_us),
                );
                let scopes: Vec<&str> = if g.scope.is_empty() {
                    vec![""]
                } else {
                    g.scope.split(' ').filter(|s| !s.is_empty()).collect()
                };
                let empty: [Box<str>; 1] = ["".into()];
                let auds: &[Box<str>] = if g.audiences.is_empty() {
                    &empty
                } else {
                    &g.audiences
                };
                for s in &scopes {
                    for a in auds {
                        batch.scopes.push(UsageDelta {
                            identity_id: g.identity,
                            scope: (*s).to_owned(),
                            audience: a.to_string(),
                            day: g.day,
                            uses: g.uses,
                            first_used: first,
                            last_used: last,
                        });
                    }
                }
            }
            for ((identity, credential), e) in sources {
                let mut push = |kind: SourceKind, value: &str, n: u64, f: i64, l: i64| {
                    batch.sources.push(SourceDelta {
                        identity_id: identity,
                        credential_id: credential,
                        kind,
                        value: value.to_owned(),
                        uses: n,
                        first_seen: steward_core::from_micros(f),
                        last_seen: steward_core::from_micros(l),
                    });
                };
                for (v, n, f, l) in &e.addresses.values {
                    push(SourceKind::Address, v, *n, *f, *l);
                    if let Some(env) = self.environment_of(v) {
                        push(SourceKind::Environment, env, *n, *f, *l);
                    }
                }
                if let Some((n, f, l)) = e.addresses.overflow {
                    push(SourceKind::Address, OVERFLOW_VALUE, n, f, l);
                }
                for (v, n, f, l) in &e.agents.values {
                    push(SourceKind::UserAgent, v, *n, *f, *l);
                }
                if let Some((n, f, l)) = e.agents.overflow {
                    push(SourceKind::UserAgent, OVERFLOW_VALUE, n, f, l);
                }
            }
        }
        batch.normalized()
    }

    /// Uses dropped because the aggregate was full (since start).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Inner {
    /// Records an issued token's usage (called once per token on the token path).
    pub fn record_token_use(
        &self,
        client: &AuthenticatedClient,
        scope: &str,
        audiences: &[String],
        ctx: &Ctx,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) {
        let ua = headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let credential = crate::service::certs::credential_claim(client).unwrap_or(Uuid::nil());
        self.usage_recorder.record(
            client.identity.id,
            credential,
            scope,
            audiences,
            ctx.source.as_deref(),
            ua,
            now,
        );
    }
}

/// Writes recorded usage in bounded commits; a failed commit is kept for the next flush.
pub async fn flush(s: &AppState) {
    let r = &s.usage_recorder;
    let mut batches: Vec<UsageBatch> =
        std::mem::take(&mut *r.pending.lock().unwrap_or_else(|p| p.into_inner()));
    let fresh = r.take();
    if !fresh.is_empty() {
        batches.extend(split(fresh, ROWS_PER_COMMIT));
    }
    let mut failed = Vec::new();
    for b in batches {
        if failed.is_empty() {
            match s
                .store
                .commit(Change::new().with(Mutation::RecordUsage(b.clone())))
                .await
            {
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, rows = b.len(), "could not record usage; will retry")
                }
            }
        }
        failed.push(b);
    }
    if !failed.is_empty() {
        let mut pending = r.pending.lock().unwrap_or_else(|p| p.into_inner());
        for b in failed {
            if pending.len() < MAX_PENDING_BATCHES {
                pending.push(b);
            } else {
                metrics::counter!("steward_usage_dropped_total").increment(b.len() as u64);
            }
        }
    }
}

/// Splits a batch into batches of at most `rows` rows.
pub fn split(b: UsageBatch, rows: usize) -> Vec<UsageBatch> {
    let mut out = Vec::new();
    let mut cur = UsageBatch::default();
    for d in b.scopes {
        if cur.len() >= rows {
            out.push(std::mem::take(&mut cur));
        }
        cur.scopes.push(d);
    }
    for d in b.sources {
        if cur.len() >= rows {
            out.push(std::mem::take(&mut cur));
        }
        cur.sources.push(d);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    fn recorder() -> UsageRecorder {
        let mut c = UsageConfig::default();
        c.network_environments
            .insert("prod".into(), vec!["10.0.0.0/8".into()]);
        c.network_environments
            .insert("dev".into(), vec!["10.9.0.0/16".into()]);
        UsageRecorder::new(&c)
    }

    #[test]
    fn aggregates_and_expands() {
        let r = recorder();
        let (i, c) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let auds = vec!["https://a".to_owned(), "https://b".to_owned()];
        for n in 0..3 {
            r.record(
                i,
                c,
                "p:read p:write",
                &auds,
                Some("10.1.1.1"),
                Some("svc/1"),
                t(n),
            );
        }
        r.record(i, c, "", &auds[..1], Some("10.9.1.1"), None, t(10));
        let b = r.take();
        // 2 scopes × 2 audiences, plus the scope-less token.
        assert_eq!(b.scopes.len(), 5);
        let pr = b
            .scopes
            .iter()
            .find(|d| d.scope == "p:read" && d.audience == "https://a")
            .unwrap();
        assert_eq!((pr.uses, pr.first_used, pr.last_used), (3, t(0), t(2)));
        assert!(b.scopes.iter().any(|d| d.scope.is_empty() && d.uses == 1));
        let env = |v: &str| {
            b.sources
                .iter()
                .any(|s| s.kind == SourceKind::Environment && s.value == v)
        };
        assert!(env("prod") && env("dev"), "most specific network wins");
        assert!(
            b.sources
                .iter()
                .any(|s| s.kind == SourceKind::UserAgent && s.value == "svc/1" && s.uses == 3)
        );
        assert!(r.take().is_empty(), "take empties the aggregate");
    }

    #[test]
    fn sources_are_bounded_in_memory() {
        let r = recorder();
        let (i, c) = (Uuid::from_u128(1), Uuid::from_u128(2));
        for n in 0..20 {
            r.record(i, c, "s", &[], Some(&format!("192.0.2.{n}")), None, t(n));
        }
        let b = r.take();
        let addrs: Vec<_> = b
            .sources
            .iter()
            .filter(|s| s.kind == SourceKind::Address)
            .collect();
        assert_eq!(addrs.len(), 17);
        let o = addrs.iter().find(|s| s.value == OVERFLOW_VALUE).unwrap();
        assert_eq!(o.uses, 4);
        // No audience: one row with an empty audience.
        assert_eq!(b.scopes[0].audience, "");
    }

    #[test]
    fn full_aggregate_drops_and_counts() {
        let r = UsageRecorder::new(&UsageConfig {
            max_memory_kib: 1,
            ..Default::default()
        });
        // 4 KiB per shard minimum; fill one identity's shard.
        let i = Uuid::from_u128(1);
        for n in 0..200 {
            r.record(i, Uuid::nil(), &format!("s{n}"), &[], None, None, t(0));
        }
        assert!(r.dropped() > 0);
        assert_eq!(r.take().scopes.len() as u64 + r.dropped(), 200);
    }

    #[test]
    fn splitting_keeps_every_row() {
        let r = recorder();
        for n in 0..30u128 {
            r.record(
                Uuid::from_u128(n),
                Uuid::nil(),
                "a b",
                &[],
                Some("10.0.0.1"),
                None,
                t(0),
            );
        }
        let b = r.take();
        let total = b.len();
        let parts = split(b, 7);
        assert!(parts.iter().all(|p| p.len() <= 7));
        assert_eq!(parts.iter().map(UsageBatch::len).sum::<usize>(), total);
    }
}
