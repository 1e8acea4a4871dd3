//! Addresses as people and configuration files write them: socket addresses
//! (`127.0.0.1:9000`, `[::]:9000`), three-word addresses (`ocean.thunder.falcon`), and
//! multiaddr-style strings (`/ip6/::/udp/9000/quic-v1`, `/ip4/192.0.2.7/tcp/9000`, with
//! `/p2p/<peer id>` for a peer).
//!
//! A node listens for QUIC on a UDP port and for the TCP + TLS fallback on the same TCP
//! port, so `/udp/P/quic-v1`, `/udp/P/quic` and `/tcp/P` all name the socket address
//! `IP:P`. Names (`/dns4/…`) are not resolved here: give an address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use p2p_foundation_identity::PeerId;

use crate::error::{Error, Result};

/// A peer to dial: its address, and its id when the text named one (else the id is
/// learned and proven on first contact, see [`P2PNode::connect_addr`]).
///
/// [`P2PNode::connect_addr`]: crate::P2PNode::connect_addr
///
/// ```
/// use p2p_foundation::PeerAddr;
///
/// let bare: PeerAddr = "/ip4/127.0.0.1/udp/9000/quic-v1".parse()?;
/// assert_eq!(bare.addr.port(), 9000);
/// assert!(bare.peer.is_none());
/// # Ok::<(), p2p_foundation::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr {
    /// The peer's id, if given.
    pub peer: Option<PeerId>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl std::str::FromStr for PeerAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        parse_peer(s)
    }
}

impl From<(PeerId, SocketAddr)> for PeerAddr {
    fn from((peer, addr): (PeerId, SocketAddr)) -> Self {
        Self {
            peer: Some(peer),
            addr,
        }
    }
}

