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

        /// What peers send each other (Raft RPCs, forwarded audit batches)
        /// and what the log stores: random bytes behind a valid version
        /// byte are refused with an error, never a panic or a huge
        /// allocation.
        #[test]
        fn peer_message_decoders_refuse_garbage(body: Vec<u8>) {
            let mut bytes = vec![FORMAT_V1];
            bytes.extend_from_slice(&body);
            decode_all_peer_messages(&bytes);
        }

        /// The same for valid messages with bytes flipped, truncated or
        /// extended: the inputs a fuzzer finds first.
        #[test]
        fn mutated_peer_messages_never_panic(flip in 0usize..4096, bit in 0u8..8, cut in 0usize..4096, extra: Vec<u8>) {
            for valid in sample_messages() {
                let mut flipped = valid.clone();
                let at = flip % flipped.len();
                flipped[at] ^= 1 << bit;
                decode_all_peer_messages(&flipped);
                decode_all_peer_messages(&valid[..cut % valid.len()]);
                let mut longer = valid.clone();
                longer.extend_from_slice(&extra);
                decode_all_peer_messages(&longer);
            }
        }
    }

    fn decode_all_peer_messages(bytes: &[u8]) {
        use crate::{AuditEvent, Entry, SnapshotOffer, TypeConfig};
        use openraft::raft::{AppendEntriesRequest, VoteRequest};
        let _ = decode::<crate::Command>(bytes);
        let _ = decode::<Entry>(bytes);
        let _ = decode::<Vec<AuditEvent>>(bytes);
        let _ = decode::<AppendEntriesRequest<TypeConfig>>(bytes);
        let _ = decode::<VoteRequest<TypeConfig>>(bytes);
        let _ = decode::<SnapshotOffer>(bytes);
    }

    fn sample_messages() -> Vec<Vec<u8>> {
        use crate::{AuditEvent, AuditOp, AuditOutcome, Command, Permission, RegistryName, Scope, WriteMeta};
        let registry = RegistryName::parse("population").unwrap();
        let meta = WriteMeta { request_id: "r".into(), actor: "a".into(), reason: "x".into(), commit_time_ms: 1 };
        let event = AuditEvent {
            time_ms: 1,
            identity: "svc".into(),
            registry: registry.clone(),
            record: vec![1; 32],
            op: AuditOp::Get,
            revision: 3,
            outcome: AuditOutcome::Ok,
            node: 1,
        };
        let put = Command::Put {
            registry: registry.clone(),
            record: vec![2; 32],
            value: vec![3; 64],
            if_revision: Some(1),
            meta: meta.clone(),
        };
        let delete = Command::Delete { registry: registry.clone(), record: vec![4; 32], if_revision: None, meta };
        let batch = Command::Batch {
            writes: [put.clone(), delete].into_iter().map(|c| crate::BatchedWrite::try_from(c).unwrap()).collect(),
        };
        vec![
            encode(&put).unwrap(),
            encode(&batch).unwrap(),
            encode(&Command::Grant {
                identity: "svc".into(),
                scope: Scope::Registry(registry),
                permissions: vec![Permission::Read],
            })
            .unwrap(),
            encode(&vec![event.clone(), event]).unwrap(),
        ]
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
