//! The sealed-value envelope: its byte format, `seal`, `open`, and the
//! associated data that binds a value to its registry and record.
//!
//! ```text
//! version: u8 | key_id: u32 BE | nonce: [u8; 12] | ciphertext | tag: [u8; 16]
//! ```
//!
//! The version byte and key id are authenticated too (they are prefixed to
//! the caller's associated data), so no header byte can be changed unnoticed.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::Zeroize;

use crate::{CryptoError, DataKey, Keyring};

/// Envelope format version 1. Format constant: do not change.
pub const ENVELOPE_VERSION_V1: u8 = 1;
/// AES-GCM's standard 96-bit nonce. Format constant: do not change.
pub const NONCE_BYTES: usize = 12;
/// AES-GCM's full 128-bit tag. Format constant: do not change.
pub const TAG_BYTES: usize = 16;
/// Bytes of version and key id, the part of the header bound as associated data.
const KEY_HEADER_BYTES: usize = 1 + 4;
/// Bytes before the ciphertext. Format constant: do not change.
pub const ENVELOPE_HEADER_BYTES: usize = KEY_HEADER_BYTES + NONCE_BYTES;
/// Bytes an envelope adds to its plaintext; also the smallest valid envelope.
pub const ENVELOPE_OVERHEAD_BYTES: usize = ENVELOPE_HEADER_BYTES + TAG_BYTES;

/// How many values one data key may seal before it must be rotated. Nonces
/// are random, and past 2^32 of them under one key the chance of a repeat
/// (which breaks GCM) exceeds the 2^-32 that NIST SP 800-38D allows.
pub const DATA_KEY_SEALS_MAX: u64 = 1 << 32;

/// Domain label in front of record associated data. Format constant: do not
/// change (every stored value was sealed with it).
const RECORD_AAD_LABEL: &[u8] = b"holdfast record v1";

/// Seals `plaintext` under `key` with a fresh random nonce. Opening needs the
/// same `aad` (normally [`record_aad`]), so a ciphertext moved elsewhere fails.
pub fn seal(key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_BYTES];
    OsRng.fill_bytes(&mut nonce);
    seal_with_nonce(key, aad, plaintext, &nonce)
}

fn seal_with_nonce(key: &DataKey, aad: &[u8], plaintext: &[u8], nonce: &[u8; NONCE_BYTES]) -> Vec<u8> {
    // Build the envelope in one buffer and encrypt the plaintext part in
    // place, so the value is copied once.
    let mut envelope = Vec::with_capacity(ENVELOPE_OVERHEAD_BYTES + plaintext.len());
    envelope.push(ENVELOPE_VERSION_V1);
    envelope.extend_from_slice(&key.id().to_be_bytes());
    envelope.extend_from_slice(nonce);
    envelope.extend_from_slice(plaintext);
    let bound_aad = bind_header(&envelope[..KEY_HEADER_BYTES], aad);
    let cipher = Aes256Gcm::new(key.bytes().into());
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(nonce), &bound_aad, &mut envelope[ENVELOPE_HEADER_BYTES..])
        // aes-gcm refuses only messages over 64 GiB; values are limited far below.
        .expect("AES-GCM encrypts any message under 64 GiB");
    envelope.extend_from_slice(&tag);
    envelope
}

/// Opens an envelope with the data key it names. Fails with
/// [`CryptoError::UnknownKeyId`] naming the id if the keyring lacks it, and
/// with [`CryptoError::AuthenticationFailed`] if any byte or the `aad` differs.
pub fn open(keyring: &Keyring, aad: &[u8], envelope: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let key_id = peek_key_id(envelope)?;
    let key = keyring.get(key_id).ok_or(CryptoError::UnknownKeyId { key_id })?;
    let (header, rest) = envelope.split_at(ENVELOPE_HEADER_BYTES);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_BYTES);
    let bound_aad = bind_header(&header[..KEY_HEADER_BYTES], aad);
    let cipher = Aes256Gcm::new(key.bytes().into());
    let mut plaintext = ciphertext.to_vec();
    let verified = cipher.decrypt_in_place_detached(
        Nonce::from_slice(&header[KEY_HEADER_BYTES..]),
        &bound_aad,
        &mut plaintext,
        Tag::from_slice(tag),
    );
    if verified.is_err() {
        // aes-gcm decrypts before it compares tags, so the buffer now holds
        // unauthenticated plaintext: wipe it rather than drop it as is.
        plaintext.zeroize();
        return Err(CryptoError::AuthenticationFailed);
    }
    Ok(plaintext)
}

