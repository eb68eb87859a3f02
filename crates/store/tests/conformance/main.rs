//! The storage conformance suite: every behaviour of the `Store` contract, written once against
//! `Arc<dyn Store>` and run on both backends as `sqlite::<test>` and `postgres::<test>`.
//!
//! SQLite tests use a fresh file in a temporary directory. PostgreSQL tests create a fresh
//! database per test on the server named by `STEWARD_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and drop it afterwards; if the server is
//! unreachable they fail, unless `STEWARD_SKIP_POSTGRES=1` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod authz;
mod commits;
mod console;
mod findings;
mod identity_index;
mod leases;
mod lifecycle;
mod lists;
mod misc;
mod opening;
mod pki;
mod records;
mod support;
mod trust;
mod usage;

conformance! {
    stores {
        records::owner_round_trip,
        records::identity_round_trip,
        records::credential_round_trip,
        records::find_credential_by_hash,
        records::bulk_insert_round_trip,
        records::duplicate_identity_name_conflicts,
        records::duplicate_owner_name_conflicts,
        records::duplicate_secret_hash_conflicts,
        records::stale_version_is_rejected,
        records::update_of_missing_row_is_not_found,
        commits::change_is_atomic,
        commits::commit_assigns_contiguous_seqs,
        commits::group_commit_under_concurrency,
        commits::audit_only_burst_is_durable_and_ordered,
        commits::unstorable_text_is_refused_alone,
        misc::revoke_identity_credentials,
        misc::touch_credential_keeps_the_latest,
        misc::touching_many_credentials_at_once,
        misc::revoked_tokens,
        misc::claim_once_detects_replays,
        misc::claim_once_audited_records_each_outcome,
        misc::purge_removes_only_expired,
        misc::settings,
        misc::signing_keys,
        misc::checkpoints,
        misc::ping_and_count,
        lists::list_identities_filters,
        lists::identity_pagination_walks_every_row_once,
        lists::list_owners_filters_and_pages,
        lists::page_size_is_clamped,
        audit::audit_records_round_trip,
        audit::audit_filters,
        audit::audit_pagination,
        audit::audit_range_and_leaf_hashes,
        findings::findings_round_trip_and_dedup,
        findings::findings_and_risks_in_bulk,
        pki::pki_objects_round_trip,
        authz::policy_versions_and_head,
        authz::exceptions,
        trust::trust_policies_round_trip,
        console::console_sessions_lifecycle,
        console::console_identity_and_finding_stats,
        console::console_name_prefix_search,
        console::console_risk_band_filter,
        console::console_audit_newest_first_and_counts,
        leases::lease_contention_has_one_winner,
        leases::lease_expires_and_is_taken_over_with_a_new_epoch,
        leases::lease_renewal_keeps_the_epoch,
        leases::lease_release_frees_it_at_once,
        usage::usage_batches_merge,
        usage::credential_sources_are_bounded,
        usage::purge_usage_removes_only_old_rows,
        usage::identity_risk_round_trip_and_order,
        usage::bulk_reads_by_identity_range,
        usage::governance_identity_fields_round_trip,
        lifecycle::reviews_round_trip,
        lifecycle::jit_grants_round_trip,
        lifecycle::exception_requests_round_trip,
        lifecycle::rotation_flags,
        lifecycle::lifecycle_counts_for_the_report,
    }
    databases {
        commits::two_instances_share_one_log,
        commits::reopen_keeps_everything,
        commits::concurrent_opens_migrate_once,
        commits::poisoned_change_fails_alone,
        commits::moved_head_fails_the_one_round_trip_append,
        leases::two_nodes_contend_for_leases,
    }
}
