//! `crudjt serve`: the master as a standalone server.

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};
use crudjt::{Config, Durability, Store};
use crudjt_grpc::{PeerRule, ServeOptions, Served, ServerTls};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use crate::duration;
use crate::exit::Invalid;
use crate::key;
use crate::secure;

/// How long stopping may wait for in-flight calls and their tasks.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Arguments of `crudjt serve`.
#[derive(Args, Debug)]
#[command(after_help = "\
Secret key: --secret-key-file, else the environment variable CRUDJT_SECRET_KEY
(the base64 key itself), else the key file beside the store directory,
<store dir>.key (for /var/lib/store_jt, /var/lib/store_jt.key). When none of
them exists, the first start generates that file, mode 0600, and later starts
reuse it. A key is base64 of 32, 48 or 64 random bytes (`crudjt keygen`).

Rotating the key: start with the new key as the secret key and the old one as
a previous key: --previous-secret-key-file (repeatable, or the comma-separated
CRUDJT_PREVIOUS_SECRET_KEY_FILES), or CRUDJT_PREVIOUS_SECRET_KEYS holding the
base64 keys themselves, comma-separated. New tokens and every write use the
new key; tokens made under the old one keep working, and the sweep (at start
and every --sweep-interval) re-seals their records under the new key. Keep
giving the old key until `crudjt stats` lists it in keys with tokens 0
(counted at each flush): that takes the longest ttl among its tokens, and a
token with no ttl holds it until deleted or read out. Dropping it earlier ends
those sessions: their tokens are no longer found and the sweep removes their
records. A new key is refused unless the store's current key is among the
previous keys given.

Durations are a whole number and a unit: 500ms, 2s, 5m, 24h.
Logs go to stderr; the level comes from --log-level, else RUST_LOG, else info.

SIGTERM or SIGINT stops the master cleanly: health turns NOT_SERVING, new
connections are refused, in-flight calls finish, the store is flushed and
closed, and the exit status is 0.

