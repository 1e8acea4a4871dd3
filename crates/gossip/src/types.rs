//! The values gossip exchanges: topics, message ids, signed messages, acknowledgements and
//! the [`Rpc`] frames peers send each other.

use std::fmt;
use std::sync::{Arc, OnceLock};

use p2p_foundation_identity::{Keypair, PeerId, Signature};
use sha2::{Digest, Sha256};

use crate::GossipError;

/// Longest topic name, in bytes of UTF-8.
pub const MAX_TOPIC_LEN: usize = 256;
/// Most peers a message may name in [`AckRequest::Named`].
pub const MAX_NAMED_ACKERS: usize = 64;

/// Most peers one PRUNE may carry for peer exchange, on the wire (a node sends at most
/// `Config::prune_peers` and accepts at most `Limits::max_px_peers`).
pub const MAX_PX_PEERS: usize = 64;

/// Domain-separation prefix of the bytes an author signs for a message.
pub const MESSAGE_DOMAIN: &[u8] = b"p2pf/gossip/msg/v1\0";
/// Domain-separation prefix of the bytes a subscriber signs for an acknowledgement.
pub const ACK_DOMAIN: &[u8] = b"p2pf/gossip/ack/v1\0";

/// A topic name: 1 to [`MAX_TOPIC_LEN`] bytes of UTF-8, cheap to clone.
///
/// ```
/// use p2p_foundation_gossip::Topic;
/// let t = Topic::new("topic/ai-models").unwrap();
/// assert_eq!(t.as_str(), "topic/ai-models");
/// assert!(Topic::new("").is_err());
/// ```
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl std::hash::Hash for Topic {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Consistent with `eq`: equal topics have equal strings.
        self.0.hash(state);
    }
}

impl PartialEq for Topic {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        // Clones share their string: compare pointers before bytes.
        Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
    }
}

impl Topic {
    /// Checks the length and builds the topic.
    pub fn new(name: &str) -> Result<Self, GossipError> {
        if name.is_empty() || name.len() > MAX_TOPIC_LEN {
            return Err(GossipError::InvalidTopic { len: name.len() });
        }
        Ok(Self(Arc::from(name)))
    }

    /// The topic name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?})", &*self.0)
    }
}

/// A message id: 20 bytes, by default the first 20 bytes of SHA-256(author ‖ seq).
///
/// Ids are already uniformly distributed, so caches key their tables on the first eight bytes
/// ([`MessageId::short`]) with a pass-through hasher.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; 20]);

impl MessageId {
    /// The default id: the first 20 bytes of SHA-256(author's 32 key bytes ‖ seq as u64 BE).
    pub fn from_author_seq(author: &PeerId, seq: u64) -> Self {
        let mut h = Sha256::new();
        h.update(author.as_bytes());
        h.update(seq.to_be_bytes());
        let digest = h.finalize();
        let mut id = [0u8; 20];
        id.copy_from_slice(&digest[..20]);
        Self(id)
    }

    /// The first eight bytes as an integer: the key of the seen-cache and message cache.
    pub fn short(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(b)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What a publisher asks receivers to acknowledge (PRD R2). Part of the signed message, so a
/// forwarder cannot change it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AckRequest {
    /// No acknowledgement.
    #[default]
    None,
    /// Exactly these subscribers (at most [`MAX_NAMED_ACKERS`]) acknowledge.
    Named(Vec<PeerId>),
    /// Every subscriber acknowledges; each relay forwards at most this many acknowledgements
    /// per message towards the author, so the author hears from at least this many subscribers
    /// (if that many exist and their paths hold) without an acknowledgement storm.
    Count(u16),
}

impl AckRequest {
    /// Whether `peer` should acknowledge a message carrying this request.
    pub fn asks(&self, peer: &PeerId) -> bool {
        match self {
            Self::None => false,
            Self::Named(list) => list.contains(peer),
            Self::Count(n) => *n > 0,
        }
    }
}

/// A published message, signed by its author.
#[derive(Clone)]
pub struct Message {
    /// Who wrote and signed it.
    pub author: PeerId,
    /// The author's sequence number (the default id is a hash of author and seq).
    pub seq: u64,
    /// The topic it was published to.
    pub topic: Topic,
    /// What the author asks receivers to acknowledge.
    pub ack: AckRequest,
    /// The application payload.
    pub data: Vec<u8>,
    /// The author's Ed25519 signature over [`Message::signed_bytes`].
    pub signature: Signature,
    /// The default id with the author and seq it was computed from: computed once per message
    /// (a message shared by many nodes in one process, or forwarded to many peers, is hashed
    /// once), and recomputed if those fields were changed since.
    id_memo: OnceLock<(PeerId, u64, MessageId)>,
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.author == other.author
            && self.seq == other.seq
            && self.topic == other.topic
            && self.ack == other.ack
            && self.data == other.data
            && self.signature == other.signature
    }
}

impl Eq for Message {}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("author", &self.author.short())
            .field("seq", &self.seq)
            .field("topic", &self.topic)
            .field("ack", &self.ack)
            .field("data_len", &self.data.len())
            .finish()
    }
}

impl Message {
    /// Builds and signs a message.
    pub fn sign(keypair: &Keypair, seq: u64, topic: Topic, ack: AckRequest, data: Vec<u8>) -> Self {
        let author = keypair.peer_id();
        let bytes = signed_bytes(&author, seq, &topic, &ack, &data);
        let signature = keypair.sign(&bytes);
        Self::from_parts(author, seq, topic, ack, data, signature)
    }

    /// A message from its fields (as decoded from the wire); [`Message::verify`] checks it.
    pub fn from_parts(
        author: PeerId,
        seq: u64,
        topic: Topic,
        ack: AckRequest,
        data: Vec<u8>,
        signature: Signature,
    ) -> Self {
        Self {
            author,
            seq,
            topic,
            ack,
            data,
            signature,
            id_memo: OnceLock::new(),
        }
    }

