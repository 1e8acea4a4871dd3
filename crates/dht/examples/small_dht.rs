//! A small DHT on this machine: 20 nodes over UDP on 127.0.0.1, a record put from one node
//! and read from another, a provider announced and found.
//!
//! ```text
//! cargo run -p p2p-foundation-dht --example small_dht
//! ```
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use p2p_foundation_dht::{Config, Contact, DhtNode, ProviderRecord, Record, UdpTransport};
use p2p_foundation_identity::{Key, Keypair, Signed};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut nodes = Vec::new();
    for i in 0..20 {
        let keypair = Keypair::generate();
        let (transport, inbound) =
            UdpTransport::bind(SocketAddr::from(([127, 0, 0, 1], 0)), keypair.clone()).await?;
        let contact = Contact::new(keypair.peer_id(), transport.local_addr());
        let node = DhtNode::spawn(keypair.peer_id(), Config::default(), i, transport, inbound);
        if let Some((_, first, _)) = nodes.first() {
            node.bootstrap(vec![*first]).await?;
        }
        nodes.push((node, contact, keypair));
    }
    println!("{} nodes up", nodes.len());

    let expires = SystemTime::now() + Duration::from_secs(3600);
    let key = Key::for_record(b"greeting");
    let record = Signed::sign(&nodes[3].2, Record::new(key, "hello, DHT"), 1, expires)?;
    let stored = nodes[3].0.put_record(record).await?;
    println!("record stored on {stored} nodes");
    let found = nodes[17].0.get_record(key).await?;
    let value = found
        .first()
        .map(|r| String::from_utf8_lossy(&r.payload().value).into_owned());
    println!("node 17 reads: {value:?}");

    let tool = Key::for_record(b"tool/summarise");
    let offer = ProviderRecord::new(tool, vec![nodes[5].1.addr()]);
    nodes[5]
        .0
        .add_provider(Signed::sign(&nodes[5].2, offer, 1, expires)?)
        .await?;
    let providers = nodes[11].0.get_providers(tool).await?;
    println!(
        "providers of tool/summarise: {:?}",
        providers
            .iter()
            .map(|p| p.signer().short())
            .collect::<Vec<_>>()
    );
    Ok(())
}
