//! LAN discovery: nodes on the same link find each other over mDNS (RFC 6762) and DNS-SD
//! (RFC 6763), with no bootstrap peer.
//!
//! Each node registers one service instance of [`LAN_SERVICE`] named by its peer id, with
//! its QUIC port in the SRV record and `v=1`, `id=<peer id>` in the TXT record, and
//! browses for the same service. A record is only a hint: a discovered peer is dialled
//! through the normal connect path, so the QUIC handshake has to prove the id the record
//! claims. Its addresses enter the address book only after that proof; a claim that fails
//! backs off (doubling from [`LanConfig::retry_after`]) and is never redialled in a loop.
//!
//! The mDNS responder is `mdns-sd`: one thread of its own on `mio`, no async runtime.
//! It runs on the interfaces a node can be reached on from the link: never on loopback,
//! and only on the listen address's interface when the node listens on a specific
//! address. A node listening on a loopback address (every in-process test network) runs
//! no mDNS at all.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mdns_sd::{
    DaemonEvent, IfKind, IfPredicate, Receiver, ServiceDaemon, ServiceEvent, ServiceInfo,
};
use p2p_foundation_identity::PeerId;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::net::Net;

/// The DNS-SD service type every node registers and browses.
pub const LAN_SERVICE: &str = "_p2pf._udp.local.";
/// TXT key of the record format version (`1`).
pub const TXT_VERSION: &str = "v";
/// TXT key of the peer id the instance claims (the instance name is the same id).
pub const TXT_PEER_ID: &str = "id";

/// The record format this node writes and reads.
const VERSION: &str = "1";
/// TXT entries accepted in one record.
const MAX_TXT_ENTRIES: usize = 8;
/// Bytes of keys and values accepted in one TXT record.
const MAX_TXT_BYTES: usize = 512;
/// Addresses considered in one record, and kept from it.
const MAX_RECORD_ADDRS: usize = 32;
const MAX_ADDRS: usize = 8;
/// The longest DNS label (the instance name is one).
const MAX_LABEL: usize = 63;
/// How long the larger of two peer ids waits before it dials a peer it just discovered:
/// the smaller one dials at once, so they do not both dial. Two nodes usually discover
/// each other within milliseconds (each hears the other's announcement or answer), and a
/// handshake on a link takes a few more; but a node started less than a second after
/// another may hear its answer only at its second query (RFC 6762 §6 rate-limits the
/// answer), so the larger id does not wait for long.
const TIE_BREAK: Duration = Duration::from_millis(100);
/// Longest wait for the daemon to confirm an unregister or its exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);
/// Daemon errors logged as warnings (the rest at debug level).
const MAX_WARNINGS: u32 = 3;

/// LAN discovery settings, from [`NodeBuilder::lan_config`](crate::NodeBuilder::lan_config)
/// (or just [`NodeBuilder::mdns`](crate::NodeBuilder::mdns) to turn it off).
///
/// ```
/// use std::time::Duration;
/// use p2p_foundation::LanConfig;
///
/// let mut lan = LanConfig::default();
/// lan.max_peers = 32;
/// lan.announce_interval = Duration::from_secs(30);
/// let builder = p2p_foundation::P2PNode::builder().lan_config(lan);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LanConfig {
    /// Advertise this node and dial peers found on the link (default true).
    pub enabled: bool,
    /// Re-announce this node, and retry discovered peers it is not connected to, this
    /// often (default 60 s). The first query and announcement go out at start.
    pub announce_interval: Duration,
    /// Peers remembered from mDNS (default 256); beyond it the longest-known peer that is
    /// neither connected nor being dialled is forgotten.
    pub max_peers: usize,
    /// Dials to discovered peers in flight at once (default 4).
    pub max_concurrent_dials: usize,
    /// Least time between the starts of two dials (default 50 ms, so at most 20 a second).
    pub dial_spacing: Duration,
    /// Wait after a failed dial before the peer is tried again, doubled after each failure
    /// (default 30 s) up to [`LanConfig::max_retry_after`].
    pub retry_after: Duration,
    /// Longest wait between retries of a failing peer (default 15 minutes).
    pub max_retry_after: Duration,
}

