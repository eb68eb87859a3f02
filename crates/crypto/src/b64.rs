//! Strict base64 codecs: URL-safe without padding (JOSE) and standard with padding (signed notes).
//! Decoding rejects wrong padding, non-alphabet characters, whitespace and non-canonical trailing bits.

use crate::CryptoError;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Lenient-padding engines, only for human-provided key material (e.g. the master key file).
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STD_LENIENT: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_LENIENT: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

/// Base64url without padding.
pub fn url_encode(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// Appends base64url (no padding) of `b` to `out` without an intermediate allocation.
pub(crate) fn url_encode_into(b: &[u8], out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(b, out);
}

/// Strict base64url decoding: no padding, URL-safe alphabet only, canonical trailing bits.
pub fn url_decode(s: &str) -> Result<Vec<u8>, CryptoError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| CryptoError::Malformed("invalid base64url".into()))
}

/// Standard base64 with padding.
pub fn std_encode(b: &[u8]) -> String {
    STANDARD.encode(b)
}

/// Strict standard base64 decoding: padding required, standard alphabet only.
pub fn std_decode(s: &str) -> Result<Vec<u8>, CryptoError> {
    STANDARD
        .decode(s)
        .map_err(|_| CryptoError::Malformed("invalid base64".into()))
}

/// Decodes standard or URL-safe base64, padding optional. For operator-supplied keys only.
pub(crate) fn lenient_decode(s: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError> {
    STD_LENIENT
        .decode(s)
        .or_else(|_| URL_LENIENT.decode(s))
        .map(zeroize::Zeroizing::new)
        .map_err(|_| CryptoError::Malformed("invalid base64".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_round_trip_and_strictness() {
        let data = [0xfbu8, 0xff, 0x00, 0x10];
        let s = url_encode(&data);
        assert_eq!(s, "-_8AEA");
        assert_eq!(url_decode(&s).unwrap(), data);
        assert!(url_decode("-_8AEA==").is_err(), "padding rejected");
        assert!(url_decode("+/8AEA").is_err(), "std alphabet rejected");
        assert!(url_decode("-_8A EA").is_err(), "whitespace rejected");
        assert!(
            url_decode("-_8AEB").is_err(),
            "non-canonical trailing bits rejected"
        );
        assert_eq!(url_decode("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn std_round_trip_and_strictness() {
        let data = [0xfbu8, 0xff, 0x00, 0x10];
        let s = std_encode(&data);
        assert_eq!(s, "+/8AEA==");
        assert_eq!(std_decode(&s).unwrap(), data);
        assert!(std_decode("+/8AEA").is_err(), "missing padding rejected");
        assert!(std_decode("-_8AEA==").is_err(), "url alphabet rejected");
    }

    #[test]
    fn lenient_accepts_both_alphabets() {
        assert_eq!(
            &*lenient_decode("+/8AEA==").unwrap(),
            &[0xfb, 0xff, 0, 0x10]
        );
        assert_eq!(&*lenient_decode("+/8AEA").unwrap(), &[0xfb, 0xff, 0, 0x10]);
        assert_eq!(&*lenient_decode("-_8AEA").unwrap(), &[0xfb, 0xff, 0, 0x10]);
        assert!(lenient_decode("*").is_err());
    }
}
