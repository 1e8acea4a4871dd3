//! Three gossip nodes on 127.0.0.1 through the tokio driver: two subscribe, one publishes.
//!
//! `cargo run -p p2p-foundation-gossip --example pubsub`
use std::time::Duration;

use p2p_foundation_gossip::driver::tcp;
use p2p_foundation_gossip::{Config, Event, Topic, spawn};
use p2p_foundation_identity::Keypair;
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let topic = Topic::new("topic/ai-models")?;
    let mut config = Config::default();
    config.score.ip_colocation_whitelist = vec![std::net::Ipv4Addr::LOCALHOST.into()];

    // A hub that accepts connections, and two nodes that dial it.
    let hub_key = Keypair::generate();
    let (hub, _hub_events) = spawn(hub_key.clone(), config.clone(), 1, 1024)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let accept_hub = hub.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if let Ok((peer, remote, r, w)) = tcp::handshake(&hub_key, stream).await {
                let _ = accept_hub
                    .add_peer(peer, Some(remote.ip()), false, r, w)
                    .await;
            }
        }
    });
    hub.subscribe(topic.clone()).await?;

    let mut subscribers = Vec::new();
    for seed in 2..4 {
        let key = Keypair::generate();
        let (node, events) = spawn(key.clone(), config.clone(), seed, 1024)?;
        node.subscribe(topic.clone()).await?;
        let (peer, remote, r, w) = tcp::connect(&key, addr).await?;
        node.add_peer(peer, Some(remote.ip()), true, r, w).await?;
        subscribers.push((node, events));
    }

    // Wait until the hub's mesh holds both subscribers, then publish.
    while hub.mesh_peers(topic.clone()).await?.len() < 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = hub
        .publish(topic.clone(), b"model weights v2 are out".to_vec())
        .await?;
    println!("published {id}");
    for (node, events) in &mut subscribers {
        let deadline = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(Event::Message { message, hops, .. }) => {
                        println!(
                            "{} got {:?} from {} ({hops} hop)",
                            node.local_peer_id().short(),
                            String::from_utf8_lossy(&message.data),
                            message.author.short()
                        );
                        break;
                    }
                    Some(_) => continue,
                    None => return Err("node stopped".into()),
                },
                () = &mut deadline => return Err("no message within 5 s".into()),
            }
        }
    }
    Ok(())
}
