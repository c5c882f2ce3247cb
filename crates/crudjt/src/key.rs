//! The secret key and the independent subkeys derived from it.
//!
//! One HKDF-SHA256 extraction of the secret yields three 32-byte outputs,
//! each under its own label: the token permutation key, the record AEAD key,
//! and the fingerprint the store keeps to recognise its key. None of them
//! reveals the secret or another subkey.
//!
//! A store may be given previous secret keys beside the current one, to
//! rotate its key without ending every session: the [`Keyring`] holds them
//! all, each under the number the store knows it by.

use std::fmt;

use aes::Aes256;
use aes::cipher::KeyInit;
use aes_gcm_siv::Aes256GcmSiv;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::error::KeyError;

const HKDF_SALT: &[u8] = b"crudjt/v1";
const TOKEN_LABEL: &[u8] = b"crudjt token permutation";
const RECORD_LABEL: &[u8] = b"crudjt record aead";
const FINGERPRINT_LABEL: &[u8] = b"crudjt key fingerprint";

/// Length of the fingerprint the store keeps of its key.
pub(crate) const FINGERPRINT_LEN: usize = 32;

/// The store's secret: 32, 48 or 64 random bytes, given as base64.
///
/// Its `Debug` output never shows the key, and the bytes are wiped on drop.
///
/// # Example
///
/// ```
/// let key = crudjt::SecretKey::generate();
/// let again = crudjt::SecretKey::from_base64(&key.to_base64()).unwrap();
/// assert!(crudjt::SecretKey::from_base64("c2hvcnQ=").is_err());
/// # drop(again);
/// ```
#[derive(Clone)]
pub struct SecretKey {
    bytes: Zeroizing<Vec<u8>>,
}

impl SecretKey {
    /// Parses base64 (standard or URL-safe alphabet, padding optional,
    /// surrounding whitespace ignored), as printed by
    /// `openssl rand -base64 48`.
    ///
    /// # Errors
    ///
    /// [`KeyError`] when the text is not base64 or does not decode to 32, 48
    /// or 64 bytes. The error never contains the key.
    pub fn from_base64(text: &str) -> Result<SecretKey, KeyError> {
        let text = text.trim();
        let trimmed = text.trim_end_matches('=');
        let padded = Zeroizing::new(format!(
            "{trimmed}{}",
            "=".repeat((4 - trimmed.len() % 4) % 4)
        ));
        let bytes = STANDARD
            .decode(padded.as_bytes())
            .or_else(|_| URL_SAFE.decode(padded.as_bytes()))
            .map_err(|_| KeyError::NotBase64)?;
        SecretKey::from_bytes(bytes)
    }

    /// Wraps raw key bytes.
    ///
    /// # Errors
    ///
    /// [`KeyError::WrongLength`] unless there are 32, 48 or 64 bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<SecretKey, KeyError> {
        let bytes = Zeroizing::new(bytes);
        match bytes.len() {
            32 | 48 | 64 => Ok(SecretKey { bytes }),
            n => Err(KeyError::WrongLength(n)),
        }
    }

    /// Makes a new random 48-byte key from the operating system's generator.
    pub fn generate() -> SecretKey {
        let mut bytes = vec![0u8; 48];
        getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
        SecretKey {
            bytes: Zeroizing::new(bytes),
        }
    }

    /// The key as standard padded base64, for writing to a key file.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes.as_slice())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({} bytes, redacted)", self.bytes.len())
    }
}

/// The subkeys in use by an open store.
pub(crate) struct Keys {
    /// Encrypts `(record id, random half)` into a token: a pseudorandom
    /// permutation of 16-byte blocks.
    pub(crate) token: Aes256,
    /// Seals record data; nonces come from [`crate::record::Sealer`].
    pub(crate) record: Aes256GcmSiv,
    /// Stored in the file so that another key is refused at open.
    pub(crate) fingerprint: [u8; FINGERPRINT_LEN],
}

impl Keys {
    pub(crate) fn derive(secret: &SecretKey) -> Keys {
        let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), &secret.bytes);
        let mut token_key = [0u8; 32];
        let mut record_key = [0u8; 32];
        let mut fingerprint = [0u8; FINGERPRINT_LEN];
        // 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
        hkdf.expand(TOKEN_LABEL, &mut token_key)
            .expect("32 bytes is a valid HKDF length");
        hkdf.expand(RECORD_LABEL, &mut record_key)
            .expect("32 bytes is a valid HKDF length");
        hkdf.expand(FINGERPRINT_LABEL, &mut fingerprint)
            .expect("32 bytes is a valid HKDF length");
        let keys = Keys {
            token: Aes256::new(&token_key.into()),
            record: Aes256GcmSiv::new(&record_key.into()),
            fingerprint,
        };
        token_key.zeroize();
        record_key.zeroize();
        keys
    }

    /// Compares a stored fingerprint with ours in constant time.
    pub(crate) fn matches(&self, stored: &[u8]) -> bool {
        stored.len() == FINGERPRINT_LEN && bool::from(stored.ct_eq(&self.fingerprint))
    }
}

/// Every key an open store can use, each with its number in the store's
/// key table (see [`crate::disk`]). The current key makes new tokens and
/// seals every write; previous keys only open what was made under them.
pub(crate) struct Keyring {
    /// The current key first, then the previous keys in the order given.
    keys: Vec<(u16, Keys)>,
}

impl Keyring {
    /// `keys` holds the current key first. Numbers must be distinct.
    pub(crate) fn new(keys: Vec<(u16, Keys)>) -> Keyring {
        assert!(!keys.is_empty(), "a keyring holds at least the current key");
        Keyring { keys }
    }

    /// The current key and its number.
    pub(crate) fn current(&self) -> (u16, &Keys) {
        let (number, keys) = &self.keys[0];
        (*number, keys)
    }

    /// The key with `number`, if the store was given it.
    pub(crate) fn get(&self, number: u16) -> Option<&Keys> {
        self.keys
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, keys)| keys)
    }

    /// Every key with its number, the current one first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u16, &Keys)> {
        self.keys.iter().map(|(number, keys)| (*number, keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_three_lengths_in_both_alphabets() {
        for len in [32, 48, 64] {
            let raw = vec![0xfb; len];
            assert!(SecretKey::from_base64(&STANDARD.encode(&raw)).is_ok());
            assert!(SecretKey::from_base64(&URL_SAFE.encode(&raw)).is_ok());
            let unpadded = STANDARD.encode(&raw).trim_end_matches('=').to_string();
            assert!(SecretKey::from_base64(&format!("{unpadded}\n")).is_ok());
        }
    }

    #[test]
    fn refuses_other_lengths_and_garbage_without_echoing() {
        let short = STANDARD.encode([1u8; 31]);
        assert_eq!(
            SecretKey::from_base64(&short).unwrap_err(),
            KeyError::WrongLength(31)
        );
        assert_eq!(
            SecretKey::from_base64("not base64 at all!").unwrap_err(),
            KeyError::NotBase64
        );
        assert_eq!(
            SecretKey::from_base64("").unwrap_err(),
            KeyError::WrongLength(0)
        );
        let key = SecretKey::generate();
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }

    #[test]
    fn subkeys_differ_and_fingerprint_identifies_the_key() {
        let a = Keys::derive(&SecretKey::from_bytes(vec![1; 32]).unwrap());
        let b = Keys::derive(&SecretKey::from_bytes(vec![2; 32]).unwrap());
        assert!(a.matches(&a.fingerprint));
        assert!(!a.matches(&b.fingerprint));
        assert!(!a.matches(&a.fingerprint[..31]));
    }
}
