//! Lease records in the `bones-swarm-sessions` JetStream KV bucket.
//!
//! The record is plain JSON so any NATS client can read it. Liveness is
//! computed from `last_renewed + ttl_s`; the hub's lease watcher deletes
//! expired records.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::coord::ServerError;
use crate::sys::error::{ErrorKind, Kinded};

/// The KV bucket holding one lease per slot, keyed by slot name.
pub const SESSIONS_BUCKET: &str = "bones-swarm-sessions";
/// Default lease time to live: longer than an agent's long turn (a test
/// run, a long model answer), so a silent agent keeps its slot. A lease
/// that names its agent's process is judged by that process instead, so a
/// crashed agent's slot goes at once whatever the TTL (ADR 0011).
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Environment variable naming the agent's process (`--pid`).
pub const AGENT_PID_ENV: &str = "BONES_AGENT_PID";

/// One slot's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub slot: String,
    pub agent_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub host: String,
    /// UTC RFC 3339.
    pub started_at: String,
    /// UTC RFC 3339; the liveness signal when no process is named.
    pub last_renewed: String,
    pub ttl_s: u64,
    /// The agent's process on `host`: while it runs the lease is live
    /// whatever its age, and once it is gone the lease is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// That process's start time (seconds since the epoch), so a reused pid
    /// is never taken for the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
}

/// Errors talking to the sessions bucket.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("sessions bucket {SESSIONS_BUCKET}: {0}")]
    Bucket(#[source] ServerError),
    #[error("cannot write the lease of slot {slot}: {source}")]
    Write {
        slot: String,
        #[source]
        source: ServerError,
    },
    #[error(
        "slot {slot} is held by agent {agent} (renewed {age_s}s ago, lease {ttl_s}s); pick another slot, \
         or pass --agent {agent} if that agent is you"
    )]
    Held {
        slot: String,
        agent: String,
        age_s: u64,
        ttl_s: u64,
    },
    #[error(
        "slot {0} has no lease: it was closed, or reaped after its lease expired; \
         `bones swarm status` shows its rescue ref, `bones swarm join --slot {0}` starts again"
    )]
    Gone(String),
    #[error("the lease of slot {0} kept changing under this renewal; try again")]
    Contended(String),
}

impl Kinded for LeaseError {
    fn kind(&self) -> ErrorKind {
        match self {
            LeaseError::Bucket(err) | LeaseError::Write { source: err, .. } => err.kind(),
            LeaseError::Held { .. } => ErrorKind::Held,
            LeaseError::Gone(_) => ErrorKind::NotFound,
            LeaseError::Contended(_) => ErrorKind::Contended,
        }
    }
}

/// Bound on compare-and-swap retries for one lease operation.
const MAX_ATTEMPTS: usize = 8;

impl Lease {
    /// A fresh lease stamped now.
    pub fn new(slot: &str, agent_id: &str, task_id: Option<String>, ttl: Duration) -> Lease {
        let now = crate::sys::clock::utc_now_rfc3339();
        Lease {
            slot: slot.to_string(),
            agent_id: agent_id.to_string(),
            task_id,
            host: hostname(),
            started_at: now.clone(),
            last_renewed: now,
            ttl_s: ttl.as_secs().max(1),
            pid: None,
            pid_start: None,
        }
    }

    /// Names the agent's process (see [`Lease::is_live`]).
    pub fn with_process(mut self, pid: u32, start_time: u64) -> Lease {
        self.pid = Some(pid);
        self.pid_start = Some(start_time);
        self
    }

    /// The agent's process, when the lease names one running on this
    /// machine (only there can it be looked at).
    pub fn watched_process(&self) -> Option<(u32, u64)> {
        match (self.pid, self.pid_start) {
            (Some(pid), Some(start)) if self.host == hostname() => Some((pid, start)),
            _ => None,
        }
    }

