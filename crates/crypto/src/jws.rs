//! Compact JWS (RFC 7515) and JWT signing/verification with an explicit algorithm allow-list.
//! There is no HMAC or `none` path at all, so algorithm-confusion attacks have nothing to reach.

use crate::jwk::{PublicJwk, check_rsa_size, parse_public_jwk};
use crate::{CryptoError, b64};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ParsedPublicKey, RsaParameters,
    RsaPublicKeyComponents, UnparsedPublicKey,
};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Largest compact JWS accepted by [`decode`].
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Algorithms Steward accepts on input. Anything else — `none`, HS256/384/512, ES256K, unknown — is rejected by [`JwsAlg::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlg {
    EdDSA,
    ES256,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    /// ECDSA P-384 / SHA-384 (external issuers such as some cloud platforms sign with it).
    ES384,
}

impl JwsAlg {
    /// Every accepted algorithm (all asymmetric).
    pub const ASYMMETRIC: &'static [JwsAlg] = &[
        JwsAlg::EdDSA,
        JwsAlg::ES256,
        JwsAlg::RS256,
        JwsAlg::RS384,
        JwsAlg::RS512,
        JwsAlg::PS256,
        JwsAlg::PS384,
        JwsAlg::PS512,
        JwsAlg::ES384,
    ];

    /// Exact, case-sensitive match of the JOSE name.
    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        Ok(match s {
            "EdDSA" => JwsAlg::EdDSA,
            "ES256" => JwsAlg::ES256,
            "RS256" => JwsAlg::RS256,
            "RS384" => JwsAlg::RS384,
            "RS512" => JwsAlg::RS512,
            "PS256" => JwsAlg::PS256,
            "PS384" => JwsAlg::PS384,
            "PS512" => JwsAlg::PS512,
            "ES384" => JwsAlg::ES384,
            _ if s.eq_ignore_ascii_case("none") => {
                return Err(CryptoError::UnsupportedAlgorithm(
                    "unsigned tokens (alg none) are not accepted".into(),
                ));
            }
            _ if s.len() >= 2 && s[..2].eq_ignore_ascii_case("HS") => {
                return Err(CryptoError::UnsupportedAlgorithm(
                    "symmetric (HMAC) algorithms are not accepted".into(),
                ));
            }
            _ => {
                return Err(CryptoError::UnsupportedAlgorithm(
                    "unsupported JWS algorithm".into(),
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlg::EdDSA => "EdDSA",
            JwsAlg::ES256 => "ES256",
            JwsAlg::RS256 => "RS256",
            JwsAlg::RS384 => "RS384",
            JwsAlg::RS512 => "RS512",
            JwsAlg::PS256 => "PS256",
            JwsAlg::PS384 => "PS384",
            JwsAlg::PS512 => "PS512",
            JwsAlg::ES384 => "ES384",
        }
    }

    /// Whether this algorithm can be used with `key`'s type: Ed25519↔EdDSA, P-256↔ES256, RSA↔RS*/PS*.
    pub fn fits(self, key: &PublicJwk) -> bool {
        matches!(
            (self, key),
            (JwsAlg::EdDSA, PublicJwk::Ed25519 { .. })
                | (JwsAlg::ES256, PublicJwk::P256 { .. })
                | (JwsAlg::ES384, PublicJwk::P384 { .. })
                | (
                    JwsAlg::RS256
                        | JwsAlg::RS384
                        | JwsAlg::RS512
                        | JwsAlg::PS256
                        | JwsAlg::PS384
                        | JwsAlg::PS512,
                    PublicJwk::Rsa { .. }
                )
        )
    }

    fn rsa_params(self) -> Option<&'static RsaParameters> {
        Some(match self {
            JwsAlg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            JwsAlg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            JwsAlg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            JwsAlg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            JwsAlg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            JwsAlg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            JwsAlg::EdDSA | JwsAlg::ES256 | JwsAlg::ES384 => return None,
        })
    }
}

impl std::fmt::Display for JwsAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compact JWS split and decoded but NOT verified.
#[derive(Clone)]
pub struct Decoded {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    /// Parsed from the header; decoding fails when it is not an accepted algorithm.
    pub alg: JwsAlg,
    signing_input: String,
    signature: Vec<u8>,
}

/// Omits the signing input and signature: together they are the (bearer) token itself.
impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("header", &self.header)
            .field("claims", &self.claims)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Decoded {
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    pub fn typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }

    /// A string claim; `None` if absent or not a string.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A numeric claim as whole seconds; non-integral NumericDates are truncated toward negative infinity.
    /// `None` if absent, not a number, or out of range.
    pub fn claim_i64(&self, name: &str) -> Option<i64> {
        let v = self.claims.get(name)?;
        v.as_i64().or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 9.0e18)
                .map(|f| f.floor() as i64)
        })
    }

    /// The JWS signing input (`header.payload`).
    pub(crate) fn signing_input(&self) -> &[u8] {
        self.signing_input.as_bytes()
    }

    pub(crate) fn signature(&self) -> &[u8] {
        &self.signature
    }
}

/// Splits and decodes a compact JWS. Rejects: not exactly 3 parts, any part not strict base64url,
/// header/payload not JSON objects (or with duplicate members), total length > 16 KiB, a `crit` header,
/// a missing or unaccepted `alg` (so `none` and HS* fail here), and unencoded payloads (`b64`).
pub fn decode(token: &str) -> Result<Decoded, CryptoError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed("token exceeds 16 KiB"));
    }
    let mut parts = token.split('.');
    let (h, p, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => (h, p, s),
        _ => return Err(malformed("JWS must have exactly three parts")),
    };
    let header_bytes = b64::url_decode(h).map_err(|_| malformed("JWS header is not base64url"))?;
    let header =
        parse_object(&header_bytes).ok_or_else(|| malformed("JWS header is not a JSON object"))?;
    if header.contains_key("crit") {
        return Err(CryptoError::UnsupportedAlgorithm(
            "the crit header parameter is not supported".into(),
        ));
    }
    if header.get("b64").is_some_and(|v| v != &Value::Bool(true)) {
        return Err(CryptoError::UnsupportedAlgorithm(
            "unencoded payloads (b64) are not supported".into(),
        ));
    }
    let alg = match header.get("alg") {
        Some(Value::String(a)) => JwsAlg::parse(a)?,
        Some(_) => return Err(malformed("JWS alg must be a string")),
        None => return Err(malformed("JWS header has no alg")),
    };
    let payload = b64::url_decode(p).map_err(|_| malformed("JWS payload is not base64url"))?;
    let claims =
        parse_object(&payload).ok_or_else(|| malformed("JWS payload is not a JSON object"))?;
    let signature = b64::url_decode(s).map_err(|_| malformed("JWS signature is not base64url"))?;
    Ok(Decoded {
        header,
        claims,
        alg,
        signing_input: token[..h.len() + 1 + p.len()].to_owned(),
        signature,
    })
}

/// The payload of a compact JWS as a JSON object, WITHOUT any check (no signature, no algorithm):
/// only for routing (which issuer's keys to use) and for audit context. Never trust its content.
pub fn peek_claims(token: &str) -> Option<Map<String, Value>> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (_, p) = (parts.next()?, parts.next()?);
    let payload = b64::url_decode(p).ok()?;
    parse_object(&payload)
}

/// Verifies `decoded`'s signature with `key`. The header alg must be in `allowed` AND fit the key type.
/// ES256 signatures are the 64-byte JOSE `r || s` form; RSA keys under 2048 bits never verify.
pub fn verify(decoded: &Decoded, key: &PublicJwk, allowed: &[JwsAlg]) -> Result<(), CryptoError> {
    if !allowed.contains(&decoded.alg) {
        return Err(CryptoError::UnsupportedAlgorithm(format!(
            "algorithm {} is not allowed here",
            decoded.alg
        )));
    }
    verify_raw(
        decoded.alg,
        key,
        decoded.signing_input(),
        decoded.signature(),
    )
}

fn alg_mismatch() -> CryptoError {
    CryptoError::UnsupportedAlgorithm("token alg does not match the key type".into())
}

/// Signature check of `msg` for `alg` with `key` (type compatibility included).
fn verify_raw(alg: JwsAlg, key: &PublicJwk, msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    if !alg.fits(key) {
        return Err(alg_mismatch());
    }
    let ok = match key {
        PublicJwk::Ed25519 { x } => UnparsedPublicKey::new(&signature::ED25519, x).verify(msg, sig),
        PublicJwk::P256 { x, y } => {
            if sig.len() != 64 {
                return Err(CryptoError::BadSignature);
            }
            UnparsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_FIXED,
                PublicJwk::sec1_point(x, y),
            )
            .verify(msg, sig)
        }
        PublicJwk::P384 { x, y } => {
            if sig.len() != 96 {
                return Err(CryptoError::BadSignature);
            }
            UnparsedPublicKey::new(
                &signature::ECDSA_P384_SHA384_FIXED,
                PublicJwk::sec1_point(x, y),
            )
            .verify(msg, sig)
        }
        PublicJwk::Rsa { n, e } => {
            check_rsa_size(n)?;
            let params = alg.rsa_params().ok_or_else(alg_mismatch)?;
            RsaPublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            }
            .verify(params, msg, sig)
        }
    };
    ok.map_err(|_| CryptoError::BadSignature)
}

fn malformed(msg: &str) -> CryptoError {
    CryptoError::Malformed(msg.into())
}

/// A JSON object whose top level has no duplicate member names (duplicates like two `alg`s are an
/// ambiguity attackers exploit between parsers; RFC 7515 §5.2 allows rejecting them).
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<StrictObject, A::Error> {
                let mut m = Map::new();
                while let Some(k) = a.next_key::<String>()? {
                    if m.contains_key(&k) {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                    let v: Value = a.next_value()?;
                    m.insert(k, v);
                }
                Ok(StrictObject(m))
            }
        }
        d.deserialize_map(V)
    }
}

fn parse_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    serde_json::from_slice::<StrictObject>(bytes)
        .ok()
        .map(|o| o.0)
}

// ---------------------------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------------------------

/// Algorithms Steward signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    EdDSA,
    ES256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::ES256 => "ES256",
        }
    }

    pub fn parse(s: &str) -> Result<Self, CryptoError> {
        match s {
            "EdDSA" => Ok(SigningAlg::EdDSA),
            "ES256" => Ok(SigningAlg::ES256),
            _ => Err(CryptoError::UnsupportedAlgorithm(
                "signing algorithm must be EdDSA or ES256".into(),
            )),
        }
    }

    /// The corresponding verification algorithm.
    pub fn jws_alg(self) -> JwsAlg {
        match self {
            SigningAlg::EdDSA => JwsAlg::EdDSA,
            SigningAlg::ES256 => JwsAlg::ES256,
        }
    }
}

impl std::fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

enum Inner {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
}

/// A private signing key (Ed25519 or ECDSA P-256) with its kid. `Debug` redacts; `Send + Sync`.
pub struct SigningKey {
    kid: String,
    alg: SigningAlg,
    inner: Inner,
    public: PublicJwk,
    /// Precomputed base64url protected headers for the two hot `typ` values.
    hdr_at_jwt: String,
    hdr_jwt: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private", &"<redacted>")
            .finish()
    }
}

/// Signatures of both algorithms are 64 bytes (Ed25519; ECDSA P-256 fixed `r || s`).
const SIG_LEN: usize = 64;

fn b64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// base64url of `{"alg":..,"kid":..,"typ":..}` (that key order), with proper JSON escaping.
fn header_b64(alg: SigningAlg, kid: &str, typ: &str) -> Result<String, CryptoError> {
    let esc = |s: &str| {
        serde_json::to_string(s).map_err(|_| CryptoError::Malformed("unencodable header".into()))
    };
    let json = format!(
        r#"{{"alg":"{}","kid":{},"typ":{}}}"#,
        alg.as_str(),
        esc(kid)?,
        esc(typ)?
    );
    Ok(b64::url_encode(json.as_bytes()))
}

impl SigningKey {
    /// A new random key; also returns its PKCS#8 DER (for the caller to seal at rest).
    pub fn generate(
        alg: SigningAlg,
        kid: String,
    ) -> Result<(Self, Zeroizing<Vec<u8>>), CryptoError> {
        let (inner, pkcs8) = match alg {
            SigningAlg::EdDSA => {
                let kp = Ed25519KeyPair::generate().map_err(|_| CryptoError::Internal)?;
                let doc = kp.to_pkcs8().map_err(|_| CryptoError::Internal)?;
                (Inner::Ed(kp), Zeroizing::new(doc.as_ref().to_vec()))
            }
            SigningAlg::ES256 => {
                let kp = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| CryptoError::Internal)?;
                let doc = kp.to_pkcs8v1().map_err(|_| CryptoError::Internal)?;
                (Inner::Ec(kp), Zeroizing::new(doc.as_ref().to_vec()))
            }
        };
        Ok((Self::build(alg, kid, inner)?, pkcs8))
    }

    /// Loads a key from PKCS#8 DER (v1 or v2 for Ed25519; v1 for P-256).
    pub fn from_pkcs8(alg: SigningAlg, kid: String, pkcs8: &[u8]) -> Result<Self, CryptoError> {
        let inner = match alg {
            SigningAlg::EdDSA => Inner::Ed(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| {
                CryptoError::InvalidKey("not a valid Ed25519 PKCS#8 private key".into())
            })?),
            SigningAlg::ES256 => Inner::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|_| {
                        CryptoError::InvalidKey("not a valid P-256 PKCS#8 private key".into())
                    })?,
            ),
        };
        Self::build(alg, kid, inner)
    }

    fn build(alg: SigningAlg, kid: String, inner: Inner) -> Result<Self, CryptoError> {
        if kid.is_empty() || kid.len() > 256 {
            return Err(CryptoError::InvalidKey("kid must be 1 to 256 bytes".into()));
        }
        let public = match &inner {
            Inner::Ed(kp) => PublicJwk::Ed25519 {
                x: kp.public_key().as_ref().to_vec(),
            },
            Inner::Ec(kp) => {
                let pt = kp.public_key().as_ref();
                if pt.len() != 65 || pt[0] != 0x04 {
                    return Err(CryptoError::Internal);
                }
                PublicJwk::P256 {
                    x: pt[1..33].to_vec(),
                    y: pt[33..65].to_vec(),
                }
            }
        };
        Ok(Self {
            hdr_at_jwt: header_b64(alg, &kid, "at+jwt")?,
            hdr_jwt: header_b64(alg, &kid, "JWT")?,
            kid,
            alg,
            inner,
            public,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The public key (without kid/alg/use).
    pub fn public_key(&self) -> &PublicJwk {
        &self.public
    }

    /// Public JWK with `kid`, `alg` and `"use":"sig"`, built from the public key bytes only.
    pub fn public_jwk(&self) -> Value {
        let mut v = self.public.to_json();
        if let Value::Object(m) = &mut v {
            m.insert("kid".into(), self.kid.clone().into());
            m.insert("alg".into(), self.alg.as_str().into());
            m.insert("use".into(), "sig".into());
        }
        v
    }

    fn try_sign(&self, msg: &[u8]) -> Result<signature::Signature, CryptoError> {
        match &self.inner {
            Inner::Ed(kp) => kp.try_sign(msg),
            // The RNG argument is ignored by aws-lc (it uses its own); SystemRandom is zero-sized.
            Inner::Ec(kp) => kp.sign(&SystemRandom::new(), msg),
        }
        .map_err(|_| CryptoError::Internal)
    }

    /// Compact JWS over `claims` (which must serialize to a JSON object) with protected header
    /// `{"alg","kid","typ"}`. Headers for `typ` "at+jwt" and "JWT" are precomputed; the output is
    /// built in a single pre-sized buffer.
    pub fn sign_jwt(
        &self,
        typ: &str,
        claims: &impl serde::Serialize,
    ) -> Result<String, CryptoError> {
        let mut payload = Vec::with_capacity(512);
        serde_json::to_writer(&mut payload, claims)
            .map_err(|_| CryptoError::Claims("claims cannot be serialized to JSON".into()))?;
        if payload.first() != Some(&b'{') {
            return Err(CryptoError::Claims("claims must be a JSON object".into()));
        }
        let dynamic;
        let header: &str = match typ {
            "at+jwt" => &self.hdr_at_jwt,
            "JWT" => &self.hdr_jwt,
            other => {
                dynamic = header_b64(self.alg, &self.kid, other)?;
                &dynamic
            }
        };
        let mut out =
            String::with_capacity(header.len() + 2 + b64_len(payload.len()) + b64_len(SIG_LEN));
        out.push_str(header);
        out.push('.');
        b64::url_encode_into(&payload, &mut out);
        let sig = self.try_sign(out.as_bytes())?;
        out.push('.');
        b64::url_encode_into(sig.as_ref(), &mut out);
        Ok(out)
    }

    /// Raw signature over `msg`: 64-byte Ed25519 or fixed-size (`r || s`) ECDSA P-256/SHA-256.
    /// Aborts the process if the crypto backend fails internally (never happens for valid keys).
    pub fn sign_bytes(&self, msg: &[u8]) -> Vec<u8> {
        match self.try_sign(msg) {
            Ok(s) => s.as_ref().to_vec(),
            Err(_) => crate::rand::fatal("signing failed inside the crypto backend"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Verification of Steward's own tokens
// ---------------------------------------------------------------------------------------------

struct Entry {
    key: PublicJwk,
    /// The JWK's declared `alg`, if any: tokens must use exactly that.
    alg: Option<JwsAlg>,
    /// Pre-parsed backend key (Ed25519/P-256), so verification does not re-parse the point.
    parsed: Option<ParsedPublicKey>,
}

/// Verifier for tokens Steward itself signed: a kid → public key map built from a JWKS document. Cheap to clone.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Arc<HashMap<String, Entry>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

impl KeySet {
    /// From a JWKS document `{"keys":[...]}`.
    pub fn from_jwks(jwks: &Value) -> Result<Self, CryptoError> {
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("JWKS must be an object with a \"keys\" array"))?;
        Self::from_keys(keys)
    }

    /// From a list of JWKs. Keys of unsupported types (and keys without a kid, which could never be
    /// selected) are skipped; invalid keys (private material, weak RSA, bad points) and duplicate kids fail the set.
    pub fn from_keys(keys: &[Value]) -> Result<Self, CryptoError> {
        let mut map = HashMap::with_capacity(keys.len());
        for v in keys {
            let parsed = match parse_public_jwk(v) {
                Ok(p) => p,
                Err(CryptoError::UnsupportedAlgorithm(_)) => continue,
                Err(e) => return Err(e),
            };
            let Some(kid) = parsed.kid else { continue };
            let alg = parsed.alg.as_deref().map(JwsAlg::parse).transpose()?;
            let backend = match &parsed.key {
                PublicJwk::Ed25519 { x } => Some(ParsedPublicKey::new(&signature::ED25519, x)),
                PublicJwk::P256 { x, y } => Some(ParsedPublicKey::new(
                    &signature::ECDSA_P256_SHA256_FIXED,
                    PublicJwk::sec1_point(x, y),
                )),
                PublicJwk::P384 { x, y } => Some(ParsedPublicKey::new(
                    &signature::ECDSA_P384_SHA384_FIXED,
                    PublicJwk::sec1_point(x, y),
                )),
                PublicJwk::Rsa { .. } => None,
            }
            .transpose()
            .map_err(|_| CryptoError::InvalidKey("invalid public key".into()))?;
            let entry = Entry {
                key: parsed.key,
                alg,
                parsed: backend,
            };
            if map.insert(kid, entry).is_some() {
                return Err(malformed("JWKS contains duplicate kids"));
            }
        }
        Ok(Self {
            keys: Arc::new(map),
        })
    }

    /// From a JWK Set published by an external issuer (federation): keys that are unsupported,
    /// invalid or weak are skipped (returned as reasons) rather than failing the set, keys without a
    /// `kid` are skipped, and at most `max_keys` keys are read. Fails only when `jwks` is not a JWK
    /// Set or two usable keys share a kid.
    pub fn from_foreign_jwks(
        jwks: &Value,
        max_keys: usize,
    ) -> Result<(Self, Vec<String>), CryptoError> {
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("JWKS must be an object with a \"keys\" array"))?;
        let mut usable = Vec::with_capacity(keys.len().min(max_keys));
        let mut skipped = Vec::new();
        for (i, k) in keys.iter().take(max_keys).enumerate() {
            let kid = k.get("kid").and_then(Value::as_str).unwrap_or("");
            match parse_public_jwk(k) {
                Ok(p) if p.kid.is_none() => skipped.push(format!("key {i}: no kid")),
                Ok(p) => match p.alg.as_deref().map(JwsAlg::parse).transpose() {
                    Ok(_) => usable.push(k.clone()),
                    Err(e) => skipped.push(format!("key {i} ({kid}): {e}")),
                },
                Err(e) => skipped.push(format!("key {i} ({kid}): {e}")),
            }
        }
        if keys.len() > max_keys {
            skipped.push(format!(
                "{} keys beyond the first {max_keys} ignored",
                keys.len() - max_keys
            ));
        }
        Ok((Self::from_keys(&usable)?, skipped))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The public key for `kid`, if present.
    pub fn get(&self, kid: &str) -> Option<&PublicJwk> {
        self.keys.get(kid).map(|e| &e.key)
    }

    /// Decodes and verifies a token: kid required, key found, alg equal to the JWK's declared `alg` (when
    /// present) and fitting the key type, signature valid, and (if `expected_typ` is given) header `typ`
    /// equal to it case-insensitively, with or without the `application/` prefix.
    /// Does NOT check exp/iss/aud — callers do.
    pub fn verify(&self, token: &str, expected_typ: Option<&str>) -> Result<Decoded, CryptoError> {
        let d = decode(token)?;
        self.verify_decoded(&d, expected_typ)?;
        Ok(d)
    }

    /// [`KeySet::verify`] for a token the caller has already decoded (so that a caller that
    /// must read the claims first, to pick the key set, parses the token once).
    pub fn verify_decoded(
        &self,
        d: &Decoded,
        expected_typ: Option<&str>,
    ) -> Result<(), CryptoError> {
        let kid = d.kid().ok_or_else(|| malformed("token has no kid"))?;
        let entry = self.keys.get(kid).ok_or(CryptoError::KeyNotFound)?;
        if entry.alg.is_some_and(|a| a != d.alg) {
            return Err(CryptoError::UnsupportedAlgorithm(
                "token alg does not match the key's alg".into(),
            ));
        }
        if !d.alg.fits(&entry.key) {
            return Err(alg_mismatch());
        }
        if let Some(expected) = expected_typ
            && !d.typ().is_some_and(|t| typ_matches(t, expected))
        {
            return Err(CryptoError::Claims(format!("token typ must be {expected}")));
        }
        match &entry.parsed {
            Some(pk) => pk
                .verify_sig(d.signing_input(), d.signature())
                .map_err(|_| CryptoError::BadSignature)?,
            None => verify_raw(d.alg, &entry.key, d.signing_input(), d.signature())?,
        }
        Ok(())
    }
}

/// Media-type comparison for `typ` (RFC 7515 §4.1.9): case-insensitive, `application/` prefix optional.
pub(crate) fn typ_matches(actual: &str, expected: &str) -> bool {
    let strip = |s: &str| -> String {
        let l = s.to_ascii_lowercase();
        match l.strip_prefix("application/") {
            Some(rest) => rest.to_owned(),
            None => l,
        }
    };
    strip(actual) == strip(expected)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_lc_rs::hmac;
    use serde_json::json;

    pub(crate) fn jwks(keys: &[&SigningKey]) -> Value {
        json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() })
    }

    /// Assembles a compact JWS from raw parts (for forging test tokens).
    pub(crate) fn compact(header: &Value, claims: &Value, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64::url_encode(header.to_string().as_bytes()),
            b64::url_encode(claims.to_string().as_bytes()),
            b64::url_encode(sig)
        )
    }

    fn claims() -> Value {
        json!({"iss": "https://steward.example", "sub": "wl_123", "exp": 2_000_000_000i64, "scope": "a b"})
    }

    #[test]
    fn alg_parse_allow_list() {
        for a in JwsAlg::ASYMMETRIC {
            assert_eq!(JwsAlg::parse(a.as_str()), Ok(*a));
        }
        for bad in [
            "none", "None", "NONE", "HS256", "HS384", "HS512", "hs256", "ES256K", "ES512",
            "EdDSA ", "eddsa", "", "RSA-OAEP",
        ] {
            assert!(
                matches!(
                    JwsAlg::parse(bad),
                    Err(CryptoError::UnsupportedAlgorithm(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn sign_and_verify_eddsa_and_es256() {
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256] {
            let (k, pkcs8) = SigningKey::generate(alg, format!("kid-{alg}")).unwrap();
            assert!(!pkcs8.is_empty());
            let ks = KeySet::from_jwks(&jwks(&[&k])).unwrap();
            assert_eq!(ks.len(), 1);
            let t = k.sign_jwt("at+jwt", &claims()).unwrap();
            let d = ks.verify(&t, Some("at+jwt")).unwrap();
            assert_eq!(d.alg, alg.jws_alg());
            assert_eq!(d.kid(), Some(k.kid()));
            assert_eq!(d.typ(), Some("at+jwt"));
            assert_eq!(d.claim_str("sub"), Some("wl_123"));
            assert_eq!(d.claim_i64("exp"), Some(2_000_000_000));
            assert_eq!(d.claims, claims().as_object().unwrap().clone());
            // Header is exactly alg, kid, typ in that order.
            let h = t.split('.').next().unwrap();
            let h = String::from_utf8(b64::url_decode(h).unwrap()).unwrap();
            assert_eq!(
                h,
                format!(r#"{{"alg":"{alg}","kid":"kid-{alg}","typ":"at+jwt"}}"#)
            );
            // Other typ values work (computed on the fly), also through verify's typ check.
            let t2 = k.sign_jwt("JWT", &claims()).unwrap();
            assert!(ks.verify(&t2, Some("JWT")).is_ok());
            let t3 = k.sign_jwt("logout+jwt", &claims()).unwrap();
            assert!(ks.verify(&t3, Some("logout+jwt")).is_ok());
            // Reloading from PKCS#8 gives the same key.
            let k2 = SigningKey::from_pkcs8(alg, k.kid().to_owned(), &pkcs8).unwrap();
            assert_eq!(k2.public_jwk(), k.public_jwk());
            assert!(
                ks.verify(&k2.sign_jwt("at+jwt", &claims()).unwrap(), None)
                    .is_ok()
            );
            // Raw signatures are 64 bytes and verify with jws::verify_raw.
            let sig = k.sign_bytes(b"hello");
            assert_eq!(sig.len(), 64);
            assert!(verify_raw(alg.jws_alg(), k.public_key(), b"hello", &sig).is_ok());
            assert!(verify_raw(alg.jws_alg(), k.public_key(), b"hellO", &sig).is_err());
        }
    }

    #[test]
    fn public_jwk_has_only_public_members() {
        let (k, _) = SigningKey::generate(SigningAlg::ES256, "k1".into()).unwrap();
        let v = k.public_jwk();
        let mut names: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
        assert_eq!(v["use"], "sig");
        assert_eq!(v["alg"], "ES256");
        let p = parse_public_jwk(&v).unwrap();
        assert_eq!(&p.key, k.public_key());
    }

    #[test]
    fn tampering_fails() {
        let (k, _) = SigningKey::generate(SigningAlg::EdDSA, "k1".into()).unwrap();
        let ks = KeySet::from_jwks(&jwks(&[&k])).unwrap();
        let t = k.sign_jwt("at+jwt", &claims()).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        // Different payload, same header and signature.
        let mut c = claims();
        c["sub"] = json!("wl_999");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64::url_encode(c.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(
            ks.verify(&forged, None).unwrap_err(),
            CryptoError::BadSignature
        );
        // Flipped signature bit.
        let mut sig = b64::url_decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let forged = format!("{}.{}.{}", parts[0], parts[1], b64::url_encode(&sig));
        assert_eq!(
            ks.verify(&forged, None).unwrap_err(),
            CryptoError::BadSignature
        );
        // Truncated signature.
        let forged = format!("{}.{}.{}", parts[0], parts[1], b64::url_encode(&sig[..63]));
        assert_eq!(
            ks.verify(&forged, None).unwrap_err(),
            CryptoError::BadSignature
        );
        // Signed by another key with the same kid.
        let (other, _) = SigningKey::generate(SigningAlg::EdDSA, "k1".into()).unwrap();
        let t = other.sign_jwt("at+jwt", &claims()).unwrap();
        assert_eq!(ks.verify(&t, None).unwrap_err(), CryptoError::BadSignature);
    }

    #[test]
    fn unknown_or_missing_kid_fails() {
        let (k, _) = SigningKey::generate(SigningAlg::EdDSA, "k1".into()).unwrap();
        let (k2, _) = SigningKey::generate(SigningAlg::EdDSA, "k2".into()).unwrap();
        let ks = KeySet::from_jwks(&jwks(&[&k])).unwrap();
        let t = k2.sign_jwt("at+jwt", &claims()).unwrap();
        assert_eq!(ks.verify(&t, None).unwrap_err(), CryptoError::KeyNotFound);
        let sig = k.sign_bytes(b"x");
        let no_kid = compact(&json!({"alg": "EdDSA", "typ": "at+jwt"}), &claims(), &sig);
        assert!(matches!(
            ks.verify(&no_kid, None),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn alg_none_rejected() {
        let (k, _) = SigningKey::generate(SigningAlg::EdDSA, "k1".into()).unwrap();
        let ks = KeySet::from_jwks(&jwks(&[&k])).unwrap();
        for none in ["none", "None", "NONE"] {
            let t = compact(
                &json!({"alg": none, "kid": "k1", "typ": "at+jwt"}),
                &claims(),
                b"",
            );
            assert!(matches!(
                ks.verify(&t, None),
                Err(CryptoError::UnsupportedAlgorithm(_))
            ));
            assert!(decode(&t).is_err());
        }
        // Also with a trailing dot missing/extra.
        let h = b64::url_encode(br#"{"alg":"none","kid":"k1"}"#);
        let p = b64::url_encode(claims().to_string().as_bytes());
        assert!(ks.verify(&format!("{h}.{p}"), None).is_err());
        assert!(ks.verify(&format!("{h}.{p}."), None).is_err());
    }

    #[test]
    fn hmac_with_public_key_confusion_rejected() {
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256] {
            let (k, _) = SigningKey::generate(alg, "k1".into()).unwrap();
            let ks = KeySet::from_jwks(&jwks(&[&k])).unwrap();
            // Candidate "secrets" an attacker might guess a naive verifier would use: raw public key bytes,
            // the JWK JSON text.
            let raw = match k.public_key() {
                PublicJwk::Ed25519 { x } => x.clone(),
                PublicJwk::P256 { x, y } | PublicJwk::P384 { x, y } => PublicJwk::sec1_point(x, y),
                PublicJwk::Rsa { n, .. } => n.clone(),
            };
            let jwk_text = k.public_jwk().to_string().into_bytes();
            for secret in [raw, jwk_text] {
                for (hs, halg) in [
                    ("HS256", hmac::HMAC_SHA256),
                    ("HS384", hmac::HMAC_SHA384),
                    ("HS512", hmac::HMAC_SHA512),
                ] {
                    let h = b64::url_encode(
                        json!({"alg": hs, "kid": "k1", "typ": "at+jwt"})
                            .to_string()
                            .as_bytes(),
                    );
                    let p = b64::url_encode(claims().to_string().as_bytes());
                    let input = format!("{h}.{p}");
                    let mac = hmac::sign(&hmac::Key::new(halg, &secret), input.as_bytes());
                    let t = format!("{input}.{}", b64::url_encode(mac.as_ref()));
                    let err = ks.verify(&t, Some("at+jwt")).unwrap_err();
                    assert!(
                        matches!(err, CryptoError::UnsupportedAlgorithm(_)),
                        "{hs}: {err:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn alg_key_type_mismatch_rejected() {
        let (ed, _) = SigningKey::generate(SigningAlg::EdDSA, "ed".into()).unwrap();
        let (ec, _) = SigningKey::generate(SigningAlg::ES256, "ec".into()).unwrap();
        // JWKS without "alg" members, so only the key-type check stands in the way.
        let strip = |k: &SigningKey| {
            let mut v = k.public_jwk();
            v.as_object_mut().unwrap().remove("alg");
            v
        };
        let ks = KeySet::from_keys(&[strip(&ed), strip(&ec)]).unwrap();
        // ES256 header on the Ed25519 key, signed with the EC key.
        let h = json!({"alg": "ES256", "kid": "ed", "typ": "at+jwt"});
        let input = format!(
            "{}.{}",
            b64::url_encode(h.to_string().as_bytes()),
            b64::url_encode(claims().to_string().as_bytes())
        );
        let t = format!(
            "{input}.{}",
            b64::url_encode(&ec.sign_bytes(input.as_bytes()))
        );
        assert!(matches!(
            ks.verify(&t, None),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
        // EdDSA header on the EC key.
        let h = json!({"alg": "EdDSA", "kid": "ec", "typ": "at+jwt"});
        let input = format!(
            "{}.{}",
            b64::url_encode(h.to_string().as_bytes()),
            b64::url_encode(claims().to_string().as_bytes())
        );
        let t = format!(
            "{input}.{}",
            b64::url_encode(&ed.sign_bytes(input.as_bytes()))
        );
        assert!(matches!(
            ks.verify(&t, None),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
        // Direct jws::verify: allowed list and key type both enforced.
        let good = ed.sign_jwt("JWT", &claims()).unwrap();
        let d = decode(&good).unwrap();
        assert!(verify(&d, ed.public_key(), &[JwsAlg::EdDSA]).is_ok());
        assert!(matches!(
            verify(&d, ed.public_key(), &[JwsAlg::ES256]),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            verify(&d, ec.public_key(), JwsAlg::ASYMMETRIC),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn declared_jwk_alg_is_enforced() {
        // A JWK declaring RS256 and a PS256 token: rejected even though the key type fits.
        let kp = signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pk = kp.public_key();
        let jwk = json!({
            "kty": "RSA", "kid": "r1", "alg": "RS256",
            "n": b64::url_encode(pk.modulus().big_endian_without_leading_zero()),
            "e": b64::url_encode(pk.exponent().big_endian_without_leading_zero()),
        });
        let ks = KeySet::from_keys(&[jwk]).unwrap();
        let rng = SystemRandom::new();
        let mk = |alg: &str, enc: &'static dyn signature::RsaEncoding| {
            let h = json!({"alg": alg, "kid": "r1"});
            let input = format!(
                "{}.{}",
                b64::url_encode(h.to_string().as_bytes()),
                b64::url_encode(claims().to_string().as_bytes())
            );
            let mut sig = vec![0u8; kp.public_modulus_len()];
            kp.sign(enc, &rng, input.as_bytes(), &mut sig).unwrap();
            format!("{input}.{}", b64::url_encode(&sig))
        };
        assert!(
            ks.verify(&mk("RS256", &signature::RSA_PKCS1_SHA256), None)
                .is_ok()
        );
        assert!(matches!(
            ks.verify(&mk("PS256", &signature::RSA_PSS_SHA256), None),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn typ_check() {
        let (k, _) = SigningKey::generate(SigningAlg::EdDSA, "k1".into()).unwrap();
        let ks = KeySet::from_jwks(&jwks(&[&k])).unwrap();
        let at = k.sign_jwt("at+jwt", &claims()).unwrap();
        let jwt = k.sign_jwt("JWT", &claims()).unwrap();
        let app = k.sign_jwt("application/AT+JWT", &claims()).unwrap();
        assert!(ks.verify(&at, Some("at+jwt")).is_ok());
        assert!(ks.verify(&at, Some("AT+JWT")).is_ok());
        assert!(ks.verify(&app, Some("at+jwt")).is_ok());
        assert!(ks.verify(&at, None).is_ok());
        assert!(matches!(
            ks.verify(&jwt, Some("at+jwt")),
            Err(CryptoError::Claims(_))
        ));
        assert!(matches!(
            ks.verify(&at, Some("JWT")),
            Err(CryptoError::Claims(_))
        ));
        // Missing typ fails when one is expected.
        let h = json!({"alg": "EdDSA", "kid": "k1"});
        let input = format!(
            "{}.{}",
            b64::url_encode(h.to_string().as_bytes()),
            b64::url_encode(claims().to_string().as_bytes())
        );
        let t = format!(
            "{input}.{}",
            b64::url_encode(&k.sign_bytes(input.as_bytes()))
        );
        assert!(ks.verify(&t, None).is_ok());
        assert!(matches!(
            ks.verify(&t, Some("at+jwt")),
            Err(CryptoError::Claims(_))
        ));
    }

    #[test]
    fn decode_rejects_malformed_tokens() {
        let (k, _) = SigningKey::generate(SigningAlg::EdDSA, "k1".into()).unwrap();
        let good = k.sign_jwt("JWT", &claims()).unwrap();
        assert!(decode(&good).is_ok());
        let p: Vec<&str> = good.split('.').collect();
        let enc = |v: &str| b64::url_encode(v.as_bytes());
        let bad = [
            String::new(),
            format!("{}.{}", p[0], p[1]),
            format!("{good}.{}", p[2]),
            format!("{}=.{}.{}", p[0], p[1], p[2]),
            format!("{}.{}.{}+", p[0], p[1], p[2]),
            format!("{}.{}.{}", enc("[]"), p[1], p[2]),
            format!("{}.{}.{}", enc("not json"), p[1], p[2]),
            format!("{}.{}.{}", p[0], enc("[1]"), p[2]),
            format!("{}.{}.{}", p[0], enc("\"str\""), p[2]),
            format!(
                "{}.{}.{}",
                enc(r#"{"alg":"EdDSA","kid":"k1","crit":["exp"]}"#),
                p[1],
                p[2]
            ),
            format!(
                "{}.{}.{}",
                enc(r#"{"alg":"EdDSA","kid":"k1","b64":false}"#),
                p[1],
                p[2]
            ),
            format!("{}.{}.{}", enc(r#"{"kid":"k1"}"#), p[1], p[2]),
            format!("{}.{}.{}", enc(r#"{"alg":5,"kid":"k1"}"#), p[1], p[2]),
            format!(
                "{}.{}.{}",
                enc(r#"{"alg":"ES256K","kid":"k1"}"#),
                p[1],
                p[2]
            ),
            // Duplicate members.
            format!(
                "{}.{}.{}",
                enc(r#"{"alg":"EdDSA","alg":"none","kid":"k1"}"#),
                p[1],
                p[2]
            ),
            format!("{}.{}.{}", p[0], enc(r#"{"sub":"a","sub":"b"}"#), p[2]),
        ];
        for t in &bad {
            assert!(decode(t).is_err(), "accepted {t}");
        }
    }

    #[test]
    fn oversized_token_rejected() {
        let (k, _) = SigningKey::generate(SigningAlg::EdDSA, "k1".into()).unwrap();
        let ks = KeySet::from_jwks(&jwks(&[&k])).unwrap();
        let big = json!({"sub": "x", "pad": "a".repeat(MAX_TOKEN_LEN)});
        let t = k.sign_jwt("JWT", &big).unwrap();
        assert!(t.len() > MAX_TOKEN_LEN);
        assert_eq!(
            ks.verify(&t, None).unwrap_err(),
            CryptoError::Malformed("token exceeds 16 KiB".into())
        );
        let ok = json!({"sub": "x", "pad": "a".repeat(8000)});
        assert!(ks.verify(&k.sign_jwt("JWT", &ok).unwrap(), None).is_ok());
    }

    #[test]
    fn sign_jwt_rejects_non_object_claims() {
        let (k, _) = SigningKey::generate(SigningAlg::EdDSA, "k1".into()).unwrap();
        assert!(matches!(
            k.sign_jwt("JWT", &json!([1, 2])),
            Err(CryptoError::Claims(_))
        ));
        assert!(matches!(
            k.sign_jwt("JWT", &"str"),
            Err(CryptoError::Claims(_))
        ));
    }

    #[test]
    fn rsa_rs256_and_ps256_verify() {
        let kp = signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pk = kp.public_key();
        let jwk = PublicJwk::Rsa {
            n: pk.modulus().big_endian_without_leading_zero().to_vec(),
            e: pk.exponent().big_endian_without_leading_zero().to_vec(),
        };
        let rng = SystemRandom::new();
        let cases: [(&str, &'static dyn signature::RsaEncoding); 6] = [
            ("RS256", &signature::RSA_PKCS1_SHA256),
            ("RS384", &signature::RSA_PKCS1_SHA384),
            ("RS512", &signature::RSA_PKCS1_SHA512),
            ("PS256", &signature::RSA_PSS_SHA256),
            ("PS384", &signature::RSA_PSS_SHA384),
            ("PS512", &signature::RSA_PSS_SHA512),
        ];
        for (alg, enc) in cases {
            let h = json!({"alg": alg, "typ": "JWT"});
            let input = format!(
                "{}.{}",
                b64::url_encode(h.to_string().as_bytes()),
                b64::url_encode(claims().to_string().as_bytes())
            );
            let mut sig = vec![0u8; kp.public_modulus_len()];
            kp.sign(enc, &rng, input.as_bytes(), &mut sig).unwrap();
            let t = format!("{input}.{}", b64::url_encode(&sig));
            let d = decode(&t).unwrap();
            assert_eq!(d.alg.as_str(), alg);
            assert!(verify(&d, &jwk, JwsAlg::ASYMMETRIC).is_ok(), "{alg}");
            assert!(matches!(
                verify(&d, &jwk, &[JwsAlg::EdDSA]),
                Err(CryptoError::UnsupportedAlgorithm(_))
            ));
            // Tampered.
            let mut bad = sig.clone();
            bad[0] ^= 1;
            let t = format!("{input}.{}", b64::url_encode(&bad));
            assert_eq!(
                verify(&decode(&t).unwrap(), &jwk, JwsAlg::ASYMMETRIC),
                Err(CryptoError::BadSignature)
            );
        }
        // PKCS#1 v1.5 signature presented as PSS fails (padding is bound to the alg).
        let h = json!({"alg": "PS256"});
        let input = format!(
            "{}.{}",
            b64::url_encode(h.to_string().as_bytes()),
            b64::url_encode(claims().to_string().as_bytes())
        );
        let mut sig = vec![0u8; kp.public_modulus_len()];
        kp.sign(
            &signature::RSA_PKCS1_SHA256,
            &rng,
            input.as_bytes(),
            &mut sig,
        )
        .unwrap();
        let t = format!("{input}.{}", b64::url_encode(&sig));
        assert_eq!(
            verify(&decode(&t).unwrap(), &jwk, JwsAlg::ASYMMETRIC),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn es384_verifies_with_p384_keys_only() {
        let kp = EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        let pt = kp.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-384", "kid": "p384",
            "x": b64::url_encode(&pt[1..49]), "y": b64::url_encode(&pt[49..97])});
        let parsed = parse_public_jwk(&jwk).unwrap();
        assert!(matches!(parsed.key, PublicJwk::P384 { .. }));
        assert_eq!(
            PublicJwk::P384 {
                x: pt[1..49].to_vec(),
                y: pt[49..97].to_vec()
            }
            .to_json()["crv"],
            "P-384"
        );
        let h = json!({"alg": "ES384", "kid": "p384"});
        let input = format!(
            "{}.{}",
            b64::url_encode(h.to_string().as_bytes()),
            b64::url_encode(claims().to_string().as_bytes())
        );
        let sig = kp.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        let t = format!("{input}.{}", b64::url_encode(sig.as_ref()));
        let ks = KeySet::from_jwks(&json!({"keys": [jwk]})).unwrap();
        assert!(ks.verify(&t, None).is_ok());
        // Tampered, and ES384 on a P-256 key, fail.
        let bad = format!("{input}.{}", b64::url_encode(&[0u8; 96]));
        assert_eq!(
            ks.verify(&bad, None).unwrap_err(),
            CryptoError::BadSignature
        );
        let (p256, _) = SigningKey::generate(SigningAlg::ES256, "p256".into()).unwrap();
        assert!(matches!(
            verify(&decode(&t).unwrap(), p256.public_key(), JwsAlg::ASYMMETRIC),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
        // External key sets skip what they cannot use instead of failing.
        let (ks, skipped) = KeySet::from_foreign_jwks(
            &json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}, {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "weak"}, p256.public_jwk()]}),
            64,
        )
        .unwrap();
        assert_eq!((ks.len(), skipped.len()), (1, 2));
        assert!(peek_claims(&t).is_some_and(|c| c.get("sub").is_some()));
    }

    #[test]
    fn small_rsa_key_never_verifies() {
        let mut n = vec![0xffu8; 128];
        n[127] = 0xf1;
        let weak = PublicJwk::Rsa {
            n,
            e: vec![1, 0, 1],
        };
        let t = compact(&json!({"alg": "RS256"}), &claims(), &[0u8; 128]);
        let d = decode(&t).unwrap();
        assert!(matches!(
            verify(&d, &weak, JwsAlg::ASYMMETRIC),
            Err(CryptoError::WeakKey(_))
        ));
    }

    #[test]
    fn keyset_skips_unsupported_and_rejects_invalid() {
        let (k, _) = SigningKey::generate(SigningAlg::EdDSA, "k1".into()).unwrap();
        let jwks = json!({"keys": [
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"},
            {"kty": "oct", "kid": "sym"},
            {"kty": "OKP", "crv": "X25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "x"},
            k.public_jwk(),
        ]});
        let ks = KeySet::from_jwks(&jwks).unwrap();
        assert_eq!(ks.len(), 1);
        assert!(ks.get("k1").is_some());
        assert!(
            ks.verify(&k.sign_jwt("at+jwt", &claims()).unwrap(), Some("at+jwt"))
                .is_ok()
        );
        let mut private = k.public_jwk();
        private["d"] = json!("AAAA");
        assert!(KeySet::from_keys(&[private]).is_err());
        assert!(KeySet::from_keys(&[k.public_jwk(), k.public_jwk()]).is_err());
        assert!(KeySet::from_jwks(&json!({"nokeys": []})).is_err());
        assert!(KeySet::from_jwks(&json!([])).is_err());
    }

    #[test]
    fn debug_redacts_private_material() {
        let (k, pkcs8) = SigningKey::generate(SigningAlg::ES256, "k1".into()).unwrap();
        let d = format!("{k:?}");
        assert!(d.contains("<redacted>") && d.contains("k1"), "{d}");
        assert!(!d.contains(&b64::url_encode(&pkcs8)));
        let t = k.sign_jwt("at+jwt", &claims()).unwrap();
        let dd = format!("{:?}", decode(&t).unwrap());
        assert!(
            !dd.contains(t.split('.').nth(2).unwrap()),
            "signature must not be printed"
        );
    }

    #[test]
    fn types_are_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<SigningKey>();
        check::<KeySet>();
        check::<crate::secret_hash::SecretHasher>();
        check::<crate::master::MasterKey>();
        check::<crate::note::NoteSigner>();
    }

    #[test]
    fn interop_with_jsonwebtoken() {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation};
        for (alg, jalg) in [
            (SigningAlg::EdDSA, Algorithm::EdDSA),
            (SigningAlg::ES256, Algorithm::ES256),
        ] {
            let (k, _) = SigningKey::generate(alg, "interop".into()).unwrap();
            let t = k.sign_jwt("at+jwt", &claims()).unwrap();
            // Build the DecodingKey from our published public JWK.
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.public_jwk()).unwrap();
            let dk = DecodingKey::from_jwk(&jwk).unwrap();
            let mut v = Validation::new(jalg);
            v.validate_exp = false;
            v.validate_aud = false;
            v.required_spec_claims.clear();
            let data = jsonwebtoken::decode::<Value>(&t, &dk, &v).unwrap();
            assert_eq!(data.claims, claims());
            assert_eq!(data.header.kid.as_deref(), Some("interop"));
            // And a tampered token is rejected by jsonwebtoken too.
            let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
            let mut c = claims();
            c["sub"] = json!("evil");
            parts[1] = b64::url_encode(c.to_string().as_bytes());
            assert!(jsonwebtoken::decode::<Value>(&parts.join("."), &dk, &v).is_err());
        }
    }
}
