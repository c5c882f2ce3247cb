//! Entry points for the fuzz targets in `fuzz/` and for the corpus smoke
//! test, over functions that are otherwise private to the crate.
//!
//! Each takes arbitrary bytes, must never panic on them, and asserts the
//! properties its parser promises; an assertion that fails is a finding.
//! The keys are fixed so that the seed corpus can hold real tokens and
//! records made by a store opened with [`secret_key`].

use std::sync::{Arc, OnceLock};

use crate::error::Error;
use crate::key::{Keys, SecretKey};
use crate::msgpack::{self, MAX_DEPTH};
use crate::record::{self, OVERHEAD, Rec, Sealer};
use crate::token::{self, TOKEN_LEN};

/// The record id that [`record`] opens its input as: the first id a new
/// store hands out, so a fresh store's first record is a valid seed.
pub const RECORD_ID: u64 = 0;

/// The secret key the fuzz targets derive their subkeys from.
pub fn secret_key() -> SecretKey {
    SecretKey::from_bytes(vec![0x66; 32]).expect("32 bytes is a valid key length")
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys::derive(&secret_key()))
}

/// Opens `data` as a token's text. Whatever opens must be the one
/// spelling of its block, so that a token cannot be rewritten into another
/// text that finds the same record. Also seals the first 16 bytes as a
/// token and checks that it opens to the same id and random half.
///
/// Returns whether `data` opened as a token.
pub fn token(data: &[u8]) -> bool {
    let cipher = &keys().token;
    let text = String::from_utf8_lossy(data);
    let opened = token::open(cipher, &text);
    if let Some((id, random)) = opened {
        assert_eq!(text.len(), TOKEN_LEN);
        assert_eq!(token::seal(cipher, id, random).as_str(), text);
    }
    let mut block = [0u8; 16];
    let n = data.len().min(16);
    block[..n].copy_from_slice(&data[..n]);
    let id = u64::from_be_bytes(block[..8].try_into().expect("8 bytes"));
    let random = u64::from_be_bytes(block[8..].try_into().expect("8 bytes"));
    let sealed = token::seal(cipher, id, random);
    assert_eq!(token::open(cipher, sealed.as_str()), Some((id, random)));
    opened.is_some()
}

/// Opens `data` as the on-disk bytes of record [`RECORD_ID`]. Only a
/// record sealed under the fuzz key (a seed) may open, and what opens must
/// agree with its clear header. Then seals the input as a record's data,
/// with limits taken from its first bytes, and checks that it opens to the
/// same record and that a flipped bit or another id fails.
///
/// Returns whether `data` opened as a record.
pub fn record(data: &[u8]) -> bool {
    let cipher = &keys().record;
    let expiry = record::expiry_of(data);
    let opened = record::open(cipher, RECORD_ID, data);
    match &opened {
        Ok(rec) => {
            assert_eq!(Some(rec.data.len()), record::data_len(data));
            assert_eq!(
                Some(rec.token_key),
                record::key_numbers(data).map(|k| k.token)
            );
            assert_eq!(rec.expires_at, expiry);
            assert_ne!(rec.reads_left, Some(0));
            assert!(record::open(cipher, RECORD_ID + 1, data).is_err());
        }
        Err(err) => assert!(matches!(err, Error::Corrupt { id: RECORD_ID })),
    }

    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        let tail = data.get(at..).unwrap_or_default();
        let n = tail.len().min(8);
        bytes[..n].copy_from_slice(&tail[..n]);
        u64::from_le_bytes(bytes)
    };
    let flags = data.first().copied().unwrap_or(0);
    let rec = Rec {
        random: word(1),
        token_key: word(41) as u16,
        expires_at: (flags & 1 != 0).then(|| word(9)),
        reads_left: (flags & 2 != 0).then(|| word(17).max(1)),
        data: Arc::from(data),
    };
    let id = word(25);
    let seal_key = (word(41) >> 16) as u16;
    let sealed = Sealer::new(u32::from(flags)).seal(cipher, seal_key, id, &rec);
    assert_eq!(sealed.len(), data.len() + OVERHEAD);
    assert_eq!(record::expiry_of(&sealed), rec.expires_at);
    let numbers = record::key_numbers(&sealed).expect("a sealed record has key numbers");
    assert_eq!((numbers.token, numbers.seal), (rec.token_key, seal_key));
    let back = record::open(cipher, id, &sealed).expect("a sealed record opens");
    assert_eq!(back.random, rec.random);
    assert_eq!(back.token_key, rec.token_key);
    assert_eq!(back.expires_at, rec.expires_at);
    assert_eq!(back.reads_left, rec.reads_left);
    assert_eq!(back.data, rec.data);
    assert!(record::open(cipher, id ^ 1, &sealed).is_err());
    let mut bent = sealed;
    let at = usize::try_from(word(33)).unwrap_or(0) % bent.len();
    bent[at] ^= 1 << (flags % 8);
    assert!(record::open(cipher, id, &bent).is_err());
    opened.is_ok()
}

