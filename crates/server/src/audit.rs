//! The tamper-evident audit log's read side: signed checkpoints, inclusion proofs, and verification.
//! Appends happen in the store, inside the same transaction as the change they describe.

use serde::Serialize;
use steward_core::AuditRecord;
use steward_crypto::merkle::{self, CompactTree, Hash};
use steward_store::{Change, CheckpointRecord, Mutation, Store};

use crate::error::ServiceError;
use crate::state::Inner;

/// Leaf hashes read per statement when the node's Merkle tree catches up with the log.
const CATCH_UP_PAGE: u32 = 4096;
/// Pause between two such pages.
const CATCH_UP_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

impl Inner {
    /// The newest checkpoint, signing a new one first when the log has grown since.
    pub async fn checkpoint(&self) -> Result<CheckpointRecord, ServiceError> {
        self.checkpoint_fenced(None).await
    }

    /// [`Self::checkpoint`] for the checkpoint job: the write carries the job's lease fence.
    pub async fn checkpoint_fenced(
        &self,
        fence: Option<&crate::leases::Fence>,
    ) -> Result<CheckpointRecord, ServiceError> {
        let head = self.store.audit_head().await?;
        if let Some(cp) = self.store.latest_checkpoint().await?
            && cp.size == head.size
        {
            return Ok(cp);
        }
        let (size, root) = self.audit_root(head.size).await?;
        let body = steward_crypto::note::checkpoint_body(&self.audit_origin, size, &root);
        let note = self
            .note_signer
            .sign(&body)
            .map_err(|e| ServiceError::Internal(format!("checkpoint signing failed: {e}")))?;
        let cp = CheckpointRecord {
            size,
            root_hash: root,
            note,
            created_at: self.now(),
        };
        match self
            .store
            .commit(
                fence
                    .map_or_else(Change::new, |f| Change::new().with(f.mutation()))
                    .with(Mutation::PutCheckpoint(cp.clone())),
            )
            .await
        {
            Ok(_) | Err(steward_store::StoreError::Conflict(_)) => Ok(cp),
            Err(e) => Err(e.into()),
        }
    }

    /// Extends the node's Merkle tree to the log's current head without signing anything, and
    /// returns its size. Run every few seconds by a job on every node, so that a checkpoint
    /// finds the tree nearly current instead of reading back everything appended since the last
    /// one at once (millions of records every five minutes on a busy node, a burst that showed
    /// in request latency), and a node that takes over the checkpoint duty is ready for it.
    pub async fn advance_audit_tree(&self) -> Result<u64, ServiceError> {
        let head = self.store.audit_head().await?;
        Ok(self.audit_root(head.size).await?.0)
    }

    /// Size and Merkle root of the log's first `upto` records (all of them, if fewer). The
    /// node's tree is extended with the records appended since it last read, a page at a time,
    /// so a checkpoint costs the new records, not the whole log, and holds O(log n) hashes.
    async fn audit_root(&self, upto: u64) -> Result<(u64, Hash), ServiceError> {
        let mut tree = self.audit_tree.lock().await;
        if tree.size() > upto {
            // Only a log that shrank gets here (the size is read before the tree is locked,
            // and records are never removed): start again from what the store now holds.
            *tree = CompactTree::new();
        }
        // Extended on a copy: a failed read leaves the node's tree where it was.
        let mut grown = tree.clone();
        while grown.size() < upto {
            let page = self
                .store
                .audit_leaf_hashes_after(grown.size(), upto, CATCH_UP_PAGE)
                .await?;
            if page.is_empty() {
                break;
            }
            for leaf in page {
                grown.push(leaf);
            }
            if grown.size() < upto {
                // A busy node appends millions of records between checkpoints: reading them
                // back in short pages with a pause between keeps the catch-up from taking the
                // cores (and a long read snapshot, which holds SQLite's WAL) away from requests.
                tokio::time::sleep(CATCH_UP_PAUSE).await;
            }
        }
        let root = grown.root();
        let size = grown.size();
        *tree = grown;
        Ok((size, root))
    }

    pub fn checkpoint_view(&self, cp: &CheckpointRecord) -> steward_proto::CheckpointView {
        steward_proto::CheckpointView {
            origin: self.audit_origin.clone(),
            size: cp.size,
            root_hash: steward_crypto::b64::std_encode(&cp.root_hash),
            note: cp.note.clone(),
            verifier_key: self.note_signer.verifier_key(),
        }
    }

