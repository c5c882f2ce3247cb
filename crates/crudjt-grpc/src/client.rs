//! A Rust client for the master: async [`Client`] and [`BlockingClient`].

use std::fmt;
use std::path::PathBuf;

use crudjt::{Entry, Limits, MAX_DATA_SIZE_LIMIT};
use hyper_util::rt::TokioIo;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

use crate::proto::admin::admin_client::AdminClient;
use crate::proto::admin::{StatsRequest, StatsResponse};
use crate::proto::token::token_service_client::TokenServiceClient;
use crate::proto::token::{
    CreateTokenRequest, DeleteTokenRequest, ReadTokenRequest, UpdateTokenRequest,
};
use crate::security::{Security, SendToken};
use crate::service::NIL;

/// Where the master listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A TCP host and port.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix domain socket.
    Unix(PathBuf),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Tcp { host, port } => write!(f, "{host}:{port}"),
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The arguments were refused, by this client before sending or by the
    /// master; the message is the store's own, the same in both places.
    #[error("{0}")]
    InvalidArgument(String),
    /// The master could not be reached.
    #[error("cannot reach the crudjt master at {target}: {reason}")]
    NotConnected {
        /// Where the client tried.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// The master holds its limit of connections and turned this one
    /// away. It closes such a connection within seconds; the client's calls
    /// after that connect again, and may find a free slot.
    #[error("the crudjt master at {target} is busy: {message}")]
    Busy {
        /// Where the client tried.
        target: String,
        /// The master's message, which names its limit.
        message: String,
    },
    /// The master reached, but it failed the call.
    #[error("crudjt master failed ({code:?}): {message}")]
    Server {
        /// The gRPC status code.
        code: Code,
        /// The master's message.
        message: String,
    },
    /// The master answered with something that is not the wire contract.
    #[error("crudjt master sent a malformed reply: {0}")]
    BadReply(&'static str),
}

impl ClientError {
    fn from_status(target: &Target, status: Status) -> ClientError {
        // A failure to reach the master carries the transport error as its
        // source; the master's own statuses carry none. A connection the
        // master dropped (it died or stopped) surfaces as Unknown, and one
        // that does not speak the same protocol (plain gRPC to a TLS
        // master) as Internal, each with the transport error as its
        // source: the master is unreachable for this client either way.
        let transport = std::error::Error::source(&status);
        match (status.code(), transport) {
            (Code::InvalidArgument, _) => ClientError::InvalidArgument(status.message().to_owned()),
            (Code::Unavailable | Code::Unknown | Code::Internal, Some(cause)) => {
                ClientError::NotConnected {
                    target: target.to_string(),
                    reason: source_chain(cause),
                }
            }
            // The master answers RESOURCE_EXHAUSTED only when it holds its
            // connection limit, and its message says so.
            (Code::ResourceExhausted, None) => ClientError::Busy {
                target: target.to_string(),
                message: status.message().to_owned(),
            },
            // The master never cancels a call itself: this is a connection
            // it closed, for one because it held its connection limit and
            // was already answering as many refused clients as it will.
            (Code::Cancelled, _) => ClientError::NotConnected {
                target: target.to_string(),
                reason: format!("the master closed the connection ({})", status.message()),
            },
            (code, _) => ClientError::Server {
                code,
                message: status.message().to_owned(),
            },
        }
    }
}

fn invalid(err: crudjt::Error) -> ClientError {
    ClientError::InvalidArgument(err.to_string())
}

/// Checks what the master would refuse before sending it: an empty token,
/// data that is not a MessagePack map. The master's own data size limit is
/// checked there, since it may be larger than the default.
fn check_token(token: &str) -> Result<(), ClientError> {
    if token.is_empty() {
        Err(invalid(crudjt::Error::EmptyToken))
    } else {
        Ok(())
    }
}

fn check_data(packed: &[u8]) -> Result<(), ClientError> {
    crudjt::validate_map(packed, MAX_DATA_SIZE_LIMIT).map_err(invalid)
}

/// A limit as the wire carries it: -1 for none, saturating at `i64::MAX`.
fn wire(limit: Option<u64>) -> i64 {
    limit.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

pub(crate) fn not_connected(target: &Target, reason: String) -> ClientError {
    ClientError::NotConnected {
        target: target.to_string(),
        reason,
    }
}

fn endpoint(target: &Target, security: &Security) -> Result<Endpoint, ClientError> {
    match target {
        Target::Tcp { .. } => {
            let tls = security.tls_config();
            let scheme = if tls.is_some() { "https" } else { "http" };
            let endpoint = Endpoint::from_shared(format!("{scheme}://{target}"))
                .map_err(|e| not_connected(target, e.to_string()))?
                .tcp_nodelay(true);
            match tls {
                Some(tls) => endpoint.tls_config(tls).map_err(|e| {
                    not_connected(
                        target,
                        format!("cannot use the TLS settings: {}", source_chain(&e)),
                    )
                }),
                None => Ok(endpoint),
            }
        }
        // The URI is required by the API but unused: the connector dials the
        // socket. A Unix socket is local: file mode and peer credentials
        // guard it, not TLS.
        Target::Unix(_) => Ok(Endpoint::from_static("http://localhost")),
    }
}

fn unix_connector(
    path: &std::path::Path,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<tokio::net::UnixStream>,
    Error = std::io::Error,
    Future = impl Future<Output = std::io::Result<TokioIo<tokio::net::UnixStream>>> + Send,
> + Clone
+ Send
+ 'static {
    let path = path.to_path_buf();
    tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok(TokioIo::new(stream))
        }
    })
}

