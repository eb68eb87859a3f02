//! RFC 9449 DPoP: verification of proof JWTs and stateless, HMAC-based server nonces.
//! Replay tracking of `jti` is the caller's job (it needs shared state); everything else is checked here.

use crate::jwk::{PublicJwk, parse_public_jwk};
use crate::jws::{self, JwsAlg};
use crate::{CryptoError, b64, constant_time_eq};
use aws_lc_rs::hmac;

/// What a proof must match. `Debug` omits the access token.
#[derive(Clone, Copy)]
pub struct DpopCheck<'a> {
    /// HTTP method of the request, compared exactly with `htm`.
    pub method: &'a str,
    /// The request's full URL as the server sees it (scheme, host, path; query/fragment are ignored).
    pub url: &'a str,
    /// Current time, Unix seconds.
    pub now: i64,
    /// Oldest acceptable proof age.
    pub max_age_secs: i64,
    /// Tolerated clock skew in both directions.
    pub skew_secs: i64,
    /// When `Some`, the proof's `ath` must equal base64url(SHA-256(token)).
    pub access_token: Option<&'a str>,
}

impl std::fmt::Debug for DpopCheck<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopCheck")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("now", &self.now)
            .field("max_age_secs", &self.max_age_secs)
            .field("skew_secs", &self.skew_secs)
            .field("access_token", &self.access_token.map(|_| "<redacted>"))
            .finish()
    }
}

/// The `ath` value for an access token: base64url(SHA-256(token)).
pub fn ath(access_token: &str) -> String {
    b64::url_encode(&crate::sha256(access_token.as_bytes()))
}

/// A verified DPoP proof.
#[derive(Debug, Clone)]
pub struct DpopProof {
    /// RFC 7638 thumbprint of the header `jwk` (the value bound into `cnf.jkt`).
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
    pub nonce: Option<String>,
    pub jwk: PublicJwk,
}

fn fail(msg: &str) -> CryptoError {
    CryptoError::Dpop(msg.into())
}

/// Verifies a DPoP proof JWT. Every failure is a [`CryptoError::Dpop`] with a distinct, client-safe message.
pub fn verify_proof(proof: &str, check: &DpopCheck<'_>) -> Result<DpopProof, CryptoError> {
    // Decoding already rejects `none`, HMAC and unknown algorithms, `crit`, and oversized input.
    let d = jws::decode(proof).map_err(|e| match e {
        CryptoError::UnsupportedAlgorithm(_) => fail("DPoP proof alg is not supported"),
        _ => fail("DPoP proof is malformed"),
    })?;
    if !d.typ().is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt")) {
        return Err(fail("DPoP proof typ must be dpop+jwt"));
    }
    let jwk_value = d
        .header
        .get("jwk")
        .ok_or_else(|| fail("DPoP proof has no jwk header"))?;
    let parsed = parse_public_jwk(jwk_value).map_err(|e| match e {
        CryptoError::InvalidKey(m) if m.contains("private") => {
            fail("DPoP proof jwk contains private key material")
        }
        CryptoError::WeakKey(_) => fail("DPoP proof jwk is too weak"),
        _ => fail("DPoP proof jwk is invalid or unsupported"),
    })?;
    if parsed.alg.as_deref().is_some_and(|a| a != d.alg.as_str()) {
        return Err(fail("DPoP proof alg does not match its jwk"));
    }
    jws::verify(&d, &parsed.key, JwsAlg::ASYMMETRIC).map_err(|e| match e {
        CryptoError::BadSignature => fail("DPoP proof signature is invalid"),
        _ => fail("DPoP proof alg does not match its jwk"),
    })?;

    let jti = match d.claims.get("jti") {
        Some(serde_json::Value::String(s)) if (1..=256).contains(&s.chars().count()) => s.clone(),
        _ => return Err(fail("DPoP proof jti is missing or invalid")),
    };
    if d.claim_str("htm") != Some(check.method) {
        return Err(fail("DPoP proof htm does not match"));
    }
    match d.claim_str("htu") {
        Some(htu) if htu_matches(htu, check.url) => {}
        _ => return Err(fail("DPoP proof htu does not match")),
    }
    let iat = d
        .claim_i64("iat")
        .ok_or_else(|| fail("DPoP proof iat is missing or invalid"))?;
    let oldest = check
        .now
        .saturating_sub(check.max_age_secs.max(0))
        .saturating_sub(check.skew_secs.max(0));
    if iat < oldest {
        return Err(fail("DPoP proof is too old"));
    }
    if iat > check.now.saturating_add(check.skew_secs.max(0)) {
        return Err(fail("DPoP proof iat is in the future"));
    }
    if let Some(token) = check.access_token {
        let expected = ath(token);
        match d.claim_str("ath") {
            Some(ath) if constant_time_eq(ath.as_bytes(), expected.as_bytes()) => {}
            Some(_) => return Err(fail("DPoP proof ath does not match the access token")),
            None => return Err(fail("DPoP proof has no ath")),
        }
    }
    let nonce = match d.claims.get("nonce") {
        None => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(fail("DPoP proof nonce must be a string")),
    };
    Ok(DpopProof {
        jkt: parsed.key.thumbprint(),
        jti,
        iat,
        nonce,
        jwk: parsed.key,
    })
}

