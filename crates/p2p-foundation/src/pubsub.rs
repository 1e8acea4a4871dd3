//! Gossip over the node's connections: the gossip driver runs on one long-lived
//! [`GOSSIP_PROTOCOL`](crate::GOSSIP_PROTOCOL) stream per connected peer, and a dispatcher
//! fans delivered messages out to the node's [`Subscription`]s.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use p2p_foundation_gossip::{
    AckRequest, Event, GossipHandle, Message, MessageId, PublishOptions, Topic,
};
use p2p_foundation_identity::PeerId;
use tokio::sync::{mpsc, oneshot, watch};

/// Messages queued per subscription before new ones are dropped for it.
pub(crate) const SUBSCRIPTION_QUEUE: usize = 1024;
/// Delivery outcomes kept for publications whose caller has not started waiting yet.
const EARLY_OUTCOMES: usize = 256;

/// The outcome of [`P2PNode::publish_confirmed`](crate::P2PNode::publish_confirmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message.
    pub id: MessageId,
    /// Subscribers whose signed acknowledgement reached this node.
    pub ackers: Vec<PeerId>,
    /// Whether as many acknowledged as were asked for before the deadline.
    pub complete: bool,
}

/// A message delivered on a subscribed topic.
#[derive(Debug, Clone)]
pub struct GossipMessage {
    /// Its id.
    pub id: MessageId,
    /// The signed message: topic, author, sequence number, data.
    pub message: Arc<Message>,
    /// The peer that delivered it to this node first.
    pub from: PeerId,
    /// Hops it travelled from its author (1: straight from the author).
    pub hops: u8,
}

impl GossipMessage {
    /// The application payload.
    pub fn data(&self) -> &[u8] {
        &self.message.data
    }

    /// Who wrote (and signed) it.
    pub fn author(&self) -> PeerId {
        self.message.author
    }

    /// Its topic.
    pub fn topic(&self) -> &Topic {
        &self.message.topic
    }
}

/// Messages on one topic, from [`P2PNode::subscribe`](crate::P2PNode::subscribe). Dropping
/// it ends the subscription (the node unsubscribes when no subscription to the topic is
/// left and the next message for it arrives).
#[derive(Debug)]
pub struct Subscription {
    topic: Topic,
    rx: mpsc::Receiver<GossipMessage>,
}

impl Subscription {
    /// The topic.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The next message; `None` once the node has shut down.
    pub async fn recv(&mut self) -> Option<GossipMessage> {
        self.rx.recv().await
    }
}

#[derive(Default)]
struct State {
    subs: HashMap<Topic, Vec<mpsc::Sender<GossipMessage>>>,
    peers: HashMap<Topic, HashSet<PeerId>>,
    dropped: u64,
    /// Callers waiting for the delivery outcome of their publication.
    waiting: HashMap<MessageId, oneshot::Sender<Delivery>>,
    /// Outcomes that came before their caller waited (bounded).
    early: HashMap<MessageId, Delivery>,
}

