//! Fuzzes the audit verifier with hostile records (as an attacker with database access would
//! write them): it never panics, and never accepts a log whose stored hashes don't match.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_core::AuditRecord;
use steward_server::audit::Verifier;

fuzz_target!(|data: &[u8]| {
    let Ok(records) = serde_json::from_slice::<Vec<AuditRecord>>(data) else {
        return;
    };
    let mut v = Verifier::new(None);
    let mut all_pushed = true;
    for r in &records {
        if !v.push(r) {
            all_pushed = false;
            break;
        }
    }
    let report = v.finish(None);
    if all_pushed && !records.is_empty() {
        // Accepted records must hash correctly: recompute independently.
        let mut prev = [0u8; 32];
        for r in &records {
            let leaf = steward_crypto::merkle::leaf_hash(&r.event.canonical_bytes(r.seq));
            prev = steward_crypto::merkle::chain_hash(&prev, &leaf);
            assert_eq!(r.leaf_hash, leaf);
            assert_eq!(r.chain_hash, prev);
        }
        assert!(report.ok);
    }
});
