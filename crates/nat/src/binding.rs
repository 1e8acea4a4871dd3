//! Sans-IO STUN Binding: the client transaction (RFC 8489 §6.2.1 retransmissions) and the
//! server's stateless answer. No sockets, no clock: time is a parameter.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::NatError;
use crate::stun::{Attribute, Class, METHOD_BINDING, Message, TransactionId, looks_like_stun};

/// SOFTWARE value our server and client send.
pub const SOFTWARE: &str = concat!("p2p-foundation-nat ", env!("CARGO_PKG_VERSION"));

/// Retransmission parameters (RFC 8489 §6.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetransmitConfig {
    /// Initial retransmission timeout (RTO); doubles after every send. RFC default 500 ms.
    pub rto: Duration,
    /// Total requests sent (Rc), at least 1. RFC default 7.
    pub max_sends: u32,
    /// After the last request, wait `last_wait_multiplier × rto` (Rm). RFC default 16.
    pub last_wait_multiplier: u32,
}

impl Default for RetransmitConfig {
    fn default() -> Self {
        Self {
            rto: Duration::from_millis(500),
            max_sends: 7,
            last_wait_multiplier: 16,
        }
    }
}

/// Counters of what a transaction received and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindingStats {
    /// Requests sent (first transmission plus retransmissions).
    pub sends: u32,
    /// Datagrams from an address other than the server's, dropped.
    pub wrong_source: u32,
    /// STUN messages from the server with another transaction id or not a Binding response, dropped.
    pub wrong_transaction: u32,
    /// Datagrams that did not decode as STUN, or that carried unknown comprehension-required attributes.
    pub malformed: u32,
}

/// A successful Binding transaction's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingOutcome {
    /// Our address as the server saw it (server-reflexive address).
    pub mapped: SocketAddr,
    /// The server asked.
    pub server: SocketAddr,
    /// The server's SOFTWARE, if it sent one.
    pub server_software: Option<String>,
    /// What was sent, received and dropped.
    pub stats: BindingStats,
}

/// What a [`BindingTransaction`] wants done next.
#[derive(Debug)]
pub enum BindingPoll {
    /// Send these bytes to the server.
    Transmit {
        /// Destination.
        to: SocketAddr,
        /// The encoded request.
        bytes: Vec<u8>,
    },
    /// Nothing to do until this instant, or until a datagram arrives.
    WaitUntil(Instant),
    /// Finished (poll no more).
    Done(Result<BindingOutcome, NatError>),
}

/// A client Binding transaction as a sans-IO state machine.
///
/// Call [`BindingTransaction::poll`] until it returns `WaitUntil` or `Done`; feed every
/// datagram received on the socket to [`BindingTransaction::handle_datagram`].
#[derive(Debug)]
pub struct BindingTransaction {
    server: SocketAddr,
    transaction_id: TransactionId,
    request: Vec<u8>,
    config: RetransmitConfig,
    next_send: Instant,
    interval: Duration,
    give_up_at: Option<Instant>,
    stats: BindingStats,
    result: Option<Result<BindingOutcome, NatError>>,
    finished: bool,
}

impl BindingTransaction {
    /// Starts a transaction to `server` with a fresh random transaction id.
    pub fn new(
        server: SocketAddr,
        config: RetransmitConfig,
        now: Instant,
    ) -> Result<Self, NatError> {
        let mut request = Message::binding_request()?;
        request
            .attributes
            .push(Attribute::Software(SOFTWARE.into()));
        let transaction_id = request.transaction_id;
        Ok(Self {
            server,
            transaction_id,
            request: request.encode()?,
            config: RetransmitConfig {
                max_sends: config.max_sends.max(1),
                ..config
            },
            next_send: now,
            interval: config.rto,
            give_up_at: None,
            stats: BindingStats::default(),
            result: None,
            finished: false,
        })
    }

    /// The transaction id in use.
    pub fn transaction_id(&self) -> TransactionId {
        self.transaction_id
    }

