//! STUN message codec (RFC 8489), sans-IO: bytes in, [`Message`] out, and back.
//!
//! The wire format is documented byte by byte in `docs/protocols/nat.md`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::NatError;
use crate::crc32::crc32;

/// The fixed magic cookie every RFC 5389/8489 message carries in bytes 4..8.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Value XORed into the CRC-32 to form FINGERPRINT ("STUN" in ASCII).
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;
/// Length of the STUN header.
pub const HEADER_LEN: usize = 20;
/// Largest message [`Message::decode`] accepts (a STUN message must fit one unfragmented datagram).
pub const MAX_MESSAGE_LEN: usize = 1280;
/// Most attributes [`Message::decode`] accepts in one message.
pub const MAX_ATTRIBUTES: usize = 32;
/// Longest SOFTWARE or reason phrase value in bytes (RFC 8489 §14.14, §14.8: 763).
pub const MAX_TEXT_LEN: usize = 763;

/// The Binding method (0x001), the only method this crate implements.
pub const METHOD_BINDING: u16 = 0x001;

/// Attribute type numbers (RFC 8489 §18.3).
pub mod attr {
    /// MAPPED-ADDRESS.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = 0x8028;
}

/// A 96-bit STUN transaction id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransactionId(pub [u8; 12]);

impl TransactionId {
    /// A fresh transaction id from the operating system's random number generator
    /// (RFC 8489 §6: "uniformly and randomly chosen").
    pub fn random() -> Result<Self, NatError> {
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).map_err(|e| {
            NatError::Io(std::io::Error::other(format!("OS randomness failed: {e}")))
        })?;
        Ok(Self(id))
    }
}

/// The class of a STUN message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// A request (expects a response).
    Request,
    /// An indication (no response).
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }
    fn from_bits(b: u16) -> Self {
        match b & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        }
    }
}

/// One decoded attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribute {
    /// XOR-MAPPED-ADDRESS: the reflexive transport address, obfuscated on the wire.
    XorMappedAddress(SocketAddr),
    /// MAPPED-ADDRESS: the same, in clear (RFC 3489 servers).
    MappedAddress(SocketAddr),
    /// SOFTWARE: a description of the sender's implementation.
    Software(String),
    /// ERROR-CODE: an error class and number (300..=699) with a reason phrase.
    ErrorCode {
        /// The code, e.g. 420.
        code: u16,
        /// Human-readable reason.
        reason: String,
    },
    /// UNKNOWN-ATTRIBUTES: the attribute types a 420 error response did not understand.
    UnknownAttributes(Vec<u16>),
    /// An attribute this crate does not interpret, kept verbatim.
    Other {
        /// Its type.
        attr_type: u16,
        /// Its value (without padding).
        value: Vec<u8>,
    },
}

/// A STUN message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Request, indication, success or error.
    pub class: Class,
    /// The 12-bit method (for example [`METHOD_BINDING`]).
    pub method: u16,
    /// The transaction id.
    pub transaction_id: TransactionId,
    /// Attributes in wire order, FINGERPRINT excluded (see [`Message::fingerprint`]).
    pub attributes: Vec<Attribute>,
    /// Whether a (valid) FINGERPRINT ends the message; on encode, whether to add one.
    pub fingerprint: bool,
}

fn encode_type(class: Class, method: u16) -> u16 {
    let m = method & 0x0FFF;
    let c = class.bits();
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

fn decode_type(t: u16) -> (Class, u16) {
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = ((t >> 4) & 1) | ((t >> 7) & 2);
    (Class::from_bits(class), method)
}

/// Whether a raw attribute type is comprehension-required (RFC 8489 §14: 0x0000-0x7FFF).
pub fn is_comprehension_required(attr_type: u16) -> bool {
    attr_type < 0x8000
}

/// Quick test whether a datagram looks like STUN (leading bits zero, magic cookie present),
/// for demultiplexing STUN from other traffic on one socket.
pub fn looks_like_stun(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN
        && bytes[0] & 0xC0 == 0
        && u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) == MAGIC_COOKIE
}

