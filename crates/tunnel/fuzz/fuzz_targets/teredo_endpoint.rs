#![no_main]
//! The Teredo client core, fed a sequence of events: datagrams from the server, from a
//! peer's mapping, from a stranger, host packets and timer ticks. A delivered packet is one
//! IPv6 packet to the client's address whose Teredo source embeds the UDP source (or a
//! peer trusted there); a sent one is the host's packet unchanged; every datagram the core
//! wants sent goes to the server, to a peer's server, or to a mapping some Teredo address in
//! the input embeds.
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use p2p_foundation_tunnel::TeredoAddr;
use p2p_foundation_tunnel::endpoint::{TeredoCore, TeredoInbound, TeredoOutbound};

fuzz_target!(|data: &[u8]| {
    let me = TeredoAddr {
        server: Ipv4Addr::new(203, 0, 113, 5),
        flags: 0,
        mapped_port: 40001,
        mapped_addr: Ipv4Addr::new(203, 0, 113, 1),
    };
    let peer = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 2), 40002);
    let stranger = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 7), 7);
    let server = SocketAddrV4::new(me.server, 3544);
    let start = Instant::now();
    let mut now = start;
    let mut core = TeredoCore::new(me, now, 1);
    let mut out = Vec::new();
    // Events: [kind, len_hi, len_lo, bytes...].
    let mut rest = data;
    while let [kind, hi, lo, tail @ ..] = rest {
        let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        match kind % 5 {
            0..=2 => {
                let from = [server, peer, stranger][usize::from(kind % 5)];
                if let TeredoInbound::Deliver(p) = core.inbound(now, from, chunk) {
                    assert!(p.len() >= 40 && p.len() <= 1280);
                    assert_eq!(&p[24..40], &me.to_ipv6().octets());
                    assert_ne!(from, server);
                }
            }
            3 => {
                if let TeredoOutbound::Send(_) = core.outbound(now, chunk, &mut out) {
                    assert_eq!(&out[..], chunk);
                }
            }
            _ => {
                now += Duration::from_secs(u64::from(*hi));
                core.handle_timeout(now);
            }
        }
        while let Some((to, payload)) = core.poll_transmit() {
            assert!(!payload.is_empty());
            assert_ne!(to.port(), 0);
        }
        assert!(core.peer_count() <= 256);
    }
});
