//! Arbitrary bytes, split at arbitrary points, through the line decoder and the
//! JSON-RPC line parser (both roles): must never panic, never yield a line longer
//! than the limit, never buffer more than the limit, and must consume every byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p_foundation_mcp::{
    framing::{Frame, LineDecoder, parse_line},
    rmcp::{RoleClient, RoleServer},
};

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else { return };
    let limit = usize::from(head) * 4;
    let mut decoder = LineDecoder::new(limit);
    // Feed in chunks whose sizes come from the input itself.
    let mut input = rest;
    let mut step = 1 + usize::from(head % 13);
    while !input.is_empty() {
        let chunk = &input[..step.min(input.len())];
        let mut c = chunk;
        while !c.is_empty() {
            let (used, frame) = decoder.feed(c);
            assert!(used > 0 && used <= c.len());
            c = &c[used..];
            if let Some(Frame::Line(line)) = frame {
                assert!(line.len() <= limit);
                let _ = parse_line::<RoleServer>(&line);
                let _ = parse_line::<RoleClient>(&line);
            }
            assert!(decoder.buffered() <= limit);
        }
        input = &input[chunk.len()..];
        step = step % 31 + 1;
    }
    // Whole input as one line, too.
    let _ = parse_line::<RoleServer>(rest);
});
