//! Public JSON Web Keys (RFC 7517/7518/8037): strict parsing of the key types Steward accepts,
//! validation through the crypto backend, canonical JSON, and RFC 7638 thumbprints.

use crate::jws::JwsAlg;
use crate::{CryptoError, b64};
use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use serde_json::{Map, Value};

/// Members that only private or symmetric JWKs carry. Their presence is always an error.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
/// Smallest RSA modulus Steward accepts.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus Steward accepts (the backend's verification limit).
pub const MAX_RSA_BITS: usize = 8192;

/// A public JWK of a supported type. Byte fields are raw (not base64); RSA integers carry no leading zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicJwk {
    /// OKP / Ed25519 (RFC 8037): `x` is the 32-byte public key.
    Ed25519 { x: Vec<u8> },
    /// EC / P-256: affine coordinates, 32 bytes each.
    P256 { x: Vec<u8>, y: Vec<u8> },
    /// EC / P-384: affine coordinates, 48 bytes each (ES384, accepted from external issuers).
    P384 { x: Vec<u8>, y: Vec<u8> },
    /// RSA: modulus and public exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

/// A parsed public JWK with its optional `kid` and `alg` members.
#[derive(Debug, Clone)]
pub struct ParsedJwk {
    pub key: PublicJwk,
    pub kid: Option<String>,
    pub alg: Option<String>,
}

/// Parses and validates a public JWK.
///
/// Rejects: private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`), `kty` `oct`, unknown `kty`/`crv`,
/// wrong coordinate lengths, EC points not on P-256, RSA moduli under 2048 bits, `use` other than `sig`,
/// and an `alg` that is not an accepted signature algorithm for the key type.
pub fn parse_public_jwk(v: &Value) -> Result<ParsedJwk, CryptoError> {
    let obj = v
        .as_object()
        .ok_or_else(|| malformed("JWK must be a JSON object"))?;
    if PRIVATE_MEMBERS.iter().any(|m| obj.contains_key(*m)) {
        return Err(CryptoError::InvalidKey(
            "JWK contains private or symmetric key material".into(),
        ));
    }
    let kty = opt_str(obj, "kty")?.ok_or_else(|| malformed("JWK has no kty"))?;
    let key = match kty {
        "OKP" => {
            match opt_str(obj, "crv")? {
                Some("Ed25519") => {}
                Some(_) => return Err(unsupported("unsupported OKP curve (only Ed25519)")),
                None => return Err(malformed("JWK has no crv")),
            }
            let x = b64_member(obj, "x")?;
            if x.len() != 32 {
                return Err(CryptoError::InvalidKey("Ed25519 x must be 32 bytes".into()));
            }
            PublicJwk::Ed25519 { x }
        }
        "EC" => {
            let size = match opt_str(obj, "crv")? {
                Some("P-256") => 32,
                Some("P-384") => 48,
                Some(_) => return Err(unsupported("unsupported EC curve (only P-256 and P-384)")),
                None => return Err(malformed("JWK has no crv")),
            };
            let x = b64_member(obj, "x")?;
            let y = b64_member(obj, "y")?;
            if x.len() != size || y.len() != size {
                return Err(CryptoError::InvalidKey(format!(
                    "EC coordinates must be {size} bytes each for this curve"
                )));
            }
            if size == 32 {
                PublicJwk::P256 { x, y }
            } else {
                PublicJwk::P384 { x, y }
            }
        }
        "RSA" => {
            let n = strip_leading_zeros(b64_member(obj, "n")?);
            let e = strip_leading_zeros(b64_member(obj, "e")?);
            PublicJwk::Rsa { n, e }
        }
        "oct" => return Err(unsupported("symmetric (oct) JWKs are not accepted")),
        _ => return Err(unsupported("unsupported JWK kty")),
    };
    key.validate()?;

    match obj.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(Value::String(_)) => return Err(unsupported("JWK use must be \"sig\"")),
        Some(_) => return Err(malformed("JWK use must be a string")),
    }
    let kid = opt_str(obj, "kid")?.map(str::to_owned);
    let alg = opt_str(obj, "alg")?.map(str::to_owned);
    if let Some(a) = &alg {
        let a = JwsAlg::parse(a)
            .map_err(|_| unsupported("JWK alg is not an accepted signature algorithm"))?;
        if !a.fits(&key) {
            return Err(CryptoError::InvalidKey(
                "JWK alg does not match its key type".into(),
            ));
        }
    }
    Ok(ParsedJwk { key, kid, alg })
}

