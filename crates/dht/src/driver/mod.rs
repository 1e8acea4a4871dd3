//! The thin tokio driver: runs a [`Dht`] core over any [`Transport`].
//!
//! A transport does two things: send a request frame to `(PeerId, SocketAddr)` and resolve
//! to the response frame ([`Transport::request`]), and hand inbound requests to the driver
//! as [`Inbound`] values through a channel, each with a one-shot reply slot. The facade
//! plugs the QUIC transport in here; this crate ships [`MemoryNetwork`] (tests, examples)
//! and [`UdpTransport`] (one signed datagram per message).

mod memory;
mod udp;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use p2p_foundation_identity::{Key, PeerId, Signed, Verified};
use tokio::sync::{mpsc, oneshot};

pub use self::memory::{MemoryNetwork, MemoryTransport};
pub use self::udp::{
    DatagramError, UDP_MAX_FRAME_LEN, UdpDatagram, UdpStats, UdpTransport, decode_udp_datagram,
    encode_udp_datagram,
};
use crate::record::AcceptAll;
use crate::{
    Config, Contact, Dht, DhtError, Event, Message, Output, ProviderRecord, QueryId, QueryResult,
    QueryStats, Record, RequestId, RoutingSnapshot, Stats, Validator,
};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a driver reaches other nodes. Frames are whole DHT frames (see
/// [`Message::encode`]); the transport authenticates who sent each one.
pub trait Transport: Send + Sync + 'static {
    /// Sends a request frame to `peer` at `addr` and resolves to its response frame. Must
    /// fail (not hang forever) if the peer at `addr` is not `peer` or does not answer.
    fn request(
        &self,
        peer: PeerId,
        addr: SocketAddr,
        frame: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, DhtError>>;
}

/// An inbound request handed to the driver by a transport.
#[derive(Debug)]
pub struct Inbound {
    /// The sender, as the transport authenticated it.
    pub from: PeerId,
    /// Where it came from (and where the response goes).
    pub addr: SocketAddr,
    /// The request frame.
    pub frame: Vec<u8>,
    /// Where the response frame goes; dropped unanswered when the request is refused.
    pub reply: oneshot::Sender<Vec<u8>>,
}

type Reply<T> = oneshot::Sender<Result<T, DhtError>>;

enum Command {
    Bootstrap(Vec<Contact>, Reply<usize>),
    FindNode(Key, Reply<(Vec<Contact>, QueryStats)>),
    GetRecord(Key, Reply<Vec<Verified<Record>>>),
    PutRecord(Box<Signed<Record>>, Reply<usize>),
    GetProviders(Key, Reply<Vec<Verified<ProviderRecord>>>),
    AddProvider(Box<Signed<ProviderRecord>>, Reply<usize>),
    Snapshot(oneshot::Sender<RoutingSnapshot>),
    Stats(oneshot::Sender<(Stats, usize)>),
    Forget(PeerId, oneshot::Sender<bool>),
}

enum Waiter {
    Bootstrap(Reply<usize>),
    FindNode(Reply<(Vec<Contact>, QueryStats)>),
    GetRecord(Reply<Vec<Verified<Record>>>),
    Stored(Reply<usize>),
    GetProviders(Reply<Vec<Verified<ProviderRecord>>>),
}

/// A handle to a DHT node running on a tokio task; cheap to clone. The node stops when
/// every handle is dropped.
#[derive(Clone, Debug)]
pub struct DhtNode {
    tx: mpsc::Sender<Command>,
    local: PeerId,
}

impl DhtNode {
    /// Spawns a node for `local` on the current tokio runtime, talking through `transport`
    /// and serving the requests arriving on `inbound`. `seed` feeds the node's RNG.
    pub fn spawn<T: Transport>(
        local: PeerId,
        config: Config,
        seed: u64,
        transport: Arc<T>,
        inbound: mpsc::Receiver<Inbound>,
    ) -> Self {
        Self::spawn_with_validator(local, config, seed, transport, inbound, AcceptAll)
    }

    /// [`DhtNode::spawn`] with an application [`Validator`] deciding which records are
    /// stored and returned, and who owns a key ([`Validator::is_owner`]).
    pub fn spawn_with_validator<T: Transport>(
        local: PeerId,
        config: Config,
        seed: u64,
        transport: Arc<T>,
        inbound: mpsc::Receiver<Inbound>,
        validator: impl Validator,
    ) -> Self {
        let (tx, rx) = mpsc::channel(256);
        let mut core = Dht::new(local, config, seed, Instant::now(), SystemTime::now());
        core.set_validator(validator);
        tokio::spawn(run(core, transport, inbound, rx));
        Self { tx, local }
    }

    /// This node's peer id.
    pub fn local_peer(&self) -> PeerId {
        self.local
    }

    async fn ask<R>(&self, make: impl FnOnce(Reply<R>) -> Command) -> Result<R, DhtError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| DhtError::Stopped)?;
        rx.await.map_err(|_| DhtError::Stopped)?
    }

    /// Joins through `seeds`; resolves to the routing table size afterwards.
    pub async fn bootstrap(&self, seeds: Vec<Contact>) -> Result<usize, DhtError> {
        self.ask(|r| Command::Bootstrap(seeds, r)).await
    }

    /// The k closest nodes to `target` that answered, and what the lookup cost.
    pub async fn find_node(&self, target: Key) -> Result<(Vec<Contact>, QueryStats), DhtError> {
        self.ask(|r| Command::FindNode(target, r)).await
    }

    /// Valid records stored under `key` (empty if none).
    pub async fn get_record(&self, key: Key) -> Result<Vec<Verified<Record>>, DhtError> {
        self.ask(|r| Command::GetRecord(key, r)).await
    }

    /// Stores a record on the k closest nodes; resolves to how many accepted it.
    pub async fn put_record(&self, record: Signed<Record>) -> Result<usize, DhtError> {
        self.ask(|r| Command::PutRecord(Box::new(record), r)).await
    }

    /// Provider records for `key`.
    pub async fn get_providers(&self, key: Key) -> Result<Vec<Verified<ProviderRecord>>, DhtError> {
        self.ask(|r| Command::GetProviders(key, r)).await
    }

    /// Announces a provider record on the k closest nodes; resolves to how many accepted it.
    pub async fn add_provider(&self, record: Signed<ProviderRecord>) -> Result<usize, DhtError> {
        self.ask(|r| Command::AddProvider(Box::new(record), r))
            .await
    }

    /// The routing table, to persist (see [`RoutingSnapshot::encode`]).
    pub async fn routing_snapshot(&self) -> Result<RoutingSnapshot, DhtError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Snapshot(tx))
            .await
            .map_err(|_| DhtError::Stopped)?;
        rx.await.map_err(|_| DhtError::Stopped)
    }

    /// Removes `peer` from the routing table because it is leaving (see
    /// [`Dht::remove_contact`](crate::Dht::remove_contact)); resolves to whether it was
    /// there.
    pub async fn forget(&self, peer: PeerId) -> Result<bool, DhtError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Forget(peer, tx))
            .await
            .map_err(|_| DhtError::Stopped)?;
        rx.await.map_err(|_| DhtError::Stopped)
    }

    /// The node's counters and its routing table size.
    pub async fn stats(&self) -> Result<(Stats, usize), DhtError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Stats(tx))
            .await
            .map_err(|_| DhtError::Stopped)?;
        rx.await.map_err(|_| DhtError::Stopped)
    }
}

