//! A key-value store on the DHT: three nodes; one stores `color`, another reads it, a
//! later write wins.
//!
//! `cargo run -p p2p-foundation --example kv`

use p2p_foundation::P2PNode;

/// Runs the store; returns the values read after each write.
pub(crate) async fn run() -> p2p_foundation::Result<Vec<String>> {
    let seed = P2PNode::new().listen_on("127.0.0.1:0").build().await?;
    let seed_addr = format!("{}@{}", seed.peer_id(), seed.local_addr()?);
    let writer = P2PNode::new()
        .listen_on("127.0.0.1:0")
        .bootstrap_addrs([&seed_addr])
        .build()
        .await?;
    let reader = P2PNode::new()
        .listen_on("127.0.0.1:0")
        .bootstrap_addrs([&seed_addr])
        .build()
        .await?;

    let mut seen = Vec::new();
    for value in ["blue", "green"] {
        let stored_on = writer.dht_put("color", value).await?;
        let got = reader.dht_get("color").await?.unwrap_or_default();
        println!(
            "put color={value} on {stored_on} node(s); read back {}",
            String::from_utf8_lossy(&got)
        );
        seen.push(String::from_utf8_lossy(&got).into_owned());
    }

    for n in [reader, writer, seed] {
        n.shutdown().await;
    }
    Ok(seen)
}

#[allow(dead_code)] // also compiled into tests/examples.rs, which calls run()
#[tokio::main]
async fn main() -> p2p_foundation::Result<()> {
    run().await?;
    Ok(())
}
