//! Wire messages and the frame codec. Byte layout: `docs/protocols/dht.md`.

use std::fmt;
use std::net::SocketAddr;

use p2p_foundation_identity::{Key, PeerId, Signed};
use serde::{Deserialize, Serialize};

use crate::DhtError;
use crate::record::{ProviderRecord, Record};

/// Protocol id under which stream transports (QUIC) carry DHT frames.
pub const PROTOCOL_ID: &str = "/p2pf/kad/1";
/// Version byte carried by every frame.
pub const PROTOCOL_VERSION: u8 = 1;
/// Default largest frame, header included.
pub const DEFAULT_MAX_FRAME_LEN: usize = 64 * 1024;
/// Hard ceiling on any frame this crate decodes, whatever the configuration says.
pub const ABSOLUTE_MAX_FRAME_LEN: usize = 1024 * 1024;
/// Bytes before the body: 4-byte big-endian length, 1 version byte.
pub const FRAME_HEADER_LEN: usize = 5;
/// Most contacts, or provider records, one response may carry.
pub const MAX_LIST_LEN: usize = 256;

/// A node as other nodes see it: its peer id and the address it was heard from.
///
/// Its Kademlia position is always computed from the peer id (SHA-256 of the public key):
/// there is no id on the wire that a node could choose or forge.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Contact {
    peer: PeerId,
    addr: SocketAddr,
    key: Key,
}

impl Contact {
    /// A contact for `peer` at `addr`.
    pub fn new(peer: PeerId, addr: SocketAddr) -> Self {
        Self {
            peer,
            addr,
            key: peer.kad_key(),
        }
    }

    /// The peer id.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Where the peer can be reached.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The peer's Kademlia key, `peer().kad_key()` (computed once).
    pub fn key(&self) -> &Key {
        &self.key
    }
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.peer.short(), self.addr)
    }
}

impl Serialize for Contact {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.peer, self.addr).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Contact {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (peer, addr) = <(PeerId, SocketAddr)>::deserialize(d)?;
        Ok(Contact::new(peer, addr))
    }
}

/// A request id: random, chosen by the requester, echoed in the response.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:016x}", self.0)
    }
}

/// One DHT message: a request or the response to one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// A request; the receiver answers with a [`Message::Response`] carrying the same id.
    Request {
        /// Chosen at random by the requester.
        id: RequestId,
        /// What is asked.
        body: Request,
    },
    /// The answer to a request.
    Response {
        /// The request's id.
        id: RequestId,
        /// The answer.
        body: Response,
    },
}

/// The six RPCs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Are you alive? Answered with [`Response::Pong`].
    Ping,
    /// The k closest nodes you know to `target`. Answered with [`Response::Nodes`].
    FindNode {
        /// The key looked up.
        target: Key,
    },
    /// The record stored under `key`, and the k closest nodes you know to it.
    /// Answered with [`Response::Value`].
    FindValue {
        /// The record key.
        key: Key,
    },
    /// Store this record (under the key it names). Answered with [`Response::Stored`].
    Store {
        /// The signed record.
        record: Box<Signed<Record>>,
    },
    /// Remember this provider record. Answered with [`Response::Stored`].
    AddProvider {
        /// The signed provider record.
        record: Box<Signed<ProviderRecord>>,
    },
    /// The provider records for `key`, and the k closest nodes you know to it.
    /// Answered with [`Response::Providers`].
    GetProviders {
        /// The key.
        key: Key,
    },
}

/// Answers to [`Request`]s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong,
    /// Answer to [`Request::FindNode`].
    Nodes {
        /// Up to k contacts, closest first.
        closer: Vec<Contact>,
    },
    /// Answer to [`Request::FindValue`].
    Value {
        /// The record, if this node holds a live one.
        record: Option<Box<Signed<Record>>>,
        /// Up to k contacts, closest first.
        closer: Vec<Contact>,
    },
    /// Answer to [`Request::GetProviders`].
    Providers {
        /// Provider records this node holds for the key.
        providers: Vec<Signed<ProviderRecord>>,
        /// Up to k contacts, closest first.
        closer: Vec<Contact>,
    },
    /// Answer to [`Request::Store`] and [`Request::AddProvider`].
    Stored {
        /// Whether the record was accepted.
        accepted: bool,
    },
}

