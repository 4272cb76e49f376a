//! Sealing values and blinding record ids for this node: the master key
//! from the operator, the blind-index key derived from it, and the data
//! keys unwrapped from the replicated keyring as it changes.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use holdfast_crypto::{
    blind_id, open, peek_key_id, record_aad, seal, unwrap_data_key, wrap_data_key, BlindIndexKey, DataKey, Keyring,
    MasterKey, WrappedKey,
};
use holdfast_types::codec::{decode, encode};
use holdfast_types::{KeyringState, RegistryName, Revision};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::ServerError;

/// How many (registry, revision) pairs of failed verification are
/// remembered so each is logged once; bounded so a flood cannot grow it.
const DATA_LOSS_LOGGED_MAX: usize = 10_000;

/// What travels inside an envelope: the record id (so storage never sees
/// it) and the value.
#[derive(Serialize, Deserialize)]
struct SealedRecord {
    #[serde(with = "serde_bytes")]
    id: Vec<u8>,
    #[serde(with = "serde_bytes")]
    value: Vec<u8>,
}

/// The node's keys. Cheap to share behind an `Arc`.
pub struct Crypto {
    master: MasterKey,
    index: BlindIndexKey,
    keyring_rx: watch::Receiver<KeyringState>,
    /// The keyring unwrapped from the state it was built from.
    cache: Mutex<Option<(KeyringState, Arc<Keyring>)>>,
    logged: Mutex<HashSet<(String, Revision)>>,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Crypto { keys: <redacted> }")
    }
}

impl Crypto {
    pub fn new(master: MasterKey, keyring_rx: watch::Receiver<KeyringState>) -> Self {
        let index = BlindIndexKey::derive(&master);
        Self { master, index, keyring_rx, cache: Mutex::new(None), logged: Mutex::new(HashSet::new()) }
    }

