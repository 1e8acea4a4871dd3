//! `cargo xtask bench nat`: STUN on loopback, our server beside coturn's.
//!
//! - `binding_rtt_p50_us` / `binding_rtt_p99_us`: one Binding transaction (encode, send,
//!   server decode + answer, receive, decode, match) from the same client code, against our
//!   `StunServer` and against coturn's `turnserver -S` on the same machine, interleaved.
//!   Without coturn installed (crates/nat/ci-setup.sh installs it) only ours is recorded.
//! - `decode_response_ns`: decoding RFC 5769's IPv4 sample response (FINGERPRINT checked).
//! - `server_answer_ns`: the server's stateless answer to a Binding request (decode + encode).
use std::hint::black_box;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use p2p_foundation_benchkit::{Better, Suite, percentile};
use p2p_foundation_nat::binding::answer_binding_request;
use p2p_foundation_nat::stun::Message;
use p2p_foundation_nat::{RetransmitConfig, StunLimits, StunServer, stun_binding};
use tokio::net::UdpSocket;

const RFC5769_V4: [u8; 80] = [
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
];

fn coturn_available() -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("turnserver").is_file()))
        .unwrap_or(false)
}

async fn rtt_us(socket: &UdpSocket, server: SocketAddr) -> f64 {
    let start = Instant::now();
    stun_binding(socket, server, RetransmitConfig::default())
        .await
        .unwrap();
    start.elapsed().as_secs_f64() * 1e6
}

fn main() {
    let mut suite = Suite::new("nat");

    let ns = suite.time_ns(|| Message::decode(black_box(&RFC5769_V4)).unwrap());
    suite.record("decode_response_ns", ns, "ns", Better::Lower);
    let request = Message::binding_request().unwrap().encode().unwrap();
    let from: SocketAddr = "203.0.113.7:40000".parse().unwrap();
    let ns = suite.time_ns(|| answer_binding_request(from, black_box(&request)).unwrap());
    suite.record("server_answer_ns", ns, "ns", Better::Lower);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // One client sends thousands of requests back to back: lift the per-IP limit (its
        // check still runs on every request) so the figure is the answer path's.
        let unlimited = StunLimits {
            answers_per_sec_per_ip: 10_000_000,
            burst_per_ip: 10_000_000,
            ..StunLimits::default()
        };
        let ours = StunServer::bind_with_limits("127.0.0.1:0".parse().unwrap(), unlimited)
            .await
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut coturn = None;
        let mut coturn_addr = None;
        let dir = std::env::temp_dir().join(format!("p2pf-nat-bench-{}", std::process::id()));
        if coturn_available() {
            let port = UdpSocket::bind("127.0.0.1:0")
                .await
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            std::fs::create_dir_all(&dir).unwrap();
            let child = Command::new("turnserver")
                .args([
                    "-S",
                    "-L",
                    "127.0.0.1",
                    "--no-cli",
                    "-n",
                    "--no-tls",
                    "--no-dtls",
                    "--log-file",
                    "stdout",
                ])
                .args(["-p", &port.to_string()])
                .arg("--db")
                .arg(dir.join("turndb"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut child = child;
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            // Wait until coturn answers: up to 3 rounds of retransmissions (about 8 s each;
            // a loaded machine once took longer than one round to start coturn).
            let mut answered = false;
            for round in 0..3 {
                let outcome = stun_binding(
                    &client,
                    addr,
                    RetransmitConfig {
                        rto: Duration::from_millis(100),
                        ..Default::default()
                    },
                )
                .await;
                match outcome {
                    Ok(_) => {
                        answered = true;
                        break;
                    }
                    Err(e) => {
                        let exited = child.try_wait().ok().flatten();
                        assert!(exited.is_none(), "coturn exited at start ({exited:?})");
                        eprintln!("nat bench: coturn not answering yet (round {round}: {e})");
                    }
                }
            }
            assert!(
                answered,
                "coturn on {addr} never answered a STUN Binding request"
            );
            coturn = Some(child);
            coturn_addr = Some(addr);
        } else {
            eprintln!("nat bench: coturn not installed, recording our server without its baseline");
        }
        let n = suite.scale(20_000, 200);
        let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for _ in 0..n {
            a.push(rtt_us(&client, ours.local_addr()).await);
            if let Some(addr) = coturn_addr {
                b.push(rtt_us(&client, addr).await);
            }
        }
        for (name, p) in [("binding_rtt_p50_us", 50.0), ("binding_rtt_p99_us", 99.0)] {
            let ours_p = percentile(&mut a, p);
            if b.is_empty() {
                suite.record(name, ours_p, "µs", Better::Lower);
            } else {
                let base = percentile(&mut b, p);
                suite.record_vs(
                    name,
                    ours_p,
                    "µs",
                    Better::Lower,
                    &format!("coturn.{name}"),
                    base,
                );
            }
        }
        if let Some(mut c) = coturn {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
    suite.finish();
}
