//! Chat over gossip: Bob joins Alice by her three words, both subscribe to `chat`, and
//! each reads what the other says.
//!
//! `cargo run -p p2p-foundation --example chat`

use p2p_foundation::{Error, P2PNode};

/// Runs the chat; returns the lines each side received.
pub(crate) async fn run() -> p2p_foundation::Result<Vec<String>> {
    let alice = P2PNode::new().listen_on("127.0.0.1:0").build().await?;
    let words = alice.word_address()?.to_string();
    let bob = P2PNode::new()
        .listen_on("127.0.0.1:0")
        .bootstrap_addrs([words.as_str()])
        .build()
        .await?;
    let mut alice_inbox = alice.subscribe("chat").await?;
    let mut bob_inbox = bob.subscribe("chat").await?;
    alice.wait_for_topic_peers("chat", 1).await?;
    bob.wait_for_topic_peers("chat", 1).await?;

    let mut lines = Vec::new();
    alice
        .publish("chat", b"hi Bob, Alice here".to_vec())
        .await?;
    let m = bob_inbox.recv().await.ok_or(Error::Shutdown)?;
    lines.push(format!(
        "bob got from {}: {}",
        m.author().short(),
        String::from_utf8_lossy(m.data())
    ));
    bob.publish("chat", b"hello Alice!".to_vec()).await?;
    let m = alice_inbox.recv().await.ok_or(Error::Shutdown)?;
    lines.push(format!(
        "alice got from {}: {}",
        m.author().short(),
        String::from_utf8_lossy(m.data())
    ));

    bob.shutdown().await;
    alice.shutdown().await;
    Ok(lines)
}

#[allow(dead_code)] // also compiled into tests/examples.rs, which calls run()
#[tokio::main]
async fn main() -> p2p_foundation::Result<()> {
    for line in run().await? {
        println!("{line}");
    }
    Ok(())
}