impl PublicJwk {
    /// RFC 7638 thumbprint: base64url(SHA-256(required members in lexicographic order, no whitespace)).
    pub fn thumbprint(&self) -> String {
        // Base64url values never need JSON escaping, so the canonical form can be written directly.
        let canonical = match self {
            PublicJwk::Ed25519 { x } => {
                format!(
                    r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                    b64::url_encode(x)
                )
            }
            PublicJwk::P256 { x, y } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                b64::url_encode(x),
                b64::url_encode(y)
            ),
            PublicJwk::P384 { x, y } => format!(
                r#"{{"crv":"P-384","kty":"EC","x":"{}","y":"{}"}}"#,
                b64::url_encode(x),
                b64::url_encode(y)
            ),
            PublicJwk::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                b64::url_encode(e),
                b64::url_encode(n)
            ),
        };
        b64::url_encode(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// Canonical public JSON: `kty`, `crv`, `x`[, `y`] or `kty`, `n`, `e`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        match self {
            PublicJwk::Ed25519 { x } => {
                m.insert("kty".into(), "OKP".into());
                m.insert("crv".into(), "Ed25519".into());
                m.insert("x".into(), b64::url_encode(x).into());
            }
            PublicJwk::P256 { x, y } => {
                m.insert("kty".into(), "EC".into());
                m.insert("crv".into(), "P-256".into());
                m.insert("x".into(), b64::url_encode(x).into());
                m.insert("y".into(), b64::url_encode(y).into());
            }
            PublicJwk::P384 { x, y } => {
                m.insert("kty".into(), "EC".into());
                m.insert("crv".into(), "P-384".into());
                m.insert("x".into(), b64::url_encode(x).into());
                m.insert("y".into(), b64::url_encode(y).into());
            }
            PublicJwk::Rsa { n, e } => {
                m.insert("kty".into(), "RSA".into());
                m.insert("n".into(), b64::url_encode(n).into());
                m.insert("e".into(), b64::url_encode(e).into());
            }
        }
        Value::Object(m)
    }

    /// The JWK `kty` value.
    pub fn kty(&self) -> &'static str {
        match self {
            PublicJwk::Ed25519 { .. } => "OKP",
            PublicJwk::P256 { .. } | PublicJwk::P384 { .. } => "EC",
            PublicJwk::Rsa { .. } => "RSA",
        }
    }

    /// SEC 1 uncompressed point `0x04 || x || y` of a P-256 key.
    pub(crate) fn sec1_point(x: &[u8], y: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(1 + x.len() + y.len());
        p.push(0x04);
        p.extend_from_slice(x);
        p.extend_from_slice(y);
        p
    }

    /// Checks the key with the crypto backend (point on curve, RSA size and structure).
    pub(crate) fn validate(&self) -> Result<(), CryptoError> {
        match self {
            PublicJwk::Ed25519 { x } => {
                if x.len() != 32 {
                    return Err(CryptoError::InvalidKey("Ed25519 x must be 32 bytes".into()));
                }
                ParsedPublicKey::new(&signature::ED25519, x)
                    .map(drop)
                    .map_err(|_| CryptoError::InvalidKey("invalid Ed25519 public key".into()))
            }
            PublicJwk::P256 { x, y } => {
                if x.len() != 32 || y.len() != 32 {
                    return Err(CryptoError::InvalidKey(
                        "P-256 coordinates must be 32 bytes each".into(),
                    ));
                }
                ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, Self::sec1_point(x, y))
                    .map(drop)
                    .map_err(|_| CryptoError::InvalidKey("EC point is not on P-256".into()))
            }
            PublicJwk::P384 { x, y } => {
                if x.len() != 48 || y.len() != 48 {
                    return Err(CryptoError::InvalidKey(
                        "P-384 coordinates must be 48 bytes each".into(),
                    ));
                }
                ParsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, Self::sec1_point(x, y))
                    .map(drop)
                    .map_err(|_| CryptoError::InvalidKey("EC point is not on P-384".into()))
            }
            PublicJwk::Rsa { n, e } => {
                check_rsa_size(n)?;
                // Public exponent: odd, at least 3, at most 33 bits (the backend's limit).
                let e_ok = !e.is_empty()
                    && e[0] != 0
                    && e.len() <= 5
                    && e.last().is_some_and(|b| b & 1 == 1)
                    && !(e.len() == 1 && e[0] < 3);
                if !e_ok || n.last().is_none_or(|b| b & 1 == 0) {
                    return Err(CryptoError::InvalidKey("invalid RSA public key".into()));
                }
                RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
                .map(drop)
                .map_err(|_| CryptoError::InvalidKey("invalid RSA public key".into()))
            }
        }
    }
}