fn invalid(input: &str, reason: impl Into<String>) -> Error {
    Error::InvalidAddress {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

/// Parses an address to listen on or dial: numbers, three words, or a multiaddr without
/// `/p2p/`.
///
/// ```
/// let a = p2p_foundation::parse_addr("/ip6/::/udp/9000/quic-v1")?;
/// assert_eq!(a.to_string(), "[::]:9000");
/// let err = p2p_foundation::parse_addr("/ip4/127.0.0.1/udp/x/quic-v1").unwrap_err();
/// assert!(err.to_string().contains("'x'"));
/// # Ok::<(), p2p_foundation::Error>(())
/// ```
pub fn parse_addr(s: &str) -> Result<SocketAddr> {
    let t = s.trim();
    if t.starts_with('/') {
        let (addr, peer) = parse_multiaddr(t)?;
        if peer.is_some() {
            return Err(invalid(
                s,
                "an address was expected but it names a peer (/p2p/…): drop that part",
            ));
        }
        return Ok(addr);
    }
    p2p_foundation_words::parse_socket_addr(t).map_err(|e| {
        invalid(
            s,
            format!(
                "not a socket address (127.0.0.1:9000, [::1]:9000), three words or a \
                 multiaddr (/ip4/127.0.0.1/udp/9000/quic-v1): {e}"
            ),
        )
    })
}

/// Parses a peer: `<peer id>@<address>`, a multiaddr ending in `/p2p/<peer id>`, or an
/// address alone (see [`parse_addr`]).
pub fn parse_peer(s: &str) -> Result<PeerAddr> {
    let t = s.trim();
    if t.starts_with('/') {
        let (addr, peer) = parse_multiaddr(t)?;
        return Ok(PeerAddr { peer, addr });
    }
    if let Some((peer, addr)) = t.split_once('@') {
        let peer = peer.trim().parse::<PeerId>().map_err(|e| {
            invalid(
                s,
                format!("'{}' before '@' is not a peer id: {e}", peer.trim()),
            )
        })?;
        return Ok(PeerAddr {
            peer: Some(peer),
            addr: parse_addr(addr)?,
        });
    }
    Ok(PeerAddr {
        peer: None,
        addr: parse_addr(t)?,
    })
}

/// `/ip4|ip6/<ip>/udp/<port>[/quic|/quic-v1]` or `/ip4|ip6/<ip>/tcp/<port>`, then
/// optionally `/p2p/<peer id>`.
fn parse_multiaddr(s: &str) -> Result<(SocketAddr, Option<PeerId>)> {
    let parts: Vec<&str> = s.trim_end_matches('/').split('/').skip(1).collect();
    let mut it = parts.iter().copied().peekable();
    let proto = it.next().unwrap_or_default();
    let ip: IpAddr = match proto {
        "ip4" => {
            let v = it
                .next()
                .ok_or_else(|| invalid(s, "'/ip4' needs an address after it"))?;
            v.parse::<Ipv4Addr>()
                .map_err(|_| invalid(s, format!("'{v}' after '/ip4' is not an IPv4 address")))?
                .into()
        }
        "ip6" => {
            let v = it
                .next()
                .ok_or_else(|| invalid(s, "'/ip6' needs an address after it"))?;
            v.parse::<Ipv6Addr>()
                .map_err(|_| invalid(s, format!("'{v}' after '/ip6' is not an IPv6 address")))?
                .into()
        }
        "dns" | "dns4" | "dns6" | "dnsaddr" => {
            return Err(invalid(
                s,
                format!("'/{proto}' names are not resolved here: give /ip4/… or /ip6/…"),
            ));
        }
        other => {
            return Err(invalid(
                s,
                format!("'/{other}' is not an address part: start with /ip4/… or /ip6/…"),
            ));
        }
    };
    let transport = it.next().ok_or_else(|| {
        invalid(
            s,
            "a transport is missing: add /udp/<port>/quic-v1 or /tcp/<port>",
        )
    })?;
    if transport != "udp" && transport != "tcp" {
        return Err(invalid(
            s,
            format!("'/{transport}' is not a transport: give /udp/<port>/quic-v1 or /tcp/<port>"),
        ));
    }
    let port = it
        .next()
        .ok_or_else(|| invalid(s, format!("'/{transport}' needs a port after it")))?;
    let port: u16 = port.parse().map_err(|_| {
        invalid(
            s,
            format!("'{port}' after '/{transport}' is not a port (0-65535)"),
        )
    })?;
    if transport == "udp" {
        match it.peek().copied() {
            Some("quic" | "quic-v1") => {
                it.next();
            }
            Some("p2p") | None => {}
            Some(other) => {
                return Err(invalid(
                    s,
                    format!("'/{other}' after the UDP port is not supported: use /quic-v1"),
                ));
            }
        }
    }
    let peer =
        match it.next() {
            None => None,
            Some("p2p") => {
                let id = it
                    .next()
                    .ok_or_else(|| invalid(s, "'/p2p' needs a peer id after it"))?;
                Some(id.parse::<PeerId>().map_err(|e| {
                    invalid(s, format!("'{id}' after '/p2p' is not a peer id: {e}"))
                })?)
            }
            Some(other) => {
                return Err(invalid(s, format!("'/{other}' is not supported here")));
            }
        };
    if let Some(extra) = it.next() {
        return Err(invalid(s, format!("'{extra}' is left over at the end")));
    }
    Ok((SocketAddr::new(ip, port), peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_foundation_identity::Keypair;
    use proptest::prelude::*;

    #[test]
    fn every_form_names_the_same_socket_address() {
        for s in [
            "127.0.0.1:9000",
            "/ip4/127.0.0.1/udp/9000/quic-v1",
            "/ip4/127.0.0.1/udp/9000/quic",
            "/ip4/127.0.0.1/udp/9000",
            "/ip4/127.0.0.1/tcp/9000",
            " /ip4/127.0.0.1/tcp/9000/ ",
        ] {
            assert_eq!(parse_addr(s).expect(s).to_string(), "127.0.0.1:9000", "{s}");
        }
        assert_eq!(
            parse_addr("/ip6/::/udp/9000/quic-v1")
                .expect("v6")
                .to_string(),
            "[::]:9000"
        );
        let words =
            p2p_foundation_words::WordAddress::from(SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(parse_addr(&words.to_string()).expect("words").port(), 9000);
    }

    #[test]
    fn a_peer_is_an_id_and_an_address_in_either_form() {
        let id = Keypair::from_secret_bytes([3; 32]).peer_id();
        let multi =
            parse_peer(&format!("/ip4/192.0.2.7/udp/9000/quic-v1/p2p/{id}")).expect("multi");
        let at = parse_peer(&format!("{id}@192.0.2.7:9000")).expect("at");
        assert_eq!(multi, at);
        assert_eq!(multi.peer, Some(id));
        assert_eq!(parse_peer("192.0.2.7:9000").expect("bare").peer, None);
        assert!(parse_addr(&format!("/ip4/192.0.2.7/tcp/1/p2p/{id}")).is_err());
    }

    #[test]
    fn errors_name_the_part_that_does_not_parse() {
        for (s, part) in [
            ("/ip4/300.1.1.1/udp/1/quic-v1", "'300.1.1.1'"),
            ("/ip4/127.0.0.1/udp/70000", "'70000'"),
            ("/ip4/127.0.0.1/sctp/1", "'/sctp'"),
            ("/ip4/127.0.0.1", "transport is missing"),
            ("/dns4/example.org/tcp/1", "'/dns4'"),
            ("/ip6/::/udp/1/webrtc", "'/webrtc'"),
            ("/ip4/1.2.3.4/udp/1/quic-v1/p2p/nope", "'nope'"),
            ("/ip4/1.2.3.4/tcp/1/x/y", "'/x'"),
            ("/ip4/1.2.3.4/tcp/1/p2p", "'/p2p' needs"),
            ("/foo", "'/foo'"),
            ("nope@127.0.0.1:1", "'nope'"),
            ("not an address", "not a socket address"),
        ] {
            let e = parse_peer(s).expect_err(s).to_string();
            assert!(e.contains(part), "{s}: {e}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,64}", t in "(/[a-z0-9.:-]{0,8}){0,7}") {
            let _ = parse_peer(&s);
            let _ = parse_peer(&t);
        }
    }
}
