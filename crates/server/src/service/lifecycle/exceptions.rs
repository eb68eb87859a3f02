//! Exception requests: the requester asks (`POST /v1/exceptions` without `requested_by`), a
//! second person approves or denies. On approval the exception joins the `exceptions` table
//! (same id), where the guard rails and the findings engine read it until it expires.

use serde_json::json;
use steward_core::Outcome;
use steward_core::lifecycle::exception::NewExceptionRequest;
use steward_core::lifecycle::{ExceptionRequest, ExceptionRequestStatus};
use steward_proto::authz as authz_wire;
use steward_store::{
    Change, ExceptionRecord, ExceptionRequestQuery, LifecycleMutation, Mutation, Page,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::rfc3339;
use crate::error::ServiceError;
use crate::service::Ctx;
use crate::state::Inner;

/// The guard rails that take exceptions.
pub const GUARD_RAILS_WITH_EXCEPTIONS: &[&str] = &[steward_policy::ENV_ISOLATION];

/// Checks what an exception names (a guard rail that takes exceptions, or a waivable finding type).
pub fn validate_exception_target(target: &str) -> Result<(), ServiceError> {
    Ok(steward_core::lifecycle::exception::validate_target(
        target,
        GUARD_RAILS_WITH_EXCEPTIONS,
    )?)
}

/// A pending or denied request in the exception view (`status` says which).
pub fn request_view(r: &ExceptionRequest) -> authz_wire::ExceptionView {
    authz_wire::ExceptionView {
        id: r.id,
        identity_id: r.identity_id,
        guard_rail: r.target.clone(),
        requested_by: r.requested_by.clone(),
        approved_by: None,
        reason: r.reason.clone(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        active: false,
        status: r.status.as_str().into(),
    }
}

/// An approved exception's status at `now`.
pub fn approved_status(expires_at: OffsetDateTime, now: OffsetDateTime) -> &'static str {
    if steward_core::lifecycle::exception::applies(expires_at, now) {
        "active"
    } else {
        "expired"
    }
}

impl Inner {
    /// `POST /v1/exceptions` without `requested_by`: the caller requests; someone else approves.
    pub async fn request_exception(
        &self,
        ctx: &Ctx,
        req: authz_wire::CreateException,
    ) -> Result<authz_wire::ExceptionView, ServiceError> {
        let now = self.now();
        let request = ExceptionRequest::new(
            Uuid::now_v7(),
            &NewExceptionRequest {
                identity_id: req.identity_id,
                target: req.guard_rail,
                reason: req.reason,
                expires_at: req.expires_at,
            },
            GUARD_RAILS_WITH_EXCEPTIONS,
            &ctx.actor,
            now,
        )?;
        self.get_identity(request.identity_id).await?;
        let event = ctx
            .event(now, "exception.request", Outcome::Success)
            .identity(request.identity_id)
            .target(format!("exception:{}", request.id))
            .reason(request.reason.clone())
            .details(json!({
                "guard_rail": request.target,
                "requested_by": request.requested_by,
                "expires_at": rfc3339(request.expires_at),
            }));
        self.store
            .commit(
                Change::new()
                    .with(Mutation::Lifecycle(
                        LifecycleMutation::InsertExceptionRequest(request.clone()),
                    ))
                    .audit(event),
            )
            .await?;
        Ok(request_view(&request))
    }

    /// `POST /v1/exceptions/{id}/approve` or `/deny`.
    pub async fn decide_exception(
        &self,
        ctx: &Ctx,
        id: Uuid,
        approve: bool,
        reason: Option<String>,
    ) -> Result<authz_wire::ExceptionView, ServiceError> {
        let before = self
            .store
            .get_exception_request(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("exception request {id}")))?;
        let now = self.now();
        let mut request = before.clone();
        let action = if approve {
            "exception.approve"
        } else {
            "exception.deny"
        };
        let decided = if approve {
            request.approve(&ctx.actor, now)
        } else {
            request.deny(&ctx.actor, now)
        };
        if let Err(e) = decided {
            if matches!(e, steward_core::DomainError::SeparationOfDuties(_)) {
                self.audit_refusal(
                    ctx,
                    action,
                    format!("exception:{id}"),
                    Some(before.identity_id),
                    &e.to_string(),
                )
                .await;
            }
            return Err(e.into());
        }
        let reason = reason
            .map(|r| steward_core::lifecycle::validate_justification("reason", &r))
            .transpose()?;
        let mut event = ctx
            .event(now, action, Outcome::Success)
            .identity(request.identity_id)
            .target(format!("exception:{id}"))
            .details(json!({
                "guard_rail": request.target,
                "requested_by": request.requested_by,
                "decided_by": ctx.actor,
                "expires_at": rfc3339(request.expires_at),
            }));
        if let Some(r) = reason {
            event = event.reason(r);
        }
        let mut change = Change::new()
            .with(Mutation::Lifecycle(
                LifecycleMutation::UpdateExceptionRequest {
                    request: request.clone(),
                    expected_version: before.version,
                },
            ))
            .audit(event);
        let view = if approve {
            let record = ExceptionRecord {
                id: request.id,
                identity_id: request.identity_id,
                guard_rail: request.target.clone(),
                requested_by: request.requested_by.clone(),
                approved_by: ctx.actor.clone(),
                reason: request.reason.clone(),
                created_at: now,
                expires_at: request.expires_at,
            };
            let view = crate::service::authz::exception_view(&record, now);
            change = change.with(Mutation::InsertException(record));
            view
        } else {
            request_view(&request)
        };
        let result = self.store.commit(change).await;
        if approve {
            self.authz.invalidate();
        }
        result?;
        Ok(view)
    }

    /// Pending or denied exception requests.
    pub async fn list_exception_requests(
        &self,
        q: &ExceptionRequestQuery,
    ) -> Result<Page<ExceptionRequest>, ServiceError> {
        if q.status == Some(ExceptionRequestStatus::Approved) {
            return Err(ServiceError::invalid(
                "approved requests are listed as exceptions (status active or expired)",
            ));
        }
        Ok(self.store.list_exception_requests(q).await?)
    }
}
