//! Arbitrary text into `WordAddress::from_str` and the dictionary lookup: must never panic;
//! whatever parses prints in canonical form, parses back to itself, and encodes its socket
//! address to the same words unless it used the 9-word form of an address that has 6 words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_foundation_words::{Encoding, WordAddress, dictionary};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = dictionary::lookup(text);
    if let Ok((words, _corrections)) = WordAddress::parse_with_corrections(text) {
        let canonical = words.to_string();
        assert_eq!(canonical.parse::<WordAddress>(), Ok(words));
        let addr = words.to_socket_addr();
        let again = WordAddress::from(addr);
        assert_eq!(again.to_socket_addr(), addr);
        if words.encoding() != Encoding::Ipv6Full {
            assert_eq!(again, words);
        }
    }
});