    /// RFC 6962 inclusion proof of record `seq` in the latest checkpoint.
    pub async fn inclusion_proof(
        &self,
        seq: u64,
    ) -> Result<steward_proto::InclusionProofView, ServiceError> {
        let cp = self.checkpoint().await?;
        if seq == 0 || seq > cp.size {
            return Err(ServiceError::not_found(format!("audit record {seq}")));
        }
        let leaves = self.store.audit_leaf_hashes(cp.size).await?;
        let index =
            usize::try_from(seq - 1).map_err(|_| ServiceError::invalid("seq out of range"))?;
        let proof = merkle::inclusion_proof(&leaves, index)
            .ok_or_else(|| ServiceError::not_found(format!("audit record {seq}")))?;
        let hex = steward_core::audit::hex32::encode;
        Ok(steward_proto::InclusionProofView {
            seq,
            leaf_index: seq - 1,
            tree_size: cp.size,
            leaf_hash: hex(&leaves[index]),
            proof: proof.iter().map(|h| hex(h)).collect(),
            root_hash: steward_crypto::b64::std_encode(&cp.root_hash),
            checkpoint: self.checkpoint_view(&cp),
        })
    }
}

/// The outcome of verifying a log.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VerifyReport {
    pub ok: bool,
    pub records: u64,
    /// The first record that fails verification, when one can be named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Size of the checkpoint checked against, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_size: Option<u64>,
    /// Hex Merkle root of the whole log as recomputed.
    pub root_hash: String,
}

/// Streaming verifier: feed records in stored order; it recomputes every leaf hash from the
/// record's content, the hash chain, and the Merkle root at the checkpoint's size.
/// Cloning it snapshots the state, so a caller can read a verdict and go on pushing.
#[derive(Clone)]
pub struct Verifier {
    next_seq: u64,
    prev_chain: Hash,
    tree: CompactTree,
    checkpoint: Option<(u64, Hash)>,
    root_at_checkpoint: Option<Hash>,
    first_bad: Option<(u64, String)>,
}

impl Verifier {
    /// `checkpoint`: `(size, root)` from a trusted, signature-checked checkpoint.
    pub fn new(checkpoint: Option<(u64, Hash)>) -> Self {
        Self {
            next_seq: 1,
            prev_chain: [0; 32],
            tree: CompactTree::new(),
            checkpoint,
            root_at_checkpoint: None,
            first_bad: None,
        }
    }

    /// Checks one record. Returns false once a problem has been found (the rest can't be trusted).
    pub fn push(&mut self, r: &AuditRecord) -> bool {
        if self.first_bad.is_some() {
            return false;
        }
        let expected = self.next_seq;
        if r.seq != expected {
            let why = if r.seq > expected {
                format!(
                    "record {expected} is missing (deleted); the next stored record is {}",
                    r.seq
                )
            } else {
                format!(
                    "record {} appears out of order after record {}",
                    r.seq,
                    expected - 1
                )
            };
            self.first_bad = Some((expected, why));
            return false;
        }
        let leaf = merkle::leaf_hash(&r.event.canonical_bytes(r.seq));
        if leaf != r.leaf_hash {
            self.first_bad = Some((
                r.seq,
                format!(
                    "record {} was modified: its content does not match its hash",
                    r.seq
                ),
            ));
            return false;
        }
        let chain = merkle::chain_hash(&self.prev_chain, &leaf);
        if chain != r.chain_hash {
            self.first_bad = Some((
                r.seq,
                format!(
                    "hash chain broken at record {} (records reordered or rewritten)",
                    r.seq
                ),
            ));
            return false;
        }
        self.prev_chain = chain;
        self.tree.push(leaf);
        self.next_seq += 1;
        if let Some((size, _)) = self.checkpoint
            && self.tree.size() == size
        {
            self.root_at_checkpoint = Some(self.tree.root());
        }
        true
    }

    /// Final verdict. `head` is the store's own record of the log size and chain head, if available.
    pub fn finish(mut self, head: Option<(u64, Hash)>) -> VerifyReport {
        let records = self.tree.size();
        if self.first_bad.is_none()
            && let Some((size, root)) = self.checkpoint
        {
            if records < size {
                self.first_bad = Some((
                    records + 1,
                    format!(
                        "log truncated: the checkpoint commits to {size} records but only {records} remain"
                    ),
                ));
            } else if self.root_at_checkpoint != Some(root) {
                self.first_bad = Some((
                    0,
                    format!(
                        "the first {size} records do not match the checkpoint's root hash (log rewritten)"
                    ),
                ));
            }
        }
        if self.first_bad.is_none()
            && let Some((size, chain)) = head
        {
            if size > records {
                self.first_bad = Some((
                    records + 1,
                    format!(
                        "log truncated: the log head records {size} entries but only {records} remain"
                    ),
                ));
            } else if size == records && chain != self.prev_chain {
                self.first_bad = Some((
                    records,
                    "the log head does not match the last record's chain hash".into(),
                ));
            }
        }
        let (first_bad_seq, problem) = match self.first_bad {
            Some((0, p)) => (None, Some(p)),
            Some((s, p)) => (Some(s), Some(p)),
            None => (None, None),
        };
        VerifyReport {
            ok: problem.is_none(),
            records,
            first_bad_seq,
            problem,
            checkpoint_size: self.checkpoint.map(|c| c.0),
            root_hash: steward_core::audit::hex32::encode(&self.tree.root()),
        }
    }
}