impl Request {
    /// Short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Ping => "PING",
            Request::FindNode { .. } => "FIND_NODE",
            Request::FindValue { .. } => "FIND_VALUE",
            Request::Store { .. } => "STORE",
            Request::AddProvider { .. } => "ADD_PROVIDER",
            Request::GetProviders { .. } => "GET_PROVIDERS",
        }
    }
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<ABSOLUTE_MAX_FRAME_LEN>()
}

impl Message {
    /// Encodes a frame: 4-byte big-endian length of what follows, the version byte, the
    /// bincode body. Fails if the frame would exceed `max_frame_len`.
    pub fn encode(&self, max_frame_len: usize) -> Result<Vec<u8>, DhtError> {
        let mut out = vec![0u8; FRAME_HEADER_LEN];
        bincode::serde::encode_into_std_write(self, &mut out, bincode_config()).map_err(|e| {
            DhtError::Encode {
                reason: e.to_string(),
            }
        })?;
        let max = max_frame_len.min(ABSOLUTE_MAX_FRAME_LEN);
        if out.len() > max {
            return Err(DhtError::FrameTooLarge {
                len: out.len(),
                max,
            });
        }
        let len = u32::try_from(out.len() - 4).map_err(|_| DhtError::FrameTooLarge {
            len: out.len(),
            max,
        })?;
        out[..4].copy_from_slice(&len.to_be_bytes());
        out[4] = PROTOCOL_VERSION;
        Ok(out)
    }

    /// Decodes one whole frame (header included) of at most `max_frame_len` bytes. The
    /// length is checked before anything is allocated; trailing bytes are refused.
    pub fn decode(frame: &[u8], max_frame_len: usize) -> Result<Message, DhtError> {
        let max = max_frame_len.min(ABSOLUTE_MAX_FRAME_LEN);
        if frame.len() > max {
            return Err(DhtError::FrameTooLarge {
                len: frame.len(),
                max,
            });
        }
        let header: [u8; 4] = frame
            .get(..4)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| malformed("shorter than the frame header"))?;
        let body_len = frame_body_len(header, max)?;
        let rest = &frame[4..];
        if rest.len() != body_len {
            return Err(malformed(&format!(
                "length prefix says {body_len} bytes, {} follow",
                rest.len()
            )));
        }
        Self::decode_body(rest)
    }

    /// Decodes what follows the length prefix: the version byte and the bincode body.
    pub fn decode_body(body: &[u8]) -> Result<Message, DhtError> {
        let (&version, bytes) = body.split_first().ok_or_else(|| malformed("empty frame"))?;
        if version != PROTOCOL_VERSION {
            return Err(DhtError::UnsupportedVersion {
                found: version,
                supported: PROTOCOL_VERSION,
            });
        }
        let (msg, used): (Message, usize) =
            bincode::serde::decode_from_slice(bytes, bincode_config())
                .map_err(|e| malformed(&e.to_string()))?;
        if used != bytes.len() {
            return Err(malformed("trailing bytes after the message"));
        }
        msg.check_lists()?;
        Ok(msg)
    }

    fn check_lists(&self) -> Result<(), DhtError> {
        let too_long = match self {
            Message::Response { body, .. } => match body {
                Response::Nodes { closer } | Response::Value { closer, .. } => {
                    closer.len() > MAX_LIST_LEN
                }
                Response::Providers { providers, closer } => {
                    providers.len() > MAX_LIST_LEN || closer.len() > MAX_LIST_LEN
                }
                _ => false,
            },
            Message::Request { .. } => false,
        };
        if too_long {
            Err(malformed("list longer than 256 entries"))
        } else {
            Ok(())
        }
    }
}

/// Reads a frame's 4-byte length prefix and checks it against the limit (the header is
/// included in the limit), before the caller allocates the body. Returns the body length.
pub fn frame_body_len(header: [u8; 4], max_frame_len: usize) -> Result<usize, DhtError> {
    let max = max_frame_len.min(ABSOLUTE_MAX_FRAME_LEN);
    let len = u32::from_be_bytes(header) as usize;
    if len.saturating_add(4) > max {
        return Err(DhtError::FrameTooLarge {
            len: len.saturating_add(4),
            max,
        });
    }
    if len == 0 {
        return Err(malformed("empty frame"));
    }
    Ok(len)
}

fn malformed(reason: &str) -> DhtError {
    DhtError::Malformed {
        reason: reason.to_owned(),
    }
}
