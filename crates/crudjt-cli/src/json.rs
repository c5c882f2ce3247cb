//! JSON on the command line and stdout, MessagePack on the wire.
//!
//! Data given as JSON must be an object; it is packed with rmp-serde, keys
//! in the order given. Read results come back from MessagePack, which can
//! say more than JSON, so the conversion is fixed and documented in
//! `crudjt read --help` ([`READ_HELP`]):
//!
//! 1. Bytes become an array of integers 0-255: it needs no agreement on a
//!    base64 alphabet and cannot be mistaken for a string.
//! 2. Map keys that are not strings become their own JSON text (`1`,
//!    `true`, `null`, `[1,2]`), since JSON keys can only be strings.
//! 3. NaN and the infinities, which JSON cannot write, become `null`.
//! 4. Strings that are not valid UTF-8 get U+FFFD in place of bad bytes.
//! 5. Extension values, which the store refuses and so never returns, would
//!    become `{"ext_type": n, "data": [bytes]}`.

use std::io::Read;

use crudjt::Entry;
use rmpv::Value as Msgpack;
use serde_json::{Map, Number, Value as Json};

use crate::exit::Invalid;

/// How read results are shown, for `crudjt read --help`.
pub const READ_HELP: &str = "\
Output: one line of JSON, {\"metadata\": {\"ttl\": 3599, \"silence_read\": 2}, \"data\": {...}},
where metadata holds only the limits the token has and is absent when it has none:
ttl is the remaining lifetime in seconds, silence_read the reads left after this one.
A missing token prints null.

MessagePack that JSON cannot say directly: bytes print as an array of integers
0-255; map keys that are not strings print as their JSON text (1, true, null);
NaN and infinities print as null.";

/// Parses the data argument (`-` reads it from standard input) and packs it
/// as a MessagePack map.
///
/// # Errors
///
/// [`Invalid`] when the text is not JSON or not an object; I/O errors
/// reading standard input.
pub fn pack_object(argument: &str) -> anyhow::Result<Vec<u8>> {
    let text = if argument == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        argument.to_owned()
    };
    let value: Json = serde_json::from_str(&text)
        .map_err(|err| Invalid(format!("token data is not valid JSON: {err}")))?;
    if !value.is_object() {
        let found = match value {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        };
        return Err(Invalid(format!("token data must be a JSON object, got {found}")).into());
    }
    // A JSON value always encodes: its maps have string keys and its
    // numbers fit MessagePack's integers and doubles.
    Ok(rmp_serde::to_vec_named(&value)?)
}

/// The read result as JSON, shaped like the wire contract's result map.
///
/// # Errors
///
/// When the master's data is not MessagePack, which a well-behaved master
/// never sends.
pub fn read_result(entry: &Entry<Vec<u8>>) -> anyhow::Result<Json> {
    let data = rmpv::decode::read_value(&mut entry.data.as_slice())
        .map_err(|err| anyhow::anyhow!("the master sent data that is not MessagePack: {err}"))?;
    let mut result = Map::new();
    let mut metadata = Map::new();
    if let Some(ttl) = entry.ttl {
        metadata.insert("ttl".into(), ttl.into());
    }
    if let Some(silence_read) = entry.silence_read {
        metadata.insert("silence_read".into(), silence_read.into());
    }
    if !metadata.is_empty() {
        result.insert("metadata".into(), Json::Object(metadata));
    }
    result.insert("data".into(), to_json(data));
    Ok(Json::Object(result))
}

