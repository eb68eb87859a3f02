//! The Steward API-key format: `stw_<type>_<28 base62 random><6 base62 CRC32>`.
//! Built to be found: a fixed prefix for scanners and a checksum that rejects look-alikes offline.

use std::fmt;

use thiserror::Error;

/// Base62 alphabet used for the random part and the checksum.
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Number of random base62 characters (28 × log2(62) ≈ 166.7 bits ≥ 160).
pub const RANDOM_LEN: usize = 28;
/// Number of checksum characters (62^6 > 2^32).
pub const CHECKSUM_LEN: usize = 6;
/// Total length of a key: `stw_` + letter + `_` + random + checksum.
pub const KEY_LEN: usize = 4 + 1 + 1 + RANDOM_LEN + CHECKSUM_LEN;

/// What a key is for; the letter after `stw_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// A client secret for `client_secret_basic` / `client_secret_post`.
    ClientSecret,
}

impl KeyType {
    pub fn letter(self) -> u8 {
        match self {
            Self::ClientSecret => b'k',
        }
    }
    pub fn from_letter(l: u8) -> Option<Self> {
        match l {
            b'k' => Some(Self::ClientSecret),
            _ => None,
        }
    }
}

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormatError {
    #[error("not a Steward key (wrong prefix or length)")]
    Shape,
    #[error("unknown Steward key type")]
    UnknownType,
    #[error("Steward key contains characters outside base62")]
    Charset,
    #[error("Steward key checksum does not match")]
    Checksum,
}

/// A syntactically valid Steward key. `Debug` and `Display` never print the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    text: String,
    key_type: KeyType,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.redacted())
    }
}

impl ApiKey {
    /// Generates a key from a source of uniformly random bytes (rejection-sampled into base62).
    pub fn generate(key_type: KeyType, fill_random: &mut dyn FnMut(&mut [u8])) -> Self {
        let mut text = String::with_capacity(KEY_LEN);
        text.push_str("stw_");
        text.push(key_type.letter() as char);
        text.push('_');
        let mut buf = [0u8; 64];
        let mut produced = 0;
        while produced < RANDOM_LEN {
            fill_random(&mut buf);
            for &b in &buf {
                // 248 = 4 × 62: accept only bytes that map uniformly.
                if b < 248 && produced < RANDOM_LEN {
                    text.push(BASE62[usize::from(b % 62)] as char);
                    produced += 1;
                }
            }
        }
        text.push_str(&checksum(text.as_bytes()));
        Self { text, key_type }
    }

    /// Parses and checks a key without any look-up: prefix, type, charset, length, checksum.
    pub fn parse(s: &str) -> Result<Self, KeyFormatError> {
        let b = s.as_bytes();
        if b.len() != KEY_LEN || !s.starts_with("stw_") || b[5] != b'_' {
            return Err(KeyFormatError::Shape);
        }
        let key_type = KeyType::from_letter(b[4]).ok_or(KeyFormatError::UnknownType)?;
        if !b[6..].iter().all(u8::is_ascii_alphanumeric) {
            return Err(KeyFormatError::Charset);
        }
        let (body, sum) = s.split_at(KEY_LEN - CHECKSUM_LEN);
        if checksum(body.as_bytes()) != sum {
            return Err(KeyFormatError::Checksum);
        }
        Ok(Self {
            text: s.to_owned(),
            key_type,
        })
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The full secret. Call only to hash it or to hand it to its owner once.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// A display form that is safe to log: prefix and the last four characters.
    pub fn redacted(&self) -> String {
        redact(&self.text)
    }
}

/// Redacts any secret-looking string to a prefix and its last four characters.
pub fn redact(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 12 {
        return "****".to_owned();
    }
    let head: String = chars[..6.min(chars.len())].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// CRC32 (IEEE) of `data`, as 6 zero-padded base62 characters.
pub fn checksum(data: &[u8]) -> String {
    let mut n = crc32fast::hash(data);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&c| c as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter_rng() -> impl FnMut(&mut [u8]) {
        let mut x: u8 = 0;
        move |buf: &mut [u8]| {
            for b in buf {
                x = x.wrapping_mul(73).wrapping_add(41);
                *b = x;
            }
        }
    }

    #[test]
    fn round_trip_and_shape() {
        let mut rng = counter_rng();
        let k = ApiKey::generate(KeyType::ClientSecret, &mut rng);
        let s = k.expose_secret();
        assert_eq!(s.len(), KEY_LEN);
        assert!(s.starts_with("stw_k_"));
        assert_eq!(ApiKey::parse(s).unwrap(), k);
        assert!(!format!("{k:?}").contains(&s[6..30]));
    }

    #[test]
    fn rejects_look_alikes() {
        let mut rng = counter_rng();
        let k = ApiKey::generate(KeyType::ClientSecret, &mut rng);
        let s = k.expose_secret().to_owned();
        // Flip each character of the random part: the checksum must catch every single change.
        for i in 6..KEY_LEN - CHECKSUM_LEN {
            let mut b = s.clone().into_bytes();
            b[i] = if b[i] == b'a' { b'b' } else { b'a' };
            let t = String::from_utf8(b).unwrap();
            assert_eq!(
                ApiKey::parse(&t),
                Err(KeyFormatError::Checksum),
                "position {i}"
            );
        }
        assert_eq!(ApiKey::parse("stw_k_short"), Err(KeyFormatError::Shape));
        assert_eq!(
            ApiKey::parse(&s.replacen("stw_k", "stw_z", 1)),
            Err(KeyFormatError::UnknownType)
        );
        assert_eq!(
            ApiKey::parse(&s.replacen("stw_k_", "stw_k_-", 1)[..KEY_LEN]),
            Err(KeyFormatError::Charset)
        );
    }

    #[test]
    fn checksum_is_fixed_width() {
        assert_eq!(checksum(b""), "000000");
        assert_eq!(checksum(b"stw_k_").len(), 6);
    }
}
