//! The client commands: `create`, `read`, `update`, `delete` and `stats`.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;
use crudjt::Limits;
use crudjt_grpc::proto::admin::StatsResponse;
use crudjt_grpc::{BlockingClient, Security, Target};
use serde_json::json;

use crate::exit::{CLIENT_HELP, Invalid};
use crate::json;
use crate::secure;

/// How a client command ended, when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The call did what was asked.
    Done,
    /// The token is missing, expired or used up.
    NotFound,
}

/// Where the master is, shared by every client command and `bench`.
#[derive(Args, Debug)]
#[command(next_help_heading = "Connection")]
pub struct Connect {
    /// Host of the master
    #[arg(long, env = "CRUDJT_HOST", default_value = "127.0.0.1")]
    host: String,
    /// TCP port of the master
    #[arg(long, env = "CRUDJT_PORT", default_value_t = 50051)]
    port: u16,
    /// Reach the master on this Unix domain socket instead of TCP
    #[arg(long, env = "CRUDJT_UNIX_SOCKET", value_name = "PATH")]
    unix_socket: Option<PathBuf>,
    /// Connect with TLS, trusting this CA certificate (PEM) for the master
    #[arg(long, env = "CRUDJT_TLS_CA", value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// The name the master's certificate must carry [default: --host]
    #[arg(
        long,
        env = "CRUDJT_TLS_DOMAIN",
        value_name = "NAME",
        requires = "tls_ca"
    )]
    tls_domain: Option<String>,
    /// Client certificate (PEM), for a master that requires one
    #[arg(long, env = "CRUDJT_TLS_CERT", value_name = "PEM",
          requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert
    #[arg(
        long,
        env = "CRUDJT_TLS_KEY",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// File holding the auth token the master requires (else the
    /// environment variable CRUDJT_AUTH_TOKEN)
    #[arg(long, env = "CRUDJT_AUTH_TOKEN_FILE", value_name = "PATH")]
    auth_token_file: Option<PathBuf>,
}

impl Connect {
    /// The socket if one is given, else the host and port.
    pub fn target(&self) -> Target {
        match &self.unix_socket {
            Some(path) => Target::Unix(path.clone()),
            None => Target::Tcp {
                host: self.host.clone(),
                port: self.port,
            },
        }
    }

    /// TLS and credentials from the flags.
    pub fn security(&self) -> anyhow::Result<Security> {
        let mut security = Security::none();
        if let Some(ca) = &self.tls_ca {
            security.tls_ca = Some(secure::pem("--tls-ca", ca)?);
        }
        security.tls_domain = self.tls_domain.clone();
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            security.tls_identity = Some((
                secure::pem("--tls-cert", cert)?,
                secure::pem("--tls-key", key)?,
            ));
        }
        security.auth_token = secure::auth_token(self.auth_token_file.as_deref())?;
        Ok(security)
    }

    fn client(&self) -> anyhow::Result<BlockingClient> {
        Ok(BlockingClient::connect_with(
            self.target(),
            &self.security()?,
        )?)
    }
}

/// A token's limits, as `create` and `update` take them.
#[derive(Args, Debug)]
pub struct LimitArgs {
    /// Lifetime in seconds, at least 1 [default: none]
    #[arg(long, env = "CRUDJT_TTL", value_name = "SECONDS")]
    ttl: Option<u64>,
    /// Reads the token survives, at least 1; 1 makes a one-time token
    /// [default: none]
    #[arg(long, env = "CRUDJT_SILENCE_READ", value_name = "READS")]
    silence_read: Option<u64>,
}

impl LimitArgs {
    fn limits(&self) -> anyhow::Result<Limits> {
        Limits::new(self.ttl, self.silence_read).map_err(|err| Invalid(err.to_string()).into())
    }
}

/// Arguments of `crudjt create`.
#[derive(Args, Debug)]
#[command(after_help = CLIENT_HELP)]
pub struct CreateArgs {
    /// The token's data: a JSON object, or - to read it from stdin
    #[arg(value_name = "DATA_JSON")]
    data: String,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    connect: Connect,
}

/// Arguments of `crudjt read`.
#[derive(Args, Debug)]
#[command(after_help = format!("{}\n\n{CLIENT_HELP}", json::READ_HELP))]
pub struct ReadArgs {
    /// The token to read
    #[arg(allow_hyphen_values = true)]
    token: String,
    #[command(flatten)]
    connect: Connect,
}

/// Arguments of `crudjt update`.
#[derive(Args, Debug)]
#[command(after_help = format!(
    "The new data and limits replace the old: a limit left out means none, and a\n\
     new ttl counts from now.\n\n{CLIENT_HELP}"
))]
pub struct UpdateArgs {
    /// The token to update
    #[arg(allow_hyphen_values = true)]
    token: String,
    /// The new data: a JSON object, or - to read it from stdin
    #[arg(value_name = "DATA_JSON")]
    data: String,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    connect: Connect,
}

