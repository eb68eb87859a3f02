//! Fuzzes certificate parsing (client certificates during the TLS handshake, imported CAs, device
//! CAs, `POST /v1/certificates/revoke`): PEM or DER, the summary, the JWK of the key, trust-anchor
//! building and the client-chain check. Never panics; summaries are canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_crypto::x509;

fuzz_target!(|data: &[u8]| {
    let Ok(ders) = x509::certificates_from_pem_or_der(data) else {
        return;
    };
    for der in ders.iter().take(4) {
        let Ok(c) = x509::parse_certificate(der) else {
            continue;
        };
        // Serials are canonical lower-case hex, stable under normalization.
        assert_eq!(x509::normalize_serial_hex(&c.serial).as_deref(), Some(c.serial.as_str()));
        assert_eq!(x509::x5t_s256(der), x509::x5t_s256(der));
        let _ = x509::public_key_jwk(der);
        // As a trust anchor, and as a leaf presented against it: errors, never panics.
        if let Ok(store) = x509::TrustStore::new(std::slice::from_ref(der)) {
            assert_eq!(store.len(), 1);
            let _ = store.verify_client(der, &[], c.not_before, 2);
        }
    }
});
