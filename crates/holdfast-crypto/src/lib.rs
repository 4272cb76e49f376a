//! Envelope encryption, keyring and blind index for holdfast: pure and
//! synchronous, and the only crate that touches `aes-gcm`.
//!
//! - [`envelope`]: the versioned format of a sealed value, [`seal`] and
//!   [`open`], and [`record_aad`], which binds a value to its record.
//! - [`keys`]: [`DataKey`] and [`MasterKey`], zeroized on drop, never printed.
//! - [`wrap`]: data keys sealed under the master key ([`WrappedKey`]), the form
//!   kept in replicated cluster state.
//! - [`keyring`]: the data keys a node holds and which one is current.
//! - [`blind`]: keyed hashes of record ids, so storage never sees the ids.
//!
//! This crate does no IO: callers read key files and pass the bytes in.

pub mod blind;
pub mod envelope;
mod error;
pub mod keyring;
pub mod keys;
pub mod wrap;

pub use blind::{blind_id, BlindIndexKey, BLIND_ID_BYTES};
pub use envelope::{
    open, peek_key_id, record_aad, seal, DATA_KEY_SEALS_MAX, ENVELOPE_HEADER_BYTES, ENVELOPE_OVERHEAD_BYTES,
    ENVELOPE_VERSION_V1,
};
pub use error::CryptoError;
pub use keyring::Keyring;
pub use keys::{DataKey, MasterKey, KEY_BYTES, KEY_CHECK_VALUE_BYTES};
pub use wrap::{unwrap_data_key, wrap_data_key, WrappedKey, WRAP_VERSION_V1};
