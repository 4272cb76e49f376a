//! Key material: the data keys that seal values and the master key that wraps them.
//!
//! Both hold their bytes in a `Box` so that moving a key moves a pointer and
//! leaves no stray copy behind, and both wipe the bytes when dropped. Neither
//! prints its bytes: `Debug` says `<redacted>`.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;

/// AES-256 keys, and every key in this crate, are 32 bytes.
pub const KEY_BYTES: usize = 32;

/// Bytes of a master key's check value. 128 bits make a chance match with
/// another key impossible in practice while keeping cluster state small.
pub const KEY_CHECK_VALUE_BYTES: usize = 16;

/// Message MACed to make the key check value. Format constant: do not change
/// (every cluster stores the value it produced).
const KEY_CHECK_LABEL: &[u8] = b"holdfast key check v1";

/// Hex characters in a key file: two per key byte.
const KEY_FILE_HEX_CHARS: usize = 2 * KEY_BYTES;

/// A data key: seals and opens values. Versioned by `id`, which every
/// envelope carries so that old values stay readable after a rotation.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey {
    id: u32,
    key: Box<[u8; KEY_BYTES]>,
}

impl DataKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate(id: u32) -> Self {
        let mut key = Box::new([0u8; KEY_BYTES]);
        OsRng.fill_bytes(&mut key[..]);
        Self { id, key }
    }

    /// A key from exactly [`KEY_BYTES`] bytes; the caller wipes its own copy.
    pub fn from_bytes(id: u32, bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self { id, key: boxed_key(bytes)? })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.key
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey").field("id", &self.id).field("key", &format_args!("<redacted>")).finish()
    }
}

/// The master key: wraps data keys and derives the blind index key. It is
/// read from a key file (or, later, a KMS) and never enters cluster state;
/// only its check value does.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    key: Box<[u8; KEY_BYTES]>,
}

impl MasterKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut key = Box::new([0u8; KEY_BYTES]);
        OsRng.fill_bytes(&mut key[..]);
        Self { key }
    }

    /// A key from exactly [`KEY_BYTES`] bytes; the caller wipes its own copy.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(Self { key: boxed_key(bytes)? })
    }

    /// Parses a key file's contents: either exactly 32 raw bytes, or 64 hex
    /// characters with an optional trailing newline. The caller reads the file
    /// (this crate does no IO) and should wipe the buffer afterwards.
    pub fn from_key_file(contents: &[u8]) -> Result<Self, CryptoError> {
        if contents.is_empty() {
            return Err(bad_key_file("the file is empty".to_owned()));
        }
        if contents.len() == KEY_BYTES {
            // 32 hex digits are far more likely a 128-bit hex key than 32
            // random bytes that all happen to be hex digits (odds ~2^-113).
            if contents.iter().all(u8::is_ascii_hexdigit) {
                return Err(bad_key_file(format!(
                    "found {KEY_BYTES} hex characters, which is a 128-bit key; \
                     holdfast needs a 256-bit key: {KEY_FILE_HEX_CHARS} hex characters \
                     or {KEY_BYTES} raw bytes"
                )));
            }
            return Self::from_bytes(contents);
        }
        let text = contents.strip_suffix(b"\n").unwrap_or(contents);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if !text.iter().all(u8::is_ascii_hexdigit) {
            return Err(bad_key_file(format!(
                "expected {KEY_BYTES} raw bytes or {KEY_FILE_HEX_CHARS} hex characters \
                 (a newline may follow), found {} bytes that are neither",
                contents.len()
            )));
        }
        if text.len() != KEY_FILE_HEX_CHARS {
            return Err(bad_key_file(format!("expected {KEY_FILE_HEX_CHARS} hex characters, found {}", text.len())));
        }
        let mut key = Box::new([0u8; KEY_BYTES]);
        for (byte, pair) in key.iter_mut().zip(text.chunks_exact(2)) {
            *byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        Ok(Self { key })
    }

    /// The key as a key file's contents (64 lowercase hex characters and a
    /// newline), wiped when dropped. Used by whatever writes new key files.
    pub fn to_key_file(&self) -> Zeroizing<String> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = Zeroizing::new(String::with_capacity(KEY_FILE_HEX_CHARS + 1));
        for byte in self.key.iter() {
            text.push(char::from(DIGITS[usize::from(byte >> 4)]));
            text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        text.push('\n');
        text
    }

    /// A public fingerprint of the key: HMAC-SHA256(master, label), truncated.
    /// Stored in cluster state so a node can tell at startup that the
    /// operator gave it the cluster's key, without trial-decrypting user data.
    /// It reveals nothing about the key (HMAC is a PRF).
    pub fn key_check_value(&self) -> [u8; KEY_CHECK_VALUE_BYTES] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key[..]).expect("HMAC accepts keys of any length");
        mac.update(KEY_CHECK_LABEL);
        let digest = mac.finalize().into_bytes();
        let mut check = [0u8; KEY_CHECK_VALUE_BYTES];
        check.copy_from_slice(&digest[..KEY_CHECK_VALUE_BYTES]);
        check
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_BYTES] {
        &self.key
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("key", &format_args!("<redacted>")).finish()
    }
}

