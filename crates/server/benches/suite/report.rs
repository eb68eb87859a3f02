//! The suite's Markdown report (`target/bench-results/suite.md`) and the regeneration of the
//! README's results between `<!-- bench-suite:begin -->` and `<!-- bench-suite:end -->`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::results::{ms, thousands};
use crate::row::Row;
use crate::soak::Sample;
use crate::{ROWS, Settings};

pub const BEGIN: &str = "<!-- bench-suite:begin -->";
pub const END: &str = "<!-- bench-suite:end -->";

/// One row's outcome in a scenario.
pub struct Measured {
    pub key: &'static str,
    pub row: Result<Row, String>,
}

/// One backend at one scale.
pub struct Scenario {
    pub backend: &'static str,
    pub scale: u64,
    pub identities: u64,
    pub seeded: (u64, f64),
    pub rows: Vec<Measured>,
    pub error: Option<String>,
}

impl Scenario {
    fn row(&self, key: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|m| m.key == key)
            .and_then(|m| m.row.as_ref().ok())
    }
}

pub struct SoakReport {
    pub backend: &'static str,
    pub identities: u64,
    pub every: Duration,
    /// (rate, peak, samples)
    pub result: Result<(f64, f64, Vec<Sample>), String>,
}

fn label(key: &str) -> &str {
    ROWS.iter()
        .find(|(k, _)| *k == key)
        .map_or(key, |(_, l)| *l)
}

fn backend_name(b: &str) -> &'static str {
    if b == "postgres" {
        "PostgreSQL"
    } else {
        "SQLite"
    }
}

fn scale_name(n: u64) -> String {
    match n {
        1_000_000 => "1M".into(),
        1_000 => "1k".into(),
        n => thousands(n as f64),
    }
}

