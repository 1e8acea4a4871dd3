//! The overlay's TUN endpoint with the real kernel: two network namespaces with no link
//! between them at all, each with an [`OverlayTun`]; an in-memory [`OverlayLink`] carries the
//! datagrams. The host's own `ping -6` and a TCP connection (std sockets) reach the other
//! namespace's overlay address; a packet over what the link carries gets a Packet Too Big the
//! kernel acts on; a spoofed inner source is dropped and counted.
//!
//! Needs root (namespaces, TUN devices) and `ip`/`ping`; skips loudly without them, except
//! with `CI=true`, where it fails.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use p2p_foundation_identity::{Keypair, PeerId};
use p2p_foundation_tunnel::overlay::{
    DATAGRAM_TAG, DropReason, OverlayConfig, OverlayLink, OverlayTun, overlay_addr,
};
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use tokio::sync::mpsc;

fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let tools = ["ip", "ping"]
        .iter()
        .all(|t| Command::new(t).arg("-V").output().is_ok());
    let tun = std::path::Path::new("/dev/net/tun").exists();
    if root && tools && tun {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true: the overlay TUN test needs root, ip, ping and /dev/net/tun (root {root}, tools {tools}, tun {tun})"
    );
    eprintln!("!!! SKIPPING overlay TUN test: needs root, ip, ping, /dev/net/tun");
    false
}

fn sh(args: &[&str]) -> std::process::Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn enter(ns: &str) {
    let path = format!("/var/run/netns/{ns}");
    let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network)).expect("setns");
}

/// Hands datagrams to the other namespace's delivery task.
struct ChanLink {
    local: PeerId,
    peer: PeerId,
    max: usize,
    to: mpsc::Sender<(PeerId, Vec<u8>)>,
}

impl OverlayLink for ChanLink {
    fn send(&self, peer: &PeerId, datagram: Vec<u8>) -> Result<(), String> {
        if *peer != self.peer {
            return Err("not connected".into());
        }
        self.to
            .try_send((self.local, datagram))
            .map_err(|e| e.to_string())
    }

    fn max_datagram_size(&self, peer: &PeerId) -> Option<usize> {
        (*peer == self.peer).then_some(self.max)
    }
}

/// Starts an overlay TUN in `ns` on its own thread; datagrams for the other side go to
/// `to`, datagrams from it arrive on `from`.
fn start(
    ns: String,
    local: PeerId,
    peer: PeerId,
    max: usize,
    to: mpsc::Sender<(PeerId, Vec<u8>)>,
    mut from: mpsc::Receiver<(PeerId, Vec<u8>)>,
) -> Arc<OverlayTun> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter(&ns);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let tun = OverlayTun::open(local, &OverlayConfig::default()).expect("TUN device");
            tun.add_peer(peer);
            tx.send(Arc::clone(&tun)).expect("sent");
            let link = Arc::new(ChanLink {
                local,
                peer,
                max,
                to,
            });
            let inbound = {
                let tun = Arc::clone(&tun);
                async move {
                    while let Some((who, d)) = from.recv().await {
                        tun.deliver(&who, &d).await;
                    }
                }
            };
            // Ends when the test drops the other side's sender (and with the process).
            tokio::select! {
                e = tun.run(link) => panic!("TUN failed: {e}"),
                () = inbound => {}
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("TUN device opened in time")
}

