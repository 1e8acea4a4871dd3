//! Ed25519 identities for p2p-foundation: the one small base crate every other crate shares.
//!
//! - [`Keypair`]: an Ed25519 signing key, generated from OS randomness or loaded from a key
//!   file that only its owner can read.
//! - [`PeerId`]: a node's public key, 32 bytes, written as 52 lowercase base32 characters.
//! - [`Key`] and [`Distance`]: 256-bit Kademlia keys (`PeerId::kad_key()` is the SHA-256 of the
//!   public key) and their XOR distance.
//! - [`Signed`]: a signed, expiring, sequence-numbered envelope around any serde payload, bound
//!   to a domain-separation tag so a signature made for one purpose is never accepted for another.
//!
//! ```
//! use p2p_foundation_identity::{Keypair, PeerId};
//!
//! let keypair = Keypair::generate();
//! let peer: PeerId = keypair.peer_id();
//! let text = peer.to_string();
//! assert_eq!(text.len(), 52);
//! assert_eq!(text.parse::<PeerId>().unwrap(), peer);
//! ```
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
pub use signed::{DEFAULT_MAX_ENVELOPE_LEN, MAX_DOMAIN_LEN, Signed, SignedPayload, unix_millis};
