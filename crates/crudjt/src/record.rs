//! Records: the in-memory form of a token's state and its sealed on-disk
//! form.
//!
//! On-disk value layout, format version 2 (integers little-endian), keyed
//! in the B-tree by the record id:
//!
//! ```text
//! offset  size  field
//! 0       1     format version (2)
//! 1       1     flags: bit 0 = has expiry, bit 1 = has read budget
//! 2       2     number of the key whose token subkey made the token
//! 4       2     number of the key whose record subkey sealed this value
//! 6       8     random half of the token
//! 14      8     expiry, milliseconds since the Unix epoch (0 without ttl)
//! 22      8     reads left (0 without a budget)
//! 30      12    nonce: open epoch (u32) then seal counter (u64), big-endian
//! 42      n     data, encrypted with AES-256-GCM-SIV
//! 42 + n  16    authentication tag
//! ```
//!
//! Key numbers are the store's own names for the secret keys it has used
//! (see [`crate::key::Keyring`]); they let a store that was given a new key
//! keep opening records and tokens made under the previous ones.
//!
//! Version 1, written before key rotation existed, lacks the two key
//! numbers (both are key 0) and is otherwise the same; it is still read.
//!
//! The associated data is the whole header followed by the record id, so a
//! record cannot be moved to another id, nor its limits, key numbers or
//! random half edited, without failing authentication. The header stays in
//! the clear because the flusher and the sweep read the expiry and the key
//! numbers without the key.

use std::sync::Arc;

use aes_gcm_siv::aead::AeadInOut;
use aes_gcm_siv::{Aes256GcmSiv, Nonce, Tag};

use crate::error::Error;

/// The version this build writes.
pub(crate) const FORMAT_VERSION: u8 = 2;
const FLAG_EXPIRY: u8 = 1 << 0;
const FLAG_BUDGET: u8 = 1 << 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Where the fields of one format version sit.
struct Layout {
    /// Offset of the two key numbers; `None` in version 1, where both are 0.
    keys_at: Option<usize>,
    random_at: usize,
    expiry_at: usize,
    reads_at: usize,
    nonce_at: usize,
}

impl Layout {
    const V1: Layout = Layout {
        keys_at: None,
        random_at: 2,
        expiry_at: 10,
        reads_at: 18,
        nonce_at: 26,
    };
    const V2: Layout = Layout {
        keys_at: Some(2),
        random_at: 6,
        expiry_at: 14,
        reads_at: 22,
        nonce_at: 30,
    };

    fn of(bytes: &[u8]) -> Option<&'static Layout> {
        let layout = match bytes.first()? {
            1 => &Layout::V1,
            2 => &Layout::V2,
            _ => return None,
        };
        (bytes.len() >= layout.header_len() + TAG_LEN).then_some(layout)
    }

    const fn header_len(&self) -> usize {
        self.nonce_at + NONCE_LEN
    }
}

/// Bytes before the ciphertext.
pub(crate) const HEADER_LEN: usize = Layout::V2.header_len();
/// Bytes a record adds to its data.
pub(crate) const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Longest header of any version, for the associated data buffer.
const MAX_HEADER_LEN: usize = HEADER_LEN;

/// The key numbers a record's token and seal were made under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyNumbers {
    pub(crate) token: u16,
    pub(crate) seal: u16,
}

/// A token's current state, shared cheaply between the pending layer, the
/// cache and readers.
#[derive(Clone, Debug)]
pub(crate) struct Rec {
    /// Must equal the token's random half for the token to match.
    pub(crate) random: u64,
    /// The number of the key that made the token; the token must open
    /// under that key to match.
    pub(crate) token_key: u16,
    /// Expiry in milliseconds since the Unix epoch.
    pub(crate) expires_at: Option<u64>,
    /// Reads left. Invariant: never `Some(0)`; the read that would leave 0
    /// deletes the record instead.
    pub(crate) reads_left: Option<u64>,
    /// The MessagePack data, validated at create or update.
    pub(crate) data: Arc<[u8]>,
}

impl Rec {
    /// Whether the record is expired at `now_ms`: at or past its expiry.
    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }

    /// Remaining lifetime in whole seconds, rounded up.
    pub(crate) fn ttl_left(&self, now_ms: u64) -> Option<u64> {
        self.expires_at
            .map(|at| at.saturating_sub(now_ms).div_ceil(1000))
    }

    /// Bytes this record holds in memory, for the pending-writes bound.
    pub(crate) fn weight(&self) -> usize {
        self.data.len() + OVERHEAD
    }
}

