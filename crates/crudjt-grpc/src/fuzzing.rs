//! The entry point for the `grpc_handlers` fuzz target in `fuzz/` and for
//! the corpus smoke test: arbitrary bytes as the body of a
//! `token.TokenService` request, served by [`Master`] from a real store.
//!
//! Input layout: the first byte picks the RPC (its value modulo 4: create,
//! read, update, delete), the rest is the protobuf request. A token field
//! of `@` followed by at most one byte stands for a token made just before
//! the call, so that inputs reach live records; the byte picks its limits.
//! Everything an input makes is deleted after it, so the store holds no
//! live token between inputs and any other token text must find nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crudjt::{Config, Limits, SecretKey, Store, validate_map};
use prost::Message;
use tokio::runtime::Runtime;
use tonic::{Code, Request, Status};

use crate::proto::token::token_service_server::TokenService;
use crate::proto::token::{
    CreateTokenRequest, DeleteTokenRequest, ReadTokenRequest, UpdateTokenRequest,
};
use crate::service::{Master, NIL};

/// The data of a token made for a placeholder: `{"fuzz": 1}`.
pub const PLACEHOLDER_DATA: &[u8] = b"\x81\xa4fuzz\x01";

/// A master over a store of its own, fed one request at a time.
pub struct Handlers {
    // Fields drop in order: the master's store before the runtime.
    master: Master,
    store: Arc<Store>,
    runtime: Runtime,
}

/// The RPC an input calls, with its placeholder replaced.
enum Call {
    Create(CreateTokenRequest),
    Read(ReadTokenRequest),
    Update(UpdateTokenRequest),
    Delete(DeleteTokenRequest),
}