/// `htu` vs. the request URL per RFC 9449 §4.3: query and fragment ignored; scheme and host compared
/// case-insensitively (the URL parser lower-cases them), default ports normalized, path compared exactly.
fn htu_matches(htu: &str, url: &str) -> bool {
    let (Ok(a), Ok(b)) = (url::Url::parse(htu), url::Url::parse(url)) else {
        return false;
    };
    a.scheme() == b.scheme()
        && a.username() == b.username()
        && a.password() == b.password()
        && a.host_str().is_some()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path() == b.path()
}

const NONCE_MAC_LEN: usize = 16;
const NONCE_LEN: usize = 8 + NONCE_MAC_LEN;

fn window(now: i64, period_secs: i64) -> i64 {
    now.div_euclid(period_secs.max(1))
}

fn nonce_mac(key: &[u8; 32], window: i64) -> hmac::Tag {
    hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        &window.to_be_bytes(),
    )
}

/// Stateless server nonce: base64url(window(8 bytes BE) || HMAC-SHA256(key, window)[..16]), window = now / period.
pub fn nonce(key: &[u8; 32], now: i64, period_secs: i64) -> String {
    let w = window(now, period_secs);
    let mut buf = [0u8; NONCE_LEN];
    buf[..8].copy_from_slice(&w.to_be_bytes());
    buf[8..].copy_from_slice(&nonce_mac(key, w).as_ref()[..NONCE_MAC_LEN]);
    b64::url_encode(&buf)
}

