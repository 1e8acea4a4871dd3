//! The wire codec: one [`Rpc`] per length-prefixed frame, hand-written, big-endian, with every
//! length checked against a limit before anything is allocated. Byte-by-byte layout in
//! `docs/protocols/gossip.md`.

use std::sync::Arc;

use p2p_foundation_identity::{PeerId, Signature};

use crate::GossipError;
use crate::types::{
    Ack, AckRequest, MAX_NAMED_ACKERS, MAX_PX_PEERS, MAX_TOPIC_LEN, Message, MessageId, PxPeer,
    Rpc, Topic,
};

/// Wire version carried in every frame.
pub const WIRE_VERSION: u8 = 1;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

const KIND_SUBSCRIBE: u8 = 1;
const KIND_UNSUBSCRIBE: u8 = 2;
const KIND_PUBLISH: u8 = 3;
const KIND_IHAVE: u8 = 4;
const KIND_IWANT: u8 = 5;
const KIND_GRAFT: u8 = 6;
const KIND_PRUNE: u8 = 7;
const KIND_ACK: u8 = 8;

/// Limits a decoder enforces before allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame body (after the 4-byte length prefix).
    pub max_frame_len: usize,
    /// Largest message payload.
    pub max_message_size: usize,
    /// Most ids in one IHAVE or IWANT.
    pub max_ihave_len: usize,
    /// Most peer-exchange entries in one PRUNE (at most [`MAX_PX_PEERS`]).
    pub max_px_peers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_len: 1024 * 1024 + 4096,
            max_message_size: 1024 * 1024,
            max_ihave_len: 5000,
            max_px_peers: 16,
        }
    }
}

pub(crate) fn put_topic(out: &mut Vec<u8>, topic: &Topic) {
    let s = topic.as_str().as_bytes();
    // Topic::new guarantees s.len() <= MAX_TOPIC_LEN < u16::MAX.
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

pub(crate) fn put_bytes32(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(u32::try_from(data.len()).unwrap_or(u32::MAX)).to_be_bytes());
    out.extend_from_slice(data);
}

