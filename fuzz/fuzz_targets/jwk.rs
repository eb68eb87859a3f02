//! Fuzzes public-JWK parsing (registered client keys, DPoP header keys): weak, private or malformed
//! keys are refused; accepted keys always have a stable RFC 7638 thumbprint.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(parsed) = steward_crypto::jwk::parse_public_jwk(&v) {
        let t = parsed.key.thumbprint();
        let again = steward_crypto::jwk::parse_public_jwk(&parsed.key.to_json())
            .expect("canonical form re-parses");
        assert_eq!(again.key.thumbprint(), t);
    }
});
