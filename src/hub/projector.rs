//! The task-event projector: turns every revision of a task record into one
//! event on the `tasks-events` stream and one `rpc` entry in hub.log.
//!
//! It reads the `bones-tasks` bucket's own stream through a durable
//! consumer, so a revision written while the projector was busy, or just
//! before the hub was killed, is still delivered after a restart, and one
//! already acknowledged is never delivered again. Events carry the message
//! id `<task>:<revision>`: if the hub dies after publishing but before
//! acknowledging, the redelivered revision is recognised as a duplicate by
//! the server and the event is not repeated. Log entries carry the revision
//! too, and a starting projector reads back the newest ones, so a revision
//! redelivered after a kill is logged exactly when its entry is missing:
//! whether the hub died before or after writing it.

use std::collections::{HashSet, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use serde::Serialize;

use super::log::{EventKind, HubLog, LogEntry, LogLevel};
use crate::tasks::board::{Board, TASKS_BUCKET, key_of};
use crate::tasks::record::{self, Task};

/// The stream task events are published on, one subject per task.
pub const EVENTS_STREAM: &str = "tasks-events";
/// Subject prefix of task events: `tasks.events.<id>`.
pub const EVENTS_PREFIX: &str = "tasks.events";
/// Where the server delivers revisions to the projector.
const DELIVER_SUBJECT: &str = "_bones.hub.projector";
/// The hub's durable consumer on the bucket's stream.
pub const DURABLE: &str = "bones-hub-projector";
/// Acknowledge at least every this many revisions during a burst.
const ACK_EVERY: usize = 64;
/// Acknowledge mid-burst when the next revision takes this long: deliveries
/// have stopped or slowed, so there is no burst to batch. A backup pauses
/// this consumer and waits until nothing is unacknowledged; paused
/// mid-burst, revisions held back for a batch would never be acknowledged.
const ACK_WHEN_IDLE: Duration = Duration::from_millis(20);
/// How long the server remembers message ids for de-duplication.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How much of the newest log files a starting projector reads back. The
/// entries it looks for are those of revisions not yet acknowledged when
/// the hub stopped: at most a few batches, written just before.
const READ_BACK: u64 = 1 << 20;

/// An event on `tasks-events` (schema 1, documented in `docs/tasks.md`).
#[derive(Debug, Clone, Serialize)]
pub struct TaskEvent<'a> {
    pub schema: u32,
    /// `create`, `claim`, `release`, `update` or `close`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub task: &'a str,
    /// The record's revision in `bones-tasks` this event describes.
    pub revision: u64,
    pub by: &'a str,
    pub at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// The record after the change.
    pub record: &'a Task,
}