impl Default for LanConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            announce_interval: Duration::from_secs(60),
            max_peers: 256,
            max_concurrent_dials: 4,
            dial_spacing: Duration::from_millis(50),
            retry_after: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(15 * 60),
        }
    }
}

/// Counters of LAN discovery, from [`P2PNode::lan_stats`](crate::P2PNode::lan_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LanStats {
    /// Whether the mDNS responder runs (off when disabled, when the node listens on
    /// loopback, or when it could not start).
    pub running: bool,
    /// Distinct peers discovered on the link (each counted once while remembered).
    pub discovered: u64,
    /// Records ignored: not of the format (name, TXT entries or sizes, version, port, an
    /// instance name that is not the claimed id). Records without an address this node
    /// can dial are ignored too, but not counted.
    pub malformed: u64,
    /// Dials started to discovered peers.
    pub dials: u64,
    /// Dials that proved the claimed id.
    pub dials_succeeded: u64,
    /// Dials that failed (unreachable, or another id proven: then it backs off).
    pub dials_failed: u64,
    /// Peers forgotten to stay within [`LanConfig::max_peers`].
    pub evicted: u64,
    /// Peers remembered now.
    pub remembered: usize,
}

/// The address families the node's socket can dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Families {
    v4: bool,
    v6: bool,
}

impl Families {
    /// What the endpoint bound at `bound` reaches: `[::]` is dual-stack.
    fn of(bound: SocketAddr) -> Self {
        match bound {
            SocketAddr::V4(_) => Self {
                v4: true,
                v6: false,
            },
            SocketAddr::V6(a) if a.ip().is_unspecified() => Self { v4: true, v6: true },
            SocketAddr::V6(_) => Self {
                v4: false,
                v6: true,
            },
        }
    }
}

/// Why a record was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Malformed {
    /// Not `<instance>._p2pf._udp.local.`, or the instance is not a peer id.
    Name,
    /// Too many TXT entries or bytes.
    TxtSize,
    /// `v` missing or not `1`.
    Version,
    /// `id` missing or not the instance name.
    Id,
    /// Port 0.
    Port,
    /// No address this node can dial.
    NoAddress,
}

/// A record that passed validation: a claim to verify by dialling.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Claim {
    peer: PeerId,
    addrs: Vec<SocketAddr>,
}

/// The peer id an instance name of [`LAN_SERVICE`] names.
fn instance_peer(fullname: &str) -> Result<PeerId, Malformed> {
    let suffix_len = LAN_SERVICE.len() + 1;
    if fullname.len() <= suffix_len || fullname.len() > MAX_LABEL + suffix_len {
        return Err(Malformed::Name);
    }
    // Names come off the wire: the split may fall inside a character.
    let (instance, suffix) = fullname
        .split_at_checked(fullname.len() - suffix_len)
        .ok_or(Malformed::Name)?;
    let suffix = suffix.strip_prefix('.').ok_or(Malformed::Name)?;
    if !suffix.eq_ignore_ascii_case(LAN_SERVICE) {
        return Err(Malformed::Name);
    }
    instance
        .to_ascii_lowercase()
        .parse()
        .map_err(|_| Malformed::Name)
}

