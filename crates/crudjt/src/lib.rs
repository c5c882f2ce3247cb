//! crudjt: a fast, file-backed, encrypted token store for stateful
//! sessions.
//!
//! An application creates a [`Token`] for a small MessagePack map with
//! optional [`Limits`] (a lifetime and a read budget), then reads, updates
//! and deletes it. The [`Store`] keeps records in a redb B-tree keyed by
//! ascending record ids; a token is its record id and 64 random bits,
//! encrypted as one AES block, so it reveals nothing without the key. Data
//! is sealed with AES-256-GCM-SIV, bound to its record id and limits.
//!
//! Writes land in memory and are visible at once; a background flusher
//! commits them in one transaction per interval, or before each call
//! returns with [`Durability::Always`]. Expired records are never returned
//! and are swept from disk through an expiry index.
//!
//! This crate has no transport: the gRPC master, the CLI and the Python
//! package wrap it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod disk;
mod error;
mod flusher;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod key;
mod limits;
mod msgpack;
mod record;
mod shard;
mod stats;
mod store;
mod sweep;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
mod token;

pub use config::{Config, Durability, FILE_NAME, MAX_DATA_SIZE_LIMIT, prepare_store_dir};
pub use error::{Error, KeyError, OpenError};
pub use key::SecretKey;
pub use limits::Limits;
pub use msgpack::{MAX_DEPTH, pack_read_result, validate_map};
pub use stats::{FlushReport, KeyStats, Stats, SweepReport};
pub use store::{Entry, Store};
pub use token::{TOKEN_LEN, Token};