/// Accepts nonces of the current and the previous window only; the MAC is compared in constant time.
pub fn check_nonce(key: &[u8; 32], nonce: &str, now: i64, period_secs: i64) -> bool {
    if nonce.len() != b64::url_encode(&[0u8; NONCE_LEN]).len() {
        return false;
    }
    let Ok(bytes) = b64::url_decode(nonce) else {
        return false;
    };
    if bytes.len() != NONCE_LEN {
        return false;
    }
    let mut wb = [0u8; 8];
    wb.copy_from_slice(&bytes[..8]);
    let w = i64::from_be_bytes(wb);
    let current = window(now, period_secs);
    if w != current && Some(w) != current.checked_sub(1) {
        return false;
    }
    constant_time_eq(&nonce_mac(key, w).as_ref()[..NONCE_MAC_LEN], &bytes[8..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::{SigningAlg, SigningKey};
    use aws_lc_rs::digest;
    use serde_json::{Value, json};

    const URL: &str = "https://steward.example/oauth/token";
    const NOW: i64 = 1_700_000_000;

    fn check() -> DpopCheck<'static> {
        DpopCheck {
            method: "POST",
            url: URL,
            now: NOW,
            max_age_secs: 60,
            skew_secs: 5,
            access_token: None,
        }
    }

    fn claims() -> Value {
        json!({"jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": URL, "iat": NOW})
    }

    /// A proof signed by `k` with the given header (the header jwk defaults to `k`'s public key).
    fn proof_with(k: &SigningKey, header: Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64::url_encode(header.to_string().as_bytes()),
            b64::url_encode(claims.to_string().as_bytes())
        );
        format!(
            "{input}.{}",
            b64::url_encode(&k.sign_bytes(input.as_bytes()))
        )
    }

    fn header(k: &SigningKey) -> Value {
        json!({"typ": "dpop+jwt", "alg": k.alg().as_str(), "jwk": k.public_key().to_json()})
    }

    fn proof(k: &SigningKey, claims: &Value) -> String {
        proof_with(k, header(k), claims)
    }

    fn keys() -> Vec<SigningKey> {
        [SigningAlg::ES256, SigningAlg::EdDSA]
            .into_iter()
            .map(|a| SigningKey::generate(a, "client".into()).unwrap().0)
            .collect()
    }

    fn err(p: &str, c: &DpopCheck<'_>) -> String {
        match verify_proof(p, c) {
            Err(CryptoError::Dpop(m)) => m,
            other => panic!("expected a DPoP error, got {other:?}"),
        }
    }

    #[test]
    fn valid_proofs_accepted() {
        for k in keys() {
            let p = verify_proof(&proof(&k, &claims()), &check()).unwrap();
            assert_eq!(p.jkt, k.public_key().thumbprint());
            assert_eq!(p.jti, "e1j3V_bKic8-LAEB");
            assert_eq!(p.iat, NOW);
            assert_eq!(p.nonce, None);
            assert_eq!(&p.jwk, k.public_key());
            // With nonce and bound access token.
            let token = "eyJ.access.token";
            let mut c = claims();
            c["nonce"] = json!("n-123");
            c["ath"] = json!(b64::url_encode(
                digest::digest(&digest::SHA256, token.as_bytes()).as_ref()
            ));
            let chk = DpopCheck {
                access_token: Some(token),
                ..check()
            };
            let p = verify_proof(&proof(&k, &c), &chk).unwrap();
            assert_eq!(p.nonce.as_deref(), Some("n-123"));
            // iat at both edges of the window.
            let mut c = claims();
            c["iat"] = json!(NOW - 65);
            assert!(verify_proof(&proof(&k, &c), &check()).is_ok());
            c["iat"] = json!(NOW + 5);
            assert!(verify_proof(&proof(&k, &c), &check()).is_ok());
        }
    }

    #[test]
    fn rfc9449_ath_example() {
        // RFC 9449 §7.1 example access token and its ath value.
        let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
        assert_eq!(ath(token), "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
    }

    #[test]
    fn check_debug_redacts_access_token() {
        let c = DpopCheck {
            access_token: Some("secret-token"),
            ..check()
        };
        let d = format!("{c:?}");
        assert!(
            !d.contains("secret-token") && d.contains("<redacted>"),
            "{d}"
        );
    }

    #[test]
    fn claim_mismatches_rejected() {
        for k in keys() {
            let mut c = claims();
            c["htm"] = json!("GET");
            assert_eq!(
                err(&proof(&k, &c), &check()),
                "DPoP proof htm does not match"
            );
            let mut c = claims();
            c["htm"] = json!("post");
            assert_eq!(
                err(&proof(&k, &c), &check()),
                "DPoP proof htm does not match"
            );

            for htu in [
                "https://steward.example/oauth/other",
                "https://evil.example/oauth/token",
                "http://steward.example/oauth/token",
                "https://steward.example:8443/oauth/token",
                "https://steward.example/OAUTH/token",
                "https://user@steward.example/oauth/token",
                "/oauth/token",
                "not a url",
            ] {
                let mut c = claims();
                c["htu"] = json!(htu);
                assert_eq!(
                    err(&proof(&k, &c), &check()),
                    "DPoP proof htu does not match",
                    "{htu}"
                );
            }
            let mut c = claims();
            c.as_object_mut().unwrap().remove("htu");
            assert_eq!(
                err(&proof(&k, &c), &check()),
                "DPoP proof htu does not match"
            );

            let mut c = claims();
            c["iat"] = json!(NOW - 66);
            assert_eq!(err(&proof(&k, &c), &check()), "DPoP proof is too old");
            c["iat"] = json!(NOW + 6);
            assert_eq!(
                err(&proof(&k, &c), &check()),
                "DPoP proof iat is in the future"
            );
            c["iat"] = json!("now");
            assert_eq!(
                err(&proof(&k, &c), &check()),
                "DPoP proof iat is missing or invalid"
            );

            for jti in [json!(null), json!(""), json!(7), json!("x".repeat(257))] {
                let mut c = claims();
                c["jti"] = jti;
                assert_eq!(
                    err(&proof(&k, &c), &check()),
                    "DPoP proof jti is missing or invalid"
                );
            }
            let mut c = claims();
            c.as_object_mut().unwrap().remove("jti");
            assert_eq!(
                err(&proof(&k, &c), &check()),
                "DPoP proof jti is missing or invalid"
            );

            // ath: missing, wrong token.
            let chk = DpopCheck {
                access_token: Some("token-a"),
                ..check()
            };
            assert_eq!(err(&proof(&k, &claims()), &chk), "DPoP proof has no ath");
            let mut c = claims();
            c["ath"] = json!(b64::url_encode(
                digest::digest(&digest::SHA256, b"token-b").as_ref()
            ));
            assert_eq!(
                err(&proof(&k, &c), &chk),
                "DPoP proof ath does not match the access token"
            );
        }
    }

    #[test]
    fn header_problems_rejected() {
        for k in keys() {
            // Missing jwk.
            let mut h = header(&k);
            h.as_object_mut().unwrap().remove("jwk");
            assert_eq!(
                err(&proof_with(&k, h, &claims()), &check()),
                "DPoP proof has no jwk header"
            );
            // Private jwk (a "d" member).
            let mut h = header(&k);
            h["jwk"]["d"] = json!("c2VjcmV0");
            assert_eq!(
                err(&proof_with(&k, h, &claims()), &check()),
                "DPoP proof jwk contains private key material"
            );
            // Wrong or missing typ.
            for typ in [json!("JWT"), json!("at+jwt"), json!(null)] {
                let mut h = header(&k);
                h["typ"] = typ;
                assert_eq!(
                    err(&proof_with(&k, h, &claims()), &check()),
                    "DPoP proof typ must be dpop+jwt"
                );
            }
            // Symmetric / none algorithms.
            for alg in ["HS256", "none"] {
                let mut h = header(&k);
                h["alg"] = json!(alg);
                assert_eq!(
                    err(&proof_with(&k, h, &claims()), &check()),
                    "DPoP proof alg is not supported"
                );
            }
            // Header jwk of another key: signature does not verify.
            let (other, _) = SigningKey::generate(k.alg(), "o".into()).unwrap();
            let mut h = header(&k);
            h["jwk"] = other.public_key().to_json();
            assert_eq!(
                err(&proof_with(&k, h, &claims()), &check()),
                "DPoP proof signature is invalid"
            );
            // Tampered payload.
            let p = proof(&k, &claims());
            let parts: Vec<&str> = p.split('.').collect();
            let mut c = claims();
            c["htm"] = json!("GET");
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                b64::url_encode(c.to_string().as_bytes()),
                parts[2]
            );
            let chk = DpopCheck {
                method: "GET",
                ..check()
            };
            assert_eq!(err(&forged, &chk), "DPoP proof signature is invalid");
            assert_eq!(err("garbage", &check()), "DPoP proof is malformed");
        }
        // alg that does not fit the jwk type.
        let ks = keys();
        let (ec, ed) = (&ks[0], &ks[1]);
        let h = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": ec.public_key().to_json()});
        assert_eq!(
            err(&proof_with(ed, h, &claims()), &check()),
            "DPoP proof alg does not match its jwk"
        );
    }

    #[test]
    fn htu_normalization() {
        assert!(htu_matches(
            "https://steward.example/oauth/token?x=1#frag",
            URL
        ));
        assert!(htu_matches("HTTPS://STEWARD.Example/oauth/token", URL));
        assert!(htu_matches("https://steward.example:443/oauth/token", URL));
        assert!(htu_matches(
            "http://steward.example:80/t",
            "http://steward.example/t"
        ));
        assert!(htu_matches(
            "https://steward.example/oauth/token",
            "https://steward.example/oauth/token?y=2"
        ));
        assert!(!htu_matches("https://steward.example/oauth/token/", URL));
        assert!(!htu_matches("https://steward.example/oauth/Token", URL));
        assert!(!htu_matches("https://steward.example:444/oauth/token", URL));
        // Through the full check as well.
        for k in keys() {
            let mut c = claims();
            c["htu"] = json!("https://Steward.EXAMPLE:443/oauth/token?query=ignored");
            assert!(verify_proof(&proof(&k, &c), &check()).is_ok());
        }
    }

    #[test]
    fn nonce_windows() {
        let key = [5u8; 32];
        let period = 300;
        let n = nonce(&key, NOW, period);
        assert_eq!(n.len(), 32);
        assert!(check_nonce(&key, &n, NOW, period));
        // Same window → same nonce (stateless, shared across nodes).
        assert_eq!(nonce(&key, NOW - NOW.rem_euclid(period), period), n);
        // Previous window still ok, the one before is not.
        assert!(check_nonce(&key, &n, NOW + period, period));
        assert!(!check_nonce(&key, &n, NOW + 2 * period, period));
        // Nonces from the future are not accepted.
        assert!(!check_nonce(
            &key,
            &nonce(&key, NOW + period, period),
            NOW,
            period
        ));
        // Wrong key, tampering, garbage.
        assert!(!check_nonce(&[6u8; 32], &n, NOW, period));
        let mut raw = b64::url_decode(&n).unwrap();
        raw[20] ^= 1;
        assert!(!check_nonce(&key, &b64::url_encode(&raw), NOW, period));
        // Changing the window bytes without a matching MAC fails.
        let mut raw = b64::url_decode(&n).unwrap();
        raw[7] ^= 1;
        assert!(!check_nonce(&key, &b64::url_encode(&raw), NOW, period));
        for bad in ["", "x", "!!!!", &n[..31], &format!("{n}A")] {
            assert!(!check_nonce(&key, bad, NOW, period), "{bad}");
        }
        // Degenerate periods do not panic.
        assert!(check_nonce(&key, &nonce(&key, NOW, 0), NOW, 0));
        assert!(check_nonce(&key, &nonce(&key, i64::MIN, 1), i64::MIN, 1));
    }
}
