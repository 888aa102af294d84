//! The feed on JetStream: one stream, `bones-feed`, one subject per entry,
//! `feed.entries.<id>`.
//!
//! "The same id twice is stored once" is enforced by the server, twice over
//! (ADR 0005):
//!
//! * every publish carries `Nats-Msg-Id: <id>`, so a repeat within the
//!   duplicate window (a retried publish whose ack was lost) is answered as
//!   a duplicate with the first copy's sequence;
//! * every publish carries `Nats-Expected-Last-Subject-Sequence: 0`, so the
//!   server stores it only while the entry's subject is empty. This holds
//!   for as long as the first copy is kept, however long after the window.
//!
//! The stream sequence is the feed's one total order: readers resume after
//! the last sequence they saw.

use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use time::OffsetDateTime;

use super::entry::{Entry, InputError, NewEntry};
use super::retention::{Retention, RetentionError};

/// The stream holding the feed.
pub const STREAM: &str = "bones-feed";
/// Subject prefix: an entry is published on `feed.entries.<id>`.
pub const SUBJECT_PREFIX: &str = "feed.entries";
/// How long the server recognises a repeated message id by itself. The
/// per-subject check covers any time after; the window only makes a quick
/// retry cheap (no lookup of the first copy).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Largest message the stream takes: the text limit plus room for the rest.
const MAX_MESSAGE: i32 = 64 * 1024;
/// Publishes in flight at once when sharing many entries.
pub const PIPELINE: usize = 256;

/// What a feed operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("{0}")]
    Invalid(#[from] InputError),
    #[error("feed retention: {0}")]
    Retention(#[from] RetentionError),
    #[error(transparent)]
    Coord(#[from] crate::coord::CoordError),
    #[error("knowledge feed ({STREAM}): {0}")]
    Stream(#[source] crate::coord::ServerError),
    #[error(
        "sharing {id} failed: {source}; sharing is idempotent, so run it again once the hub answers"
    )]
    Publish {
        id: String,
        #[source]
        source: crate::coord::ServerError,
    },
}

impl crate::sys::error::Kinded for FeedError {
    fn kind(&self) -> crate::sys::error::ErrorKind {
        use crate::sys::error::ErrorKind;
        match self {
            FeedError::Coord(err) => err.kind(),
            FeedError::Invalid(_) => ErrorKind::Usage,
            FeedError::Retention(_) => ErrorKind::Usage,
            FeedError::Stream(err) | FeedError::Publish { source: err, .. } => err.kind(),
        }
    }
}

pub(crate) fn stream_err(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> FeedError {
    FeedError::Stream(crate::coord::ServerError::new(err))
}

/// The subject an entry is published on.
pub fn subject(id: &str) -> String {
    format!("{SUBJECT_PREFIX}.{id}")
}

/// The stream's configuration for these retention rules.
pub fn stream_config(retention: &Retention) -> stream::Config {
    let max_age = retention.stream_max_age();
    stream::Config {
        name: STREAM.to_string(),
        description: Some("bones knowledge feed (schema: docs/feed.md)".to_string()),
        subjects: vec![format!("{SUBJECT_PREFIX}.>")],
        storage: stream::StorageType::File,
        max_age,
        max_messages: retention.stream_max_msgs(),
        max_bytes: -1,
        max_message_size: MAX_MESSAGE,
        discard: stream::DiscardPolicy::Old,
        // the server refuses a window longer than the age limit
        duplicate_window: if max_age.is_zero() {
            DUPLICATE_WINDOW
        } else {
            DUPLICATE_WINDOW.min(max_age)
        },
        allow_direct: true,
        ..Default::default()
    }
}

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After this sequence (`After(0)`: from the first entry kept).
    After(u64),
    /// From the first entry stored at or after this time.
    Since(OffsetDateTime),
}

/// The outcome of sharing one entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Published {
    pub id: String,
    /// The entry's sequence: the new one, or the first copy's.
    pub seq: u64,
    /// True when the id was already in the feed and nothing was stored.
    pub duplicate: bool,
}

/// An entry read back, with its place in the feed. Serialised as the
/// entry's fields plus `seq`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Stored {
    pub seq: u64,
    #[serde(flatten)]
    pub entry: Entry,
}

