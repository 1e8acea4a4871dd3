//! The configuration file (TOML): what the flags set, every key optional; a flag given on
//! the command line wins over the file.
//!
//! ```toml
//! log_format = "json"            # --log-format
//!
//! [node]                         # p2pf node
//! listen = "0.0.0.0:9000"        # --listen (numbers or words)
//! bootstrap = ["ocean.thunder.falcon", "<peer id>@192.0.2.7:9000"]   # --bootstrap
//! dial_timeout = 10              # --dial-timeout, seconds
//! tools = ["reverse"]            # --tool
//! metrics = "127.0.0.1:9100"     # --metrics
//! mcp_http = "127.0.0.1:8080"    # --mcp-http
//! mcp_expose = ["p2pf"]          # --mcp-expose
//! relay = false                  # --relay
//! mdns = true                    # false: --no-mdns
//! tunneling = false              # --tunneling
//!
//! [client]                       # ping, dht, pub, sub, mcp
//! bootstrap = ["ocean.thunder.falcon"]   # --bootstrap
//! peer_timeout = 3               # --peer-timeout, seconds
//! ```
//!
//! The file is `--config PATH` (or `P2PF_CONFIG`), else `config.toml` in the data
//! directory if it exists. Unknown keys are refused, so a typo does not pass silently.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::CliError;
use crate::logging::LogFormat;

/// The configuration file's name inside the data directory.
pub const CONFIG_FILE: &str = "config.toml";

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Log line format.
    pub log_format: Option<LogFormat>,
    /// `p2pf node`.
    #[serde(default)]
    pub node: NodeConfig,
    /// The one-shot commands.
    #[serde(default)]
    pub client: ClientConfig,
}

/// `[node]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Listen address (numbers or words).
    pub listen: Option<String>,
    /// Bootstrap peers.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Dial timeout, seconds.
    pub dial_timeout: Option<u64>,
    /// Built-in tools to offer.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Metrics endpoint address.
    pub metrics: Option<String>,
    /// MCP gateway address.
    pub mcp_http: Option<String>,
    /// Tags of network tools the MCP gateway lists.
    #[serde(default)]
    pub mcp_expose: Vec<String>,
    /// Offer relay service.
    pub relay: Option<bool>,
    /// LAN discovery over mDNS.
    pub mdns: Option<bool>,
    /// Automatic IPv6 path selection.
    pub tunneling: Option<bool>,
}

/// `[client]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Bootstrap peers.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Peer timeout, seconds.
    pub peer_timeout: Option<u64>,
}

impl Config {
    /// Reads `explicit` (which must exist), else `config.toml` in `data_dir` if it
    /// exists, else the defaults.
    pub fn load(explicit: Option<&Path>, data_dir: &Path) -> Result<Self, CliError> {
        let path: PathBuf = match explicit {
            Some(p) => p.to_owned(),
            None => {
                let p = data_dir.join(CONFIG_FILE);
                if !p.exists() {
                    return Ok(Self::default());
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| CliError::Local {
            what: "reading the configuration file",
            path: path.clone(),
            source,
        })?;
        Self::parse(&text)
            .map_err(|e| CliError::Usage(format!("configuration file {}: {e}", path.display())))
    }

    /// Parses the TOML text; the error names the key or line that is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }
}

/// Parses every entry with `parse`, naming the key in the error.
pub fn each<T>(
    key: &str,
    values: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, CliError> {
    values
        .iter()
        .map(|v| parse(v).map_err(|e| CliError::Usage(format!("configuration key {key}: {e}"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_optional_and_unknown_keys_are_refused() {
        let empty = Config::parse("").expect("empty file");
        assert!(empty.log_format.is_none() && empty.node.bootstrap.is_empty());
        let full = Config::parse(
            "log_format = \"json\"\n[node]\nlisten = \"127.0.0.1:9000\"\nbootstrap = [\"a\"]\n\
             dial_timeout = 4\ntools = [\"reverse\"]\nmetrics = \"127.0.0.1:9100\"\n\
             mcp_http = \"127.0.0.1:8080\"\nmcp_expose = [\"text\"]\nrelay = true\n[client]\nbootstrap = [\"b\"]\npeer_timeout = 2\n",
        )
        .expect("full file");
        assert_eq!(full.log_format, Some(LogFormat::Json));
        assert_eq!(full.node.listen.as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(
            (full.node.dial_timeout, full.client.peer_timeout),
            (Some(4), Some(2))
        );
        assert_eq!(full.node.metrics.as_deref(), Some("127.0.0.1:9100"));
        assert_eq!(full.node.mcp_http.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(
            (full.node.mcp_expose.len(), full.node.relay),
            (1, Some(true))
        );
        let err = Config::parse("[node]\nlisen = \"x\"\n").expect_err("typo");
        assert!(err.contains("lisen"), "{err}");
    }
}
