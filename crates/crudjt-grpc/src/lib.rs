//! The crudjt master over gRPC: the `token.TokenService` wire contract
//! served from a [`crudjt::Store`], and a Rust client for it.
//!
//! The contract matches the `crudjt` Python package byte for byte, so its
//! SDKs in every language work against [`serve`]. The server also answers
//! `grpc.health.v1.Health`, server reflection, and this project's own
//! `crudjt.admin.v1.Admin` (store stats).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod blocking;
mod busy;
mod client;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod limit;
mod security;
mod serve;
mod service;
mod status;
mod unix;

/// Generated protobuf types and service stubs.
pub mod proto {
    /// The `token` package: crudjt's wire contract.
    #[allow(missing_docs, clippy::all)]
    pub mod token {
        tonic::include_proto!("token");
    }
    /// The `crudjt.admin.v1` package: stats beside the contract.
    #[allow(missing_docs, clippy::all)]
    pub mod admin {
        tonic::include_proto!("crudjt.admin.v1");
    }
    /// Encoded descriptors of both packages, for server reflection.
    pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
}

pub use blocking::BlockingClient;
pub use busy::{MAX_BUSY_POLL, eagerly};
pub use client::{Client, ClientError, Target};
pub use security::{AuthToken, AuthTokenError, Security, ServerTls};
pub use serve::{ServeOptions, Served, serve};
pub use service::{Master, stats_message};
/// gRPC status codes, as [`ClientError::Server`] reports them.
pub use tonic::Code;
pub use unix::PeerRule;
