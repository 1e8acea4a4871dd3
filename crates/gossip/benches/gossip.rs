//! `cargo xtask bench gossip` (being written).
fn main() {
    let suite = p2p_foundation_benchkit::Suite::new("gossip");
    suite.finish();
}