impl Message {
    /// A Binding request with a fresh random transaction id and a FINGERPRINT.
    pub fn binding_request() -> Result<Self, NatError> {
        Ok(Self {
            class: Class::Request,
            method: METHOD_BINDING,
            transaction_id: TransactionId::random()?,
            attributes: Vec::new(),
            fingerprint: true,
        })
    }

    /// The first XOR-MAPPED-ADDRESS, else the first MAPPED-ADDRESS; a v4-mapped IPv6
    /// address is returned as plain IPv4 ([`crate::canonical_addr`]).
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        let xor = self.attributes.iter().find_map(|a| match a {
            Attribute::XorMappedAddress(s) => Some(*s),
            _ => None,
        });
        xor.or_else(|| {
            self.attributes.iter().find_map(|a| match a {
                Attribute::MappedAddress(s) => Some(*s),
                _ => None,
            })
        })
        .map(crate::canonical_addr)
    }

    /// The ERROR-CODE attribute, if any.
    pub fn error_code(&self) -> Option<(u16, &str)> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::ErrorCode { code, reason } => Some((*code, reason.as_str())),
            _ => None,
        })
    }

    /// The SOFTWARE attribute, if any.
    pub fn software(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Software(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// Types of comprehension-required attributes this crate does not understand. A server
    /// answers a request carrying any with a 420 error (RFC 8489 §6.3.1.1); a client discards
    /// such a response.
    pub fn unknown_comprehension_required(&self) -> Vec<u16> {
        self.attributes
            .iter()
            .filter_map(|a| match a {
                Attribute::Other { attr_type, .. } if is_comprehension_required(*attr_type) => {
                    Some(*attr_type)
                }
                _ => None,
            })
            .collect()
    }

    /// Encodes the message, appending FINGERPRINT last when [`Message::fingerprint`] is set.
    pub fn encode(&self) -> Result<Vec<u8>, NatError> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&encode_type(self.class, self.method).to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        out.extend_from_slice(&self.transaction_id.0);
        for a in &self.attributes {
            encode_attribute(&mut out, a, &self.transaction_id)?;
        }
        if self.fingerprint {
            let len = out.len() - HEADER_LEN + 8;
            set_length(&mut out, len)?;
            let fp = crc32(&out) ^ FINGERPRINT_XOR;
            out.extend_from_slice(&attr::FINGERPRINT.to_be_bytes());
            out.extend_from_slice(&4u16.to_be_bytes());
            out.extend_from_slice(&fp.to_be_bytes());
        } else {
            let len = out.len() - HEADER_LEN;
            set_length(&mut out, len)?;
        }
        if out.len() > MAX_MESSAGE_LEN {
            return Err(NatError::Encode("message longer than MAX_MESSAGE_LEN"));
        }
        Ok(out)
    }

    /// Decodes one STUN message occupying all of `bytes`.
    ///
    /// Checks, before allocating anything: total size against [`MAX_MESSAGE_LEN`], the leading
    /// zero bits, the magic cookie, the header length against the datagram, every attribute
    /// length against what remains, and the attribute count against [`MAX_ATTRIBUTES`]. A
    /// FINGERPRINT, if present, must be last and must match. Attributes after
    /// MESSAGE-INTEGRITY other than FINGERPRINT are ignored, as RFC 8489 §14.5 requires.
    pub fn decode(bytes: &[u8]) -> Result<Self, NatError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(NatError::TooLong {
                len: bytes.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        if bytes.len() < HEADER_LEN {
            return Err(NatError::Truncated {
                needed: HEADER_LEN,
                had: bytes.len(),
            });
        }
        if bytes[0] & 0xC0 != 0 {
            return Err(NatError::NotStun("the two leading bits are not zero"));
        }
        if u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) != MAGIC_COOKIE {
            return Err(NatError::NotStun("magic cookie missing"));
        }
        let body_len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        if body_len % 4 != 0 {
            return Err(NatError::NotStun("message length is not a multiple of 4"));
        }
        if HEADER_LEN + body_len != bytes.len() {
            return Err(NatError::Truncated {
                needed: HEADER_LEN + body_len,
                had: bytes.len(),
            });
        }
        let (class, method) = decode_type(u16::from_be_bytes([bytes[0], bytes[1]]));
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&bytes[8..20]);
        let transaction_id = TransactionId(tid);

        // First pass: validate the framing and count attributes, so the Vec is sized once.
        let mut pos = HEADER_LEN;
        let mut count = 0usize;
        while pos < bytes.len() {
            if bytes.len() - pos < 4 {
                return Err(NatError::Truncated {
                    needed: pos + 4,
                    had: bytes.len(),
                });
            }
            let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
            let padded = (len + 3) & !3;
            if bytes.len() - pos - 4 < padded {
                return Err(NatError::Truncated {
                    needed: pos + 4 + padded,
                    had: bytes.len(),
                });
            }
            count += 1;
            if count > MAX_ATTRIBUTES + 1 {
                return Err(NatError::TooManyAttributes(MAX_ATTRIBUTES));
            }
            pos += 4 + padded;
        }

        let mut attributes = Vec::with_capacity(count.min(MAX_ATTRIBUTES));
        let mut fingerprint = false;
        let mut after_integrity = false;
        let mut pos = HEADER_LEN;
        while pos < bytes.len() {
            let attr_type = u16::from_be_bytes([bytes[pos], bytes[pos + 1]]);
            let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
            let value = &bytes[pos + 4..pos + 4 + len];
            let next = pos + 4 + ((len + 3) & !3);
            if fingerprint {
                return Err(NatError::BadAttribute {
                    attr_type: attr::FINGERPRINT,
                    reason: "FINGERPRINT is not the last attribute",
                });
            }
            if attr_type == attr::FINGERPRINT {
                if len != 4 {
                    return Err(NatError::BadAttribute {
                        attr_type,
                        reason: "length is not 4",
                    });
                }
                let carried = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                let computed = crc32(&bytes[..pos]) ^ FINGERPRINT_XOR;
                if carried != computed {
                    return Err(NatError::FingerprintMismatch { carried, computed });
                }
                fingerprint = true;
            } else if !after_integrity {
                if attributes.len() == MAX_ATTRIBUTES {
                    return Err(NatError::TooManyAttributes(MAX_ATTRIBUTES));
                }
                attributes.push(decode_attribute(attr_type, value, &transaction_id)?);
                // MESSAGE-INTEGRITY (0x0008) and MESSAGE-INTEGRITY-SHA256 (0x001C).
                after_integrity = attr_type == 0x0008 || attr_type == 0x001C;
            }
            pos = next;
        }
        Ok(Self {
            class,
            method,
            transaction_id,
            attributes,
            fingerprint,
        })
    }
}

