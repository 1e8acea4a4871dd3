#![no_main]
use libfuzzer_sys::fuzz_target;
use p2p_foundation_tunnel::SixIn4Packet;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = SixIn4Packet::decode(data) {
        let _ = (p.inner_src(), p.inner_dst());
        let mut again = Vec::new();
        p.encode(&mut again).expect("a decoded packet re-encodes");
        assert_eq!(SixIn4Packet::decode(&again).expect("re-decodes"), p);
    }
});
