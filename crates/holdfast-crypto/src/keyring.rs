//! The keyring: every data key a node may need to open values, and which one
//! seals new values.

use std::collections::BTreeMap;
use std::fmt;

use crate::{unwrap_data_key, CryptoError, DataKey, MasterKey, WrappedKey};

/// Data keys by id, plus the id of the current key. Old keys stay so that
/// values sealed before a rotation still open; there is always a current key,
/// so sealing never has to handle "no key".
#[derive(Clone)]
pub struct Keyring {
    keys: BTreeMap<u32, DataKey>,
    current_id: u32,
}

impl Keyring {
    /// A keyring holding one key, which is current.
    pub fn new(current: DataKey) -> Self {
        let current_id = current.id();
        Self { keys: BTreeMap::from([(current_id, current)]), current_id }
    }

    /// Unwraps every key (as replicated in cluster state) under `master`.
    /// Fails if any key does not unwrap, or if `current_id` is not among them.
    pub fn from_wrapped<'a>(
        master: &MasterKey,
        current_id: u32,
        wrapped: impl IntoIterator<Item = &'a WrappedKey>,
    ) -> Result<Self, CryptoError> {
        let mut keys = BTreeMap::new();
        for wrapped in wrapped {
            let key = unwrap_data_key(master, wrapped)?;
            if keys.insert(key.id(), key).is_some() {
                return Err(CryptoError::DuplicateKeyId { key_id: wrapped.key_id() });
            }
        }
        if !keys.contains_key(&current_id) {
            return Err(CryptoError::UnknownKeyId { key_id: current_id });
        }
        Ok(Self { keys, current_id })
    }

    /// The key that seals new values.
    pub fn current(&self) -> &DataKey {
        // Every constructor and `rotate` insert the current key before naming it.
        self.keys.get(&self.current_id).expect("the current key is always in the keyring")
    }

    pub fn current_id(&self) -> u32 {
        self.current_id
    }

    pub fn get(&self, id: u32) -> Option<&DataKey> {
        self.keys.get(&id)
    }

    /// Adds an older or not-yet-current key. Refuses an id already present:
    /// replacing a key would strand everything sealed under it.
    pub fn add(&mut self, key: DataKey) -> Result<(), CryptoError> {
        let key_id = key.id();
        if self.keys.contains_key(&key_id) {
            return Err(CryptoError::DuplicateKeyId { key_id });
        }
        self.keys.insert(key_id, key);
        Ok(())
    }

    /// Adds `new` and makes it current; older keys stay for opening.
    pub fn rotate(&mut self, new: DataKey) -> Result<(), CryptoError> {
        let key_id = new.id();
        self.add(new)?;
        self.current_id = key_id;
        Ok(())
    }

    /// Ids of all keys held, ascending.
    pub fn key_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.keys().copied()
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("current_id", &self.current_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wrap_data_key;

    #[test]
    fn rotate_keeps_old_keys_and_moves_current() {
        let mut keyring = Keyring::new(DataKey::generate(1));
        keyring.rotate(DataKey::generate(2)).expect("new id");
        assert_eq!(keyring.current_id(), 2);
        assert_eq!(keyring.current().id(), 2);
        assert_eq!(keyring.get(1).map(DataKey::id), Some(1));
        assert!(keyring.get(3).is_none());
        assert_eq!(keyring.key_ids().collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let mut keyring = Keyring::new(DataKey::generate(1));
        let expected = Err(CryptoError::DuplicateKeyId { key_id: 1 });
        assert_eq!(keyring.add(DataKey::generate(1)), expected);
        assert_eq!(keyring.rotate(DataKey::generate(1)), expected);
        assert_eq!(keyring.current_id(), 1);
    }

    #[test]
    fn from_wrapped_unwraps_all_and_checks_current() {
        let master = MasterKey::generate();
        let wrapped = [1, 2].map(|id| wrap_data_key(&master, &DataKey::generate(id)));
        let keyring = Keyring::from_wrapped(&master, 2, &wrapped).expect("unwraps");
        assert_eq!(keyring.current_id(), 2);
        assert_eq!(keyring.key_ids().count(), 2);
        assert_eq!(Keyring::from_wrapped(&master, 7, &wrapped).err(), Some(CryptoError::UnknownKeyId { key_id: 7 }));
        assert_eq!(
            Keyring::from_wrapped(&MasterKey::generate(), 2, &wrapped).err(),
            Some(CryptoError::AuthenticationFailed)
        );
    }

    #[test]
    fn debug_shows_ids_only() {
        let keyring = Keyring::new(DataKey::from_bytes(4, &[0x5a; 32]).expect("32 bytes"));
        let shown = format!("{keyring:?}");
        assert_eq!(shown, "Keyring { key_ids: [4], current_id: 4 }");
    }
}