fn set_length(out: &mut [u8], len: usize) -> Result<(), NatError> {
    let len =
        u16::try_from(len).map_err(|_| NatError::Encode("message longer than 65535 bytes"))?;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn push_attr(out: &mut Vec<u8>, attr_type: u16, value: &[u8]) -> Result<(), NatError> {
    let len = u16::try_from(value.len())
        .map_err(|_| NatError::Encode("attribute longer than 65535 bytes"))?;
    out.extend_from_slice(&attr_type.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    let pad = (4 - value.len() % 4) % 4;
    out.extend_from_slice(&[0u8; 3][..pad]);
    Ok(())
}

fn address_value(addr: SocketAddr, xor: Option<&TransactionId>) -> Vec<u8> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut v = Vec::with_capacity(20);
    v.push(0);
    let mut port = addr.port();
    if xor.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    match addr.ip() {
        IpAddr::V4(ip) => {
            v.push(0x01);
            v.extend_from_slice(&port.to_be_bytes());
            let mut o = ip.octets();
            if xor.is_some() {
                for (b, k) in o.iter_mut().zip(cookie.iter()) {
                    *b ^= k;
                }
            }
            v.extend_from_slice(&o);
        }
        IpAddr::V6(ip) => {
            v.push(0x02);
            v.extend_from_slice(&port.to_be_bytes());
            let mut o = ip.octets();
            if let Some(tid) = xor {
                let key = cookie.iter().chain(tid.0.iter());
                for (b, k) in o.iter_mut().zip(key) {
                    *b ^= k;
                }
            }
            v.extend_from_slice(&o);
        }
    }
    v
}

fn decode_address(
    attr_type: u16,
    value: &[u8],
    xor: Option<&TransactionId>,
) -> Result<SocketAddr, NatError> {
    if value.len() < 4 {
        return Err(NatError::BadAttribute {
            attr_type,
            reason: "address shorter than 4 bytes",
        });
    }
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut port = u16::from_be_bytes([value[2], value[3]]);
    if xor.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    match value[1] {
        0x01 => {
            if value.len() != 8 {
                return Err(NatError::BadAttribute {
                    attr_type,
                    reason: "IPv4 address length is not 8",
                });
            }
            let mut o = [value[4], value[5], value[6], value[7]];
            if xor.is_some() {
                for (b, k) in o.iter_mut().zip(cookie.iter()) {
                    *b ^= k;
                }
            }
            Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(o)), port))
        }
        0x02 => {
            if value.len() != 20 {
                return Err(NatError::BadAttribute {
                    attr_type,
                    reason: "IPv6 address length is not 20",
                });
            }
            let mut o = [0u8; 16];
            o.copy_from_slice(&value[4..20]);
            if let Some(tid) = xor {
                let key = cookie.iter().chain(tid.0.iter());
                for (b, k) in o.iter_mut().zip(key) {
                    *b ^= k;
                }
            }
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
        }
        _ => Err(NatError::BadAttribute {
            attr_type,
            reason: "unknown address family",
        }),
    }
}