/// Validates a resolved record before any of it is used.
fn parse_record<'a>(
    fullname: &str,
    port: u16,
    txt: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    ips: impl IntoIterator<Item = IpAddr>,
    families: Families,
) -> Result<Claim, Malformed> {
    let peer = instance_peer(fullname)?;
    let (mut version, mut id) = (None, None);
    let (mut entries, mut bytes) = (0usize, 0usize);
    for (key, value) in txt {
        entries += 1;
        bytes += key.len() + value.map_or(0, <[u8]>::len);
        if entries > MAX_TXT_ENTRIES || bytes > MAX_TXT_BYTES {
            return Err(Malformed::TxtSize);
        }
        if key.eq_ignore_ascii_case(TXT_VERSION) {
            version = value;
        } else if key.eq_ignore_ascii_case(TXT_PEER_ID) {
            id = value;
        }
    }
    if version != Some(VERSION.as_bytes()) {
        return Err(Malformed::Version);
    }
    let claimed = id
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<PeerId>().ok())
        .ok_or(Malformed::Id)?;
    if claimed != peer {
        return Err(Malformed::Id);
    }
    if port == 0 {
        return Err(Malformed::Port);
    }
    let mut addrs: Vec<SocketAddr> = ips
        .into_iter()
        .take(MAX_RECORD_ADDRS)
        .map(|ip| ip.to_canonical())
        .filter(|ip| usable(*ip, families))
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    // IPv4 first, then by address: the order of a set is arbitrary.
    addrs.sort_by_key(|a| (a.is_ipv6(), *a));
    addrs.dedup();
    addrs.truncate(MAX_ADDRS);
    if addrs.is_empty() {
        return Err(Malformed::NoAddress);
    }
    Ok(Claim { peer, addrs })
}

