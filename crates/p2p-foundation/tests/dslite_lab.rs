//! DS-Lite started by the node itself (as root; runs in CI, never skips there): a node on an
//! IPv6-only host, told its AFTR, chooses DS-Lite, starts a B4 (a TUN device with the
//! host's IPv4 default route) and dials an IPv4-only peer through the AFTR.
//!
//! ```text
//!  b4 (IPv6 only)           aftr                               v4 (IPv4 only)
//!  2001:db8:64::2 ── veth ── 2001:db8:64::1 | 198.51.100.1 ── veth ── 198.51.100.2
//!  node + its B4            softwire end + NAT44 (nftables)    node on :4000
//! ```
//!
//! The AFTR is the tunnel crate's DS-Lite endpoint in its AFTR role (the softwire's other
//! end, 192.0.0.1/29), the kernel forwarding what it decapsulates, and an nftables
//! masquerade from 192.0.0.0/29 to its IPv4 address: a single-softwire AFTR (RFC 6333's
//! per-softwire NAT keys only matter with many B4s). This kernel has no `ip6tnl` driver, so
//! no kernel AFTR could stand in.

mod lab;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use lab::{NsRuntime, sh};
use p2p_foundation::tunnel::Mechanism;
use p2p_foundation::tunnel::endpoint::{DsLiteConfig, DsLiteTun};
use p2p_foundation::{P2PNode, PeerEvent, TunnelStatus, TunnelingConfig};

const HANG_GUARD: Duration = Duration::from_secs(120);
const B4_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0, 2);
const AFTR_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x64, 0, 0, 0, 0, 1);
const AFTR_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const PEER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// The three namespaces, deleted on drop (also when the test fails).
struct Topology {
    b4: String,
    aftr: String,
    v4: String,
}