/// Bit length of a big-endian unsigned integer.
pub(crate) fn bit_len(n: &[u8]) -> usize {
    let n = match n.iter().position(|&b| b != 0) {
        Some(i) => &n[i..],
        None => return 0,
    };
    (n.len() - 1) * 8 + (8 - n[0].leading_zeros() as usize)
}

/// Enforces [`MIN_RSA_BITS`]..=[`MAX_RSA_BITS`].
pub(crate) fn check_rsa_size(n: &[u8]) -> Result<(), CryptoError> {
    let bits = bit_len(n);
    if bits < MIN_RSA_BITS {
        return Err(CryptoError::WeakKey(format!(
            "RSA modulus must be at least {MIN_RSA_BITS} bits"
        )));
    }
    if bits > MAX_RSA_BITS {
        return Err(unsupported("RSA modulus larger than 8192 bits"));
    }
    Ok(())
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|&&b| b == 0).count();
    v.drain(..zeros);
    v
}

fn malformed(msg: &str) -> CryptoError {
    CryptoError::Malformed(msg.into())
}

fn unsupported(msg: &str) -> CryptoError {
    CryptoError::UnsupportedAlgorithm(msg.into())
}

/// An optional string member; present-but-not-a-string is an error.
fn opt_str<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, CryptoError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(CryptoError::Malformed(format!(
            "JWK member {name} must be a string"
        ))),
    }
}

