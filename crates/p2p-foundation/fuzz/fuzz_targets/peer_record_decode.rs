//! Arbitrary DHT record values decoded as signed peer records' payloads: must never panic,
//! and whatever decodes must re-encode to the same bytes (one encoding per record).
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_foundation::peer_record::PeerRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = PeerRecord::decode(data) {
        assert_eq!(record.encode(), data);
        assert_eq!(PeerRecord::new(record.addrs().iter().copied()), record);
    }
});
