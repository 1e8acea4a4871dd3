//! `p2pf` processes in separate network namespaces behind real nftables NATs (as root; runs
//! in CI, never skips there): the facade's NAT lab topology (`lab/mod.rs`), with every node
//! a `p2pf node` process of its own started through `ip netns exec`.

#[path = "../../p2p-foundation/tests/lab/mod.rs"]
mod lab;

mod common;

use std::net::SocketAddr;
use std::process::{Command, Output};

use common::Node;
use lab::{Lab, NatKind, PUBLIC_1, PUBLIC_2, Side};
use serde_json::Value;

/// `p2pf ARGS` inside namespace `ns`.
fn p2pf_in(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(env!("CARGO_BIN_EXE_p2pf"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("P2PF_DATA_DIR");
    c
}

fn json_line(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "p2pf failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    common::json_line(out)
}

/// A `p2pf node` in `ns` listening on `listen`, with mDNS off (the namespaces share no
/// link, and the test joins by words only).
fn node_in(ns: &str, data: &std::path::Path, listen: &str, extra: &[&str]) -> Node {
    let data = data.to_str().expect("utf-8 path");
    let mut args = vec![
        "node",
        "--json",
        "--no-mdns",
        "--listen",
        listen,
        "--data-dir",
        data,
    ];
    args.extend_from_slice(extra);
    Node::spawn(p2pf_in(ns, &args))
}

fn words_of(ready: &Value) -> String {
    ready["addresses"][0]["words"]
        .as_str()
        .expect("words")
        .to_owned()
}

fn reflexive_ip(v: &Value) -> String {
    let addr: SocketAddr = v["reflexive"]
        .as_str()
        .unwrap_or_else(|| panic!("no reflexive address: {v}"))
        .parse()
        .expect("an address");
    addr.ip().to_string()
}

#[test]
fn node_processes_in_namespaces_join_by_words_and_report_each_nat() {
    if !lab::can_run("node_processes_in_namespaces_join_by_words_and_report_each_nat") {
        return;
    }
    let lab = Lab::new(NatKind::EndpointIndependent, NatKind::EndpointDependent);
    let dir = tempfile::tempdir().expect("tempdir");
    let pubns = lab.ns("pub");

    // Two public nodes (two observer IPs), then a node behind each NAT, joined by words.
    let p1 = node_in(
        &pubns,
        &dir.path().join("p1"),
        &format!("{PUBLIC_1}:4000"),
        &[],
    );
    let ready_p1 = p1.wait_for("ready");
    let p1_words = words_of(&ready_p1);
    let p1_id = ready_p1["peer_id"].as_str().expect("id").to_owned();
    let p2 = node_in(
        &pubns,
        &dir.path().join("p2"),
        &format!("{PUBLIC_2}:4000"),
        &["--bootstrap", &p1_words],
    );
    let p2_words = words_of(&p2.wait_for("ready"));

    let lan_a = lab.lan(Side::A);
    let mut a = node_in(
        &lan_a,
        &dir.path().join("a"),
        &format!("{}:0", Side::A.host_ip()),
        &["--bootstrap", &p1_words],
    );
    let ready_a = a.wait_for("ready");
    assert_eq!(ready_a["bootstrap_peers"], 1, "{ready_a}");
    let a_id = ready_a["peer_id"].as_str().expect("id").to_owned();
    // P1 saw A arrive from its NAT's public address, not from A's LAN address.
    let seen = loop {
        let v = p1.wait_for("connected");
        if v["peer"] == a_id.as_str() {
            break v;
        }
    };
    let from: SocketAddr = seen["addr"].as_str().expect("addr").parse().expect("addr");
    assert_eq!(from.ip().to_string(), Side::A.public_ip(), "{seen}");

    // One-shot commands from behind each NAT: ping and the NAT report.
    for (side, mapping) in [
        (Side::A, "endpoint_independent"),
        (Side::B, "endpoint_dependent"),
    ] {
        let ns = lab.lan(side);
        let pong = json_line(
            &p2pf_in(&ns, &["ping", &p1_words, "--json"])
                .output()
                .expect("p2pf runs"),
        );
        assert_eq!(pong["peer_id"], p1_id.as_str(), "{pong}");
        assert_eq!(pong["path"], "quic", "{pong}");
        assert_eq!(reflexive_ip(&pong), side.public_ip(), "{pong}");

        let nat = json_line(
            &p2pf_in(
                &ns,
                &[
                    "nat",
                    "--bootstrap",
                    &p1_words,
                    "--bootstrap",
                    &p2_words,
                    "--wait",
                    "2",
                    "--json",
                ],
            )
            .output()
            .expect("p2pf runs"),
        );
        assert_eq!(reflexive_ip(&nat), side.public_ip(), "{nat}");
        assert_eq!(nat["mapping"], mapping, "{side:?}: {nat}");
    }

    // A stops cleanly on SIGTERM and P1 sees it leave at once.
    a.signal("-TERM");
    assert_eq!(a.wait_for("stopped")["signal"], "SIGTERM");
    assert_eq!(a.wait_exit(), Some(0));
    loop {
        let v = p1.wait_for("disconnected");
        if v["peer"] == a_id.as_str() {
            break;
        }
    }
}

/// `p2pf node` processes behind NATs, reached by a one-shot `p2pf ping <peer id>` from
/// behind another NAT: the ping finds B's signed peer record through R, then punches
/// (endpoint-independent NATs on both sides) or goes through R's relay (endpoint-dependent
/// NATs on both sides, where no punch can work).
#[test]
fn node_processes_behind_nats_are_reached_by_peer_id_punched_or_relayed() {
    if !lab::can_run("node_processes_behind_nats_are_reached_by_peer_id_punched_or_relayed") {
        return;
    }
    for (kind, path) in [
        (NatKind::EndpointIndependent, "quic"),
        (NatKind::EndpointDependent, "relayed"),
    ] {
        let lab = Lab::new(kind, kind);
        let dir = tempfile::tempdir().expect("tempdir");
        let r = node_in(
            &lab.ns("pub"),
            &dir.path().join("r"),
            &format!("{PUBLIC_1}:4000"),
            &["--relay"],
        );
        let ready_r = r.wait_for("ready");
        let r_words = words_of(&ready_r);
        let r_id = ready_r["peer_id"].as_str().expect("id").to_owned();
        let mut b = node_in(
            &lab.lan(Side::B),
            &dir.path().join("b"),
            &format!("{}:0", Side::B.host_ip()),
            &["--bootstrap", &r_words],
        );
        let b_id = b.wait_for("ready")["peer_id"]
            .as_str()
            .expect("id")
            .to_owned();
        // B is findable once its record names its public mapping (and, behind an
        // endpoint-dependent NAT, the relay holding its reservation).
        let record = loop {
            let v = b.wait_for("peer_record_published");
            let addrs: Vec<SocketAddr> = v["addrs"]
                .as_array()
                .expect("addrs")
                .iter()
                .filter_map(|a| a.as_str()?.parse().ok())
                .collect();
            let public = addrs
                .iter()
                .any(|a| a.ip().to_string() == Side::B.public_ip());
            let relayed = v["relays"].as_array().is_some_and(|r| !r.is_empty());
            if public && (relayed || kind == NatKind::EndpointIndependent) {
                break v;
            }
        };
        let pong = json_line(
            &p2pf_in(
                &lab.lan(Side::A),
                &["ping", &b_id, "--bootstrap", &r_words, "--json"],
            )
            .output()
            .expect("p2pf runs"),
        );
        assert_eq!(pong["peer_id"], b_id.as_str(), "{pong}");
        assert_eq!(
            pong["path"], path,
            "{kind:?}: {pong} (B's record: {record})"
        );
        let at: SocketAddr = pong["addr"].as_str().expect("addr").parse().expect("addr");
        let expected_ip = if path == "quic" {
            Side::B.public_ip()
        } else {
            PUBLIC_1
        };
        assert_eq!(at.ip().to_string(), expected_ip, "{kind:?}: {pong}");
        if path == "relayed" {
            assert!(
                record["relays"]
                    .as_array()
                    .expect("relays")
                    .iter()
                    .any(|r| r == r_id.as_str())
            );
        }
        eprintln!(
            "{kind:?}: {path}, joined in {} ms, then connected in {} ms",
            pong["join_ms"], pong["connect_ms"]
        );
        b.signal("-TERM");
        assert_eq!(b.wait_exit(), Some(0));
    }
}

#[test]
fn a_node_process_with_tunneling_starts_the_overlay_behind_a_nat_by_itself() {
    if !lab::can_run("a_node_process_with_tunneling_starts_the_overlay_behind_a_nat_by_itself") {
        return;
    }
    let lab = Lab::new(NatKind::Public, NatKind::EndpointIndependent);
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = lab.lan(Side::B);
    let b = node_in(
        &ns,
        &dir.path().join("b"),
        &format!("{}:0", Side::B.host_ip()),
        &["--tunneling"],
    );
    let ready = b.wait_for("ready");
    let selected = b.wait_for("tunnel_selected");
    assert_eq!(selected["ipv6"], "Overlay", "{selected}");
    assert_eq!(
        selected["ipv6_head_start_ms"], 0,
        "no native IPv6: no head start"
    );
    let rejected = selected["rejected"].as_array().expect("rejected");
    assert_eq!(
        rejected.len(),
        7,
        "every other mechanism, with a reason: {selected}"
    );
    assert!(
        rejected.iter().any(|r| r["mechanism"] == "NativeIpv6"
            && r["reason"] == "no global IPv6 address or route observed"),
        "{selected}"
    );
    // The overlay's TUN device is up in B's namespace with B's key-derived address.
    let id: p2p_foundation::PeerId = ready["peer_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("a peer id");
    let want = p2p_foundation::P2PNode::overlay_addr_of(&id).to_string();
    let shown = Command::new("ip")
        .args(["-n", &ns, "-6", "addr", "show"])
        .output()
        .expect("ip runs");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!("{want}/48")),
        "{want} not in:\n{shown}"
    );
}
