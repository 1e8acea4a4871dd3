//! `p2p-tunnel-teredo-qualify`: runs Teredo qualification (RFC 4380 section 5.2.1) against a
//! Teredo server over a real UDP socket, using the sans-IO [`TeredoQualifier`].
//!
//! Usage: `p2p-tunnel-teredo-qualify SERVER_IPV4 [SEED]`. Prints `qualified ADDR server=S
//! mapped=A:P local=PORT took_us=T` (T: microseconds from the first Router Solicitation to
//! qualification) and exits 0, or prints the reason and exits 1.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use p2p_foundation_tunnel::{QualifyOutput, TeredoQualifier};

fn run(server: Ipv4Addr, seed: u64) -> Result<String, String> {
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    let mut q = TeredoQualifier::new(server, seed);
    let started = Instant::now();
    q.start(started);
    let mut deadline = Instant::now();
    let mut buf = [0u8; 2048];
    // Bounded: at most 2 phases x 3 attempts, each waiting up to 4 s, plus ignored datagrams.
    for _ in 0..10_000 {
        while let Some(out) = q.poll_output() {
            match out {
                QualifyOutput::Send { to, payload } => {
                    sock.send_to(&payload, to)
                        .map_err(|e| format!("send to {to}: {e}"))?;
                }
                QualifyOutput::Timeout(at) => deadline = at,
                QualifyOutput::Qualified(t) => {
                    return Ok(format!(
                        "qualified {} server={} mapped={}:{} local={} took_us={}",
                        t.to_ipv6(),
                        t.server,
                        t.mapped_addr,
                        t.mapped_port,
                        sock.local_addr().map_or(0, |a| a.port()),
                        started.elapsed().as_micros()
                    ));
                }
                QualifyOutput::Failed(why) => return Err(why.to_string()),
            }
        }
        let now = Instant::now();
        if now >= deadline {
            q.handle_timeout(now);
            continue;
        }
        sock.set_read_timeout(Some(deadline - now))
            .map_err(|e| e.to_string())?;
        match sock.recv_from(&mut buf) {
            Ok((n, SocketAddr::V4(from))) => q.handle_datagram(Instant::now(), from, &buf[..n]),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
    Err("gave up after too many events".into())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(server) = args.next().and_then(|a| a.parse::<Ipv4Addr>().ok()) else {
        eprintln!("usage: p2p-tunnel-teredo-qualify SERVER_IPV4 [SEED]");
        std::process::exit(2);
    };
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id())
    });
    match run(server, seed) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            println!("failed: {e}");
            std::process::exit(1);
        }
    }
}
