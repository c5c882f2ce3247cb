//! Errors of the store, one enum for opening and one for the token operations.

use std::path::PathBuf;
use std::sync::Arc;

/// Why a call on an open [`Store`](crate::Store) failed.
///
/// The first group of variants are the caller's mistakes (see
/// [`Error::is_invalid_argument`]); the rest are failures of the store itself.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token string was empty.
    #[error("token must not be empty")]
    EmptyToken,
    /// The packed data is larger than the store's limit.
    #[error("token data is {size} bytes, the limit is {limit}")]
    DataTooLarge {
        /// Size of the MessagePack encoding.
        size: usize,
        /// The store's `max_data_size`.
        limit: usize,
    },
    /// The data is valid MessagePack but not a map.
    #[error("token data must be a map, got {found}")]
    NotAMap {
        /// What the top-level value was instead.
        found: &'static str,
    },
    /// The data is not well-formed MessagePack, or uses a type the store
    /// does not keep (extension types).
    #[error("token data is not valid MessagePack: {reason}")]
    InvalidData {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `ttl` or `silence_read` of zero or less.
    #[error("{name} must be at least 1 (or absent for no limit), got {value}")]
    InvalidLimit {
        /// `"ttl"` or `"silence_read"`.
        name: &'static str,
        /// The rejected value.
        value: i128,
    },
    /// A Rust value could not be encoded as MessagePack.
    #[error("token data could not be encoded as MessagePack")]
    Encode(#[source] Arc<rmp_serde::encode::Error>),
    /// Stored data could not be decoded into the type the caller asked for.
    #[error("token data could not be decoded into the requested type")]
    Decode(#[source] Arc<rmp_serde::decode::Error>),
    /// A record on disk failed authentication: the file was damaged or edited.
    #[error("record {id} failed authentication: the store file is damaged or was edited")]
    Corrupt {
        /// The record id (not secret: ids are stored in the clear).
        id: u64,
    },
    /// The B-tree file could not be read or written.
    #[error("store storage failed")]
    Storage(#[source] Arc<redb::Error>),
    /// Every record id has been used; the store cannot create more tokens.
    #[error("store has used up its record ids")]
    IdsExhausted,
    /// The store was closed.
    #[error("store is closed")]
    Closed,
}

impl Error {
    /// Whether the caller sent something the store refuses (a bad token,
    /// data or limit), as opposed to a failure of the store itself.
    ///
    /// Front ends map the first to `INVALID_ARGUMENT` or `ValueError`.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            Error::EmptyToken
                | Error::DataTooLarge { .. }
                | Error::NotAMap { .. }
                | Error::InvalidData { .. }
                | Error::InvalidLimit { .. }
                | Error::Encode(_)
        )
    }

    pub(crate) fn storage(err: impl Into<redb::Error>) -> Error {
        Error::Storage(Arc::new(err.into()))
    }
}

/// Why [`Store::open`](crate::Store::open) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The secret key is not base64 of 32, 48 or 64 bytes.
    #[error("{0}")]
    InvalidKey(#[from] KeyError),
    /// An option is out of range.
    #[error("{name} is {value}, {expected}")]
    InvalidOption {
        /// The option's name.
        name: &'static str,
        /// The rejected value, as text.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// Another [`Store`](crate::Store), in this process or another, has the
    /// store open.
    #[error("store at {} is already open in another process or handle", path.display())]
    AlreadyOpen {
        /// The store's file.
        path: PathBuf,
    },
    /// The store was made with another secret key.
    #[error("secret key does not match the store at {}", path.display())]
    KeyMismatch {
        /// The store's directory.
        path: PathBuf,
    },
    /// The file is not a crudjt store, or a newer format than this build
    /// reads.
    #[error("{} is not a crudjt store this version can open: {reason}", path.display())]
    Incompatible {
        /// The store's file.
        path: PathBuf,
        /// What did not match.
        reason: Box<str>,
    },
    /// The directory or file could not be created or opened.
    #[error("cannot use store directory {}", path.display())]
    Io {
        /// The directory or file that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The B-tree file could not be opened or initialised.
    #[error("cannot open store file {}", path.display())]
    Storage {
        /// The store's file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: redb::Error,
    },
    /// A background thread could not be started.
    #[error("cannot start the store's background threads")]
    Thread(#[source] std::io::Error),
}

/// Why a secret key was refused. Never contains the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not base64.
    #[error("secret key is not valid base64")]
    NotBase64,
    /// Base64 of the wrong number of bytes.
    #[error("secret key decodes to {0} bytes; it must be 32, 48 or 64 random bytes")]
    WrongLength(usize),
}
