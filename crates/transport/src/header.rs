//! The stream header: every stream starts with `kind`, `len`, then `len` bytes of
//! protocol id (see `docs/protocols/transport.md`).

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Result, TransportError};

/// Largest protocol id the wire format can carry.
pub const MAX_PROTOCOL_LEN: usize = 255;

/// The kind byte of a stream header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// A bidirectional stream (`0x00`).
    Bi,
    /// A unidirectional stream (`0x01`).
    Uni,
    /// A bidirectional stream whose opening data was sent in QUIC 0-RTT (`0x02`), so it may
    /// be a replay: only protocols the receiver lists as replay-safe are accepted.
    EarlyBi,
}

impl StreamKind {
    fn byte(self) -> u8 {
        match self {
            Self::Bi => 0x00,
            Self::Uni => 0x01,
            Self::EarlyBi => 0x02,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x00 => Some(Self::Bi),
            0x01 => Some(Self::Uni),
            0x02 => Some(Self::EarlyBi),
            _ => None,
        }
    }
}

/// Checks that `protocol` is 1..=`max_len` bytes of printable ASCII without spaces.
pub fn validate_protocol(protocol: &str, max_len: usize) -> Result<()> {
    if protocol.is_empty() {
        return Err(TransportError::InvalidProtocol("empty"));
    }
    if protocol.len() > max_len.min(MAX_PROTOCOL_LEN) {
        return Err(TransportError::InvalidProtocol(
            "longer than the configured maximum",
        ));
    }
    if !protocol.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(TransportError::InvalidProtocol(
            "only printable ASCII without spaces",
        ));
    }
    Ok(())
}

/// Encodes a header. The protocol must pass [`validate_protocol`].
pub fn encode(kind: StreamKind, protocol: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + protocol.len());
    out.push(kind.byte());
    // validate_protocol bounds the length to 255.
    out.push(u8::try_from(protocol.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(protocol.as_bytes());
    out
}

/// Decodes a header from the start of `buf`: `Ok(None)` when more bytes are needed,
/// otherwise the kind, protocol id and the number of bytes consumed. A length above
/// `max_len` is refused before any protocol byte is looked at.
pub fn decode(buf: &[u8], max_len: usize) -> Result<Option<(StreamKind, String, usize)>> {
    let [kind, len, rest @ ..] = buf else {
        return Ok(None);
    };
    let kind = StreamKind::from_byte(*kind).ok_or(TransportError::InvalidHeader("unknown kind"))?;
    let len = usize::from(*len);
    if len > max_len {
        return Err(TransportError::InvalidHeader(
            "protocol id longer than the limit",
        ));
    }
    let Some(proto) = rest.get(..len) else {
        return Ok(None);
    };
    let proto = std::str::from_utf8(proto)
        .map_err(|_| TransportError::InvalidHeader("protocol id is not ASCII"))?;
    validate_protocol(proto, max_len)
        .map_err(|_| TransportError::InvalidHeader("bad protocol id"))?;
    Ok(Some((kind, proto.to_owned(), 2 + len)))
}

/// Reads a header from `io`, checking the length byte before reading the protocol id.
pub(crate) async fn read<R: AsyncRead + Unpin>(
    io: &mut R,
    max_len: usize,
) -> Result<(StreamKind, String)> {
    let mut head = [0u8; 2];
    io.read_exact(&mut head).await?;
    if usize::from(head[1]) > max_len {
        return Err(TransportError::InvalidHeader(
            "protocol id longer than the limit",
        ));
    }
    let mut buf = vec![0u8; 2 + usize::from(head[1])];
    buf[..2].copy_from_slice(&head);
    io.read_exact(&mut buf[2..]).await?;
    match decode(&buf, max_len)? {
        Some((kind, proto, _)) => Ok((kind, proto)),
        None => Err(TransportError::InvalidHeader("truncated")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let h = encode(StreamKind::Uni, "/p2pf/kad/1");
        assert_eq!(&h[..2], &[0x01, 11]);
        let (kind, proto, used) = decode(&h, 64).unwrap().unwrap();
        assert_eq!(
            (kind, proto.as_str(), used),
            (StreamKind::Uni, "/p2pf/kad/1", 13)
        );
        assert!(decode(&h[..5], 64).unwrap().is_none());
        assert!(decode(&h, 5).is_err());
        assert!(decode(&[3, 1, b'a'], 64).is_err());
        assert_eq!(
            decode(&[2, 1, b'a'], 64).unwrap().unwrap().0,
            StreamKind::EarlyBi
        );
        assert!(decode(&[0, 0], 64).is_err());
        assert!(decode(&[0, 1, b' '], 64).is_err());
    }

    #[test]
    fn validation() {
        assert!(validate_protocol("/p2pf/gossip/1", 64).is_ok());
        assert!(validate_protocol("", 64).is_err());
        assert!(validate_protocol("a b", 64).is_err());
        assert!(validate_protocol(&"x".repeat(65), 64).is_err());
        assert!(validate_protocol("é", 64).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), max in 0usize..300) {
            let _ = decode(&bytes, max);
        }

        #[test]
        fn encode_decode(proto in "[!-~]{1,64}", uni in any::<bool>()) {
            let kind = if uni { StreamKind::Uni } else { StreamKind::Bi };
            let h = encode(kind, &proto);
            let (k, p, n) = decode(&h, 64).unwrap().unwrap();
            prop_assert_eq!((k, p, n), (kind, proto.clone(), h.len()));
        }
    }
}
