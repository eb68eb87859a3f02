//! Closed-loop HTTP/1.1 load generator for the benches: a fixed set of keep-alive connections
//! (plain, or TLS with an optional client certificate), one task per connection issuing requests
//! back to back, on threads and runtimes of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

/// Builds request number `seq` of connection `conn`. Must be cheap: it runs on the client's clock.
pub type MakeRequest = Arc<dyn Fn(usize, u64) -> Request<Full<Bytes>> + Send + Sync>;

/// TLS for the load's connections: the client configuration (trust anchors, and a client
/// certificate for mutual TLS) and the name the server's certificate is checked against.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<rustls::ClientConfig>,
    pub name: rustls_pki_types::ServerName<'static>,
}

/// What to run: how many connections, on how many client threads, for how long.
pub struct Plan {
    pub addr: SocketAddr,
    /// `None`: plain HTTP.
    pub tls: Option<Tls>,
    pub connections: usize,
    /// Client OS threads, each with a current-thread Tokio runtime; connections are spread over them.
    pub threads: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub make: MakeRequest,
}

/// What one measurement saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Successful (2xx) requests that completed inside the measurement window.
    pub ok: u64,
    /// Non-2xx responses and transport failures, over warm-up, window and tail alike.
    pub errors: u64,
    /// The first few distinct error descriptions (status and body start, or the transport error).
    pub error_samples: Vec<String>,
    /// Latency of every request counted in `ok`, in microseconds, sorted ascending.
    pub latencies_us: Vec<u32>,
    /// Successful requests completed during warm-up.
    pub warmup_ok: u64,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.warmup_ok += other.warmup_ok;
        self.latencies_us.extend(other.latencies_us);
        for s in other.error_samples {
            if self.error_samples.len() < MAX_ERROR_SAMPLES && !self.error_samples.contains(&s) {
                self.error_samples.push(s);
            }
        }
    }

    /// The latency at quantile `q` (0..=1), in milliseconds.
    pub fn percentile_ms(&self, q: f64) -> Option<f64> {
        let n = self.latencies_us.len();
        if n == 0 {
            return None;
        }
        let idx = ((n - 1) as f64 * q).round() as usize;
        self.latencies_us
            .get(idx.min(n - 1))
            .map(|us| f64::from(*us) / 1000.0)
    }
}

const MAX_ERROR_SAMPLES: usize = 5;
/// Time allowed for every connection to be established before the warm-up clock starts.
const CONNECT_ALLOWANCE: Duration = Duration::from_millis(500);

/// A load run in progress. The phase boundaries are known up front so the caller can take
/// snapshots of server-side counters at the start and end of the measurement window.
pub struct Running {
    pub measure_start: Instant,
    pub end: Instant,
    threads: Vec<std::thread::JoinHandle<Result<Outcome, String>>>,
}

impl Running {
    /// Waits for every client thread and merges their results.
    pub fn join(self) -> Result<Outcome, String> {
        let mut all = Outcome::default();
        for t in self.threads {
            let part = t
                .join()
                .map_err(|_| "a load-generator thread panicked".to_owned())??;
            all.merge(part);
        }
        all.latencies_us.sort_unstable();
        Ok(all)
    }
}

/// Starts the load in the background and returns at once.
pub fn start(plan: &Plan) -> Result<Running, String> {
    let t0 = Instant::now() + CONNECT_ALLOWANCE;
    let measure_start = t0 + plan.warmup;
    let end = measure_start + plan.measure;
    let threads = plan.threads.clamp(1, plan.connections.max(1));
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let conns: Vec<usize> = (0..plan.connections).filter(|c| c % threads == t).collect();
        let make = plan.make.clone();
        let addr = plan.addr;
        let tls = plan.tls.clone();
        let h = std::thread::Builder::new()
            .name(format!("bench-client-{t}"))
            .spawn(move || client_thread(addr, tls, conns, make, t0, measure_start, end))
            .map_err(|e| format!("cannot start a load-generator thread: {e}"))?;
        handles.push(h);
    }
    Ok(Running {
        measure_start,
        end,
        threads: handles,
    })
}

fn client_thread(
    addr: SocketAddr,
    tls: Option<Tls>,
    conns: Vec<usize>,
    make: MakeRequest,
    t0: Instant,
    measure_start: Instant,
    end: Instant,
) -> Result<Outcome, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot build the client runtime: {e}"))?;
    rt.block_on(async move {
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|c| {
                tokio::spawn(connection_task(
                    addr,
                    tls.clone(),
                    c,
                    make.clone(),
                    t0,
                    measure_start,
                    end,
                ))
            })
            .collect();
        let mut out = Outcome::default();
        for t in tasks {
            out.merge(t.await.map_err(|e| format!("a client task failed: {e}"))?);
        }
        Ok(out)
    })
}

/// Opens one keep-alive HTTP/1.1 connection, over TLS when `tls` is given; its driver runs as a
/// task of the current runtime.
pub async fn connect_tls(
    addr: SocketAddr,
    tls: Option<&Tls>,
) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    match tls {
        None => http1_over(stream).await,
        Some(t) => {
            let stream = tokio_rustls::TlsConnector::from(t.config.clone())
                .connect(t.name.clone(), stream)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            http1_over(stream).await
        }
    }
}

async fn http1_over<S>(io: S) -> Result<SendRequest<Full<Bytes>>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole response body.
pub async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection not ready: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the response body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// One request on a fresh connection (setup and sanity checks, not measured).
pub async fn one_shot(
    addr: SocketAddr,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    one_shot_tls(addr, None, req).await
}

/// [`one_shot`], over TLS when `tls` is given.
pub async fn one_shot_tls(
    addr: SocketAddr,
    tls: Option<&Tls>,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    let mut sender = connect_tls(addr, tls).await?;
    send(&mut sender, req).await
}

fn note(out: &mut Outcome, e: String) {
    out.errors += 1;
    if out.error_samples.len() < MAX_ERROR_SAMPLES && !out.error_samples.contains(&e) {
        out.error_samples.push(e);
    }
}

fn describe(status: StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    format!("HTTP {status}: {text}")
}

async fn connection_task(
    addr: SocketAddr,
    tls: Option<Tls>,
    conn: usize,
    make: MakeRequest,
    t0: Instant,
    measure_start: Instant,
    end: Instant,
) -> Outcome {
    let mut out = Outcome {
        latencies_us: Vec::with_capacity(4096),
        ..Outcome::default()
    };
    let mut sender = match connect_tls(addr, tls.as_ref()).await {
        Ok(s) => Some(s),
        Err(e) => {
            note(&mut out, e);
            None
        }
    };
    tokio::time::sleep_until(t0.into()).await;
    let mut seq = 0u64;
    // Bounded: every iteration checks the deadline, and failures back off before retrying.
    while Instant::now() < end {
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect_tls(addr, tls.as_ref()).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    note(&mut out, e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let req = make(conn, seq);
        seq += 1;
        let began = Instant::now();
        let result = send(s, req).await;
        let done = Instant::now();
        match result {
            Ok((status, _)) if status.is_success() => {
                if done < measure_start {
                    out.warmup_ok += 1;
                } else if done <= end {
                    out.ok += 1;
                    let us = done.duration_since(began).as_micros();
                    out.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                }
            }
            Ok((status, body)) => note(&mut out, describe(status, &body)),
            Err(e) => {
                note(&mut out, e);
                sender = None;
            }
        }
    }
    out
}