/// Hands out nonces that never repeat under one record key: the store's
/// open epoch, bumped durably at every open, then a counter.
pub(crate) struct Sealer {
    epoch: u32,
    /// The next counter to use. Invariant: below `end`.
    counter: u64,
    /// The first counter this sealer may not use: the start of a range
    /// given to another sealer by [`Sealer::split_off`].
    end: u64,
}

impl Sealer {
    pub(crate) fn new(epoch: u32) -> Sealer {
        Sealer {
            epoch,
            counter: 0,
            end: u64::MAX,
        }
    }

    /// A sealer for at most `n` records, with counters this one will not
    /// use again, so that two threads can seal at once.
    pub(crate) fn split_off(&mut self, n: usize) -> Sealer {
        let start = self.counter;
        let end = start.checked_add(n as u64).filter(|&end| end <= self.end);
        // 2^64 seals in one open cannot happen: it would take centuries at
        // a billion a second.
        let end = end.expect("the nonce counter is exhausted");
        self.counter = end;
        Sealer {
            epoch: self.epoch,
            counter: start,
            end,
        }
    }

    fn next_nonce(&mut self) -> [u8; NONCE_LEN] {
        // A repeated nonce would leak data; refuse rather than reuse.
        assert!(
            self.counter < self.end,
            "a sealer sealed more than its share"
        );
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.epoch.to_be_bytes());
        nonce[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        nonce
    }

    /// Encrypts `rec` into its on-disk bytes for record `id`, under the
    /// record subkey `cipher` of key number `seal_key`.
    pub(crate) fn seal(
        &mut self,
        cipher: &Aes256GcmSiv,
        seal_key: u16,
        id: u64,
        rec: &Rec,
    ) -> Vec<u8> {
        let layout = &Layout::V2;
        let mut out = vec![0u8; OVERHEAD + rec.data.len()];
        let mut flags = 0;
        if rec.expires_at.is_some() {
            flags |= FLAG_EXPIRY;
        }
        if rec.reads_left.is_some() {
            flags |= FLAG_BUDGET;
        }
        out[0] = FORMAT_VERSION;
        out[1] = flags;
        out[2..4].copy_from_slice(&rec.token_key.to_le_bytes());
        out[4..6].copy_from_slice(&seal_key.to_le_bytes());
        put_u64(&mut out, layout.random_at, rec.random);
        put_u64(&mut out, layout.expiry_at, rec.expires_at.unwrap_or(0));
        put_u64(&mut out, layout.reads_at, rec.reads_left.unwrap_or(0));
        out[layout.nonce_at..HEADER_LEN].copy_from_slice(&self.next_nonce());
        let aad = associated_data(&out[..HEADER_LEN], id);
        let (head, body) = out.split_at_mut(HEADER_LEN);
        let (text, tag_out) = body.split_at_mut(rec.data.len());
        text.copy_from_slice(&rec.data);
        let nonce: &Nonce = head[layout.nonce_at..].try_into().expect("12-byte nonce");
        let tag = cipher
            .encrypt_inout_detached(nonce, &aad[..HEADER_LEN + 8], text.into())
            .expect("record data is far below AES-GCM-SIV's length limit");
        tag_out.copy_from_slice(&tag);
        out
    }
}

/// The header, then the record id: what authentication binds the data to.
fn associated_data(header: &[u8], id: u64) -> [u8; MAX_HEADER_LEN + 8] {
    let mut aad = [0u8; MAX_HEADER_LEN + 8];
    aad[..header.len()].copy_from_slice(header);
    aad[header.len()..header.len() + 8].copy_from_slice(&id.to_le_bytes());
    aad
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().expect("2 bytes"))
}

/// Reads the key numbers from a sealed record's clear header, without the
/// key. `None` when the bytes are not a record of a known version.
pub(crate) fn key_numbers(bytes: &[u8]) -> Option<KeyNumbers> {
    let layout = Layout::of(bytes)?;
    Some(match layout.keys_at {
        Some(at) => KeyNumbers {
            token: u16_at(bytes, at),
            seal: u16_at(bytes, at + 2),
        },
        None => KeyNumbers { token: 0, seal: 0 },
    })
}

