#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod base32;
mod error;
mod kad;
mod keypair;
mod peer_id;
mod signed;

pub use error::IdentityError;
pub use kad::{Distance, Key};
pub use keypair::Keypair;
pub use peer_id::{PeerId, ShortPeerId, Signature};
pub use signed::{
    DEFAULT_MAX_ENVELOPE_LEN, DEFAULT_MAX_LIFETIME, MAX_DOMAIN_LEN, Signed, SignedPayload,
    Verified, unix_millis,
};
pub use zeroize::Zeroizing;