/// A required base64url member.
fn b64_member(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, CryptoError> {
    let s =
        opt_str(obj, name)?.ok_or_else(|| CryptoError::Malformed(format!("JWK has no {name}")))?;
    b64::url_decode(s)
        .map_err(|_| CryptoError::Malformed(format!("JWK member {name} is not base64url")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_lc_rs::signature::KeyPair;
    use serde_json::json;

    /// RFC 7638 §3.1 example key.
    pub(crate) const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

    #[test]
    fn rfc7638_example_thumbprint() {
        let v =
            json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"});
        let p = parse_public_jwk(&v).unwrap();
        assert_eq!(p.kid.as_deref(), Some("2011-04-29"));
        assert_eq!(p.alg.as_deref(), Some("RS256"));
        assert_eq!(
            p.key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(
            p.key.to_json(),
            json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB"})
        );
        // A (non-canonical) leading zero octet on n is normalized and does not change the thumbprint.
        let mut n = b64::url_decode(RFC7638_N).unwrap();
        n.insert(0, 0);
        let v2 = json!({"kty": "RSA", "n": b64::url_encode(&n), "e": "AQAB"});
        assert_eq!(
            parse_public_jwk(&v2).unwrap().key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn ed25519_parse_and_thumbprint() {
        // RFC 8037 §A.2/A.3 public key and its published thumbprint.
        let v = json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let p = parse_public_jwk(&v).unwrap();
        assert!(matches!(p.key, PublicJwk::Ed25519 { .. }));
        assert_eq!(
            p.key.thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        assert_eq!(p.key.to_json(), v);
        assert!(p.kid.is_none() && p.alg.is_none());
    }

    #[test]
    fn p256_parse_and_thumbprint() {
        let kp =
            signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pt = kp.public_key().as_ref();
        let (x, y) = (b64::url_encode(&pt[1..33]), b64::url_encode(&pt[33..65]));
        let v = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "use": "sig", "alg": "ES256", "kid": "k1"});
        let p = parse_public_jwk(&v).unwrap();
        assert_eq!(
            p.key,
            PublicJwk::P256 {
                x: pt[1..33].to_vec(),
                y: pt[33..65].to_vec()
            }
        );
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let expect =
            b64::url_encode(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref());
        assert_eq!(p.key.thumbprint(), expect);
        assert_eq!(
            p.key.to_json(),
            json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})
        );
    }

    #[test]
    fn rsa_2048_parses() {
        let kp = signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pk = kp.public_key();
        let v = json!({
            "kty": "RSA",
            "n": b64::url_encode(pk.modulus().big_endian_without_leading_zero()),
            "e": b64::url_encode(pk.exponent().big_endian_without_leading_zero()),
        });
        let p = parse_public_jwk(&v).unwrap();
        let PublicJwk::Rsa { n, .. } = &p.key else {
            panic!("not RSA")
        };
        assert_eq!(bit_len(n), 2048);
    }

    #[test]
    fn private_members_rejected() {
        let base = json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        for m in PRIVATE_MEMBERS {
            let mut v = base.clone();
            v[*m] = json!("AAAA");
            let err = parse_public_jwk(&v).unwrap_err();
            assert!(matches!(err, CryptoError::InvalidKey(_)), "{m}: {err:?}");
            assert!(!err.to_string().contains("AAAA"));
        }
        let rsa_private = json!({"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "d": "AQAB"});
        assert!(matches!(
            parse_public_jwk(&rsa_private),
            Err(CryptoError::InvalidKey(_))
        ));
    }

    #[test]
    fn weak_and_unsupported_keys_rejected() {
        // 1024-bit modulus (top bit set, odd).
        let mut n = vec![0xffu8; 128];
        n[127] = 0xf1;
        let v = json!({"kty": "RSA", "n": b64::url_encode(&n), "e": "AQAB"});
        assert!(matches!(parse_public_jwk(&v), Err(CryptoError::WeakKey(_))));
        // 2047-bit modulus.
        let mut n = vec![0xffu8; 256];
        n[0] = 0x7f;
        let v = json!({"kty": "RSA", "n": b64::url_encode(&n), "e": "AQAB"});
        assert!(matches!(parse_public_jwk(&v), Err(CryptoError::WeakKey(_))));
        // Symmetric keys: rejected (the "k" member alone already is; without it, the kty is).
        let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
        assert!(parse_public_jwk(&oct).is_err());
        let oct = json!({"kty": "oct"});
        assert!(matches!(
            parse_public_jwk(&oct),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
        for v in [
            json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
            json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}),
            json!({"kty": "OKP", "crv": "X25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
            json!({"kty": "OKP", "crv": "Ed448", "x": "AA"}),
            json!({"kty": "XYZ"}),
        ] {
            assert!(
                matches!(
                    parse_public_jwk(&v),
                    Err(CryptoError::UnsupportedAlgorithm(_))
                ),
                "{v}"
            );
        }
        for v in [
            json!("string"),
            json!({}),
            json!({"kty": 1}),
            json!({"kty": "OKP", "crv": "Ed25519"}),
        ] {
            assert!(
                matches!(parse_public_jwk(&v), Err(CryptoError::Malformed(_))),
                "{v}"
            );
        }
    }

    #[test]
    fn bad_ec_point_rejected() {
        // (1, 1) is not on P-256.
        let mut one = [0u8; 32];
        one[31] = 1;
        let v = json!({"kty": "EC", "crv": "P-256", "x": b64::url_encode(&one), "y": b64::url_encode(&one)});
        assert_eq!(
            parse_public_jwk(&v).unwrap_err(),
            CryptoError::InvalidKey("EC point is not on P-256".into())
        );
        // Wrong coordinate length.
        let v = json!({"kty": "EC", "crv": "P-256", "x": b64::url_encode(&one[1..]), "y": b64::url_encode(&one)});
        assert!(matches!(
            parse_public_jwk(&v),
            Err(CryptoError::InvalidKey(_))
        ));
        // Ed25519 key of the wrong length.
        let v = json!({"kty": "OKP", "crv": "Ed25519", "x": b64::url_encode(&[1u8; 31])});
        assert!(matches!(
            parse_public_jwk(&v),
            Err(CryptoError::InvalidKey(_))
        ));
    }

    #[test]
    fn use_and_alg_members_checked() {
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        assert!(
            parse_public_jwk(&json!({"kty": "OKP", "crv": "Ed25519", "x": x, "use": "enc"}))
                .is_err()
        );
        assert!(
            parse_public_jwk(&json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "ES256"}))
                .is_err()
        );
        assert!(
            parse_public_jwk(&json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "HS256"}))
                .is_err()
        );
        assert!(
            parse_public_jwk(&json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": 5})).is_err()
        );
        assert!(
            parse_public_jwk(
                &json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA", "use": "sig"})
            )
            .is_ok()
        );
    }

    #[test]
    fn bit_len_counts() {
        assert_eq!(bit_len(&[]), 0);
        assert_eq!(bit_len(&[0, 0]), 0);
        assert_eq!(bit_len(&[1]), 1);
        assert_eq!(bit_len(&[0, 0x80, 0]), 16);
    }
}
