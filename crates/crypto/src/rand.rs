//! Cryptographically secure randomness from the system RNG (via aws-lc).
//! `fill` is infallible by design: if the RNG is broken the process aborts rather than ever emit weak keys.

use zeroize::Zeroize;

/// Fills `buf` with cryptographically secure random bytes.
///
/// A failing system RNG is not recoverable: after a few retries this aborts the process
/// (not a panic, which could be caught and let a caller continue with predictable bytes).
pub fn fill(buf: &mut [u8]) {
    for _ in 0..3 {
        if aws_lc_rs::rand::fill(buf).is_ok() {
            return;
        }
    }
    buf.zeroize();
    fatal("the system random number generator failed; refusing to continue");
}

/// `nbytes` random bytes, base64url-encoded without padding (e.g. 32 → 43 characters).
pub fn token(nbytes: usize) -> String {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; nbytes]);
    fill(&mut buf);
    crate::b64::url_encode(&buf)
}

/// Aborts the process after an internal failure of the crypto backend that leaves no safe way forward.
pub(crate) fn fatal(msg: &str) -> ! {
    eprintln!("steward-crypto: FATAL: {msg}");
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_produces_distinct_output() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        fill(&mut a);
        fill(&mut b);
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }

    #[test]
    fn token_is_base64url_of_requested_length() {
        let t = token(32);
        assert_eq!(t.len(), 43);
        assert_eq!(crate::b64::url_decode(&t).map(|v| v.len()), Ok(32));
        assert_ne!(token(32), t);
        assert_eq!(token(0), "");
    }
}
