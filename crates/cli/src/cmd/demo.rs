//! `p2pf demo`: a real network on loopback, every layer exercised, each step measured.
//!
//! Each node is a full [`P2PNode`] with its own QUIC endpoint on `127.0.0.1`. The steps:
//! nodes join by the three words of the first node's address; two nodes offer the MCP
//! tool `reverse`; the last node discovers it through the DHT and calls it; the provider
//! that answered shuts down and the next call fails over to the other; a gossip message
//! reaches every remaining node. The demo exits 0 only if every step worked.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p2p_foundation::mcp_crate::{JsonObject, Query};
use p2p_foundation::{P2PNode, PeerId};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cli::DemoArgs;
use crate::error::CliError;
use crate::output::Output;
use crate::target::{self, PeerTarget};

/// The tool the two providers offer.
const TOOL: &str = "reverse";
/// The gossip topic every node subscribes to.
const TOPIC: &str = "p2pf/demo";
/// How long a dial to a node that is gone may take before failing over.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the publisher waits for every node's signed delivery acknowledgement.
const ACK_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize)]
struct NodeInfo {
    index: usize,
    peer_id: String,
    addr: SocketAddr,
    words: String,
}

#[derive(Debug, Clone, Serialize)]
struct StepReport {
    step: &'static str,
    ok: bool,
    ms: f64,
    detail: String,
}

#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    nodes: &'a [NodeInfo],
    steps: &'a [StepReport],
    total_ms: f64,
}

/// Runs the steps in order, timing each, stopping at the first failure.
struct Steps {
    out: Output,
    timeout: Duration,
    done: Vec<StepReport>,
}

impl Steps {
    async fn run<T>(
        &mut self,
        step: &'static str,
        fut: impl Future<Output = Result<(T, String), String>>,
    ) -> Result<T, CliError> {
        let start = Instant::now();
        let progress = crate::progress::Progress::start(step);
        let outcome = match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!("did not finish within {:?}", self.timeout)),
        };
        let ms = start.elapsed().as_secs_f64() * 1e3;
        drop(progress);
        let (ok, detail, value) = match outcome {
            Ok((v, detail)) => (true, detail, Some(v)),
            Err(e) => (false, e, None),
        };
        self.out.say(format!(
            "{} {step:<22} {ms:>8.1} ms  {detail}",
            if ok { "ok  " } else { "FAIL" }
        ));
        self.done.push(StepReport {
            step,
            ok,
            ms,
            detail: detail.clone(),
        });
        value.ok_or_else(|| CliError::Failed(format!("demo step '{step}' failed: {detail}")))
    }
}

/// Every demo node shares 127.0.0.1, and the transport limits handshakes per source IP
/// (burst 40 by default): each join costs the seed three (learning the id at its words
/// over QUIC and TCP, then the pinned dial), so the limit is sized to the network.
fn node_config(nodes: usize) -> p2p_foundation::transport::Config {
    let mut c = p2p_foundation::transport::Config::default();
    c.handshake_timeout = HANDSHAKE_TIMEOUT;
    let joins = u32::try_from(nodes).unwrap_or(u32::MAX).saturating_mul(4);
    c.handshake_burst_per_ip = c.handshake_burst_per_ip.max(joins);
    c.handshakes_per_ip_per_sec = c.handshakes_per_ip_per_sec.max(f64::from(joins));
    c
}

async fn start_node(nodes: usize) -> Result<P2PNode, p2p_foundation::Error> {
    P2PNode::builder()
        .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
        .transport_config(node_config(nodes))
        .with_mcp_server()
        .build()
        .await
}

/// Starts `n` nodes at once; in index order.
async fn start_nodes(n: usize) -> Result<(Vec<P2PNode>, String), String> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        set.spawn(async move { (i, start_node(n).await) });
    }
    let mut nodes: Vec<Option<P2PNode>> = (0..n).map(|_| None).collect();
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, Ok(node))) => nodes[i] = Some(node),
            Ok((i, Err(e))) => {
                first_error.get_or_insert(format!("node {i}: {e}"));
            }
            Err(e) => {
                first_error.get_or_insert(format!("a node task failed: {e}"));
            }
        }
    }
    let nodes: Vec<P2PNode> = nodes.into_iter().flatten().collect();
    if let Some(e) = first_error {
        for node in nodes {
            node.shutdown().await;
        }
        return Err(e);
    }
    Ok((nodes, format!("{n} QUIC endpoints on 127.0.0.1")))
}