/// An async client. Cheap to clone; clones share one connection.
///
/// # Example
///
/// ```no_run
/// # async fn demo() -> Result<(), crudjt_grpc::ClientError> {
/// use crudjt_grpc::{Client, Target};
///
/// let client = Client::connect(Target::Tcp { host: "127.0.0.1".into(), port: 50051 }).await?;
/// let token = client.create(&[0x81, 0xa1, b'a', 0x01], crudjt::Limits::NONE).await?;
/// let entry = client.read(&token).await?.expect("just created");
/// assert_eq!(entry.data, [0x81, 0xa1, b'a', 0x01]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    target: Target,
    tokens: TokenServiceClient<InterceptedService<Channel, SendToken>>,
    admin: AdminClient<InterceptedService<Channel, SendToken>>,
}

impl Client {
    /// Connects to the master.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotConnected`] when nothing answers at `target`.
    pub async fn connect(target: Target) -> Result<Client, ClientError> {
        Client::connect_with(target, &Security::none()).await
    }

    /// Connects to a master that uses TLS or requires credentials.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotConnected`] when nothing answers at `target`, the
    /// TLS settings are unusable, or the handshake fails.
    pub async fn connect_with(target: Target, security: &Security) -> Result<Client, ClientError> {
        let endpoint = endpoint(&target, security)?;
        let channel = match &target {
            Target::Tcp { .. } => endpoint.connect().await,
            Target::Unix(path) => endpoint.connect_with_connector(unix_connector(path)).await,
        };
        let channel = channel.map_err(|e| not_connected(&target, source_chain(&e)))?;
        Ok(Client::over(target, channel, security))
    }

    /// A client that connects on its first call, and reconnects on later
    /// calls after the master went away. Nothing is dialled here, so this
    /// works before the master is up; a master that cannot be reached
    /// fails each call with [`ClientError::NotConnected`].
    ///
    /// Must be called within a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotConnected`] when `target` is not a valid address.
    pub fn connect_lazy(target: Target) -> Result<Client, ClientError> {
        Client::connect_lazy_with(target, &Security::none())
    }

