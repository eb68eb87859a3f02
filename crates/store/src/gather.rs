//! Batch gathering: how long a group-commit loop (the writer, PostgreSQL's claim batcher) waits
//! for more work before it sends a batch, so that a busy node pays fewer database round trips.
//!
//! A loop that sends whatever is queued the moment the previous batch is done carries, at a
//! steady rate `λ`, about `λ × (time one batch takes)` items per batch. With SQLite's 0.3–0.5 ms
//! commits that is ten or so tokens per transaction at 30,000 tokens/s, each transaction
//! rewriting the same WAL pages. Waiting a little longer fills batches further; like
//! PostgreSQL's `commit_delay`, the wait only happens where it pays:
//!
//! - never for a lone item: with one request in flight there is nothing to gather, so an idle or
//!   lightly used node answers as fast as before;
//! - never past [`GroupCommit::target`] items, nor past [`GroupCommit::window`] (short: a
//!   closed-loop client waiting in a batch is a client not keeping the CPU busy, and a wait of
//!   a millisecond or more cost 20–30 % of the token rate in the benchmark);
//! - and only when the recent arrival rate expects at least one more item within the window.
//!
//! The rule is [`wait_for`], pure and tested with the rate passed in; [`gather`] applies it on a
//! loop's own thread (it blocks the thread while it waits, which is why both loops have one,
//! started by [`spawn_loop`]).

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// How a group-commit loop gathers its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCommit {
    /// The longest a batch waits for more items (zero: never wait).
    pub window: Duration,
    /// A batch of this many items goes at once.
    pub target: usize,
}

/// Default for [`GroupCommit::window`].
pub const GATHER_WINDOW: Duration = Duration::from_micros(300);
/// Default for [`GroupCommit::target`]: a batch of 32 costs 1/32 of a round trip per item.
pub const GATHER_TARGET: usize = 32;

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            window: GATHER_WINDOW,
            target: GATHER_TARGET,
        }
    }
}

impl GroupCommit {
    /// Never waits: every batch carries what was queued when it started.
    pub const OFF: Self = Self {
        window: Duration::ZERO,
        target: 0,
    };
}

/// How long a batch of `len` items should wait for more, given `rate` items per second arriving
/// lately: the time the missing items are expected to take, cut to the window, and nothing when
/// not even one more item is expected within the window.
pub fn wait_for(len: usize, rate: f64, policy: GroupCommit) -> Duration {
    let window = policy.window.as_secs_f64();
    // NaN rates fail `is_finite`, so they never wait.
    let expected = rate * window;
    if len < 2 || len >= policy.target || !expected.is_finite() || expected < 1.0 {
        return Duration::ZERO;
    }
    let missing = (policy.target - len) as f64;
    Duration::from_secs_f64((missing / rate).min(window))
}

/// The arrival rate a loop has seen lately: an exponentially weighted average of the items each
/// batch found against the time since the previous batch started.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArrivalRate {
    per_sec: f64,
    last: Option<Instant>,
}

/// Weight of the newest batch in the average.
const RATE_WEIGHT: f64 = 0.25;

impl ArrivalRate {
    /// Records that a batch found `items` items at `now`; returns the updated rate.
    pub fn observe(&mut self, items: usize, now: Instant) -> f64 {
        if let Some(last) = self.last {
            let secs = now.saturating_duration_since(last).as_secs_f64().max(1e-6);
            let sample = items as f64 / secs;
            self.per_sec = if self.per_sec == 0.0 {
                sample
            } else {
                self.per_sec + RATE_WEIGHT * (sample - self.per_sec)
            };
        }
        self.last = Some(now);
        self.per_sec
    }
}

