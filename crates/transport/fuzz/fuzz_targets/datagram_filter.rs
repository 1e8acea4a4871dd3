//! The receive filter's classifier must never panic, and its verdicts must be consistent
//! with the bytes it saw.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_foundation_transport::JunkReason;
use p2p_foundation_transport::filter::{Verdict, classify};

fuzz_target!(|data: &[u8]| {
    let Some((&knob, datagram)) = data.split_first() else { return };
    let cid_len = usize::from(knob % 21);
    // "Ours" = an arbitrary but deterministic subset of connection ids.
    let ours = |cid: &[u8]| cid.len() == cid_len && cid.first().is_none_or(|b| b & 1 == 0);
    match classify(datagram, cid_len, ours) {
        Verdict::PassOurs => assert!(datagram[0] & 0xc0 == 0x40),
        Verdict::Drop(JunkReason::FixedBitClear) => assert!(datagram[0] & 0x40 == 0),
        Verdict::Drop(JunkReason::InitialTooSmall) => assert!(datagram.len() < 1200),
        Verdict::PassCounted(r) => assert_eq!(r, JunkReason::UnsupportedVersion),
        _ => {}
    }
});
