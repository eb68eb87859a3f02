//! C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys, and C2SP tlog-checkpoint bodies:
//! how Steward publishes signed audit-log checkpoints that third parties can verify.

use crate::{CryptoError, b64};
use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use zeroize::Zeroizing;

/// Signature type byte for Ed25519 in signed-note keys.
const ALG_ED25519: u8 = 0x01;
/// Largest note accepted by [`verify_note`].
pub const MAX_NOTE_LEN: usize = 1 << 20;
/// Most signature lines a note may carry (same limit as the Go implementation).
const MAX_SIGNATURES: usize = 100;
const SIG_PREFIX: &str = "\u{2014} ";

/// An Ed25519 signed-note signer. `Debug` redacts the private key.
pub struct NoteSigner {
    name: String,
    kp: Ed25519KeyPair,
    pubkey: [u8; 32],
    key_hash: [u8; 4],
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("private", &"<redacted>")
            .finish()
    }
}

/// Key names: non-empty, no whitespace, no `+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('+')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// First 4 bytes of SHA-256(name || "\n" || alg || pubkey).
fn key_hash(name: &str, alg_and_key: &[u8]) -> [u8; 4] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(alg_and_key);
    let d = ctx.finish();
    let mut h = [0u8; 4];
    h.copy_from_slice(&d.as_ref()[..4]);
    h
}

