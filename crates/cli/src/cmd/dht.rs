//! `p2pf dht put|get|providers`: signed records and provider records on the network's DHT.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p2p_foundation::Key;
use serde::Serialize;

use crate::cli::DhtCommand;
use crate::client::{self, ClientArgs};
use crate::error::CliError;
use crate::output::Output;

#[derive(Serialize)]
struct Put {
    key: String,
    dht_key: String,
    seq: u64,
    stored_on: usize,
}

#[derive(Serialize)]
struct Found {
    value: String,
    signer: String,
    seq: u64,
}

#[derive(Serialize)]
struct Get {
    key: String,
    records: Vec<Found>,
}

#[derive(Serialize)]
struct Provider {
    peer_id: String,
    addrs: Vec<String>,
    seq: u64,
}

#[derive(Serialize)]
struct Providers {
    key: String,
    providers: Vec<Provider>,
}

/// The DHT key of a record named `name`: SHA-256 of the name.
fn key_of(name: &str) -> Key {
    Key::for_record(name.as_bytes())
}

pub(crate) async fn run(out: Output, cmd: &DhtCommand) -> Result<(), CliError> {
    let args: &ClientArgs = match cmd {
        DhtCommand::Put { client, .. }
        | DhtCommand::Get { client, .. }
        | DhtCommand::Providers { client, .. } => client,
    };
    let (node, _) = client::start(args).await?;
    let result = client::bounded(args, "the DHT operation", async {
        match cmd {
            DhtCommand::Put {
                key, value, ttl, ..
            } => {
                // Milliseconds since the epoch: a later put supersedes an earlier one.
                let seq = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                let stored_on = node
                    .dht()
                    .put(
                        node.keypair(),
                        key_of(key),
                        value.as_bytes().to_vec(),
                        seq,
                        Duration::from_secs(*ttl),
                    )
                    .await?;
                if stored_on == 0 {
                    return Err(CliError::Failed(format!(
                        "no node accepted the record '{key}'"
                    )));
                }
                let put = Put {
                    key: key.clone(),
                    dht_key: key_of(key).to_string(),
                    seq,
                    stored_on,
                };
                out.emit(&put, |p| {
                    format!("stored '{}' on {} node(s)", p.key, p.stored_on)
                });
                Ok(())
            }
            DhtCommand::Providers { key, .. } => {
                let found = node.dht().providers(key_of(key)).await?;
                if found.is_empty() {
                    return Err(CliError::NotFound(format!(
                        "no node provides '{key}' (its records may have expired)"
                    )));
                }
                let providers = Providers {
                    key: key.clone(),
                    providers: found
                        .iter()
                        .map(|p| Provider {
                            peer_id: p.signer().to_string(),
                            addrs: p.payload().addrs.iter().map(ToString::to_string).collect(),
                            seq: p.seq(),
                        })
                        .collect(),
                };
                out.emit(&providers, |p| {
                    p.providers
                        .iter()
                        .map(|p| format!("{}  {}", p.peer_id, p.addrs.join(" ")))
                        .collect::<Vec<_>>()
                        .join("\n")
                });
                Ok(())
            }
            DhtCommand::Get { key, .. } => {
                let records = node.dht().get(key_of(key)).await?;
                if records.is_empty() {
                    return Err(CliError::NotFound(format!(
                        "no record under '{key}' (it may have expired, or was never put)"
                    )));
                }
                let get = Get {
                    key: key.clone(),
                    records: records
                        .iter()
                        .map(|r| Found {
                            value: String::from_utf8_lossy(&r.payload().value).into_owned(),
                            signer: r.signer().to_string(),
                            seq: r.seq(),
                        })
                        .collect(),
                };
                out.emit(&get, |g| {
                    g.records
                        .iter()
                        .map(|r| r.value.clone())
                        .collect::<Vec<_>>()
                        .join("\n")
                });
                Ok(())
            }
        }
    })
    .await;
    node.shutdown().await;
    result
}
