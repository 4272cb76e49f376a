//! The seam between client records and stored records: what storage key a
//! record id becomes and what bytes a value is stored as. Storage treats both
//! as opaque; this is the only place that decides them.

use std::sync::Arc;

use holdfast_types::{RegistryName, Revision};

use crate::crypto::Crypto;
use crate::error::ServerError;

/// Turns client record ids and values into stored bytes and back.
#[derive(Debug, Clone)]
pub enum RecordCodec {
    /// Ids and values stored as given. Only for tests and explicit
    /// `insecure_plaintext` configs.
    Plain,
    /// Ids blinded (HMAC), ids and values sealed (AES-256-GCM).
    Sealed(Arc<Crypto>),
}

impl RecordCodec {
    /// The key a record is stored under.
    pub fn storage_record(&self, registry: &RegistryName, record_id: &[u8]) -> Vec<u8> {
        match self {
            RecordCodec::Plain => record_id.to_vec(),
            RecordCodec::Sealed(crypto) => crypto.blind(registry, record_id),
        }
    }

    /// The bytes a value is stored as.
    pub fn seal(&self, registry: &RegistryName, record_id: &[u8], value: &[u8]) -> Result<Vec<u8>, ServerError> {
        match self {
            RecordCodec::Plain => Ok(value.to_vec()),
            RecordCodec::Sealed(crypto) => crypto.seal(registry, record_id, value),
        }
    }

    /// Recovers the client's record id and value from stored bytes.
    pub fn open(
        &self,
        registry: &RegistryName,
        stored_record: &[u8],
        revision: Revision,
        stored_value: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), ServerError> {
        match self {
            RecordCodec::Plain => Ok((stored_record.to_vec(), stored_value.to_vec())),
            RecordCodec::Sealed(crypto) => crypto.open(registry, stored_record, revision, stored_value),
        }
    }
}
