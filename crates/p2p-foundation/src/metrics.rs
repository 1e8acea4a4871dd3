//! The node's metrics in the OpenMetrics text format (what Prometheus scrapes).
//!
//! Two kinds of series: instruments the node updates as it works (connections established,
//! dial outcomes, DHT and MCP latency histograms), and counters the components keep
//! themselves (transport bytes and handshake failures, gossip, NAT, relay, DHT service),
//! read when the metrics are encoded. Every series is named `p2pf_…`; the full list is in
//! `docs/metrics.md`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use p2p_foundation_transport::PathKind;

use crate::net::Net;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Label sets: a list of `(name, value)` pairs.
type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Distinct `tool` label values kept; calls to further tools are counted as `other`, so
/// a node calling many tool names cannot grow its series without bound.
pub(crate) const MAX_TOOL_LABELS: usize = 64;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~32 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn hops_histogram() -> Histogram {
    Histogram::new([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0])
}

/// Every path, in the order of [`Snapshot::open_by_path`].
pub(crate) const PATHS: [PathKind; 3] = [PathKind::Quic, PathKind::Tcp, PathKind::Stream];

/// A path's label value.
pub(crate) fn path_label(path: PathKind) -> &'static str {
    match path {
        PathKind::Quic => "quic",
        PathKind::Tcp => "tcp",
        PathKind::Stream => "relayed",
    }
}

/// Longest label value taken from a name (longer ones are cut).
const MAX_LABEL_LEN: usize = 64;

/// `name` as a label value the text format carries verbatim: letters, digits and
/// `_ - . : /` kept, anything else (quotes, backslashes, newlines, which the encoder does
/// not escape) replaced by `_`, at most [`MAX_LABEL_LEN`] characters.
pub(crate) fn label_value(name: &str) -> String {
    name.chars()
        .take(MAX_LABEL_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.:/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What a finished DHT operation or MCP call counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It worked.
    Ok,
    /// An MCP tool answered with `isError`.
    ToolError,
    /// It failed (no provider, unreachable, timeout, refused).
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::Failed => "failed",
        }
    }
}

/// The instruments the node updates as it works.
#[derive(Debug)]
pub(crate) struct Instruments {
    connections_established: Family<Labels, Counter>,
    dials: Family<Labels, Counter>,
    dht_seconds: HistogramFamily,
    dht_operations: Family<Labels, Counter>,
    dht_hops: Histogram,
    mcp_seconds: HistogramFamily,
    mcp_calls: Family<Labels, Counter>,
    tools: Mutex<HashSet<String>>,
}

impl Default for Instruments {
    fn default() -> Self {
        Self {
            connections_established: Family::default(),
            dials: Family::default(),
            dht_seconds: Family::new_with_constructor(latency_histogram),
            dht_operations: Family::default(),
            dht_hops: hops_histogram(),
            mcp_seconds: Family::new_with_constructor(latency_histogram),
            mcp_calls: Family::default(),
            tools: Mutex::new(HashSet::new()),
        }
    }
}

impl Instruments {
    /// An authenticated connection was added (before duplicate resolution).
    pub(crate) fn connection_established(&self, outbound: bool, path: PathKind) {
        let direction = if outbound { "outbound" } else { "inbound" };
        self.connections_established
            .get_or_create(&vec![
                ("direction", direction.to_owned()),
                ("path", path_label(path).to_owned()),
            ])
            .inc();
    }

    /// A dial ended: `how` is `direct`, `punched`, `relayed`, `reversed` or `failed`.
    pub(crate) fn dial(&self, how: &'static str) {
        self.dials
            .get_or_create(&vec![("outcome", how.to_owned())])
            .inc();
    }

    /// A DHT operation (`get`, `put`, `provide`, `providers`, `find_node`) ended.
    pub(crate) fn dht(&self, op: &'static str, took: Duration, ok: bool) {
        let outcome = if ok { Outcome::Ok } else { Outcome::Failed };
        self.dht_seconds
            .get_or_create(&vec![("op", op.to_owned())])
            .observe(took.as_secs_f64());
        self.dht_operations
            .get_or_create(&vec![
                ("op", op.to_owned()),
                ("outcome", outcome.label().to_owned()),
            ])
            .inc();
    }

