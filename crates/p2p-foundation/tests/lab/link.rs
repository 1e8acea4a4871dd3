//! A link: network namespaces joined by a Linux bridge that floods multicast, for LAN
//! discovery (mDNS) between real nodes.
//!
//! ```text
//!  n1 192.168.66.1 ─┐
//!  n2 192.168.66.2 ─┼─ br: br0 (a bridge, multicast flooded)
//!  n3 192.168.66.3 ─┘
//! ```

use std::sync::atomic::{AtomicU32, Ordering};

use super::sh;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Namespaces `n1..=nN`, each with one veth port into the bridge of namespace `br`.
/// Every namespace is deleted on drop, also when a test fails.
pub struct Link {
    prefix: String,
    hosts: usize,
}

impl Link {
    /// Builds the bridge namespace and `hosts` host namespaces, each on the bridge.
    pub fn new(hosts: usize) -> Self {
        let prefix = format!(
            "p2pflan-{}-{}-",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let link = Link { prefix, hosts };
        let br = link.ns_name("br");
        // Namespaces are made before anything can fail, so Drop removes what was made.
        sh(&["ip", "netns", "add", &br]);
        for i in 1..=hosts {
            sh(&["ip", "netns", "add", &link.ns(i)]);
        }
        sh(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"]);
        // Flood multicast to every port (no IGMP/MLD snooping state to build up first).
        sh(&[
            "ip",
            "-n",
            &br,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        sh(&["ip", "-n", &br, "link", "set", "br0", "up"]);
        for i in 1..=hosts {
            let (ns, port, cidr) = (link.ns(i), format!("p{i}"), format!("{}/24", Self::ip(i)));
            // No duplicate address detection: the link-local IPv6 address is usable at once.
            let no_dad = "net.ipv6.conf.default.accept_dad=0";
            let steps: [&[&str]; 7] = [
                &["ip", "-n", &ns, "link", "set", "lo", "up"],
                &["ip", "netns", "exec", &ns, "sysctl", "-qw", no_dad],
                &[
                    "ip", "link", "add", "e0", "netns", &ns, "type", "veth", "peer", &port,
                    "netns", &br,
                ],
                &["ip", "-n", &ns, "addr", "add", &cidr, "dev", "e0"],
                &["ip", "-n", &ns, "link", "set", "e0", "up"],
                &["ip", "-n", &br, "link", "set", &port, "master", "br0"],
                &["ip", "-n", &br, "link", "set", &port, "up"],
            ];
            for step in steps {
                sh(step);
            }
        }
        link
    }

    /// The namespace of `role` in this link.
    pub fn ns_name(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    /// Host `i`'s namespace (1-based).
    pub fn ns(&self, i: usize) -> String {
        self.ns_name(&format!("n{i}"))
    }

    /// Host `i`'s address on the link.
    pub fn ip(i: usize) -> String {
        format!("192.168.66.{i}")
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let mut names: Vec<String> = (1..=self.hosts).map(|i| self.ns(i)).collect();
        names.push(self.ns_name("br"));
        for ns in names {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &ns])
                .status();
        }
    }
}
