//! Fuzzes PKCS#10 CSR parsing (`POST /v1/certificates`, `steward cert`): PEM or DER from a client,
//! signature and key-strength checks. Never panics; an accepted CSR is self-consistent and parses
//! the same way again from its PEM form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_crypto::x509;

fuzz_target!(|data: &[u8]| {
    let Ok(csr) = x509::parse_csr(data) else {
        return;
    };
    // Whatever was accepted names a key Steward allows and SANs it can judge.
    assert!(!csr.key_description.is_empty());
    for n in csr.dns_names.iter().chain(&csr.uris) {
        assert!(!n.contains('\0'), "SAN with NUL accepted: {n:?}");
    }
    // DER input re-wrapped as PEM parses to the same request.
    if !data.trim_ascii_start().starts_with(b"-----BEGIN") {
        let pem = x509::pem_encode("CERTIFICATE REQUEST", data);
        let again = x509::parse_csr(pem.as_bytes()).expect("the PEM form of an accepted CSR parses");
        assert_eq!(again.dns_names, csr.dns_names);
        assert_eq!(again.uris, csr.uris);
        assert_eq!(again.key_description, csr.key_description);
    }
});