fn text_args(text: &str) -> JsonObject {
    let mut args = JsonObject::new();
    args.insert("text".into(), Value::String(text.into()));
    args
}

/// Calls `reverse("hello p2p")` from `node`, routed through the network, and checks the
/// answer; returns the serving node's index and how many providers failed before it.
async fn call_reverse(node: &P2PNode) -> Result<(usize, usize), String> {
    let routed = node
        .mcp()
        .call(TOOL, text_args("hello p2p"))
        .await
        .map_err(|e| e.to_string())?;
    let out = routed
        .result
        .structured_content
        .as_ref()
        .ok_or("the answer has no structured content")?;
    if out["reversed"] != json!("p2p olleh") {
        return Err(format!("wrong answer {out}"));
    }
    let served = out["served_by"]
        .as_u64()
        .ok_or_else(|| format!("answer without served_by: {out}"))?;
    Ok((served as usize, routed.failovers))
}

pub(crate) async fn run(out: Output, args: &DemoArgs) -> Result<(), CliError> {
    let n = usize::from(args.nodes);
    let started = Instant::now();
    let mut steps = Steps {
        out,
        timeout: Duration::from_secs(args.step_timeout),
        done: Vec::new(),
    };
    out.say(format!(
        "p2pf demo: {n} nodes on loopback, each its own QUIC endpoint\n"
    ));
    let mut nodes = steps.run("start nodes", start_nodes(n)).await?;
    let infos: Vec<NodeInfo> = nodes
        .iter()
        .enumerate()
        .filter_map(|(index, node)| {
            let addr = node.local_addr().ok()?;
            Some(NodeInfo {
                index,
                peer_id: node.peer_id().to_string(),
                addr,
                words: node.word_address().ok()?.to_string(),
            })
        })
        .collect();
    for i in &infos {
        out.say(format!(
            "     node {:<2} {:<32} {:<21} {}",
            i.index,
            i.words,
            i.addr,
            &i.peer_id[..12.min(i.peer_id.len())]
        ));
    }
    let result = exercise(&mut steps, &mut nodes, &infos).await;
    let shutdown = steps
        .run("shut down", async {
            let count = nodes.len();
            for node in nodes.drain(..) {
                node.shutdown().await;
            }
            Ok(((), format!("{count} nodes closed their connections")))
        })
        .await;
    let ok = result.is_ok() && shutdown.is_ok();
    let total_ms = started.elapsed().as_secs_f64() * 1e3;
    let report = Report {
        ok,
        nodes: &infos,
        steps: &steps.done,
        total_ms,
    };
    out.emit(&report, |r| {
        let mut s = format!("\n{:<22} {:>12}  result\n", "step", "time");
        for st in r.steps {
            s.push_str(&format!(
                "{:<22} {:>9.1} ms  {}\n",
                st.step,
                st.ms,
                if st.ok { "ok" } else { "FAILED" }
            ));
        }
        s.push_str(&format!(
            "{:<22} {:>9.1} ms  {}",
            "total",
            r.total_ms,
            if r.ok { "every step worked" } else { "FAILED" }
        ));
        s
    });
    result.and(shutdown)
}