Exit status: 0 stopped cleanly; 1 the store cannot open (wrong key, already
open) or an address cannot be used; 2 invalid arguments or options.")]
pub struct ServeArgs {
    /// Store directory [default: /var/lib/store_jt if it can be used, else
    /// ./store_jt]
    #[arg(long, env = "CRUDJT_STORE_PATH", value_name = "DIR")]
    store_path: Option<PathBuf>,
    /// Address to listen on for TCP; 127.0.0.1 keeps the master local
    #[arg(long, env = "CRUDJT_HOST", default_value = "127.0.0.1")]
    host: String,
    /// TCP port; 0 picks a free one, reported in the "listening" log line
    #[arg(long, env = "CRUDJT_PORT", default_value_t = 50051)]
    port: u16,
    /// Also listen on this Unix domain socket, created owner-only (0600)
    #[arg(long, env = "CRUDJT_UNIX_SOCKET", value_name = "PATH")]
    unix_socket: Option<PathBuf>,
    /// Permission bits of the Unix socket file, in octal (660 lets the
    /// socket's group connect too)
    #[arg(long, env = "CRUDJT_UNIX_SOCKET_MODE", default_value = "600",
          value_parser = parse_mode, value_name = "OCTAL", requires = "unix_socket")]
    unix_socket_mode: u32,
    /// Accept on the Unix socket only processes running as one of these
    /// user ids (comma-separated), as the kernel reports them
    #[arg(
        long,
        env = "CRUDJT_UNIX_SOCKET_ALLOW_UID",
        value_delimiter = ',',
        value_name = "UID",
        requires = "unix_socket"
    )]
    unix_socket_allow_uid: Vec<u32>,
    /// Accept on the Unix socket only processes whose group id is one of
    /// these (comma-separated); with --unix-socket-allow-uid, either will do
    #[arg(
        long,
        env = "CRUDJT_UNIX_SOCKET_ALLOW_GID",
        value_delimiter = ',',
        value_name = "GID",
        requires = "unix_socket"
    )]
    unix_socket_allow_gid: Vec<u32>,
    /// Serve TCP with TLS, with this certificate chain (PEM)
    #[arg(
        long,
        env = "CRUDJT_TLS_CERT",
        value_name = "PEM",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert
    #[arg(
        long,
        env = "CRUDJT_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Require TLS clients to present a certificate signed by this CA (PEM)
    #[arg(
        long,
        env = "CRUDJT_TLS_CLIENT_CA",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<PathBuf>,
    /// Require every call to carry the auth token in this file
    /// (`authorization: Bearer <token>`), else in CRUDJT_AUTH_TOKEN; at
    /// least 16 printable characters, like `openssl rand -hex 32`
    #[arg(long, env = "CRUDJT_AUTH_TOKEN_FILE", value_name = "PATH")]
    auth_token_file: Option<PathBuf>,
    /// Serve on an address other machines can reach without TLS and
    /// client authentication. Without it, a --host that is not a loopback
    /// address needs --tls-cert and --tls-client-ca or an auth token
    #[arg(long, env = "CRUDJT_ALLOW_INSECURE_REMOTE",
          value_parser = BoolishValueParser::new())]
    allow_insecure_remote: bool,
    /// Connections held open at once, over TCP and the Unix socket; more
    /// are closed as they arrive, and logged
    #[arg(long, env = "CRUDJT_MAX_CONNECTIONS", value_name = "N",
          default_value_t = ServeOptions::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections: usize,
    /// Calls one connection may have in flight; a client's further calls
    /// wait for its own, so one client cannot starve the rest
    #[arg(long, env = "CRUDJT_MAX_CONCURRENT_CALLS", value_name = "N",
          default_value_t = ServeOptions::DEFAULT_MAX_CONCURRENT_CALLS,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_concurrent_calls: u32,
    /// Keep polling the sockets for this long after each call instead of
    /// sleeping: sequential round trips get faster by a wake-up each, at
    /// the price of up to one core while calls come that often; 0 (the
    /// default) never busy-polls; at most 1s. Try 200us for latency-bound
    /// clients
    #[arg(long, env = "CRUDJT_BUSY_POLL", default_value = "0s",
          value_parser = duration::parse_window, value_name = "DURATION")]
    busy_poll: Duration,
    /// Listen only on --unix-socket, not on TCP
    #[arg(long, env = "CRUDJT_NO_TCP", requires = "unix_socket",
          value_parser = BoolishValueParser::new())]
    no_tcp: bool,
    /// File holding the base64 secret key (see below for the alternatives)
    #[arg(long, env = "CRUDJT_SECRET_KEY_FILE", value_name = "PATH")]
    secret_key_file: Option<PathBuf>,
    /// File holding a previous secret key, whose tokens keep working while
    /// the store moves to the new key; repeat for several (see below)
    #[arg(
        long,
        env = "CRUDJT_PREVIOUS_SECRET_KEY_FILES",
        value_delimiter = ',',
        value_name = "PATH"
    )]
    previous_secret_key_file: Vec<PathBuf>,
    /// How often pending writes are committed to disk
    #[arg(long, env = "CRUDJT_FLUSH_INTERVAL", default_value = "500ms",
          value_parser = duration::parse, value_name = "DURATION")]
    flush_interval: Duration,
    /// interval: calls return at once and a crash can undo the last flush
    /// interval; always: each changing call returns after its commit
    #[arg(long, env = "CRUDJT_DURABILITY", value_enum, default_value_t = DurabilityArg::Interval)]
    durability: DurabilityArg,
    /// Records kept in the read cache
    #[arg(
        long,
        env = "CRUDJT_CACHE_CAPACITY",
        default_value_t = crudjt::Config::DEFAULT_CACHE_CAPACITY,
        value_name = "RECORDS"
    )]
    cache_capacity: usize,
    /// Largest token data accepted, in bytes of MessagePack (at most 65536)
    #[arg(
        long,
        env = "CRUDJT_MAX_DATA_SIZE",
        default_value_t = crudjt::Config::DEFAULT_MAX_DATA_SIZE,
        value_name = "BYTES"
    )]
    max_data_size: usize,
    /// How often expired tokens are swept from disk (also once at start)
    #[arg(long, env = "CRUDJT_SWEEP_INTERVAL", default_value = "24h",
          value_parser = duration::parse, value_name = "DURATION")]
    sweep_interval: Duration,
    /// Log line format
    #[arg(long, env = "CRUDJT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log filter, like `debug` or `info,crudjt=debug` [default: RUST_LOG, else info]
    #[arg(long, env = "CRUDJT_LOG_LEVEL", value_name = "FILTER")]
    log_level: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DurabilityArg {
    Interval,
    Always,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Runs the master until SIGTERM or SIGINT.
///
/// # Errors
///
/// When logging, the key, the store or a listener cannot be set up, or the
/// store fails to commit its last changes.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format, args.log_level.as_deref())?;
    let tcp = if args.no_tcp {
        None
    } else {
        Some(resolve(&args.host, args.port)?)
    };
    let peers = (!args.unix_socket_allow_uid.is_empty() || !args.unix_socket_allow_gid.is_empty())
        .then(|| PeerRule {
            uids: args.unix_socket_allow_uid.clone(),
            gids: args.unix_socket_allow_gid.clone(),
        });
    let options = ServeOptions::new()
        .tcp(tcp)
        .unix_socket(args.unix_socket.clone())
        .unix_socket_mode(args.unix_socket_mode)
        .unix_peers(peers)
        .max_connections(args.max_connections)
        .max_concurrent_calls(args.max_concurrent_calls)
        .busy_poll(args.busy_poll)
        .tls(server_tls(&args)?)
        .auth_token(secure::auth_token(args.auth_token_file.as_deref())?);
    check_exposure(&options, args.allow_insecure_remote)?;

    let dir = crudjt::prepare_store_dir(args.store_path.as_deref())?;
    let (secret, key_source) = key::resolve(args.secret_key_file.as_deref(), &dir)?;
    let previous_keys = key::previous(&args.previous_secret_key_file)?;
    if let key::Source::Generated(path) = &key_source {
        tracing::info!(path = %path.display(), "generated a new secret key; keep this file safe");
    }
    let durability = match args.durability {
        DurabilityArg::Interval => Durability::Interval,
        DurabilityArg::Always => Durability::Always,
    };
    tracing::info!(
        store = %dir.display(),
        key = %key_source,
        previous_keys = previous_keys.len(),
        tcp = tcp.map(tracing::field::display),
        unix_socket = args.unix_socket.as_ref().map(|p| tracing::field::display(p.display())),
        unix_socket_mode = %format_args!("{:o}", args.unix_socket_mode),
        unix_socket_allow_uid = ?args.unix_socket_allow_uid,
        unix_socket_allow_gid = ?args.unix_socket_allow_gid,
        tls = options.tls.is_some(),
        tls_client_cert = options.tls.as_ref().is_some_and(ServerTls::requires_client_cert),
        auth_token = options.auth_token.is_some(),
        max_connections = args.max_connections,
        max_concurrent_calls = args.max_concurrent_calls,
        busy_poll = %duration::show(args.busy_poll),
        durability = ?durability,
        flush_interval = %duration::show(args.flush_interval),
        cache_capacity = args.cache_capacity,
        max_data_size = args.max_data_size,
        sweep_interval = %duration::show(args.sweep_interval),
        "starting the crudjt master"
    );
    let config = Config::new(secret)
        .path(&dir)
        .durability(durability)
        .flush_interval(args.flush_interval)
        .cache_capacity(args.cache_capacity)
        .max_data_size(args.max_data_size)
        .sweep_interval(args.sweep_interval);
    let config = previous_keys.into_iter().fold(config, Config::previous_key);
    let store = Arc::new(Store::open(config)?);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("crudjt-server")
        .build()
        .context("cannot start the server runtime")?;
    let served = runtime.block_on(serve_until_signal(store.clone(), options));
    // Dropping the runtime's tasks drops every handle they hold on the
    // store, so that it can be closed below.
    runtime.shutdown_timeout(STOP_GRACE);
    let closed = close(store);
    served?;
    closed?;
    tracing::info!("stopped");
    Ok(())
}