impl Handlers {
    /// Opens a store in `dir` with a fixed key and default options.
    ///
    /// # Panics
    ///
    /// When the store or the runtime cannot start.
    pub fn open(dir: &Path) -> Handlers {
        let key = SecretKey::from_bytes(vec![0x67; 32]).expect("32 bytes is a valid key length");
        let store = Arc::new(Store::open(Config::new(key).path(dir)).expect("the store opens"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("the runtime starts");
        Handlers {
            master: Master::new(store.clone()),
            store,
            runtime,
        }
    }

    /// Serves `data` as one request (see the module docs) and checks the
    /// outcome: the call fails only with `INVALID_ARGUMENT` and exactly
    /// when the store's own checks refuse the request, and what it changed
    /// reads back.
    pub fn run(&self, data: &[u8]) {
        let Some((&rpc, body)) = data.split_first() else {
            return;
        };
        let mut made = Vec::new();
        if let Some(call) = self.decode(rpc, body, &mut made) {
            self.check(call, &mut made);
        }
        for token in made {
            let _ = self.store.delete(&token);
        }
    }

    fn decode(&self, rpc: u8, body: &[u8], made: &mut Vec<String>) -> Option<Call> {
        let mut stand_in = |token: &mut String| {
            if let Some(profile) = placeholder(token) {
                *token = self.make(profile);
                made.push(token.clone());
            }
        };
        Some(match rpc % 4 {
            0 => Call::Create(CreateTokenRequest::decode(body).ok()?),
            1 => {
                let mut request = ReadTokenRequest::decode(body).ok()?;
                stand_in(&mut request.token);
                Call::Read(request)
            }
            2 => {
                let mut request = UpdateTokenRequest::decode(body).ok()?;
                stand_in(&mut request.token);
                Call::Update(request)
            }
            _ => {
                let mut request = DeleteTokenRequest::decode(body).ok()?;
                stand_in(&mut request.token);
                Call::Delete(request)
            }
        })
    }

    /// Makes a token for a placeholder, with limits picked by `profile`.
    fn make(&self, profile: u8) -> String {
        let limits = match profile % 4 {
            0 => Limits::new(None, None),
            1 => Limits::new(Some(3600), None),
            2 => Limits::new(None, Some(1)),
            _ => Limits::new(Some(60), Some(2)),
        };
        let limits = limits.expect("the profiles' limits are valid");
        let token = self.store.create_packed(PLACEHOLDER_DATA, limits);
        token.expect("a placeholder token is made").into()
    }

    fn check(&self, call: Call, made: &mut Vec<String>) {
        let master = &self.master;
        match call {
            Call::Create(request) => {
                let valid = self.valid_data(&request.packed_data)
                    && Limits::from_signed(request.ttl.into(), request.silence_read.into()).is_ok();
                let (data, ttl) = (request.packed_data.clone(), request.ttl);
                let since = Instant::now();
                let reply = self.block_on(master.create_token(Request::new(request)));
                assert_eq!(reply.is_ok(), valid, "create: {reply:?}");
                if let Ok(reply) = reply {
                    made.push(reply.token.clone());
                    assert_eq!(reply.token.len(), crudjt::TOKEN_LEN);
                    self.reads_back(&reply.token, &data, ttl, since);
                }
            }
            Call::Read(request) => {
                let live = made.contains(&request.token);
                let token = request.token.clone();
                let reply = self.block_on(master.read_token(Request::new(request)));
                assert_eq!(reply.is_ok(), !token.is_empty(), "read: {reply:?}");
                if let Ok(reply) = reply {
                    if live {
                        assert!(reply.packed_data.ends_with(PLACEHOLDER_DATA));
                    } else {
                        assert_eq!(reply.packed_data, [NIL], "only a made token is found");
                    }
                }
            }
            Call::Update(request) => {
                let live = made.contains(&request.token);
                let valid = !request.token.is_empty()
                    && self.valid_data(&request.packed_data)
                    && Limits::from_signed(request.ttl.into(), request.silence_read.into()).is_ok();
                let (token, data) = (request.token.clone(), request.packed_data.clone());
                let (ttl, since) = (request.ttl, Instant::now());
                let reply = self.block_on(master.update_token(Request::new(request)));
                assert_eq!(reply.is_ok(), valid, "update: {reply:?}");
                if let Ok(reply) = reply {
                    assert_eq!(reply.result, live, "only a made token is updated");
                    if live {
                        self.reads_back(&token, &data, ttl, since);
                    }
                }
            }
            Call::Delete(request) => {
                let live = made.contains(&request.token);
                let token = request.token.clone();
                let reply = self.block_on(master.delete_token(Request::new(request)));
                assert_eq!(reply.is_ok(), !token.is_empty(), "delete: {reply:?}");
                if let Ok(reply) = reply {
                    assert_eq!(reply.result, live, "only a made token is deleted");
                    if live {
                        assert_eq!(self.read(&token), [NIL], "a deleted token is gone");
                    }
                }
            }
        }
    }

    fn valid_data(&self, packed: &[u8]) -> bool {
        validate_map(packed, self.store.max_data_size()).is_ok()
    }

    /// Checks that `token` reads back `data`, written by a call that began
    /// at `since` with a lifetime of `ttl` seconds: it may be gone only if
    /// that lifetime has passed, as on a machine slow enough.
    fn reads_back(&self, token: &str, data: &[u8], ttl: i64, since: Instant) {
        let read = self.read(token);
        if read == [NIL] {
            // The store's clock counts whole milliseconds.
            let lived = since.elapsed() + Duration::from_millis(1);
            let expired = u64::try_from(ttl).is_ok_and(|ttl| lived >= Duration::from_secs(ttl));
            assert!(
                expired,
                "a token written {lived:?} ago with ttl {ttl} is gone"
            );
        } else {
            assert!(read.ends_with(data), "a token reads back the data written");
        }
    }

    /// Reads `token` through the service; its packed result.
    fn read(&self, token: &str) -> Vec<u8> {
        let request = Request::new(ReadTokenRequest {
            token: token.into(),
        });
        let reply = self.block_on(self.master.read_token(request));
        reply
            .expect("a read of a non-empty token succeeds")
            .packed_data
    }

    /// Runs a handler; a failure must be the caller's mistake.
    fn block_on<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Status> {
        let reply = self.runtime.block_on(call);
        if let Err(status) = &reply {
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        }
        reply.map(tonic::Response::into_inner)
    }
}

/// The limits profile of a placeholder token field: `@` and at most one
/// more byte.
fn placeholder(token: &str) -> Option<u8> {
    match token.as_bytes() {
        [b'@'] => Some(0),
        [b'@', profile] => Some(*profile),
        _ => None,
    }
}