    /// A lookup needed `hops` sequential rounds.
    pub(crate) fn dht_hops(&self, hops: u32) {
        self.dht_hops.observe(f64::from(hops));
    }

    /// An MCP call this node made ended.
    pub(crate) fn mcp_call(&self, tool: &str, took: Duration, outcome: Outcome) {
        let tool = self.tool_label(tool);
        self.mcp_seconds
            .get_or_create(&vec![("tool", tool.clone())])
            .observe(took.as_secs_f64());
        self.mcp_calls
            .get_or_create(&vec![
                ("tool", tool),
                ("outcome", outcome.label().to_owned()),
            ])
            .inc();
    }

    /// `tool` (made safe as a label value) while fewer than [`MAX_TOOL_LABELS`] names are
    /// in use, else `other`.
    fn tool_label(&self, tool: &str) -> String {
        let tool = &label_value(tool);
        let mut tools = self.tools.lock().unwrap_or_else(|e| e.into_inner());
        if tools.contains(tool) {
            return tool.to_owned();
        }
        if tools.len() < MAX_TOOL_LABELS {
            tools.insert(tool.to_owned());
            return tool.to_owned();
        }
        "other".to_owned()
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "connections_established",
            "Authenticated connections added, by direction and path (quic, tcp, relayed)",
            self.connections_established.clone(),
        );
        r.register(
            "dials",
            "Dials by how they ended: direct, punched (NAT hole punch), relayed, reversed (the peer dialled back), failed",
            self.dials.clone(),
        );
        r.register_with_unit(
            "dht_operation",
            "DHT operations this node started, by op, from start to result",
            Unit::Seconds,
            self.dht_seconds.clone(),
        );
        r.register(
            "dht_operations",
            "DHT operations this node started, by op and outcome",
            self.dht_operations.clone(),
        );
        r.register(
            "dht_lookup_hops",
            "Sequential request rounds of FIND_NODE lookups",
            self.dht_hops.clone(),
        );
        r.register_with_unit(
            "mcp_call",
            "MCP tool calls this node made, by tool, including failover",
            Unit::Seconds,
            self.mcp_seconds.clone(),
        );
        r.register(
            "mcp_calls",
            "MCP tool calls this node made, by tool and outcome (ok, tool_error, failed)",
            self.mcp_calls.clone(),
        );
    }
}

/// Runs one DHT operation of the node, recording its latency and outcome as `op` (in
/// the node's instruments, while it runs).
pub(crate) async fn timed_dht<T, E>(
    net: &Weak<Net>,
    op: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = std::time::Instant::now();
    let result = work.await;
    if let Some(net) = net.upgrade() {
        net.instruments.dht(op, started.elapsed(), result.is_ok());
    }
    result
}

/// Counters and gauges the components keep, read at encoding time.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) transport: p2p_foundation_transport::MetricsSnapshot,
    /// Connections open now, by [`PATHS`].
    pub(crate) open_by_path: [u64; 3],
    pub(crate) node: crate::NodeStats,
    pub(crate) gossip: Option<p2p_foundation_gossip::Metrics>,
    pub(crate) dht: Option<(p2p_foundation_dht::Stats, usize)>,
    pub(crate) nat: crate::NatStats,
    pub(crate) nat_status: Option<crate::NatStatus>,
    pub(crate) relay: crate::RelayStats,
    /// LAN discovery's counters, when it runs.
    pub(crate) lan: Option<crate::LanStats>,
}

fn counter(r: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    r.register(name, help, c);
}

fn gauge(r: &mut Registry, name: &str, help: &str, value: u64) {
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    r.register(name, help, g);
}

fn counters(r: &mut Registry, name: &str, help: &str, label: &'static str, values: &[(&str, u64)]) {
    let f: Family<Labels, Counter> = Family::default();
    for (v, n) in values {
        f.get_or_create(&vec![(label, (*v).to_owned())]).inc_by(*n);
    }
    r.register(name, help, f);
}

