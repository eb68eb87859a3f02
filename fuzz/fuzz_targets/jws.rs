//! Fuzzes compact JWS decoding and verification: hostile tokens are refused, never accepted
//! without a valid signature, and never panic (alg confusion, `none`, oversized parts).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use steward_crypto::jws::{self, JwsAlg, KeySet, SigningAlg, SigningKey};

fn keys() -> &'static (SigningKey, KeySet) {
    static K: OnceLock<(SigningKey, KeySet)> = OnceLock::new();
    K.get_or_init(|| {
        let (k, _) = SigningKey::generate(SigningAlg::EdDSA, "fuzz".into()).expect("key");
        let set = KeySet::from_keys(&[k.public_jwk()]).expect("set");
        (k, set)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let (key, set) = keys();
    if let Ok(d) = jws::decode(token) {
        let _ = (d.kid(), d.typ(), d.claim_str("iss"), d.claim_i64("exp"));
        // Random input must never verify under a key it was not signed with.
        assert!(jws::verify(&d, key.public_key(), JwsAlg::ASYMMETRIC).is_err());
    }
    assert!(set.verify(token, Some("at+jwt")).is_err());
});