pub(crate) fn put_ack_request(out: &mut Vec<u8>, ack: &AckRequest) {
    match ack {
        AckRequest::None => out.push(0),
        AckRequest::Named(list) => {
            out.push(1);
            let n = list.len().min(MAX_NAMED_ACKERS);
            out.push(n as u8);
            for p in &list[..n] {
                out.extend_from_slice(p.as_bytes());
            }
        }
        AckRequest::Count(n) => {
            out.push(2);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn put_ids(out: &mut Vec<u8>, ids: &[MessageId]) {
    let n = ids.len().min(u16::MAX as usize);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    for id in &ids[..n] {
        out.extend_from_slice(&id.0);
    }
}

/// Encodes `rpc` as one frame: the 4-byte big-endian body length, then the body.
pub fn encode(rpc: &Rpc) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&[0; LEN_PREFIX]);
    out.push(WIRE_VERSION);
    match rpc {
        Rpc::Subscribe(t) => {
            out.push(KIND_SUBSCRIBE);
            put_topic(&mut out, t);
        }
        Rpc::Unsubscribe(t) => {
            out.push(KIND_UNSUBSCRIBE);
            put_topic(&mut out, t);
        }
        Rpc::Publish { hops, msg } => {
            out.reserve(msg.data.len() + 160);
            out.push(KIND_PUBLISH);
            out.push(*hops);
            out.extend_from_slice(msg.author.as_bytes());
            out.extend_from_slice(&msg.seq.to_be_bytes());
            put_topic(&mut out, &msg.topic);
            put_ack_request(&mut out, &msg.ack);
            put_bytes32(&mut out, &msg.data);
            out.extend_from_slice(msg.signature.as_bytes());
        }
        Rpc::IHave { topic, ids } => {
            out.push(KIND_IHAVE);
            put_topic(&mut out, topic);
            put_ids(&mut out, ids);
        }
        Rpc::IWant { ids } => {
            out.push(KIND_IWANT);
            put_ids(&mut out, ids);
        }
        Rpc::Graft { topic } => {
            out.push(KIND_GRAFT);
            put_topic(&mut out, topic);
        }
        Rpc::Prune {
            topic,
            backoff_secs,
            px,
        } => {
            out.push(KIND_PRUNE);
            put_topic(&mut out, topic);
            out.extend_from_slice(&backoff_secs.to_be_bytes());
            // The PX section is absent when empty (canonical, and what a PRUNE from a node
            // without PX looks like).
            let n = px.len().min(MAX_PX_PEERS);
            if n > 0 {
                out.push(n as u8);
                for p in &px[..n] {
                    out.extend_from_slice(p.peer.as_bytes());
                    match p.addr {
                        None => out.push(0),
                        Some(std::net::SocketAddr::V4(a)) => {
                            out.push(4);
                            out.extend_from_slice(&a.ip().octets());
                            out.extend_from_slice(&a.port().to_be_bytes());
                        }
                        Some(std::net::SocketAddr::V6(a)) => {
                            out.push(6);
                            out.extend_from_slice(&a.ip().octets());
                            out.extend_from_slice(&a.port().to_be_bytes());
                        }
                    }
                }
            }
        }
        Rpc::Ack(ack) => {
            out.push(KIND_ACK);
            out.extend_from_slice(ack.author.as_bytes());
            out.extend_from_slice(&ack.id.0);
            out.extend_from_slice(ack.acker.as_bytes());
            out.extend_from_slice(ack.signature.as_bytes());
        }
    }
    let body = u32::try_from(out.len() - LEN_PREFIX).unwrap_or(u32::MAX);
    out[..LEN_PREFIX].copy_from_slice(&body.to_be_bytes());
    out
}

/// Reads a frame's length prefix and checks it against `max_frame_len` before anything is
/// allocated. Returns the body length.
pub fn frame_len(prefix: [u8; LEN_PREFIX], max_frame_len: usize) -> Result<usize, GossipError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max_frame_len {
        return Err(GossipError::FrameTooLarge {
            len,
            max: max_frame_len,
        });
    }
    if len < 2 {
        return Err(malformed("frame body shorter than its 2-byte header"));
    }
    Ok(len)
}

/// Decodes a whole frame (length prefix and body), as [`encode`] writes it.
pub fn decode_frame(frame: &[u8], limits: &Limits) -> Result<Rpc, GossipError> {
    let prefix: [u8; LEN_PREFIX] = frame
        .get(..LEN_PREFIX)
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| malformed("frame shorter than its length prefix"))?;
    let len = frame_len(prefix, limits.max_frame_len)?;
    let body = &frame[LEN_PREFIX..];
    if body.len() != len {
        return Err(malformed("length prefix does not match the frame"));
    }
    decode_body(body, limits)
}

fn malformed(reason: &'static str) -> GossipError {
    GossipError::MalformedFrame { reason }
}

/// A small direct-mapped cache of validated peer ids, so that a stream decoder checks each
/// author's key (an Ed25519 point decompression) once rather than for every copy of every
/// message. 256 slots, no allocation after creation.
#[derive(Debug, Clone)]
pub struct KeyCache {
    slots: Vec<Option<PeerId>>,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self {
            slots: vec![None; 256],
        }
    }
}

impl KeyCache {
    fn peer(&mut self, bytes: [u8; 32]) -> Result<PeerId, GossipError> {
        let slot = usize::from(bytes[0] ^ bytes[31]);
        if let Some(p) = self.slots[slot] {
            if *p.as_bytes() == bytes {
                return Ok(p);
            }
        }
        let p =
            PeerId::from_bytes(bytes).map_err(|_| malformed("peer id is not an Ed25519 key"))?;
        self.slots[slot] = Some(p);
        Ok(p)
    }
}

struct Reader<'a, 'c> {
    buf: &'a [u8],
    keys: Option<&'c mut KeyCache>,
}