/// Starts the projector; runs until aborted.
pub async fn spawn(
    js: jetstream::Context,
    log: HubLog,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let board = Board::ensure(&js).await.map_err(|e| e.to_string())?;
    js.get_or_create_stream(stream::Config {
        name: EVENTS_STREAM.to_string(),
        subjects: vec![format!("{EVENTS_PREFIX}.>")],
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("stream {EVENTS_STREAM}: {e}"))?;
    let consumer = board
        .store()
        .stream
        .get_or_create_consumer(
            DURABLE,
            // a push consumer: a pending pull request would hold up the
            // coordination server's shutdown by tens of milliseconds
            consumer::push::Config {
                durable_name: Some(DURABLE.to_string()),
                deliver_subject: DELIVER_SUBJECT.to_string(),
                description: Some("bones hub: task revisions to events and hub.log".into()),
                filter_subject: format!("$KV.{TASKS_BUCKET}.>"),
                deliver_policy: consumer::DeliverPolicy::All,
                // acknowledging one revision acknowledges all before it, so
                // a burst is acknowledged once (a redelivered revision is a
                // duplicate publish, dropped by the server)
                ack_policy: consumer::AckPolicy::All,
                max_ack_pending: 4096,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {DURABLE}: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("consumer {DURABLE}: {e}"))?
        .peekable();
    let mut logged = logged_revisions(log.path());
    Ok(tokio::spawn(async move {
        let mut warned = false;
        // publishes in flight, oldest first, with the log entry each earns
        let mut in_flight: VecDeque<(PublishAckFuture, LogEntry)> = VecDeque::new();
        while let Some(message) = messages.next().await {
            let Ok(message) = message else { continue };
            // a publish that failed is tried again before anything newer:
            // acknowledging a later revision would acknowledge this one too
            let mut backoff = Duration::from_millis(50);
            let published = loop {
                match publish(&js, &message).await {
                    Err(ProjectError::Retry(why)) => {
                        log.warn(format!(
                            "hub: task projector: {why}; retrying in {backoff:?}"
                        ));
                        settle(&log, &mut in_flight, &mut logged).await;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                    other => break other,
                }
            };
            match published {
                Ok(Some(sent)) => in_flight.push_back(sent),
                Ok(None) | Err(ProjectError::Retry(_)) => {}
                Err(ProjectError::Skip(why)) => {
                    if !warned {
                        log.warn(format!("hub: task projector skipped a revision: {why}"));
                        warned = true;
                    }
                }
            }
            let caught_up = message.info().map(|i| i.pending == 0).unwrap_or(true);
            let idle = !caught_up
                && in_flight.len() < ACK_EVERY
                && tokio::time::timeout(ACK_WHEN_IDLE, Pin::new(&mut messages).peek())
                    .await
                    .is_err();
            if (caught_up || idle || in_flight.len() >= ACK_EVERY)
                && settle(&log, &mut in_flight, &mut logged).await
            {
                let _ = message.ack().await;
            }
        }
    }))
}

/// Waits for the publishes in flight, oldest first, and logs each one not
/// logged before (`logged`: what an earlier run wrote). False when any
/// failed (the caller then leaves the revisions unacknowledged, to be
/// redelivered).
async fn settle(
    log: &HubLog,
    in_flight: &mut VecDeque<(PublishAckFuture, LogEntry)>,
    logged: &mut HashSet<(String, u64)>,
) -> bool {
    let mut all_stored = true;
    while let Some((ack, entry)) = in_flight.pop_front() {
        match ack.await {
            Ok(_) => {
                let key = (
                    entry.task.clone().unwrap_or_default(),
                    entry.revision.unwrap_or(0),
                );
                if logged.is_empty() || !logged.remove(&key) {
                    log.write(entry);
                }
            }
            Err(err) => {
                log.warn(format!("hub: task projector: {err}; will retry"));
                all_stored = false;
            }
        }
    }
    all_stored
}

enum ProjectError {
    Skip(String),
    Retry(String),
}

/// Publishes the event for one revision; returns the pending ack and the
/// log entry to write once the server confirms it is not a duplicate.
async fn publish(
    js: &jetstream::Context,
    message: &jetstream::Message,
) -> Result<Option<(PublishAckFuture, LogEntry)>, ProjectError> {
    let info = message
        .info()
        .map_err(|e| ProjectError::Skip(e.to_string()))?;
    let revision = info.stream_sequence;
    if message
        .headers
        .as_ref()
        .and_then(|h| h.get("KV-Operation"))
        .is_some()
    {
        return Ok(None); // a delete or purge: not a task event
    }
    // a record whose id is not its key is not projected: the id becomes a
    // subject token and a message id
    let task = record::decode(key_of(&message.subject), &message.payload)
        .map_err(|why| ProjectError::Skip(format!("revision {revision}: {why}")))?;
    let event = TaskEvent {
        schema: crate::tasks::record::SCHEMA,
        kind: &task.last_op.op,
        task: &task.id,
        revision,
        by: &task.last_op.by,
        at: &task.last_op.at,
        took_ms: task.last_op.took_ms,
        reason: task.last_op.reason.as_deref(),
        record: &task,
    };
    let body = serde_json::to_vec(&event).map_err(|e| ProjectError::Skip(e.to_string()))?;
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("{}:{revision}", task.id).as_str(),
    );
    let ack = js
        .publish_with_headers(format!("{EVENTS_PREFIX}.{}", task.id), headers, body.into())
        .await
        .map_err(|e| ProjectError::Retry(e.to_string()))?;
    let rpc = format!("tasks.{}", task.last_op.op);
    let mut entry = LogEntry::new(LogLevel::Info, EventKind::Rpc);
    entry.msg = Some(rpc.clone());
    entry.rpc = Some(rpc);
    entry.agent = Some(task.last_op.by.clone());
    entry.task = Some(task.id.clone());
    entry.took_ms = task.last_op.took_ms;
    entry.revision = Some(revision);
    Ok(Some((ack, entry)))
}

/// The task events (task, revision) logged in the newest part of hub.log:
/// the newest [`READ_BACK`] bytes of the current file and of the one
/// rotated before it, should the kill have come right after a rotation.
fn logged_revisions(hub_log: &Path) -> HashSet<(String, u64)> {
    #[derive(serde::Deserialize)]
    struct Logged {
        event: String,
        task: Option<String>,
        revision: Option<u64>,
    }
    let mut logged = HashSet::new();
    for path in super::logread::files_oldest_first(hub_log)
        .iter()
        .rev()
        .take(2)
    {
        let Some(tail) = read_tail(path, READ_BACK) else {
            continue;
        };
        for line in tail.split(|b| *b == b'\n') {
            if let Ok(Logged {
                event,
                task: Some(task),
                revision: Some(revision),
            }) = serde_json::from_slice(line)
                && event == "rpc"
            {
                logged.insert((task, revision));
            }
        }
    }
    logged
}

/// The last `limit` bytes of a file, from the first whole line in them.
fn read_tail(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(limit);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut tail).ok()?;
    if start > 0 {
        // the first line is cut: keep from the next one
        let first = tail
            .iter()
            .position(|b| *b == b'\n')
            .map_or(tail.len(), |i| i + 1);
        tail.drain(..first);
    }
    Some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(task: &str, revision: u64) -> String {
        let mut entry = LogEntry::new(LogLevel::Info, EventKind::Rpc);
        entry.rpc = Some("tasks.claim".into());
        entry.task = Some(task.into());
        entry.revision = Some(revision);
        serde_json::to_string(&entry).unwrap()
    }

    #[test]
    fn logged_revisions_are_read_back_from_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("hub.log");
        let other = LogEntry::lifecycle(LogLevel::Info, "hub: ready");
        let refusal = r#"{"ts":"2026-11-23T09:00:00Z","level":"WARN","event":"rpc","rpc":"tasks.claim","task":"t-x","err":"claimed"}"#;
        std::fs::write(
            dir.path().join("hub.log.2"),
            format!("{}\n", rpc("t-old", 1)),
        )
        .unwrap();
        std::fs::write(dir.path().join("hub.log.1"), format!("{}\n", rpc("t-a", 7))).unwrap();
        std::fs::write(
            &log,
            format!(
                "{}\n{}\n{refusal}\n{}\nnot json\n{}",
                rpc("t-b", 8),
                serde_json::to_string(&other).unwrap(),
                rpc("t-c", 9),
                // a line cut short by a kill
                &rpc("t-d", 10)[..20]
            ),
        )
        .unwrap();
        let logged = logged_revisions(&log);
        let expected: HashSet<(String, u64)> = [("t-a", 7), ("t-b", 8), ("t-c", 9)]
            .into_iter()
            .map(|(t, r)| (t.to_string(), r))
            .collect();
        assert_eq!(logged, expected);
    }

    #[test]
    fn a_tail_starts_at_a_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "first line\nsecond\nthird\n").unwrap();
        assert_eq!(read_tail(&path, 10).unwrap(), b"third\n");
        assert_eq!(
            read_tail(&path, 1000).unwrap(),
            b"first line\nsecond\nthird\n"
        );
        assert!(read_tail(&dir.path().join("missing"), 10).is_none());
    }
}