/// Arguments of `crudjt delete`.
#[derive(Args, Debug)]
#[command(after_help = CLIENT_HELP)]
pub struct DeleteArgs {
    /// The token to delete
    #[arg(allow_hyphen_values = true)]
    token: String,
    #[command(flatten)]
    connect: Connect,
}

/// Arguments of `crudjt stats`.
#[derive(Args, Debug)]
#[command(after_help = "\
Output: one line of JSON with the store's counters: tokens, file_bytes,
pending_writes, pending_bytes, cached_records, durability, flushes,
flush_failures, last_flush_unix_ms, last_flush_micros, last_flush_records,
last_sweep_unix_ms, last_sweep_micros, last_sweep_removed,
last_sweep_resealed, last_sweep_dropped, max_data_size, and keys: every secret
key the store has used, as {number, current, given, tokens, sealed}, counted at
the last flush. tokens is how many records need that key for their tokens to
work; sealed how many are still sealed under it (the sweep moves them to the
current key). Times of a flush or sweep that has not happened yet are 0.

Exit status: 0 success; 3 cannot reach the master; 4 the master failed.")]
pub struct StatsArgs {
    #[command(flatten)]
    connect: Connect,
}

/// Prints the new token.
///
/// # Errors
///
/// Invalid data or limits, and client errors.
pub fn create(args: &CreateArgs) -> anyhow::Result<Outcome> {
    let packed = json::pack_object(&args.data)?;
    let limits = args.limits.limits()?;
    let token = args.connect.client()?.create(&packed, limits)?;
    print_line(&token)?;
    Ok(Outcome::Done)
}

/// Prints the read result as JSON, or `null`.
///
/// # Errors
///
/// Client errors, and data from the master that is not MessagePack.
pub fn read(args: &ReadArgs) -> anyhow::Result<Outcome> {
    match args.connect.client()?.read(&args.token)? {
        Some(entry) => {
            print_line(&json::read_result(&entry)?.to_string())?;
            Ok(Outcome::Done)
        }
        None => {
            print_line("null")?;
            Ok(Outcome::NotFound)
        }
    }
}

/// Prints `true`, or `false` when the token is not found.
///
/// # Errors
///
/// Invalid data or limits, and client errors.
pub fn update(args: &UpdateArgs) -> anyhow::Result<Outcome> {
    let packed = json::pack_object(&args.data)?;
    let limits = args.limits.limits()?;
    let updated = args
        .connect
        .client()?
        .update(&args.token, &packed, limits)?;
    found(updated)
}

/// Prints `true`, or `false` when the token is not found.
///
/// # Errors
///
/// Client errors.
pub fn delete(args: &DeleteArgs) -> anyhow::Result<Outcome> {
    found(args.connect.client()?.delete(&args.token)?)
}

/// Prints the master's counters as JSON.
///
/// # Errors
///
/// Client errors.
pub fn stats(args: &StatsArgs) -> anyhow::Result<Outcome> {
    let stats = args.connect.client()?.stats()?;
    print_line(&stats_json(&stats).to_string())?;
    Ok(Outcome::Done)
}

fn found(result: bool) -> anyhow::Result<Outcome> {
    print_line(if result { "true" } else { "false" })?;
    Ok(if result {
        Outcome::Done
    } else {
        Outcome::NotFound
    })
}

/// The stats under their protobuf field names, so the admin proto
/// documents both.
fn stats_json(stats: &StatsResponse) -> serde_json::Value {
    json!({
        "tokens": stats.tokens,
        "file_bytes": stats.file_bytes,
        "pending_writes": stats.pending_writes,
        "pending_bytes": stats.pending_bytes,
        "cached_records": stats.cached_records,
        "durability": stats.durability,
        "flushes": stats.flushes,
        "flush_failures": stats.flush_failures,
        "last_flush_unix_ms": stats.last_flush_unix_ms,
        "last_flush_micros": stats.last_flush_micros,
        "last_flush_records": stats.last_flush_records,
        "last_sweep_unix_ms": stats.last_sweep_unix_ms,
        "last_sweep_micros": stats.last_sweep_micros,
        "last_sweep_removed": stats.last_sweep_removed,
        "last_sweep_resealed": stats.last_sweep_resealed,
        "last_sweep_dropped": stats.last_sweep_dropped,
        "max_data_size": stats.max_data_size,
        "keys": stats.keys.iter().map(|key| json!({
            "number": key.number,
            "current": key.current,
            "given": key.given,
            "tokens": key.tokens,
            "sealed": key.sealed,
        })).collect::<Vec<_>>(),
    })
}

/// Writes one line of output, reporting a closed stdout as an error
/// instead of panicking as `println!` would.
fn print_line(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}
