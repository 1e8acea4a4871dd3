use std::time::Duration;

/// Tuning of a DHT node. [`Config::default`] gives the values the documentation describes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Bucket size and replication factor (Kademlia's `k`). Default 20.
    pub k: usize,
    /// Requests in flight per lookup path (Kademlia's `α`). Default 3.
    pub alpha: usize,
    /// S/Kademlia disjoint lookup paths (`d`). Default 1 (plain Kademlia); raise it where
    /// colluding nodes are a concern: each path is queried by different peers only.
    pub disjoint_paths: usize,
    /// How long a request may go unanswered before it counts as failed. Default 10 s.
    pub request_timeout: Duration,
    /// Contacts kept per bucket to replace entries that fail. Default 5.
    pub replacement_cache: usize,
    /// A full bucket's oldest entry seen more recently than this is kept without pinging it
    /// (the newcomer goes to the replacement cache). Default 60 s.
    pub liveness_window: Duration,
    /// Consecutive failed requests after which an entry is removed even with no replacement
    /// waiting. (With a replacement waiting, one failure is enough.) Default 3.
    pub max_failures: u8,
    /// A bucket with no lookup for this long is refreshed with a lookup of a random key in it.
    /// Default 15 min.
    pub refresh_interval: Duration,
    /// Whether [`Dht::bootstrap`](crate::Dht::bootstrap) refreshes every bucket that is not
    /// full after the self-lookup (about log2(n / k) extra lookups). Without it, buckets
    /// fill from traffic and the periodic refresh. Default true.
    pub refresh_on_bootstrap: bool,
    /// How often a node republishes the records and provider records it published. Default 1 h.
    pub republish_interval: Duration,
    /// How often a node re-replicates the records it holds to the current k closest peers.
    /// Default 1 h.
    pub replicate_interval: Duration,
    /// Longest a record is kept, whatever its envelope's expiry says. Default 48 h.
    pub max_record_ttl: Duration,
    /// Largest encoded record or provider record envelope accepted. Default 8 KiB.
    pub max_record_len: usize,
    /// Most records stored for others. Default 4096.
    pub max_records: usize,
    /// Most keys with provider records stored. Default 4096.
    pub max_provider_keys: usize,
    /// Most provider records kept (and returned) per key. Default 32.
    pub max_providers_per_key: usize,
    /// Largest frame sent or accepted, checked before anything is allocated. Default 64 KiB.
    pub max_frame_len: usize,
    /// Per-peer limit on inbound requests.
    pub rate_limit: RateLimit,
    /// Routing-table diversity limits per IP subnet; `None` disables them.
    pub diversity: Option<DiversityLimits>,
    /// A record lookup ends after this many valid records were received. Default 1.
    pub get_quorum: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            k: 20,
            alpha: 3,
            disjoint_paths: 1,
            request_timeout: Duration::from_secs(10),
            replacement_cache: 5,
            liveness_window: Duration::from_secs(60),
            max_failures: 3,
            refresh_interval: Duration::from_secs(15 * 60),
            refresh_on_bootstrap: true,
            republish_interval: Duration::from_secs(3600),
            replicate_interval: Duration::from_secs(3600),
            max_record_ttl: Duration::from_secs(48 * 3600),
            max_record_len: 8 * 1024,
            max_records: 4096,
            max_provider_keys: 4096,
            max_providers_per_key: 32,
            max_frame_len: crate::message::DEFAULT_MAX_FRAME_LEN,
            rate_limit: RateLimit::default(),
            diversity: Some(DiversityLimits::default()),
            get_quorum: 1,
        }
    }
}

impl Config {
    /// Sets `k`.
    pub fn with_k(mut self, k: usize) -> Self {
        self.k = k.max(1);
        self
    }

    /// Sets `α`.
    pub fn with_alpha(mut self, alpha: usize) -> Self {
        self.alpha = alpha.max(1);
        self
    }

    /// Sets the number of S/Kademlia disjoint paths `d`.
    pub fn with_disjoint_paths(mut self, d: usize) -> Self {
        self.disjoint_paths = d.clamp(1, 16);
        self
    }

    /// Sets the per-request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets whether bootstrap refreshes every bucket that is not full.
    pub fn with_refresh_on_bootstrap(mut self, refresh: bool) -> Self {
        self.refresh_on_bootstrap = refresh;
        self
    }

    /// Sets the per-peer inbound request limit.
    pub fn with_rate_limit(mut self, rate_limit: RateLimit) -> Self {
        self.rate_limit = rate_limit;
        self
    }

    /// Sets (or with `None` disables) the routing-table diversity limits.
    pub fn with_diversity(mut self, diversity: Option<DiversityLimits>) -> Self {
        self.diversity = diversity;
        self
    }
}

/// A token bucket per remote peer: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second per peer. Default 50.
    pub per_second: f64,
    /// Requests a peer may send at once. Default 100.
    pub burst: f64,
    /// Most peers tracked at once; beyond it idle peers are forgotten first. Default 8192.
    pub max_tracked_peers: usize,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_second: 50.0,
            burst: 100.0,
            max_tracked_peers: 8192,
        }
    }
}

/// Most routing-table entries sharing one IP subnet, per bucket and per table, against Sybil
/// and eclipse attacks from a few networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiversityLimits {
    /// Entries per IPv4 /24 in one bucket. Default 2.
    pub ipv4_24_per_bucket: usize,
    /// Entries per IPv4 /24 in the whole table. Default 10.
    pub ipv4_24_per_table: usize,
    /// Entries per IPv6 /64 in one bucket. Default 2.
    pub ipv6_64_per_bucket: usize,
    /// Entries per IPv6 /64 in the whole table. Default 10.
    pub ipv6_64_per_table: usize,
    /// Entries per IPv6 /48 in one bucket. Default 5.
    pub ipv6_48_per_bucket: usize,
    /// Entries per IPv6 /48 in the whole table. Default 20.
    pub ipv6_48_per_table: usize,
    /// Loopback addresses are exempt (a remote peer can never appear from one). Default true.
    pub exempt_loopback: bool,
}

impl Default for DiversityLimits {
    fn default() -> Self {
        Self {
            ipv4_24_per_bucket: 2,
            ipv4_24_per_table: 10,
            ipv6_64_per_bucket: 2,
            ipv6_64_per_table: 10,
            ipv6_48_per_bucket: 5,
            ipv6_48_per_table: 20,
            exempt_loopback: true,
        }
    }
}
