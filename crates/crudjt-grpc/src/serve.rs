//! Running the master: listeners, health, reflection and a graceful stop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crudjt::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::Router;

use crate::limit::{self, Limit};
use crate::proto::admin::admin_server::AdminServer;
use crate::proto::token::token_service_server::TokenServiceServer;
use crate::security::{AuthToken, RequireToken, ServerTls};
use crate::service::Master;
use crate::unix::{self, PeerRule};

/// Bytes a request may add to its data (token, limits, framing).
const MESSAGE_OVERHEAD: usize = 4096;

/// Where and how the master listens.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServeOptions {
    /// TCP address; `None` to serve only on the Unix socket.
    pub tcp: Option<SocketAddr>,
    /// Unix domain socket path, created with `unix_socket_mode`.
    pub unix_socket: Option<PathBuf>,
    /// The socket file's permission bits; 0600 (owner only) by default.
    pub unix_socket_mode: u32,
    /// Which connecting processes the Unix socket accepts, by their
    /// kernel-reported credentials; everyone the file mode lets in when
    /// `None`.
    pub unix_peers: Option<PeerRule>,
    /// Connections held open at once, over all listeners. Calls on more
    /// fail with `RESOURCE_EXHAUSTED`, saying so, and those connections
    /// are closed within seconds.
    pub max_connections: usize,
    /// Calls one connection may have in flight (HTTP/2 concurrent streams);
    /// a client's further calls wait for its own to finish.
    pub max_concurrent_calls: u32,
    /// TLS for the TCP listener; plain TCP when `None`.
    pub tls: Option<ServerTls>,
    /// A bearer secret every call must present, on every listener.
    pub auth_token: Option<AuthToken>,
    /// How long one runtime worker keeps polling the sockets after a call
    /// instead of sleeping; zero (the default) never busy-polls. Cuts a
    /// sequential round trip by the cost of a wake-up, at the price of up
    /// to one core while calls come at least that often; an idle master
    /// costs nothing. Cut to [`MAX_BUSY_POLL`](crate::MAX_BUSY_POLL).
    pub busy_poll: Duration,
}

impl ServeOptions {
    /// Default for [`ServeOptions::max_connections`].
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
    /// Default for [`ServeOptions::max_concurrent_calls`].
    pub const DEFAULT_MAX_CONCURRENT_CALLS: u32 = 128;

    /// Listen on `127.0.0.1:50051` only, with the default limits.
    pub fn new() -> ServeOptions {
        ServeOptions {
            tcp: Some(SocketAddr::from(([127, 0, 0, 1], 50051))),
            unix_socket: None,
            unix_socket_mode: 0o600,
            unix_peers: None,
            max_connections: ServeOptions::DEFAULT_MAX_CONNECTIONS,
            max_concurrent_calls: ServeOptions::DEFAULT_MAX_CONCURRENT_CALLS,
            tls: None,
            auth_token: None,
            busy_poll: Duration::ZERO,
        }
    }

    /// Sets the TCP address (`None` for no TCP listener).
    pub fn tcp(mut self, addr: Option<SocketAddr>) -> ServeOptions {
        self.tcp = addr;
        self
    }

    /// Sets the Unix socket path.
    pub fn unix_socket(mut self, path: Option<PathBuf>) -> ServeOptions {
        self.unix_socket = path;
        self
    }

    /// Sets the Unix socket's permission bits (only the low 9 are used).
    pub fn unix_socket_mode(mut self, mode: u32) -> ServeOptions {
        self.unix_socket_mode = mode & 0o777;
        self
    }

    /// Accepts on the Unix socket only peers that `rule` allows.
    pub fn unix_peers(mut self, rule: Option<PeerRule>) -> ServeOptions {
        self.unix_peers = rule;
        self
    }

    /// Sets [`ServeOptions::max_connections`] (at least 1).
    pub fn max_connections(mut self, limit: usize) -> ServeOptions {
        self.max_connections = limit.max(1);
        self
    }

    /// Serves TCP with TLS.
    pub fn tls(mut self, tls: Option<ServerTls>) -> ServeOptions {
        self.tls = tls;
        self
    }

    /// Requires a bearer secret on every call.
    pub fn auth_token(mut self, token: Option<AuthToken>) -> ServeOptions {
        self.auth_token = token;
        self
    }

    /// Whether a client must prove itself (a client certificate or a
    /// bearer secret) before any call: what a master reachable from other
    /// machines needs.
    pub fn authenticates_clients(&self) -> bool {
        self.auth_token.is_some()
            || self
                .tls
                .as_ref()
                .is_some_and(ServerTls::requires_client_cert)
    }

    /// Sets [`ServeOptions::busy_poll`].
    pub fn busy_poll(mut self, window: Duration) -> ServeOptions {
        self.busy_poll = window;
        self
    }

    /// Sets [`ServeOptions::max_concurrent_calls`] (at least 1).
    pub fn max_concurrent_calls(mut self, limit: u32) -> ServeOptions {
        self.max_concurrent_calls = limit.max(1);
        self
    }
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions::new()
    }
}