/// Validates `data` as token data under a few size limits, and checks the
/// verdict against an independent decoder: what is accepted decodes with
/// `rmpv` as one map of supported values no deeper than [`MAX_DEPTH`] that
/// uses every byte, and such a map is accepted; a valid map also packs into
/// a read result that decodes back to it.
///
/// Returns whether `data` is valid token data.
pub fn msgpack(data: &[u8]) -> bool {
    let verdict = msgpack::validate_map(data, usize::MAX);
    for limit in [0, 1, 256, data.len().saturating_sub(1), data.len()] {
        match msgpack::validate_map(data, limit) {
            Err(Error::DataTooLarge { size, limit: l }) => {
                assert!(size == data.len() && l == limit && size > limit);
            }
            other => {
                assert!(data.len() <= limit);
                assert_eq!(format!("{other:?}"), format!("{verdict:?}"));
            }
        }
    }

    // rmpv spends two units of depth per container and up to three on a
    // leaf: enough for every map the store accepts, and a bound on the
    // recursion that any deeper input would cost.
    let mut rest = data;
    let decoded = rmpv::decode::read_value_with_max_depth(&mut rest, 2 * MAX_DEPTH + 16);
    let supported = match &decoded {
        Ok(value) => rest.is_empty() && value.is_map() && is_supported(value, 1),
        Err(_) => false,
    };
    // rmpv reads the reserved marker 0xc1 as nil; the store refuses it.
    let reserved = data.contains(&0xc1)
        && matches!(verdict, Err(Error::InvalidData { reason }) if reason.contains("0xc1"));
    match (&verdict, supported) {
        (Ok(()), true) | (Err(_), false) => {}
        (Err(_), true) if reserved => {}
        (Ok(()), false) => panic!(
            "accepted, but rmpv reads no supported map in it ({:?}, {} bytes left)",
            decoded.as_ref().err(),
            rest.len()
        ),
        (Err(err), true) => panic!("refused ({err}), but rmpv reads one supported map"),
    }
    if let (Ok(()), Ok(value)) = (&verdict, decoded) {
        let packed = msgpack::pack_read_result(data, Some(1), None);
        let mut rest = &packed[..];
        let result = rmpv::decode::read_value(&mut rest).expect("a read result decodes");
        assert!(rest.is_empty());
        // A NaN is not equal to itself, so compare encodings.
        assert_eq!(encode(&result["data"]), encode(&value));
    }
    verdict.is_ok()
}

fn encode(value: &rmpv::Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value).expect("writing to a Vec cannot fail");
    bytes
}

/// Whether `value`, at nesting level `depth` (the top-level map is 1), is
/// one the store keeps: no extension types, UTF-8 strings, and no array or
/// map deeper than [`MAX_DEPTH`].
fn is_supported(value: &rmpv::Value, depth: usize) -> bool {
    use rmpv::Value;
    match value {
        Value::Ext(..) => false,
        Value::String(text) => text.is_str(),
        Value::Array(items) => {
            depth <= MAX_DEPTH && items.iter().all(|item| is_supported(item, depth + 1))
        }
        Value::Map(entries) => {
            depth <= MAX_DEPTH
                && entries
                    .iter()
                    .all(|(k, v)| is_supported(k, depth + 1) && is_supported(v, depth + 1))
        }
        _ => true,
    }
}
