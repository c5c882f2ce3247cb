//! `crudjt`: the crudjt master as a standalone server, key generation,
//! client calls from the shell, and a load generator.
//!
//! This file only parses arguments and maps outcomes to exit statuses; each
//! command lives in its own module.

#![forbid(unsafe_code)]

mod bench;
mod client;
mod duration;
mod exit;
mod json;
mod key;
mod secure;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::client::Outcome;
use crate::exit::Family;

/// A fast, file-backed, encrypted token store for stateful sessions.
///
/// `crudjt serve` runs the master, which owns the store and serves it over
/// gRPC; the other commands talk to a running master.
#[derive(Parser, Debug)]
#[command(name = "crudjt", version, after_help = format!(
    "Run `crudjt serve` to start a master with a store and a key of its own.\n\n\
     The client commands (create, read, update, delete, stats) share these exit\n\
     statuses; serve, keygen and bench list theirs in their --help.\n\n{}",
    exit::CLIENT_HELP
))]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the master: open the store and serve it over gRPC until SIGTERM
    Serve(serve::ServeArgs),
    /// Print a new secret key, or write it to an owner-only file
    Keygen(key::KeygenArgs),
    /// Create a token for a JSON object and print the token
    Create(client::CreateArgs),
    /// Read a token and print its data and limits as JSON
    Read(client::ReadArgs),
    /// Replace a token's data and limits; print true, or false if not found
    Update(client::UpdateArgs),
    /// Delete a token; print true, or false if not found
    Delete(client::DeleteArgs),
    /// Print the master's store counters as JSON
    Stats(client::StatsArgs),
    /// Load the master with many connections and report ops/s and latency
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (family, outcome) = match cli.command {
        Command::Serve(args) => (Family::Local, serve::run(args).map(|()| Outcome::Done)),
        Command::Keygen(args) => (Family::Local, key::keygen(&args).map(|()| Outcome::Done)),
        Command::Create(args) => (Family::Client, client::create(&args)),
        Command::Read(args) => (Family::Client, client::read(&args)),
        Command::Update(args) => (Family::Client, client::update(&args)),
        Command::Delete(args) => (Family::Client, client::delete(&args)),
        Command::Stats(args) => (Family::Client, client::stats(&args)),
        Command::Bench(args) => (Family::Client, bench::run(args).map(|()| Outcome::Done)),
    };
    match outcome {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::NotFound) => ExitCode::from(exit::NOT_FOUND),
        Err(err) => {
            // One line: the error and its causes, outermost first.
            eprintln!("error: {err:#}");
            ExitCode::from(exit::status_of(&err, family))
        }
    }
}