fn decode_text(attr_type: u16, value: &[u8]) -> Result<String, NatError> {
    if value.len() > MAX_TEXT_LEN {
        return Err(NatError::BadAttribute {
            attr_type,
            reason: "text longer than 763 bytes",
        });
    }
    std::str::from_utf8(value)
        .map(str::to_owned)
        .map_err(|_| NatError::BadAttribute {
            attr_type,
            reason: "text is not UTF-8",
        })
}

fn decode_attribute(
    attr_type: u16,
    value: &[u8],
    tid: &TransactionId,
) -> Result<Attribute, NatError> {
    Ok(match attr_type {
        attr::XOR_MAPPED_ADDRESS => {
            Attribute::XorMappedAddress(decode_address(attr_type, value, Some(tid))?)
        }
        attr::MAPPED_ADDRESS => Attribute::MappedAddress(decode_address(attr_type, value, None)?),
        attr::SOFTWARE => Attribute::Software(decode_text(attr_type, value)?),
        attr::ERROR_CODE => {
            if value.len() < 4 {
                return Err(NatError::BadAttribute {
                    attr_type,
                    reason: "ERROR-CODE shorter than 4 bytes",
                });
            }
            let class = u16::from(value[2] & 0x07);
            let number = u16::from(value[3]);
            if !(3..=6).contains(&class) || number > 99 {
                return Err(NatError::BadAttribute {
                    attr_type,
                    reason: "error code outside 300..=699",
                });
            }
            Attribute::ErrorCode {
                code: class * 100 + number,
                reason: decode_text(attr_type, &value[4..])?,
            }
        }
        attr::UNKNOWN_ATTRIBUTES => {
            if value.len() % 2 != 0 {
                return Err(NatError::BadAttribute {
                    attr_type,
                    reason: "odd length",
                });
            }
            Attribute::UnknownAttributes(
                value
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect(),
            )
        }
        _ => Attribute::Other {
            attr_type,
            value: value.to_vec(),
        },
    })
}

