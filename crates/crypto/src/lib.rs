//! Steward's cryptography: the only server-side crate that names crypto backends or JOSE details.
//! Keys at rest, API-key hashing, JWS/JWT, JWK handling, DPoP proofs, the audit Merkle tree and signed notes, X.509 and the CA.
#![forbid(unsafe_code)]

pub mod b64;
pub mod dpop;
pub mod ecdsa;
pub mod error;
pub mod jwk;
pub mod jws;
pub mod master;
pub mod merkle;
pub mod note;
pub mod rand;
pub mod secret_hash;
pub mod x509;

pub use error::CryptoError;

/// Constant-time equality of two byte strings. Lengths are not secret: different lengths
/// return `false` immediately; equal lengths are compared without data-dependent branches.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lower-case hex of `bytes` (non-secret values only: check values, key hashes).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_semantics() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_encodes() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