/// Copies exactly [`KEY_BYTES`] bytes into a fresh box, or names the length.
pub(crate) fn boxed_key(bytes: &[u8]) -> Result<Box<[u8; KEY_BYTES]>, CryptoError> {
    if bytes.len() != KEY_BYTES {
        return Err(CryptoError::WrongKeyLength { expected: KEY_BYTES, actual: bytes.len() });
    }
    let mut key = Box::new([0u8; KEY_BYTES]);
    key.copy_from_slice(bytes);
    Ok(key)
}

fn bad_key_file(reason: String) -> CryptoError {
    CryptoError::BadKeyFile { reason }
}

/// Value of one hex digit; callers have checked `is_ascii_hexdigit`.
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_holds_no_key_bytes() {
        let data = DataKey::from_bytes(3, &[0xab; KEY_BYTES]).expect("32 bytes");
        assert_eq!(format!("{data:?}"), "DataKey { id: 3, key: <redacted> }");
        let master = MasterKey::from_bytes(&[0xcd; KEY_BYTES]).expect("32 bytes");
        let shown = format!("{master:?} {master:#?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        for needle in ["ab", "AB", "171", "cd", "CD", "205"] {
            assert!(!format!("{data:?}").contains(needle), "DataKey shows {needle}");
            assert!(!shown.contains(needle), "MasterKey shows {needle}");
        }
    }

    #[test]
    fn key_file_accepts_raw_and_hex() {
        let master = MasterKey::generate();
        let raw = MasterKey::from_key_file(master.bytes()).expect("raw 32 bytes");
        assert_eq!(raw.bytes(), master.bytes());

        let file = master.to_key_file();
        assert_eq!(file.len(), KEY_FILE_HEX_CHARS + 1);
        let hex = MasterKey::from_key_file(file.as_bytes()).expect("hex + newline");
        assert_eq!(hex.bytes(), master.bytes());
        let bare = MasterKey::from_key_file(file.trim_end().as_bytes()).expect("hex alone");
        assert_eq!(bare.bytes(), master.bytes());
        let crlf = format!("{}\r\n", file.trim_end().to_uppercase());
        let upper = MasterKey::from_key_file(crlf.as_bytes()).expect("upper hex + CRLF");
        assert_eq!(upper.bytes(), master.bytes());
    }

    #[test]
    fn key_file_errors_say_what_is_wrong() {
        let reason = |contents: &[u8]| match MasterKey::from_key_file(contents) {
            Err(CryptoError::BadKeyFile { reason }) => reason,
            other => panic!("expected BadKeyFile, got {other:?}"),
        };
        assert!(reason(b"").contains("empty"));
        assert!(reason(&[b'a'; 32]).contains("128-bit"));
        assert!(reason(&[b'a'; 62]).contains("found 62"));
        assert!(reason(format!("{}\n\n", "a".repeat(64)).as_bytes()).contains("neither"));
        assert!(reason(&[0u8; 31]).contains("found 31 bytes"));
        assert!(reason("zz".repeat(32).as_bytes()).contains("neither"));
    }

    #[test]
    fn wrong_key_length_is_named() {
        assert_eq!(
            DataKey::from_bytes(1, &[0; 16]).err(),
            Some(CryptoError::WrongKeyLength { expected: 32, actual: 16 })
        );
        assert!(matches!(MasterKey::from_bytes(&[0; 33]), Err(CryptoError::WrongKeyLength { actual: 33, .. })));
    }

    #[test]
    fn key_check_value_tells_keys_apart() {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        assert_eq!(a.key_check_value(), a.clone().key_check_value());
        assert_ne!(a.key_check_value(), b.key_check_value());
        // Pinned (computed independently) so an accidental change of label or
        // truncation is caught: every cluster's stored check value would stop matching.
        let zero = MasterKey::from_bytes(&[0; KEY_BYTES]).expect("32 bytes");
        let hex: String = zero.key_check_value().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "1a3b9febc5ee92111575808244d6985f");
    }
}
