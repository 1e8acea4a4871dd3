//! The command line, declared with clap's derive API. Each command's `--help` ends with an
//! example.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logging::LogFormat;
use crate::target::PeerTarget;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  an operation failed (a demo step, a call)
  2  bad command line or value (unknown flag, malformed words, peer id or JSON)
  3  a peer could not be reached (bootstrap, dial timeout, wrong identity)
  4  nothing found (no record, no provider)
  5  a local file could not be used (data directory, identity, configuration)

Examples:
  p2pf demo                      # 8 nodes on loopback: words, DHT, MCP failover, gossip
  p2pf id                        # this machine's node identity
  p2pf node --listen 0.0.0.0:9000
  p2pf words encode 127.0.0.1:9000";

/// p2pf: run a p2p-foundation node, or see the whole stack work with `p2pf demo`.
#[derive(Debug, Parser)]
#[command(name = "p2pf", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Print results as JSON, one document per line (errors too, with their exit code).
    #[arg(long, global = true)]
    pub json: bool,
    /// Log line format on stderr (filter with RUST_LOG, e.g. RUST_LOG=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Where the node identity is kept (created owner-only if missing).
    /// [default: $XDG_DATA_HOME/p2pf or ~/.local/share/p2pf]
    #[arg(long, global = true, env = "P2PF_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show this node's identity (its PeerId), creating it in the data directory if missing.
    #[command(after_help = "Example:\n  p2pf id --data-dir ./node-a --json")]
    Id,
    /// Convert socket addresses to three words and back.
    #[command(subcommand)]
    Words(WordsCommand),
    /// Run a node until SIGINT or SIGTERM: prints its PeerId, addresses and three words.
    #[command(after_help = "Examples:\n  \
        p2pf node --listen 0.0.0.0:9000\n  \
        p2pf node --listen 127.0.0.1:0 --bootstrap ocean.thunder.falcon\n  \
        p2pf node --bootstrap <peer id>@127.0.0.1:9000 --log-format json --json")]
    Node(NodeArgs),
    /// Start a real network on loopback and exercise every layer, with measured times.
    #[command(after_help = "Example:\n  \
        cargo run --release -p p2p-foundation-cli -- demo\n  \
        p2pf demo --nodes 12 --json")]
    Demo(DemoArgs),
}

/// `p2pf words …`
#[derive(Debug, Subcommand)]
pub enum WordsCommand {
    /// A socket address as words (3 for IPv4, 6 or 9 for IPv6).
    #[command(after_help = "Example:\n  p2pf words encode 127.0.0.1:9000")]
    Encode {
        /// The address, e.g. `203.0.113.9:9000` or `[2001:db8::1]:443`.
        addr: SocketAddr,
    },
    /// Words back to a socket address (any case; one typo per word is corrected).
    #[command(after_help = "Example:\n  p2pf words decode ocean thunder falcon")]
    Decode {
        /// The words, as one argument (`ocean.thunder.falcon`) or several.
        #[arg(required = true, num_args = 1..)]
        words: Vec<String>,
    },
}

/// `p2pf node …`
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Address to listen on (UDP for QUIC, TCP on the same port), as numbers or words.
    /// `[::]:PORT` is dual-stack.
    #[arg(long, short, value_name = "ADDR", default_value = "[::]:0", value_parser = parse_addr)]
    pub listen: SocketAddr,
    /// A peer to join the network through: `<peer id>@<address>` or an address alone
    /// (numbers or three words; its id is learned on first contact). Repeatable.
    #[arg(long, short, value_name = "PEER")]
    pub bootstrap: Vec<PeerTarget>,
    /// Longest a dial to one bootstrap peer may take, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub dial_timeout: u64,
}

/// `p2pf demo …`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many nodes to start (each its own QUIC endpoint on 127.0.0.1).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(8..=64))]
    pub nodes: u16,
    /// Longest any one step may take, in seconds, before the demo fails.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub step_timeout: u64,
}

/// Reads a socket address as numbers or words (for clap).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    p2p_foundation::words::parse_socket_addr(s).map_err(|e| {
        format!("'{s}' is not an address: give numbers such as 127.0.0.1:9000 or words ({e})")
    })
}
