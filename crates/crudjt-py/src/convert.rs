//! Python values to MessagePack and back, without a Python-side codec.
//!
//! Encoding follows `msgpack.packb` with its defaults, which is what
//! crudjt 1.0.x sends, so a map packs to the same bytes and meets the size
//! limit at the same point: `str` as str, `bytes` and `bytearray` as bin,
//! lists and tuples as arrays, ints in their smallest form, floats as
//! float 64. Decoding gives `str`, `bytes`, `list` and `dict` back; a map
//! key that is an array comes back as a tuple, since a list is not
//! hashable.

use crudjt::MAX_DEPTH;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};
use pyo3::{IntoPyObjectExt, intern};
use rmp::Marker;

use crate::args::type_name;
use crate::errors::InternalError;

/// Packs `data`, which must be a dict, as a MessagePack map.
///
/// # Errors
///
/// `ValueError` for a non-dict, a value MessagePack cannot carry, an int
/// outside 64 bits, or nesting deeper than the store accepts.
pub fn pack(data: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let Ok(map) = data.cast::<PyDict>() else {
        return Err(PyValueError::new_err(format!(
            "token data must be a dict, got {}",
            type_name(data)
        )));
    };
    let mut out = Vec::with_capacity(128);
    pack_dict(map, &mut out, 1)?;
    Ok(out)
}

fn pack_dict(map: &Bound<'_, PyDict>, out: &mut Vec<u8>, depth: usize) -> PyResult<()> {
    let len = container_len(map.len())?;
    write(rmp::encode::write_map_len(out, len))?;
    for (key, value) in map.iter() {
        pack_value(&key, out, depth)?;
        pack_value(&value, out, depth)?;
    }
    Ok(())
}

fn pack_value(value: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: usize) -> PyResult<()> {
    // Exact types first: they are what session data is made of, and the
    // checks are cheaper than walking the subclass chain.
    if let Ok(text) = value.cast_exact::<PyString>() {
        return pack_str(text, out);
    }
    if value.is_none() {
        out.push(0xc0);
        return Ok(());
    }
    // bool is a subclass of int, so it must be tested first.
    if let Ok(flag) = value.cast::<PyBool>() {
        out.push(if flag.is_true() { 0xc3 } else { 0xc2 });
        return Ok(());
    }
    if let Ok(int) = value.cast::<PyInt>() {
        return pack_int(int, out);
    }
    if let Ok(float) = value.cast::<PyFloat>() {
        return write(rmp::encode::write_f64(out, float.value()));
    }
    if let Ok(text) = value.cast::<PyString>() {
        return pack_str(text, out);
    }
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return pack_bin(bytes.as_bytes(), out);
    }
    if let Ok(bytes) = value.cast::<PyByteArray>() {
        return pack_bin(&bytes.to_vec(), out);
    }
    if depth >= MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "token data nests deeper than {MAX_DEPTH} levels"
        )));
    }
    if let Ok(map) = value.cast::<PyDict>() {
        return pack_dict(map, out, depth + 1);
    }
    if let Ok(list) = value.cast::<PyList>() {
        write(rmp::encode::write_array_len(
            out,
            container_len(list.len())?,
        ))?;
        for item in list.iter() {
            pack_value(&item, out, depth + 1)?;
        }
        return Ok(());
    }
    if let Ok(tuple) = value.cast::<PyTuple>() {
        write(rmp::encode::write_array_len(
            out,
            container_len(tuple.len())?,
        ))?;
        for item in tuple.iter() {
            pack_value(&item, out, depth + 1)?;
        }
        return Ok(());
    }
    Err(PyValueError::new_err(format!(
        "token data cannot hold a value of type {}",
        type_name(value)
    )))
}

fn pack_str(text: &Bound<'_, PyString>, out: &mut Vec<u8>) -> PyResult<()> {
    let text = text.to_str().map_err(|_| {
        PyValueError::new_err("token data holds a str that cannot be encoded as UTF-8")
    })?;
    write(rmp::encode::write_str(out, text))
}

fn pack_bin(bytes: &[u8], out: &mut Vec<u8>) -> PyResult<()> {
    write(rmp::encode::write_bin(out, bytes))
}

fn pack_int(int: &Bound<'_, PyInt>, out: &mut Vec<u8>) -> PyResult<()> {
    if let Ok(v) = int.extract::<i64>() {
        // write_sint picks the smallest form, as msgpack-python does.
        return write(rmp::encode::write_sint(out, v));
    }
    if let Ok(v) = int.extract::<u64>() {
        return write(rmp::encode::write_uint(out, v));
    }
    Err(PyValueError::new_err(
        "token data holds an int outside MessagePack's range (-2**63 to 2**64-1)",
    ))
}

fn container_len(len: usize) -> PyResult<u32> {
    u32::try_from(len)
        .map_err(|_| PyValueError::new_err("token data holds a container with over 2**32 items"))
}

