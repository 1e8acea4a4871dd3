//! `p2pf-nat`: run the crate's pieces from a shell, for example inside the network
//! namespaces of a NAT lab (docs: /work/shared/design/NAT-LAB.md).
//!
//! ```text
//! p2pf-nat stun-server <addr>...
//! p2pf-nat stun <bind> <server>
//! p2pf-nat behaviour <bind> <primary> <alternate> [<alternate-port>]
//! p2pf-nat rendezvous <addr>
//! p2pf-nat punch <bind> <rendezvous> <session-hex32> <secret-hex64> <remote-peer-id>
//! p2pf-nat relay-server <addr>
//! p2pf-nat relay-chat <bind> <relay> <session-hex32> <secret-hex64> <partner-peer-id> <message>
//! ```
//! Exit status: 0 success, 1 usage or I/O error, 2 punch failed.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use p2p_foundation_identity::{Keypair, PeerId};
use p2p_foundation_nat::relay::{RelayLimits, RelayReply, decode_reply, encode_data};
use p2p_foundation_nat::{
    BehaviourServers, NatError, Punch, PunchConfig, PunchSession, RendezvousService,
    RetransmitConfig, StunServer, discover_behaviour, punch, rendezvous_register, stun_binding,
};
use p2p_foundation_nat::{RelayService, relay_allocate};
use tokio::net::UdpSocket;

const USAGE: &str = "usage:
  p2pf-nat stun-server <addr>...
  p2pf-nat stun <bind> <server>
  p2pf-nat behaviour <bind> <primary> <alternate> [<alternate-port>]
  p2pf-nat rendezvous <addr>
  p2pf-nat punch <bind> <rendezvous> <session-hex32> <secret-hex64> <remote-peer-id>
  p2pf-nat relay-server <addr>
  p2pf-nat relay-chat <bind> <relay> <session-hex32> <secret-hex64> <partner-peer-id> <message>";

fn hex<const N: usize>(s: &str) -> Result<[u8; N], String> {
    if s.len() != 2 * N {
        return Err(format!("expected {} hex digits, got {}", 2 * N, s.len()));
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| format!("bad hex: {e}"))?;
    }
    Ok(out)
}

fn addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|e| format!("bad socket address {s:?}: {e}"))
}