fn encode_attribute(out: &mut Vec<u8>, a: &Attribute, tid: &TransactionId) -> Result<(), NatError> {
    match a {
        Attribute::XorMappedAddress(s) => {
            push_attr(out, attr::XOR_MAPPED_ADDRESS, &address_value(*s, Some(tid)))
        }
        Attribute::MappedAddress(s) => {
            push_attr(out, attr::MAPPED_ADDRESS, &address_value(*s, None))
        }
        Attribute::Software(s) => {
            if s.len() > MAX_TEXT_LEN {
                return Err(NatError::Encode("SOFTWARE longer than 763 bytes"));
            }
            push_attr(out, attr::SOFTWARE, s.as_bytes())
        }
        Attribute::ErrorCode { code, reason } => {
            if !(300..=699).contains(code) {
                return Err(NatError::Encode("error code outside 300..=699"));
            }
            if reason.len() > MAX_TEXT_LEN {
                return Err(NatError::Encode("reason phrase longer than 763 bytes"));
            }
            let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
            v.extend_from_slice(reason.as_bytes());
            push_attr(out, attr::ERROR_CODE, &v)
        }
        Attribute::UnknownAttributes(types) => {
            let v: Vec<u8> = types.iter().flat_map(|t| t.to_be_bytes()).collect();
            push_attr(out, attr::UNKNOWN_ATTRIBUTES, &v)
        }
        Attribute::Other { attr_type, value } => {
            if *attr_type == attr::FINGERPRINT {
                return Err(NatError::Encode(
                    "FINGERPRINT is added by Message::fingerprint, not as an attribute",
                ));
            }
            push_attr(out, *attr_type, value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 §2.2: sample IPv4 response.
    const RFC5769_V4: [u8; 80] = [
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1,
        0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
        0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00,
        0x04, 0xc0, 0x7d, 0x4c, 0x96,
    ];

    /// RFC 5769 §2.3: sample IPv6 response.
    const RFC5769_V6: [u8; 92] = [
        0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01,
        0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9,
        0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb,
        0x0b, 0x4c,
    ];

    #[test]
    fn rfc5769_ipv4_response_decodes() {
        let m = Message::decode(&RFC5769_V4).expect("valid test vector");
        assert_eq!(m.class, Class::Success);
        assert_eq!(m.method, METHOD_BINDING);
        assert!(m.fingerprint);
        assert_eq!(m.software(), Some("test vector"));
        assert_eq!(
            m.mapped_address(),
            Some("192.0.2.1:32853".parse().expect("addr"))
        );
        // MESSAGE-INTEGRITY is kept as an unknown comprehension-required attribute.
        assert_eq!(m.unknown_comprehension_required(), vec![0x0008]);
    }

    #[test]
    fn rfc5769_ipv6_response_decodes() {
        let m = Message::decode(&RFC5769_V6).expect("valid test vector");
        assert_eq!(
            m.mapped_address(),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .expect("addr")
            )
        );
        assert!(m.fingerprint);
    }

    #[test]
    fn type_bits_round_trip() {
        for class in [
            Class::Request,
            Class::Indication,
            Class::Success,
            Class::Error,
        ] {
            for method in [0u16, 1, 0x0FFF, 0x0ABC] {
                assert_eq!(decode_type(encode_type(class, method)), (class, method));
            }
        }
        assert_eq!(encode_type(Class::Request, METHOD_BINDING), 0x0001);
        assert_eq!(encode_type(Class::Success, METHOD_BINDING), 0x0101);
        assert_eq!(encode_type(Class::Error, METHOD_BINDING), 0x0111);
    }

    #[test]
    fn round_trip_every_attribute() {
        let m = Message {
            class: Class::Error,
            method: METHOD_BINDING,
            transaction_id: TransactionId([7; 12]),
            attributes: vec![
                Attribute::XorMappedAddress("203.0.113.7:4242".parse().expect("addr")),
                Attribute::XorMappedAddress("[2001:db8::9]:1".parse().expect("addr")),
                Attribute::MappedAddress("[fd00::1]:65535".parse().expect("addr")),
                Attribute::Software("p2p-foundation".into()),
                Attribute::ErrorCode {
                    code: 420,
                    reason: "Unknown Attribute".into(),
                },
                Attribute::UnknownAttributes(vec![0x0042, 0x7777, 0x0001]),
                Attribute::Other {
                    attr_type: 0x8abc,
                    value: vec![1, 2, 3, 4, 5],
                },
            ],
            fingerprint: true,
        };
        let bytes = m.encode().expect("encodes");
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(Message::decode(&bytes).expect("decodes"), m);
    }

    #[test]
    fn flipped_bit_fails_fingerprint() {
        let mut bytes = RFC5769_V4;
        bytes[25] ^= 1; // inside SOFTWARE
        assert!(matches!(
            Message::decode(&bytes),
            Err(NatError::FingerprintMismatch { .. })
        ));
    }

    #[test]
    fn framing_errors_are_reported() {
        assert!(matches!(
            Message::decode(&RFC5769_V4[..19]),
            Err(NatError::Truncated { .. })
        ));
        assert!(matches!(
            Message::decode(&RFC5769_V4[..76]),
            Err(NatError::Truncated { .. })
        ));
        let mut b = RFC5769_V4;
        b[4] = 0;
        assert!(matches!(Message::decode(&b), Err(NatError::NotStun(_))));
        let mut b = RFC5769_V4;
        b[0] |= 0x80;
        assert!(matches!(Message::decode(&b), Err(NatError::NotStun(_))));
        assert!(matches!(
            Message::decode(&[0u8; 2000]),
            Err(NatError::TooLong { .. })
        ));
    }

    #[test]
    fn attribute_after_fingerprint_is_rejected() {
        let m = Message {
            fingerprint: true,
            ..Message::binding_request().expect("rng")
        };
        let mut bytes = m.encode().expect("encodes");
        bytes.extend_from_slice(&[0x80, 0x22, 0, 0]);
        let len = (bytes.len() - HEADER_LEN) as u16;
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
        assert!(Message::decode(&bytes).is_err());
    }

    #[test]
    fn too_many_attributes_are_rejected_before_allocation() {
        let mut m = Message::binding_request().expect("rng");
        m.fingerprint = false;
        m.attributes = (0..40)
            .map(|_| Attribute::Other {
                attr_type: 0x8001,
                value: vec![],
            })
            .collect();
        let bytes = m.encode().expect("encodes");
        assert!(matches!(
            Message::decode(&bytes),
            Err(NatError::TooManyAttributes(_))
        ));
    }

    #[test]
    fn unknown_required_attributes_are_reported() {
        let mut m = Message::binding_request().expect("rng");
        m.attributes.push(Attribute::Other {
            attr_type: 0x0042,
            value: vec![9],
        });
        m.attributes.push(Attribute::Other {
            attr_type: 0xC001,
            value: vec![9],
        });
        let d = Message::decode(&m.encode().expect("encodes")).expect("decodes");
        assert_eq!(d.unknown_comprehension_required(), vec![0x0042]);
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1400)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_framed_garbage(
            tid in proptest::prelude::any::<[u8; 12]>(),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            // A valid header around random attribute bytes reaches the attribute parsers.
            let mut b = vec![0x01, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
            b.extend_from_slice(&tid);
            b.extend_from_slice(&body[..body.len() / 4 * 4]);
            let len = (b.len() - HEADER_LEN) as u16;
            b[2..4].copy_from_slice(&len.to_be_bytes());
            let _ = Message::decode(&b);
        }

        #[test]
        fn address_round_trips(v4 in proptest::prelude::any::<[u8; 4]>(), v6 in proptest::prelude::any::<[u8; 16]>(), port: u16, tid in proptest::prelude::any::<[u8; 12]>()) {
            let a4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(v4)), port);
            let a6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(v6)), port);
            let m = Message {
                class: Class::Success, method: METHOD_BINDING, transaction_id: TransactionId(tid),
                attributes: vec![Attribute::XorMappedAddress(a4), Attribute::XorMappedAddress(a6), Attribute::MappedAddress(a6)],
                fingerprint: true,
            };
            let d = Message::decode(&m.encode().expect("encodes")).expect("decodes");
            proptest::prop_assert_eq!(d, m);
        }
    }
}
