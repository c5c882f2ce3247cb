//! Tokens: a record id and 64 random bits, encrypted as one AES block.
//!
//! Layout of the 16-byte plaintext block (big-endian):
//!
//! ```text
//! 0..8   record id
//! 8..16  random half, also stored in the record and compared on lookup
//! ```
//!
//! The block is encrypted with AES-256 under the token subkey, a pseudorandom
//! permutation, so a token looks random without the key, and two tokens
//! never collide because their ids differ. The result is written as 22
//! characters of unpadded base64url.

use std::fmt;

use aes::Aes256;
use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Length of a token's text form.
pub const TOKEN_LEN: usize = 22;
const BLOCK_LEN: usize = 16;

/// A token as handed to the application: 22 characters of base64url.
///
/// `Debug` does not print it, so tokens do not end up in logs by accident;
/// use [`Token::as_str`] or `Display` where the text is meant to go.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token([u8; TOKEN_LEN]);

impl Token {
    /// The token's text.
    pub fn as_str(&self) -> &str {
        // Built only from base64url output, which is ASCII.
        std::str::from_utf8(&self.0).expect("tokens are ASCII")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(redacted)")
    }
}

impl AsRef<str> for Token {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<Token> for String {
    fn from(token: Token) -> String {
        token.as_str().to_owned()
    }
}

/// Encrypts a record id and random half into a token.
pub(crate) fn seal(cipher: &Aes256, id: u64, random: u64) -> Token {
    let mut block = [0u8; BLOCK_LEN];
    block[..8].copy_from_slice(&id.to_be_bytes());
    block[8..].copy_from_slice(&random.to_be_bytes());
    cipher.encrypt_block((&mut block).into());
    let mut text = [0u8; TOKEN_LEN];
    let written = URL_SAFE_NO_PAD
        .encode_slice(block, &mut text)
        .expect("16 bytes encode to exactly 22 base64 characters");
    debug_assert_eq!(written, TOKEN_LEN);
    Token(text)
}

/// Decrypts a token's text into `(record id, random half)`.
///
/// Returns `None` for anything that is not 22 canonical base64url
/// characters; such a token is simply not found.
pub(crate) fn open(cipher: &Aes256, text: &str) -> Option<(u64, u64)> {
    if text.len() != TOKEN_LEN {
        return None;
    }
    let mut block = [0u8; BLOCK_LEN];
    // The engine rejects non-zero trailing bits, so each block has exactly
    // one accepted spelling.
    match URL_SAFE_NO_PAD.decode_slice(text.as_bytes(), &mut block) {
        Ok(BLOCK_LEN) => {}
        _ => return None,
    }
    cipher.decrypt_block((&mut block).into());
    let id = u64::from_be_bytes(block[..8].try_into().expect("8 bytes"));
    let random = u64::from_be_bytes(block[8..].try_into().expect("8 bytes"));
    Some((id, random))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::KeyInit;

    fn cipher(byte: u8) -> Aes256 {
        Aes256::new(&[byte; 32].into())
    }

    #[test]
    fn round_trips_and_hides_the_id() {
        let c = cipher(7);
        let a = seal(&c, 0, 42);
        let b = seal(&c, 1, 42);
        assert_eq!(a.as_str().len(), TOKEN_LEN);
        assert_ne!(a, b);
        assert_eq!(open(&c, a.as_str()), Some((0, 42)));
        assert_eq!(open(&c, b.as_str()), Some((1, 42)));
        assert_ne!(open(&cipher(8), a.as_str()), Some((0, 42)));
        assert!(
            a.as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn garbage_is_not_a_token() {
        let c = cipher(1);
        let good = seal(&c, 5, 9).to_string();
        assert_eq!(open(&c, ""), None);
        assert_eq!(open(&c, &good[..21]), None);
        assert_eq!(open(&c, &format!("{good}A")), None);
        assert_eq!(open(&c, "!!!!!!!!!!!!!!!!!!!!!!"), None);
        assert_eq!(open(&c, "ééééééééééé"), None);
        // The last character carries 4 unused bits; only zeros there are
        // canonical, so flipping one gives a second spelling that must fail.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bent = good.into_bytes();
        let index = ALPHABET.iter().position(|&b| b == bent[21]).unwrap();
        bent[21] = ALPHABET[index ^ 1];
        assert_eq!(open(&c, std::str::from_utf8(&bent).unwrap()), None);
    }

    #[test]
    fn debug_redacts() {
        assert_eq!(format!("{:?}", seal(&cipher(1), 1, 1)), "Token(redacted)");
    }
}
