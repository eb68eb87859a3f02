//! Walking the paths to scan: a parallel walk (the `ignore` crate, as in ripgrep) that honours
//! .gitignore unless told not to, skips `.git` and allow-listed paths, and adds git history on request.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ignore::{WalkBuilder, WalkState};

use crate::{Finding, Outcome, Progress, ScanError, Scanner, Stats, git};

/// How to scan.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// Scan files that .gitignore, .ignore and git's exclude file would hide.
    pub no_ignore: bool,
    /// Also scan every blob in the history of the repositories holding the paths.
    pub git_history: bool,
    /// Worker threads (0 = one per core).
    pub threads: usize,
}

/// Slash-separated display form of a walked path, without a leading `./`.
pub(crate) fn display_path(p: &Path) -> String {
    let s = p.to_string_lossy().replace('\\', "/");
    match s.strip_prefix("./") {
        Some(rest) if !rest.is_empty() => rest.to_owned(),
        _ => s,
    }
}

#[derive(Default)]
struct Shared {
    findings: Vec<Finding>,
    stats: Stats,
    errors: Vec<String>,
}

/// Scans `paths` (files or directories) and, with `git_history`, their repositories' history.
pub fn scan(
    scanner: &Scanner,
    paths: &[PathBuf],
    opts: &ScanOptions,
    progress: &Progress,
) -> Result<Outcome, ScanError> {
    let Some((first, rest)) = paths.split_first() else {
        return Ok(Outcome::default());
    };
    for p in paths {
        if !p.exists() {
            return Err(ScanError::Io {
                path: display_path(p),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or directory",
                ),
            });
        }
    }
    let mut wb = WalkBuilder::new(first);
    for p in rest {
        wb.add(p);
    }
    wb.hidden(false)
        .parents(!opts.no_ignore)
        .ignore(!opts.no_ignore)
        .git_ignore(!opts.no_ignore)
        .git_global(!opts.no_ignore)
        .git_exclude(!opts.no_ignore)
        .require_git(false)
        .follow_links(false)
        .threads(opts.threads);
    let shared = Mutex::new(Shared::default());
    wb.build_parallel().run(|| {
        let shared = &shared;
        let scanner = scanner.clone();
        let mut buf = Vec::new();
        Box::new(move |entry| {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    lock(shared).errors.push(e.to_string());
                    return WalkState::Continue;
                }
            };
            let path = display_path(entry.path());
            // Allow-lists match the path below the scan root, never the root's own location.
            let rule_path = paths
                .iter()
                .find_map(|root| entry.path().strip_prefix(root).ok())
                .filter(|r| !r.as_os_str().is_empty())
                .map_or_else(|| path.clone(), display_path);
            let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
            if is_dir {
                let skip = entry.depth() > 0
                    && (entry.file_name() == ".git"
                        || scanner.rules().path_allowed(&format!("{rule_path}/")));
                return if skip {
                    WalkState::Skip
                } else {
                    WalkState::Continue
                };
            }
            if !entry.file_type().is_some_and(|t| t.is_file())
                || scanner.rules().path_allowed(&rule_path)
            {
                return WalkState::Continue;
            }
            let result =
                File::open(entry.path()).and_then(|f| scanner.scan_reader(&rule_path, f, &mut buf));
            match result {
                Ok(Some((hits, bytes))) => {
                    progress.add(bytes, hits.len());
                    let mut s = lock(shared);
                    s.stats.files += 1;
                    s.stats.bytes += bytes;
                    for h in hits {
                        s.findings.push(Finding::new(&scanner, path.clone(), h));
                    }
                }
                Ok(None) => lock(shared).stats.binary_skipped += 1,
                Err(e) => lock(shared).errors.push(format!("{path}: {e}")),
            }
            WalkState::Continue
        })
    });
    let Shared {
        mut findings,
        mut stats,
        mut errors,
    } = shared.into_inner().unwrap_or_else(|p| p.into_inner());

    if opts.git_history {
        let mut roots: Vec<PathBuf> = Vec::new();
        for p in paths {
            let root = git::repo_root(p)?;
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
        for root in roots {
            // Secrets already reported in the working tree at the same path are not repeated.
            let mut known: HashSet<(String, String, String)> = HashSet::new();
            let canon_root = root.canonicalize().unwrap_or_else(|_| root.clone());
            for f in &findings {
                if let Ok(abs) = Path::new(&f.path).canonicalize()
                    && let Ok(rel) = abs.strip_prefix(&canon_root)
                {
                    known.insert((f.rule.clone(), f.reveal().to_owned(), display_path(rel)));
                }
            }
            let hist = git::scan_history(scanner, &root, progress)?;
            stats.blobs += hist.blobs;
            stats.blob_bytes += hist.bytes;
            stats.binary_skipped += hist.binary_skipped;
            errors.extend(hist.errors);
            for f in hist.findings {
                if known.insert((f.rule.clone(), f.reveal().to_owned(), f.path.clone())) {
                    findings.push(f);
                }
            }
        }
    }
    crate::sort_findings(&mut findings);
    errors.sort();
    Ok(Outcome {
        findings,
        stats,
        errors,
    })
}

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