    /// [`Client::connect_lazy`] to a master that uses TLS or requires
    /// credentials.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotConnected`] when `target` is not a valid address
    /// or the TLS settings are unusable.
    pub fn connect_lazy_with(target: Target, security: &Security) -> Result<Client, ClientError> {
        let endpoint = endpoint(&target, security)?;
        let channel = match &target {
            Target::Tcp { .. } => endpoint.connect_lazy(),
            Target::Unix(path) => endpoint.connect_with_connector_lazy(unix_connector(path)),
        };
        Ok(Client::over(target, channel, security))
    }

    fn over(target: Target, channel: Channel, security: &Security) -> Client {
        let send = SendToken::new(security.auth_token.as_ref());
        Client {
            target,
            tokens: TokenServiceClient::with_interceptor(channel.clone(), send.clone()),
            admin: AdminClient::with_interceptor(channel, send),
        }
    }

    fn fail(&self, status: Status) -> ClientError {
        ClientError::from_status(&self.target, status)
    }

    /// Creates a token for MessagePack map `packed`.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidArgument`] for data that is not a map or too
    /// large; connection and server errors.
    pub async fn create(&self, packed: &[u8], limits: Limits) -> Result<String, ClientError> {
        check_data(packed)?;
        let request = CreateTokenRequest {
            packed_data: packed.to_vec(),
            ttl: wire(limits.ttl()),
            silence_read: wire(limits.silence_read()),
        };
        let reply = self
            .tokens
            .clone()
            .create_token(request)
            .await
            .map_err(|s| self.fail(s))?;
        Ok(reply.into_inner().token)
    }

    /// Reads a token: its data as MessagePack and what is left of its
    /// limits, or `None` when it is not found.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidArgument`] for an empty token; connection and
    /// server errors.
    pub async fn read(&self, token: &str) -> Result<Option<Entry<Vec<u8>>>, ClientError> {
        check_token(token)?;
        let request = ReadTokenRequest {
            token: token.to_owned(),
        };
        let reply = self
            .tokens
            .clone()
            .read_token(request)
            .await
            .map_err(|s| self.fail(s))?;
        parse_read_result(&reply.into_inner().packed_data)
    }

    /// Replaces a token's data and limits; `false` when it is not found.
    ///
    /// # Errors
    ///
    /// As [`Client::create`], plus an empty token.
    pub async fn update(
        &self,
        token: &str,
        packed: &[u8],
        limits: Limits,
    ) -> Result<bool, ClientError> {
        check_token(token)?;
        check_data(packed)?;
        let request = UpdateTokenRequest {
            token: token.to_owned(),
            packed_data: packed.to_vec(),
            ttl: wire(limits.ttl()),
            silence_read: wire(limits.silence_read()),
        };
        let reply = self
            .tokens
            .clone()
            .update_token(request)
            .await
            .map_err(|s| self.fail(s))?;
        Ok(reply.into_inner().result)
    }

    /// Deletes a token; `false` when it is not found.
    ///
    /// # Errors
    ///
    /// As [`Client::read`].
    pub async fn delete(&self, token: &str) -> Result<bool, ClientError> {
        check_token(token)?;
        let request = DeleteTokenRequest {
            token: token.to_owned(),
        };
        let reply = self
            .tokens
            .clone()
            .delete_token(request)
            .await
            .map_err(|s| self.fail(s))?;
        Ok(reply.into_inner().result)
    }

    /// The master's store counters.
    ///
    /// # Errors
    ///
    /// Connection and server errors.
    pub async fn stats(&self) -> Result<StatsResponse, ClientError> {
        let reply = self
            .admin
            .clone()
            .stats(StatsRequest {})
            .await
            .map_err(|s| self.fail(s))?;
        Ok(reply.into_inner())
    }
}

/// An error and its causes on one line. Libraries often repeat a cause's
/// text in its parent's, so a cause that extends the previous piece
/// replaces it and one already said is dropped.
fn source_chain(err: &dyn std::error::Error) -> String {
    let mut pieces = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        let last = pieces.last_mut().expect("starts with one piece");
        if text.starts_with(last.as_str()) {
            *last = text;
        } else if !last.contains(&text) {
            pieces.push(text);
        }
        source = cause.source();
    }
    pieces.join(": ")
}