fn ping(ns: &str, dst: Ipv6Addr, extra: &[&str]) -> (bool, String) {
    let dst = dst.to_string();
    let mut args = vec![
        "ip", "netns", "exec", ns, "ping", "-6", "-n", "-c", "4", "-i", "0.3", "-W", "2",
    ];
    args.extend_from_slice(extra);
    args.push(&dst);
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("ping runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn received(out: &str) -> usize {
    out.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once(" packets transmitted, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// TCP from `client_ns` to `[dst]:port`, served in `server_ns`: a line and its echo.
fn tcp_echo(server_ns: &str, client_ns: &str, dst: Ipv6Addr, port: u16) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let sns = server_ns.to_string();
    let server = std::thread::spawn(move || {
        enter(&sns);
        let l = TcpListener::bind(SocketAddr::from((dst, port))).expect("bind overlay address");
        ready_tx.send(()).expect("ready");
        let (mut s, from) = l.accept().expect("accepted");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read");
        s.write_all(&got).expect("echo");
        from
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server up");
    let cns = client_ns.to_string();
    let client = std::thread::spawn(move || {
        enter(&cns);
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::from((dst, port)), Duration::from_secs(10))
                .expect("TCP connect over the overlay");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let msg: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        s.write_all(&msg).expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut back = Vec::new();
        s.read_to_end(&mut back).expect("read echo");
        assert_eq!(back, msg, "the echo came back whole");
        s.local_addr().expect("local").ip()
    });
    let from = server.join().expect("server");
    let local = client.join().expect("client");
    assert_eq!(
        from.ip(),
        local,
        "the server saw the client's overlay address"
    );
}

#[test]
fn ping_and_tcp_through_two_tun_devices() {
    if !can_run() {
        return;
    }
    let tag = format!("p2pft-{}", std::process::id());
    let (na, nb) = (format!("{tag}-a"), format!("{tag}-b"));
    let _guard = Netns(vec![na.clone(), nb.clone()]);
    for ns in [&na, &nb] {
        sh(&["ip", "netns", "add", ns]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    let (a, b) = (Keypair::generate().peer_id(), Keypair::generate().peer_id());
    let (to_b, from_a) = mpsc::channel(256);
    let (to_a, from_b) = mpsc::channel(256);
    // The A→B path carries 1,301-byte datagrams (1,300 bytes of packet); B→A the default.
    let tun_a = start(na.clone(), a, b, 1301, to_b.clone(), from_b);
    let tun_b = start(nb.clone(), b, a, 1401, to_a, from_a);
    assert_eq!(
        (tun_a.addr(), tun_b.addr()),
        (overlay_addr(&a), overlay_addr(&b))
    );
    let shown = sh(&["ip", "-n", &na, "-6", "addr", "show", "dev", tun_a.name()]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!("{}/48", tun_a.addr())) && shown.contains("mtu 1400"),
        "{shown}"
    );

    // ping both ways.
    let (ok, out) = ping(&na, tun_b.addr(), &[]);
    assert!(ok && received(&out) == 4, "A→B ping: {out}");
    let (ok, out) = ping(&nb, tun_a.addr(), &[]);
    assert!(ok && received(&out) == 4, "B→A ping: {out}");

    // 1,348-byte echo requests on a 1,300-byte path: the first gets a Packet Too Big, the
    // kernel lowers its path MTU to B and fragments the next ones to fit.
    assert_eq!(tun_a.stats().packet_too_big, 0);
    let (_, out) = ping(&na, tun_b.addr(), &["-s", "1300"]);
    assert!(tun_a.stats().packet_too_big > 0, "no Packet Too Big sent");
    assert!(received(&out) >= 2, "fragmented pings after the PTB: {out}");

    // TCP both ways (A→B segments now fit the 1,300-byte path MTU the kernel learnt).
    tcp_echo(&nb, &na, tun_b.addr(), 7001);
    tcp_echo(&na, &nb, tun_a.addr(), 7002);

    // A datagram from A whose inner source is not A's address: dropped, counted.
    let mut spoof = vec![DATAGRAM_TAG, 0x60, 0, 0, 0, 0, 0, 59, 64];
    spoof.extend_from_slice(&overlay_addr(&Keypair::generate().peer_id()).octets());
    spoof.extend_from_slice(&tun_b.addr().octets());
    let before = tun_b.stats();
    to_b.try_send((a, spoof)).expect("queued");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tun_b.stats().dropped_for(DropReason::SpoofedSource)
        == before.dropped_for(DropReason::SpoofedSource)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "spoofed packet not counted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        tun_b.stats().packets_in,
        before.packets_in,
        "nothing delivered"
    );
    let (sa, sb) = (tun_a.stats(), tun_b.stats());
    eprintln!("A: {sa:?}\nB: {sb:?}");
    assert!(sa.packets_out >= 8 && sb.packets_in >= 8);
}
