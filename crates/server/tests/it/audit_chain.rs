//! Property: the audit chain always verifies. Arbitrary rounds of concurrent changes (some
//! refused by a stale-version check, some with no audit events, some with several) go through the
//! real store's group-commit writer; `steward audit verify`'s verifier then accepts the whole log,
//! with exactly one record per event of every change that committed, in a gap-free sequence.

use std::sync::Arc;

use proptest::prelude::*;
use steward_core::{AuditEvent, Outcome};
use steward_store::{Change, Mutation, Store};

#[derive(Debug, Clone)]
struct Write {
    events: usize,
    /// Carries a stale-version update, so the whole change (events included) must be refused.
    doomed: bool,
}

fn write() -> impl Strategy<Value = Write> {
    (0usize..4, prop::bool::weighted(0.2)).prop_map(|(events, doomed)| Write { events, doomed })
}

async fn run(rounds: Vec<Vec<Write>>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = steward_store::open(&format!(
        "sqlite://{}",
        dir.path().join("steward.db").display()
    ))
    .await
    .unwrap();
    let t = time::OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
    let mut expected = 0u64;
    for (r, round) in rounds.into_iter().enumerate() {
        let mut tasks = tokio::task::JoinSet::new();
        for (n, w) in round.into_iter().enumerate() {
            let store = store.clone();
            tasks.spawn(async move {
                let mut change = Change::new();
                if w.doomed {
                    change = change.with(Mutation::UpdateSigningKey(
                        steward_store::SigningKeyRecord {
                            kid: format!("missing-{r}-{n}"),
                            alg: "EdDSA".into(),
                            sealed_private_key: vec![],
                            public_jwk: serde_json::json!({}),
                            created_at: t,
                            activates_at: t,
                            deactivates_at: t,
                            publish_until: t,
                        },
                    ));
                    change = change.with(Mutation::CheckLease {
                        name: "never-taken".into(),
                        epoch: 1,
                    });
                }
                for e in 0..w.events {
                    change = change.audit(
                        AuditEvent::new(
                            t,
                            format!("actor-{n}"),
                            format!("test.e{e}"),
                            Outcome::Success,
                        )
                        .details(serde_json::json!({"round": r, "writer": n, "event": e})),
                    );
                }
                let result = store.commit(change).await;
                (w, result)
            });
        }
        for (w, result) in tasks.join_all().await {
            if w.doomed {
                prop_assert!(result.is_err(), "a stale change committed");
            } else {
                let seqs = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(seqs.len(), w.events);
                expected += w.events as u64;
            }
        }
    }
    let report = steward_server::audit::verify_store(store.as_ref(), None)
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(report.ok, "{:?}", report);
    prop_assert_eq!(report.records, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn audit_chain_always_verifies(
        rounds in proptest::collection::vec(proptest::collection::vec(write(), 1..24), 1..5),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(rounds))?;
    }
}
