//! The master key that protects every other key at rest: loading/creating its file, HKDF derivation,
//! and AES-256-GCM sealing of private keys and other secrets stored in the database.

use crate::CryptoError;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use std::io::{Read, Write};
use std::path::Path;
use zeroize::{Zeroize, Zeroizing};

/// Version byte of the sealed format.
const SEAL_V1: u8 = 1;
const TAG_LEN: usize = 16;
/// HKDF salt; changing it changes every derived key.
const HKDF_SALT: &[u8] = b"steward/v1";
/// Largest key file we are willing to read (the real content is 45 bytes).
const MAX_KEY_FILE: u64 = 4096;

/// 32-byte master key that protects keys at rest. `Debug` prints `MasterKey(<redacted>)`.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        crate::rand::fill(k.as_mut());
        Self(k)
    }

    /// Parses standard or URL-safe base64 (padding optional) of exactly 32 bytes; surrounding whitespace is trimmed.
    pub fn from_base64(s: &str) -> Result<Self, CryptoError> {
        let bytes = crate::b64::lenient_decode(s.trim())
            .map_err(|_| CryptoError::InvalidKey("master key is not valid base64".into()))?;
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            CryptoError::InvalidKey(format!(
                "master key must be 32 bytes, got {} bytes",
                bytes.len()
            ))
        })?;
        Ok(Self(Zeroizing::new(arr)))
    }

    /// Standard base64 (with padding) of the key. Handle the result as a secret.
    pub fn to_base64(&self) -> String {
        crate::b64::std_encode(self.0.as_ref())
    }

    /// Reads the key file, or creates it when absent (mode 0600, base64 + `'\n'`).
    ///
    /// Creation writes a private temporary file and publishes it with a hard link, which fails if the
    /// path already exists: two processes racing to create the key can never both win, and a reader
    /// never sees a half-written file. Returns `(key, created)`.
    /// On Unix, refuses a key file that grants any access to group or others.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), CryptoError> {
        // A lost creation race means the file now exists: load it on the next iteration.
        for _ in 0..3 {
            match Self::load(path) {
                Ok(k) => return Ok((k, false)),
                Err(LoadError::NotFound) => {}
                Err(LoadError::Other(e)) => return Err(e),
            }
            let key = Self::generate();
            match key.create_file(path) {
                Ok(true) => return Ok((key, true)),
                Ok(false) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CryptoError::Io(format!(
            "master key file {}: could neither read nor create it",
            path.display()
        )))
    }

    fn load(path: &Path) -> Result<Self, LoadError> {
        let io_err = |what: &str, e: std::io::Error| {
            LoadError::Other(CryptoError::Io(format!(
                "master key file {}: {what}: {e}",
                path.display()
            )))
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LoadError::NotFound),
            Err(e) => return Err(io_err("cannot open", e)),
        };
        // Check the opened file itself (fstat), not the path, so the check and the read agree.
        let meta = file.metadata().map_err(|e| io_err("cannot stat", e))?;
        if !meta.is_file() {
            return Err(LoadError::Other(CryptoError::Io(format!(
                "master key file {} is not a regular file",
                path.display()
            ))));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(LoadError::Other(CryptoError::Io(format!(
                    "master key file {} has permissions {mode:03o}, which allow access by group or others; \
                     run `chmod 600 {}`",
                    path.display(),
                    path.display()
                ))));
            }
        }
        if meta.len() > MAX_KEY_FILE {
            return Err(LoadError::Other(CryptoError::InvalidKey(format!(
                "master key file {} is too large to be a key file",
                path.display()
            ))));
        }
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_KEY_FILE)
            .read_to_string(&mut text)
            .map_err(|e| io_err("cannot read", e))?;
        Self::from_base64(&text).map_err(|e| {
            LoadError::Other(CryptoError::InvalidKey(format!(
                "master key file {}: {}",
                path.display(),
                match e {
                    CryptoError::InvalidKey(m) => m,
                    other => other.to_string(),
                }
            )))
        })
    }

    /// Creates the key file atomically. `Ok(false)` if someone else created it first.
    fn create_file(&self, path: &Path) -> Result<bool, CryptoError> {
        let io_err = |what: &str, e: std::io::Error| {
            CryptoError::Io(format!("master key file {}: {what}: {e}", path.display()))
        };
        let mut content = Zeroizing::new(self.to_base64());
        content.push('\n');

        let file_name = path.file_name().ok_or_else(|| {
            CryptoError::Io(format!(
                "master key path {} has no file name",
                path.display()
            ))
        })?;
        let mut tmp_name = file_name.to_os_string();
        tmp_name.push(format!(".tmp-{}", crate::rand::token(9)));
        let tmp = path.with_file_name(tmp_name);

        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let write = |p: &Path| -> std::io::Result<()> {
            let mut f = opts.open(p)?;
            f.write_all(content.as_bytes())?;
            f.sync_all()
        };
        if let Err(e) = write(&tmp) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err("cannot create", e));
        }
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            // Filesystems without hard links: fall back to exclusive creation in place.
            Err(_) => match write(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
                Err(e) => return Err(io_err("cannot create", e)),
            },
        }
        // Make the new directory entry durable: losing the master key loses every sealed key.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(true)
    }

    /// HKDF-SHA256 (RFC 5869) with salt `"steward/v1"`, IKM = master key, info = `label`, 32-byte output.
    /// Different labels give independent keys.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        // Extract: PRK = HMAC(salt, IKM). Expand for L = HashLen: T(1) = HMAC(PRK, info || 0x01).
        let prk = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, HKDF_SALT),
            self.0.as_ref(),
        );
        let prk_key = hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref());
        let mut ctx = hmac::Context::with_key(&prk_key);
        ctx.update(label.as_bytes());
        ctx.update(&[1u8]);
        let okm = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(okm.as_ref());
        out
    }

    /// A short non-secret value identifying this master key (32 hex chars), for detecting a wrong key at startup.
    pub fn check_value(&self) -> String {
        let mut d = Zeroizing::new(self.derive("check-value"));
        let hex = crate::hex(&d[..16]);
        d.zeroize();
        hex
    }

    fn seal_key(&self) -> LessSafeKey {
        let k = Zeroizing::new(self.derive("seal"));
        match UnboundKey::new(&AES_256_GCM, k.as_ref()) {
            Ok(u) => LessSafeKey::new(u),
            // Only possible for a wrong key length, which is a constant here.
            Err(_) => crate::rand::fatal("AES-256-GCM key setup failed"),
        }
    }

    /// AES-256-GCM under `derive("seal")` with a random 96-bit nonce.
    /// Output: `0x01 || nonce(12) || ciphertext || tag(16)`. The GCM AAD is `0x01 || aad`, so both the
    /// format version and the caller's context (e.g. the kid) are authenticated.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let key = self.seal_key();
        let mut nonce = [0u8; NONCE_LEN];
        crate::rand::fill(&mut nonce);
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(SEAL_V1);
        out.extend_from_slice(&nonce);
        // Encrypt in place inside the pre-sized output buffer: no reallocation, so no stray plaintext copies.
        out.extend_from_slice(plaintext);
        let full_aad = full_aad(aad);
        let tag = match key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&full_aad),
            &mut out[1 + NONCE_LEN..],
        ) {
            Ok(t) => t,
            // Only fails for plaintexts beyond GCM's 64 GiB limit.
            Err(_) => crate::rand::fatal("AES-256-GCM sealing failed"),
        };
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Reverses [`MasterKey::seal`]. Any wrong key, wrong `aad`, truncation or modification gives [`CryptoError::Decrypt`].
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != SEAL_V1 {
            return Err(CryptoError::Decrypt);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[1..1 + NONCE_LEN]);
        let mut buf = Zeroizing::new(sealed[1 + NONCE_LEN..].to_vec());
        let key = self.seal_key();
        let full_aad = full_aad(aad);
        let n = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&full_aad),
                &mut buf,
            )
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        buf.truncate(n);
        Ok(buf)
    }
}