    /// Whether the slot is alive: while the lease names a process on this
    /// machine, exactly while that process runs (an agent silent for hours
    /// keeps its slot; a crashed one loses it at the next look); otherwise
    /// [`Lease::is_live_at`], the TTL since the last renewal.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        match self.watched_process() {
            Some((pid, start)) => crate::sys::process::is_same_process(pid, start),
            None => self.is_live_at(now),
        }
    }

    /// Seconds since the last renewal (0 when the time cannot be read).
    pub fn age_s(&self, now: OffsetDateTime) -> u64 {
        OffsetDateTime::parse(&self.last_renewed, &Rfc3339)
            .map(|renewed| (now - renewed).whole_seconds().max(0) as u64)
            .unwrap_or(0)
    }

    /// True while `now` is before `last_renewed + ttl_s`. A record whose
    /// time cannot be read counts as live: refusing a stop is recoverable,
    /// deleting an agent's checkout is not. So does one whose expiry lies
    /// beyond the calendar (a `ttl_s` near `u64::MAX` written by another
    /// client): the sum is checked, never left to panic the watcher.
    pub fn is_live_at(&self, now: OffsetDateTime) -> bool {
        match self.expires_at() {
            Some(expiry) => now < expiry,
            None => true,
        }
    }

    /// When the TTL since the last renewal runs out: `None` when the time
    /// cannot be read or the sum overflows (such a lease never expires, see
    /// [`Lease::is_live_at`]).
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        let renewed = OffsetDateTime::parse(&self.last_renewed, &Rfc3339).ok()?;
        i64::try_from(self.ttl_s)
            .ok()
            .and_then(|secs| renewed.checked_add(time::Duration::seconds(secs)))
    }
}

/// A live lease, or a record that could not be read (also treated as live).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveLease {
    Valid(Lease),
    Unreadable { slot: String },
}

impl LiveLease {
    pub fn slot(&self) -> &str {
        match self {
            LiveLease::Valid(lease) => &lease.slot,
            LiveLease::Unreadable { slot } => slot,
        }
    }
}

/// Opens the sessions bucket, creating it on first use.
pub async fn bucket(js: &jetstream::Context) -> Result<kv::Store, LeaseError> {
    if let Ok(store) = js.get_key_value(SESSIONS_BUCKET).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: SESSIONS_BUCKET.to_string(),
        history: 1,
        ..Default::default()
    })
    .await
    .map_err(bucket_err)
}

/// This machine's host name, recorded in leases for operators.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_string())
}

fn encode(lease: &Lease) -> Result<bytes::Bytes, LeaseError> {
    serde_json::to_vec(lease)
        .map(bytes::Bytes::from)
        .map_err(|e| LeaseError::Write {
            slot: lease.slot.clone(),
            source: ServerError::internal(e),
        })
}

fn bucket_err(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> LeaseError {
    LeaseError::Bucket(ServerError::new(err))
}

/// A lease as stored, with the revision a compare-and-swap must name.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key: String,
    /// `None` when the record is not a readable lease, or names another
    /// slot than its key.
    pub lease: Option<Lease>,
    pub revision: u64,
}

/// Decodes a stored record; `None` when it is not a lease (any client
/// with the token can write anything into the bucket).
pub fn decode(bytes: &[u8]) -> Option<Lease> {
    serde_json::from_slice(bytes).ok()
}

/// Whether a bucket key can name a slot. Keys that cannot were not written
/// by bones (every verb validates the slot name first); a key such as
/// `x/../../elsewhere` must never become a path, so such records are left
/// out of [`list`] and [`live`] and never reaped.
pub fn is_slot_key(key: &str) -> bool {
    crate::sys::name::validate_slot(key).is_ok()
}

/// Reads one slot's record; `None` when there is none (or it was deleted).
pub async fn get(store: &kv::Store, slot: &str) -> Result<Option<Stored>, LeaseError> {
    Ok(match standing(store, slot).await? {
        Standing::Leased(stored) => Some(*stored),
        Standing::Ended | Standing::Unknown => None,
    })
}

/// What the sessions bucket says about a name now, for deciding whether a
/// task claimed under that name still has a holder.
#[derive(Debug, Clone)]
pub enum Standing {
    /// A record: a live lease, one expired but not yet reaped (the watcher
    /// will), or one that cannot be read (treated as live everywhere).
    Leased(Box<Stored>),
    /// The record was deleted: the slot was closed, or reaped by the hub.
    /// Nothing holds what is claimed under its name until it is joined
    /// again.
    Ended,
    /// No record was ever written under this name: not a slot as far as
    /// the bucket knows (an agent outside a slot claims under its id).
    Unknown,
}