fn gauges(r: &mut Registry, name: &str, help: &str, label: &'static str, values: &[(&str, u64)]) {
    let f: Family<Labels, Gauge> = Family::default();
    for (v, n) in values {
        f.get_or_create(&vec![(label, (*v).to_owned())])
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
    r.register(name, help, f);
}

impl Snapshot {
    fn register(&self, r: &mut Registry) {
        let t = &self.transport;
        let open: Vec<(&str, u64)> = PATHS
            .iter()
            .zip(self.open_by_path)
            .map(|(p, n)| (path_label(*p), n))
            .collect();
        gauges(
            r,
            "connections",
            "Peers connected now, by path",
            "path",
            &open,
        );
        gauge(
            r,
            "connected_peers",
            "Peers with a live connection",
            self.node.connected_peers as u64,
        );
        counters(
            r,
            "transport_bytes",
            "Application bytes over streams and datagrams, by direction",
            "direction",
            &[("in", t.bytes_in), ("out", t.bytes_out)],
        );
        counters(
            r,
            "handshake_failures",
            "Handshakes that failed or were refused, by reason",
            "reason",
            &[
                ("rate_limited", t.failed_rate_limited),
                ("connection_limit", t.failed_connection_limit),
                ("timeout", t.failed_timeout),
                ("peer_id_mismatch", t.failed_peer_id_mismatch),
                ("tls", t.failed_tls),
                ("transport", t.failed_transport),
            ],
        );
        counter(
            r,
            "quic_retries",
            "QUIC Initials answered with a stateless Retry (unproven source over budget)",
            t.quic_retries,
        );
        counter(
            r,
            "zero_rtt_accepted",
            "Connections that resumed with 0-RTT accepted",
            t.zero_rtt_accepted,
        );
        counter(
            r,
            "streams_unknown_protocol",
            "Inbound streams refused because their protocol is not served",
            self.node.unknown_protocol_streams,
        );
        counter(
            r,
            "duplicate_connections",
            "Connections closed because another connection to the same peer won",
            self.node.duplicate_connections,
        );
        counters(
            r,
            "dht_requests_served",
            "DHT requests from peers, answered or refused",
            "outcome",
            &[
                ("answered", self.node.kad_served),
                ("refused", self.node.kad_refused),
            ],
        );
        if let Some((_, table)) = &self.dht {
            gauge(
                r,
                "dht_routing_table_peers",
                "Contacts in the routing table",
                *table as u64,
            );
        }
        if let Some(g) = &self.gossip {
            counters(
                r,
                "gossip_messages",
                "Gossip messages by what happened to them",
                "kind",
                &[
                    ("delivered", g.delivered),
                    ("published", g.published),
                    ("duplicate", g.duplicates),
                    ("invalid_signature", g.invalid_signature),
                    ("rejected", g.rejected),
                    ("repaired", g.repaired),
                ],
            );
            counters(
                r,
                "gossip_frames_dropped",
                "Gossip frames dropped, by reason",
                "reason",
                &[
                    ("malformed", g.malformed_frames),
                    ("oversized", g.oversized_frames),
                    ("rate_limited", g.rate_limited),
                    ("graylisted", g.graylisted),
                ],
            );
        }
        let n = &self.nat;
        counters(
            r,
            "nat_punches",
            "Hole punches on the QUIC socket, by outcome",
            "outcome",
            &[
                ("started", n.punches_started),
                ("succeeded", n.punches_succeeded),
                ("failed", n.punches_failed),
            ],
        );
        counter(
            r,
            "nat_observations",
            "Observations of this node's reflexive address received from peers",
            n.observations,
        );
        counter(
            r,
            "stun_answered",
            "STUN Binding requests answered on the QUIC port",
            n.stun_answered,
        );
        if let Some(status) = &self.nat_status {
            let mapping = match status.mapping {
                Some(p2p_foundation_nat::MappingBehaviour::EndpointIndependent) => {
                    "endpoint_independent"
                }
                Some(_) => "endpoint_dependent",
                None => "unknown",
            };
            gauges(
                r,
                "nat_mapping",
                "1 for the mapping behaviour the observations show",
                "behaviour",
                &[(mapping, 1)],
            );
        }
        if let Some(o) = &self.node.overlay {
            counters(
                r,
                "overlay_packets",
                "IPv6 overlay packets carried, by direction (in: from peers to the TUN device)",
                "direction",
                &[("in", o.packets_in), ("out", o.packets_out)],
            );
            counters(
                r,
                "overlay_bytes",
                "IPv6 overlay packet bytes carried, by direction",
                "direction",
                &[("in", o.bytes_in), ("out", o.bytes_out)],
            );
            let dropped: Vec<(&str, u64)> = crate::OverlayDropReason::ALL
                .iter()
                .map(|r| (r.name(), o.dropped_for(*r)))
                .collect();
            counters(
                r,
                "overlay_dropped",
                "IPv6 overlay packets dropped, by reason",
                "reason",
                &dropped,
            );
            counters(
                r,
                "overlay_icmp_errors",
                "ICMPv6 errors the overlay sent to the host, by type (rate_limited: not sent)",
                "type",
                &[
                    ("packet_too_big", o.packet_too_big),
                    ("unreachable", o.unreachable),
                    ("rate_limited", o.icmp_rate_limited),
                ],
            );
        }
        if let Some(d) = &self.node.dslite {
            counters(
                r,
                "dslite_packets",
                "IPv4 packets the DS-Lite B4 carried, by direction (in: from the AFTR to the TUN device)",
                "direction",
                &[("in", d.packets_in), ("out", d.packets_out)],
            );
            counters(
                r,
                "dslite_bytes",
                "IPv4 packet bytes the DS-Lite B4 carried, by direction",
                "direction",
                &[("in", d.bytes_in), ("out", d.bytes_out)],
            );
            let reasons = p2p_foundation_tunnel::endpoint::DropReason::ALL;
            let from_network: Vec<(&str, u64)> = reasons
                .iter()
                .map(|r| (r.name(), d.dropped_in_for(*r)))
                .collect();
            counters(
                r,
                "dslite_dropped_from_network",
                "Packets from the softwire the DS-Lite B4 dropped, by reason",
                "reason",
                &from_network,
            );
            let from_host: Vec<(&str, u64)> = reasons
                .iter()
                .map(|r| (r.name(), d.dropped_out_for(*r)))
                .collect();
            counters(
                r,
                "dslite_dropped_from_host",
                "Packets from the host the DS-Lite B4 dropped, by reason",
                "reason",
                &from_host,
            );
        }
        let rl = &self.relay;
        counters(
            r,
            "relay_circuits",
            "Circuits this node relayed for others, by outcome",
            "outcome",
            &[
                ("served", rl.circuits_served),
                ("refused", rl.circuits_refused),
                ("cut", rl.circuits_cut),
            ],
        );
        counter(
            r,
            "relay_bytes",
            "Bytes this node relayed between other peers",
            rl.bytes_relayed,
        );
        gauge(
            r,
            "relay_reservations_held",
            "Relays holding a reservation for this node",
            rl.reservations_held as u64,
        );
        counter(
            r,
            "relay_upgrades",
            "Relayed connections moved to a direct path",
            rl.upgrades,
        );
        counter(
            r,
            "mcp_sessions_served",
            "MCP sessions this node's server accepted from peers",
            self.node.mcp_sessions,
        );
        counters(
            r,
            "peer_records",
            "Signed peer records: this node's own stored, others' looked up and found",
            "event",
            &[
                ("published", self.node.peer_records_published),
                ("looked_up", self.node.peer_record_lookups),
                ("found", self.node.peer_records_found),
            ],
        );
        counter(
            r,
            "network_changes",
            "Changes of the host's interface addresses the node reacted to",
            self.node.network_changes,
        );
        if let Some(lan) = &self.lan {
            gauge(
                r,
                "lan_running",
                "1 while the mDNS responder runs",
                u64::from(lan.running),
            );
            counters(
                r,
                "lan_discovery",
                "LAN discovery over mDNS, by event",
                "event",
                &[
                    ("discovered", lan.discovered),
                    ("malformed", lan.malformed),
                    ("dials", lan.dials),
                    ("dials_succeeded", lan.dials_succeeded),
                    ("dials_failed", lan.dials_failed),
                    ("evicted", lan.evicted),
                ],
            );
            gauge(
                r,
                "lan_peers_remembered",
                "Peers found on the link and remembered now",
                lan.remembered as u64,
            );
        }
    }
}

/// Encodes a node's metrics as OpenMetrics text (see [`crate::P2PNode::metrics`]); cheap
/// to clone and `'static`, so an HTTP handler can hold one.
#[derive(Clone)]
pub struct MetricsHandle {
    net: Weak<Net>,
}

impl std::fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsHandle")
            .field("node_running", &(self.net.strong_count() > 0))
            .finish_non_exhaustive()
    }
}