/// Writing into a `Vec` cannot fail; this keeps the signatures honest
/// without an `unwrap`.
fn write<T, E: std::fmt::Display>(result: Result<T, E>) -> PyResult<()> {
    result
        .map(drop)
        .map_err(|e| InternalError::new_err(format!("cannot encode token data: {e}")))
}

/// Whether `map` holds only values that decode back to themselves and
/// that no one can change in place: keys and values of exactly `str`,
/// `int`, `float`, `bool`, `bytes` or `None`. A shallow copy of such a
/// dict is as good as decoding its bytes again.
pub fn is_flat(map: &Bound<'_, PyDict>) -> bool {
    let scalar = |v: &Bound<'_, PyAny>| {
        v.is_exact_instance_of::<PyString>()
            || v.is_exact_instance_of::<PyInt>()
            || v.is_exact_instance_of::<PyFloat>()
            || v.is_exact_instance_of::<PyBool>()
            || v.is_exact_instance_of::<PyBytes>()
            || v.is_none()
    };
    map.iter().all(|(k, v)| scalar(&k) && scalar(&v))
}

/// Builds the read result Python sees: `{'metadata': {...}, 'data': {...}}`,
/// where `metadata` holds only the limits that are set and is left out
/// when neither is.
pub fn read_result<'py>(
    py: Python<'py>,
    ttl: Option<u64>,
    silence_read: Option<u64>,
    data: Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyDict>> {
    let result = PyDict::new(py);
    if ttl.is_some() || silence_read.is_some() {
        let metadata = PyDict::new(py);
        if let Some(ttl) = ttl {
            metadata.set_item(intern!(py, "ttl"), ttl)?;
        }
        if let Some(reads) = silence_read {
            metadata.set_item(intern!(py, "silence_read"), reads)?;
        }
        result.set_item(intern!(py, "metadata"), metadata)?;
    }
    result.set_item(intern!(py, "data"), data)?;
    Ok(result)
}

/// Decodes stored data, a MessagePack map, into a dict; says too whether
/// the dict is flat (see [`is_flat`]).
///
/// # Errors
///
/// `InternalError` when the bytes are not a MessagePack map this module
/// can turn into Python values.
pub fn unpack_map<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<(Bound<'py, PyDict>, bool)> {
    let mut reader = Reader {
        bytes,
        at: 0,
        nested: false,
    };
    let value = reader.value(py, 0)?;
    if reader.at != bytes.len() {
        return Err(malformed("bytes follow the data"));
    }
    let map = value
        .cast_into::<PyDict>()
        .map_err(|_| malformed("it is not a map"))?;
    Ok((map, !reader.nested))
}

fn malformed(reason: &str) -> PyErr {
    InternalError::new_err(format!("stored token data cannot be decoded: {reason}"))
}