fn full_aad(aad: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + aad.len());
    v.push(SEAL_V1);
    v.extend_from_slice(aad);
    v
}

enum LoadError {
    NotFound,
    Other(CryptoError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip() {
        let k = MasterKey::generate();
        let sealed = k.seal(b"kid-1", b"private key bytes");
        assert_eq!(sealed[0], 1);
        assert_eq!(sealed.len(), 1 + 12 + 17 + 16);
        assert_eq!(&**k.open(b"kid-1", &sealed).unwrap(), b"private key bytes");
        // Fresh nonce each time.
        assert_ne!(k.seal(b"kid-1", b"private key bytes"), sealed);
        // Empty plaintext works too.
        let e = k.seal(b"", b"");
        assert_eq!(k.open(b"", &e).unwrap().len(), 0);
    }

    #[test]
    fn open_rejects_wrong_key_aad_and_tampering() {
        let k = MasterKey::generate();
        let sealed = k.seal(b"kid-1", b"secret");
        assert_eq!(
            MasterKey::generate().open(b"kid-1", &sealed),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(k.open(b"kid-2", &sealed), Err(CryptoError::Decrypt));
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert_eq!(
                k.open(b"kid-1", &t),
                Err(CryptoError::Decrypt),
                "flipped byte {i}"
            );
        }
        assert_eq!(
            k.open(b"kid-1", &sealed[..sealed.len() - 1]),
            Err(CryptoError::Decrypt)
        );
        assert_eq!(k.open(b"kid-1", &[]), Err(CryptoError::Decrypt));
        assert_eq!(k.open(b"kid-1", &[1u8; 28]), Err(CryptoError::Decrypt));
    }

    #[test]
    fn base64_round_trip_and_validation() {
        let k = MasterKey::generate();
        let s = k.to_base64();
        let k2 = MasterKey::from_base64(&format!("  {s}\n")).unwrap();
        assert_eq!(k.derive("x"), k2.derive("x"));
        // URL-safe, unpadded form of the same bytes is accepted.
        let url = crate::b64::url_encode(k.0.as_ref());
        assert_eq!(
            MasterKey::from_base64(&url).unwrap().derive("x"),
            k.derive("x")
        );
        assert!(matches!(
            MasterKey::from_base64(&crate::b64::std_encode(&[0u8; 31])),
            Err(CryptoError::InvalidKey(_))
        ));
        assert!(matches!(
            MasterKey::from_base64("not base64!"),
            Err(CryptoError::InvalidKey(_))
        ));
    }

    #[test]
    fn derive_is_hkdf_and_labels_are_independent() {
        let k = MasterKey::from_base64(&crate::b64::std_encode(&[7u8; 32])).unwrap();
        let a = k.derive("seal");
        let b = k.derive("api-key-hash");
        assert_ne!(a, b);
        assert_eq!(a, k.derive("seal"));
        // Cross-check the hand-rolled HKDF against aws-lc's HKDF implementation.
        use aws_lc_rs::hkdf;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"steward/v1").extract(&[7u8; 32]);
        let info = [b"seal".as_slice()];
        let okm = prk.expand(&info, hkdf::HKDF_SHA256).unwrap();
        let mut expect = [0u8; 32];
        okm.fill(&mut expect).unwrap();
        assert_eq!(a, expect);
        // Different master keys give different derived keys.
        assert_ne!(MasterKey::generate().derive("seal"), a);
    }