/// Whether a discovered address can be dialled from this node's socket. IPv6 link-local
/// addresses are left out: the address book keeps no scope id.
fn usable(ip: IpAddr, families: Families) -> bool {
    if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
        return false;
    }
    match ip {
        IpAddr::V4(v4) => families.v4 && !v4.is_broadcast(),
        IpAddr::V6(v6) => families.v6 && !v6.is_unicast_link_local(),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A peer discovered on the link.
struct Known {
    addrs: Vec<SocketAddr>,
    /// Order of discovery, for eviction.
    seq: u64,
    failures: u32,
    next_try: Instant,
    dialing: bool,
    queued: bool,
}

#[derive(Default)]
struct Counters {
    discovered: AtomicU64,
    malformed: AtomicU64,
    dials: AtomicU64,
    dials_succeeded: AtomicU64,
    dials_failed: AtomicU64,
    evicted: AtomicU64,
}

/// State shared by the discovery task and the dials it starts.
pub(crate) struct Shared {
    local: PeerId,
    config: LanConfig,
    families: Families,
    peers: Mutex<HashMap<PeerId, Known>>,
    next_seq: AtomicU64,
    counters: Counters,
    stopped: AtomicBool,
}

impl Shared {
    /// The counters now (also read by [`crate::P2PNode::metrics`] through [`Net`]).
    pub(crate) fn stats(&self) -> LanStats {
        let c = &self.counters;
        LanStats {
            running: !self.stopped.load(Ordering::Relaxed),
            discovered: c.discovered.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            dials: c.dials.load(Ordering::Relaxed),
            dials_succeeded: c.dials_succeeded.load(Ordering::Relaxed),
            dials_failed: c.dials_failed.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            remembered: lock(&self.peers).len(),
        }
    }

    /// Remembers a valid claim; returns when its peer should be dialled, if it should.
    fn remember(&self, net: &Net, claim: Claim, now: Instant) -> Option<Instant> {
        let mut peers = lock(&self.peers);
        if !peers.contains_key(&claim.peer) && peers.len() >= self.config.max_peers {
            let victim = peers
                .iter()
                .filter(|(p, k)| !k.dialing && net.connected(p).is_none())
                .min_by_key(|(_, k)| k.seq)
                .map(|(p, _)| *p);
            match victim {
                Some(v) => {
                    peers.remove(&v);
                    self.counters.evicted.fetch_add(1, Ordering::Relaxed);
                }
                None => return None,
            }
        }
        let known = peers.entry(claim.peer).or_insert_with(|| {
            self.counters.discovered.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %claim.peer.short(), addrs = ?claim.addrs, "discovered on the link");
            Known {
                addrs: Vec::new(),
                seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
                failures: 0,
                next_try: if self.local > claim.peer {
                    now + TIE_BREAK
                } else {
                    now
                },
                dialing: false,
                queued: false,
            }
        });
        known.addrs = claim.addrs;
        self.due(net, &claim.peer, known)
    }

    /// When `peer` should be dialled (and marks it queued), if it should be.
    fn due(&self, net: &Net, peer: &PeerId, known: &mut Known) -> Option<Instant> {
        if known.dialing || known.queued || net.connected(peer).is_some() {
            return None;
        }
        known.queued = true;
        Some(known.next_try)
    }

    /// Every remembered peer that is due for a retry.
    fn retries(&self, net: &Net) -> Vec<(Instant, PeerId)> {
        let mut peers = lock(&self.peers);
        peers
            .iter_mut()
            .filter_map(|(p, k)| self.due(net, p, k).map(|t| (t, *p)))
            .collect()
    }

    /// Takes `peer` off the queue; its addresses if a dial should start now.
    fn start_dial(&self, net: &Net, peer: &PeerId, now: Instant) -> Result<Vec<SocketAddr>, bool> {
        let mut peers = lock(&self.peers);
        let Some(known) = peers.get_mut(peer) else {
            return Err(false);
        };
        if now < known.next_try {
            // Pushed back meanwhile (a failure): wait for its time.
            return Err(true);
        }
        known.queued = false;
        if known.dialing || net.connected(peer).is_some() {
            return Err(false);
        }
        known.dialing = true;
        Ok(known.addrs.clone())
    }

    fn dial_done(&self, peer: &PeerId, ok: bool) {
        let mut peers = lock(&self.peers);
        let Some(known) = peers.get_mut(peer) else {
            return;
        };
        known.dialing = false;
        if ok {
            known.failures = 0;
            known.next_try = Instant::now();
            self.counters
                .dials_succeeded
                .fetch_add(1, Ordering::Relaxed);
        } else {
            let backoff = self
                .config
                .retry_after
                .saturating_mul(1u32 << known.failures.min(16))
                .min(self.config.max_retry_after);
            known.failures = known.failures.saturating_add(1);
            known.next_try = Instant::now() + backoff;
            self.counters.dials_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn forget(&self, peer: &PeerId) {
        let mut peers = lock(&self.peers);
        if peers.get(peer).is_some_and(|k| !k.dialing) {
            peers.remove(peer);
        }
    }
}

/// The running mDNS responder and browser of a node.
pub(crate) struct Lan {
    daemon: ServiceDaemon,
    fullname: String,
    shared: Arc<Shared>,
}

impl Lan {
    /// Starts advertising and browsing on the link, or returns `None` (logged) when it is
    /// disabled, the node listens on loopback or the responder cannot start.
    pub(crate) fn start(net: &Arc<Net>, bound: SocketAddr, config: LanConfig) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        if bound.ip().is_loopback() {
            tracing::debug!(%bound, "no LAN discovery: the node listens on loopback");
            return None;
        }
        let daemon = match ServiceDaemon::new() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "LAN discovery (mDNS) could not start; the node runs without it");
                return None;
            }
        };
        let families = Families::of(bound);
        let started = (|| {
            let monitor = daemon.monitor().ok();
            // IPv6 link-local addresses are not dialled (the address book keeps no scope
            // id): not announcing them keeps a half-usable record (a first answer over
            // IPv6 with only an `fe80::` address) from arriving before the usable one.
            let link_local = IfPredicate::new(
                |i| matches!(i.ip(), IpAddr::V6(v6) if v6.is_unicast_link_local()),
            );
            daemon.disable_interface(vec![
                IfKind::LoopbackV4,
                IfKind::LoopbackV6,
                IfKind::Predicate(link_local),
            ])?;
            if !families.v4 {
                daemon.disable_interface(IfKind::IPv4)?;
            }
            if !families.v6 {
                daemon.disable_interface(IfKind::IPv6)?;
            }
            if !bound.ip().is_unspecified() {
                daemon.disable_interface(IfKind::All)?;
                daemon.enable_interface(IfKind::Addr(bound.ip()))?;
            }
            let info = service_info(net.local, bound)?;
            daemon.register(info.clone())?;
            let events = daemon.browse(LAN_SERVICE)?;
            Ok::<_, mdns_sd::Error>((info, events, monitor))
        })();
        let (info, events, monitor) = match started {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "LAN discovery (mDNS) could not start; the node runs without it");
                let _ = daemon.shutdown();
                return None;
            }
        };
        let shared = Arc::new(Shared {
            local: net.local,
            config,
            families,
            peers: Mutex::new(HashMap::new()),
            next_seq: AtomicU64::new(0),
            counters: Counters::default(),
            stopped: AtomicBool::new(false),
        });
        let _ = net.lan.set(Arc::clone(&shared));
        let span = tracing::debug_span!("p2pf.lan", node = %net.local.short());
        let task = Discovery {
            net: Arc::clone(net),
            shared: Arc::clone(&shared),
            daemon: daemon.clone(),
            info: info.clone(),
            permits: Arc::new(Semaphore::new(shared.config.max_concurrent_dials.max(1))),
        };
        net.spawn(task.run(events, monitor).instrument(span));
        tracing::debug!(service = LAN_SERVICE, %bound, "LAN discovery started");
        Some(Self {
            daemon,
            fullname: info.get_fullname().to_owned(),
            shared,
        })
    }

    pub(crate) fn stats(&self) -> LanStats {
        self.shared.stats()
    }

    /// Says goodbye on the link (peers drop the record at once) and stops the daemon's
    /// thread, each confirmed or given up after a second.
    pub(crate) async fn stop(&self) {
        if self.shared.stopped.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Ok(status) = self.daemon.unregister(&self.fullname) {
            let _ = tokio::time::timeout(STOP_TIMEOUT, status.recv_async()).await;
        }
        match self.daemon.shutdown() {
            Ok(status) => {
                let _ = tokio::time::timeout(STOP_TIMEOUT, status.recv_async()).await;
            }
            Err(e) => tracing::debug!(error = %e, "mDNS daemon already stopped"),
        }
        tracing::debug!("LAN discovery stopped");
    }
}