/// Decrypts and authenticates the on-disk bytes of record `id` with the
/// record subkey of the key that sealed it (see [`key_numbers`]).
pub(crate) fn open(cipher: &Aes256GcmSiv, id: u64, bytes: &[u8]) -> Result<Rec, Error> {
    let corrupt = Error::Corrupt { id };
    let Some(layout) = Layout::of(bytes) else {
        return Err(corrupt);
    };
    let flags = bytes[1];
    if flags & !(FLAG_EXPIRY | FLAG_BUDGET) != 0 {
        return Err(corrupt);
    }
    let header_len = layout.header_len();
    let aad = associated_data(&bytes[..header_len], id);
    let text_end = bytes.len() - TAG_LEN;
    let mut data = bytes[header_len..text_end].to_vec();
    let nonce: &Nonce = bytes[layout.nonce_at..header_len]
        .try_into()
        .expect("12-byte nonce");
    let tag: &Tag = bytes[text_end..].try_into().expect("16-byte tag");
    cipher
        .decrypt_inout_detached(
            nonce,
            &aad[..header_len + 8],
            data.as_mut_slice().into(),
            tag,
        )
        .map_err(|_| corrupt.clone())?;
    let reads_left = (flags & FLAG_BUDGET != 0).then(|| u64_at(bytes, layout.reads_at));
    if reads_left == Some(0) {
        return Err(corrupt);
    }
    let token_key = key_numbers(bytes).map_or(0, |keys| keys.token);
    Ok(Rec {
        random: u64_at(bytes, layout.random_at),
        token_key,
        expires_at: (flags & FLAG_EXPIRY != 0).then(|| u64_at(bytes, layout.expiry_at)),
        reads_left,
        data: data.into(),
    })
}

/// Reads a sealed record's expiry without the key, for keeping the expiry
/// index in step. Damaged bytes read as no expiry.
pub(crate) fn expiry_of(bytes: &[u8]) -> Option<u64> {
    let layout = Layout::of(bytes)?;
    (bytes[1] & FLAG_EXPIRY != 0).then(|| u64_at(bytes, layout.expiry_at))
}