/// Where `slot` stands: one read of its newest record, a deletion marker
/// included (the bucket keeps it: closing and reaping delete, never purge).
pub async fn standing(store: &kv::Store, slot: &str) -> Result<Standing, LeaseError> {
    let Some(entry) = store.entry(slot).await.map_err(bucket_err)? else {
        return Ok(Standing::Unknown);
    };
    Ok(match entry.operation {
        kv::Operation::Put => Standing::Leased(Box::new(Stored {
            // a record naming another slot than its key is not one bones wrote
            lease: decode(&entry.value).filter(|lease| lease.slot == entry.key),
            key: entry.key,
            revision: entry.revision,
        })),
        kv::Operation::Delete | kv::Operation::Purge => Standing::Ended,
    })
}

/// How [`acquire`] got the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// Nobody held the slot.
    Created,
    /// The same agent already held it: renewed.
    Rejoined,
    /// Another agent's lease had expired; this is its last record.
    TookOver(Lease),
}

/// Takes the lease of `lease.slot` for `lease.agent_id`: creates it, renews
/// it when that agent already holds it, takes over an expired one, and
/// refuses one that another agent holds live.
pub async fn acquire(store: &kv::Store, lease: &Lease) -> Result<(Acquired, u64), LeaseError> {
    for _ in 0..MAX_ATTEMPTS {
        let Some(current) = get(store, &lease.slot).await? else {
            match store.create(&lease.slot, encode(lease)?).await {
                Ok(revision) => return Ok((Acquired::Created, revision)),
                Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                Err(err) => return Err(write_err(&lease.slot, err)),
            }
        };
        let now = OffsetDateTime::now_utc();
        let (outcome, next) = match current.lease {
            Some(held) if held.agent_id == lease.agent_id => {
                let (pid, pid_start) = match lease.pid {
                    Some(_) => (lease.pid, lease.pid_start),
                    None => (held.pid, held.pid_start),
                };
                let next = Lease {
                    started_at: held.started_at.clone(),
                    task_id: lease.task_id.clone().or(held.task_id),
                    pid,
                    pid_start,
                    ..lease.clone()
                };
                (Acquired::Rejoined, next)
            }
            Some(held) if held.is_live(now) => {
                return Err(LeaseError::Held {
                    slot: lease.slot.clone(),
                    age_s: held.age_s(now),
                    ttl_s: held.ttl_s,
                    agent: held.agent_id,
                });
            }
            Some(held) => (Acquired::TookOver(held), lease.clone()),
            None => {
                return Err(LeaseError::Held {
                    slot: lease.slot.clone(),
                    agent: "(unreadable lease record)".to_string(),
                    age_s: 0,
                    ttl_s: 0,
                });
            }
        };
        match store
            .update(&lease.slot, encode(&next)?, current.revision)
            .await
        {
            Ok(revision) => return Ok((outcome, revision)),
            Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
            Err(err) => return Err(write_err(&lease.slot, err)),
        }
    }
    Err(LeaseError::Contended(lease.slot.clone()))
}

/// Renews a slot's lease: a compare-and-swap of `last_renewed`, retried on
/// a race. Fails with [`LeaseError::Gone`] when the slot has no lease.
pub async fn renew(store: &kv::Store, slot: &str) -> Result<Lease, LeaseError> {
    for _ in 0..MAX_ATTEMPTS {
        let Some(Stored {
            lease: Some(mut lease),
            revision,
            ..
        }) = get(store, slot).await?
        else {
            return Err(LeaseError::Gone(slot.to_string()));
        };
        lease.last_renewed = crate::sys::clock::utc_now_rfc3339();
        match store.update(slot, encode(&lease)?, revision).await {
            Ok(_) => return Ok(lease),
            Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
            Err(err) => return Err(write_err(slot, err)),
        }
    }
    Err(LeaseError::Contended(slot.to_string()))
}

/// Deletes a slot's record if it is still at `revision`; returns whether
/// it did. A renewal in between wins: the slot is no longer stale.
pub async fn delete_at(store: &kv::Store, slot: &str, revision: u64) -> Result<bool, LeaseError> {
    match store.delete_expect_revision(slot, Some(revision)).await {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(false),
        Err(err) => Err(write_err(slot, err)),
    }
}

/// Deletes a slot's record whatever its revision (closing a slot).
pub async fn release(store: &kv::Store, slot: &str) -> Result<(), LeaseError> {
    store.delete(slot).await.map_err(|err| write_err(slot, err))
}

