//! OAuth scopes: syntax (RFC 6749 §3.3), parsing of space-separated scope strings, and subset rules.
//! Scope arithmetic only ever narrows: a grant is always a subset of what the identity allows.

use std::collections::BTreeSet;

use crate::DomainError;

/// Maximum length of one scope token.
pub const MAX_SCOPE_LEN: usize = 128;
/// Maximum number of scopes on one identity or in one request.
pub const MAX_SCOPES: usize = 64;

/// Checks one scope token: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )` (RFC 6749 §3.3).
pub fn validate_scope(s: &str) -> Result<(), DomainError> {
    if s.is_empty() || s.len() > MAX_SCOPE_LEN {
        return Err(DomainError::invalid(
            "scopes",
            format!("each scope must be 1 to {MAX_SCOPE_LEN} characters"),
        ));
    }
    if !s
        .bytes()
        .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
    {
        return Err(DomainError::invalid(
            "scopes",
            format!("scope {s:?} contains a character RFC 6749 §3.3 does not allow"),
        ));
    }
    Ok(())
}

/// Validates and de-duplicates a list of scopes, keeping a stable sorted order.
pub fn normalize_scopes(scopes: &[String]) -> Result<Vec<String>, DomainError> {
    if scopes.len() > MAX_SCOPES {
        return Err(DomainError::invalid(
            "scopes",
            format!("at most {MAX_SCOPES} scopes are allowed"),
        ));
    }
    let mut set = BTreeSet::new();
    for s in scopes {
        validate_scope(s)?;
        set.insert(s.clone());
    }
    Ok(set.into_iter().collect())
}

/// Parses a space-separated `scope` parameter. Empty or whitespace-only yields an empty list.
pub fn parse_scope_param(param: &str) -> Result<Vec<String>, DomainError> {
    let parts: Vec<String> = param
        .split(' ')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    normalize_scopes(&parts)
}

/// Joins scopes for the `scope` claim and response field.
pub fn join_scopes(scopes: &[String]) -> String {
    scopes.join(" ")
}

/// Is every requested scope among the allowed ones?
pub fn is_subset(requested: &[String], allowed: &[String]) -> bool {
    requested.iter().all(|r| allowed.iter().any(|a| a == r))
}

/// The scopes present in both lists, in the order of `a`.
pub fn intersect(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|x| b.contains(x)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn scope_syntax() {
        assert!(validate_scope("payments:read").is_ok());
        assert!(validate_scope("a/b.c-d_e").is_ok());
        for bad in ["", "a b", "quote\"", "back\\slash", "é"] {
            assert!(validate_scope(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parse_and_subset() {
        let p = parse_scope_param("  b a  a ").unwrap();
        assert_eq!(p, v(&["a", "b"]));
        assert!(is_subset(&p, &v(&["a", "b", "c"])));
        assert!(!is_subset(&v(&["a", "d"]), &v(&["a", "b"])));
        assert!(is_subset(&[], &v(&["a"])));
        assert_eq!(
            intersect(&v(&["a", "b", "c"]), &v(&["c", "a"])),
            v(&["a", "c"])
        );
    }
}
