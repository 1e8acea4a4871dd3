//! `p2pf nat`: this machine's NAT as the network's peers see it.

use std::time::Duration;

use p2p_foundation::{MappingBehaviour, NatStatus, Observer};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::cli::NatArgs;
use crate::client;
use crate::error::CliError;
use crate::output::Output;

#[derive(Serialize)]
struct Seen {
    /// The observer's peer id, or `stun` for a configured STUN server.
    observer: String,
    observer_addr: String,
    mapped: String,
}

#[derive(Serialize)]
struct Report {
    local: String,
    reflexive: Option<String>,
    reflexive_all: Vec<String>,
    /// `endpoint_independent`, `endpoint_dependent`, or `unknown` (fewer than two
    /// observer IP addresses answered).
    mapping: &'static str,
    behind_nat: Option<bool>,
    observations: Vec<Seen>,
}

pub(crate) fn mapping_name(m: Option<MappingBehaviour>) -> &'static str {
    match m {
        Some(MappingBehaviour::EndpointIndependent) => "endpoint_independent",
        Some(_) => "endpoint_dependent",
        None => "unknown",
    }
}

impl From<&NatStatus> for Report {
    fn from(s: &NatStatus) -> Self {
        Self {
            local: s.local.to_string(),
            reflexive: s.reflexive.map(|a| a.to_string()),
            reflexive_all: s.reflexive_all.iter().map(ToString::to_string).collect(),
            mapping: mapping_name(s.mapping),
            behind_nat: s.behind_nat,
            observations: s
                .observations
                .iter()
                .map(|o| Seen {
                    observer: match o.observer {
                        Observer::Peer(p) => p.to_string(),
                        Observer::StunServer => "stun".to_owned(),
                    },
                    observer_addr: o.observer_addr.to_string(),
                    mapped: o.mapped.to_string(),
                })
                .collect(),
        }
    }
}

pub(crate) async fn run(out: Output, args: &NatArgs) -> Result<(), CliError> {
    let (node, _) = client::start(&args.client).await?;
    let mut events = node.peer_events();
    let _progress = crate::progress::Progress::start("collecting observations of this node");
    let deadline = tokio::time::sleep(Duration::from_secs(args.wait));
    tokio::pin!(deadline);
    // Until the mapping is known (two observer IPs answered) or the wait is over.
    while node.nat_status().mapping.is_none() {
        tokio::select! {
            () = &mut deadline => break,
            e = events.recv() => if let Err(RecvError::Closed) = e { break },
        }
    }
    let status = node.nat_status();
    node.shutdown().await;
    if status.observations.is_empty() {
        return Err(CliError::NotFound(format!(
            "no peer observed this node's address within {}s (the bootstrap peers answer \
             STUN on their QUIC port; is UDP to them blocked? raise --wait)",
            args.wait
        )));
    }
    let report = Report::from(&status);
    out.emit(&report, |r| {
        let mut s = format!(
            "local      {}\nreflexive  {}\nmapping    {}",
            r.local,
            r.reflexive.as_deref().unwrap_or("unknown"),
            r.mapping.replace('_', "-")
        );
        s.push_str(match r.behind_nat {
            Some(true) => "\nbehind a NAT: yes",
            Some(false) => "\nbehind a NAT: no (peers see the local address)",
            None => "\nbehind a NAT: cannot tell (listening on a wildcard address)",
        });
        for o in &r.observations {
            s.push_str(&format!(
                "\n  {} at {} sees {}",
                o.observer, o.observer_addr, o.mapped
            ));
        }
        s
    });
    Ok(())
}