/// Every record in the bucket whose key names a slot, sorted by key, and
/// the keys that do not (see [`is_slot_key`]).
pub async fn list_checked(store: &kv::Store) -> Result<(Vec<Stored>, Vec<String>), LeaseError> {
    let keys: Vec<String> = store
        .keys()
        .await
        .map_err(bucket_err)?
        .try_collect()
        .await
        .map_err(bucket_err)?;
    let (keys, foreign): (Vec<String>, Vec<String>) =
        keys.into_iter().partition(|k| is_slot_key(k));
    let mut all = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(stored) = get(store, &key).await? {
            all.push(stored);
        }
    }
    all.sort_by(|a, b| a.key.cmp(&b.key));
    Ok((all, foreign))
}

/// Every record in the bucket whose key names a slot, sorted by key.
pub async fn list(store: &kv::Store) -> Result<Vec<Stored>, LeaseError> {
    list_checked(store).await.map(|(all, _)| all)
}

fn write_err(slot: &str, err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> LeaseError {
    LeaseError::Write {
        slot: slot.to_string(),
        source: ServerError::new(err),
    }
}

/// Writes (creates or overwrites) a lease without any check: for tests and
/// tools that seed records.
pub async fn put(js: &jetstream::Context, lease: &Lease) -> Result<u64, LeaseError> {
    let store = bucket(js).await?;
    let value = encode(lease)?;
    store
        .put(&lease.slot, value)
        .await
        .map_err(|e| write_err(&lease.slot, e))
}

/// Every live lease, sorted by slot. A missing bucket means none.
pub async fn live(js: &jetstream::Context) -> Result<Vec<LiveLease>, LeaseError> {
    let Ok(store) = js.get_key_value(SESSIONS_BUCKET).await else {
        // either no bucket (nothing was ever leased) or the server is
        // unreachable; tell the two apart with a request that must succeed
        js.query_account().await.map_err(bucket_err)?;
        return Ok(Vec::new());
    };
    if store.stream.cached_info().state.messages == 0 {
        return Ok(Vec::new()); // an empty bucket: no need to list it
    }
    let now = OffsetDateTime::now_utc();
    let mut live = Vec::new();
    for stored in list(&store).await? {
        match stored.lease {
            Some(lease) if lease.is_live(now) => live.push(LiveLease::Valid(lease)),
            Some(_) => {}
            None => live.push(LiveLease::Unreadable { slot: stored.key }),
        }
    }
    live.sort_by(|a, b| a.slot().cmp(b.slot()));
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lease(renewed: &str, ttl_s: u64) -> Lease {
        Lease {
            slot: "a".into(),
            agent_id: "x".into(),
            task_id: None,
            host: "h".into(),
            started_at: renewed.into(),
            last_renewed: renewed.into(),
            ttl_s,
            pid: None,
            pid_start: None,
        }
    }

    #[test]
    fn liveness_follows_ttl() {
        let now = OffsetDateTime::parse("2026-01-01T00:10:00Z", &Rfc3339).unwrap();
        assert!(lease("2026-01-01T00:06:00Z", 300).is_live_at(now));
        assert!(!lease("2026-01-01T00:04:00Z", 300).is_live_at(now));
        assert!(lease("not a time", 300).is_live_at(now));
        assert!(lease("2026-01-01T00:04:00Z", u64::MAX).is_live_at(now));
        assert!(lease("9999-12-31T23:59:59Z", 300).is_live_at(now));
    }

    #[test]
    fn keys_that_are_not_slot_names_are_foreign() {
        assert!(is_slot_key("fix-parser"));
        for key in ["x/../../victim", "a.b/c", "A", "..", "x.lock"] {
            assert!(!is_slot_key(key), "{key}");
        }
    }

    proptest! {
        #[test]
        fn any_record_decodes_or_is_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn liveness_and_age_never_panic(
            renewed in prop_oneof![
                "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z",
                "(?s).{0,30}",
                Just("-9999-01-01T00:00:00Z".to_string()),
                Just("9999-12-31T23:59:59Z".to_string()),
            ],
            ttl_s in any::<u64>(),
        ) {
            let mut held = lease(&renewed, ttl_s);
            held.started_at = renewed;
            let now = OffsetDateTime::now_utc();
            let _ = held.is_live_at(now);
            let _ = held.age_s(now);
        }

        #[test]
        fn decoded_records_round_trip(slot in "[a-z][a-z0-9-]{0,20}", agent in "\\PC{1,40}", ttl_s in any::<u64>()) {
            let mut held = lease("2026-01-01T00:00:00Z", ttl_s);
            held.slot = slot;
            held.agent_id = agent;
            let bytes = serde_json::to_vec(&held).unwrap();
            prop_assert_eq!(decode(&bytes), Some(held));
        }
    }
}
