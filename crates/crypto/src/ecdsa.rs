//! ECDSA P-256 / SHA-256 verification of detached signatures over raw bytes, with keys given as
//! PEM SubjectPublicKeyInfo: what secret-scanning partners (GitHub) sign leak reports with.

use aws_lc_rs::signature::{self, UnparsedPublicKey};

use crate::CryptoError;

/// DER prefix of a SubjectPublicKeyInfo holding an uncompressed P-256 point (RFC 5480):
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (65 bytes follow) }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// A P-256 public key that verifies ASN.1 (DER) ECDSA signatures with SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct EcdsaP256PublicKey {
    spki: Vec<u8>,
}

impl std::fmt::Debug for EcdsaP256PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EcdsaP256PublicKey({})",
            crate::hex(&crate::sha256(&self.spki)[..8])
        )
    }
}

impl EcdsaP256PublicKey {
    /// Parses a DER SubjectPublicKeyInfo; only uncompressed P-256 keys are accepted.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        if der.len() != P256_SPKI_PREFIX.len() + 65
            || der[..P256_SPKI_PREFIX.len()] != P256_SPKI_PREFIX
            || der[P256_SPKI_PREFIX.len()] != 0x04
        {
            return Err(CryptoError::InvalidKey(
                "expected an uncompressed P-256 SubjectPublicKeyInfo".into(),
            ));
        }
        Ok(Self { spki: der.to_vec() })
    }

    /// Parses a `-----BEGIN PUBLIC KEY-----` PEM block (the form GitHub publishes).
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let body = pem
            .trim()
            .strip_prefix("-----BEGIN PUBLIC KEY-----")
            .and_then(|s| s.trim_end().strip_suffix("-----END PUBLIC KEY-----"))
            .ok_or_else(|| CryptoError::Malformed("expected a PEM PUBLIC KEY block".into()))?;
        let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = crate::b64::std_decode(&b64)
            .map_err(|_| CryptoError::Malformed("PEM body is not base64".into()))?;
        Self::from_spki_der(&der)
    }

    /// The uncompressed point as a PEM SubjectPublicKeyInfo (tests, configuration output).
    pub fn from_point(point: &[u8]) -> Result<Self, CryptoError> {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(point);
        Self::from_spki_der(&der)
    }

    pub fn to_pem(&self) -> String {
        let b64 = crate::b64::std_encode(&self.spki);
        let mut s = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            s.push_str(&String::from_utf8_lossy(chunk));
            s.push('\n');
        }
        s.push_str("-----END PUBLIC KEY-----\n");
        s
    }

    /// Verifies a DER-encoded ECDSA signature over `msg` (SHA-256).
    pub fn verify_asn1(&self, msg: &[u8], signature_der: &[u8]) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &self.spki)
            .verify(msg, signature_der)
            .map_err(|_| CryptoError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    use super::*;

    fn keypair() -> EcdsaKeyPair {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap()
    }

    #[test]
    fn verifies_and_rejects() {
        let kp = keypair();
        let key = EcdsaP256PublicKey::from_point(kp.public_key().as_ref()).unwrap();
        let key = EcdsaP256PublicKey::from_pem(&key.to_pem()).unwrap();
        let msg = br#"[{"token":"x","type":"steward_api_key","url":"https://example.invalid","source":"content"}]"#;
        let sig = kp.sign(&SystemRandom::new(), msg).unwrap();
        key.verify_asn1(msg, sig.as_ref()).unwrap();
        let mut other = msg.to_vec();
        other[3] ^= 1;
        assert_eq!(
            key.verify_asn1(&other, sig.as_ref()),
            Err(CryptoError::BadSignature)
        );
        let wrong = EcdsaP256PublicKey::from_point(keypair().public_key().as_ref()).unwrap();
        assert_eq!(
            wrong.verify_asn1(msg, sig.as_ref()),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            key.verify_asn1(msg, b"\x30\x00"),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn rejects_other_keys() {
        assert!(EcdsaP256PublicKey::from_pem("nope").is_err());
        assert!(
            EcdsaP256PublicKey::from_pem(
                "-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----"
            )
            .is_err()
        );
        // An Ed25519 SPKI is not a P-256 key.
        let ed = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            EcdsaP256PublicKey::from_pem(ed),
            Err(CryptoError::InvalidKey(_))
        ));
    }

    /// Interop: a key and signature made by the openssl CLI (GitHub signs the same way).
    #[test]
    fn verifies_openssl_signatures() {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .current_dir(dir.path())
                .args(args)
                .output()
                .expect("openssl CLI");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::write(dir.path().join("body.json"), b"[{\"token\":\"t\"}]").unwrap();
        run(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "k.pem",
        ]);
        run(&["ec", "-in", "k.pem", "-pubout", "-out", "pub.pem"]);
        run(&[
            "dgst",
            "-sha256",
            "-sign",
            "k.pem",
            "-out",
            "sig.der",
            "body.json",
        ]);
        let pem = std::fs::read_to_string(dir.path().join("pub.pem")).unwrap();
        let sig = std::fs::read(dir.path().join("sig.der")).unwrap();
        let key = EcdsaP256PublicKey::from_pem(&pem).unwrap();
        key.verify_asn1(b"[{\"token\":\"t\"}]", &sig).unwrap();
        assert!(key.verify_asn1(b"[{\"token\":\"u\"}]", &sig).is_err());
    }
}
