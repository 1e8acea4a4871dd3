//! The command line, declared with clap's derive API. Each command's `--help` ends with an
//! example.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::client::ClientArgs;
use crate::logging::LogFormat;
use crate::target::{PeerTarget, PingTarget};

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
  p2pf node --listen 0.0.0.0:9000 --tool reverse
  p2pf words encode 127.0.0.1:9000
  p2pf mcp call reverse --args '{\"text\":\"hi\"}' --bootstrap ocean.thunder.falcon";

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
    /// [default: text]
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Configuration file (TOML; every key optional, flags win).
    /// [default: config.toml in the data directory, if it exists]
    #[arg(long, global = true, env = "P2PF_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
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
    /// Reach one peer: its proven id, the path (QUIC, TCP or relayed) and the round-trip time.
    #[command(after_help = "Examples:\n  \
        p2pf ping ocean.thunder.falcon\n  \
        p2pf ping <peer id>@127.0.0.1:9000 --json\n  \
        p2pf ping <peer id> --bootstrap ocean.thunder.falcon   (found through the DHT; \
        punched to or relayed if it is behind a NAT)")]
    Ping(PingArgs),
    /// Signed records on the DHT.
    #[command(subcommand)]
    Dht(DhtCommand),
    /// Publish messages on a gossip topic (the arguments, or each line of stdin) and wait
    /// for the subscribers' signed delivery acknowledgements.
    #[command(after_help = "Examples:\n  \
        p2pf pub news hello world --bootstrap ocean.thunder.falcon\n  \
        tail -f log.txt | p2pf pub logs --bootstrap ocean.thunder.falcon --subscribers 2")]
    Pub(PubArgs),
    /// Print the messages of a gossip topic, one per line, until --count or Ctrl-C.
    #[command(after_help = "Example:\n  p2pf sub news --bootstrap ocean.thunder.falcon --count 1")]
    Sub(SubArgs),
    /// This node's NAT as peers see it: the reflexive (public) address of its QUIC
    /// socket, the mapping behaviour (RFC 5780) and the observations behind them.
    #[command(after_help = "Example:\n  \
        p2pf nat --bootstrap ocean.thunder.falcon --bootstrap <peer id>@198.51.100.7:9000 --json")]
    Nat(NatArgs),
    /// MCP tools in the network: found through the DHT, called with failover.
    #[command(subcommand)]
    Mcp(McpCommand),
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
    /// [default: `[::]:0`]
    #[arg(long, short, value_name = "ADDR", value_parser = parse_addr)]
    pub listen: Option<SocketAddr>,
    /// A peer to join the network through: `<peer id>@<address>` or an address alone
    /// (numbers or three words; its id is learned on first contact). Repeatable.
    #[arg(long, short, value_name = "PEER")]
    pub bootstrap: Vec<PeerTarget>,
    /// Longest a dial to one bootstrap peer may take, in seconds. [default: 10]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=300))]
    pub dial_timeout: Option<u64>,
    /// Offer a built-in MCP tool to the network (`reverse`, `echo`), published on the DHT.
    /// Repeatable.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(crate::tools::BUILTIN))]
    pub tool: Vec<String>,
    /// Serve the node's metrics (OpenMetrics text, for Prometheus) at
    /// `http://ADDR/metrics`, e.g. `127.0.0.1:9100`. Meant for a trusted network.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Serve an MCP gateway (Streamable HTTP, clients use `http://ADDR/mcp`) for ordinary
    /// MCP clients: this node's tools, and the network's tools carrying an `--mcp-expose`
    /// tag, called with failover.
    #[arg(long, value_name = "ADDR")]
    pub mcp_http: Option<SocketAddr>,
    /// A capability tag whose tools in the network the MCP gateway lists (as
    /// `<provider>.<tool>` and `any.<tool>`). Repeatable. [default: p2pf]
    #[arg(long, value_name = "TAG", requires = "mcp_http")]
    pub mcp_expose: Vec<String>,
    /// Offer relay service: peers behind NATs that cannot be punched reserve a slot here
    /// and are reached through it (end-to-end encrypted; this node sees ciphertext only).
    #[arg(long)]
    pub relay: bool,
    /// Do not find or announce nodes on the local link over mDNS (on by default; never on
    /// loopback listen addresses).
    #[arg(long)]
    pub no_mdns: bool,
    /// Choose an IPv6 path automatically: native IPv6, else the P2P overlay (a TUN device
    /// with this node's key-derived address; needs root). Each choice is logged and, with
    /// `--json`, printed as a `tunnel_selected` event with every rejected alternative.
    #[arg(long)]
    pub tunneling: bool,
}

