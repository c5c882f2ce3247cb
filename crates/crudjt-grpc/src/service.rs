//! `token.TokenService` and `crudjt.admin.v1.Admin` on top of a store.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crudjt::{Durability, Limits, Store};
use tonic::{Request, Response, Status};

use crate::busy::Activity;
use crate::proto::admin::admin_server::Admin;
use crate::proto::admin::{KeyUsage, StatsRequest, StatsResponse};
use crate::proto::token::token_service_server::TokenService;
use crate::proto::token::{
    CreateTokenRequest, CreateTokenResponse, DeleteTokenRequest, DeleteTokenResponse,
    ReadTokenRequest, ReadTokenResponse, UpdateTokenRequest, UpdateTokenResponse,
};
use crate::status::to_status;

/// The MessagePack nil byte: `ReadTokenResponse.packed_data` when the
/// token is not found.
pub(crate) const NIL: u8 = 0xc0;

/// The master's gRPC services, sharing one store.
#[derive(Clone)]
pub struct Master {
    store: Arc<Store>,
    /// Told of every call when the master busy-polls.
    activity: Option<Arc<Activity>>,
}

impl Master {
    /// Serves `store`.
    pub fn new(store: Arc<Store>) -> Master {
        Master {
            store,
            activity: None,
        }
    }

    /// Keeps a runtime worker polling for `window` after each call (see
    /// [`ServeOptions::busy_poll`](crate::ServeOptions::busy_poll)). Must
    /// be called within a tokio runtime.
    pub(crate) fn busy_poll(mut self, window: Duration) -> Master {
        self.activity = (!window.is_zero()).then(|| Arc::new(Activity::start(window)));
        self
    }

    /// Runs a store call. A call that will wait, for its commit under
    /// `Always` durability or for the flusher under back-pressure, runs on
    /// the blocking pool instead of stalling a runtime worker; any other
    /// returns from memory in microseconds and runs in place.
    async fn call<T: Send + 'static>(
        &self,
        rpc: &'static str,
        op: impl FnOnce(&Store) -> Result<T, crudjt::Error> + Send + 'static,
    ) -> Result<T, Status> {
        self.record_activity();
        let waits = self.store.durability() == Durability::Always || self.store.is_backpressured();
        let result = if waits {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || op(&store))
                .await
                .map_err(|_| Status::internal("the store call was cancelled"))?
        } else {
            op(&self.store)
        };
        // Again at the reply, so that the polling window counts from it.
        self.record_activity();
        result.map_err(|err| to_status(rpc, err))
    }

    fn record_activity(&self) {
        if let Some(activity) = &self.activity {
            activity.call();
        }
    }
}

fn limits(ttl: i64, silence_read: i64) -> Result<Limits, Status> {
    Limits::from_signed(ttl.into(), silence_read.into()).map_err(|err| to_status("limits", err))
}

fn non_empty(token: &str) -> Result<(), Status> {
    if token.is_empty() {
        return Err(to_status("token", crudjt::Error::EmptyToken));
    }
    Ok(())
}

#[tonic::async_trait]
impl TokenService for Master {
    async fn create_token(
        &self,
        request: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let request = request.into_inner();
        let limits = limits(request.ttl, request.silence_read)?;
        let token = self
            .call("CreateToken", move |store| {
                store.create_packed(&request.packed_data, limits)
            })
            .await?;
        tracing::debug!(rpc = "CreateToken", "ok");
        Ok(Response::new(CreateTokenResponse {
            token: token.into(),
        }))
    }

    async fn read_token(
        &self,
        request: Request<ReadTokenRequest>,
    ) -> Result<Response<ReadTokenResponse>, Status> {
        let token = request.into_inner().token;
        non_empty(&token)?;
        let entry = self
            .call("ReadToken", move |store| store.read_packed(&token))
            .await?;
        tracing::debug!(rpc = "ReadToken", found = entry.is_some(), "ok");
        let packed_data = entry.map_or_else(|| vec![NIL], |entry| entry.to_packed_result());
        Ok(Response::new(ReadTokenResponse { packed_data }))
    }

    async fn update_token(
        &self,
        request: Request<UpdateTokenRequest>,
    ) -> Result<Response<UpdateTokenResponse>, Status> {
        let request = request.into_inner();
        non_empty(&request.token)?;
        let limits = limits(request.ttl, request.silence_read)?;
        let result = self
            .call("UpdateToken", move |store| {
                store.update_packed(&request.token, &request.packed_data, limits)
            })
            .await?;
        tracing::debug!(rpc = "UpdateToken", result, "ok");
        Ok(Response::new(UpdateTokenResponse { result }))
    }

    async fn delete_token(
        &self,
        request: Request<DeleteTokenRequest>,
    ) -> Result<Response<DeleteTokenResponse>, Status> {
        let token = request.into_inner().token;
        non_empty(&token)?;
        let result = self
            .call("DeleteToken", move |store| store.delete(&token))
            .await?;
        tracing::debug!(rpc = "DeleteToken", result, "ok");
        Ok(Response::new(DeleteTokenResponse { result }))
    }
}

fn unix_ms(at: std::time::SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tonic::async_trait]
impl Admin for Master {
    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        Ok(Response::new(stats_message(&self.store)))
    }
}

/// A snapshot of `store`'s counters as the `Admin/Stats` reply carries
/// them, for front ends that report stats in the same shape.
pub fn stats_message(store: &Store) -> StatsResponse {
    let stats = store.stats();
    let flush = stats.last_flush;
    let sweep = stats.last_sweep;
    StatsResponse {
        tokens: stats.tokens,
        file_bytes: stats.file_bytes,
        pending_writes: stats.pending_writes,
        pending_bytes: stats.pending_bytes,
        cached_records: stats.cached_records,
        durability: format!("{:?}", stats.durability).to_lowercase(),
        flushes: stats.flushes,
        flush_failures: stats.flush_failures,
        last_flush_unix_ms: flush.map_or(0, |f| unix_ms(f.at)),
        last_flush_micros: flush.map_or(0, |f| f.duration.as_micros() as u64),
        last_flush_records: flush.map_or(0, |f| f.records),
        last_sweep_unix_ms: sweep.map_or(0, |s| unix_ms(s.at)),
        last_sweep_micros: sweep.map_or(0, |s| s.duration.as_micros() as u64),
        last_sweep_removed: sweep.map_or(0, |s| s.removed),
        max_data_size: store.max_data_size() as u32,
        last_sweep_resealed: sweep.map_or(0, |s| s.resealed),
        last_sweep_dropped: sweep.map_or(0, |s| s.dropped),
        keys: stats
            .keys
            .iter()
            .map(|key| KeyUsage {
                number: key.number.into(),
                current: key.current,
                given: key.given,
                tokens: key.tokens,
                sealed: key.sealed,
            })
            .collect(),
    }
}
