//! Generate, save and show a node identity.
//!
//! ```sh
//! cargo run -p p2p-foundation-identity --example identity -- show [KEY_FILE]
//! ```
//! With a key file, the identity is loaded from it (or generated and saved there, mode 0600).
use p2p_foundation_identity::Keypair;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("show") | None => {}
        Some(other) => {
            return Err(
                format!("unknown command {other:?}; usage: identity show [KEY_FILE]").into(),
            );
        }
    }
    let keypair = match args.next() {
        Some(path) => Keypair::load_or_generate(&path)?,
        None => Keypair::generate(),
    };
    let peer = keypair.peer_id();
    println!("peer id:       {peer}");
    println!("short form:    {}", peer.short());
    println!("kademlia key:  {}", peer.kad_key());
    Ok(())
}