type Completion = (PeerId, RequestId, Result<Vec<u8>, DhtError>);

struct Driver<T> {
    core: Dht,
    transport: Arc<T>,
    waiters: HashMap<QueryId, Waiter>,
    replies: HashMap<(PeerId, RequestId), oneshot::Sender<Vec<u8>>>,
    completions: mpsc::UnboundedSender<Completion>,
    deadline: Instant,
}

async fn run<T: Transport>(
    core: Dht,
    transport: Arc<T>,
    mut inbound: mpsc::Receiver<Inbound>,
    mut commands: mpsc::Receiver<Command>,
) {
    let (ctx, mut crx) = mpsc::unbounded_channel();
    let mut d = Driver {
        core,
        transport,
        waiters: HashMap::new(),
        replies: HashMap::new(),
        completions: ctx,
        deadline: Instant::now(),
    };
    let mut inbound_open = true;
    let span = tracing::debug_span!("dht", peer = %d.core.local_peer().short());
    let _guard = span.enter();
    loop {
        d.flush();
        let sleep = tokio::time::sleep_until(d.deadline.into());
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(cmd) => d.command(cmd),
                None => break,
            },
            msg = inbound.recv(), if inbound_open => match msg {
                Some(msg) => d.inbound(msg),
                None => inbound_open = false,
            },
            Some((peer, id, result)) = crx.recv() => {
                let now = Instant::now();
                match result {
                    Ok(frame) => d.core.handle_frame(now, peer, d.addr_hint(), &frame),
                    Err(e) => {
                        tracing::debug!(peer = %peer.short(), error = %e, "request failed");
                        d.core.request_failed(now, peer, id);
                    }
                }
            },
            () = sleep => d.core.handle_timeout(Instant::now()),
        }
    }
}