/// Splits the wire's read result map into the raw data bytes and the
/// limits, without re-encoding the data.
fn parse_read_result(packed: &[u8]) -> Result<Option<Entry<Vec<u8>>>, ClientError> {
    const BAD: ClientError = ClientError::BadReply("the read result is not the expected map");
    if packed == [NIL] {
        return Ok(None);
    }
    let mut rest = packed;
    let entries = rmp::decode::read_map_len(&mut rest).map_err(|_| BAD)?;
    let mut entry = Entry {
        data: None,
        ttl: None,
        silence_read: None,
    };
    for _ in 0..entries {
        let mut key = [0u8; 16];
        let key = rmp::decode::read_str(&mut rest, &mut key).map_err(|_| BAD)?;
        match key {
            "data" => {
                let before = rest;
                rmpv::decode::read_value(&mut rest).map_err(|_| BAD)?;
                entry.data = Some(before[..before.len() - rest.len()].to_vec());
            }
            "metadata" => {
                let limits = rmp::decode::read_map_len(&mut rest).map_err(|_| BAD)?;
                for _ in 0..limits {
                    let mut name = [0u8; 16];
                    let name = rmp::decode::read_str(&mut rest, &mut name)
                        .map_err(|_| BAD)?
                        .to_owned();
                    let value: u64 = rmp::decode::read_int(&mut rest).map_err(|_| BAD)?;
                    match name.as_str() {
                        "ttl" => entry.ttl = Some(value),
                        "silence_read" => entry.silence_read = Some(value),
                        _ => return Err(BAD),
                    }
                }
            }
            _ => return Err(BAD),
        }
    }
    let data = entry.data.ok_or(BAD)?;
    Ok(Some(Entry {
        data,
        ttl: entry.ttl,
        silence_read: entry.silence_read,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_read_results_without_re_encoding() {
        // An int packed wider than needed must come back byte for byte.
        let data = [0x81, 0xa1, b'n', 0xcd, 0x00, 0x01];
        let full = crudjt::pack_read_result(&data, Some(5), Some(0));
        let entry = parse_read_result(&full).unwrap().unwrap();
        assert_eq!(
            (entry.data.as_slice(), entry.ttl, entry.silence_read),
            (&data[..], Some(5), Some(0))
        );
        let bare = parse_read_result(&crudjt::pack_read_result(&data, None, None))
            .unwrap()
            .unwrap();
        assert_eq!((bare.ttl, bare.silence_read), (None, None));
        assert!(parse_read_result(&[NIL]).unwrap().is_none());
        assert!(parse_read_result(&[0x80]).is_err());
        assert!(parse_read_result(&[0x91, 0x01]).is_err());
    }

    #[test]
    fn a_master_at_its_connection_limit_is_busy() {
        let target = Target::Tcp {
            host: "127.0.0.1".into(),
            port: 9,
        };
        let message = "the master holds its limit of 2 connections; try again later";
        let err = ClientError::from_status(&target, Status::resource_exhausted(message));
        assert!(matches!(err, ClientError::Busy { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("the crudjt master at 127.0.0.1:9 is busy: {message}")
        );
    }

    #[test]
    fn limits_go_on_the_wire_as_signed() {
        assert_eq!(wire(None), -1);
        assert_eq!(wire(Some(5)), 5);
        assert_eq!(wire(Some(u64::MAX)), i64::MAX);
    }

    #[test]
    fn targets_print_as_addresses() {
        assert_eq!(
            Target::Tcp {
                host: "127.0.0.1".into(),
                port: 1
            }
            .to_string(),
            "127.0.0.1:1"
        );
        assert_eq!(
            Target::Tcp {
                host: "::1".into(),
                port: 2
            }
            .to_string(),
            "[::1]:2"
        );
        assert_eq!(Target::Unix("/tmp/s".into()).to_string(), "unix:/tmp/s");
    }
}