pub fn markdown(
    s: &Settings,
    scenarios: &[Scenario],
    soak: Option<&SoakReport>,
    took: Duration,
) -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = time::OffsetDateTime::now_utc().date();
    let mut md = String::new();
    let _ = writeln!(md, "## Steward benchmark suite\n");
    let _ = writeln!(
        md,
        "Generated {date} by `scripts/bench-suite` (`cargo bench -p steward-server --bench suite`) on \
         {cores} CPU cores in {:.0} s. HTTPS with keep-alive on loopback, {} connections, {:.1} s warm-up \
         and {:.1} s measured per row. The server runs in the bench process (Tokio, {} workers); the load \
         generator runs on {} thread(s) of the same process, on the same cores, and so does PostgreSQL. \
         Every token, decision, certificate and identity is audited durably before the answer. \
         \"vs no-op\" compares with the no-op row of the same scenario; \"DB trips/op\" is \
         `steward_store::round_trips()` over the window divided by the requests served.\n",
        took.as_secs_f64(),
        s.clients,
        s.warmup.as_secs_f64(),
        s.measure.as_secs_f64(),
        s.server_threads,
        s.client_threads
    );
    let _ = writeln!(
        md,
        "| operation | backend | identities | ops/s | p50 | p99 | vs no-op | DB trips/op | errors |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut notes = Vec::new();
    for sc in scenarios {
        if let Some(e) = &sc.error {
            notes.push(format!(
                "{} with {}: not run: {e}",
                backend_name(sc.backend),
                scale_name(sc.scale)
            ));
            continue;
        }
        let noop = sc.row("noop").map(|r| r.ops).filter(|v| *v > 0.0);
        for m in &sc.rows {
            let who = format!(
                "| {} | {} | {} |",
                label(m.key),
                backend_name(sc.backend),
                thousands(sc.identities as f64)
            );
            match &m.row {
                Ok(r) => {
                    let _ = writeln!(
                        md,
                        "{who} {} | {} | {} | {} | {} | {} |",
                        thousands(r.ops),
                        ms(r.p50),
                        ms(r.p99),
                        noop.map_or_else(|| "–".into(), |n| format!("{:.0} %", 100.0 * r.ops / n)),
                        r.round_trips
                            .map_or_else(|| "–".into(), |t| format!("{t:.3}")),
                        r.errors
                    );
                }
                Err(e) => {
                    let _ = writeln!(md, "{who} not measured | – | – | – | – | – |");
                    notes.push(format!(
                        "{} ({}, {}): {e}",
                        label(m.key),
                        backend_name(sc.backend),
                        scale_name(sc.scale)
                    ));
                }
            }
        }
    }
    let _ = writeln!(md);

    // Scale: each backend's smallest and largest scenario.
    let mut scale_lines = Vec::new();
    for backend in ["sqlite", "postgres"] {
        let mut of: Vec<&Scenario> = scenarios
            .iter()
            .filter(|sc| sc.backend == backend && sc.error.is_none())
            .collect();
        of.sort_by_key(|sc| sc.scale);
        let (Some(small), Some(large)) = (of.first(), of.last()) else {
            continue;
        };
        if small.scale == large.scale {
            continue;
        }
        // The machine's speed drifts between scenarios, and the no-op row of each scenario
        // measures that drift: the share of it an operation keeps is the comparable figure.
        let share =
            |sc: &Scenario, ops: f64| sc.row("noop").filter(|n| n.ops > 0.0).map(|n| ops / n.ops);
        for (key, _) in ROWS {
            if let (Some(a), Some(b)) = (small.row(key), large.row(key))
                && a.ops > 0.0
            {
                let change = 100.0 * (b.ops - a.ops) / a.ops;
                let corrected = match (share(small, a.ops), share(large, b.ops)) {
                    (Some(x), Some(y)) if key != "noop" && x > 0.0 => Some(100.0 * (y - x) / x),
                    _ => None,
                };
                scale_lines.push(format!(
                    "| {} | {} | {} | {} | {:+.0} % | {}{} |",
                    label(key),
                    backend_name(backend),
                    thousands(a.ops),
                    thousands(b.ops),
                    change,
                    corrected.map_or_else(|| "–".to_owned(), |c| format!("{c:+.0} %")),
                    match corrected {
                        Some(c) if c < -10.0 => " (target: less than −10 %)",
                        _ => "",
                    }
                ));
            }
        }
    }
    if !scale_lines.is_empty() {
        let _ = writeln!(
            md,
            "### From the smallest to the largest registry\n\n\
             \"change\" compares raw throughput; \"change vs no-op\" compares each row's share of the \
             no-op row of its own scenario, which cancels the machine's drift between scenarios \
             and is the figure the target (less than 10 % lower) is checked against.\n\n\
             | operation | backend | ops/s, smallest | ops/s, largest | change | change vs no-op |\n\
             |---|---|---:|---:|---:|---:|"
        );
        for l in scale_lines {
            let _ = writeln!(md, "{l}");
        }
        let _ = writeln!(md);
    }

    // Round trips per issued token.
    let _ = writeln!(
        md,
        "### Database round trips per issued token (target ≤ 0.05, amortized)\n"
    );
    for sc in scenarios.iter().filter(|sc| sc.error.is_none()) {
        let trips = |key: &str| {
            sc.row(key)
                .and_then(|r| r.round_trips)
                .map_or_else(|| "–".to_owned(), |t| format!("{t:.3}"))
        };
        let _ = writeln!(
            md,
            "- {}, {} identities: API key {}, `private_key_jwt` {}, mTLS {}, exchange {}.",
            backend_name(sc.backend),
            thousands(sc.identities as f64),
            trips("token-basic"),
            trips("token-jwt"),
            trips("token-mtls"),
            trips("exchange"),
        );
    }
    let _ = writeln!(
        md,
        "\nA round trip is one statement (BEGIN, SAVEPOINT and COMMIT included) sent to the database by this \
         process; audit records are group-committed, so a batch's statements are shared by every token in it.\n"
    );

    let seeded: Vec<String> = scenarios
        .iter()
        .filter(|sc| sc.seeded.0 > 0)
        .map(|sc| {
            format!(
                "{} {} in {:.1} s ({}/s)",
                backend_name(sc.backend),
                thousands(sc.seeded.0 as f64),
                sc.seeded.1,
                thousands(sc.seeded.0 as f64 / sc.seeded.1.max(1e-9))
            )
        })
        .collect();
    if !seeded.is_empty() {
        let _ = writeln!(
            md,
            "Seeding (identities with an API key each, `Mutation::BulkInsert` of {} per transaction): {}.\n",
            thousands(s.seed_batch as f64),
            seeded.join("; ")
        );
    }

    if let Some(soak) = soak {
        soak_markdown(&mut md, soak);
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "Notes:\n");
        for n in notes {
            let _ = writeln!(md, "- {n}");
        }
        let _ = writeln!(md);
    }
    md
}

