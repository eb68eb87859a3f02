//! One measured row of a closed-loop bench (a sanity request, then warm-up and window), shared
//! by the `authz`, `exchange` and `suite` benches, which include it with `#[path]` beside `load.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::load::{self, MakeRequest, Plan, Tls};

/// Throughput and latency of one request kind.
pub struct Row {
    pub what: String,
    pub ops: f64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub errors: u64,
    /// Database round trips (`steward_store::round_trips`) made by this process during the
    /// window, per successful request.
    pub round_trips: Option<f64>,
}

/// Where and how hard to push, the same for every row of a run.
pub struct Setup {
    pub addr: SocketAddr,
    /// `None`: plain HTTP.
    pub tls: Option<Tls>,
    pub clients: usize,
    pub client_threads: usize,
    pub warmup: Duration,
    pub measure: Duration,
}

/// Sends one request to check it succeeds, then measures `make` under load.
pub fn measure(rt: &Runtime, s: &Setup, what: &str, make: MakeRequest) -> Result<Row, String> {
    let (status, body) = rt.block_on(load::one_shot_tls(s.addr, s.tls.as_ref(), make(0, 0)))?;
    if !status.is_success() {
        return Err(format!(
            "{what}: sanity request failed: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let running = load::start(&Plan {
        addr: s.addr,
        tls: s.tls.clone(),
        connections: s.clients,
        threads: s.client_threads,
        warmup: s.warmup,
        measure: s.measure,
        make,
    })?;
    std::thread::sleep(
        running
            .measure_start
            .saturating_duration_since(Instant::now()),
    );
    let trips0 = steward_store::round_trips();
    std::thread::sleep(running.end.saturating_duration_since(Instant::now()));
    let trips = steward_store::round_trips().saturating_sub(trips0);
    let out = running.join()?;
    let row = Row {
        round_trips: (out.ok > 0).then(|| trips as f64 / out.ok as f64),
        what: what.to_owned(),
        ops: out.ok as f64 / s.measure.as_secs_f64(),
        p50: out.percentile_ms(0.5),
        p99: out.percentile_ms(0.99),
        errors: out.errors,
    };
    if !out.error_samples.is_empty() {
        eprintln!("{what}: errors: {:?}", out.error_samples);
    }
    eprintln!("{what}: {:.0}/s", row.ops);
    Ok(row)
}
