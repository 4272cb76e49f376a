//! The blind index: record ids turned into keyed hashes, so that disks and
//! logs address records without holding the ids (a passport number is
//! personal data).

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::keys::{boxed_key, KEY_BYTES};
use crate::{CryptoError, MasterKey};

/// A blind id is a full HMAC-SHA256 output: collisions between record ids
/// must never happen in practice, and 256 bits rule them out.
pub const BLIND_ID_BYTES: usize = 32;

/// HKDF `info` that derives the blind index key from the master key. Format
/// constant: do not change (every record's address depends on it).
const BLIND_INDEX_INFO: &[u8] = b"holdfast blind index v1";

/// The key of the blind index. Unlike data keys it cannot rotate cheaply:
/// every stored record is addressed by it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct BlindIndexKey {
    key: Box<[u8; KEY_BYTES]>,
}

impl BlindIndexKey {
    /// Derives the index key from the master key with HKDF-SHA256. Note that a
    /// new master key then means new blind ids for every record; a cluster
    /// that wants to rotate its master key keeps a separate index key instead
    /// (see [`BlindIndexKey::from_bytes`]).
    pub fn derive(master: &MasterKey) -> Self {
        let mut key = Box::new([0u8; KEY_BYTES]);
        Hkdf::<Sha256>::new(None, &master.bytes()[..])
            .expand(BLIND_INDEX_INFO, &mut key[..])
            .expect("HKDF-SHA256 yields up to 8160 bytes; 32 are asked");
        Self { key }
    }

    /// A separate index key of exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self { key: boxed_key(bytes)? })
    }
}

impl std::fmt::Debug for BlindIndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlindIndexKey { key: <redacted> }")
    }
}

/// The blind id of a record: HMAC-SHA256 over the length-prefixed registry
/// name and record id. The length prefixes make the encoding unambiguous, so
/// ("ab", "c") and ("a", "bc") get different ids; the registry is included so
/// the same id in two registries cannot be linked.
pub fn blind_id(key: &BlindIndexKey, registry: &str, record_id: &[u8]) -> [u8; BLIND_ID_BYTES] {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.key[..]).expect("HMAC accepts keys of any length");
    for field in [registry.as_bytes(), record_id] {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blind_id_is_deterministic_per_key() {
        let master = MasterKey::generate();
        let a = BlindIndexKey::derive(&master);
        let b = BlindIndexKey::derive(&master);
        assert_eq!(blind_id(&a, "passports", b"FA123456"), blind_id(&b, "passports", b"FA123456"));
        let other = BlindIndexKey::derive(&MasterKey::generate());
        assert_ne!(blind_id(&a, "passports", b"FA123456"), blind_id(&other, "passports", b"FA123456"));
    }

    #[test]
    fn blind_id_differs_across_registries_and_ids() {
        let key = BlindIndexKey::from_bytes(&[1; 32]).expect("32 bytes");
        let base = blind_id(&key, "population", b"42");
        assert_ne!(base, blind_id(&key, "passports", b"42"));
        assert_ne!(base, blind_id(&key, "population", b"43"));
    }

    #[test]
    fn blind_id_encoding_is_unambiguous() {
        let key = BlindIndexKey::from_bytes(&[2; 32]).expect("32 bytes");
        assert_ne!(blind_id(&key, "ab", b"c"), blind_id(&key, "a", b"bc"));
        assert_ne!(blind_id(&key, "", b"ab"), blind_id(&key, "ab", b""));
    }

    #[test]
    fn derived_key_is_not_the_master_key() {
        let master = MasterKey::from_bytes(&[3; 32]).expect("32 bytes");
        assert_ne!(&BlindIndexKey::derive(&master).key[..], &master.bytes()[..]);
        assert_eq!(format!("{:?}", BlindIndexKey::derive(&master)), "BlindIndexKey { key: <redacted> }");
    }
}