/// Verifies the whole log held by `store`, optionally against a trusted checkpoint.
pub async fn verify_store(
    store: &dyn Store,
    checkpoint: Option<(u64, Hash)>,
) -> Result<VerifyReport, ServiceError> {
    let mut v = Verifier::new(checkpoint);
    let mut from = 1u64;
    loop {
        let batch = store.audit_range(from, 5000).await?;
        if batch.is_empty() {
            break;
        }
        let mut go_on = true;
        for r in &batch {
            if !v.push(r) {
                go_on = false;
                break;
            }
        }
        if !go_on {
            break;
        }
        from = batch.last().map(|r| r.seq + 1).unwrap_or(from);
    }
    let head = store.audit_head().await?;
    Ok(v.finish(Some((head.size, head.chain_hash))))
}

/// Parses and checks an exported checkpoint (the JSON of `GET /v1/audit/checkpoint`, or a raw
/// signed note plus a verifier key). Returns `(size, root)` once the signature is verified.
pub fn trusted_checkpoint(json_or_note: &str, vkey: Option<&str>) -> Result<(u64, Hash), String> {
    let (note, key) = match serde_json::from_str::<steward_proto::CheckpointView>(json_or_note) {
        Ok(v) => (v.note, vkey.map(str::to_owned).unwrap_or(v.verifier_key)),
        Err(_) => (
            json_or_note.to_owned(),
            vkey.ok_or("a raw signed note needs --verifier-key")?
                .to_owned(),
        ),
    };
    let body = steward_crypto::note::verify_note(&note, &key)
        .map_err(|e| format!("checkpoint signature: {e}"))?;
    let (_, size, root) = steward_crypto::note::parse_checkpoint(&body)
        .map_err(|e| format!("checkpoint body: {e}"))?;
    Ok((size, root))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use steward_core::{AuditEvent, AuditRecord, Outcome};
    use steward_crypto::merkle;

    use super::Verifier;

    fn log(events: &[(String, String)]) -> Vec<AuditRecord> {
        let mut prev = [0u8; 32];
        let t = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        events
            .iter()
            .enumerate()
            .map(|(i, (actor, action))| {
                let seq = i as u64 + 1;
                let event = AuditEvent::new(t, actor.clone(), action.clone(), Outcome::Success)
                    .details(serde_json::json!({"n": i}));
                let leaf = merkle::leaf_hash(&event.canonical_bytes(seq));
                prev = merkle::chain_hash(&prev, &leaf);
                AuditRecord {
                    seq,
                    event,
                    leaf_hash: leaf,
                    chain_hash: prev,
                }
            })
            .collect()
    }

    fn verify(records: &[AuditRecord], checkpoint: Option<(u64, [u8; 32])>) -> super::VerifyReport {
        let mut v = Verifier::new(checkpoint);
        for r in records {
            if !v.push(r) {
                break;
            }
        }
        v.finish(None)
    }

    fn events() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec(("[a-z]{1,8}", "[a-z]{1,6}\\.[a-z]{1,6}"), 2..60)
    }

    proptest! {
        /// An honest log always verifies, against its own checkpoint too.
        #[test]
        fn honest_log_verifies(ev in events()) {
            let recs = log(&ev);
            let root = merkle::root(&recs.iter().map(|r| r.leaf_hash).collect::<Vec<_>>());
            let r = verify(&recs, Some((recs.len() as u64, root)));
            prop_assert!(r.ok, "{:?}", r);
            prop_assert_eq!(r.records, recs.len() as u64);
        }

        /// Any single edit, deletion, swap or truncation is caught, and the first bad seq is named.
        #[test]
        fn any_tampering_is_named(ev in events(), pick in any::<prop::sample::Index>(), how in 0u8..4) {
            let mut recs = log(&ev);
            let n = recs.len();
            let root = merkle::root(&recs.iter().map(|r| r.leaf_hash).collect::<Vec<_>>());
            let i = pick.index(n - 1); // never the last, so a swap has a partner
            let expected = match how {
                0 => { recs[i].event.actor.push('!'); i as u64 + 1 }
                1 => { recs.remove(i); i as u64 + 1 }
                2 => {
                    let (a, b) = (recs[i].clone(), recs[i + 1].clone());
                    recs[i] = AuditRecord { seq: a.seq, ..b };
                    recs[i + 1] = AuditRecord { seq: a.seq + 1, ..a };
                    i as u64 + 1
                }
                _ => { recs.truncate(i + 1); i as u64 + 2 }
            };
            let r = verify(&recs, Some((n as u64, root)));
            prop_assert!(!r.ok);
            prop_assert_eq!(r.first_bad_seq, Some(expected), "{:?}", r);
        }
    }
}
