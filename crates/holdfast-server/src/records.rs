//! The seam between client records and stored records: what storage key a
//! record id becomes and what bytes a value is stored as. Storage treats both
//! as opaque; this is the only place that decides them.

use holdfast_types::RegistryName;

use crate::error::ServerError;

/// Turns client record ids and values into stored bytes and back.
#[derive(Debug, Clone, Default)]
pub struct RecordCodec {}

impl RecordCodec {
    /// The key a record is stored under.
    pub fn storage_record(&self, _registry: &RegistryName, record_id: &[u8]) -> Vec<u8> {
        record_id.to_vec()
    }

    /// The bytes a value is stored as.
    pub fn seal(&self, _registry: &RegistryName, _record_id: &[u8], value: &[u8]) -> Result<Vec<u8>, ServerError> {
        Ok(value.to_vec())
    }

    /// Recovers the client's record id and value from stored bytes.
    pub fn open(
        &self,
        _registry: &RegistryName,
        stored_record: &[u8],
        stored_value: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), ServerError> {
        Ok((stored_record.to_vec(), stored_value.to_vec()))
    }
}
