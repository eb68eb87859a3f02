//! DPoP (RFC 9449) for both sides: a workload's ES256 proof key that signs proofs, and the
//! resource-server check of a proof against the bound token (`cnf.jkt`, `ath`, `htm`, `htu`).

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::{Error, VerifyError, b64url, random_id, sha256, unix_now};

/// A DPoP proof key (ES256). Its private half never leaves the process.
pub struct DpopKey {
    encoding: EncodingKey,
    jwk: Jwk,
    thumbprint: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("jkt", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
}

impl DpopKey {
    /// Generates a fresh P-256 key.
    pub fn generate() -> Result<Self, Error> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| Error::Crypto("cannot generate a DPoP key".into()))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| Error::Crypto("cannot load the DPoP key".into()))?;
        let public = pair.public_key().as_ref();
        // Uncompressed point: 0x04 || x (32) || y (32).
        let (Some(x), Some(y)) = (public.get(1..33), public.get(33..65)) else {
            return Err(Error::Crypto("unexpected public key encoding".into()));
        };
        let jwk = Jwk {
            common: CommonParameters::default(),
            algorithm: AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                key_type: EllipticCurveKeyType::EC,
                curve: EllipticCurve::P256,
                x: b64url(x),
                y: b64url(y),
            }),
        };
        let thumbprint = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| Error::Crypto(e.to_string()))?;
        Ok(Self {
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk,
            thumbprint,
        })
    }

    /// The RFC 7638 thumbprint the server puts in `cnf.jkt`.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A proof for one request. `access_token` adds `ath` (at a resource server).
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<String, Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.jwk.clone());
        let claims = ProofClaims {
            jti: random_id()?,
            htm: method.to_owned(),
            htu: strip_query(url).to_owned(),
            iat: unix_now(),
            ath: access_token.map(|t| b64url(&sha256(t.as_bytes()))),
            nonce: nonce.map(str::to_owned),
        };
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| Error::Crypto(format!("cannot sign the DPoP proof: {e}")))
    }
}

fn strip_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Remembers proof `jti`s until they could no longer be accepted (replay protection).
#[derive(Default)]
pub(crate) struct ReplayCache {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayCache {
    fn claim(&self, jti: &str, until: i64, now: i64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 100_000 {
            seen.retain(|_, exp| *exp > now);
        }
        match seen.get(jti) {
            Some(exp) if *exp > now => false,
            _ => {
                seen.insert(jti.to_owned(), until);
                true
            }
        }
    }
}

/// Where and when a proof is being checked.
#[derive(Clone, Copy)]
pub(crate) struct ProofCheck<'a> {
    pub(crate) method: &'a str,
    pub(crate) url: &'a str,
    pub(crate) now: i64,
    pub(crate) max_age: i64,
}

/// Checks a DPoP proof presented with `token` against the bound thumbprint `jkt`.
pub(crate) fn check_proof(
    proof: &str,
    token: &str,
    jkt: &str,
    at: &ProofCheck<'_>,
    replay: &ReplayCache,
) -> Result<(), VerifyError> {
    let ProofCheck {
        method,
        url,
        now,
        max_age,
    } = *at;
    let bad = |m: &str| VerifyError::Dpop(m.to_owned());
    let header = jsonwebtoken::decode_header(proof).map_err(|_| bad("malformed proof"))?;
    if header.typ.as_deref() != Some("dpop+jwt") {
        return Err(bad("proof typ must be dpop+jwt"));
    }
    if !matches!(header.alg, Algorithm::ES256 | Algorithm::EdDSA) {
        return Err(bad("proof algorithm not allowed"));
    }
    let jwk = header.jwk.as_ref().ok_or_else(|| bad("proof has no jwk"))?;
    let thumb = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| bad("unusable proof key"))?;
    if thumb != jkt {
        return Err(bad("proof key does not match the token binding"));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| bad("unusable proof key"))?;
    let mut v = Validation::new(header.alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    let data = jsonwebtoken::decode::<ProofClaims>(proof, &key, &v)
        .map_err(|_| bad("invalid proof signature"))?;
    let c = data.claims;
    if !c.htm.eq_ignore_ascii_case(method) {
        return Err(bad("proof htm does not match the request method"));
    }
    if strip_query(&c.htu) != strip_query(url) {
        return Err(bad("proof htu does not match the request URL"));
    }
    if c.iat > now + 60 || c.iat < now - max_age {
        return Err(bad("proof is too old or from the future"));
    }
    let ath = b64url(&sha256(token.as_bytes()));
    if c.ath.as_deref() != Some(ath.as_str()) {
        return Err(bad("proof ath does not match the token"));
    }
    if !replay.claim(&c.jti, c.iat + max_age + 60, now) {
        return Err(bad("proof jti has been used before"));
    }
    Ok(())
}