impl Topology {
    fn new() -> Self {
        let tag = format!("p2pfds{}", std::process::id());
        let t = Self {
            b4: format!("{tag}-b4"),
            aftr: format!("{tag}-aftr"),
            v4: format!("{tag}-v4"),
        };
        for ns in [&t.b4, &t.aftr, &t.v4] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip", "link", "add", "name", "v6b4", "netns", &t.b4, "type", "veth", "peer", "name",
            "v6aftr", "netns", &t.aftr,
        ]);
        sh(&[
            "ip", "link", "add", "name", "v4aftr", "netns", &t.aftr, "type", "veth", "peer",
            "name", "v4peer", "netns", &t.v4,
        ]);
        for (ns, dev, addr) in [
            (&t.b4, "v6b4", "2001:db8:64::2/64"),
            (&t.aftr, "v6aftr", "2001:db8:64::1/64"),
            (&t.aftr, "v4aftr", "198.51.100.1/24"),
            (&t.v4, "v4peer", "198.51.100.2/24"),
        ] {
            let mut add = vec!["ip", "-n", ns.as_str(), "addr", "add", addr, "dev", dev];
            if addr.contains(':') {
                // No duplicate address detection: the address is usable at once.
                add.push("nodad");
            }
            sh(&add);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        // The B4 host: IPv6 only, a default route to the AFTR's side of the link.
        sh(&[
            "ip",
            "-n",
            &t.b4,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:64::1",
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &t.aftr,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        lab::nft(
            &t.aftr,
            "table ip aftr {\n chain post {\n  type nat hook postrouting priority 100;\n  \
             ip saddr 192.0.0.0/29 oifname \"v4aftr\" masquerade\n }\n}\n",
        );
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.b4, &self.aftr, &self.v4] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn ip_out(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first `TunnelSelected` whose status satisfies `done`, within `limit`.
async fn selection_where(
    node: &P2PNode,
    limit: Duration,
    done: impl Fn(&TunnelStatus) -> bool,
) -> Option<TunnelStatus> {
    let mut events = node.peer_events();
    let wait = async {
        loop {
            if let Some(s) = node.tunnel_status().filter(|s| done(s)) {
                return s;
            }
            match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
                Ok(Ok(PeerEvent::TunnelSelected { status })) if done(&status) => return status,
                _ => {}
            }
        }
    };
    tokio::time::timeout(limit, wait).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_only_node_starts_a_dslite_b4_and_reaches_an_ipv4_peer_through_the_aftr() {
    if !lab::can_run("dslite_lab") {
        return;
    }
    tokio::time::timeout(HANG_GUARD, async {
        let t = Topology::new();
        let aftr = NsRuntime::new(&t.aftr);
        let softwire = aftr
            .run(async {
                let end = DsLiteTun::open(
                    &DsLiteConfig::new(B4_V6, AFTR_V6)
                        .aftr_end()
                        .with_name("aftr%d"),
                )
                .expect("the AFTR's softwire end opens");
                let end = std::sync::Arc::new(end);
                let running = std::sync::Arc::clone(&end);
                tokio::spawn(async move {
                    let e = running.run().await;
                    eprintln!("the AFTR's endpoint stopped: {e}");
                });
                end
            })
            .await;

        let peer = lab::LabNode::start(&t.v4, || {
            P2PNode::builder().listen(SocketAddr::from((PEER_V4, 4000)))
        })
        .await;
        assert!(
            ip_out(&t.b4, &["-4", "route", "show", "default"])
                .trim()
                .is_empty(),
            "the B4 host starts without IPv4"
        );
        let node = lab::LabNode::start(&t.b4, || {
            P2PNode::builder().tunneling(
                TunnelingConfig::auto()
                    .aftr(AFTR_V6)
                    .nat64_discovery(false)
                    .overlay(None),
            )
        })
        .await;

        let status = selection_where(&node.node, Duration::from_secs(10), |s| {
            s.ipv4_device.is_some()
        })
        .await
        .unwrap_or_else(|| panic!("no DS-Lite B4 started: {:#?}", node.node.tunnel_status()));
        assert_eq!(
            status.ipv4_access.as_ref().map(|c| c.mechanism),
            Some(Mechanism::DsLite),
            "{status:#?}"
        );
        assert_eq!(
            status.ipv6.as_ref().map(|c| c.mechanism),
            Some(Mechanism::NativeIpv6),
            "{status:#?}"
        );
        let device = status.ipv4_device.clone().expect("device");
        let routes = ip_out(&t.b4, &["-4", "route", "show", "default"]);
        assert!(
            routes.contains(&format!("default dev {device}")),
            "{routes}"
        );
        let addrs = ip_out(&t.b4, &["-4", "addr", "show", "dev", &device]);
        assert!(addrs.contains("192.0.0.2/29"), "{addrs}");

        // The host's own IPv4 goes through the B4 the node started.
        let (got, out) = lab::ping(&t.b4, PEER_V4.into());
        assert_eq!(
            got, 3,
            "ping from the IPv6-only host to an IPv4 peer: {out}"
        );

        // The node dials the IPv4-only peer; the peer sees the AFTR's NAT address.
        let at = SocketAddr::from((PEER_V4, 4000));
        let id = node
            .run(move |n| async move { n.connect_addr(at).await })
            .await
            .expect("the IPv6-only node reaches the IPv4 peer through DS-Lite");
        assert_eq!(id, peer.node.peer_id());
        // The accepting side registers the connection once its end of the handshake is done.
        let b4_id = node.node.peer_id();
        assert!(
            lab::wait_for(&peer, Duration::from_secs(5), |n| n
                .connection_info(&b4_id)
                .is_some())
            .await,
            "the IPv4 peer never registered the connection"
        );
        let seen = peer
            .node
            .connection_info(&node.node.peer_id())
            .expect("the peer has the connection")
            .remote;
        assert_eq!(seen.ip().to_canonical(), std::net::IpAddr::V4(AFTR_V4));
        // The node counts its B4's packets and exports them.
        let b4 = node.node.stats().dslite.expect("the B4's counters");
        assert!(b4.packets_out >= 6 && b4.packets_in >= 6, "{b4:?}");
        assert_eq!(b4.dropped_in_total(), 0, "{b4:?}");
        let metrics = node.node.metrics().await;
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("p2pf_dslite_packets_total{direction=\"in\"}")),
            "{metrics}"
        );
        let stats = softwire.stats();
        assert!(stats.packets_in >= 6 && stats.packets_out >= 6, "{stats:?}");
        assert_eq!(stats.dropped_in_total(), 0, "{stats:?}");

        // Shutting the node down stops the B4: the device and its route go.
        node.stop().await;
        let gone = async {
            while ip_out(&t.b4, &["link", "show"]).contains(&device) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), gone)
            .await
            .unwrap_or_else(|_| panic!("{device} outlived the node"));
        assert!(
            ip_out(&t.b4, &["-4", "route", "show", "default"])
                .trim()
                .is_empty()
        );
        peer.stop().await;
        drop(aftr);
    })
    .await
    .expect("the DS-Lite lab hung");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_ipv4_of_its_own_gets_no_b4_and_is_told_why() {
    if !lab::can_run("dslite_lab") {
        return;
    }
    tokio::time::timeout(HANG_GUARD, async {
        let t = Topology::new();
        // The AFTR host has IPv6 and IPv4 of its own: DS-Lite would take its IPv4 route.
        sh(&[
            "ip",
            "-n",
            &t.aftr,
            "route",
            "add",
            "default",
            "via",
            "198.51.100.2",
        ]);
        sh(&[
            "ip",
            "-n",
            &t.aftr,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:64::2",
        ]);
        let node = lab::LabNode::start(&t.aftr, || {
            P2PNode::builder().tunneling(
                TunnelingConfig::auto()
                    .aftr(B4_V6)
                    .nat64_discovery(false)
                    .overlay(None),
            )
        })
        .await;
        let status = selection_where(&node.node, Duration::from_secs(10), |_| true)
            .await
            .expect("a selection");
        assert_eq!(status.ipv4_access, None, "{status:#?}");
        assert_eq!(status.ipv4_device, None, "{status:#?}");
        let why = status
            .rejected
            .iter()
            .find(|r| r.mechanism == Mechanism::DsLite)
            .map(|r| r.reason);
        assert_eq!(
            why,
            Some(
                "the host has IPv4 of its own: a DS-Lite B4 would take over its IPv4 default route"
            ),
            "{status:#?}"
        );
        assert!(!ip_out(&t.aftr, &["link", "show"]).contains("p2pdslite"));
        node.stop().await;
    })
    .await
    .expect("the DS-Lite lab hung");
}
