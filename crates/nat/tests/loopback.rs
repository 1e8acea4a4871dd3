//! STUN client and server over real UDP sockets on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use p2p_foundation_nat::binding::answer_binding_request;
use p2p_foundation_nat::stun::Message;
use p2p_foundation_nat::{
    BehaviourServers, MappingBehaviour, NatError, RetransmitConfig, StunServer, discover_behaviour,
    stun_binding,
};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const HANG_GUARD: Duration = Duration::from_secs(60);

fn fast() -> RetransmitConfig {
    RetransmitConfig {
        rto: Duration::from_millis(50),
        max_sends: 7,
        last_wait_multiplier: 16,
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid address")
}

#[tokio::test]
async fn binding_over_ipv4_loopback_reports_our_address() {
    let server = StunServer::bind(addr("127.0.0.1:0"))
        .await
        .expect("server binds");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client binds");
    let out = timeout(
        HANG_GUARD,
        stun_binding(&client, server.local_addr(), RetransmitConfig::default()),
    )
    .await
    .expect("hang guard")
    .expect("binding succeeds");
    assert_eq!(out.mapped, client.local_addr().expect("local addr"));
    assert_eq!(out.server, server.local_addr());
    // The full answer (with SOFTWARE) would be larger than our request: left out.
    assert_eq!(out.server_software, None);
    assert!(server.answered() >= 1);
}

#[tokio::test]
async fn binding_over_ipv6_loopback_reports_our_address() {
    let server = match StunServer::bind(addr("[::1]:0")).await {
        Ok(s) => s,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!(
                "SKIPPED binding_over_ipv6_loopback_reports_our_address: no IPv6 loopback ({e})"
            );
            return;
        }
        Err(e) => panic!("IPv6 loopback unavailable with CI=true: {e}"),
    };
    let client = UdpSocket::bind("[::1]:0").await.expect("client binds");
    let out = timeout(
        HANG_GUARD,
        stun_binding(&client, server.local_addr(), fast()),
    )
    .await
    .expect("hang guard")
    .expect("binding succeeds");
    assert_eq!(out.mapped, client.local_addr().expect("local addr"));
}

/// A server that ignores the first two requests: the client retransmits the same transaction.
#[tokio::test]
async fn client_retransmits_until_answered() {
    let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let server_addr = server.local_addr().expect("addr");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let fake = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let mut ids = Vec::new();
        for i in 0..3 {
            let (n, from) = server.recv_from(&mut buf).await.expect("recv");
            ids.push(
                Message::decode(&buf[..n])
                    .expect("request decodes")
                    .transaction_id,
            );
            if i == 2 {
                let reply = answer_binding_request(from, &buf[..n]).expect("answer");
                server.send_to(&reply, from).await.expect("send");
            }
        }
        ids
    });
    let out = timeout(HANG_GUARD, stun_binding(&client, server_addr, fast()))
        .await
        .expect("hang guard")
        .expect("binding succeeds");
    assert_eq!(out.stats.sends, 3);
    let ids = fake.await.expect("fake server");
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "retransmissions reuse the transaction id"
    );
}

/// Answers from another address and for another transaction are dropped and counted.
#[tokio::test]
async fn strangers_are_dropped_and_counted() {
    let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let server_addr = server.local_addr().expect("addr");
    let rogue = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let fake = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let (n, from) = server.recv_from(&mut buf).await.expect("recv");
        let reply = answer_binding_request(from, &buf[..n]).expect("answer");
        // A third party that learnt the transaction id answers first, claiming a different address.
        let mut forged = Message::decode(&reply).expect("decodes");
        forged.attributes = vec![p2p_foundation_nat::stun::Attribute::XorMappedAddress(addr(
            "192.0.2.1:1",
        ))];
        rogue
            .send_to(&forged.encode().expect("encodes"), from)
            .await
            .expect("send");
        // The right server, but another transaction.
        let mut other = Message::decode(&reply).expect("decodes");
        other.transaction_id = p2p_foundation_nat::stun::TransactionId([1; 12]);
        server
            .send_to(&other.encode().expect("encodes"), from)
            .await
            .expect("send");
        server.send_to(&reply, from).await.expect("send");
    });
    let out = timeout(
        HANG_GUARD,
        stun_binding(&client, server_addr, RetransmitConfig::default()),
    )
    .await
    .expect("hang guard")
    .expect("binding succeeds");
    fake.await.expect("fake server");
    assert_eq!(out.mapped, client.local_addr().expect("addr"));
    assert_eq!(out.stats.wrong_source, 1);
    assert_eq!(out.stats.wrong_transaction, 1);
}