async fn exercise(
    steps: &mut Steps,
    nodes: &mut Vec<P2PNode>,
    infos: &[NodeInfo],
) -> Result<(), CliError> {
    let n = nodes.len();
    let seed_words = infos
        .first()
        .map(|i| i.words.clone())
        .ok_or_else(|| CliError::Failed("no node started".into()))?;
    let seed_id = nodes[0].peer_id();

    // Everyone joins through the first node, knowing only its three words.
    steps
        .run("bootstrap by words", async {
            let target: PeerTarget = seed_words.parse()?;
            let mut tables = Vec::new();
            for node in &nodes[1..] {
                let joined = target::join(node, &[target], HANDSHAKE_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?;
                if joined.peers.first().map(|p| p.0) != Some(seed_id) {
                    return Err(format!("{seed_words} answered as another peer"));
                }
                tables.push(joined.routing_table);
            }
            let min = tables.iter().min().copied().unwrap_or(0);
            Ok((
                (),
                format!(
                    "{} nodes joined via {seed_words}; routing tables >= {min}",
                    n - 1
                ),
            ))
        })
        .await?;

    // Two providers of the same tool, published on the DHT.
    let providers = [1, 2];
    steps
        .run("register MCP tool", async {
            for &i in &providers {
                let mcp = nodes[i].mcp();
                mcp.register_tool(crate::tools::reverse(json!(i)))
                    .map_err(|e| e.to_string())?;
                mcp.register_service("demo-text", &[TOOL])
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok((
                (),
                format!("'{TOOL}' on nodes 1 and 2, service records on the DHT"),
            ))
        })
        .await?;

    let caller = n - 1;
    let expected: BTreeSet<PeerId> = providers.iter().map(|&i| nodes[i].peer_id()).collect();
    steps
        .run("discover via DHT", async {
            let found = nodes[caller]
                .mcp()
                .discover(&Query::tool(TOOL))
                .await
                .map_err(|e| e.to_string())?;
            let got: BTreeSet<PeerId> = found.iter().map(|c| c.provider).collect();
            if got != expected {
                return Err(format!(
                    "found {} provider(s), expected nodes 1 and 2",
                    got.len()
                ));
            }
            Ok((
                (),
                format!("node {caller} found both providers of '{TOOL}'"),
            ))
        })
        .await?;

    let first = steps
        .run("call tool", async {
            let (served, _) = call_reverse(&nodes[caller]).await?;
            Ok((served, format!("node {served} answered \"p2p olleh\"")))
        })
        .await?;

    // The provider that answered goes away; the next call must fail over.
    let gone = nodes.remove(first);
    gone.shutdown().await;
    let caller = caller - 1; // indices above `first` moved down by one
    steps
        .run("failover call", async {
            let (served, failovers) = call_reverse(&nodes[caller]).await?;
            if served == first {
                return Err(format!("node {first} is shut down but answered"));
            }
            Ok((
                (),
                format!(
                    "node {first} shut down; node {served} answered after {failovers} failover(s)"
                ),
            ))
        })
        .await?;

    // A message from the first node reaches every other node.
    steps
        .run("gossip to all", async {
            let mut subs = Vec::new();
            for node in &nodes[1..] {
                subs.push(node.subscribe(TOPIC).await.map_err(|e| e.to_string())?);
            }
            // Everyone joined through node 0, so it is connected to all subscribers.
            nodes[0]
                .wait_for_topic_peers(TOPIC, subs.len())
                .await
                .map_err(|e| e.to_string())?;
            let want = u16::try_from(subs.len()).map_err(|e| e.to_string())?;
            // Each node's arrival time is taken by a task waiting on its subscription.
            let sent = Instant::now();
            let mut arrivals = tokio::task::JoinSet::new();
            for (i, mut sub) in subs.into_iter().enumerate() {
                arrivals.spawn(async move { (i + 1, sub.recv().await, sent.elapsed()) });
            }
            let delivery = nodes[0]
                .publish_confirmed(TOPIC, b"hello, every node".to_vec(), want, ACK_DEADLINE)
                .await
                .map_err(|e| e.to_string())?;
            let confirmed = sent.elapsed();
            if !delivery.complete {
                return Err(format!(
                    "{} of {want} nodes confirmed delivery within {ACK_DEADLINE:?}",
                    delivery.ackers.len()
                ));
            }
            let mut slowest = Duration::ZERO;
            let mut received = 0;
            while let Some(joined) = arrivals.join_next().await {
                let (i, msg, at) = joined.map_err(|e| e.to_string())?;
                let msg = msg.ok_or_else(|| format!("node {i} stopped before the message came"))?;
                if msg.id != delivery.id || msg.data() != b"hello, every node" {
                    return Err(format!("node {i} received another message"));
                }
                slowest = slowest.max(at);
                received += 1;
            }
            Ok((
                (),
                format!(
                    "delivered to {received}/{want} nodes, last after {:.1} ms; {} signed acks in {:.1} ms",
                    slowest.as_secs_f64() * 1e3,
                    delivery.ackers.len(),
                    confirmed.as_secs_f64() * 1e3
                ),
            ))
        })
        .await?;
    Ok(())
}