/// What a read went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Messages on the stream that are not entries (skipped).
    pub unreadable: usize,
}

/// A handle on the feed.
#[derive(Clone)]
pub struct Feed {
    js: jetstream::Context,
    stream: stream::Stream,
}

impl Feed {
    /// Opens the feed, creating the stream with the retention rules from
    /// this process's environment when it does not exist yet (an existing
    /// stream is left as it is).
    pub async fn open(js: &jetstream::Context) -> Result<Feed, FeedError> {
        let stream = match js.get_stream(STREAM).await {
            Ok(stream) => stream,
            Err(_) => js
                .get_or_create_stream(stream_config(&Retention::from_env()?))
                .await
                .map_err(stream_err)?,
        };
        Ok(Feed {
            js: js.clone(),
            stream,
        })
    }

    /// Gives the feed's stream exactly these retention rules: creates it,
    /// or updates it when its rules differ. The hub calls this at every
    /// start; returns whether anything changed.
    pub async fn ensure(js: &jetstream::Context, retention: &Retention) -> Result<bool, FeedError> {
        let wanted = stream_config(retention);
        match js.get_stream(STREAM).await {
            Ok(stream) if same_rules(&stream.cached_info().config, &wanted) => return Ok(false),
            Ok(_) => js.update_stream(&wanted).await.map(drop),
            Err(_) => js.get_or_create_stream(wanted).await.map(drop),
        }
        .map_err(stream_err)?;
        Ok(true)
    }

    /// When the stream was created: a cursor saved against another stream
    /// (deleted and made again) must not be trusted.
    pub fn created(&self) -> OffsetDateTime {
        self.stream.cached_info().created
    }

    /// Re-reads the stream's state from the server.
    pub async fn refresh(&mut self) -> Result<&stream::Info, FeedError> {
        self.stream.info().await.map_err(stream_err)
    }

    /// The client the feed talks through.
    pub fn client(&self) -> async_nats::Client {
        self.js.client()
    }

    /// The underlying stream, for readers that build their own consumers.
    pub fn stream(&self) -> &stream::Stream {
        &self.stream
    }

    /// Shares one entry as `origin`. Publishing an id already in the feed
    /// stores nothing and returns the first copy's sequence.
    pub async fn share(&self, new: NewEntry, origin: &str) -> Result<Published, FeedError> {
        new.validate()?;
        let entry = new.into_entry(origin, &crate::sys::clock::utc_now_rfc3339());
        let sent = self.send(&entry).await?;
        self.settle(entry.id, sent).await
    }

    /// Shares many entries in order, keeping up to [`PIPELINE`] publishes
    /// in flight. Every entry is checked before the first is published, so
    /// bad input stores nothing; `done` is told about each entry as its
    /// outcome is known, in input order. The entries share one
    /// `created_at`: they are shared at one moment.
    pub async fn share_all(
        &self,
        entries: Vec<NewEntry>,
        origin: &str,
        mut done: impl FnMut(&Published),
    ) -> Result<Vec<Published>, FeedError> {
        for new in &entries {
            new.validate()?;
        }
        let now = crate::sys::clock::utc_now_rfc3339();
        let mut results = Vec::with_capacity(entries.len());
        let mut in_flight = std::collections::VecDeque::with_capacity(PIPELINE);
        for new in entries {
            let entry = new.into_entry(origin, &now);
            if in_flight.len() >= PIPELINE {
                let (id, sent) = in_flight.pop_front().expect("pipeline is not empty");
                let published = self.settle(id, sent).await?;
                done(&published);
                results.push(published);
            }
            let sent = self.send(&entry).await?;
            in_flight.push_back((entry.id, sent));
        }
        while let Some((id, sent)) = in_flight.pop_front() {
            let published = self.settle(id, sent).await?;
            done(&published);
            results.push(published);
        }
        Ok(results)
    }

    async fn send(&self, entry: &Entry) -> Result<PublishAckFuture, FeedError> {
        let body = serde_json::to_vec(entry)
            .map_err(|e| FeedError::Stream(crate::coord::ServerError::internal(e)))?;
        let message = PublishMessage::build()
            .payload(body.into())
            .message_id(&entry.id)
            .expected_last_subject_sequence(0);
        self.js
            .send_publish(subject(&entry.id), message)
            .await
            .map_err(|e| FeedError::Publish {
                id: entry.id.clone(),
                source: crate::coord::ServerError::new(e),
            })
    }