impl<T: Transport> Driver<T> {
    /// Responses are matched by request id and peer; the address is not used for them.
    fn addr_hint(&self) -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 0))
    }

    fn inbound(&mut self, msg: Inbound) {
        let now = Instant::now();
        match Message::decode(&msg.frame, self.core.config().max_frame_len) {
            Ok(Message::Request { id, body }) => {
                let key = (msg.from, id);
                self.replies.insert(key, msg.reply);
                self.core
                    .handle_message(now, msg.from, msg.addr, Message::Request { id, body });
                self.flush();
                // The core answers at once or not at all (rate limited): drop the slot.
                self.replies.remove(&key);
            }
            Ok(_) | Err(_) => {
                // Let the core count it (a response on the request path is unsolicited).
                self.core.handle_frame(now, msg.from, msg.addr, &msg.frame);
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Bootstrap(seeds, r) => {
                let q = self.core.bootstrap(now, &seeds);
                self.waiters.insert(q, Waiter::Bootstrap(r));
            }
            Command::FindNode(key, r) => {
                let q = self.core.find_node(now, key);
                self.waiters.insert(q, Waiter::FindNode(r));
            }
            Command::GetRecord(key, r) => {
                let q = self.core.get_record(now, key);
                self.waiters.insert(q, Waiter::GetRecord(r));
            }
            Command::PutRecord(record, r) => match self.core.put_record(now, *record) {
                Ok(q) => {
                    self.waiters.insert(q, Waiter::Stored(r));
                }
                Err(e) => {
                    let _ = r.send(Err(e));
                }
            },
            Command::GetProviders(key, r) => {
                let q = self.core.get_providers(now, key);
                self.waiters.insert(q, Waiter::GetProviders(r));
            }
            Command::AddProvider(record, r) => match self.core.add_provider(now, *record) {
                Ok(q) => {
                    self.waiters.insert(q, Waiter::Stored(r));
                }
                Err(e) => {
                    let _ = r.send(Err(e));
                }
            },
            Command::Snapshot(r) => {
                let _ = r.send(self.core.routing_snapshot());
            }
            Command::Stats(r) => {
                let _ = r.send((self.core.stats().clone(), self.core.routing_table_len()));
            }
            Command::Forget(peer, r) => {
                let _ = r.send(self.core.remove_contact(&peer));
            }
        }
    }

    fn flush(&mut self) {
        loop {
            match self.core.poll_output() {
                Output::Send { to, addr, msg } => self.send(to, addr, msg),
                Output::Event(Event::QueryFinished { id, result, stats }) => {
                    self.finished(id, result, stats);
                }
                Output::Timeout(at) => {
                    self.deadline = at;
                    return;
                }
            }
        }
    }

    fn send(&mut self, to: PeerId, addr: SocketAddr, msg: Message) {
        let frame = match msg.encode(self.core.config().max_frame_len) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(peer = %to.short(), error = %e, "could not encode a message");
                if let Message::Request { id, .. } = msg {
                    let _ = self.completions.send((to, id, Err(e)));
                }
                return;
            }
        };
        match msg {
            Message::Request { id, .. } => {
                let fut = self.transport.request(to, addr, frame);
                let done = self.completions.clone();
                tokio::spawn(async move {
                    let _ = done.send((to, id, fut.await));
                });
            }
            Message::Response { id, .. } => {
                if let Some(reply) = self.replies.remove(&(to, id)) {
                    let _ = reply.send(frame);
                }
            }
        }
    }

    fn finished(&mut self, id: QueryId, result: QueryResult, stats: QueryStats) {
        let Some(waiter) = self.waiters.remove(&id) else {
            return;
        };
        match (waiter, result) {
            (Waiter::Bootstrap(r), QueryResult::Bootstrap { routing_table_len }) => {
                let _ = r.send(Ok(routing_table_len));
            }
            (Waiter::FindNode(r), QueryResult::FindNode { closest }) => {
                let _ = r.send(Ok((closest, stats)));
            }
            (Waiter::GetRecord(r), QueryResult::GetRecord { records }) => {
                let _ = r.send(Ok(records));
            }
            (Waiter::Stored(r), QueryResult::PutRecord { stored })
            | (Waiter::Stored(r), QueryResult::AddProvider { stored }) => {
                let _ = r.send(Ok(stored));
            }
            (Waiter::GetProviders(r), QueryResult::GetProviders { providers }) => {
                let _ = r.send(Ok(providers));
            }
            _ => tracing::warn!(?id, "query result of an unexpected kind"),
        }
    }
}
