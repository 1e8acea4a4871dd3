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
        if from != self.server {
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
pub fn answer_binding_request(from: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    if !looks_like_stun(bytes) {
        return None;
    }
    let req = Message::decode(bytes).ok()?;
    if req.class != Class::Request || req.method != METHOD_BINDING {
        return None;
    }
    let unknown = req.unknown_comprehension_required();
    let reply = if unknown.is_empty() {
        Message {
            class: Class::Success,
            method: METHOD_BINDING,
            transaction_id: req.transaction_id,
            attributes: vec![
                Attribute::XorMappedAddress(from),
                Attribute::MappedAddress(from),
                Attribute::Software(SOFTWARE.into()),
            ],
            fingerprint: true,
        }
    } else {
        Message {
            class: Class::Error,
            method: METHOD_BINDING,
            transaction_id: req.transaction_id,
            attributes: vec![
                Attribute::ErrorCode {
                    code: 420,
                    reason: "Unknown Attribute".into(),
                },
                Attribute::UnknownAttributes(unknown),
                Attribute::Software(SOFTWARE.into()),
            ],
            fingerprint: true,
        }
    };
    reply.encode().ok()
}

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
                assert_eq!(o.server_software.as_deref(), Some(SOFTWARE));
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