/// Nobody answers: exactly `max_sends` requests go out, then a timeout error.
#[tokio::test]
async fn silent_server_times_out_after_bounded_sends() {
    let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let server_addr = server.local_addr().expect("addr");
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let cfg = RetransmitConfig {
        rto: Duration::from_millis(20),
        max_sends: 3,
        last_wait_multiplier: 2,
    };
    let err = timeout(HANG_GUARD, stun_binding(&client, server_addr, cfg))
        .await
        .expect("hang guard")
        .expect_err("nobody answers");
    assert!(matches!(err, NatError::Timeout { sends: 3, .. }), "{err}");
    let mut buf = [0u8; 2048];
    let mut received = 0;
    while server.try_recv_from(&mut buf).is_ok() {
        received += 1;
    }
    assert_eq!(received, 3);
}

#[tokio::test]
async fn behaviour_without_nat_is_endpoint_independent() {
    let a = StunServer::bind(addr("127.0.0.1:0")).await.expect("bind");
    let b = StunServer::bind(addr("127.0.0.2:0")).await.expect("bind");
    let c = StunServer::bind(addr("127.0.0.2:0")).await.expect("bind");
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let servers = BehaviourServers {
        primary: a.local_addr(),
        alternate: b.local_addr(),
        alternate_port: Some(c.local_addr()),
    };
    let report = timeout(HANG_GUARD, discover_behaviour(&socket, servers, fast()))
        .await
        .expect("hang guard")
        .expect("discovery succeeds");
    assert_eq!(report.mapping, MappingBehaviour::EndpointIndependent);
    assert_eq!(report.behind_nat, Some(false));
    assert_eq!(
        report.mapped_alternate_port,
        Some(socket.local_addr().expect("addr"))
    );
}

/// A flood of Binding requests from one IP gets the burst and the rate, not one answer per
/// request. A request from another IP afterwards is the barrier: the server handles
/// datagrams in order, so once it is answered every flood request has been handled, and on
/// loopback their answers are already queued on the flooding socket.
#[tokio::test]
async fn server_rate_limits_answers_per_source_ip() {
    let server = StunServer::bind(addr("127.0.0.1:0")).await.expect("bind");
    let flood = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let request = Message::binding_request()
        .expect("rng")
        .encode()
        .expect("encodes");
    let start = std::time::Instant::now();
    for _ in 0..100 {
        flood
            .send_to(&request, server.local_addr())
            .await
            .expect("send");
    }
    let barrier = UdpSocket::bind("127.0.0.2:0").await.expect("bind");
    timeout(
        HANG_GUARD,
        stun_binding(&barrier, server.local_addr(), fast()),
    )
    .await
    .expect("hang guard")
    .expect("another IP is still answered");
    let elapsed = start.elapsed().as_secs_f64();
    let mut buf = [0u8; 2048];
    let mut answers = 0u32;
    while let Ok((n, _)) = flood.try_recv_from(&mut buf) {
        assert!(
            n <= request.len().max(32),
            "answer of {n} bytes to a {}-byte request",
            request.len()
        );
        answers += 1;
    }
    // Burst 40, then 20 a second.
    let allowed = 40.0 + 20.0 * elapsed + 1.0;
    assert!(answers >= 40, "only {answers} answers");
    assert!(
        f64::from(answers) <= allowed,
        "{answers} answers to 100 requests in {elapsed:.3} s (allowed {allowed:.0})"
    );
}