impl MetricsHandle {
    pub(crate) fn new(net: &Arc<Net>) -> Self {
        Self {
            net: Arc::downgrade(net),
        }
    }

    /// The node's metrics now, as OpenMetrics text (ends with `# EOF`).
    ///
    /// ```no_run
    /// # async fn demo(node: p2p_foundation::P2PNode) {
    /// let text = node.metrics_handle().encode().await;
    /// assert!(text.ends_with("# EOF\n"));
    /// # }
    /// ```
    pub async fn encode(&self) -> String {
        let Some(net) = self.net.upgrade() else {
            return encode_text(&Instruments::default(), &Snapshot::default());
        };
        let local = net
            .endpoint
            .local_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        let snapshot = Snapshot {
            transport: net.endpoint.metrics(),
            open_by_path: net.open_by_path(),
            node: net.stats(),
            gossip: match net.gossip() {
                Some(g) => g.metrics().await.ok(),
                None => None,
            },
            dht: match net.dht() {
                Some(d) => d.stats().await.ok(),
                None => None,
            },
            nat: net.nat.get().map(|n| n.stats()).unwrap_or_default(),
            nat_status: net.nat.get().map(|n| n.status(local)),
            relay: net.relay.get().map(|r| r.stats()).unwrap_or_default(),
            lan: net.lan.get().map(|l| l.stats()),
        };
        encode_text(&net.instruments, &snapshot)
    }
}