    /// Counters so far.
    pub fn stats(&self) -> BindingStats {
        self.stats
    }

    /// Advances the state machine to `now`.
    pub fn poll(&mut self, now: Instant) -> BindingPoll {
        if let Some(result) = self.result.take() {
            self.finished = true;
            return BindingPoll::Done(result);
        }
        if self.finished {
            return BindingPoll::Done(Err(NatError::Timeout {
                server: self.server,
                sends: self.stats.sends,
            }));
        }
        if let Some(at) = self.give_up_at {
            if now >= at {
                self.finished = true;
                return BindingPoll::Done(Err(NatError::Timeout {
                    server: self.server,
                    sends: self.stats.sends,
                }));
            }
            return BindingPoll::WaitUntil(at);
        }
        if now >= self.next_send {
            self.stats.sends += 1;
            if self.stats.sends >= self.config.max_sends {
                self.give_up_at = Some(now + self.config.rto * self.config.last_wait_multiplier);
            } else {
                self.next_send = now + self.interval;
                self.interval = self.interval.saturating_mul(2);
            }
            tracing::trace!(server = %self.server, send = self.stats.sends, "STUN binding request");
            return BindingPoll::Transmit {
                to: self.server,
                bytes: self.request.clone(),
            };
        }
        BindingPoll::WaitUntil(self.next_send)
    }

    /// Offers a received datagram. Datagrams from elsewhere, for another transaction, or
    /// malformed, are dropped and counted; a matching response completes the transaction.
    pub fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8]) {
        if self.result.is_some() || self.finished {
            return;
        }
        if crate::canonical_addr(from) != crate::canonical_addr(self.server) {
            self.stats.wrong_source += 1;
            tracing::debug!(%from, server = %self.server, "dropped STUN datagram from the wrong address");
            return;
        }
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                tracing::debug!(%from, error = %e, "dropped malformed datagram");
                return;
            }
        };
        if msg.transaction_id != self.transaction_id
            || msg.method != METHOD_BINDING
            || !matches!(msg.class, Class::Success | Class::Error)
        {
            self.stats.wrong_transaction += 1;
            return;
        }
        let unknown = msg.unknown_comprehension_required();
        if !unknown.is_empty() {
            // RFC 8489 §6.3.3: such a response is discarded; keep waiting (it may be retransmitted).
            self.stats.malformed += 1;
            tracing::debug!(%from, ?unknown, "dropped response with unknown required attributes");
            return;
        }
        let server = self.server;
        self.result = Some(match msg.class {
            Class::Error => {
                let (code, reason) = msg
                    .error_code()
                    .map_or((0, String::new()), |(c, r)| (c, r.to_owned()));
                Err(NatError::ErrorResponse {
                    server,
                    code,
                    reason,
                })
            }
            _ => match msg.mapped_address() {
                Some(mapped) => Ok(BindingOutcome {
                    mapped,
                    server,
                    server_software: msg.software().map(str::to_owned),
                    stats: self.stats,
                }),
                None => Err(NatError::NoMappedAddress(server)),
            },
        });
    }
}