    #[test]
    fn check_value_identifies_key_without_revealing_it() {
        let k = MasterKey::generate();
        let cv = k.check_value();
        assert_eq!(cv.len(), 32);
        assert!(cv.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(cv, k.check_value());
        assert_ne!(cv, MasterKey::generate().check_value());
        assert!(!k.to_base64().contains(&cv));
    }

    #[test]
    fn debug_redacts() {
        let k = MasterKey::generate();
        let d = format!("{k:?}");
        assert_eq!(d, "MasterKey(<redacted>)");
        assert!(!d.contains(&k.to_base64()));
    }

    #[test]
    fn load_or_create_creates_then_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (k1, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(text.trim(), k1.to_base64());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (k2, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.check_value(), k2.check_value());
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn concurrent_creation_yields_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| MasterKey::load_or_create(&path).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|(_, c)| *c).count(), 1);
        let cv = results[0].0.check_value();
        assert!(results.iter().all(|(k, _)| k.check_value() == cv));
    }

    #[cfg(unix)]
    #[test]
    fn load_refuses_group_or_world_accessible_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKey::load_or_create(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = MasterKey::load_or_create(&path).unwrap_err();
            let CryptoError::Io(msg) = &err else {
                panic!("unexpected {err:?}")
            };
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("group or others"), "{msg}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(MasterKey::load_or_create(&path).is_ok());
    }

    #[test]
    fn load_rejects_garbage_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        opts.open(&path).unwrap().write_all(b"too short\n").unwrap();
        let err = MasterKey::load_or_create(&path).unwrap_err();
        assert!(
            matches!(&err, CryptoError::InvalidKey(m) if m.contains("master.key")),
            "{err:?}"
        );
    }
}