/// Converts one MessagePack value by the rules in the module docs.
pub fn to_json(value: Msgpack) -> Json {
    match value {
        Msgpack::Nil => Json::Null,
        Msgpack::Boolean(b) => Json::Bool(b),
        Msgpack::Integer(int) => match (int.as_u64(), int.as_i64()) {
            (Some(u), _) => u.into(),
            (None, Some(i)) => i.into(),
            // rmpv integers are always a u64 or an i64.
            (None, None) => Json::Null,
        },
        // Going through the f32's own shortest text keeps 0.1 as 0.1
        // rather than its widened 0.10000000149011612.
        Msgpack::F32(f) => float(f.to_string().parse().unwrap_or(f64::NAN)),
        Msgpack::F64(f) => float(f),
        Msgpack::String(s) => Json::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Msgpack::Binary(bytes) => bytes_to_json(&bytes),
        Msgpack::Array(items) => Json::Array(items.into_iter().map(to_json).collect()),
        Msgpack::Map(entries) => Json::Object(
            entries
                .into_iter()
                .map(|(key, value)| (key_text(key), to_json(value)))
                .collect(),
        ),
        Msgpack::Ext(kind, bytes) => {
            let mut ext = Map::new();
            ext.insert("ext_type".into(), kind.into());
            ext.insert("data".into(), bytes_to_json(&bytes));
            Json::Object(ext)
        }
    }
}

fn float(f: f64) -> Json {
    Number::from_f64(f).map_or(Json::Null, Json::Number)
}

fn bytes_to_json(bytes: &[u8]) -> Json {
    Json::Array(bytes.iter().map(|&b| b.into()).collect())
}

fn key_text(key: Msgpack) -> String {
    match key {
        Msgpack::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => to_json(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(data: Vec<u8>, ttl: Option<u64>, silence_read: Option<u64>) -> Entry<Vec<u8>> {
        Entry {
            data,
            ttl,
            silence_read,
        }
    }

    #[test]
    fn packs_objects_in_the_given_key_order() {
        let packed = pack_object(r#"{"b": 1, "a": [true, null, -2, 1.5]}"#).unwrap();
        let back = to_json(rmpv::decode::read_value(&mut packed.as_slice()).unwrap());
        assert_eq!(back.to_string(), r#"{"b":1,"a":[true,null,-2,1.5]}"#);
    }

    #[test]
    fn refuses_non_objects_and_bad_json() {
        for (text, says) in [
            ("[1]", "got an array"),
            ("\"s\"", "got a string"),
            ("null", "got null"),
            ("{", "not valid JSON"),
        ] {
            let err = pack_object(text).unwrap_err();
            assert!(err.is::<Invalid>());
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    #[test]
    fn read_results_carry_metadata_only_when_set() {
        let data = rmp_serde::to_vec_named(&serde_json::json!({"user": 42})).unwrap();
        let with = read_result(&entry(data.clone(), Some(3600), Some(2))).unwrap();
        assert_eq!(
            with.to_string(),
            r#"{"metadata":{"ttl":3600,"silence_read":2},"data":{"user":42}}"#
        );
        let only_ttl = read_result(&entry(data.clone(), Some(5), None)).unwrap();
        assert_eq!(only_ttl["metadata"].to_string(), r#"{"ttl":5}"#);
        let without = read_result(&entry(data, None, None)).unwrap();
        assert_eq!(without.to_string(), r#"{"data":{"user":42}}"#);
    }

    #[test]
    fn converts_what_json_cannot_say() {
        // A two-byte str whose second byte is not UTF-8.
        let bad_utf8 = rmpv::decode::read_value(&mut &[0xa2, b'a', 0xff][..]).unwrap();
        let value = Msgpack::Map(vec![
            (Msgpack::from(1), Msgpack::Binary(vec![0, 255])),
            (Msgpack::Nil, Msgpack::F64(f64::NAN)),
            (Msgpack::Boolean(true), Msgpack::F32(0.1)),
            (Msgpack::from("s"), bad_utf8),
            (Msgpack::from(-3), Msgpack::Ext(5, vec![1])),
            (Msgpack::from(u64::MAX), Msgpack::from(i64::MIN)),
        ]);
        assert_eq!(
            to_json(value).to_string(),
            concat!(
                r#"{"1":[0,255],"null":null,"true":0.1,"s":"a"#,
                "\u{fffd}",
                r#"","#,
                r#""-3":{"ext_type":5,"data":[1]},"#,
                r#""18446744073709551615":-9223372036854775808}"#
            )
        );
    }
}
