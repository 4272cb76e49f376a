//! The one internal binary codec: a format version byte followed by bincode.
//!
//! bincode is pinned and flagged unmaintained, so it is used only here. Every
//! value written to disk or sent between nodes starts with [`FORMAT_V1`]; a
//! future format adds a new constant and a migration, never a silent change.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Format version of every encoding made by this module. Do not change: data
/// on disk carries it.
pub const FORMAT_V1: u8 = 1;

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty input")]
    Empty,
    #[error("unknown format version {0} (this build reads version {FORMAT_V1})")]
    UnknownVersion(u8),
    #[error("malformed encoding: {0}")]
    Malformed(String),
    #[error("trailing bytes after value: {0}")]
    Trailing(usize),
    #[error("cannot encode: {0}")]
    Encode(String),
}

fn config() -> impl bincode::config::Config {
    // Fixed-width integers keep encodings stable and easy to inspect; a limit
    // stops a corrupted length prefix from allocating gigabytes.
    bincode::config::standard().with_fixed_int_encoding().with_limit::<{ 64 * 1024 * 1024 }>()
}

/// Encodes `value` as version byte + bincode.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![FORMAT_V1];
    bincode::serde::encode_into_std_write(value, &mut out, config()).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes bytes made by [`encode`]; rejects unknown versions, malformed and
/// trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != FORMAT_V1 {
        return Err(CodecError::UnknownVersion(version));
    }
    let (value, read) =
        bincode::serde::decode_from_slice(body, config()).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if read != body.len() {
        return Err(CodecError::Trailing(body.len() - read));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(v: (u64, String, Vec<u8>, Option<u32>)) {
            let bytes = encode(&v).unwrap();
            let back: (u64, String, Vec<u8>, Option<u32>) = decode(&bytes).unwrap();
            prop_assert_eq!(v, back);
        }

        #[test]
        fn garbage_never_panics(bytes: Vec<u8>) {
            let _ = decode::<(u64, String, Vec<u8>)>(&bytes);
        }
    }

    #[test]
    fn rejects_unknown_version_and_trailing_bytes() {
        let mut bytes = encode(&7u64).unwrap();
        bytes[0] = 9;
        assert!(matches!(decode::<u64>(&bytes), Err(CodecError::UnknownVersion(9))));
        let mut bytes = encode(&7u64).unwrap();
        bytes.push(0);
        assert!(matches!(decode::<u64>(&bytes), Err(CodecError::Trailing(1))));
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::Empty)));
    }
}
