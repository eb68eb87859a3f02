//! Cheap server-side counters for the `http` bench: group-commit batches (from the store writer's
//! debug event), server warnings, and PostgreSQL's per-database transaction count.

use std::fmt::{Debug, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

static BATCHES: AtomicU64 = AtomicU64::new(0);
static BATCHED_JOBS: AtomicU64 = AtomicU64::new(0);
static BATCH_MICROS: AtomicU64 = AtomicU64::new(0);
static WARNINGS: AtomicU64 = AtomicU64::new(0);
/// Warnings and errors printed to stderr before the rest are only counted.
const MAX_PRINTED: u64 = 20;

/// Group-commit counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Commits {
    /// Write transactions run by the store's writer task.
    pub batches: u64,
    /// Queued writes (changes, claims, purges) those transactions carried.
    pub jobs: u64,
    /// Time the writer spent running those transactions (BEGIN to COMMIT), in microseconds.
    pub micros: u64,
}

impl Commits {
    pub fn now() -> Self {
        Self {
            batches: BATCHES.load(Ordering::Relaxed),
            jobs: BATCHED_JOBS.load(Ordering::Relaxed),
            micros: BATCH_MICROS.load(Ordering::Relaxed),
        }
    }

    pub fn since(self, earlier: Commits) -> Commits {
        Commits {
            batches: self.batches.saturating_sub(earlier.batches),
            jobs: self.jobs.saturating_sub(earlier.jobs),
            micros: self.micros.saturating_sub(earlier.micros),
        }
    }
}

/// Server warnings and errors seen so far.
pub fn warnings() -> u64 {
    WARNINGS.load(Ordering::Relaxed)
}

/// A minimal subscriber: counts the store writer's `group commit` debug events and prints
/// (a bounded number of) warnings and errors. Everything else is disabled, so it costs nothing.
struct Probe;

#[derive(Default)]
struct Fields {
    group_commit: bool,
    batch: Option<u64>,
    elapsed_us: Option<u64>,
    text: String,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "batch" => self.batch = Some(value),
            "elapsed_us" => self.elapsed_us = Some(value),
            _ => {}
        }
        let _ = write!(self.text, " {}={value}", field.name());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        match field.name() {
            "batch" => self.batch = u64::try_from(value).ok(),
            "elapsed_us" => self.elapsed_us = u64::try_from(value).ok(),
            _ => {}
        }
        let _ = write!(self.text, " {}={value}", field.name());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.text, " {}={value}", field.name());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if field.name() == "message" {
            let msg = format!("{value:?}");
            self.group_commit = msg == "group commit";
            let _ = write!(self.text, " {msg}");
        } else {
            let _ = write!(self.text, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Probe {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        *meta.level() <= Level::WARN
            || (meta.is_event()
                && meta.target().starts_with("steward_store")
                && *meta.level() <= Level::DEBUG)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::DEBUG)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut f = Fields::default();
        event.record(&mut f);
        if *meta.level() <= Level::WARN {
            let n = WARNINGS.fetch_add(1, Ordering::Relaxed);
            if n < MAX_PRINTED {
                eprintln!("[server {}] {}:{}", meta.level(), meta.target(), f.text);
            }
        } else if f.group_commit {
            BATCHES.fetch_add(1, Ordering::Relaxed);
            BATCHED_JOBS.fetch_add(f.batch.unwrap_or(0), Ordering::Relaxed);
            BATCH_MICROS.fetch_add(f.elapsed_us.unwrap_or(0), Ordering::Relaxed);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Installs the probe as the global subscriber. Returns false when another one was already set.
pub fn install() -> bool {
    tracing::subscriber::set_global_default(Probe).is_ok()
}

/// Reads PostgreSQL's cumulative transaction count (commits + rollbacks) of one database.
/// Statistics are flushed by each backend at most once a second, so a delta taken while load
/// runs is an estimate over a window shifted by up to a second — fine for a steady load.
pub struct PgXacts {
    conn: sqlx::PgConnection,
    datname: String,
}

impl PgXacts {
    pub fn new(conn: sqlx::PgConnection, datname: String) -> Self {
        Self { conn, datname }
    }

    pub async fn read(&mut self) -> Option<i64> {
        sqlx::query_scalar::<_, i64>(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&self.datname)
        .fetch_optional(&mut self.conn)
        .await
        .ok()
        .flatten()
    }

    pub fn into_conn(self) -> sqlx::PgConnection {
        self.conn
    }
}

/// CPU time of this process and of the whole machine, in clock ticks (Linux `/proc`; zeros elsewhere).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    process: u64,
    busy: u64,
    total: u64,
}

impl Cpu {
    pub fn now() -> Self {
        let process = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
                let rest = s.rsplit_once(") ")?.1.to_owned();
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .unwrap_or(0);
        let (busy, total) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let line = s.lines().next()?.strip_prefix("cpu ")?.to_owned();
                let v: Vec<u64> = line
                    .split_whitespace()
                    .take(8)
                    .filter_map(|x| x.parse().ok())
                    .collect();
                let total: u64 = v.iter().sum();
                // idle and iowait are the 4th and 5th columns.
                let idle = v.get(3)? + v.get(4)?;
                Some((total - idle, total))
            })
            .unwrap_or((0, 0));
        Self {
            process,
            busy,
            total,
        }
    }

    /// (this process, the whole machine) busy over the interval, as percentages of all cores.
    pub fn shares_since(self, earlier: Cpu) -> Option<(f64, f64)> {
        let total = self.total.checked_sub(earlier.total).filter(|t| *t > 0)? as f64;
        let process = self.process.checked_sub(earlier.process)? as f64;
        let busy = self.busy.checked_sub(earlier.busy)? as f64;
        Some((100.0 * process / total, 100.0 * busy / total))
    }
}
