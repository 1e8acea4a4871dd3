//! Saving and reloading the routing table.

use serde::{Deserialize, Serialize};

use crate::DhtError;
use crate::message::Contact;

/// Format version of a [`RoutingSnapshot`] encoding.
const SNAPSHOT_VERSION: u8 = 1;
/// Largest snapshot [`RoutingSnapshot::decode`] accepts.
pub const MAX_SNAPSHOT_LEN: usize = 1024 * 1024;

/// The routing table's contacts, to save at shutdown and feed back at start
/// ([`Dht::routing_snapshot`](crate::Dht::routing_snapshot),
/// [`Dht::restore_routing`](crate::Dht::restore_routing)).
///
/// Restored contacts are treated like any other: subject to the diversity limits, replaced
/// when they stop answering.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RoutingSnapshot {
    /// The contacts, most recently seen last within each bucket.
    pub contacts: Vec<Contact>,
}

impl RoutingSnapshot {
    /// Encodes as one version byte and the bincode body.
    pub fn encode(&self) -> Result<Vec<u8>, DhtError> {
        let mut out = vec![SNAPSHOT_VERSION];
        bincode::serde::encode_into_std_write(self, &mut out, bincode::config::standard())
            .map_err(|e| DhtError::Encode {
                reason: e.to_string(),
            })?;
        Ok(out)
    }

    /// Decodes what [`RoutingSnapshot::encode`] wrote; refuses more than
    /// [`MAX_SNAPSHOT_LEN`] bytes before parsing.
    pub fn decode(bytes: &[u8]) -> Result<Self, DhtError> {
        if bytes.len() > MAX_SNAPSHOT_LEN {
            return Err(DhtError::FrameTooLarge {
                len: bytes.len(),
                max: MAX_SNAPSHOT_LEN,
            });
        }
        let (&version, body) = bytes.split_first().ok_or_else(|| DhtError::Malformed {
            reason: "empty routing snapshot".into(),
        })?;
        if version != SNAPSHOT_VERSION {
            return Err(DhtError::UnsupportedVersion {
                found: version,
                supported: SNAPSHOT_VERSION,
            });
        }
        let config = bincode::config::standard().with_limit::<MAX_SNAPSHOT_LEN>();
        let (snapshot, used): (Self, usize) = bincode::serde::decode_from_slice(body, config)
            .map_err(|e| DhtError::Malformed {
                reason: format!("routing snapshot: {e}"),
            })?;
        if used != body.len() {
            return Err(DhtError::Malformed {
                reason: "trailing bytes after the routing snapshot".into(),
            });
        }
        Ok(snapshot)
    }
}
