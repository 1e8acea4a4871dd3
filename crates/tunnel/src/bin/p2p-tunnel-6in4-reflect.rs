//! `p2p-tunnel-6in4-reflect`: a 6in4 (IPv4 protocol 41) reflector over a raw IPv4 socket.
//!
//! It receives IPv6-in-IPv4 packets, decodes them with [`SixIn4Packet::decode`], prints one line
//! per packet, swaps the outer IPv4 and inner IPv6 source and destination addresses (which keeps
//! every upper-layer checksum valid), re-encodes with [`encode_6in4`] and sends the packet back.
//! Useful to check that a peer's 6in4 path works end to end. Needs CAP_NET_RAW.
//!
//! Usage: `p2p-tunnel-6in4-reflect [COUNT] [TIMEOUT_SECS]` (defaults 1 and 30). Prints `ready`
//! once the socket is open, then `reflected src=.. dst=.. ttl=.. ident=.. inner_src=..
//! inner_dst=.. inner_len=..` per packet; exits 0 after COUNT packets, 1 on timeout or error.

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use p2p_foundation_tunnel::{PROTO_IPV6, SixIn4Packet, encode_6in4};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

fn run(count: u64, timeout: Duration) -> Result<(), String> {
    let sock = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(PROTO_IPV6))),
    )
    .map_err(|e| format!("cannot open a raw IPv4 protocol-41 socket (needs CAP_NET_RAW): {e}"))?;
    sock.set_header_included_v4(true)
        .map_err(|e| format!("cannot set IP_HDRINCL: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65_535];
    let mut reply = Vec::with_capacity(65_535);
    let mut done = 0;
    while done < count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("timed out after {done} of {count} packets"));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let n = match (&sock).read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(format!("receive failed: {e}")),
        };
        let pkt = match SixIn4Packet::decode(&buf[..n]) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("dropping undecodable packet of {n} bytes: {e}");
                continue;
            }
        };
        writeln!(
            out,
            "reflected src={} dst={} ttl={} ident={} inner_src={} inner_dst={} inner_len={}",
            pkt.src,
            pkt.dst,
            pkt.ttl,
            pkt.ident,
            pkt.inner_src(),
            pkt.inner_dst(),
            pkt.inner.len()
        )
        .map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        let mut inner = pkt.inner.to_vec();
        let (s, d) = (inner[8..24].to_vec(), inner[24..40].to_vec());
        inner[8..24].copy_from_slice(&d);
        inner[24..40].copy_from_slice(&s);
        reply.clear();
        encode_6in4(
            pkt.dst,
            pkt.src,
            64,
            pkt.ident.wrapping_add(1),
            &inner,
            &mut reply,
        )
        .map_err(|e| format!("re-encode failed: {e}"))?;
        sock.send_to(&reply, &SockAddr::from(SocketAddrV4::new(pkt.src, 0)))
            .map_err(|e| format!("send to {} failed: {e}", pkt.src))?;
        done += 1;
    }
    Ok(())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count = args.next().and_then(|a| a.parse().ok()).unwrap_or(1u64);
    let secs = args.next().and_then(|a| a.parse().ok()).unwrap_or(30u64);
    if let Err(e) = run(count, Duration::from_secs(secs)) {
        eprintln!("p2p-tunnel-6in4-reflect: {e}");
        std::process::exit(1);
    }
}
