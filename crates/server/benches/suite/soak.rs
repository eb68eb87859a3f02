//! Soak mode: a fixed-rate, open-loop load (each request has a scheduled send time, and its
//! latency counts from that time, so a stalled server cannot hide its queue) for a long run,
//! sampling the process's resident memory and the latency percentiles once per interval.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::load::{self, MakeRequest, Tls};

/// One sampling interval of the soak.
pub struct Sample {
    /// End of the interval, seconds since the load started.
    pub at_secs: f64,
    pub ok: u64,
    pub errors: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    /// Resident set size of this process (server and load generator) at the interval's end, MiB.
    pub rss_mib: Option<f64>,
    /// The anonymous part of it (heap, SQLite's page caches), MiB: where a leak would show.
    pub anon_mib: Option<f64>,
    /// The file-backed part (pages of the database file that read connections map), MiB.
    pub file_mib: Option<f64>,
}

#[derive(Default)]
struct Bucket {
    latencies_us: Vec<u32>,
    errors: u64,
    /// Set once the sampler has read the bucket; later completions are dropped.
    taken: bool,
}

/// What to run: `rate` requests/s in total over `connections` keep-alive connections.
pub struct Soak {
    pub addr: SocketAddr,
    pub tls: Option<Tls>,
    pub make: MakeRequest,
    pub rate: f64,
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    pub every: Duration,
}

/// Resident set size of this process, MiB (Linux `/proc`).
pub fn rss_mib() -> Option<f64> {
    status_mib("VmRSS:")
}

/// A `kB` field of `/proc/self/status` (`VmRSS:`, `RssAnon:`, `RssFile:`), in MiB.
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn percentile_ms(sorted: &[u32], q: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let idx = ((n - 1) as f64 * q).round() as usize;
    sorted.get(idx).map(|us| f64::from(*us) / 1000.0)
}

/// Runs the soak and returns one sample per interval.
pub fn run(plan: Soak) -> Result<Vec<Sample>, String> {
    if plan.rate <= 0.0 || plan.connections == 0 {
        return Err("soak: the rate and the connection count must be positive".into());
    }
    let intervals = plan
        .duration
        .as_secs_f64()
        .div_euclid(plan.every.as_secs_f64())
        .max(1.0) as usize;
    let buckets: Arc<Vec<Mutex<Bucket>>> =
        Arc::new((0..intervals).map(|_| Mutex::default()).collect());
    let t0 = Instant::now() + Duration::from_millis(500);
    let end = t0 + plan.every * intervals as u32;
    // Each connection sends every `gap`, offset so the connections interleave evenly.
    let gap = Duration::from_secs_f64(plan.connections as f64 / plan.rate);
    let threads = plan.threads.clamp(1, plan.connections);
    let mut handles = Vec::new();
    for t in 0..threads {
        let conns: Vec<usize> = (0..plan.connections).filter(|c| c % threads == t).collect();
        let (make, tls, buckets) = (plan.make.clone(), plan.tls.clone(), buckets.clone());
        let (addr, every, n) = (plan.addr, plan.every, plan.connections);
        let h = std::thread::Builder::new()
            .name(format!("soak-client-{t}"))
            .spawn(move || -> Result<(), String> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("soak client runtime: {e}"))?;
                rt.block_on(async move {
                    let tasks: Vec<_> = conns
                        .into_iter()
                        .map(|c| {
                            let offset = gap.mul_f64(c as f64 / n as f64);
                            tokio::spawn(connection(
                                addr,
                                tls.clone(),
                                c,
                                make.clone(),
                                buckets.clone(),
                                (t0 + offset, gap, t0, end, every),
                            ))
                        })
                        .collect();
                    for task in tasks {
                        task.await.map_err(|e| format!("soak client task: {e}"))?;
                    }
                    Ok(())
                })
            })
            .map_err(|e| format!("soak client thread: {e}"))?;
        handles.push(h);
    }

    let mut samples = Vec::with_capacity(intervals);
    for (i, bucket) in buckets.iter().enumerate() {
        let boundary = t0 + plan.every * (i as u32 + 1);
        // A little grace for requests completing right at the boundary.
        let read_at = boundary + Duration::from_millis(300);
        std::thread::sleep(read_at.saturating_duration_since(Instant::now()));
        let (mut lat, errors) = {
            let mut b = bucket
                .lock()
                .map_err(|_| "soak: a bucket lock was poisoned")?;
            b.taken = true;
            (std::mem::take(&mut b.latencies_us), b.errors)
        };
        lat.sort_unstable();
        let s = Sample {
            at_secs: (boundary - t0).as_secs_f64(),
            ok: lat.len() as u64,
            errors,
            p50: percentile_ms(&lat, 0.5),
            p99: percentile_ms(&lat, 0.99),
            rss_mib: rss_mib(),
            anon_mib: status_mib("RssAnon:"),
            file_mib: status_mib("RssFile:"),
        };
        eprintln!(
            "soak {:>5.0} s: {:.0}/s, p50 {}, p99 {}, errors {}, RSS {:.1} MiB (anonymous {:.1}, file {:.1})",
            s.at_secs,
            s.ok as f64 / plan.every.as_secs_f64(),
            crate::results::ms(s.p50),
            crate::results::ms(s.p99),
            s.errors,
            s.rss_mib.unwrap_or(0.0),
            s.anon_mib.unwrap_or(0.0),
            s.file_mib.unwrap_or(0.0)
        );
        samples.push(s);
    }
    for h in handles {
        h.join().map_err(|_| "a soak client thread panicked")??;
    }
    Ok(samples)
}

/// One connection's schedule: (first send, gap, load start, end, sampling interval).
type Schedule = (Instant, Duration, Instant, Instant, Duration);

async fn connection(
    addr: SocketAddr,
    tls: Option<Tls>,
    conn: usize,
    make: MakeRequest,
    buckets: Arc<Vec<Mutex<Bucket>>>,
    (first, gap, t0, end, every): Schedule,
) {
    let record = |done: Instant, latency: Option<Duration>| {
        let i = (done.saturating_duration_since(t0).as_secs_f64() / every.as_secs_f64()) as usize;
        if let Some(Ok(mut b)) = buckets.get(i).map(|b| b.lock())
            && !b.taken
        {
            match latency {
                Some(l) => b
                    .latencies_us
                    .push(u32::try_from(l.as_micros()).unwrap_or(u32::MAX)),
                None => b.errors += 1,
            }
        }
    };
    let mut sender = None;
    let mut seq = 0u64;
    // Bounded: the schedule ends at `end`, and every iteration advances it.
    loop {
        let scheduled = first + gap.mul_f64(seq as f64);
        if scheduled >= end {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match load::connect_tls(addr, tls.as_ref()).await {
                Ok(s) => sender.insert(s),
                Err(_) => {
                    record(Instant::now(), None);
                    seq += 1;
                    continue;
                }
            },
        };
        let result = load::send(s, make(conn, seq)).await;
        seq += 1;
        let done = Instant::now();
        match result {
            Ok((status, _)) if status.is_success() => {
                record(done, Some(done.saturating_duration_since(scheduled)));
            }
            Ok(_) => record(done, None),
            Err(_) => {
                record(done, None);
                sender = None;
            }
        }
    }
}
