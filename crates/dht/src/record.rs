//! Signed records, provider records, the validation hook and the local store.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use p2p_foundation_identity::{
    IdentityError, Key, PeerId, Signed, SignedPayload, Verified, unix_millis,
};
use serde::{Deserialize, Serialize};

use crate::RejectReason;

/// A value stored in the DHT under `key`, signed by its publisher as a [`Signed<Record>`]
/// (domain `p2pf/dht/record`).
///
/// The key is inside the signed payload, so a record cannot be replayed under another key.
/// A key holds one record: the publisher replaces it with a higher sequence number; another
/// publisher can take the key over only once it has expired, or at once if the
/// [`Validator::is_owner`] says the key is its own. Applications that want
/// several publishers per name use provider records, or keys derived from the publisher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Where the record lives, usually [`Key::for_record`] of a name.
    pub key: Key,
    /// The value: opaque bytes.
    pub value: Vec<u8>,
}

impl Record {
    /// A record for `key` holding `value`.
    pub fn new(key: Key, value: impl Into<Vec<u8>>) -> Self {
        Self {
            key,
            value: value.into(),
        }
    }
}

impl SignedPayload for Record {
    const DOMAIN: &'static str = "p2pf/dht/record";
}

/// "The signer offers `key`, reachable at `addrs`", signed by the provider as a
/// [`Signed<ProviderRecord>`] (domain `p2pf/dht/provider`). A key holds provider records from
/// many providers, one per provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    /// What is provided.
    pub key: Key,
    /// Where the provider can be reached.
    pub addrs: Vec<SocketAddr>,
}

impl ProviderRecord {
    /// A provider record for `key`.
    pub fn new(key: Key, addrs: Vec<SocketAddr>) -> Self {
        Self { key, addrs }
    }
}

impl SignedPayload for ProviderRecord {
    const DOMAIN: &'static str = "p2pf/dht/provider";
}

/// The application's say on what is stored and returned: called after the signature, expiry,
/// key and size checks passed, for every record a node stores and every record a lookup
/// returns.
///
/// ```
/// use p2p_foundation_dht::{Record, Validator};
/// use p2p_foundation_identity::PeerId;
///
/// /// Only values of at most 100 bytes that are UTF-8.
/// struct Utf8;
/// impl Validator for Utf8 {
///     fn validate_record(&self, record: &Record, _signer: &PeerId) -> bool {
///         record.value.len() <= 100 && std::str::from_utf8(&record.value).is_ok()
///     }
/// }
/// ```
pub trait Validator: Send + 'static {
    /// Whether `record`, signed by `signer`, may be stored and returned.
    fn validate_record(&self, record: &Record, signer: &PeerId) -> bool {
        let _ = (record, signer);
        true
    }

    /// Whether `signer` owns `record.key`, so that its record replaces a live record another
    /// signer stored there first. Without an owner, a key belongs to whoever stored a record
    /// first until that record expires; keys derived from a peer's id (such as the node's
    /// peer records) name their owner, and a squatter must not keep the owner out.
    ///
    /// ```
    /// use p2p_foundation_dht::{Record, Validator};
    /// use p2p_foundation_identity::{Key, PeerId};
    ///
    /// /// Keys `SHA-256("home/" ‖ peer id)` belong to that peer.
    /// struct Homes;
    /// impl Validator for Homes {
    ///     fn is_owner(&self, record: &Record, signer: &PeerId) -> bool {
    ///         let mut name = b"home/".to_vec();
    ///         name.extend_from_slice(signer.as_bytes());
    ///         record.key == Key::for_record(&name)
    ///     }
    /// }
    /// ```
    fn is_owner(&self, record: &Record, signer: &PeerId) -> bool {
        let _ = (record, signer);
        false
    }

    /// Whether `record`, signed by `signer`, may be stored and returned.
    fn validate_provider(&self, record: &ProviderRecord, signer: &PeerId) -> bool {
        let _ = (record, signer);
        true
    }
}

/// The default [`Validator`]: every correctly signed, live, well-sized record is accepted.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl Validator for AcceptAll {}

fn verify<T: SignedPayload>(
    signed: Signed<T>,
    wall: SystemTime,
) -> Result<Verified<T>, RejectReason> {
    signed.verify(wall).map_err(|e| match e {
        IdentityError::Expired { .. } => RejectReason::Expired,
        IdentityError::ExpiryTooFar { .. } => RejectReason::ExpiryTooFar,
        _ => RejectReason::BadSignature,
    })
}

/// Checks a record found or offered under `key` (any key when `None`): size, signature,
/// expiry, key, validator. Returns the verified record.
pub fn check_record(
    record: Signed<Record>,
    key: Option<&Key>,
    wall: SystemTime,
    max_len: usize,
    validator: &dyn Validator,
) -> Result<Verified<Record>, RejectReason> {
    if record.as_bytes().len() > max_len {
        return Err(RejectReason::TooLarge);
    }
    let record = verify(record, wall)?;
    if key.is_some_and(|key| &record.payload().key != key) {
        return Err(RejectReason::WrongKey);
    }
    if !validator.validate_record(record.payload(), &record.signer()) {
        return Err(RejectReason::Invalid);
    }
    Ok(record)
}

