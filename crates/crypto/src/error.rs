//! The crate's single error type.
//! Messages are safe to return to clients: they never contain key material or secrets.

/// Everything that can go wrong in `steward-crypto`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// Input that does not parse (bad base64, bad JSON, wrong structure, bad lengths).
    #[error("malformed input: {0}")]
    Malformed(String),
    /// An algorithm, key type or curve that Steward does not accept.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// A signature or MAC did not verify.
    #[error("invalid signature")]
    BadSignature,
    /// A key that is well-formed but too weak to accept (e.g. RSA < 2048 bits).
    #[error("weak key: {0}")]
    WeakKey(String),
    /// A key that is invalid (private material where a public key was expected, point not on curve, bad PKCS#8, ...).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// No key in a key set matches the token's `kid`.
    #[error("no key matches the token's kid")]
    KeyNotFound,
    /// Authenticated decryption failed (wrong key, wrong context, or tampered data).
    #[error("decryption failed")]
    Decrypt,
    /// File-system problem (key files); the message names the path.
    #[error("{0}")]
    Io(String),
    /// Claims that cannot be serialized or that are missing/invalid.
    #[error("invalid claims: {0}")]
    Claims(String),
    /// A DPoP proof failed a check (RFC 9449); the message says which one.
    #[error("{0}")]
    Dpop(String),
    /// The crypto backend failed internally (not caused by the input).
    #[error("internal cryptographic failure")]
    Internal,
}