    /// Waits for a publish's ack. A refused expectation means the subject
    /// already holds the entry: a duplicate, answered with its sequence.
    async fn settle(&self, id: String, sent: PublishAckFuture) -> Result<Published, FeedError> {
        match sent.await {
            Ok(ack) => Ok(Published {
                id,
                seq: ack.sequence,
                duplicate: ack.duplicate,
            }),
            Err(err) if err.kind() == PublishErrorKind::WrongLastSequence => {
                let first = self
                    .stream
                    .get_last_raw_message_by_subject(&subject(&id))
                    .await
                    .map_err(|e| FeedError::Publish {
                        id: id.clone(),
                        source: crate::coord::ServerError::new(e),
                    })?;
                Ok(Published {
                    id,
                    seq: first.sequence,
                    duplicate: true,
                })
            }
            Err(err) => Err(FeedError::Publish {
                id,
                source: crate::coord::ServerError::new(err),
            }),
        }
    }

    /// Reads every entry from `start` up to the last one stored when the
    /// read began, oldest first, handing each to `each`. Messages that are
    /// not entries are skipped and counted.
    pub async fn read(
        &self,
        start: Start,
        mut each: impl FnMut(Stored),
    ) -> Result<ReadSummary, FeedError> {
        let mut summary = ReadSummary::default();
        let consumer = self
            .stream
            .create_consumer(consumer::push::OrderedConfig {
                deliver_subject: self.client().new_inbox(),
                // no filter: the stream holds only entries, and an unfiltered
                // consumer takes the server's fast path
                deliver_policy: deliver_policy(start),
                replay_policy: consumer::ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(stream_err)?;
        if consumer.cached_info().num_pending == 0 {
            return Ok(summary);
        }
        let mut messages = consumer.messages().await.map_err(stream_err)?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(stream_err)?;
            let info = message.info().map_err(stream_err)?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            match decode(seq, &message.payload) {
                Some(stored) => each(stored),
                None => summary.unreadable += 1,
            }
            if pending == 0 {
                break;
            }
        }
        Ok(summary)
    }
}

/// The consumer start for a [`Start`].
pub(crate) fn deliver_policy(start: Start) -> consumer::DeliverPolicy {
    match start {
        Start::After(0) => consumer::DeliverPolicy::All,
        Start::After(seq) => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: seq + 1,
        },
        Start::Since(at) => consumer::DeliverPolicy::ByStartTime { start_time: at },
    }
}

/// An entry from a message body; `None` when it is not one.
pub(crate) fn decode(seq: u64, payload: &[u8]) -> Option<Stored> {
    serde_json::from_slice::<Entry>(payload)
        .ok()
        .map(|entry| Stored { seq, entry })
}

/// Whether a stream's configuration already has the rules `wanted` sets.
fn same_rules(have: &stream::Config, wanted: &stream::Config) -> bool {
    have.subjects == wanted.subjects
        && have.max_age == wanted.max_age
        && have.max_messages == wanted.max_messages
        && have.max_message_size == wanted.max_message_size
        && have.duplicate_window == wanted.duplicate_window
        && have.discard == wanted.discard
        && have.allow_direct == wanted.allow_direct
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duplicate_window_never_outlasts_the_age_limit() {
        let short = Retention::parse(Some("1m"), None).unwrap();
        assert_eq!(
            stream_config(&short).duplicate_window,
            Duration::from_secs(60)
        );
        let forever = Retention::parse(Some("0"), Some("0")).unwrap();
        let config = stream_config(&forever);
        assert_eq!(config.duplicate_window, DUPLICATE_WINDOW);
        assert_eq!(config.max_messages, -1);
        assert!(same_rules(&config, &stream_config(&forever)));
        assert!(!same_rules(&config, &stream_config(&short)));
    }

    #[test]
    fn starts_map_to_consumer_policies() {
        assert_eq!(
            deliver_policy(Start::After(0)),
            consumer::DeliverPolicy::All
        );
        assert_eq!(
            deliver_policy(Start::After(41)),
            consumer::DeliverPolicy::ByStartSequence { start_sequence: 42 }
        );
    }
}
