#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod address;
mod codec;
pub mod dictionary;
mod error;
mod scramble;

pub use address::{Correction, Encoding, MAX_INPUT_LEN, WordAddress, parse_socket_addr};
pub use error::WordsError;