/// Checks a provider record found or offered under `key` (any key when `None`). Returns
/// the verified record.
pub fn check_provider(
    record: Signed<ProviderRecord>,
    key: Option<&Key>,
    wall: SystemTime,
    max_len: usize,
    validator: &dyn Validator,
) -> Result<Verified<ProviderRecord>, RejectReason> {
    if record.as_bytes().len() > max_len {
        return Err(RejectReason::TooLarge);
    }
    let record = verify(record, wall)?;
    if key.is_some_and(|key| &record.payload().key != key) {
        return Err(RejectReason::WrongKey);
    }
    if !validator.validate_provider(record.payload(), &record.signer()) {
        return Err(RejectReason::Invalid);
    }
    Ok(record)
}

/// When an envelope signed to expire at `expires_at_ms` leaves the local store.
fn local_expiry(now: Instant, wall: SystemTime, expires_at_ms: u64, max_ttl: Duration) -> Instant {
    let left = Duration::from_millis(expires_at_ms.saturating_sub(unix_millis(wall)));
    now + left.min(max_ttl)
}

pub(crate) struct StoredRecord {
    pub(crate) record: Verified<Record>,
    pub(crate) expires: Instant,
    pub(crate) replicated_at: Instant,
}

pub(crate) struct StoredProvider {
    pub(crate) record: Verified<ProviderRecord>,
    pub(crate) expires: Instant,
}

/// Records and provider records held for the network. Every entry passed the checks above.
#[derive(Default)]
pub(crate) struct RecordStore {
    records: HashMap<Key, StoredRecord>,
    providers: HashMap<Key, Vec<StoredProvider>>,
}

pub(crate) struct StoreLimits {
    pub(crate) max_records: usize,
    pub(crate) max_provider_keys: usize,
    pub(crate) max_providers_per_key: usize,
    pub(crate) max_ttl: Duration,
}

impl RecordStore {
    /// Stores an already checked record, applying the replacement rules. `owner`: the
    /// record's signer owns its key ([`Validator::is_owner`]) and replaces another signer's
    /// live record.
    pub(crate) fn put_record(
        &mut self,
        now: Instant,
        wall: SystemTime,
        record: Verified<Record>,
        owner: bool,
        limits: &StoreLimits,
    ) -> Result<(), RejectReason> {
        let key = record.payload().key;
        let expires = local_expiry(now, wall, record.expires_at_ms(), limits.max_ttl);
        if let Some(old) = self.records.get_mut(&key) {
            if old.expires > now && old.record.signer() != record.signer() && !owner {
                return Err(RejectReason::Conflict);
            }
            let same_signer = old.record.signer() == record.signer();
            if old.expires > now
                && same_signer
                && (record.seq() < old.record.seq()
                    || (record.seq() == old.record.seq() && record != old.record))
            {
                return Err(RejectReason::Stale);
            }
            old.record = record;
            old.expires = expires;
            old.replicated_at = now;
            return Ok(());
        }
        if self.records.len() >= limits.max_records {
            return Err(RejectReason::StoreFull);
        }
        self.records.insert(
            key,
            StoredRecord {
                record,
                expires,
                replicated_at: now,
            },
        );
        Ok(())
    }

    pub(crate) fn get_record(&self, now: Instant, key: &Key) -> Option<&Verified<Record>> {
        self.records
            .get(key)
            .filter(|r| r.expires > now)
            .map(|r| &r.record)
    }

    /// Stores an already checked provider record.
    pub(crate) fn put_provider(
        &mut self,
        now: Instant,
        wall: SystemTime,
        record: Verified<ProviderRecord>,
        limits: &StoreLimits,
    ) -> Result<(), RejectReason> {
        let key = record.payload().key;
        let expires = local_expiry(now, wall, record.expires_at_ms(), limits.max_ttl);
        if !self.providers.contains_key(&key) && self.providers.len() >= limits.max_provider_keys {
            return Err(RejectReason::StoreFull);
        }
        let list = self.providers.entry(key).or_default();
        list.retain(|p| p.expires > now);
        if let Some(old) = list
            .iter_mut()
            .find(|p| p.record.signer() == record.signer())
        {
            if record.seq() < old.record.seq()
                || (record.seq() == old.record.seq() && record != old.record)
            {
                return Err(RejectReason::Stale);
            }
            old.record = record;
            old.expires = expires;
            return Ok(());
        }
        if list.len() >= limits.max_providers_per_key {
            return Err(RejectReason::StoreFull);
        }
        list.push(StoredProvider { record, expires });
        Ok(())
    }

    pub(crate) fn get_providers(
        &self,
        now: Instant,
        key: &Key,
        max: usize,
    ) -> Vec<Signed<ProviderRecord>> {
        self.providers.get(key).map_or_else(Vec::new, |list| {
            list.iter()
                .filter(|p| p.expires > now)
                .take(max)
                .map(|p| p.record.envelope().clone())
                .collect()
        })
    }

    /// Drops everything expired.
    pub(crate) fn sweep(&mut self, now: Instant) {
        self.records.retain(|_, r| r.expires > now);
        self.providers.retain(|_, list| {
            list.retain(|p| p.expires > now);
            !list.is_empty()
        });
    }

    /// Records not replicated for `interval`, marked as replicated now.
    pub(crate) fn due_for_replication(
        &mut self,
        now: Instant,
        interval: Duration,
    ) -> Vec<Verified<Record>> {
        let mut due = Vec::new();
        for r in self.records.values_mut() {
            if r.expires > now && r.replicated_at + interval <= now {
                r.replicated_at = now;
                due.push(r.record.clone());
            }
        }
        due.sort_by_key(|r| r.payload().key);
        due
    }

    pub(crate) fn record_count(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn provider_count(&self) -> usize {
        self.providers.values().map(Vec::len).sum()
    }
}