/// The data length of a sealed record of any version, for checks.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn data_len(bytes: &[u8]) -> Option<usize> {
    let layout = Layout::of(bytes)?;
    Some(bytes.len() - layout.header_len() - TAG_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm_siv::aead::KeyInit;

    fn cipher() -> Aes256GcmSiv {
        Aes256GcmSiv::new(&[3u8; 32].into())
    }

    fn rec() -> Rec {
        Rec {
            random: 0xdead_beef,
            token_key: 0,
            expires_at: Some(1_700_000_000_000),
            reads_left: Some(3),
            data: Arc::from(&b"\x81\xa1a\x01"[..]),
        }
    }

    #[test]
    fn seals_and_opens() {
        let mut sealer = Sealer::new(1);
        let bytes = sealer.seal(&cipher(), 0, 9, &rec());
        assert_eq!(bytes.len(), OVERHEAD + 4);
        assert!(!bytes.windows(4).any(|w| w == b"\x81\xa1a\x01"));
        let back = open(&cipher(), 9, &bytes).unwrap();
        assert_eq!(back.random, 0xdead_beef);
        assert_eq!(back.expires_at, Some(1_700_000_000_000));
        assert_eq!(back.reads_left, Some(3));
        assert_eq!(&*back.data, b"\x81\xa1a\x01");
        assert_eq!(expiry_of(&bytes), Some(1_700_000_000_000));
        let bare = Rec {
            expires_at: None,
            reads_left: None,
            ..rec()
        };
        let bare = open(&cipher(), 1, &sealer.seal(&cipher(), 0, 1, &bare)).unwrap();
        assert_eq!((bare.expires_at, bare.reads_left), (None, None));
    }

    #[test]
    fn nonces_never_repeat() {
        let mut sealer = Sealer::new(7);
        let a = sealer.seal(&cipher(), 0, 1, &rec());
        let b = sealer.seal(&cipher(), 0, 1, &rec());
        assert_ne!(
            a[Layout::V2.nonce_at..HEADER_LEN],
            b[Layout::V2.nonce_at..HEADER_LEN]
        );
        assert_ne!(a, b);
        let other_epoch = Sealer::new(8).seal(&cipher(), 0, 1, &rec());
        assert_ne!(
            a[Layout::V2.nonce_at..HEADER_LEN],
            other_epoch[Layout::V2.nonce_at..HEADER_LEN]
        );

        let mut root = Sealer::new(9);
        let mut first = root.split_off(2);
        let mut second = root.split_off(1);
        let nonces: Vec<Vec<u8>> = [
            first.seal(&cipher(), 0, 1, &rec()),
            first.seal(&cipher(), 0, 1, &rec()),
            second.seal(&cipher(), 0, 1, &rec()),
            root.seal(&cipher(), 0, 1, &rec()),
        ]
        .iter()
        .map(|sealed| sealed[Layout::V2.nonce_at..HEADER_LEN].to_vec())
        .collect();
        let distinct: std::collections::HashSet<_> = nonces.iter().collect();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    #[should_panic(expected = "more than its share")]
    fn a_split_sealer_stops_at_its_share() {
        let mut part = Sealer::new(1).split_off(1);
        part.seal(&cipher(), 0, 1, &rec());
        part.seal(&cipher(), 0, 1, &rec());
    }

    #[test]
    fn any_flipped_bit_or_moved_record_fails() {
        let bytes = Sealer::new(1).seal(&cipher(), 0, 9, &rec());
        assert!(matches!(
            open(&cipher(), 10, &bytes),
            Err(Error::Corrupt { id: 10 })
        ));
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut bent = bytes.clone();
                bent[i] ^= bit;
                assert!(open(&cipher(), 9, &bent).is_err(), "byte {i} bit {bit:#x}");
            }
        }
        assert!(open(&cipher(), 9, &bytes[..OVERHEAD - 1]).is_err());
        let mut renumbered = bytes.clone();
        renumbered[4] = 1;
        assert!(open(&cipher(), 9, &renumbered).is_err());
        let other = Aes256GcmSiv::new(&[4u8; 32].into());
        assert!(open(&other, 9, &bytes).is_err());
    }

    /// Seals the way format version 1 did: no key numbers in the header.
    fn seal_v1(cipher: &Aes256GcmSiv, id: u64, rec: &Rec) -> Vec<u8> {
        let layout = &Layout::V1;
        let header_len = layout.header_len();
        let mut out = vec![0u8; header_len + rec.data.len() + TAG_LEN];
        out[0] = 1;
        out[1] = FLAG_EXPIRY | FLAG_BUDGET;
        put_u64(&mut out, layout.random_at, rec.random);
        put_u64(&mut out, layout.expiry_at, rec.expires_at.unwrap());
        put_u64(&mut out, layout.reads_at, rec.reads_left.unwrap());
        out[layout.nonce_at..header_len].copy_from_slice(&[5; NONCE_LEN]);
        let aad = associated_data(&out[..header_len], id);
        let nonce: Nonce = out[layout.nonce_at..header_len].try_into().unwrap();
        let mut text = rec.data.to_vec();
        let tag = cipher
            .encrypt_inout_detached(&nonce, &aad[..header_len + 8], text.as_mut_slice().into())
            .unwrap();
        out[header_len..header_len + text.len()].copy_from_slice(&text);
        out[header_len + text.len()..].copy_from_slice(&tag);
        out
    }

    #[test]
    fn reads_version_one_records_as_key_zero() {
        let bytes = seal_v1(&cipher(), 4, &rec());
        assert_eq!(bytes.len(), Layout::V1.header_len() + TAG_LEN + 4);
        assert_eq!(key_numbers(&bytes), Some(KeyNumbers { token: 0, seal: 0 }));
        assert_eq!(expiry_of(&bytes), rec().expires_at);
        assert_eq!(data_len(&bytes), Some(4));
        let back = open(&cipher(), 4, &bytes).unwrap();
        assert_eq!((back.random, back.token_key), (0xdead_beef, 0));
        assert_eq!(
            (back.expires_at, back.reads_left),
            (rec().expires_at, Some(3))
        );
        assert_eq!(&*back.data, b"\x81\xa1a\x01");
        assert!(open(&cipher(), 5, &bytes).is_err());
    }

    #[test]
    fn key_numbers_are_in_the_clear_header() {
        let rec = Rec {
            token_key: 3,
            ..rec()
        };
        let bytes = Sealer::new(1).seal(&cipher(), 7, 9, &rec);
        assert_eq!(key_numbers(&bytes), Some(KeyNumbers { token: 3, seal: 7 }));
        assert_eq!(open(&cipher(), 9, &bytes).unwrap().token_key, 3);
        assert_eq!(key_numbers(&bytes[..OVERHEAD - 1]), None);
        assert_eq!(key_numbers(b"\x09rest of it"), None);
    }

    #[test]
    fn ttl_rounds_up() {
        let r = Rec {
            expires_at: Some(10_000),
            ..rec()
        };
        assert_eq!(r.ttl_left(0), Some(10));
        assert_eq!(r.ttl_left(1), Some(10));
        assert_eq!(r.ttl_left(9_000), Some(1));
        assert_eq!(r.ttl_left(9_999), Some(1));
        assert!(!r.expired(9_999));
        assert!(r.expired(10_000));
    }
}