/// The data key id an envelope was sealed under, read without decrypting:
/// lets a background task find values still sealed under an old key.
pub fn peek_key_id(envelope: &[u8]) -> Result<u32, CryptoError> {
    let truncated = CryptoError::Truncated { len: envelope.len(), min: ENVELOPE_OVERHEAD_BYTES };
    let version = *envelope.first().ok_or_else(|| truncated.clone())?;
    if version != ENVELOPE_VERSION_V1 {
        return Err(CryptoError::UnknownVersion { version, supported: ENVELOPE_VERSION_V1 });
    }
    if envelope.len() < ENVELOPE_OVERHEAD_BYTES {
        return Err(truncated);
    }
    let mut id = [0u8; 4];
    id.copy_from_slice(&envelope[1..KEY_HEADER_BYTES]);
    Ok(u32::from_be_bytes(id))
}

/// Associated data for a record's value: binds the registry and the record's
/// blind id, so a value copied to another record or registry fails to open.
///
/// The revision is deliberately left out: a value is sealed before it is
/// proposed, when its revision (the Raft log index) is not known yet, and
/// re-encryption under a new key must not depend on it either.
pub fn record_aad(registry: &str, blind_id: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(RECORD_AAD_LABEL.len() + 16 + registry.len() + blind_id.len());
    aad.extend_from_slice(RECORD_AAD_LABEL);
    // Each field is length-prefixed, so no two (registry, id) pairs encode alike.
    for field in [registry.as_bytes(), blind_id] {
        aad.extend_from_slice(&(field.len() as u64).to_be_bytes());
        aad.extend_from_slice(field);
    }
    aad
}