impl<'a> Reader<'a, '_> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GossipError> {
        if self.buf.len() < n {
            return Err(malformed("frame ends in the middle of a field"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], GossipError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, GossipError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, GossipError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, GossipError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, GossipError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn peer(&mut self) -> Result<PeerId, GossipError> {
        let bytes = self.array()?;
        match self.keys.as_deref_mut() {
            Some(cache) => cache.peer(bytes),
            None => {
                PeerId::from_bytes(bytes).map_err(|_| malformed("peer id is not an Ed25519 key"))
            }
        }
    }
    fn signature(&mut self) -> Result<Signature, GossipError> {
        Ok(Signature::from_bytes(self.array()?))
    }
    fn topic(&mut self) -> Result<Topic, GossipError> {
        let len = self.u16()? as usize;
        if len == 0 || len > MAX_TOPIC_LEN {
            return Err(malformed("topic length out of range 1..=256"));
        }
        let bytes = self.take(len)?;
        let s = std::str::from_utf8(bytes).map_err(|_| malformed("topic is not UTF-8"))?;
        Topic::new(s)
    }
    fn ids(&mut self, max: usize) -> Result<Vec<MessageId>, GossipError> {
        let n = self.u16()? as usize;
        if n > max {
            return Err(GossipError::TooManyIds { len: n, max });
        }
        // Check the bytes are there before allocating.
        if self.buf.len() < n * 20 {
            return Err(malformed("frame ends in the middle of an id list"));
        }
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            ids.push(MessageId(self.array()?));
        }
        Ok(ids)
    }
    /// The optional PX section of a PRUNE: nothing, or `n (u8, 1..=max)` entries.
    fn px(&mut self, max: usize) -> Result<Vec<PxPeer>, GossipError> {
        if self.buf.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.u8()? as usize;
        if n == 0 {
            return Err(malformed("empty PX section (omit it instead)"));
        }
        if n > max.min(MAX_PX_PEERS) {
            return Err(malformed("more PX peers than the limit"));
        }
        // Every entry takes at least 33 bytes: check they are there before allocating.
        if self.buf.len() < n * 33 {
            return Err(malformed("frame ends in the middle of the PX list"));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let peer = self.peer()?;
            let addr = match self.u8()? {
                0 => None,
                4 => {
                    let ip = std::net::Ipv4Addr::from(self.array::<4>()?);
                    Some(std::net::SocketAddr::from((ip, self.u16()?)))
                }
                6 => {
                    let ip = std::net::Ipv6Addr::from(self.array::<16>()?);
                    Some(std::net::SocketAddr::from((ip, self.u16()?)))
                }
                _ => return Err(malformed("unknown PX address tag")),
            };
            out.push(PxPeer { peer, addr });
        }
        Ok(out)
    }
    fn ack_request(&mut self) -> Result<AckRequest, GossipError> {
        match self.u8()? {
            0 => Ok(AckRequest::None),
            1 => {
                let n = self.u8()? as usize;
                if n > MAX_NAMED_ACKERS {
                    return Err(malformed("more than 64 named ackers"));
                }
                if self.buf.len() < n * 32 {
                    return Err(malformed("frame ends in the middle of the acker list"));
                }
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(self.peer()?);
                }
                Ok(AckRequest::Named(list))
            }
            2 => Ok(AckRequest::Count(self.u16()?)),
            _ => Err(malformed("unknown ack request tag")),
        }
    }
}

/// Decodes a frame body (the bytes after the length prefix).
pub fn decode_body(body: &[u8], limits: &Limits) -> Result<Rpc, GossipError> {
    decode(body, limits, None)
}

/// [`decode_body`] with a [`KeyCache`] of validated peer ids (one per stream).
pub fn decode_body_cached(
    body: &[u8],
    limits: &Limits,
    keys: &mut KeyCache,
) -> Result<Rpc, GossipError> {
    decode(body, limits, Some(keys))
}

