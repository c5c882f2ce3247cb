//! Validation of the MessagePack data a token carries, and the packed form
//! of a read result.
//!
//! The validator walks the bytes without recursion and without decoding
//! into values: it keeps one counter of items still expected per open
//! container, so its work is linear in the input and its memory bounded by
//! [`MAX_DEPTH`].

use crate::error::Error;

/// Deepest nesting of arrays and maps accepted, counting the top-level map.
pub const MAX_DEPTH: usize = 128;

/// Checks that `bytes` is exactly one MessagePack map of supported values
/// (nil, bool, integers, floats, UTF-8 strings, binary, arrays, maps), no
/// deeper than [`MAX_DEPTH`] and no larger than `limit`: the check every
/// create and update makes, for front ends that want to refuse bad data
/// before sending it.
///
/// # Errors
///
/// [`Error::DataTooLarge`], [`Error::NotAMap`] or [`Error::InvalidData`].
pub fn validate_map(bytes: &[u8], limit: usize) -> Result<(), Error> {
    if bytes.len() > limit {
        return Err(Error::DataTooLarge {
            size: bytes.len(),
            limit,
        });
    }
    let mut reader = Reader { bytes, pos: 0 };
    let first = reader.peek().ok_or(Error::InvalidData {
        reason: "it is empty",
    })?;
    if !matches!(first, 0x80..=0x8f | 0xde | 0xdf) {
        return Err(Error::NotAMap {
            found: kind_name(first),
        });
    }
    // Items still expected in each open container, innermost last.
    let mut open: Vec<u64> = Vec::with_capacity(8);
    open.push(1);
    while let Some(remaining) = open.last_mut() {
        if *remaining == 0 {
            open.pop();
            continue;
        }
        *remaining -= 1;
        if let Some(children) = reader.item()? {
            if open.len() > MAX_DEPTH {
                return Err(Error::InvalidData {
                    reason: "it nests deeper than 128 levels",
                });
            }
            open.push(children);
        }
    }
    if reader.pos != bytes.len() {
        return Err(Error::InvalidData {
            reason: "bytes follow the map",
        });
    }
    Ok(())
}

fn kind_name(marker: u8) -> &'static str {
    match marker {
        0x00..=0x7f | 0xcc..=0xd3 | 0xe0..=0xff => "an integer",
        0x90..=0x9f | 0xdc | 0xdd => "an array",
        0xa0..=0xbf | 0xd9..=0xdb => "a string",
        0xc0 => "nil",
        0xc2 | 0xc3 => "a boolean",
        0xc4..=0xc6 => "binary data",
        0xca | 0xcb => "a float",
        _ => "an extension or reserved type",
    }
}

const TRUNCATED: Error = Error::InvalidData {
    reason: "it ends in the middle of a value",
};

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or(TRUNCATED)?;
        let taken = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(taken)
    }

    fn length(&mut self, width: usize) -> Result<usize, Error> {
        let raw = self.take(width)?;
        let mut value = 0usize;
        for &byte in raw {
            value = (value << 8) | usize::from(byte);
        }
        Ok(value)
    }

    fn string(&mut self, len: usize) -> Result<(), Error> {
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(|_| ())
            .map_err(|_| Error::InvalidData {
                reason: "a string is not UTF-8",
            })
    }

    /// Consumes one item's header and any payload. Returns how many child
    /// items follow when the item is an array or map, empty ones included,
    /// so that the caller checks the depth of every container.
    fn item(&mut self) -> Result<Option<u64>, Error> {
        let marker = self.take(1)?[0];
        let container = matches!(marker, 0x80..=0x9f | 0xdc..=0xdf);
        let children = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
            0x80..=0x8f => 2 * u64::from(marker & 0x0f),
            0x90..=0x9f => u64::from(marker & 0x0f),
            0xa0..=0xbf => {
                self.string(usize::from(marker & 0x1f))?;
                0
            }
            0xc4..=0xc6 => {
                let len = self.length(1 << (marker - 0xc4))?;
                self.take(len)?;
                0
            }
            0xca => self.take(4).map(|_| 0)?,
            0xcb => self.take(8).map(|_| 0)?,
            0xcc..=0xcf => self.take(1 << (marker - 0xcc)).map(|_| 0)?,
            0xd0..=0xd3 => self.take(1 << (marker - 0xd0)).map(|_| 0)?,
            0xd9..=0xdb => {
                let len = self.length(1 << (marker - 0xd9))?;
                self.string(len)?;
                0
            }
            0xdc | 0xdd => self.length(2 << (marker - 0xdc))? as u64,
            0xde | 0xdf => 2 * self.length(2 << (marker - 0xde))? as u64,
            0xc1 => {
                return Err(Error::InvalidData {
                    reason: "it uses the reserved byte 0xc1",
                });
            }
            _ => {
                return Err(Error::InvalidData {
                    reason: "extension types are not supported",
                });
            }
        };
        // A container claiming more items than bytes remain is caught when
        // the bytes run out; no allocation depends on the claimed count.
        Ok(container.then_some(children))
    }
}