async fn serve_until_signal(store: Arc<Store>, options: ServeOptions) -> anyhow::Result<()> {
    // Handlers go in before the listeners bind, so a signal sent as soon as
    // the master reports it is listening is never missed.
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let stop = async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stopping");
    };
    crudjt_grpc::serve(store, options, on_bound, stop).await?;
    Ok(())
}

fn on_bound(served: &Served) {
    tracing::info!(
        tcp = served.tcp.map(tracing::field::display),
        unix_socket = served
            .unix_socket
            .as_ref()
            .map(|p| tracing::field::display(p.display())),
        "listening"
    );
}

/// Closes the store, which flushes it. The runtime is gone, so no one else
/// should hold it; if something still does, flush rather than wait.
fn close(store: Arc<Store>) -> anyhow::Result<()> {
    let deadline = Instant::now() + STOP_GRACE;
    let mut store = store;
    loop {
        match Arc::try_unwrap(store) {
            Ok(store) => {
                return store
                    .close()
                    .context("the store could not commit its last changes");
            }
            Err(shared) if Instant::now() < deadline => {
                store = shared;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(shared) => {
                tracing::warn!("the store is still in use at exit; flushing it instead of closing");
                return shared
                    .flush()
                    .context("the store could not commit its last changes");
            }
        }
    }
}

fn server_tls(args: &ServeArgs) -> anyhow::Result<Option<ServerTls>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let tls = ServerTls::new(
        secure::pem("--tls-cert", cert)?,
        secure::pem("--tls-key", key)?,
    );
    Ok(Some(match &args.tls_client_ca {
        Some(ca) => tls.require_client_cert(secure::pem("--tls-client-ca", ca)?),
        None => tls,
    }))
}