/// A cursor over MessagePack bytes. The store validated them on the way
/// in, but a connected process reads what the master sent, so every length
/// is checked again here.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Whether a container was found inside the top-level one.
    nested: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> PyResult<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| malformed("it ends in the middle of a value"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> PyResult<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len8(&mut self) -> PyResult<usize> {
        Ok(usize::from(self.array::<1>()?[0]))
    }

    fn len16(&mut self) -> PyResult<usize> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn len32(&mut self) -> PyResult<usize> {
        usize::try_from(u32::from_be_bytes(self.array()?)).map_err(|_| malformed("too long"))
    }

    fn value<'py>(&mut self, py: Python<'py>, depth: usize) -> PyResult<Bound<'py, PyAny>> {
        let marker = Marker::from_u8(self.array::<1>()?[0]);
        match marker {
            Marker::Null => Ok(py.None().into_bound(py)),
            Marker::True => Ok(PyBool::new(py, true).to_owned().into_any()),
            Marker::False => Ok(PyBool::new(py, false).to_owned().into_any()),
            Marker::FixPos(v) => v.into_bound_py_any(py),
            Marker::FixNeg(v) => v.into_bound_py_any(py),
            Marker::U8 => u8::from_be_bytes(self.array()?).into_bound_py_any(py),
            Marker::U16 => u16::from_be_bytes(self.array()?).into_bound_py_any(py),
            Marker::U32 => u32::from_be_bytes(self.array()?).into_bound_py_any(py),
            Marker::U64 => u64::from_be_bytes(self.array()?).into_bound_py_any(py),
            Marker::I8 => i8::from_be_bytes(self.array()?).into_bound_py_any(py),
            Marker::I16 => i16::from_be_bytes(self.array()?).into_bound_py_any(py),
            Marker::I32 => i32::from_be_bytes(self.array()?).into_bound_py_any(py),
            Marker::I64 => i64::from_be_bytes(self.array()?).into_bound_py_any(py),
            Marker::F32 => f32::from_be_bytes(self.array()?).into_bound_py_any(py),
            Marker::F64 => f64::from_be_bytes(self.array()?).into_bound_py_any(py),
            Marker::FixStr(n) => self.str(py, usize::from(n)),
            Marker::Str8 => {
                let n = self.len8()?;
                self.str(py, n)
            }
            Marker::Str16 => {
                let n = self.len16()?;
                self.str(py, n)
            }
            Marker::Str32 => {
                let n = self.len32()?;
                self.str(py, n)
            }
            Marker::Bin8 => {
                let n = self.len8()?;
                self.bin(py, n)
            }
            Marker::Bin16 => {
                let n = self.len16()?;
                self.bin(py, n)
            }
            Marker::Bin32 => {
                let n = self.len32()?;
                self.bin(py, n)
            }
            Marker::FixArray(n) => self.list(py, usize::from(n), depth),
            Marker::Array16 => {
                let n = self.len16()?;
                self.list(py, n, depth)
            }
            Marker::Array32 => {
                let n = self.len32()?;
                self.list(py, n, depth)
            }
            Marker::FixMap(n) => self.dict(py, usize::from(n), depth),
            Marker::Map16 => {
                let n = self.len16()?;
                self.dict(py, n, depth)
            }
            Marker::Map32 => {
                let n = self.len32()?;
                self.dict(py, n, depth)
            }
            Marker::Reserved => Err(malformed("it uses the reserved byte 0xc1")),
            _ => Err(malformed("extension types are not supported")),
        }
    }

    fn str<'py>(&mut self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyAny>> {
        let bytes = self.take(n)?;
        let text =
            PyString::from_bytes(py, bytes).map_err(|_| malformed("a string is not UTF-8"))?;
        Ok(text.into_any())
    }

    /// A map key. Short string keys repeat across every token of an
    /// application, so they come from [`KEYS`], hash already computed.
    fn key<'py>(&mut self, py: Python<'py>, depth: usize) -> PyResult<Bound<'py, PyAny>> {
        let len = match self.bytes.get(self.at).map(|&b| Marker::from_u8(b)) {
            Some(Marker::FixStr(n)) => usize::from(n),
            _ => return self.value(py, depth),
        };
        self.at += 1;
        let bytes = self.take(len)?;
        KEYS.get(py, bytes)
    }

    fn bin<'py>(&mut self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyBytes::new(py, self.take(n)?).into_any())
    }

    fn nest(depth: usize) -> PyResult<usize> {
        if depth >= MAX_DEPTH {
            Err(malformed("it nests too deeply"))
        } else {
            Ok(depth + 1)
        }
    }

    fn list<'py>(
        &mut self,
        py: Python<'py>,
        n: usize,
        depth: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.nested |= depth > 0;
        let depth = Self::nest(depth)?;
        // Every item takes at least one byte, so a length beyond the bytes
        // left is a lie; refusing it early keeps a hostile reply from
        // allocating.
        if n > self.bytes.len() - self.at {
            return Err(malformed("it ends in the middle of a value"));
        }
        let list = PyList::empty(py);
        for _ in 0..n {
            list.append(self.value(py, depth)?)?;
        }
        Ok(list.into_any())
    }

    fn dict<'py>(
        &mut self,
        py: Python<'py>,
        n: usize,
        depth: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.nested |= depth > 0;
        let depth = Self::nest(depth)?;
        let dict = PyDict::new(py);
        for _ in 0..n {
            let key = self.key(py, depth)?;
            let key = match key.cast::<PyList>() {
                Ok(list) => list.to_tuple().into_any(),
                Err(_) => key,
            };
            let value = self.value(py, depth)?;
            // A map, or an array holding one, cannot be a dict key.
            dict.set_item(key, value)
                .map_err(|_| malformed("a map key has no Python equivalent"))?;
        }
        Ok(dict.into_any())
    }
}

/// Recently decoded short string keys: a direct-mapped table, so a lookup
/// is one hash and one comparison, and a clash simply replaces the slot.
static KEYS: KeyCache = KeyCache {
    slots: parking_lot::Mutex::new(Vec::new()),
};

const KEY_SLOTS: usize = 512;

/// A key's bytes and the string made from them.
type KeySlot = Option<(Box<[u8]>, Py<PyString>)>;

struct KeyCache {
    slots: parking_lot::Mutex<Vec<KeySlot>>,
}

impl KeyCache {
    fn get<'py>(&self, py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let slot = bytes.iter().fold(0x811c_9dc5_u32, |h, &b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        }) as usize
            % KEY_SLOTS;
        let mut slots = self.slots.lock();
        if slots.is_empty() {
            slots.resize_with(KEY_SLOTS, || None);
        }
        if let Some((key, text)) = &slots[slot]
            && **key == *bytes
        {
            return Ok(text.bind(py).clone().into_any());
        }
        let text =
            PyString::from_bytes(py, bytes).map_err(|_| malformed("a string is not UTF-8"))?;
        // Hashing now stores the hash in the object, for every dict that
        // later takes it as a key.
        text.hash()?;
        slots[slot] = Some((bytes.into(), text.clone().unbind()));
        Ok(text.into_any())
    }
}
