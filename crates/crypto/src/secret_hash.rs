//! Keyed hashing of high-entropy API keys for storage and lookup (HMAC-SHA256 under a server key).
//! A database leak alone does not allow offline verification of guessed keys without the server key.

use aws_lc_rs::hmac;
use zeroize::Zeroize;

/// HMAC-SHA256 with a server key. Cheap to clone and call: the HMAC key schedule is precomputed.
/// A presented key is checked by hashing it once (the hash is also the look-up key) and comparing
/// with the stored hash through `crate::constant_time_eq`.
#[derive(Clone)]
pub struct SecretHasher {
    key: hmac::Key,
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHasher(<redacted>)")
    }
}

impl SecretHasher {
    pub fn new(key: [u8; 32]) -> Self {
        let mut key = key;
        let hasher = Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
        };
        key.zeroize();
        hasher
    }

    /// `HMAC-SHA256(server_key, secret)`.
    pub fn hash(&self, secret: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.key, secret);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_key_dependent() {
        let h = SecretHasher::new([1u8; 32]);
        let a = h.hash(b"stw_live_abc");
        assert_eq!(a, h.hash(b"stw_live_abc"));
        assert_eq!(a, h.clone().hash(b"stw_live_abc"));
        assert_ne!(a, h.hash(b"stw_live_abd"));
        assert_ne!(a, SecretHasher::new([2u8; 32]).hash(b"stw_live_abc"));
        // It is HMAC-SHA256 (cross-check with the one-shot API).
        let k = hmac::Key::new(hmac::HMAC_SHA256, &[1u8; 32]);
        assert_eq!(a.as_slice(), hmac::sign(&k, b"stw_live_abc").as_ref());
    }

    #[test]
    fn debug_redacts() {
        assert_eq!(
            format!("{:?}", SecretHasher::new([3u8; 32])),
            "SecretHasher(<redacted>)"
        );
    }
}
