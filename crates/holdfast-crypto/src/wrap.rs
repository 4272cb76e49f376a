//! Key wrapping: data keys sealed under the master key, the form in which
//! they live in replicated cluster state.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::envelope::NONCE_BYTES;
use crate::{CryptoError, DataKey, MasterKey};

/// Wrapped-key format version 1. Format constant: do not change.
pub const WRAP_VERSION_V1: u8 = 1;

/// Domain label in front of a wrapped key's associated data. Format constant:
/// do not change (every cluster's wrapped keys were sealed with it).
const WRAP_AAD_LABEL: &[u8] = b"holdfast key wrap v1";

/// A data key sealed under the master key. Safe to replicate, store and log:
/// without the master key it is ciphertext. Its id is authenticated, so a
/// wrapped key cannot be relabelled as another id.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey {
    version: u8,
    key_id: u32,
    nonce: [u8; NONCE_BYTES],
    #[serde(with = "serde_bytes")]
    ciphertext: Vec<u8>,
}

impl WrappedKey {
    /// The id of the data key inside.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The ciphertext is harmless but useless to a reader: show its size.
        f.debug_struct("WrappedKey")
            .field("version", &self.version)
            .field("key_id", &self.key_id)
            .field("ciphertext_bytes", &self.ciphertext.len())
            .finish()
    }
}

/// Seals a data key under the master key, binding its id.
pub fn wrap_data_key(master: &MasterKey, key: &DataKey) -> WrappedKey {
    let mut nonce = [0u8; NONCE_BYTES];
    OsRng.fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new(master.bytes().into());
    let payload = Payload { msg: &key.bytes()[..], aad: &wrap_aad(WRAP_VERSION_V1, key.id()) };
    let ciphertext =
        cipher.encrypt(Nonce::from_slice(&nonce), payload).expect("AES-GCM encrypts any message under 64 GiB");
    WrappedKey { version: WRAP_VERSION_V1, key_id: key.id(), nonce, ciphertext }
}

/// Opens a wrapped data key. A different master key (or any altered byte)
/// gives [`CryptoError::AuthenticationFailed`].
pub fn unwrap_data_key(master: &MasterKey, wrapped: &WrappedKey) -> Result<DataKey, CryptoError> {
    if wrapped.version != WRAP_VERSION_V1 {
        return Err(CryptoError::UnknownVersion { version: wrapped.version, supported: WRAP_VERSION_V1 });
    }
    let cipher = Aes256Gcm::new(master.bytes().into());
    let payload = Payload { msg: &wrapped.ciphertext, aad: &wrap_aad(wrapped.version, wrapped.key_id) };
    let bytes = cipher
        .decrypt(Nonce::from_slice(&wrapped.nonce), payload)
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::AuthenticationFailed)?;
    DataKey::from_bytes(wrapped.key_id, &bytes)
}

fn wrap_aad(version: u8, key_id: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_AAD_LABEL.len() + 5);
    aad.extend_from_slice(WRAP_AAD_LABEL);
    aad.push(version);
    aad.extend_from_slice(&key_id.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{open, seal, Keyring};

    #[test]
    fn wrap_round_trip_keeps_key_and_id() {
        let master = MasterKey::generate();
        let key = DataKey::generate(9);
        let wrapped = wrap_data_key(&master, &key);
        assert_eq!(wrapped.key_id(), 9);
        let unwrapped = unwrap_data_key(&master, &wrapped).expect("same master");
        assert_eq!(unwrapped.id(), 9);
        assert_eq!(unwrapped.bytes(), key.bytes());
        // And it still opens what the original sealed.
        let envelope = seal(&key, b"aad", b"value");
        assert_eq!(open(&Keyring::new(unwrapped), b"aad", &envelope).expect("opens"), b"value");
    }

    #[test]
    fn wrong_master_fails() {
        let wrapped = wrap_data_key(&MasterKey::generate(), &DataKey::generate(1));
        assert_eq!(unwrap_data_key(&MasterKey::generate(), &wrapped).err(), Some(CryptoError::AuthenticationFailed));
    }

    #[test]
    fn relabelled_or_altered_wrapped_key_fails() {
        let master = MasterKey::generate();
        let wrapped = wrap_data_key(&master, &DataKey::generate(1));
        let mut relabelled = wrapped.clone();
        relabelled.key_id = 2;
        let mut altered = wrapped.clone();
        altered.ciphertext[0] ^= 1;
        let mut cut = wrapped.clone();
        cut.ciphertext.truncate(3);
        for bad in [relabelled, altered, cut] {
            assert_eq!(unwrap_data_key(&master, &bad).err(), Some(CryptoError::AuthenticationFailed));
        }
        let mut future = wrapped;
        future.version = 2;
        assert!(matches!(unwrap_data_key(&master, &future), Err(CryptoError::UnknownVersion { version: 2, .. })));
    }
}
