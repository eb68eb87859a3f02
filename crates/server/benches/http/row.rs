//! One measured row of a closed-loop bench (a sanity request, then warm-up and window), shared
//! by the `authz` and `exchange` benches, which include it with `#[path]` beside `load.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::load::{self, MakeRequest, Plan};

/// Throughput and latency of one request kind.
pub struct Row {
    pub what: String,
    pub ops: f64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub errors: u64,
}

/// Where and how hard to push, the same for every row of a run.
pub struct Setup {
    pub addr: SocketAddr,
    pub clients: usize,
    pub client_threads: usize,
    pub warmup: Duration,
    pub measure: Duration,
}

/// Sends one request to check it succeeds, then measures `make` under load.
pub fn measure(rt: &Runtime, s: &Setup, what: &str, make: MakeRequest) -> Result<Row, String> {
    let (status, body) = rt.block_on(load::one_shot(s.addr, make(0, 0)))?;
    if !status.is_success() {
        return Err(format!(
            "{what}: sanity request failed: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let out = load::start(&Plan {
        addr: s.addr,
        connections: s.clients,
        threads: s.client_threads,
        warmup: s.warmup,
        measure: s.measure,
        make,
    })?
    .join()?;
    let row = Row {
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