/// The node's side of gossip: the driver handle and the subscriptions.
#[derive(Clone)]
pub(crate) struct Pubsub {
    pub(crate) handle: GossipHandle,
    state: Arc<Mutex<State>>,
    changed: watch::Sender<u64>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pubsub {
    /// Wraps a running driver; the returned future dispatches its events until it stops.
    pub(crate) fn new(
        handle: GossipHandle,
        mut events: mpsc::Receiver<Event>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let state = Arc::new(Mutex::new(State::default()));
        let (changed, _) = watch::channel(0u64);
        let this = Self {
            handle,
            state,
            changed,
        };
        let me = this.clone();
        let dispatch = async move {
            while let Some(event) = events.recv().await {
                me.on_event(event).await;
            }
        };
        (this, dispatch)
    }

    async fn on_event(&self, event: Event) {
        match event {
            Event::Message {
                id,
                message,
                from,
                hops,
            } => {
                let topic = message.topic.clone();
                let delivered = GossipMessage {
                    id,
                    message,
                    from,
                    hops,
                };
                let orphaned = {
                    let mut st = lock(&self.state);
                    let mut dropped = 0;
                    let orphaned = match st.subs.get_mut(&topic) {
                        Some(senders) => {
                            senders.retain(|s| !s.is_closed());
                            for s in senders.iter() {
                                if s.try_send(delivered.clone()).is_err() {
                                    dropped += 1;
                                }
                            }
                            senders.is_empty()
                        }
                        None => false,
                    };
                    st.dropped += dropped;
                    if orphaned {
                        st.subs.remove(&topic);
                    }
                    orphaned
                };
                if orphaned {
                    let _ = self.handle.unsubscribe(topic).await;
                }
            }
            Event::Subscribed { peer, topic } => {
                lock(&self.state)
                    .peers
                    .entry(topic)
                    .or_default()
                    .insert(peer);
                self.changed.send_modify(|v| *v += 1);
            }
            Event::Unsubscribed { peer, topic } => {
                let mut st = lock(&self.state);
                if let Some(set) = st.peers.get_mut(&topic) {
                    set.remove(&peer);
                    if set.is_empty() {
                        st.peers.remove(&topic);
                    }
                }
                drop(st);
                self.changed.send_modify(|v| *v += 1);
            }
            Event::DeliveryConfirmed { id, ackers } => self.delivered(Delivery {
                id,
                ackers,
                complete: true,
            }),
            Event::DeliveryTimedOut { id, ackers, .. } => self.delivered(Delivery {
                id,
                ackers,
                complete: false,
            }),
            _ => {}
        }
    }

    fn delivered(&self, outcome: Delivery) {
        let mut st = lock(&self.state);
        match st.waiting.remove(&outcome.id) {
            Some(tx) => {
                let _ = tx.send(outcome);
            }
            None => {
                if st.early.len() >= EARLY_OUTCOMES {
                    let victim = st.early.keys().next().copied();
                    if let Some(v) = victim {
                        st.early.remove(&v);
                    }
                }
                st.early.insert(outcome.id, outcome);
            }
        }
    }

    /// Publishes asking `subscribers` acknowledgements within `deadline`, and waits for
    /// the gossip layer's verdict (confirmed, or timed out with the ackers so far).
    pub(crate) async fn publish_confirmed(
        &self,
        topic: Topic,
        data: Vec<u8>,
        subscribers: u16,
        deadline: std::time::Duration,
    ) -> Result<Delivery, p2p_foundation_gossip::GossipError> {
        let options = PublishOptions {
            ack: AckRequest::Count(subscribers),
            ack_deadline: Some(deadline),
        };
        let id = self.handle.publish_with(topic, data, options).await?;
        let rx = {
            let mut st = lock(&self.state);
            if let Some(done) = st.early.remove(&id) {
                return Ok(done);
            }
            let (tx, rx) = oneshot::channel();
            st.waiting.insert(id, tx);
            rx
        };
        // The driver reports a timeout at the deadline; the slack covers its heartbeat.
        let slack = deadline + std::time::Duration::from_secs(2);
        let outcome = tokio::time::timeout(slack, rx).await;
        lock(&self.state).waiting.remove(&id);
        match outcome {
            Ok(Ok(delivery)) => Ok(delivery),
            // Driver stopped, or it never reported: nothing confirmed.
            _ => Ok(Delivery {
                id,
                ackers: Vec::new(),
                complete: false,
            }),
        }
    }

    pub(crate) async fn subscribe(
        &self,
        topic: Topic,
    ) -> Result<Subscription, p2p_foundation_gossip::GossipError> {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_QUEUE);
        lock(&self.state)
            .subs
            .entry(topic.clone())
            .or_default()
            .push(tx);
        self.handle.subscribe(topic.clone()).await?;
        Ok(Subscription { topic, rx })
    }

    /// Connected peers that announced a subscription to `topic`.
    pub(crate) fn topic_peers(&self, topic: &Topic) -> Vec<PeerId> {
        lock(&self.state)
            .peers
            .get(topic)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Waits until at least `n` connected peers announced `topic`.
    pub(crate) async fn wait_topic_peers(&self, topic: &Topic, n: usize) {
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            if self.topic_peers(topic).len() >= n {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Messages dropped because a subscription did not take them in time.
    pub(crate) fn dropped(&self) -> u64 {
        lock(&self.state).dropped
    }
}