    /// The current keyring, or `None` before the cluster has a data key.
    pub fn keyring(&self) -> Result<Option<Arc<Keyring>>, ServerError> {
        let state = self.keyring_rx.borrow().clone();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached_state, keyring)) = cache.as_ref() {
            if *cached_state == state {
                return Ok(Some(keyring.clone()));
            }
        }
        let Some(current) = state.current else {
            return Ok(None);
        };
        let mut wrapped = Vec::with_capacity(state.wrapped.len());
        for (id, bytes) in &state.wrapped {
            let key: WrappedKey =
                decode(bytes).map_err(|e| ServerError::Crypto(format!("wrapped data key {id} is corrupt: {e}")))?;
            wrapped.push(key);
        }
        let keyring = Keyring::from_wrapped(&self.master, current, wrapped.iter()).map_err(|e| {
            ServerError::Crypto(format!(
                "cannot unwrap the cluster's data keys (is this the cluster's master key?): {e}"
            ))
        })?;
        let keyring = Arc::new(keyring);
        *cache = Some((state, keyring.clone()));
        Ok(Some(keyring))
    }

    fn ready_keyring(&self) -> Result<Arc<Keyring>, ServerError> {
        self.keyring()?.ok_or_else(|| ServerError::NotReady("the cluster has no data key yet; retry shortly".into()))
    }

    /// The storage key of a record: a keyed hash of registry and id.
    pub fn blind(&self, registry: &RegistryName, record_id: &[u8]) -> Vec<u8> {
        blind_id(&self.index, registry.as_str(), record_id).to_vec()
    }

    /// Seals a record id and value under the current data key, bound to the
    /// record's registry and blind id.
    pub fn seal(&self, registry: &RegistryName, record_id: &[u8], value: &[u8]) -> Result<Vec<u8>, ServerError> {
        let keyring = self.ready_keyring()?;
        let blind = self.blind(registry, record_id);
        let plain = zeroize::Zeroizing::new(
            encode(&SealedRecord { id: record_id.to_vec(), value: value.to_vec() })
                .map_err(|e| ServerError::Crypto(e.to_string()))?,
        );
        Ok(seal(keyring.current(), &record_aad(registry.as_str(), &blind), &plain))
    }

    /// Opens a stored value into (record id, value). A value that fails
    /// verification is never returned: the error is DATA_LOSS, logged once.
    pub fn open(
        &self,
        registry: &RegistryName,
        blind: &[u8],
        revision: Revision,
        stored: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), ServerError> {
        let keyring = self.ready_keyring()?;
        let opened = open(&keyring, &record_aad(registry.as_str(), blind), stored)
            .map_err(|e| e.to_string())
            .and_then(|plain| decode::<SealedRecord>(&plain).map_err(|e| e.to_string()));
        match opened {
            Ok(record) => Ok((record.id, record.value)),
            Err(reason) => {
                self.log_once(registry, revision, &reason);
                Err(ServerError::DataLoss { registry: registry.to_string(), revision })
            }
        }
    }

    fn log_once(&self, registry: &RegistryName, revision: Revision, reason: &str) {
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if logged.len() < DATA_LOSS_LOGGED_MAX && logged.insert((registry.to_string(), revision)) {
            tracing::error!(%registry, revision, reason, "stored value failed verification; refusing to return it");
        }
    }

    /// The id of the key a stored value is sealed under.
    pub fn key_id_of(stored: &[u8]) -> Option<u32> {
        peek_key_id(stored).ok()
    }

    /// Re-seals a stored value under the current key; `None` if it already
    /// is (or no key exists).
    pub fn reseal(
        &self,
        registry: &RegistryName,
        blind: &[u8],
        revision: Revision,
        stored: &[u8],
    ) -> Result<Option<Vec<u8>>, ServerError> {
        let Some(keyring) = self.keyring()? else { return Ok(None) };
        if Self::key_id_of(stored) == Some(keyring.current_id()) {
            return Ok(None);
        }
        let (id, value) = self.open(registry, blind, revision, stored)?;
        let value = zeroize::Zeroizing::new(value);
        self.seal(registry, &id, &value).map(Some)
    }

    /// A fresh data key with `id`, wrapped under the master key and encoded
    /// for the replicated keyring.
    pub fn new_wrapped_key(&self, id: u32) -> Result<Vec<u8>, ServerError> {
        let key = DataKey::generate(id);
        let wrapped = wrap_data_key(&self.master, &key);
        // Round-trip once: a key that cannot be unwrapped must never be current.
        unwrap_data_key(&self.master, &wrapped).map_err(|e| ServerError::Crypto(e.to_string()))?;
        encode(&wrapped).map_err(|e| ServerError::Crypto(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crypto() -> Crypto {
        let master = MasterKey::generate();
        let probe = Crypto::new(master.clone(), watch::channel(KeyringState::default()).1);
        let wrapped = probe.new_wrapped_key(1).unwrap();
        let state = KeyringState { current: Some(1), wrapped: [(1, wrapped)].into_iter().collect() };
        Crypto::new(master, watch::channel(state).1)
    }

    #[test]
    fn sealed_values_open_only_where_they_were_written() {
        let c = crypto();
        let reg = RegistryName::parse("passports").unwrap();
        let sealed = c.seal(&reg, b"FX1", b"secret").unwrap();
        let blind = c.blind(&reg, b"FX1");
        assert_eq!(c.open(&reg, &blind, 5, &sealed).unwrap(), (b"FX1".to_vec(), b"secret".to_vec()));
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "ciphertext hides the value");

        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let err = c.open(&reg, &blind, 5, &tampered).unwrap_err();
        assert!(matches!(err, ServerError::DataLoss { revision: 5, .. }), "{err}");
        assert!(err.to_string().contains("passports") && err.to_string().contains('5'));

        // Moved to another record: the associated data no longer matches.
        let other = c.blind(&reg, b"FX2");
        assert!(matches!(c.open(&reg, &other, 6, &sealed), Err(ServerError::DataLoss { .. })));
    }

    #[test]
    fn no_key_yet_is_not_ready_and_a_foreign_master_cannot_unwrap() {
        let c = Crypto::new(MasterKey::generate(), watch::channel(KeyringState::default()).1);
        let reg = RegistryName::parse("land").unwrap();
        assert!(matches!(c.seal(&reg, b"x", b"y"), Err(ServerError::NotReady(_))));

        let owner = crypto();
        let state = owner.keyring_rx.borrow().clone();
        let stranger = Crypto::new(MasterKey::generate(), watch::channel(state).1);
        assert!(matches!(stranger.keyring(), Err(ServerError::Crypto(_))));
    }
}
