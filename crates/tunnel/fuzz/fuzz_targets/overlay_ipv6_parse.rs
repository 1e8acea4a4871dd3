#![no_main]
use libfuzzer_sys::fuzz_target;
use p2p_foundation_tunnel::overlay::Ipv6Packet;
use p2p_foundation_tunnel::overlay::ipv6::{address_unreachable, packet_too_big};

// First two bytes: the size limit; the rest: the packet.
fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let limit = usize::from(u16::from_be_bytes([data[0], data[1]]));
    if let Ok(p) = Ipv6Packet::parse(&data[2..], limit) {
        assert!(p.len() <= limit && p.len() == data.len() - 2);
        let _ = (p.src(), p.dst(), p.next_header(), p.is_icmpv6_error());
        let ptb = packet_too_big(p.dst(), &p, limit);
        assert!(ptb.len() <= 1280);
        Ipv6Packet::parse(&ptb, 1280).expect("our Packet Too Big parses");
        let un = address_unreachable(p.dst(), &p);
        Ipv6Packet::parse(&un, 1280).expect("our Destination Unreachable parses");
    }
});
