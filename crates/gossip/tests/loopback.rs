//! 100 gossip nodes in one process, real TCP sockets on 127.0.0.1, through the tokio driver.
#[path = "common/net.rs"]
mod net;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback100_delivers_every_message_to_every_node() {
    let net = net::start(100, 5, 1).await;
    assert!(
        net.wait_for_meshes(1, Duration::from_secs(30)).await,
        "meshes formed"
    );
    let (took, delivered) = net
        .publish_and_wait(100, 1024, Duration::from_secs(60))
        .await;
    eprintln!(
        "loopback100: {delivered} deliveries of 100 x 1 KiB over {} connections in {took:?}",
        net.connections
    );
    assert_eq!(delivered, 100 * 99, "every node got every message");
    for n in &net.nodes {
        assert_eq!(
            *n.duplicates.lock().unwrap(),
            0,
            "no message delivered twice to the application"
        );
        let m = n.handle.metrics().await.unwrap();
        assert_eq!(
            m.malformed_frames + m.oversized_frames + m.invalid_signature,
            0
        );
        assert_eq!(n.handle.dropped_events(), 0);
    }
    net.shutdown().await;
}