/// Encodes `instruments` and `snapshot` as OpenMetrics text.
pub(crate) fn encode_text(instruments: &Instruments, snapshot: &Snapshot) -> String {
    let mut registry = Registry::with_prefix("p2pf");
    instruments.register(&mut registry);
    snapshot.register(&mut registry);
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn tool_labels_are_bounded_and_cannot_break_the_text_format() {
        let m = Instruments::default();
        m.mcp_call(
            "evil\"} 1\nfake_series",
            Duration::from_millis(3),
            Outcome::Ok,
        );
        for i in 0..(MAX_TOOL_LABELS + 10) {
            m.mcp_call(
                &format!("tool{i}"),
                Duration::from_millis(1),
                Outcome::Failed,
            );
        }
        let text = encode_text(&m, &Snapshot::default());
        assert!(!text.contains("fake_series 1"), "{text}");
        assert_eq!(
            sample(
                &text,
                "p2pf_mcp_calls_total{tool=\"evil___1_fake_series\",outcome=\"ok\"}"
            ),
            Some(1.0)
        );
        // 64 names in all: the evil one and tool0..tool62; the other 11 calls are `other`.
        assert_eq!(
            sample(
                &text,
                "p2pf_mcp_calls_total{tool=\"other\",outcome=\"failed\"}"
            ),
            Some(11.0)
        );
        assert_eq!(
            sample(&text, "p2pf_mcp_call_seconds_count{tool=\"tool0\"}"),
            Some(1.0)
        );
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn snapshot_counters_carry_their_values_and_labels() {
        let mut snapshot = Snapshot::default();
        snapshot.transport.bytes_in = 1234;
        snapshot.transport.failed_tls = 2;
        snapshot.open_by_path = [3, 1, 2];
        snapshot.relay.upgrades = 5;
        snapshot.node.peer_records_found = 4;
        snapshot.node.network_changes = 2;
        snapshot.lan = Some(crate::LanStats {
            running: true,
            discovered: 6,
            remembered: 2,
            ..Default::default()
        });
        let text = encode_text(&Instruments::default(), &snapshot);
        for (series, value) in [
            ("p2pf_transport_bytes_total{direction=\"in\"}", 1234.0),
            ("p2pf_handshake_failures_total{reason=\"tls\"}", 2.0),
            ("p2pf_connections{path=\"quic\"}", 3.0),
            ("p2pf_connections{path=\"tcp\"}", 1.0),
            ("p2pf_connections{path=\"relayed\"}", 2.0),
            ("p2pf_relay_upgrades_total", 5.0),
            ("p2pf_peer_records_total{event=\"found\"}", 4.0),
            ("p2pf_network_changes_total", 2.0),
            ("p2pf_lan_running", 1.0),
            ("p2pf_lan_discovery_total{event=\"discovered\"}", 6.0),
            ("p2pf_lan_peers_remembered", 2.0),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
    }
}