fn decode(body: &[u8], limits: &Limits, keys: Option<&mut KeyCache>) -> Result<Rpc, GossipError> {
    if body.len() > limits.max_frame_len {
        return Err(GossipError::FrameTooLarge {
            len: body.len(),
            max: limits.max_frame_len,
        });
    }
    let mut r = Reader { buf: body, keys };
    let version = r.u8()?;
    if version != WIRE_VERSION {
        return Err(GossipError::UnsupportedVersion { version });
    }
    let rpc = match r.u8()? {
        KIND_SUBSCRIBE => Rpc::Subscribe(r.topic()?),
        KIND_UNSUBSCRIBE => Rpc::Unsubscribe(r.topic()?),
        KIND_PUBLISH => {
            let hops = r.u8()?;
            let author = r.peer()?;
            let seq = r.u64()?;
            let topic = r.topic()?;
            let ack = r.ack_request()?;
            let len = r.u32()? as usize;
            if len > limits.max_message_size {
                return Err(GossipError::MessageTooLarge {
                    len,
                    max: limits.max_message_size,
                });
            }
            let data = r.take(len)?.to_vec();
            let signature = r.signature()?;
            Rpc::Publish {
                hops,
                msg: Arc::new(Message::from_parts(
                    author, seq, topic, ack, data, signature,
                )),
            }
        }
        KIND_IHAVE => {
            let topic = r.topic()?;
            let ids = r.ids(limits.max_ihave_len)?;
            Rpc::IHave { topic, ids }
        }
        KIND_IWANT => Rpc::IWant {
            ids: r.ids(limits.max_ihave_len)?,
        },
        KIND_GRAFT => Rpc::Graft { topic: r.topic()? },
        KIND_PRUNE => Rpc::Prune {
            topic: r.topic()?,
            backoff_secs: r.u32()?,
            px: r.px(limits.max_px_peers)?,
        },
        KIND_ACK => Rpc::Ack(Box::new(Ack {
            author: r.peer()?,
            id: MessageId(r.array()?),
            acker: r.peer()?,
            signature: r.signature()?,
        })),
        _ => return Err(malformed("unknown frame kind")),
    };
    if !r.buf.is_empty() {
        return Err(malformed("trailing bytes after the frame's fields"));
    }
    Ok(rpc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_foundation_identity::Keypair;
    use proptest::prelude::*;

    fn samples() -> Vec<Rpc> {
        let kp = Keypair::from_secret_bytes([7; 32]);
        let other = Keypair::from_secret_bytes([8; 32]).peer_id();
        let t = Topic::new("topic/ai-models").unwrap();
        let msg = Message::sign(
            &kp,
            42,
            t.clone(),
            AckRequest::Named(vec![other]),
            b"hello".to_vec(),
        );
        let id = MessageId::from_author_seq(&kp.peer_id(), 42);
        vec![
            Rpc::Subscribe(t.clone()),
            Rpc::Unsubscribe(t.clone()),
            Rpc::Publish {
                hops: 3,
                msg: Arc::new(msg),
            },
            Rpc::Publish {
                hops: 0,
                msg: Arc::new(Message::sign(
                    &kp,
                    1,
                    t.clone(),
                    AckRequest::Count(5),
                    vec![],
                )),
            },
            Rpc::IHave {
                topic: t.clone(),
                ids: vec![id, MessageId([1; 20])],
            },
            Rpc::IWant { ids: vec![id] },
            Rpc::Graft { topic: t.clone() },
            Rpc::Prune {
                topic: t.clone(),
                backoff_secs: 60,
                px: Vec::new(),
            },
            Rpc::Prune {
                topic: t,
                backoff_secs: 60,
                px: vec![
                    PxPeer {
                        peer: other,
                        addr: Some("192.0.2.7:4001".parse().unwrap()),
                    },
                    PxPeer {
                        peer: kp.peer_id(),
                        addr: Some("[2001:db8::1]:4001".parse().unwrap()),
                    },
                    PxPeer {
                        peer: Keypair::from_secret_bytes([9; 32]).peer_id(),
                        addr: None,
                    },
                ],
            },
            Rpc::Ack(Box::new(Ack::sign(
                &Keypair::from_secret_bytes([8; 32]),
                kp.peer_id(),
                id,
            ))),
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for rpc in samples() {
            let frame = encode(&rpc);
            let back = decode_frame(&frame, &Limits::default()).unwrap();
            assert_eq!(back, rpc, "{}", rpc.kind());
        }
    }

    #[test]
    fn signatures_survive_the_round_trip() {
        for rpc in samples() {
            match decode_frame(&encode(&rpc), &Limits::default()).unwrap() {
                Rpc::Publish { msg, .. } => msg.verify().unwrap(),
                Rpc::Ack(a) => a.verify().unwrap(),
                _ => {}
            }
        }
    }

    #[test]
    fn oversized_frame_is_refused_from_its_prefix() {
        let err = frame_len((u32::MAX).to_be_bytes(), 1 << 20).unwrap_err();
        assert!(matches!(err, GossipError::FrameTooLarge { .. }), "{err}");
        let kp = Keypair::from_secret_bytes([7; 32]);
        let t = Topic::new("t").unwrap();
        let big = Rpc::Publish {
            hops: 0,
            msg: Arc::new(Message::sign(&kp, 1, t, AckRequest::None, vec![0; 2000])),
        };
        let limits = Limits {
            max_message_size: 1000,
            ..Limits::default()
        };
        let err = decode_frame(&encode(&big), &limits).unwrap_err();
        assert!(
            matches!(
                err,
                GossipError::MessageTooLarge {
                    len: 2000,
                    max: 1000
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn key_cache_decodes_the_same() {
        let mut keys = KeyCache::default();
        for _ in 0..2 {
            for rpc in samples() {
                let frame = encode(&rpc);
                let back = decode_body_cached(&frame[LEN_PREFIX..], &Limits::default(), &mut keys)
                    .unwrap();
                assert_eq!(back, rpc);
            }
        }
    }

    #[test]
    fn too_many_ids_are_refused() {
        let rpc = Rpc::IWant {
            ids: vec![MessageId([0; 20]); 11],
        };
        let limits = Limits {
            max_ihave_len: 10,
            ..Limits::default()
        };
        assert!(matches!(
            decode_frame(&encode(&rpc), &limits),
            Err(GossipError::TooManyIds { len: 11, max: 10 })
        ));
    }

    #[test]
    fn px_limits_are_checked() {
        let t = Topic::new("t").unwrap();
        let peer = Keypair::from_secret_bytes([3; 32]).peer_id();
        let rpc = Rpc::Prune {
            topic: t,
            backoff_secs: 1,
            px: vec![PxPeer { peer, addr: None }; 17],
        };
        let frame = encode(&rpc);
        assert!(decode_frame(&frame, &Limits::default()).is_err(), "17 > 16");
        let limits = Limits {
            max_px_peers: 17,
            ..Limits::default()
        };
        assert_eq!(decode_frame(&frame, &limits).unwrap(), rpc);
        // A count announcing more entries than the bytes present is refused before
        // allocating; an explicit empty section is not canonical.
        let mut short = encode(&Rpc::Prune {
            topic: Topic::new("t").unwrap(),
            backoff_secs: 1,
            px: Vec::new(),
        });
        short.push(16);
        let body = short.len() - LEN_PREFIX;
        short[..LEN_PREFIX].copy_from_slice(&(body as u32).to_be_bytes());
        assert!(decode_frame(&short, &Limits::default()).is_err());
        let last = short.len() - 1;
        short[last] = 0;
        assert!(decode_frame(&short, &Limits::default()).is_err());
    }

    #[test]
    fn truncations_and_trailing_bytes_are_malformed() {
        for rpc in samples() {
            let frame = encode(&rpc);
            for cut in 0..frame.len() {
                match decode_body(&frame[LEN_PREFIX..cut.max(LEN_PREFIX)], &Limits::default()) {
                    Err(_) => {}
                    // The PX section is optional: a PRUNE cut right before it is a PRUNE
                    // without PX.
                    Ok(Rpc::Prune { px, .. }) if px.is_empty() => {}
                    Ok(other) => panic!("a truncated {} decoded as {other:?}", rpc.kind()),
                }
            }
            let mut longer = frame[LEN_PREFIX..].to_vec();
            longer.push(0);
            assert!(decode_body(&longer, &Limits::default()).is_err());
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_frame(&bytes, &Limits::default());
            let _ = decode_body(&bytes, &Limits::default());
        }

        #[test]
        fn mutated_frames_never_panic(idx in 0usize..400, val in any::<u8>(), which in 0usize..10) {
            let mut frame = encode(&samples()[which]);
            let i = idx % frame.len();
            frame[i] = val;
            let _ = decode_frame(&frame, &Limits::default());
        }
    }
}
