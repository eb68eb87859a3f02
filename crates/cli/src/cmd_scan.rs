//! `steward scan`: the offline secret scanner (steward-scan) with text, JSON or SARIF output, a
//! progress line on terminals, an exit code for CI, reporting of found keys; and `serve`'s leak flags.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use steward_scan::report::{self, Format};
use steward_scan::{Finding, Progress, RuleSet, ScanOptions, Scanner};

use crate::client::Client;

/// Exit code when the scan found secrets.
const EXIT_FOUND: u8 = 1;
/// Exit code when the scan could not run (bad rules, unreadable paths, git failure, report failure).
const EXIT_ERROR: u8 = 2;

#[derive(Args)]
pub struct ScanArgs {
    /// Files or directories to scan.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Also scan every blob in the history of the git repositories holding PATHs.
    #[arg(long)]
    git: bool,
    /// Output format: text, json or sarif (SARIF 2.1.0).
    #[arg(long, value_parser = ["text", "json", "sarif"])]
    format: Option<String>,
    /// Report found Steward keys to this Steward server (POST /v1/leaks), which revokes them.
    /// Authenticates with --credentials, whose identity needs scope steward:leaks:report.
    #[arg(long, value_name = "URL")]
    report_to: Option<String>,
    /// Extra rules (TOML, same format as the built-in rules) added to the defaults.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// Also scan files hidden by .gitignore, .ignore and git's exclude files.
    #[arg(long)]
    no_ignore: bool,
    /// Write the report to FILE instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub async fn scan(args: ScanArgs, server_creds: &Path, json_out: bool) -> Result<ExitCode> {
    match run(args, server_creds, json_out).await {
        Ok(found) => Ok(ExitCode::from(if found { EXIT_FOUND } else { 0 })),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}

async fn run(args: ScanArgs, creds: &Path, json_out: bool) -> Result<bool> {
    let format = match args.format.as_deref() {
        Some(f) => Format::parse(f).context("unknown format")?,
        None if json_out => Format::Json,
        None => Format::Text,
    };
    let rules = match &args.rules {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read rules file {}", p.display()))?;
            RuleSet::with_extra(&text, &p.display().to_string())?
        }
        None => RuleSet::builtin()?,
    };
    let scanner = Arc::new(Scanner::new(rules));
    let progress = Arc::new(Progress::default());
    let opts = ScanOptions {
        no_ignore: args.no_ignore,
        git_history: args.git,
        threads: 0,
    };
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| spinner(progress.clone()));
    let outcome = {
        let (scanner, progress, paths) = (scanner.clone(), progress.clone(), args.paths.clone());
        tokio::task::spawn_blocking(move || steward_scan::scan(&scanner, &paths, &opts, &progress))
            .await
            .context("the scan task failed")?
    };
    if let Some((bar, stop)) = bar {
        stop.store(true, Ordering::Relaxed);
        let _ = bar.join();
    }
    let outcome = outcome?;
    for e in &outcome.errors {
        eprintln!("warning: {e}");
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    report::write(
        &mut out,
        format,
        scanner.rules(),
        &outcome.findings,
        &outcome.stats,
    )?;
    out.flush()?;
    drop(out);
    let s = &outcome.stats;
    eprintln!(
        "scanned {} files ({:.1} MB){}; {} finding{}",
        s.files,
        s.bytes as f64 / 1e6,
        if args.git {
            format!(
                " and {} history blobs ({:.1} MB)",
                s.blobs,
                s.blob_bytes as f64 / 1e6
            )
        } else {
            String::new()
        },
        outcome.findings.len(),
        if outcome.findings.len() == 1 { "" } else { "s" }
    );
    if let Some(url) = &args.report_to {
        report_keys(url, creds, &outcome.findings).await?;
    }
    Ok(!outcome.findings.is_empty())
}

/// Applies `serve`'s leak flags: the webhook, and `KEY_ID=PEM_FILE` partner keys (added to any
/// from the config file).
pub fn apply_leak_settings(
    cfg: &mut steward_server::ServerConfig,
    webhook: Option<String>,
    keys: &[String],
) -> Result<()> {
    if webhook.is_some() {
        cfg.leak_webhook_url = webhook;
    }
    for k in keys {
        let Some((key_id, file)) = k.split_once('=') else {
            bail!("--leak-report-key expects KEY_ID=PEM_FILE, got {k:?}");
        };
        let pem = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read leak-report key {file}"))?;
        cfg.leak_report_keys
            .push(steward_server::service::leaks::LeakReportKey {
                key_id: key_id.to_owned(),
                pem,
            });
    }
    Ok(())
}

/// A progress line on standard error, refreshed from the scan's counters.
fn spinner(
    progress: Arc<Progress>,
) -> (
    std::thread::JoinHandle<()>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        while !stop2.load(Ordering::Relaxed) {
            let bytes = progress.bytes.load(Ordering::Relaxed);
            bar.set_message(format!(
                "{} files, {}, {} findings",
                progress.files.load(Ordering::Relaxed),
                indicatif::HumanBytes(bytes),
                progress.findings.load(Ordering::Relaxed),
            ));
            bar.tick();
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
    });
    (handle, stop)
}

/// Sends every distinct Steward key found to the server's leak endpoint.
async fn report_keys(url: &str, creds: &Path, findings: &[Finding]) -> Result<()> {
    let mut entries: Vec<Value> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in findings.iter().filter(|f| f.rule == "steward-api-key") {
        if !seen.insert(f.reveal()) {
            continue;
        }
        let (location, source) = match &f.commit {
            Some(c) => (format!("git:{c}:{}#L{}", f.path, f.line), "commit"),
            None => {
                let abs = std::fs::canonicalize(&f.path).unwrap_or_else(|_| PathBuf::from(&f.path));
                (format!("file://{}#L{}", abs.display(), f.line), "file")
            }
        };
        entries.push(json!({
            "token": f.reveal(),
            "type": "steward_api_key",
            "url": location,
            "source": source,
        }));
    }
    if entries.is_empty() {
        eprintln!("no Steward keys to report");
        return Ok(());
    }
    let mut client = Client::new(Some(url.to_owned()), Some(creds))?;
    let (mut revoked, mut already, mut not_ours) = (0, 0, 0);
    for batch in entries.chunks(1000) {
        let reply = client
            .post("/v1/leaks", &Value::Array(batch.to_vec()))
            .await?;
        let Some(items) = reply.as_array() else {
            bail!("unexpected reply from {url}/v1/leaks");
        };
        for i in items {
            match i["label"].as_str() {
                Some("revoked") => revoked += 1,
                Some("already_revoked") => already += 1,
                _ => not_ours += 1,
            }
        }
    }
    eprintln!(
        "reported {} Steward key{} to {url}: {revoked} revoked, {already} already revoked, {not_ours} not known there",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" }
    );
    Ok(())
}
