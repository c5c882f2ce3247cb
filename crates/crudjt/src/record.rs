//! Records: the in-memory form of a token's state and its sealed on-disk
//! form.
//!
//! On-disk value layout, format version 1 (integers little-endian), keyed
//! in the B-tree by the record id:
//!
//! ```text
//! offset  size  field
//! 0       1     format version (1)
//! 1       1     flags: bit 0 = has expiry, bit 1 = has read budget
//! 2       8     random half of the token
//! 10      8     expiry, milliseconds since the Unix epoch (0 without ttl)
//! 18      8     reads left (0 without a budget)
//! 26      12    nonce: open epoch (u32) then seal counter (u64), big-endian
//! 38      n     data, encrypted with AES-256-GCM-SIV
//! 38 + n  16    authentication tag
//! ```
//!
//! The associated data is the whole header (bytes 0..38) followed by the
//! record id, so a record cannot be moved to another id, nor its limits or
//! random half edited, without failing authentication. The header stays in
//! the clear because the flusher and the sweep read the expiry without the
//! key.

use std::sync::Arc;

use aes_gcm_siv::aead::AeadInOut;
use aes_gcm_siv::{Aes256GcmSiv, Nonce, Tag};

use crate::error::Error;

pub(crate) const FORMAT_VERSION: u8 = 1;
const FLAG_EXPIRY: u8 = 1 << 0;
const FLAG_BUDGET: u8 = 1 << 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const EXPIRY_AT: usize = 10;
const NONCE_AT: usize = 26;
/// Bytes before the ciphertext.
pub(crate) const HEADER_LEN: usize = NONCE_AT + NONCE_LEN;
/// Bytes a record adds to its data.
pub(crate) const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// A token's current state, shared cheaply between the pending layer, the
/// cache and readers.
#[derive(Clone, Debug)]
pub(crate) struct Rec {
    /// Must equal the token's random half for the token to match.
    pub(crate) random: u64,
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

    /// Encrypts `rec` into its on-disk bytes for record `id`.
    pub(crate) fn seal(&mut self, cipher: &Aes256GcmSiv, id: u64, rec: &Rec) -> Vec<u8> {
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
        out[2..10].copy_from_slice(&rec.random.to_le_bytes());
        out[10..18].copy_from_slice(&rec.expires_at.unwrap_or(0).to_le_bytes());
        out[18..26].copy_from_slice(&rec.reads_left.unwrap_or(0).to_le_bytes());
        out[NONCE_AT..HEADER_LEN].copy_from_slice(&self.next_nonce());
        let aad = associated_data(&out[..HEADER_LEN], id);
        let (head, body) = out.split_at_mut(HEADER_LEN);
        let (text, tag_out) = body.split_at_mut(rec.data.len());
        text.copy_from_slice(&rec.data);
        let nonce: &Nonce = head[NONCE_AT..].try_into().expect("12-byte nonce");
        let tag = cipher
            .encrypt_inout_detached(nonce, &aad, text.into())
            .expect("record data is far below AES-GCM-SIV's length limit");
        tag_out.copy_from_slice(&tag);
        out
    }
}

fn associated_data(header: &[u8], id: u64) -> [u8; HEADER_LEN + 8] {
    let mut aad = [0u8; HEADER_LEN + 8];
    aad[..HEADER_LEN].copy_from_slice(header);
    aad[HEADER_LEN..].copy_from_slice(&id.to_le_bytes());
    aad
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Decrypts and authenticates the on-disk bytes of record `id`.
pub(crate) fn open(cipher: &Aes256GcmSiv, id: u64, bytes: &[u8]) -> Result<Rec, Error> {
    let corrupt = Error::Corrupt { id };
    if bytes.len() < OVERHEAD || bytes[0] != FORMAT_VERSION {
        return Err(corrupt);
    }
    let flags = bytes[1];
    if flags & !(FLAG_EXPIRY | FLAG_BUDGET) != 0 {
        return Err(corrupt);
    }
    let aad = associated_data(&bytes[..HEADER_LEN], id);
    let text_end = bytes.len() - TAG_LEN;
    let mut data = bytes[HEADER_LEN..text_end].to_vec();
    let nonce: &Nonce = bytes[NONCE_AT..HEADER_LEN]
        .try_into()
        .expect("12-byte nonce");
    let tag: &Tag = bytes[text_end..].try_into().expect("16-byte tag");
    cipher
        .decrypt_inout_detached(nonce, &aad, data.as_mut_slice().into(), tag)
        .map_err(|_| corrupt.clone())?;
    let reads_left = (flags & FLAG_BUDGET != 0).then(|| u64_at(bytes, 18));
    if reads_left == Some(0) {
        return Err(corrupt);
    }
    Ok(Rec {
        random: u64_at(bytes, 2),
        expires_at: (flags & FLAG_EXPIRY != 0).then(|| u64_at(bytes, EXPIRY_AT)),
        reads_left,
        data: data.into(),
    })
}

/// Reads a sealed record's expiry without the key, for keeping the expiry
/// index in step. Damaged bytes read as no expiry.
pub(crate) fn expiry_of(bytes: &[u8]) -> Option<u64> {
    let has = bytes.len() >= HEADER_LEN && bytes[1] & FLAG_EXPIRY != 0;
    has.then(|| u64_at(bytes, EXPIRY_AT))
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
            expires_at: Some(1_700_000_000_000),
            reads_left: Some(3),
            data: Arc::from(&b"\x81\xa1a\x01"[..]),
        }
    }

    #[test]
    fn seals_and_opens() {
        let mut sealer = Sealer::new(1);
        let bytes = sealer.seal(&cipher(), 9, &rec());
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
        let bare = open(&cipher(), 1, &sealer.seal(&cipher(), 1, &bare)).unwrap();
        assert_eq!((bare.expires_at, bare.reads_left), (None, None));
    }

    #[test]
    fn nonces_never_repeat() {
        let mut sealer = Sealer::new(7);
        let a = sealer.seal(&cipher(), 1, &rec());
        let b = sealer.seal(&cipher(), 1, &rec());
        assert_ne!(a[NONCE_AT..HEADER_LEN], b[NONCE_AT..HEADER_LEN]);
        assert_ne!(a, b);
        let other_epoch = Sealer::new(8).seal(&cipher(), 1, &rec());
        assert_ne!(a[NONCE_AT..HEADER_LEN], other_epoch[NONCE_AT..HEADER_LEN]);

        let mut root = Sealer::new(9);
        let mut first = root.split_off(2);
        let mut second = root.split_off(1);
        let nonces: Vec<Vec<u8>> = [
            first.seal(&cipher(), 1, &rec()),
            first.seal(&cipher(), 1, &rec()),
            second.seal(&cipher(), 1, &rec()),
            root.seal(&cipher(), 1, &rec()),
        ]
        .iter()
        .map(|sealed| sealed[NONCE_AT..HEADER_LEN].to_vec())
        .collect();
        let distinct: std::collections::HashSet<_> = nonces.iter().collect();
        assert_eq!(distinct.len(), 4);
    }

    #[test]
    #[should_panic(expected = "more than its share")]
    fn a_split_sealer_stops_at_its_share() {
        let mut part = Sealer::new(1).split_off(1);
        part.seal(&cipher(), 1, &rec());
        part.seal(&cipher(), 1, &rec());
    }

    #[test]
    fn any_flipped_bit_or_moved_record_fails() {
        let bytes = Sealer::new(1).seal(&cipher(), 9, &rec());
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
        let other = Aes256GcmSiv::new(&[4u8; 32].into());
        assert!(open(&other, 9, &bytes).is_err());
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