impl Drop for Lan {
    /// Without [`Lan::stop`], still says goodbye and stops the daemon thread (without
    /// waiting for either).
    fn drop(&mut self) {
        if !self.shared.stopped.swap(true, Ordering::Relaxed) {
            let _ = self.daemon.unregister(&self.fullname);
            let _ = self.daemon.shutdown();
        }
    }
}

/// This node's service instance: named by its peer id, the QUIC port in the SRV record,
/// the listen address (or, on `[::]`, the interfaces' addresses) in A/AAAA records.
fn service_info(local: PeerId, bound: SocketAddr) -> mdns_sd::Result<ServiceInfo> {
    let name = local.to_string();
    let host = format!("{name}.local.");
    let txt = [(TXT_VERSION, VERSION), (TXT_PEER_ID, name.as_str())];
    let mut info = if bound.ip().is_unspecified() {
        ServiceInfo::new(LAN_SERVICE, &name, &host, (), bound.port(), &txt[..])?.enable_addr_auto()
    } else {
        ServiceInfo::new(
            LAN_SERVICE,
            &name,
            &host,
            bound.ip(),
            bound.port(),
            &txt[..],
        )?
    };
    // The name is this node's own id: no other instance can hold it, so no probing
    // (which would delay the first announcement by 750 ms).
    info.set_requires_probe(false);
    Ok(info)
}

