//! The one error type of the crypto layer: what can go wrong opening, unwrapping or loading keys.

use thiserror::Error;

/// Every failure of this crate. None of them is retryable: the same bytes
/// under the same keys fail the same way, so callers report and stop.
///
/// Messages name lengths, versions and key ids, never key bytes or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CryptoError {
    /// The first byte names a format this build does not know (written by a
    /// newer build, or not an envelope at all).
    #[error("unknown format version {version} (this build reads version {supported})")]
    UnknownVersion { version: u8, supported: u8 },

    /// The envelope was sealed under a data key the keyring does not hold.
    #[error("unknown data key id {key_id}: the keyring does not hold it")]
    UnknownKeyId { key_id: u32 },

    /// Fewer bytes than the fixed header and tag need.
    #[error("truncated input: {len} bytes, at least {min} needed")]
    Truncated { len: usize, min: usize },

    /// The GCM tag did not verify: wrong key, wrong associated data (for
    /// example a ciphertext moved to another record), or altered bytes.
    #[error("authentication failed: wrong key, wrong associated data, or altered ciphertext")]
    AuthenticationFailed,

    /// Key material of the wrong size was handed in.
    #[error("wrong key length: {actual} bytes, expected {expected}")]
    WrongKeyLength { expected: usize, actual: usize },

    /// A key file's contents are neither 32 raw bytes nor 64 hex characters.
    #[error("bad key file: {reason}")]
    BadKeyFile { reason: String },

    /// A keyring already holds a different key under this id; replacing it
    /// would make everything sealed under the old key unreadable.
    #[error("data key id {key_id} is already in the keyring")]
    DuplicateKeyId { key_id: u32 },
}
