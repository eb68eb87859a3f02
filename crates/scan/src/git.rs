//! Git history through the `git` CLI: `rev-list --all --objects` names every blob once, and
//! one `cat-file --batch` process streams their contents through the scanner.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Finding, Progress, ScanError, Scanner};

/// What a history scan found.
#[derive(Debug, Default)]
pub struct History {
    pub findings: Vec<Finding>,
    pub blobs: u64,
    pub bytes: u64,
    pub binary_skipped: u64,
    pub errors: Vec<String>,
}

fn git(root: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C").arg(root);
    // Never prompt, never page, never run user hooks or fsmonitor for a read-only scan.
    c.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_PAGER", "cat")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .arg("-c")
        .arg("core.fsmonitor=false");
    c
}

fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>, ScanError> {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| ScanError::Git(format!("cannot run git ({what}): {e}")))?;
    if !out.status.success() {
        return Err(ScanError::Git(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// The top-level directory of the repository holding `path`.
pub fn repo_root(path: &Path) -> Result<PathBuf, ScanError> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let out = run(
        git(&dir).args(["rev-parse", "--show-toplevel"]),
        &format!("finding the repository of {}", dir.display()),
    )?;
    let top = String::from_utf8_lossy(&out).trim().to_owned();
    if top.is_empty() {
        return Err(ScanError::Git(format!(
            "{} is not in a git repository",
            dir.display()
        )));
    }
    Ok(PathBuf::from(top))
}

/// Every blob reachable from any ref, once, with the first path it was seen at.
fn list_blobs(root: &Path) -> Result<Vec<(String, String)>, ScanError> {
    let out = run(
        git(root).args([
            "rev-list",
            "--all",
            "--objects",
            "--filter=object:type=blob",
        ]),
        "listing history",
    )?;
    let mut blobs = Vec::new();
    for line in out.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        // Commits are printed without a path; blobs as "<id> <path>".
        if let Some((id, path)) = line.split_once(' ')
            && !path.is_empty()
        {
            blobs.push((id.to_owned(), path.to_owned()));
        }
    }
    Ok(blobs)
}

/// Scans every blob in the history of the repository at `root`.
pub fn scan_history(
    scanner: &Scanner,
    root: &Path,
    progress: &Progress,
) -> Result<History, ScanError> {
    let blobs: Vec<(String, String)> = list_blobs(root)?
        .into_iter()
        .filter(|(_, path)| !scanner.rules().path_allowed(path))
        .collect();
    let mut hist = History::default();
    if blobs.is_empty() {
        return Ok(hist);
    }
    let mut child = git(root)
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| ScanError::Git(format!("cannot run git cat-file: {e}")))?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(ScanError::Git("git cat-file has no pipes".into()));
    };
    let ids: Vec<String> = blobs.iter().map(|(id, _)| id.clone()).collect();
    // Feed ids from another thread so neither pipe can fill up and deadlock.
    let feeder = std::thread::spawn(move || -> io::Result<()> {
        let mut w = io::BufWriter::new(&mut stdin);
        for id in ids {
            w.write_all(id.as_bytes())?;
            w.write_all(b"\n")?;
        }
        w.flush()
    });
    let mut reader = BufReader::with_capacity(1 << 16, stdout);
    let mut buf = Vec::new();
    let mut header = String::new();
    let mut result = Ok(());
    for (id, path) in &blobs {
        header.clear();
        if let Err(e) = reader.read_line(&mut header) {
            result = Err(ScanError::Git(format!("reading git cat-file: {e}")));
            break;
        }
        let mut parts = header.split_ascii_whitespace();
        let (Some(got), Some(kind), Some(size)) = (parts.next(), parts.next(), parts.next()) else {
            hist.errors
                .push(format!("{path} (blob {id}): {}", header.trim()));
            continue;
        };
        let Ok(size) = size.parse::<u64>() else {
            result = Err(ScanError::Git(format!(
                "unexpected cat-file header {header:?}"
            )));
            break;
        };
        if got != id || kind != "blob" {
            result = Err(ScanError::Git(format!("unexpected object {got} {kind}")));
            break;
        }
        let mut body = (&mut reader).take(size);
        match scanner.scan_reader(path, &mut body, &mut buf) {
            Ok(Some((hits, bytes))) => {
                progress.add(bytes, hits.len());
                hist.blobs += 1;
                hist.bytes += bytes;
                for h in hits {
                    let mut f = Finding::new(scanner, path.clone(), h);
                    f.blob = Some(id.clone());
                    hist.findings.push(f);
                }
            }
            Ok(None) => hist.binary_skipped += 1,
            Err(e) => {
                result = Err(ScanError::Git(format!("reading blob {id}: {e}")));
                break;
            }
        }
        // Skip what the scanner did not read (binary content), then the trailing newline.
        let drained = io::copy(&mut body, &mut io::sink()).and_then(|_| {
            let mut nl = [0u8; 1];
            reader.read_exact(&mut nl)
        });
        if let Err(e) = drained {
            result = Err(ScanError::Git(format!("reading git cat-file: {e}")));
            break;
        }
    }
    drop(reader);
    let _ = child.kill();
    let _ = child.wait();
    let _ = feeder.join();
    result?;
    attribute_commits(root, &mut hist.findings);
    Ok(hist)
}

/// Names, for each blob with findings, the oldest commit (topologically) that added it.
fn attribute_commits(root: &Path, findings: &mut [Finding]) {
    let mut cache: HashMap<String, Option<String>> = HashMap::new();
    for f in findings.iter_mut() {
        let Some(blob) = f.blob.clone() else { continue };
        let commit = cache
            .entry(blob.clone())
            .or_insert_with(|| {
                run(
                    git(root).args([
                        "log",
                        "--all",
                        "--topo-order",
                        "--reverse",
                        "--format=%H",
                        &format!("--find-object={blob}"),
                    ]),
                    "finding the commit of a blob",
                )
                .ok()
                .and_then(|out| {
                    String::from_utf8_lossy(&out)
                        .lines()
                        .find(|l| !l.is_empty())
                        .map(str::to_owned)
                })
            })
            .clone();
        f.commit = commit;
    }
}