/// A TCP address other machines can reach needs TLS, so that sessions do
/// not cross the network in the clear, and client authentication, so that
/// not everyone who can reach it can read and forge them; unless the
/// operator explicitly accepts the risk.
fn check_exposure(options: &ServeOptions, allow_insecure: bool) -> anyhow::Result<()> {
    let Some(addr) = options.tcp.filter(|addr| !addr.ip().is_loopback()) else {
        return Ok(());
    };
    let secured = options.tls.is_some() && options.authenticates_clients();
    if secured {
        return Ok(());
    }
    if !allow_insecure {
        let missing = match (options.tls.is_some(), options.authenticates_clients()) {
            (false, false) => "TLS and client authentication",
            (false, true) => "TLS",
            _ => "client authentication",
        };
        return Err(Invalid(format!(
            "refusing to serve on {addr} without {missing}: it is reachable from other \
             machines, where anyone could read or forge sessions; give --tls-cert and \
             --tls-key, and --tls-client-ca or an auth token, serve on 127.0.0.1 or a \
             Unix socket, or pass --allow-insecure-remote on a network you trust"
        ))
        .into());
    }
    tracing::warn!(
        address = %addr,
        tls = options.tls.is_some(),
        client_auth = options.authenticates_clients(),
        "serving to the network without TLS or client authentication \
         (--allow-insecure-remote): anyone who can reach it can read or forge sessions"
    );
    Ok(())
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("{text:?} is not a file mode in octal, like 600 or 660"))
}

fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    let mut addrs = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve --host {host}"))?;
    addrs
        .next()
        .ok_or_else(|| Invalid(format!("--host {host} resolves to no address")).into())
}

fn init_logging(format: LogFormat, level: Option<&str>) -> anyhow::Result<()> {
    let filter = match level {
        Some(level) => EnvFilter::try_new(level)
            .map_err(|err| Invalid(format!("invalid --log-level `{level}`: {err}")))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes would litter log files and the journal.
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|err| anyhow::anyhow!("cannot set up logging: {err}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServeArgs,
    }

    #[test]
    fn the_flag_defaults_are_the_store_defaults() {
        let args = Wrapper::try_parse_from(["serve"]).unwrap().args;
        assert_eq!(args.flush_interval, crudjt::Config::DEFAULT_FLUSH_INTERVAL);
        assert_eq!(args.sweep_interval, crudjt::Config::DEFAULT_SWEEP_INTERVAL);
        assert_eq!(args.cache_capacity, crudjt::Config::DEFAULT_CACHE_CAPACITY);
        assert_eq!(args.max_data_size, crudjt::Config::DEFAULT_MAX_DATA_SIZE);
    }
}
