//! Checks applied to a candidate secret after its regex matched: Shannon entropy and the
//! built-in checksums (Steward keys, GitHub tokens) that make those rules free of false positives.

use steward_core::apikey::{ApiKey, BASE62};

use crate::rules::Validator;

/// Shannon entropy of `s` in bits per byte.
pub fn shannon_entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Runs a built-in validator.
pub fn check(v: Validator, secret: &str) -> bool {
    match v {
        Validator::Steward => ApiKey::parse(secret).is_ok(),
        Validator::Github => github_checksum_ok(secret),
    }
}

/// Decodes base62 (`0-9A-Za-z`) into a number; `None` on a foreign character or overflow.
fn base62_decode(s: &[u8]) -> Option<u64> {
    s.iter().try_fold(0u64, |acc, &c| {
        let d = BASE62.iter().position(|&x| x == c)? as u64;
        acc.checked_mul(62)?.checked_add(d)
    })
}

/// GitHub's token checksum: the last `_`-separated part ends with 6 base62 characters holding
/// the CRC32 of the rest of that part
/// (<https://github.blog/2021-04-05-behind-githubs-new-authentication-token-formats/>).
pub fn github_checksum_ok(token: &str) -> bool {
    let Some(last) = token.rsplit('_').next() else {
        return false;
    };
    let b = last.as_bytes();
    if b.len() <= 6 || !b.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (payload, sum) = b.split_at(b.len() - 6);
    base62_decode(sum) == Some(u64::from(crc32fast::hash(payload)))
}

/// Appends GitHub's checksum to `prefix_and_payload` (tests and corpus generation).
pub fn github_with_checksum(prefix_and_payload: &str) -> String {
    let payload = prefix_and_payload.rsplit('_').next().unwrap_or("");
    let mut n = crc32fast::hash(payload.as_bytes());
    let mut sum = [b'0'; 6];
    for slot in sum.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    let mut out = prefix_and_payload.to_owned();
    out.extend(sum.iter().map(|&c| c as char));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_bounds() {
        assert_eq!(shannon_entropy(b""), 0.0);
        assert_eq!(shannon_entropy(b"aaaaaaaa"), 0.0);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
        assert!(shannon_entropy(b"q8Zr2LkP0vXw7TnB") > 3.9);
    }

    #[test]
    fn github_checksum_round_trip() {
        let t = github_with_checksum("ghp_Zt8d2LqPw0XvR7nB4kMs9YcJ1hFa3E");
        assert_eq!(t.len(), 40);
        assert!(github_checksum_ok(&t));
        let mut bad = t.clone().into_bytes();
        bad[10] = if bad[10] == b'a' { b'b' } else { b'a' };
        assert!(!github_checksum_ok(&String::from_utf8(bad).unwrap()));
        let pat = github_with_checksum(
            "github_pat_11ABCDEFG0123456789abcde_Qz8r2LkP0vXw7TnB4kMs9YcJ1hFa3EuGdVoWiRtYpLmNqSxZbCa",
        );
        assert!(github_checksum_ok(&pat));
        assert!(!github_checksum_ok("ghp_"));
        assert!(!github_checksum_ok(
            "gho_16C7e42F292c6912E7710c838347Ae178B4a"
        ));
    }
}