/// The server's answer to one datagram from `from`: `None` for anything that is not a
/// Binding request (responses, indications, non-STUN), which a server must not answer.
/// A request with unknown comprehension-required attributes gets error 420 listing them;
/// otherwise a success response with XOR-MAPPED-ADDRESS, MAPPED-ADDRESS (for RFC 3489
/// clients), SOFTWARE and FINGERPRINT.
///
/// The answer is never larger than the request (no amplification for a spoofed source):
/// SOFTWARE, then MAPPED-ADDRESS, then FINGERPRINT are left out until it fits. The one
/// exception is a request shorter than the smallest success answer (a bare 20-byte header,
/// as coturn's client sends): it gets exactly that, the header and XOR-MAPPED-ADDRESS
/// ([`MIN_SUCCESS_LEN_V4`] or [`MIN_SUCCESS_LEN_V6`] bytes). A 420 that does not fit is not
/// sent. A v4-mapped source (`::ffff:a.b.c.d`, from a dual-stack socket) is reported as the
/// plain IPv4 address. Servers should also rate-limit per source ([`crate::StunServer`]
/// does).
///
/// ```
/// use p2p_foundation_nat::binding::answer_binding_request;
/// use p2p_foundation_nat::stun::Message;
///
/// let request = Message::binding_request()?.encode()?;
/// let from = "[::ffff:203.0.113.5]:4000".parse()?;
/// let answer = answer_binding_request(from, &request).expect("a Binding request is answered");
/// assert!(answer.len() <= request.len().max(32));
/// let mapped = Message::decode(&answer)?.mapped_address();
/// assert_eq!(mapped, Some("203.0.113.5:4000".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn answer_binding_request(from: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    if !looks_like_stun(bytes) {
        return None;
    }
    let req = Message::decode(bytes).ok()?;
    if req.class != Class::Request || req.method != METHOD_BINDING {
        return None;
    }
    let from = crate::canonical_addr(from);
    let limit = bytes.len();
    let unknown = req.unknown_comprehension_required();
    let software = || Attribute::Software(SOFTWARE.into());
    let reply = |class, attributes, fingerprint| {
        Message {
            class,
            method: METHOD_BINDING,
            transaction_id: req.transaction_id,
            attributes,
            fingerprint,
        }
        .encode()
        .ok()
    };
    if unknown.is_empty() {
        // Sizes are known without encoding: header, 12 or 24 bytes per address attribute,
        // SOFTWARE's header and padded value, 8 for FINGERPRINT.
        let address = if from.is_ipv4() { 12 } else { 24 };
        let software_len = 4 + SOFTWARE.len().div_ceil(4) * 4;
        let (with_mapped, with_software, fingerprint) =
            if 20 + 2 * address + software_len + 8 <= limit {
                (true, true, true)
            } else if 20 + 2 * address + 8 <= limit {
                (true, false, true)
            } else if 20 + address + 8 <= limit {
                (false, false, true)
            } else {
                // Shorter than the smallest possible answer: that one, and nothing more.
                (false, false, false)
            };
        let mut attributes = vec![Attribute::XorMappedAddress(from)];
        if with_mapped {
            attributes.push(Attribute::MappedAddress(from));
        }
        if with_software {
            attributes.push(software());
        }
        reply(Class::Success, attributes, fingerprint)
    } else {
        let error = |reason: &str| Attribute::ErrorCode {
            code: 420,
            reason: reason.into(),
        };
        let listed = Attribute::UnknownAttributes(unknown);
        let candidates = [
            (
                vec![error("Unknown Attribute"), listed.clone(), software()],
                true,
            ),
            (vec![error("Unknown Attribute"), listed.clone()], true),
            (vec![error("Unknown Attribute"), listed.clone()], false),
            (vec![error(""), listed], false),
        ];
        candidates
            .into_iter()
            .find_map(|(attributes, fingerprint)| {
                reply(Class::Error, attributes, fingerprint).filter(|e| e.len() <= limit)
            })
    }
}

