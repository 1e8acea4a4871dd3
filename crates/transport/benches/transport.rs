//! Transport benchmarks (being written).
fn main() {
    let suite = p2p_foundation_benchkit::Suite::new("transport");
    suite.finish();
}