/// Tops up `items` (just received) by waiting as [`wait_for`] says, then taking whatever arrived,
/// up to `max` items in all. Blocks the calling thread while it waits.
pub(crate) fn gather<T>(
    rx: &mut mpsc::Receiver<T>,
    items: &mut Vec<T>,
    max: usize,
    policy: GroupCommit,
    rate: &mut ArrivalRate,
) {
    let per_sec = rate.observe(items.len(), Instant::now());
    let wait = wait_for(items.len(), per_sec, policy);
    if wait.is_zero() {
        return;
    }
    std::thread::sleep(wait);
    while items.len() < max {
        match rx.try_recv() {
            Ok(item) => items.push(item),
            Err(_) => break,
        }
    }
}

/// Runs the loop `make` returns on a thread named `name`, with a single-threaded runtime of its
/// own. On failure (logged), `make` is dropped unrun, and with it the loop's queue, so that every
/// caller is answered as unavailable.
pub(crate) fn spawn_loop<F, L>(name: String, make: F)
where
    F: FnOnce() -> L + Send + 'static,
    L: std::future::Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let started = runtime.map_err(|e| e.to_string()).and_then(|rt| {
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || rt.block_on(make()))
            .map_err(|e| e.to_string())
    });
    if let Err(e) = started {
        tracing::error!(error = %e, thread = %name, "cannot start a storage thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: GroupCommit = GroupCommit {
        window: Duration::from_micros(300),
        target: 32,
    };

    #[test]
    fn waits_for_the_missing_items_within_the_window() {
        // (batch so far, items/s) -> expected wait in µs (0: send at once)
        let cases: &[(usize, f64, u64)] = &[
            (1, 100_000.0, 0),   // a lone item never waits
            (0, 100_000.0, 0),   // nothing to send
            (32, 100_000.0, 0),  // target reached
            (100, 100_000.0, 0), // past it
            (12, 0.0, 0),        // no rate seen yet
            (12, f64::NAN, 0),
            (22, 100_000.0, 100), // ten missing at 100,000/s
            (12, 100_000.0, 200), // twenty missing
            (12, 20_000.0, 300),  // twenty would take 1 ms: the window
            (2, 4_000.0, 300),    // 1.2 expected in the window: worth it
            (2, 3_000.0, 0),      // 0.9 expected: light load, send at once
        ];
        for &(len, rate, micros) in cases {
            let waited = wait_for(len, rate, POLICY).as_secs_f64() * 1e6;
            assert_eq!(waited.round() as u64, micros, "{len} items at {rate}/s");
        }
        assert_eq!(wait_for(12, 20_000.0, GroupCommit::OFF), Duration::ZERO);
    }

    #[test]
    fn the_rate_follows_the_batches() {
        let t0 = Instant::now();
        let mut r = ArrivalRate::default();
        assert_eq!(r.observe(10, t0), 0.0, "no interval yet");
        let first = r.observe(10, t0 + Duration::from_millis(1));
        assert!((first - 10_000.0).abs() < 1.0, "{first}");
        // A quieter spell pulls the average down, a quarter of the way per batch.
        let next = r.observe(1, t0 + Duration::from_millis(11));
        assert!((next - 7_525.0).abs() < 1.0, "{next}");
        for i in 0..40 {
            r.observe(1, t0 + Duration::from_millis(21 + 10 * i));
        }
        let settled = r.observe(1, t0 + Duration::from_millis(421));
        assert!((settled - 100.0).abs() < 5.0, "{settled}");
    }

    #[test]
    fn gathering_tops_up_the_batch_from_the_queue() {
        let (tx, mut rx) = mpsc::channel(64);
        for i in 0..20 {
            tx.try_send(i).unwrap();
        }
        let mut items = vec![100, 101];
        let mut rate = ArrivalRate::default();
        let t0 = Instant::now();
        // A busy history: 20,000 items/s.
        rate.observe(20, t0 - Duration::from_millis(2));
        rate.observe(20, t0 - Duration::from_millis(1));
        gather(&mut rx, &mut items, 10, POLICY, &mut rate);
        assert_eq!(items.len(), 10, "topped up to the batch limit");
        let mut lone = vec![1];
        gather(&mut rx, &mut lone, 64, POLICY, &mut rate);
        assert_eq!(lone, vec![1], "a lone item goes at once");
    }
}