impl NodeArgs {
    /// Fills what the command line left unset from the `[node]` table.
    pub fn merge(&mut self, cfg: &crate::config::NodeConfig) -> Result<(), crate::CliError> {
        if self.listen.is_none() {
            if let Some(l) = &cfg.listen {
                self.listen =
                    crate::config::each("node.listen", std::slice::from_ref(l), parse_addr)?.pop();
            }
        }
        if self.bootstrap.is_empty() {
            self.bootstrap = crate::config::each("node.bootstrap", &cfg.bootstrap, |s| s.parse())?;
        }
        self.dial_timeout = self.dial_timeout.or(cfg.dial_timeout);
        if self.metrics.is_none() {
            if let Some(m) = &cfg.metrics {
                self.metrics =
                    crate::config::each("node.metrics", std::slice::from_ref(m), parse_socket)?
                        .pop();
            }
        }
        if self.mcp_http.is_none() {
            if let Some(m) = &cfg.mcp_http {
                self.mcp_http =
                    crate::config::each("node.mcp_http", std::slice::from_ref(m), parse_socket)?
                        .pop();
            }
        }
        if self.mcp_expose.is_empty() {
            self.mcp_expose = cfg.mcp_expose.clone();
        }
        self.relay |= cfg.relay.unwrap_or(false);
        self.no_mdns |= cfg.mdns == Some(false);
        self.tunneling |= cfg.tunneling.unwrap_or(false);
        if self.tool.is_empty() {
            for t in &cfg.tools {
                if !crate::tools::BUILTIN.contains(&t.as_str()) {
                    return Err(crate::CliError::Usage(format!(
                        "configuration key node.tools: no built-in tool '{t}' (there are: {})",
                        crate::tools::BUILTIN.join(", ")
                    )));
                }
            }
            self.tool = cfg.tools.clone();
        }
        Ok(())
    }

    /// The listen address (default `[::]:0`, dual-stack).
    pub fn listen(&self) -> SocketAddr {
        self.listen
            .unwrap_or(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)))
    }

    /// The tags the MCP gateway exposes (default `p2pf`, the built-in tools' tag).
    pub fn mcp_expose(&self) -> Vec<String> {
        if self.mcp_expose.is_empty() {
            vec!["p2pf".to_owned()]
        } else {
            self.mcp_expose.clone()
        }
    }

    /// The dial timeout (default 10 s).
    pub fn dial_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.dial_timeout.unwrap_or(10))
    }
}

/// `p2pf ping …`
#[derive(Debug, Args)]
pub struct PingArgs {
    /// The peer: `<peer id>@<address>`, an address alone (numbers or three words), or a
    /// peer id alone (found through the DHT: give --bootstrap).
    pub peer: PingTarget,
    /// A peer to join the network through first: `<peer id>@<address>` or an address
    /// (numbers or three words). Repeatable; needed when PEER is a bare peer id.
    #[arg(long, short, value_name = "PEER")]
    pub bootstrap: Vec<PeerTarget>,
    /// Longest the dial may take, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub dial_timeout: u64,
}

