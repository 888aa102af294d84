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

/// The KV bucket holding one lease per slot, keyed by slot name.
pub const SESSIONS_BUCKET: &str = "bones-swarm-sessions";
/// Default lease time to live.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

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
    /// UTC RFC 3339; the liveness signal.
    pub last_renewed: String,
    pub ttl_s: u64,
}

/// Errors talking to the sessions bucket.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("sessions bucket {SESSIONS_BUCKET}: {0}")]
    Bucket(String),
    #[error("cannot write the lease of slot {slot}: {message}")]
    Write { slot: String, message: String },
}

impl Lease {
    /// True while `now` is before `last_renewed + ttl_s`. A record whose
    /// time cannot be read counts as live: refusing a stop is recoverable,
    /// deleting an agent's checkout is not.
    pub fn is_live_at(&self, now: OffsetDateTime) -> bool {
        match OffsetDateTime::parse(&self.last_renewed, &Rfc3339) {
            Ok(renewed) => now < renewed + Duration::from_secs(self.ttl_s),
            Err(_) => true,
        }
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
    .map_err(|e| LeaseError::Bucket(e.to_string()))
}

/// Writes (creates or renews) a lease.
pub async fn put(js: &jetstream::Context, lease: &Lease) -> Result<u64, LeaseError> {
    let store = bucket(js).await?;
    let value = serde_json::to_vec(lease).map_err(|e| LeaseError::Write {
        slot: lease.slot.clone(),
        message: e.to_string(),
    })?;
    store
        .put(&lease.slot, value.into())
        .await
        .map_err(|e| LeaseError::Write {
            slot: lease.slot.clone(),
            message: e.to_string(),
        })
}

/// Every live lease, sorted by slot. A missing bucket means none.
pub async fn live(js: &jetstream::Context) -> Result<Vec<LiveLease>, LeaseError> {
    let stream_name = format!("KV_{SESSIONS_BUCKET}");
    if js.get_stream(&stream_name).await.is_err() {
        // either no bucket (nothing was ever leased) or the server is
        // unreachable; tell the two apart with a request that must succeed
        js.query_account()
            .await
            .map_err(|e| LeaseError::Bucket(e.to_string()))?;
        return Ok(Vec::new());
    }
    let store = bucket(js).await?;
    let keys: Vec<String> = store
        .keys()
        .await
        .map_err(|e| LeaseError::Bucket(e.to_string()))?
        .try_collect()
        .await
        .map_err(|e| LeaseError::Bucket(e.to_string()))?;
    let now = OffsetDateTime::now_utc();
    let mut live = Vec::new();
    for key in keys {
        let Some(value) = store
            .get(&key)
            .await
            .map_err(|e| LeaseError::Bucket(e.to_string()))?
        else {
            continue;
        };
        match serde_json::from_slice::<Lease>(&value) {
            Ok(lease) if lease.is_live_at(now) => live.push(LiveLease::Valid(lease)),
            Ok(_) => {}
            Err(_) => live.push(LiveLease::Unreadable { slot: key }),
        }
    }
    live.sort_by(|a, b| a.slot().cmp(b.slot()));
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(renewed: &str, ttl_s: u64) -> Lease {
        Lease {
            slot: "a".into(),
            agent_id: "x".into(),
            task_id: None,
            host: "h".into(),
            started_at: renewed.into(),
            last_renewed: renewed.into(),
            ttl_s,
        }
    }

    #[test]
    fn liveness_follows_ttl() {
        let now = OffsetDateTime::parse("2026-01-01T00:10:00Z", &Rfc3339).unwrap();
        assert!(lease("2026-01-01T00:06:00Z", 300).is_live_at(now));
        assert!(!lease("2026-01-01T00:04:00Z", 300).is_live_at(now));
        assert!(lease("not a time", 300).is_live_at(now));
    }
}
