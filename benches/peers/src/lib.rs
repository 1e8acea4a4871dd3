//! p2p-foundation side by side with rust-libp2p and iroh (issue 15): the benchmark is
//! `benches/peers.rs`; see the README.