/// Length of the smallest Binding success answer to an IPv4 source: the header and an
/// XOR-MAPPED-ADDRESS, what a bare 20-byte request gets.
pub const MIN_SUCCESS_LEN_V4: usize = 20 + 12;
/// Length of the smallest Binding success answer to an IPv6 source.
pub const MIN_SUCCESS_LEN_V6: usize = 20 + 24;

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> SocketAddr {
        "198.51.100.1:3478".parse().expect("addr")
    }
    fn me() -> SocketAddr {
        "203.0.113.5:40000".parse().expect("addr")
    }

    fn transmit(tx: &mut BindingTransaction, now: Instant) -> Vec<u8> {
        match tx.poll(now) {
            BindingPoll::Transmit { to, bytes } => {
                assert_eq!(to, server());
                bytes
            }
            other => panic!("expected a transmit, got {other:?}"),
        }
    }

    #[test]
    fn retransmits_on_the_rfc_schedule_then_times_out() {
        let t0 = Instant::now();
        let rto = Duration::from_millis(500);
        let cfg = RetransmitConfig {
            rto,
            max_sends: 4,
            last_wait_multiplier: 16,
        };
        let mut tx = BindingTransaction::new(server(), cfg, t0).expect("new");
        // Sends at 0, 500, 1500, 3500 ms; gives up 16 × 500 ms after the last.
        let mut at = t0;
        for expected in [0u64, 500, 1500, 3500] {
            let due = t0 + Duration::from_millis(expected);
            if at < due {
                assert!(matches!(tx.poll(at), BindingPoll::WaitUntil(w) if w == due));
            }
            at = due;
            transmit(&mut tx, at);
        }
        let end = at + rto * 16;
        assert!(matches!(tx.poll(at), BindingPoll::WaitUntil(w) if w == end));
        match tx.poll(end) {
            BindingPoll::Done(Err(NatError::Timeout { sends: 4, .. })) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[test]
    fn matching_response_completes_and_strangers_are_counted() {
        let t0 = Instant::now();
        let mut tx =
            BindingTransaction::new(server(), RetransmitConfig::default(), t0).expect("new");
        let req = transmit(&mut tx, t0);
        let answer = answer_binding_request(me(), &req).expect("server answers");

        tx.handle_datagram("192.0.2.66:3478".parse().expect("addr"), &answer);
        let mut other = Message::decode(&answer).expect("decodes");
        other.transaction_id = TransactionId([0xAA; 12]);
        tx.handle_datagram(server(), &other.encode().expect("encodes"));
        tx.handle_datagram(server(), b"not stun at all, just some bytes");
        tx.handle_datagram(server(), &req); // our own request reflected
        tx.handle_datagram(server(), &answer);
        match tx.poll(t0) {
            BindingPoll::Done(Ok(o)) => {
                assert_eq!(o.mapped, me());
                // The full answer would outgrow our 56-byte request: SOFTWARE is left out.
                assert_eq!(o.server_software, None);
                assert_eq!(
                    o.stats,
                    BindingStats {
                        sends: 1,
                        wrong_source: 1,
                        wrong_transaction: 2,
                        malformed: 1
                    }
                );
            }
            other => panic!("expected success, got {other:?}"),
        }
    }

    #[test]
    fn server_answers_unknown_required_attribute_with_420() {
        let mut req = Message::binding_request().expect("rng");
        req.attributes.push(Attribute::Other {
            attr_type: 0x0077,
            value: vec![1, 2],
        });
        let bytes = answer_binding_request(me(), &req.encode().expect("encodes")).expect("answer");
        let ans = Message::decode(&bytes).expect("decodes");
        assert_eq!(ans.class, Class::Error);
        assert_eq!(ans.error_code().map(|(c, _)| c), Some(420));
        assert!(
            ans.attributes
                .contains(&Attribute::UnknownAttributes(vec![0x0077]))
        );

        let t0 = Instant::now();
        let mut tx =
            BindingTransaction::new(server(), RetransmitConfig::default(), t0).expect("new");
        let _ = transmit(&mut tx, t0);
        let mut err = ans.clone();
        err.transaction_id = tx.transaction_id();
        tx.handle_datagram(server(), &err.encode().expect("encodes"));
        assert!(matches!(
            tx.poll(t0),
            BindingPoll::Done(Err(NatError::ErrorResponse { code: 420, .. }))
        ));
    }

    /// A request of `len` bytes (a multiple of 4, at least 20): SOFTWARE padding it out.
    fn request_of(len: usize) -> Vec<u8> {
        let mut req = Message::binding_request().expect("rng");
        req.fingerprint = false;
        if len > 20 {
            req.attributes
                .push(Attribute::Software("x".repeat(len - 24)));
        }
        let bytes = req.encode().expect("encodes");
        assert_eq!(bytes.len(), len);
        bytes
    }

    #[test]
    fn answers_are_never_larger_than_the_request_beyond_the_minimum() {
        let v4 = me();
        let v6: SocketAddr = "[2001:db8::5]:40000".parse().expect("addr");
        for from in [v4, v6] {
            let minimum = if from.is_ipv4() {
                MIN_SUCCESS_LEN_V4
            } else {
                MIN_SUCCESS_LEN_V6
            };
            for len in (20..=200).step_by(4) {
                let req = request_of(len);
                let ans = answer_binding_request(from, &req).expect("answered");
                assert!(
                    ans.len() <= len.max(minimum),
                    "{from}: {len}-byte request got {} bytes",
                    ans.len()
                );
                let msg = Message::decode(&ans).expect("decodes");
                assert_eq!(msg.class, Class::Success);
                assert_eq!(msg.mapped_address(), Some(from));
            }
            // Padded enough, the answer is the full one.
            let full =
                Message::decode(&answer_binding_request(from, &request_of(200)).expect("answer"))
                    .expect("decodes");
            assert_eq!(full.software(), Some(SOFTWARE));
            assert!(full.attributes.contains(&Attribute::MappedAddress(from)));
        }
        // A bare header (coturn's client) gets exactly the minimal answer: 32 bytes.
        let bare = answer_binding_request(v4, &request_of(20)).expect("answered");
        assert_eq!(bare.len(), MIN_SUCCESS_LEN_V4);
    }

    #[test]
    fn an_unknown_attribute_error_that_would_amplify_is_not_sent() {
        let mut req = Message::binding_request().expect("rng");
        req.fingerprint = false;
        req.attributes.push(Attribute::Other {
            attr_type: 0x0077,
            value: vec![],
        });
        let small = req.encode().expect("encodes");
        assert_eq!(small.len(), 24);
        assert!(answer_binding_request(me(), &small).is_none());
        req.attributes.push(Attribute::Software("y".repeat(60)));
        let padded = req.encode().expect("encodes");
        let ans = answer_binding_request(me(), &padded).expect("answered");
        assert!(ans.len() <= padded.len());
        let ans = Message::decode(&ans).expect("decodes");
        assert_eq!(ans.error_code().map(|(c, _)| c), Some(420));
    }

    #[test]
    fn v4_mapped_sources_are_answered_as_ipv4() {
        let req = request_of(100);
        let mapped: SocketAddr = "[::ffff:203.0.113.5]:40000".parse().expect("addr");
        let ans = answer_binding_request(mapped, &req).expect("answered");
        let msg = Message::decode(&ans).expect("decodes");
        assert_eq!(msg.mapped_address(), Some(me()));
        assert!(msg.attributes.contains(&Attribute::XorMappedAddress(me())));
        // And a client reading a v4-mapped XOR-MAPPED-ADDRESS reports plain IPv4.
        let t0 = Instant::now();
        let mut tx =
            BindingTransaction::new(server(), RetransmitConfig::default(), t0).expect("new");
        let _ = transmit(&mut tx, t0);
        let reply = Message {
            class: Class::Success,
            method: METHOD_BINDING,
            transaction_id: tx.transaction_id(),
            attributes: vec![Attribute::XorMappedAddress(mapped)],
            fingerprint: true,
        };
        tx.handle_datagram(server(), &reply.encode().expect("encodes"));
        match tx.poll(t0) {
            BindingPoll::Done(Ok(o)) => assert_eq!(o.mapped, me()),
            other => panic!("expected success, got {other:?}"),
        }
    }

    #[test]
    fn server_ignores_responses_and_garbage() {
        let req = Message::binding_request()
            .expect("rng")
            .encode()
            .expect("encodes");
        let ans = answer_binding_request(me(), &req).expect("answer");
        assert!(answer_binding_request(me(), &ans).is_none());
        assert!(answer_binding_request(me(), &[0u8; 7]).is_none());
    }
}