/// The addresses a running master listens on, reported once bound.
#[derive(Clone, Debug)]
pub struct Served {
    /// The bound TCP address (with the real port when 0 was asked for).
    pub tcp: Option<SocketAddr>,
    /// The Unix socket path.
    pub unix_socket: Option<PathBuf>,
}

/// Binds the listeners, reports them through `on_bound`, and serves until
/// `shutdown` resolves. Then health turns NOT_SERVING, listeners close,
/// in-flight calls finish, and the function returns; the caller closes the
/// store, which flushes it.
///
/// # Errors
///
/// When a listener cannot be bound (address in use, bad socket path), or a
/// server fails.
pub async fn serve(
    store: Arc<Store>,
    options: ServeOptions,
    on_bound: impl FnOnce(&Served),
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let limit = store.max_data_size() + MESSAGE_OVERHEAD;
    let master = Master::new(store).busy_poll(options.busy_poll);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<TokenServiceServer<Master>>().await;
    let router = |tls: Option<&ServerTls>| -> io::Result<Router> {
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::DESCRIPTORS)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(io::Error::other)?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::DESCRIPTORS)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(io::Error::other)?;
        let tokens = TokenServiceServer::new(master.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let require = RequireToken(options.auth_token.clone());
        let tokens = InterceptedService::new(tokens, require.clone());
        let admin = InterceptedService::new(AdminServer::new(master.clone()), require);
        Ok(builder(tls)?
            .max_concurrent_streams(options.max_concurrent_calls)
            .add_service(health.clone())
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(admin)
            .add_service(tokens))
    };

    let limit = Limit::new(options.max_connections);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut servers = tokio::task::JoinSet::new();
    let mut served = Served {
        tcp: None,
        unix_socket: None,
    };
    if let Some(addr) = options.tcp {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|err| io::Error::new(err.kind(), format!("cannot listen on {addr}: {err}")))?;
        served.tcp = Some(listener.local_addr()?);
        let incoming = TcpListenerStream::new(listener).map(|stream| {
            let stream = stream?;
            stream.set_nodelay(true)?;
            Ok::<_, io::Error>(stream)
        });
        let (admitted, refused) = limit.split(incoming);
        let server = router(options.tls.as_ref())?
            .serve_with_incoming_shutdown(admitted, stopped(stop_rx.clone()));
        servers.spawn(server);
        let refusals = refusing(options.tls.as_ref())?.serve_with_incoming_shutdown(
            limit.refuse(),
            refused,
            stopped(stop_rx.clone()),
        );
        servers.spawn(refusals);
    }
    if let Some(path) = &options.unix_socket {
        let listener = unix::bind(path, options.unix_socket_mode)?;
        served.unix_socket = Some(path.clone());
        let incoming = unix::admitted(
            UnixListenerStream::new(listener),
            options.unix_peers.clone(),
        );
        let (admitted, refused) = limit.split(incoming);
        let server = router(None)?.serve_with_incoming_shutdown(admitted, stopped(stop_rx.clone()));
        servers.spawn(server);
        let refusals = refusing(None)?.serve_with_incoming_shutdown(
            limit.refuse(),
            refused,
            stopped(stop_rx.clone()),
        );
        servers.spawn(refusals);
    }
    if servers.is_empty() {
        let err = "no TCP address or Unix socket to listen on";
        return Err(io::Error::new(io::ErrorKind::InvalidInput, err));
    }
    on_bound(&served);

    // Serve until asked to stop or until a server fails on its own.
    let failed = tokio::select! {
        () = shutdown => None,
        finished = servers.join_next() => finished,
    };
    tracing::info!("stopping: reporting NOT_SERVING and finishing in-flight calls");
    reporter
        .set_not_serving::<TokenServiceServer<Master>>()
        .await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let _ = stop_tx.send(true);
    let mut result = failed.map_or(Ok(()), flatten);
    while let Some(finished) = servers.join_next().await {
        result = result.and(flatten(finished));
    }
    if let Some(path) = &served.unix_socket {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// A server builder with the listener's TLS, if any.
fn builder(tls: Option<&ServerTls>) -> io::Result<Server> {
    let builder = Server::builder().tcp_nodelay(true);
    let Some(tls) = tls else {
        return Ok(builder);
    };
    builder.tls_config(tls.config()).map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot use the TLS certificate or key: {}", chain(&err)),
        )
    })
}

/// The server for connections over the limit: it speaks the listener's
/// protocol, TLS included, only to answer each call with the refusal, and
/// takes few calls at once on each of them.
fn refusing(tls: Option<&ServerTls>) -> io::Result<Server> {
    Ok(builder(tls)?.max_concurrent_streams(limit::REFUSAL_CALLS))
}

fn flatten(
    finished: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> io::Result<()> {
    match finished {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(io::Error::other(err)),
        Err(err) => Err(io::Error::other(err)),
    }
}

/// An error and its causes on one line: rustls says what is wrong with a
/// certificate in the innermost one.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
