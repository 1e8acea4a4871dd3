//! The relay protocol (`/p2pf/relay/1`): control messages on a bidirectional stream, each
//! a big-endian `u16` length and a JSON object of at most [`MAX_FRAME`] bytes; after
//! `connected` / `accepted` the stream carries the two peers' own TLS session, spliced by
//! the relay (layout: `docs/protocols/facade.md`).

use p2p_foundation_identity::PeerId;
use p2p_foundation_transport::{RecvStream, SendStream};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};

/// Protocol id of relay streams.
pub const RELAY_PROTOCOL: &str = "/p2pf/relay/1";
/// Largest control message (anything longer is refused before it is read).
pub(crate) const MAX_FRAME: usize = 1024;

/// One control message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RelayMessage {
    /// Holder → relay: keep a reservation for me (or renew it).
    Reserve {},
    /// Relay → holder: reserved for `ttl_secs` seconds.
    Reserved { ttl_secs: u64 },
    /// Dialer → relay: splice this stream to `target`, which holds a reservation here.
    Connect { target: PeerId },
    /// Relay → target: `from` (proven by its connection to the relay) wants to reach you
    /// through this stream.
    Incoming { from: PeerId },
    /// Target → relay: go ahead; the TLS handshake follows on this stream.
    Accepted {},
    /// Relay → dialer: spliced; start the TLS handshake on this stream.
    Connected {},
    /// Refused, with a reason a person can act on.
    Refused { reason: String },
}

impl RelayMessage {
    /// The frame: length, then JSON.
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serialising this enum cannot fail: every field is a string or a number.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let mut frame = Vec::with_capacity(2 + json.len());
        frame.extend_from_slice(&(json.len() as u16).to_be_bytes());
        frame.extend_from_slice(&json);
        frame
    }

    /// Parses one frame's JSON body.
    pub(crate) fn decode(body: &[u8]) -> std::result::Result<Self, String> {
        if body.len() > MAX_FRAME {
            return Err(format!(
                "relay message of {} bytes exceeds {MAX_FRAME}",
                body.len()
            ));
        }
        serde_json::from_slice(body).map_err(|e| format!("bad relay message: {e}"))
    }
}

/// Reads one control frame, refusing an oversized length before reading the body.
pub(crate) async fn read_frame(recv: &mut RecvStream) -> Result<RelayMessage> {
    let mut len = [0u8; 2];
    recv.read_exact(&mut len)
        .await
        .map_err(|e| Error::Relay(format!("relay stream ended before a message: {e}")))?;
    let len = usize::from(u16::from_be_bytes(len));
    if len > MAX_FRAME {
        return Err(Error::Relay(format!(
            "relay message of {len} bytes exceeds {MAX_FRAME}"
        )));
    }
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| Error::Relay(format!("relay message cut short: {e}")))?;
    RelayMessage::decode(&body).map_err(Error::Relay)
}

/// Writes one control frame.
pub(crate) async fn write_frame(send: &mut SendStream, message: &RelayMessage) -> Result<()> {
    send.write_all(&message.encode()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_foundation_identity::Keypair;

    #[test]
    fn messages_round_trip_through_frames() {
        let peer = Keypair::generate().peer_id();
        for m in [
            RelayMessage::Reserve {},
            RelayMessage::Reserved { ttl_secs: 600 },
            RelayMessage::Connect { target: peer },
            RelayMessage::Incoming { from: peer },
            RelayMessage::Accepted {},
            RelayMessage::Connected {},
            RelayMessage::Refused {
                reason: "relay full".into(),
            },
        ] {
            let frame = m.encode();
            let len = usize::from(u16::from_be_bytes([frame[0], frame[1]]));
            assert_eq!(len, frame.len() - 2);
            assert!(len <= MAX_FRAME);
            assert_eq!(RelayMessage::decode(&frame[2..]), Ok(m));
        }
    }

    #[test]
    fn bad_messages_are_refused_with_a_reason() {
        assert!(RelayMessage::decode(b"{\"type\":\"teleport\"}").is_err());
        assert!(RelayMessage::decode(b"{\"type\":\"reserve\",\"extra\":1}").is_err());
        assert!(RelayMessage::decode(b"{\"type\":\"connect\",\"target\":\"nope\"}").is_err());
        let err = RelayMessage::decode(&vec![b' '; MAX_FRAME + 1]).unwrap_err();
        assert!(err.contains("exceeds"), "{err}");
    }
}