fn soak_markdown(md: &mut String, soak: &SoakReport) {
    let _ = writeln!(
        md,
        "### Soak ({}, {} identities)\n",
        backend_name(soak.backend),
        thousands(soak.identities as f64)
    );
    let (rate, peak, samples) = match &soak.result {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(md, "Not run: {e}\n");
            return;
        }
    };
    let every = soak.every.as_secs_f64();
    let _ = writeln!(
        md,
        "API-key token issuance at a fixed {} tokens/s ({:.0} % of the {} tokens/s peak above), open loop \
         (latency counted from each request's scheduled send time), sampled every {every:.0} s. RSS is the \
         bench process's (server and load generator).\n",
        thousands(*rate),
        100.0 * rate / peak.max(1e-9),
        thousands(*peak)
    );
    let _ = writeln!(
        md,
        "| at | tokens/s | p50 | p99 | errors | RSS | anonymous | file-backed |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mib = |v: Option<f64>| v.map_or_else(|| "–".into(), |r| format!("{r:.1} MiB"));
    for x in samples {
        let _ = writeln!(
            md,
            "| {:.0} s | {} | {} | {} | {} | {} | {} | {} |",
            x.at_secs,
            thousands(x.ok as f64 / every),
            ms(x.p50),
            ms(x.p99),
            x.errors,
            mib(x.rss_mib),
            mib(x.anon_mib),
            mib(x.file_mib),
        );
    }
    // Warm-up: the first sample.
    let after: Vec<&Sample> = samples.iter().skip(1).collect();
    let rss: Vec<f64> = after.iter().filter_map(|x| x.rss_mib).collect();
    let p99: Vec<f64> = after.iter().filter_map(|x| x.p99).collect();
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        let growth = 100.0 * (last - first) / first;
        let max = rss.iter().copied().fold(f64::MIN, f64::max);
        let _ = writeln!(
            md,
            "\nMemory after warm-up: {first:.1} → {last:.1} MiB ({growth:+.1} %, peak {max:.1} MiB); target: less \
             than 10 % growth — {}.",
            if growth < 10.0 { "met" } else { "not met" }
        );
    }
    // The split tells a leak (anonymous memory) from the database's pages mapped by readers
    // (file-backed: the OS page cache, reclaimable) and SQLite's bounded page caches filling.
    let anon: Vec<f64> = after.iter().filter_map(|x| x.anon_mib).collect();
    let file: Vec<f64> = after.iter().filter_map(|x| x.file_mib).collect();
    if let (Some(a0), Some(a1), Some(f0), Some(f1)) =
        (anon.first(), anon.last(), file.first(), file.last())
    {
        let _ = writeln!(
            md,
            "Of which anonymous {a0:.1} → {a1:.1} MiB ({:+.1} %), file-backed {f0:.1} → {f1:.1} MiB.",
            100.0 * (a1 - a0) / a0.max(1e-9)
        );
    }
    if !p99.is_empty() {
        let mut sorted = p99.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let max = sorted[sorted.len() - 1];
        let _ = writeln!(
            md,
            "p99 after warm-up: median {median:.2} ms, worst interval {max:.2} ms ({:.1}× the median).",
            max / median.max(1e-9)
        );
    }
    let _ = writeln!(md);
}

fn readme_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md")
}

/// Replaces what stands between the README's markers with `md` (its top heading dropped).
pub fn update_readme(md: &str) -> Result<(), String> {
    let path = readme_path();
    let readme =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let (Some(a), Some(b)) = (readme.find(BEGIN), readme.find(END)) else {
        return Err(format!("{} has no {BEGIN} … {END} markers", path.display()));
    };
    if b < a {
        return Err(format!("{}: {END} comes before {BEGIN}", path.display()));
    }
    let body = md
        .strip_prefix("## Steward benchmark suite\n")
        .unwrap_or(md)
        .trim();
    let out = format!("{}{BEGIN}\n{body}\n{}", &readme[..a], &readme[b..]);
    std::fs::write(&path, out).map_err(|e| format!("writing {}: {e}", path.display()))?;
    println!("README results regenerated in {}", path.display());
    Ok(())
}
