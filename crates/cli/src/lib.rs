//! The `p2pf` command: run a p2p-foundation node, script it (`--json`), and see the whole
//! stack work in one command (`p2pf demo`).
//!
//! The binary is a thin `main` over [`run`]; the pieces it is made of are public so the
//! integration tests and other tools can reuse them:
//!
//! ```
//! use p2p_foundation_cli::target::PeerTarget;
//!
//! // What `--bootstrap` accepts: `<peer id>@<address>` or an address alone, as numbers
//! // or three words.
//! let t: PeerTarget = "127.0.0.1:9000".parse()?;
//! assert_eq!(t.addr().port(), 9000);
//! # Ok::<(), String>(())
//! ```
//!
//! Exit codes are in [`error::exit`].
#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod cli;
pub mod client;
mod cmd;
pub mod config;
pub mod error;
pub mod logging;
pub mod metrics_http;
pub mod output;
pub mod paths;
pub mod progress;
pub mod signal;
pub mod target;
pub mod tools;

pub use cli::{Cli, Command};
pub use error::{CliError, exit};
pub use output::Output;

/// Runs a parsed command line; the error's [`CliError::exit_code`] is the exit code.
pub async fn run(mut cli: Cli) -> Result<(), CliError> {
    let out = Output::new(cli.global.json);
    let data_dir = cli
        .global
        .data_dir
        .clone()
        .unwrap_or_else(paths::default_data_dir);
    let config = config::Config::load(cli.global.config.as_deref(), &data_dir)?;
    if let Command::Node(args) = &mut cli.command {
        args.merge(&config.node)?;
    }
    if let Some(client) = cli.command.client_args_mut() {
        client.merge(&config.client)?;
    }
    let log_format = cli
        .global
        .log_format
        .or(config.log_format)
        .unwrap_or_default();
    // A running node reports what it does; one-shot commands only warn.
    let default_filter = match cli.command {
        Command::Node(_) => "info",
        _ => "warn",
    };
    logging::init(log_format, default_filter);
    let span = tracing::info_span!("p2pf", command = command_name(&cli.command));
    let _enter = span.enter();
    match &cli.command {
        Command::Id => cmd::id::run(out, &data_dir),
        Command::Words(w) => cmd::words::run(out, w),
        Command::Node(args) => cmd::node::run(out, &data_dir, args).await,
        Command::Demo(args) => cmd::demo::run(out, args).await,
        Command::Ping(args) => cmd::ping::run(out, args).await,
        Command::Dht(c) => cmd::dht::run(out, c).await,
        Command::Pub(args) => cmd::pubsub::publish(out, args).await,
        Command::Sub(args) => cmd::pubsub::subscribe(out, args).await,
        Command::Mcp(c) => cmd::mcp::run(out, c).await,
        Command::Nat(args) => cmd::nat::run(out, args).await,
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Id => "id",
        Command::Words(_) => "words",
        Command::Node(_) => "node",
        Command::Demo(_) => "demo",
        Command::Ping(_) => "ping",
        Command::Dht(_) => "dht",
        Command::Pub(_) => "pub",
        Command::Sub(_) => "sub",
        Command::Mcp(_) => "mcp",
        Command::Nat(_) => "nat",
    }
}
