//! The authentication decision as pure functions: may a credential authenticate its identity at
//! `now`, and is a token issued at `iat` (from a credential, or none) still acceptable at `now`.
//!
//! The server's token path and token verification apply exactly these checks (credential usable,
//! identity active and unexpired, not cut off by `tokens_revoked_before`); here they are one
//! function each, so properties over arbitrary lifecycles can be stated against them.

use time::OffsetDateTime;

use crate::{Credential, Identity};

/// Client authentication: the credential must belong to the identity and be usable, and the
/// identity must be allowed to authenticate at `now`.
pub fn client_may_authenticate(
    identity: &Identity,
    credential: &Credential,
    now: OffsetDateTime,
) -> Result<(), &'static str> {
    if credential.identity_id != identity.id {
        return Err("credential belongs to another identity");
    }
    credential.check_usable(now)?;
    identity.check_can_authenticate(now)
}

/// Token acceptance: the identity must still accept tokens issued at `issued_at`, and the
/// credential the token came from (if any) must belong to it and still be usable.
pub fn token_acceptable(
    identity: &Identity,
    credential: Option<&Credential>,
    issued_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<(), &'static str> {
    identity.token_still_valid(issued_at, now)?;
    if let Some(c) = credential {
        if c.identity_id != identity.id {
            return Err("token credential belongs to another identity");
        }
        c.check_usable(now)?;
    }
    Ok(())
}

/// What retiring (or offboarding) does to an identity's credentials, as the store's bulk
/// revocation does: each credential not already revoked at or before `at` is revoked at `at`.
pub fn revoke_all_at(credentials: &mut [Credential], at: OffsetDateTime, reason: &str) {
    for c in credentials {
        if c.revoked_at.is_none_or(|r| r > at) {
            c.revoked_at = Some(at);
            c.revoke_reason = Some(reason.to_owned());
            c.version += 1;
        }
    }
}