/// The associated data GCM actually authenticates: the fixed-length header
/// (version, key id) followed by the caller's data, so the split is unambiguous.
fn bind_header(key_header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut bound = Vec::with_capacity(key_header.len() + aad.len());
    bound.extend_from_slice(key_header);
    bound.extend_from_slice(aad);
    bound
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn keyring_with(ids: &[u32]) -> Keyring {
        let mut keyring = Keyring::new(DataKey::generate(ids[0]));
        for &id in &ids[1..] {
            keyring.add(DataKey::generate(id)).expect("distinct ids");
        }
        keyring
    }

    #[test]
    fn round_trip_under_current_and_old_keys() {
        let mut keyring = keyring_with(&[1]);
        let aad = record_aad("population", &[7; 32]);
        let old = seal(keyring.current(), &aad, b"citizen record");
        keyring.rotate(DataKey::generate(2)).expect("new id");
        let new = seal(keyring.current(), &aad, b"");
        assert_eq!(peek_key_id(&old), Ok(1));
        assert_eq!(peek_key_id(&new), Ok(2));
        assert_eq!(open(&keyring, &aad, &old).expect("old key"), b"citizen record");
        assert_eq!(open(&keyring, &aad, &new).expect("new key"), b"");
        assert_eq!(new.len(), ENVELOPE_OVERHEAD_BYTES);
    }

    #[test]
    fn sealing_twice_gives_different_bytes() {
        let keyring = keyring_with(&[1]);
        let a = seal(keyring.current(), b"", b"same");
        let b = seal(keyring.current(), b"", b"same");
        assert_ne!(a, b, "nonces must be fresh");
    }

    #[test]
    fn every_flipped_bit_fails_to_open() {
        // Keys 0, 3 and 5 sit one bit away from key 1, so some flips of the
        // key id land on a key the keyring holds: those must fail too.
        let keyring = keyring_with(&[1, 0, 3, 5]);
        let aad = record_aad("passports", b"blind");
        let envelope = seal(keyring.current(), &aad, b"abcd");
        for bit in 0..envelope.len() * 8 {
            let mut altered = envelope.clone();
            altered[bit / 8] ^= 1 << (bit % 8);
            let result = open(&keyring, &aad, &altered);
            assert!(result.is_err(), "bit {bit} flipped, yet it opened: {result:?}");
        }
    }

    #[test]
    fn wrong_associated_data_fails() {
        let keyring = keyring_with(&[1]);
        let envelope = seal(keyring.current(), &record_aad("idp", b"record-a"), b"v");
        for aad in [record_aad("idp", b"record-b"), record_aad("land", b"record-a"), Vec::new()] {
            assert_eq!(open(&keyring, &aad, &envelope), Err(CryptoError::AuthenticationFailed));
        }
    }

    #[test]
    fn unknown_key_id_is_named() {
        let envelope = seal(&DataKey::generate(42), b"", b"v");
        let error = open(&keyring_with(&[1]), b"", &envelope).expect_err("no key 42");
        assert_eq!(error, CryptoError::UnknownKeyId { key_id: 42 });
        assert!(error.to_string().contains("42"), "{error}");
    }

    #[test]
    fn short_or_foreign_input_is_rejected() {
        let keyring = keyring_with(&[1]);
        let envelope = seal(keyring.current(), b"", b"");
        for len in 0..envelope.len() {
            assert_eq!(
                open(&keyring, b"", &envelope[..len]),
                Err(CryptoError::Truncated { len, min: ENVELOPE_OVERHEAD_BYTES })
            );
        }
        let mut future = envelope.clone();
        future[0] = 2;
        assert_eq!(
            peek_key_id(&future),
            Err(CryptoError::UnknownVersion { version: 2, supported: ENVELOPE_VERSION_V1 })
        );
    }

    #[test]
    fn envelope_format_is_pinned() {
        // A known-answer vector: if this changes, stored values become
        // unreadable. Key: bytes 0..32; nonce: 12 bytes of 0xa5.
        let bytes: Vec<u8> = (0..32).collect();
        let key = DataKey::from_bytes(0x0102_0304, &bytes).expect("32 bytes");
        let envelope = seal_with_nonce(&key, b"aad", b"holdfast", &[0xa5; NONCE_BYTES]);
        assert_eq!(hex(&envelope), PINNED_ENVELOPE);
        assert_eq!(open(&Keyring::new(key), b"aad", &envelope).expect("opens"), b"holdfast");
    }

    // Checked against an independent AES-GCM implementation (Python's
    // `cryptography`) with associated data 01 01020304 "aad".
    const PINNED_ENVELOPE: &str = concat!(
        "01",                               // version
        "01020304",                         // key id
        "a5a5a5a5a5a5a5a5a5a5a5a5",         // nonce
        "4928f0c454fd5bfd",                 // ciphertext of "holdfast"
        "23711090bf20766dc229ffcecd25ca0c", // tag
    );

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn record_aad_is_unambiguous() {
        assert_ne!(record_aad("ab", b"c"), record_aad("a", b"bc"));
        assert_ne!(record_aad("", b"ab"), record_aad("ab", b""));
        assert_eq!(record_aad("a", b"b"), record_aad("a", b"b"));
    }

    proptest! {
        #[test]
        fn any_value_round_trips(
            plaintext in proptest::collection::vec(any::<u8>(), 0..4096),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
            id in any::<u32>(),
        ) {
            let keyring = Keyring::new(DataKey::generate(id));
            let envelope = seal(keyring.current(), &aad, &plaintext);
            prop_assert_eq!(envelope.len(), plaintext.len() + ENVELOPE_OVERHEAD_BYTES);
            prop_assert_eq!(peek_key_id(&envelope), Ok(id));
            prop_assert_eq!(open(&keyring, &aad, &envelope), Ok(plaintext));
        }
    }
}
