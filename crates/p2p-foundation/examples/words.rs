//! Two peers that connect by three words: Alice reads her address out as words, Bob types
//! only those; the handshake proves Alice's PeerId.
//!
//! `cargo run -p p2p-foundation --example words`

use p2p_foundation::{P2PNode, PeerId};

/// Runs both; returns Alice's words and the PeerId Bob reached through them.
pub(crate) async fn run() -> p2p_foundation::Result<(String, PeerId, PeerId)> {
    let alice = P2PNode::new().listen_on("127.0.0.1:0").build().await?;
    let words = alice.word_address()?.to_string();
    println!("Alice: reach me at {words}");

    let bob = P2PNode::new().listen_on("127.0.0.1:0").build().await?;
    let addr = p2p_foundation::parse_addr(&words)?;
    let reached = bob.connect_addr(addr).await?;
    println!("Bob: {words} is {reached}");

    let alice_id = alice.peer_id();
    bob.shutdown().await;
    alice.shutdown().await;
    Ok((words, reached, alice_id))
}

#[allow(dead_code)] // also compiled into tests/examples.rs, which calls run()
#[tokio::main]
async fn main() -> p2p_foundation::Result<()> {
    run().await?;
    Ok(())
}
