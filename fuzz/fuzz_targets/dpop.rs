//! Fuzzes RFC 9449 DPoP proof verification and the stateless nonce check with hostile input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_crypto::dpop::{DpopCheck, check_nonce, verify_proof};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let check = DpopCheck {
        method: "POST",
        url: "https://steward.example/oauth2/token",
        now: 1_800_000_000,
        max_age_secs: 300,
        skew_secs: 60,
        access_token: Some("token"),
    };
    // No proof built from random bytes carries a valid signature over a key it also names.
    let _ = verify_proof(s, &check);
    // A nonce is an HMAC under the server key: random input never passes.
    assert!(!check_nonce(&[7u8; 32], s, 1_800_000_000, 300));
});