/// `p2pf dht …`
#[derive(Debug, Subcommand)]
pub enum DhtCommand {
    /// Sign VALUE under KEY and store it on the nodes closest to the key.
    #[command(
        after_help = "Example:\n  p2pf dht put greeting 'hello' --bootstrap ocean.thunder.falcon"
    )]
    Put {
        /// The record's name (its DHT key is the SHA-256 of it).
        key: String,
        /// The value (text).
        value: String,
        /// How long the record lives, in seconds.
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        ttl: u64,
        /// How to join the network.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the nodes that announced they provide KEY (provider records, signed by each
    /// provider, with the addresses it gave); exit code 4 if there are none. The MCP
    /// registry announces each tool under `p2pf/mcp/tool/<name>`.
    #[command(
        after_help = "Example:\n  p2pf dht providers p2pf/mcp/tool/reverse --bootstrap ocean.thunder.falcon --json"
    )]
    Providers {
        /// The name (its DHT key is the SHA-256 of it).
        key: String,
        /// How to join the network.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the values stored under KEY (newest first); exit code 4 if there are none.
    #[command(
        after_help = "Example:\n  p2pf dht get greeting --bootstrap ocean.thunder.falcon --json"
    )]
    Get {
        /// The record's name.
        key: String,
        /// How to join the network.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `p2pf pub …`
#[derive(Debug, Args)]
pub struct PubArgs {
    /// The topic.
    pub topic: String,
    /// The message; without one, each line of stdin is a message.
    pub message: Vec<String>,
    /// Publish once this many subscribers are known, and wait for their acknowledgements.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub subscribers: u16,
    /// How to join the network.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `p2pf nat …`
#[derive(Debug, Args)]
pub struct NatArgs {
    /// How long to collect observations, in seconds, unless two observers on different
    /// IP addresses answered before (the mapping behaviour needs two).
    #[arg(long, value_name = "SECS", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub wait: u64,
    /// How to join the network (every bootstrap peer is an observer).
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `p2pf sub …`
#[derive(Debug, Args)]
pub struct SubArgs {
    /// The topic.
    pub topic: String,
    /// Exit after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
    /// How to join the network.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `p2pf mcp …`
#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Tools found through the DHT, by name or tag (default: the tag `p2pf` of the built-in
    /// tools); exit code 4 if none.
    #[command(
        after_help = "Example:\n  p2pf mcp list --tool reverse --bootstrap ocean.thunder.falcon"
    )]
    List {
        /// Providers of this tool.
        #[arg(long)]
        tool: Option<String>,
        /// Tools carrying this tag.
        #[arg(long, conflicts_with = "tool")]
        tag: Option<String>,
        /// How to join the network.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Call TOOL at the best provider, failing over to the next; exit code 4 if no node
    /// provides it.
    #[command(
        after_help = "Example:\n  p2pf mcp call reverse --args '{\"text\":\"hello\"}' --bootstrap ocean.thunder.falcon"
    )]
    Call {
        /// The tool.
        tool: String,
        /// Its arguments, a JSON object.
        #[arg(long, default_value = "{}", value_parser = parse_json_args)]
        args: JsonArgs,
        /// Only this provider.
        #[arg(long, value_parser = parse_peer)]
        peer: Option<p2p_foundation::PeerId>,
        /// How to join the network.
        #[command(flatten)]
        client: ClientArgs,
    },
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

/// Reads a socket address as numbers, three words or a multiaddr (for clap), with
/// [`p2p_foundation::parse_addr`].
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    p2p_foundation::parse_addr(s).map_err(|e| {
        format!("'{s}' is not an address: give numbers such as 127.0.0.1:9000 or words ({e})")
    })
}

/// Reads a socket address given as numbers (for configuration keys).
fn parse_socket(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|e| format!("'{s}' is not a socket address ({e})"))
}

/// `--args` as given: a JSON object (for clap).
#[derive(Debug, Clone)]
pub struct JsonArgs(pub p2p_foundation::mcp_crate::JsonObject);

/// Parses `--args`: it must be a JSON object.
pub fn parse_json_args(s: &str) -> Result<JsonArgs, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(o)) => Ok(JsonArgs(o)),
        Ok(_) => Err(format!(
            "'{s}' is JSON but not an object: give e.g. '{{\"text\":\"hi\"}}'"
        )),
        Err(e) => Err(format!(
            "'{s}' is not JSON ({e}): give e.g. '{{\"text\":\"hi\"}}'"
        )),
    }
}

/// Parses a peer id (for clap).
pub fn parse_peer(s: &str) -> Result<p2p_foundation::PeerId, String> {
    s.trim()
        .parse()
        .map_err(|e| format!("'{s}' is not a peer id ({e})"))
}

impl Command {
    /// The one-shot command's network options, if it is one.
    pub fn client_args_mut(&mut self) -> Option<&mut ClientArgs> {
        match self {
            Self::Dht(
                DhtCommand::Put { client, .. }
                | DhtCommand::Get { client, .. }
                | DhtCommand::Providers { client, .. },
            )
            | Self::Mcp(McpCommand::List { client, .. } | McpCommand::Call { client, .. }) => {
                Some(client)
            }
            Self::Pub(a) => Some(&mut a.client),
            Self::Sub(a) => Some(&mut a.client),
            Self::Nat(a) => Some(&mut a.client),
            _ => None,
        }
    }
}