impl NoteSigner {
    /// A new random signer; also returns the PKCS#8 DER to seal at rest.
    pub fn generate(name: &str) -> Result<(Self, Zeroizing<Vec<u8>>), CryptoError> {
        let kp = Ed25519KeyPair::generate().map_err(|_| CryptoError::Internal)?;
        let pkcs8 = Zeroizing::new(
            kp.to_pkcs8()
                .map_err(|_| CryptoError::Internal)?
                .as_ref()
                .to_vec(),
        );
        Ok((Self::build(name, kp)?, pkcs8))
    }

    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| {
            CryptoError::InvalidKey("not a valid Ed25519 PKCS#8 private key".into())
        })?;
        Self::build(name, kp)
    }

    fn build(name: &str, kp: Ed25519KeyPair) -> Result<Self, CryptoError> {
        if !valid_name(name) {
            return Err(CryptoError::InvalidKey(
                "note signer name must be non-empty without spaces or '+'".into(),
            ));
        }
        let pubkey: [u8; 32] = kp
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| CryptoError::Internal)?;
        let mut ak = [0u8; 33];
        ak[0] = ALG_ED25519;
        ak[1..].copy_from_slice(&pubkey);
        Ok(Self {
            name: name.to_owned(),
            key_hash: key_hash(name, &ak),
            kp,
            pubkey,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<name>+<8 hex of key hash>+<base64std(0x01 || pubkey)>`.
    pub fn verifier_key(&self) -> String {
        let mut ak = [0u8; 33];
        ak[0] = ALG_ED25519;
        ak[1..].copy_from_slice(&self.pubkey);
        format!(
            "{}+{}+{}",
            self.name,
            crate::hex(&self.key_hash),
            b64::std_encode(&ak)
        )
    }

    /// Signs `body` (non-empty, ending in `'\n'`, no empty lines, no control characters other than newline).
    /// Returns `body + "\n" + "— <name> <base64std(keyhash || sig)>\n"`.
    pub fn sign(&self, body: &str) -> Result<String, CryptoError> {
        check_text(body)?;
        if body.starts_with('\n') || body.contains("\n\n") {
            return Err(CryptoError::Malformed(
                "note text must not contain empty lines".into(),
            ));
        }
        let sig = self
            .kp
            .try_sign(body.as_bytes())
            .map_err(|_| CryptoError::Internal)?;
        let mut blob = [0u8; 4 + 64];
        blob[..4].copy_from_slice(&self.key_hash);
        blob[4..].copy_from_slice(sig.as_ref());
        Ok(format!(
            "{body}\n{SIG_PREFIX}{} {}\n",
            self.name,
            b64::std_encode(&blob)
        ))
    }
}

/// Text must be non-empty, end with a newline, and contain no control characters other than newline.
fn check_text(text: &str) -> Result<(), CryptoError> {
    if !text.ends_with('\n') {
        return Err(CryptoError::Malformed(
            "note text must end with a newline".into(),
        ));
    }
    if text.chars().any(|c| c != '\n' && c.is_control()) {
        return Err(CryptoError::Malformed(
            "note contains control characters".into(),
        ));
    }
    Ok(())
}

/// Checkpoint body per C2SP tlog-checkpoint: `"<origin>\n<size>\n<base64std(root)>\n"`.
/// `origin` must be a single non-empty line (it is the log's identity; callers pass a constant).
pub fn checkpoint_body(origin: &str, size: u64, root: &[u8; 32]) -> String {
    format!("{origin}\n{size}\n{}\n", b64::std_encode(root))
}

/// Parses a checkpoint body into `(origin, size, root)`. Extension lines after the root are allowed and ignored.
pub fn parse_checkpoint(body: &str) -> Result<(String, u64, [u8; 32]), CryptoError> {
    let bad = |m: &str| CryptoError::Malformed(format!("checkpoint: {m}"));
    let text = body
        .strip_suffix('\n')
        .ok_or_else(|| bad("must end with a newline"))?;
    let mut lines = text.split('\n');
    let origin = lines
        .next()
        .filter(|o| !o.is_empty())
        .ok_or_else(|| bad("missing origin"))?;
    let size_s = lines.next().ok_or_else(|| bad("missing size"))?;
    let canonical = !size_s.is_empty()
        && size_s.bytes().all(|b| b.is_ascii_digit())
        && (size_s == "0" || !size_s.starts_with('0'));
    if !canonical {
        return Err(bad("size must be a decimal number without leading zeros"));
    }
    let size: u64 = size_s.parse().map_err(|_| bad("size out of range"))?;
    let root_s = lines.next().ok_or_else(|| bad("missing root hash"))?;
    let root: [u8; 32] = b64::std_decode(root_s)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| bad("root hash must be base64 of 32 bytes"))?;
    if lines.any(str::is_empty) {
        return Err(bad("empty extension line"));
    }
    Ok((origin.to_owned(), size, root))
}

/// A parsed verifier key.
struct Verifier {
    name: String,
    hash: [u8; 4],
    pubkey: Vec<u8>,
}

fn parse_vkey(vkey: &str) -> Result<Verifier, CryptoError> {
    let bad = || CryptoError::InvalidKey("malformed note verifier key".into());
    let mut parts = vkey.splitn(3, '+');
    let (Some(name), Some(hash_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if !valid_name(name) || hash_hex.len() != 8 || !hash_hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(bad());
    }
    let hash = u32::from_str_radix(hash_hex, 16)
        .map_err(|_| bad())?
        .to_be_bytes();
    let key = b64::std_decode(key_b64).map_err(|_| bad())?;
    match key.first() {
        Some(&ALG_ED25519) if key.len() == 33 => {}
        Some(_) if !key.is_empty() => {
            return Err(CryptoError::UnsupportedAlgorithm(
                "note verifier key type is not Ed25519".into(),
            ));
        }
        _ => return Err(bad()),
    }
    if key_hash(name, &key) != hash {
        return Err(CryptoError::InvalidKey(
            "note verifier key hash does not match".into(),
        ));
    }
    Ok(Verifier {
        name: name.to_owned(),
        hash,
        pubkey: key[1..].to_vec(),
    })
}

/// Verifies that `note` carries a valid signature by `vkey` and returns the signed text.
/// Signatures by other keys are ignored; malformed signature lines, a text not ending in `'\n'`, notes over
/// 1 MiB, and a missing or invalid signature by `vkey` are errors.
pub fn verify_note(note: &str, vkey: &str) -> Result<String, CryptoError> {
    if note.len() > MAX_NOTE_LEN {
        return Err(CryptoError::Malformed("note exceeds 1 MiB".into()));
    }
    let v = parse_vkey(vkey)?;
    check_text(note)?;
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| CryptoError::Malformed("note has no signature block".into()))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if sigs.is_empty() {
        return Err(CryptoError::Malformed("note has no signatures".into()));
    }
    let bad_line = || CryptoError::Malformed("malformed note signature line".into());
    let mut verified = false;
    // `sigs` ends with '\n' (checked above), so the last split element is empty.
    let lines: Vec<&str> = sigs[..sigs.len() - 1].split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(CryptoError::Malformed(
            "note has too many signatures".into(),
        ));
    }
    for line in lines {
        let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(bad_line)?;
        let (name, sig_b64) = rest.split_once(' ').ok_or_else(bad_line)?;
        let blob = b64::std_decode(sig_b64).map_err(|_| bad_line())?;
        if !valid_name(name) || blob.len() < 5 {
            return Err(bad_line());
        }
        if name != v.name || blob[..4] != v.hash {
            continue;
        }
        UnparsedPublicKey::new(&signature::ED25519, &v.pubkey)
            .verify(text.as_bytes(), &blob[4..])
            .map_err(|_| CryptoError::BadSignature)?;
        verified = true;
    }
    if verified {
        Ok(text.to_owned())
    } else {
        Err(CryptoError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "steward.example/audit";

    #[test]
    fn sign_verify_round_trip() {
        let (s, pkcs8) = NoteSigner::generate(ORIGIN).unwrap();
        let body = checkpoint_body(ORIGIN, 42, &[7u8; 32]);
        let note = s.sign(&body).unwrap();
        assert!(note.starts_with(&body));
        assert!(note.contains(&format!("\n\n\u{2014} {ORIGIN} ")));
        assert!(note.ends_with('\n'));
        assert_eq!(verify_note(&note, &s.verifier_key()).unwrap(), body);
        // Reloaded signer verifies the same way and signs identically (Ed25519 is deterministic).
        let s2 = NoteSigner::from_pkcs8(ORIGIN, &pkcs8).unwrap();
        assert_eq!(s2.verifier_key(), s.verifier_key());
        assert_eq!(s2.sign(&body).unwrap(), note);
    }

    #[test]
    fn tampering_and_wrong_keys_fail() {
        let (s, _) = NoteSigner::generate(ORIGIN).unwrap();
        let body = checkpoint_body(ORIGIN, 42, &[7u8; 32]);
        let note = s.sign(&body).unwrap();
        let modified = note.replacen("\n42\n", "\n43\n", 1);
        assert_ne!(modified, note);
        assert_eq!(
            verify_note(&modified, &s.verifier_key()),
            Err(CryptoError::BadSignature)
        );
        // A different key with the same name: no matching signature (key hash differs).
        let (other, _) = NoteSigner::generate(ORIGIN).unwrap();
        assert_eq!(
            verify_note(&note, &other.verifier_key()),
            Err(CryptoError::BadSignature)
        );
        // Tampered verifier key hash.
        let vk = s.verifier_key();
        let mut parts: Vec<String> = vk.splitn(3, '+').map(str::to_owned).collect();
        parts[1] = "00000000".into();
        assert!(matches!(
            verify_note(&note, &parts.join("+")),
            Err(CryptoError::InvalidKey(_))
        ));
        // Corrupted signature bytes.
        let line_start = note.rfind('\u{2014}').unwrap();
        let (head, line) = note.split_at(line_start);
        let b64_part = line.trim_end().rsplit(' ').next().unwrap();
        let mut blob = b64::std_decode(b64_part).unwrap();
        blob[10] ^= 1;
        let forged = format!("{head}\u{2014} {ORIGIN} {}\n", b64::std_encode(&blob));
        assert_eq!(verify_note(&forged, &vk), Err(CryptoError::BadSignature));
    }

    #[test]
    fn other_signers_are_ignored_but_malformed_lines_are_not() {
        let (a, _) = NoteSigner::generate("a.example").unwrap();
        let (b, _) = NoteSigner::generate("b.example").unwrap();
        let body = "hello\n";
        let na = a.sign(body).unwrap();
        let nb = b.sign(body).unwrap();
        // Co-signed note: text + blank line + both signature lines.
        let both = format!("{na}{}", &nb[body.len() + 1..]);
        assert_eq!(verify_note(&both, &a.verifier_key()).unwrap(), body);
        assert_eq!(verify_note(&both, &b.verifier_key()).unwrap(), body);
        let broken = format!("{na}-- not a signature line\n");
        assert!(matches!(
            verify_note(&broken, &a.verifier_key()),
            Err(CryptoError::Malformed(_))
        ));
        assert!(verify_note(body, &a.verifier_key()).is_err());
        assert!(verify_note(na.trim_end(), &a.verifier_key()).is_err());
        let huge = format!("{}\n\n", "a".repeat(MAX_NOTE_LEN));
        assert!(matches!(
            verify_note(&huge, &a.verifier_key()),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn sign_rejects_bad_bodies() {
        let (s, _) = NoteSigner::generate(ORIGIN).unwrap();
        for bad in ["no newline", "", "\n", "a\n\nb\n", "a\rb\n", "\nstart\n"] {
            assert!(
                matches!(s.sign(bad), Err(CryptoError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn verifier_key_format() {
        let (s, _) = NoteSigner::generate(ORIGIN).unwrap();
        let vk = s.verifier_key();
        let parts: Vec<&str> = vk.splitn(3, '+').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], ORIGIN);
        assert_eq!(parts[1].len(), 8);
        assert!(
            parts[1]
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        let key = b64::std_decode(parts[2]).unwrap();
        assert_eq!(key.len(), 33);
        assert_eq!(key[0], 0x01);
        assert_eq!(&key[1..], s.pubkey.as_slice());
        // Key hash = SHA-256(name || "\n" || 0x01 || pubkey)[..4].
        let mut pre = format!("{ORIGIN}\n").into_bytes();
        pre.extend_from_slice(&key);
        let d = digest::digest(&digest::SHA256, &pre);
        assert_eq!(parts[1], crate::hex(&d.as_ref()[..4]));
        assert!(NoteSigner::generate("has space").is_err());
        assert!(NoteSigner::generate("has+plus").is_err());
        assert!(NoteSigner::generate("").is_err());
    }

    #[test]
    fn go_sumdb_note_vector() {
        // Known-answer test from golang.org/x/mod/sumdb/note (note_test.go: TestNewVerifier / TestOpen).
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let note = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n\
                    \n\
                    \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        assert_eq!(
            verify_note(note, vkey).unwrap(),
            "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
        );
    }

    #[test]
    fn checkpoint_round_trip() {
        let root = [0xabu8; 32];
        let body = checkpoint_body(ORIGIN, 1234, &root);
        assert_eq!(
            body,
            format!("{ORIGIN}\n1234\n{}\n", b64::std_encode(&root))
        );
        assert_eq!(
            parse_checkpoint(&body).unwrap(),
            (ORIGIN.to_owned(), 1234, root)
        );
        assert_eq!(
            parse_checkpoint(&checkpoint_body(ORIGIN, 0, &root))
                .unwrap()
                .1,
            0
        );
        assert_eq!(
            parse_checkpoint(&checkpoint_body(ORIGIN, u64::MAX, &root))
                .unwrap()
                .1,
            u64::MAX
        );
        // Extension lines are allowed.
        assert!(parse_checkpoint(&format!("{body}ext line\n")).is_ok());
        let r = b64::std_encode(&root);
        for bad in [
            format!("{ORIGIN}\n1234\n{r}"),
            format!("{ORIGIN}\n01234\n{r}\n"),
            format!("{ORIGIN}\n+1\n{r}\n"),
            format!("{ORIGIN}\n\n{r}\n"),
            format!("{ORIGIN}\n18446744073709551616\n{r}\n"),
            format!("\n1\n{r}\n"),
            format!("{ORIGIN}\n1\n{}\n", b64::std_encode(&[0u8; 31])),
            format!("{ORIGIN}\n1\n"),
            format!("{body}\n"),
        ] {
            assert!(parse_checkpoint(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_redacts() {
        let (s, pkcs8) = NoteSigner::generate(ORIGIN).unwrap();
        let d = format!("{s:?}");
        assert!(d.contains("<redacted>"));
        assert!(!d.contains(&b64::std_encode(&pkcs8)));
    }
}