/// The discovery task: mDNS events in, dials out.
struct Discovery {
    net: Arc<Net>,
    shared: Arc<Shared>,
    daemon: ServiceDaemon,
    info: ServiceInfo,
    permits: Arc<Semaphore>,
}

/// Receives from `rx`, or waits forever when there is none.
async fn recv<T>(rx: &Option<Receiver<T>>) -> Result<T, mdns_sd::RecvError> {
    match rx {
        Some(rx) => rx.recv_async().await,
        None => std::future::pending().await,
    }
}

impl Discovery {
    async fn run(self, events: Receiver<ServiceEvent>, monitor: Option<Receiver<DaemonEvent>>) {
        let (mut events, mut monitor) = (Some(events), monitor);
        let mut queue: BinaryHeap<Reverse<(Instant, PeerId)>> = BinaryHeap::new();
        let mut last_dial: Option<Instant> = None;
        let mut warnings = 0u32;
        let interval = self
            .shared
            .config
            .announce_interval
            .max(Duration::from_secs(1));
        let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
        loop {
            let next = queue.peek().map(|Reverse((t, _))| *t);
            tokio::select! {
                ev = recv(&events) => match ev {
                    Ok(ev) => self.on_event(ev, &mut queue),
                    Err(_) => {
                        // The subscription ended (fell behind, or the daemon stopped):
                        // browse again at the next tick.
                        tracing::debug!("mDNS browse ended");
                        events = None;
                    }
                },
                ev = recv(&monitor) => match ev {
                    Ok(DaemonEvent::Error(e)) => {
                        warnings += 1;
                        if warnings <= MAX_WARNINGS {
                            tracing::warn!(error = %e, "mDNS");
                        } else {
                            tracing::debug!(error = %e, "mDNS");
                        }
                    }
                    Ok(_) => {}
                    Err(_) => monitor = None,
                },
                _ = tick.tick() => {
                    // Re-announce (also picks up changed interface addresses) and retry
                    // peers that are due.
                    if let Err(e) = self.daemon.register(self.info.clone()) {
                        tracing::debug!(error = %e, "mDNS re-announcement failed");
                    }
                    if events.is_none() {
                        events = self.daemon.browse(LAN_SERVICE).ok();
                    }
                    for (t, p) in self.shared.retries(&self.net) {
                        queue.push(Reverse((t, p)));
                    }
                }
                () = sleep_until(next) => {
                    let Some(Reverse((_, peer))) = queue.pop() else { continue };
                    let now = Instant::now();
                    let spaced = last_dial.map(|t| t + self.shared.config.dial_spacing);
                    if let Some(at) = spaced.filter(|at| now < *at) {
                        queue.push(Reverse((at, peer)));
                        continue;
                    }
                    let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                        queue.push(Reverse((now + self.shared.config.dial_spacing, peer)));
                        continue;
                    };
                    match self.shared.start_dial(&self.net, &peer, now) {
                        Ok(addrs) => {
                            last_dial = Some(now);
                            self.dial(peer, addrs, permit);
                        }
                        Err(true) => {
                            let at = lock(&self.shared.peers).get(&peer).map(|k| k.next_try);
                            if let Some(at) = at {
                                queue.push(Reverse((at, peer)));
                            }
                        }
                        Err(false) => {}
                    }
                }
            }
        }
    }

    fn on_event(&self, ev: ServiceEvent, queue: &mut BinaryHeap<Reverse<(Instant, PeerId)>>) {
        match ev {
            ServiceEvent::ServiceResolved(svc) => {
                let txt = svc.get_properties().iter().map(|p| (p.key(), p.val()));
                let ips = svc.get_addresses().iter().map(|ip| ip.to_ip_addr());
                let claim = parse_record(
                    svc.get_fullname(),
                    svc.get_port(),
                    txt,
                    ips,
                    self.shared.families,
                );
                match claim {
                    Ok(claim) if claim.peer == self.shared.local => {}
                    Ok(claim) => {
                        let peer = claim.peer;
                        if let Some(at) = self.shared.remember(&self.net, claim, Instant::now()) {
                            queue.push(Reverse((at, peer)));
                        }
                    }
                    Err(Malformed::NoAddress) => {
                        // Well formed, but nothing this socket can dial (yet: an update
                        // may add an address).
                        tracing::debug!(
                            name = svc.get_fullname(),
                            "no usable address in an mDNS record"
                        );
                    }
                    Err(why) => {
                        self.shared
                            .counters
                            .malformed
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(?why, name = svc.get_fullname(), "ignoring an mDNS record");
                    }
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                if let Ok(peer) = instance_peer(&fullname) {
                    tracing::debug!(peer = %peer.short(), "left the link");
                    self.shared.forget(&peer);
                }
            }
            _ => {}
        }
    }

    /// Dials `peer` through the normal connect path: the handshake proves the id or the
    /// dial fails. The addresses are remembered only once proven.
    fn dial(
        &self,
        peer: PeerId,
        addrs: Vec<SocketAddr>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        self.shared.counters.dials.fetch_add(1, Ordering::Relaxed);
        let (net, shared) = (Arc::clone(&self.net), Arc::clone(&self.shared));
        self.net.spawn(async move {
            let _permit = permit;
            let result = net.connect(peer, &addrs).await;
            match &result {
                Ok(_) => {
                    net.learn(peer, addrs.iter().copied());
                    tracing::debug!(peer = %peer.short(), "connected to a peer found on the link");
                }
                Err(e) => {
                    tracing::debug!(peer = %peer.short(), ?addrs, error = %e, "dial to a peer found on the link failed")
                }
            }
            // A failure backs off; the tick retries it when due.
            shared.dial_done(&peer, result.is_ok());
        });
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_foundation_identity::Keypair;
    use proptest::prelude::*;

    const BOTH: Families = Families { v4: true, v6: true };

    fn name(peer: &PeerId) -> String {
        format!("{peer}.{LAN_SERVICE}")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn parse<'a>(
        fullname: &str,
        port: u16,
        txt: &[(&'a str, Option<&'a [u8]>)],
        ips: &[&str],
        families: Families,
    ) -> Result<Claim, Malformed> {
        parse_record(
            fullname,
            port,
            txt.iter().copied(),
            ips.iter().map(|s| ip(s)),
            families,
        )
    }

    #[test]
    fn a_well_formed_record_is_a_claim() {
        let peer = Keypair::generate().peer_id();
        let id = peer.to_string();
        let txt = [("v", Some(&b"1"[..])), ("id", Some(id.as_bytes()))];
        let claim = parse(
            &name(&peer),
            4000,
            &txt,
            &["fd00::7", "192.168.1.9", "127.0.0.1", "fe80::1", "10.0.0.3"],
            BOTH,
        )
        .expect("valid");
        assert_eq!(claim.peer, peer);
        assert_eq!(
            claim.addrs,
            vec![
                "10.0.0.3:4000".parse().expect("addr"),
                "192.168.1.9:4000".parse().expect("addr"),
                "[fd00::7]:4000".parse().expect("addr"),
            ]
        );
        // An IPv4 socket dials only the IPv4 addresses.
        let v4 = parse(
            &name(&peer),
            4000,
            &txt,
            &["fd00::7", "10.0.0.3"],
            Families {
                v4: true,
                v6: false,
            },
        )
        .expect("valid");
        assert_eq!(v4.addrs, vec!["10.0.0.3:4000".parse().expect("addr")]);
        // Names compare without case, as DNS names do.
        let upper = name(&peer).to_ascii_uppercase();
        assert_eq!(parse(&upper, 4000, &txt, &["10.0.0.3"], BOTH), Ok(v4));
    }

    #[test]
    fn malformed_records_are_refused() {
        let peer = Keypair::generate().peer_id();
        let other = Keypair::generate().peer_id().to_string();
        let id = peer.to_string();
        let good = [("v", Some(&b"1"[..])), ("id", Some(id.as_bytes()))];
        let addr = ["10.0.0.3"];
        let n = name(&peer);
        assert_eq!(
            parse("x._p2pf._udp.local.", 1, &good, &addr, BOTH),
            Err(Malformed::Name)
        );
        assert_eq!(
            parse(&format!("{id}._http._tcp.local."), 1, &good, &addr, BOTH),
            Err(Malformed::Name)
        );
        assert_eq!(
            parse(LAN_SERVICE, 1, &good, &addr, BOTH),
            Err(Malformed::Name)
        );
        // The instance names one id, the TXT record another.
        let lying = [("v", Some(&b"1"[..])), ("id", Some(other.as_bytes()))];
        assert_eq!(parse(&n, 1, &lying, &addr, BOTH), Err(Malformed::Id));
        assert_eq!(
            parse(&n, 1, &[("v", Some(&b"1"[..]))], &addr, BOTH),
            Err(Malformed::Id)
        );
        let v2 = [("v", Some(&b"2"[..])), ("id", Some(id.as_bytes()))];
        assert_eq!(parse(&n, 1, &v2, &addr, BOTH), Err(Malformed::Version));
        assert_eq!(parse(&n, 0, &good, &addr, BOTH), Err(Malformed::Port));
        assert_eq!(
            parse(
                &n,
                1,
                &good,
                &["127.0.0.1", "::1", "fe80::1", "224.0.0.251"],
                BOTH
            ),
            Err(Malformed::NoAddress)
        );
        let big = vec![0u8; 600];
        let padded = [
            ("v", Some(&b"1"[..])),
            ("id", Some(id.as_bytes())),
            ("pad", Some(&big[..])),
        ];
        assert_eq!(parse(&n, 1, &padded, &addr, BOTH), Err(Malformed::TxtSize));
        let many: Vec<(&str, Option<&[u8]>)> = (0..20).map(|_| ("k", None)).collect();
        assert_eq!(parse(&n, 1, &many, &addr, BOTH), Err(Malformed::TxtSize));
    }

    #[test]
    fn at_most_a_few_addresses_are_kept() {
        let peer = Keypair::generate().peer_id();
        let id = peer.to_string();
        let txt = [("v", Some(&b"1"[..])), ("id", Some(id.as_bytes()))];
        let ips: Vec<String> = (1..=100).map(|i| format!("10.0.0.{i}")).collect();
        let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
        let claim = parse(&name(&peer), 9, &txt, &ips, BOTH).expect("valid");
        assert_eq!(claim.addrs.len(), MAX_ADDRS);
    }

    #[test]
    fn the_own_instance_name_round_trips() {
        let peer = Keypair::generate().peer_id();
        let info = service_info(peer, "192.168.1.2:4000".parse().expect("addr")).expect("info");
        assert_eq!(instance_peer(info.get_fullname()), Ok(peer));
        assert_eq!(info.get_port(), 4000);
        assert_eq!(
            info.get_property_val_str(TXT_PEER_ID),
            Some(peer.to_string().as_str())
        );
        assert_eq!(info.get_property_val_str(TXT_VERSION), Some(VERSION));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(
            fullname in "\\PC{0,120}",
            port in any::<u16>(),
            key in "\\PC{0,20}",
            value in proptest::collection::vec(any::<u8>(), 0..300),
            ips in proptest::collection::vec(any::<[u8; 16]>(), 0..40),
        ) {
            let txt = [(key.as_str(), Some(&value[..])), ("v", Some(&b"1"[..]))];
            let ips = ips.into_iter().map(IpAddr::from);
            let _ = parse_record(&fullname, port, txt, ips, BOTH);
        }
    }
}
