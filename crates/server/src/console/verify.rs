//! Audit-chain verification for the console's audit page: incremental and bounded. Records are
//! checked once per process, in order, with the same streaming `audit::Verifier` as
//! `steward audit verify`, up to the latest signed checkpoint, whose signature and Merkle root
//! are checked too. A page view verifies at most [`PAGE_BUDGET`] records; the rest continue in
//! the background in steps of [`BACKGROUND_BUDGET`].

use std::sync::Mutex;

use time::OffsetDateTime;

use super::Console;
use crate::audit::Verifier;
use crate::error::ServiceError;
use crate::state::AppState;

/// Records verified inline while a page is rendered.
pub const PAGE_BUDGET: u64 = 20_000;
/// Records verified per background step.
pub const BACKGROUND_BUDGET: u64 = 200_000;
/// Records read from the store at once.
const BATCH: u64 = 5_000;

/// What the last verification step established.
#[derive(Debug, Clone)]
pub struct VerifyStatus {
    pub checked_at: OffsetDateTime,
    /// Records `1..=verified` have been checked.
    pub verified: u64,
    /// Size of the signed checkpoint verified against.
    pub checkpoint_size: u64,
    pub checkpoint_signed_at: Option<OffsetDateTime>,
    /// Records in the log when the step ran.
    pub log_size: u64,
    pub ok: bool,
    /// Every record up to the checkpoint is verified and the checkpoint's root matches.
    pub complete: bool,
    pub problem: Option<String>,
    pub first_bad_seq: Option<u64>,
}

struct Progress {
    verifier: Verifier,
    verified: u64,
    /// The first problem found; a broken log stays reported as broken.
    broken: Option<(Option<u64>, String)>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            verifier: Verifier::new(None),
            verified: 0,
            broken: None,
        }
    }
}

/// The console's verification state (one per process).
#[derive(Default)]
pub struct AuditVerification {
    progress: tokio::sync::Mutex<Progress>,
    status: Mutex<Option<VerifyStatus>>,
}

impl AuditVerification {
    /// The result of the last step, if any ran.
    pub fn status(&self) -> Option<VerifyStatus> {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether a step is running now.
    pub fn running(&self) -> bool {
        self.progress.try_lock().is_err()
    }

    /// Verifies up to `budget` more records towards the latest signed checkpoint.
    pub async fn step(&self, app: &AppState, budget: u64) -> Result<VerifyStatus, ServiceError> {
        let mut p = self.progress.lock().await;
        let head = app.store.audit_head().await?;
        let cp = match app.store.latest_checkpoint().await? {
            Some(cp) => cp,
            None => app.checkpoint().await?,
        };
        if p.broken.is_none() {
            let vkey = app.note_signer.verifier_key();
            match crate::audit::trusted_checkpoint(&cp.note, Some(&vkey)) {
                Ok((size, root)) if size == cp.size && root == cp.root_hash => {}
                Ok(_) => {
                    p.broken = Some((
                        None,
                        "the stored checkpoint disagrees with its own signed note".into(),
                    ))
                }
                Err(e) => {
                    p.broken = Some((None, format!("the latest checkpoint is not valid: {e}")))
                }
            }
        }
        let target = cp.size;
        let mut remaining = budget;
        while p.broken.is_none() && p.verified < target && remaining > 0 {
            let n = BATCH.min(target - p.verified).min(remaining);
            let batch = app
                .store
                .audit_range(p.verified + 1, u32::try_from(n).unwrap_or(u32::MAX))
                .await?;
            if batch.is_empty() {
                p.broken = Some((
                    Some(p.verified + 1),
                    format!(
                        "log truncated: the checkpoint commits to {target} records but record {} is missing",
                        p.verified + 1
                    ),
                ));
                break;
            }
            for r in &batch {
                if !p.verifier.push(r) {
                    let report = p.verifier.clone().finish(None);
                    p.broken = Some((
                        report.first_bad_seq,
                        report
                            .problem
                            .unwrap_or_else(|| "verification failed".into()),
                    ));
                    break;
                }
                p.verified += 1;
            }
            remaining = remaining.saturating_sub(batch.len() as u64);
        }
        let mut complete = false;
        if p.broken.is_none() && p.verified == target {
            let report = p.verifier.clone().finish(None);
            if target == 0 || report.root_hash == steward_core::audit::hex32::encode(&cp.root_hash)
            {
                complete = true;
            } else {
                p.broken = Some((
                    None,
                    format!(
                        "the first {target} records do not match the signed checkpoint's root hash (log rewritten)"
                    ),
                ));
            }
        }
        let status = VerifyStatus {
            checked_at: app.now(),
            verified: p.verified,
            checkpoint_size: target,
            checkpoint_signed_at: Some(cp.created_at),
            log_size: head.size,
            ok: p.broken.is_none(),
            complete,
            problem: p.broken.as_ref().map(|(_, why)| why.clone()),
            first_bad_seq: p.broken.as_ref().and_then(|(s, _)| *s),
        };
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(status.clone());
        Ok(status)
    }
}

/// Called by the audit page: one bounded step inline (unless a step is already running), then,
/// if the log is not yet verified up to the checkpoint, the rest in the background.
pub async fn refresh(console: &Console) -> Option<VerifyStatus> {
    let v = &console.verification;
    if v.running() {
        return v.status();
    }
    match v.step(&console.app, PAGE_BUDGET).await {
        Ok(s) if s.ok && !s.complete => {
            let c = console.clone();
            tokio::spawn(async move {
                loop {
                    match c.verification.step(&c.app, BACKGROUND_BUDGET).await {
                        Ok(s) if s.ok && !s.complete => continue,
                        Ok(_) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "console audit verification step failed");
                            break;
                        }
                    }
                }
            });
            Some(s)
        }
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "console audit verification failed");
            v.status()
        }
    }
}