    /// The default id, [`MessageId::from_author_seq`], computed once per message.
    pub fn default_id(&self) -> MessageId {
        if let Some((author, seq, id)) = self.id_memo.get() {
            if *author == self.author && *seq == self.seq {
                return *id;
            }
        }
        let id = MessageId::from_author_seq(&self.author, self.seq);
        let _ = self.id_memo.set((self.author, self.seq, id));
        id
    }

    /// The bytes the author signs: [`MESSAGE_DOMAIN`] ‖ author (32) ‖ seq (u64 BE) ‖
    /// topic (u16 BE length ‖ UTF-8) ‖ ack request (as on the wire) ‖ data (u32 BE length ‖
    /// bytes). See docs/protocols/gossip.md.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(&self.author, self.seq, &self.topic, &self.ack, &self.data)
    }

    /// Checks the author's signature.
    pub fn verify(&self) -> Result<(), GossipError> {
        self.author
            .verify(&self.signed_bytes(), &self.signature)
            .map_err(|_| GossipError::BadSignature {
                author: self.author.to_string(),
            })
    }
}

fn signed_bytes(
    author: &PeerId,
    seq: u64,
    topic: &Topic,
    ack: &AckRequest,
    data: &[u8],
) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(MESSAGE_DOMAIN.len() + 32 + 8 + 2 + topic.0.len() + 8 + data.len());
    out.extend_from_slice(MESSAGE_DOMAIN);
    out.extend_from_slice(author.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    crate::codec::put_topic(&mut out, topic);
    crate::codec::put_ack_request(&mut out, ack);
    crate::codec::put_bytes32(&mut out, data);
    out
}

/// A subscriber's signed acknowledgement of a message, routed back to the author along the
/// path the message came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The message's author (the acknowledgement's destination).
    pub author: PeerId,
    /// The acknowledged message.
    pub id: MessageId,
    /// The subscriber that acknowledges.
    pub acker: PeerId,
    /// The acker's signature over [`ACK_DOMAIN`] ‖ author ‖ id.
    pub signature: Signature,
}

impl Ack {
    /// Builds and signs an acknowledgement.
    pub fn sign(keypair: &Keypair, author: PeerId, id: MessageId) -> Self {
        let signature = keypair.sign(&Self::bytes(&author, &id));
        Self {
            author,
            id,
            acker: keypair.peer_id(),
            signature,
        }
    }

    fn bytes(author: &PeerId, id: &MessageId) -> Vec<u8> {
        let mut out = Vec::with_capacity(ACK_DOMAIN.len() + 52);
        out.extend_from_slice(ACK_DOMAIN);
        out.extend_from_slice(author.as_bytes());
        out.extend_from_slice(&id.0);
        out
    }

    /// Checks the acker's signature.
    pub fn verify(&self) -> Result<(), GossipError> {
        self.acker
            .verify(&Self::bytes(&self.author, &self.id), &self.signature)
            .map_err(|_| GossipError::BadSignature {
                author: self.acker.to_string(),
            })
    }
}

/// A peer offered in peer exchange (PX): a PRUNE carries some of the pruning node's other
/// peers on the topic so that the pruned peer can find a new mesh (GossipSub v1.1).
///
/// Plain ids and addresses, not signed records: the receiver dials `addr` (or looks the id up
/// in the DHT when it is absent), and the transport authenticates the id on connect, so a
/// wrong address costs a failed dial, never a wrong identity. PX is accepted only from peers
/// scoring at least [`crate::Thresholds::accept_px`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PxPeer {
    /// The offered peer.
    pub peer: PeerId,
    /// Where the pruning node knows it to listen (`Gossip::set_peer_address`), if anywhere.
    pub addr: Option<std::net::SocketAddr>,
}

/// One frame of the gossip protocol. Cheap to clone: messages are shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rpc {
    /// The sender subscribed to a topic.
    Subscribe(Topic),
    /// The sender unsubscribed from a topic.
    Unsubscribe(Topic),
    /// A message, with the number of hops it travelled before this one (not signed:
    /// informational only).
    Publish {
        /// Hops travelled so far (0 from the author).
        hops: u8,
        /// The signed message.
        msg: Arc<Message>,
    },
    /// "I have these messages of this topic."
    IHave {
        /// Their topic.
        topic: Topic,
        /// Their ids.
        ids: Vec<MessageId>,
    },
    /// "Send me these messages."
    IWant {
        /// The wanted ids.
        ids: Vec<MessageId>,
    },
    /// "Add me to your mesh for this topic."
    Graft {
        /// The topic.
        topic: Topic,
    },
    /// "I removed you from my mesh for this topic; do not graft back for `backoff_secs`;
    /// here are other peers on the topic (peer exchange)."
    Prune {
        /// The topic.
        topic: Topic,
        /// Seconds before the receiver may graft again.
        backoff_secs: u32,
        /// Peer exchange: other peers subscribed to the topic (may be empty).
        px: Vec<PxPeer>,
    },
    /// An acknowledgement travelling towards a message's author (boxed: it is the largest
    /// variant and the rarest).
    Ack(Box<Ack>),
}

impl Rpc {
    /// A short name of the frame kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Subscribe(_) => "subscribe",
            Self::Unsubscribe(_) => "unsubscribe",
            Self::Publish { .. } => "publish",
            Self::IHave { .. } => "ihave",
            Self::IWant { .. } => "iwant",
            Self::Graft { .. } => "graft",
            Self::Prune { .. } => "prune",
            Self::Ack(_) => "ack",
        }
    }
}