async fn run(args: Vec<String>) -> Result<ExitCode, String> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["stun-server", addrs @ ..] if !addrs.is_empty() => {
            let mut servers = Vec::new();
            for s in addrs {
                let server = StunServer::bind(addr(s)?)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("listening {}", server.local_addr());
                servers.push(server);
            }
            std::future::pending::<()>().await;
            Ok(ExitCode::SUCCESS)
        }
        ["rendezvous", s] => {
            let server = RendezvousService::bind(addr(s)?)
                .await
                .map_err(|e| e.to_string())?;
            println!("listening {}", server.local_addr());
            std::future::pending::<()>().await;
            Ok(ExitCode::SUCCESS)
        }
        ["stun", bind, server] => {
            let socket = UdpSocket::bind(addr(bind)?)
                .await
                .map_err(|e| e.to_string())?;
            let out = stun_binding(&socket, addr(server)?, RetransmitConfig::default())
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "mapped {} local {}",
                out.mapped,
                socket.local_addr().map_err(|e| e.to_string())?
            );
            Ok(ExitCode::SUCCESS)
        }
        ["behaviour", bind, primary, alternate, rest @ ..] if rest.len() <= 1 => {
            let socket = UdpSocket::bind(addr(bind)?)
                .await
                .map_err(|e| e.to_string())?;
            let servers = BehaviourServers {
                primary: addr(primary)?,
                alternate: addr(alternate)?,
                alternate_port: rest.first().map(|s| addr(s)).transpose()?,
            };
            let r = discover_behaviour(&socket, servers, RetransmitConfig::default())
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "mapping {:?} behind_nat {:?} local {} mapped {} {} {:?}",
                r.mapping,
                r.behind_nat,
                r.local,
                r.mapped_primary,
                r.mapped_alternate,
                r.mapped_alternate_port
            );
            Ok(ExitCode::SUCCESS)
        }
        ["punch", bind, rendezvous, session, secret, remote] => {
            let session: [u8; 16] = hex(session)?;
            let keypair = Keypair::from_secret_bytes(hex(secret)?);
            let remote: PeerId = remote.parse().map_err(|e| format!("bad peer id: {e}"))?;
            let socket = UdpSocket::bind(addr(bind)?)
                .await
                .map_err(|e| e.to_string())?;
            let local = socket.local_addr().map_err(|e| e.to_string())?;
            let remote_addr = rendezvous_register(
                &socket,
                addr(rendezvous)?,
                session,
                &keypair,
                &remote,
                Duration::from_millis(200),
                50,
            )
            .await
            .map_err(|e| e.to_string())?;
            println!("introduced {remote_addr}");
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| format!("OS randomness failed: {e}"))?;
            let p = Punch::new(
                PunchSession {
                    keypair,
                    remote,
                    nonce: session,
                },
                local,
                &[remote_addr],
                PunchConfig::default(),
                seed,
                std::time::Instant::now(),
            );
            match punch(&socket, p).await {
                Ok(path) => {
                    println!(
                        "punched local {} remote {} stats {:?}",
                        path.local, path.remote, path.stats
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ NatError::PunchFailed { .. }) => {
                    println!("{e}");
                    Ok(ExitCode::from(2))
                }
                Err(e) => Err(e.to_string()),
            }
        }
        ["relay-server", s] => {
            let server = RelayService::bind(addr(s)?, RelayLimits::default())
                .await
                .map_err(|e| e.to_string())?;
            println!("listening {}", server.local_addr());
            std::future::pending::<()>().await;
            Ok(ExitCode::SUCCESS)
        }
        ["relay-chat", bind, relay, session, secret, partner, message] => {
            let session: [u8; 16] = hex(session)?;
            let keypair = Keypair::from_secret_bytes(hex(secret)?);
            let partner: PeerId = partner.parse().map_err(|e| format!("bad peer id: {e}"))?;
            let relay = addr(relay)?;
            let socket = UdpSocket::bind(addr(bind)?)
                .await
                .map_err(|e| e.to_string())?;
            relay_allocate(
                &socket,
                relay,
                &keypair,
                session,
                &partner,
                Duration::from_millis(200),
                50,
            )
            .await
            .map_err(|e| e.to_string())?;
            println!("paired via {relay}");
            // Send our message every 100 ms (at most 50 times) until the peer's arrives, then
            // a few more times so the peer gets ours even if it started later.
            let data = encode_data(message.as_bytes());
            let mut buf = vec![0u8; 2048];
            let mut heard: Option<String> = None;
            let mut extra = 0;
            for _ in 0..50 {
                socket
                    .send_to(&data, relay)
                    .await
                    .map_err(|e| e.to_string())?;
                if heard.is_some() {
                    extra += 1;
                    if extra >= 3 {
                        break;
                    }
                }
                let until = tokio::time::Instant::now() + Duration::from_millis(100);
                while let Ok(received) =
                    tokio::time::timeout_at(until, socket.recv_from(&mut buf)).await
                {
                    let (n, from) = received.map_err(|e| e.to_string())?;
                    if from == relay {
                        if let Some(RelayReply::Data(p)) = decode_reply(&buf[..n]) {
                            heard.get_or_insert_with(|| String::from_utf8_lossy(p).into_owned());
                        }
                    }
                }
            }
            match heard {
                Some(text) => {
                    println!("relayed received {text}");
                    Ok(ExitCode::SUCCESS)
                }
                None => Err("nothing arrived through the relay".into()),
            }
        }
        _ => Err(USAGE.to_owned()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("p2pf-nat: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("p2pf-nat: {e}");
            ExitCode::FAILURE
        }
    }
}