/// Writes the read result map that the wire contract returns: `{"metadata":
/// {"ttl": .., "silence_read": ..}, "data": <data>}`, where `metadata` holds
/// only the limits that are set and is left out when none is.
pub fn pack_read_result(data: &[u8], ttl: Option<u64>, silence_read: Option<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 40);
    let has_metadata = ttl.is_some() || silence_read.is_some();
    // Writing to a Vec cannot fail.
    let _ = rmp::encode::write_map_len(&mut out, if has_metadata { 2 } else { 1 });
    if has_metadata {
        let _ = rmp::encode::write_str(&mut out, "metadata");
        let count = u32::from(ttl.is_some()) + u32::from(silence_read.is_some());
        let _ = rmp::encode::write_map_len(&mut out, count);
        for (name, value) in [("ttl", ttl), ("silence_read", silence_read)] {
            if let Some(value) = value {
                let _ = rmp::encode::write_str(&mut out, name);
                let _ = rmp::encode::write_uint(&mut out, value);
            }
        }
    }
    let _ = rmp::encode::write_str(&mut out, "data");
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8]) -> Result<(), Error> {
        validate_map(bytes, 1 << 16)
    }

    #[test]
    fn accepts_every_supported_type() {
        let value = rmpv::Value::Map(vec![
            ("nil".into(), rmpv::Value::Nil),
            ("b".into(), true.into()),
            ("i".into(), (-5i64).into()),
            ("u".into(), u64::MAX.into()),
            ("f".into(), 1.5f64.into()),
            ("f32".into(), rmpv::Value::F32(0.5)),
            ("s".into(), "héllo".into()),
            ("bin".into(), rmpv::Value::Binary(vec![0, 1, 2])),
            ("a".into(), rmpv::Value::Array(vec![1.into(), "x".into()])),
            (
                1.into(),
                rmpv::Value::Map(vec![("k".into(), rmpv::Value::Array(vec![]))]),
            ),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        check(&bytes).unwrap();
        check(&[0x80]).unwrap();
    }

    #[test]
    fn refuses_non_maps_garbage_and_trailing_bytes() {
        assert!(matches!(check(&[]), Err(Error::InvalidData { .. })));
        assert!(matches!(
            check(&[0x91, 0x01]),
            Err(Error::NotAMap { found: "an array" })
        ));
        assert!(matches!(
            check(&[0xc0]),
            Err(Error::NotAMap { found: "nil" })
        ));
        assert!(matches!(
            check(&[0x05]),
            Err(Error::NotAMap {
                found: "an integer"
            })
        ));
        assert!(matches!(
            check(&[0x81, 0xa1]),
            Err(Error::InvalidData { .. })
        ));
        assert!(matches!(
            check(&[0x80, 0x00]),
            Err(Error::InvalidData { .. })
        ));
        assert!(matches!(
            check(&[0x81, 0xa1, 0xff, 0x01]),
            Err(Error::InvalidData { .. })
        ));
        assert!(matches!(
            check(&[0x81, 0x01, 0xc1]),
            Err(Error::InvalidData { .. })
        ));
        assert!(matches!(
            check(&[0x81, 0x01, 0xd4, 0x01, 0x02]),
            Err(Error::InvalidData { .. })
        ));
        // A map32 claiming four billion entries fails without allocating.
        assert!(matches!(
            check(&[0xdf, 0xff, 0xff, 0xff, 0xff]),
            Err(Error::InvalidData { .. })
        ));
    }

    #[test]
    fn limits_size_and_depth() {
        assert!(matches!(
            validate_map(&[0x80], 0),
            Err(Error::DataTooLarge { size: 1, limit: 0 })
        ));
        let mut deep = vec![0x81, 0x00];
        deep.extend(std::iter::repeat_n(0x91, MAX_DEPTH));
        deep.push(0x00);
        assert!(matches!(check(&deep), Err(Error::InvalidData { .. })));
        let mut ok = vec![0x81, 0x00];
        ok.extend(std::iter::repeat_n(0x91, MAX_DEPTH - 2));
        ok.push(0x00);
        check(&ok).unwrap();
        // An empty container is a level too: readers that build values,
        // such as the Python package's, refuse one past the limit.
        let empties: [&[u8]; 4] = [&[0x90], &[0x80], &[0xdc, 0, 0], &[0xde, 0, 0]];
        for empty in empties {
            let nested = |arrays| {
                let mut bytes = vec![0x81, 0x00];
                bytes.extend(std::iter::repeat_n(0x91, arrays));
                bytes.extend_from_slice(empty);
                bytes
            };
            check(&nested(MAX_DEPTH - 2)).unwrap();
            assert!(matches!(
                check(&nested(MAX_DEPTH - 1)),
                Err(Error::InvalidData { .. })
            ));
        }
    }

    #[test]
    fn packs_read_results() {
        let data = [0x81, 0xa1, b'a', 0x01];
        let full = pack_read_result(&data, Some(3600), Some(2));
        let value = rmpv::decode::read_value(&mut &full[..]).unwrap();
        assert_eq!(value["metadata"]["ttl"], rmpv::Value::from(3600));
        assert_eq!(value["metadata"]["silence_read"], rmpv::Value::from(2));
        assert_eq!(value["data"]["a"], rmpv::Value::from(1));
        let bare = rmpv::decode::read_value(&mut &pack_read_result(&data, None, None)[..]).unwrap();
        assert_eq!(bare.as_map().unwrap().len(), 1);
        let one = pack_read_result(&data, None, Some(0));
        let one = rmpv::decode::read_value(&mut &one[..]).unwrap();
        assert_eq!(one["metadata"].as_map().unwrap().len(), 1);
    }
}
