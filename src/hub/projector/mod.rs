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
//! too: a revision redelivered (after a kill, or a restart of the
//! coordination server under a running hub) is logged exactly when its
//! entry is missing, whether the hub died before or after writing it
//! ([`logged`]).

mod logged;
mod orphans;

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use logged::Logged;
use orphans::Orphans;

use crate::oplog::{EventKind, HubLog, LogEntry, LogLevel};
use crate::tasks::board::{Board, TASKS_BUCKET, is_deletion, key_of};
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
/// Revisions the server may hold delivered but unacknowledged.
const MAX_ACK_PENDING: i64 = 4096;
/// The first wait before publishing again after a failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

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

/// Starts the projector; runs until `stop` is cancelled. A revision being
/// projected then is published first, and the publishes in flight are
/// waited for (so they are in hub.log's entries the next hub reads back);
/// one published but not yet acknowledged is offered again to the next
/// hub, which knows it from those entries.
pub async fn spawn(
    js: jetstream::Context,
    log: HubLog,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let board = match Board::ensure(&js).await {
        Ok(board) => board,
        Err(err) => {
            // republishing changes is a hint for claimers: without it they
            // lose more races, nothing more
            log.warn(format!(
                "hub: the task board does not republish its changes ({err}); claims still work"
            ));
            Board::open(&js).await.map_err(|e| e.to_string())?
        }
    };
    js.get_or_create_stream(stream::Config {
        name: EVENTS_STREAM.to_string(),
        subjects: vec![format!("{EVENTS_PREFIX}.>")],
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("stream {EVENTS_STREAM}: {e}"))?;
    let stream = &board.store().stream;
    let mut consumer = stream
        .get_or_create_consumer(DURABLE, consumer_config(None))
        .await
        .map_err(|e| format!("consumer {DURABLE}: {e}"))?;
    let info = consumer.cached_info().clone();
    // only revisions the server hands out again can have an entry already
    let redelivers = info.num_pending > 0 || info.num_ack_pending > 0;
    let stream_end = stream.cached_info().state.last_sequence;
    let read_after = if info.ack_floor.stream_sequence > stream_end {
        // the bucket's stream lost its newest revisions (store damage, see
        // `damage`); left as it is, the consumer would pass over the next
        // revisions, which reuse those sequence numbers
        log.warn(format!(
            "hub: task projector: acknowledged up to revision {} but the bucket ends at {stream_end}; reading on after {stream_end}",
            info.ack_floor.stream_sequence
        ));
        Some(stream_end)
    } else if info.num_ack_pending > 0 {
        // revisions delivered to a hub that died before acknowledging them:
        // the server would offer them again only once the ack wait runs
        // out, after newer ones, whose acknowledgement (it covers all
        // before it) would then pass them over unseen. Read again from the
        // last one acknowledged instead.
        let after = info.ack_floor.stream_sequence;
        log.info(format!(
            "hub: task projector: {} revision(s) were not acknowledged by the previous hub; reading again after revision {after}",
            info.num_ack_pending
        ));
        Some(after)
    } else {
        None
    };
    if let Some(after) = read_after {
        stream
            .delete_consumer(DURABLE)
            .await
            .map_err(|e| format!("consumer {DURABLE}: {e}"))?;
        consumer = stream
            .create_consumer(consumer_config(Some(after + 1)))
            .await
            .map_err(|e| format!("consumer {DURABLE}: {e}"))?;
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("consumer {DURABLE}: {e}"))?
        .peekable();
    let hub_log = log.path().to_path_buf();
    let orphans = Orphans::new(board.clone(), log.clone());
    // claims acknowledged by a hub that did not check them: beside the
    // projection, stopped with it and joined before it ends (the drain
    // waits for the projector, so for this too)
    let sweep = tokio::spawn({
        let orphans = orphans.clone();
        let stop = stop.clone();
        async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = orphans.sweep() => {}
            }
        }
    });
    Ok(tokio::spawn(async move {
        // what earlier runs wrote, read off the runtime (up to 2 MiB) and
        // only when something is left over from them
        let mut logged = if redelivers {
            tokio::task::spawn_blocking(move || Logged::read_back(&hub_log))
                .await
                .unwrap_or_default()
        } else {
            Logged::default()
        };
        let mut warned = false;
        // publishes in flight, oldest first
        let mut in_flight: VecDeque<(PublishAckFuture, Pending)> = VecDeque::new();
        // the newest revision handled, while it is not acknowledged
        let mut unacked = None;
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => break,
                message = messages.next() => message,
            };
            let Some(message) = message else { break };
            let Ok(message) = message else { continue };
            match prepare(&message, &orphans) {
                Ok(Some(pending)) => {
                    let sent = send(&js, &log, &pending).await;
                    in_flight.push_back((sent, pending));
                }
                Ok(None) => {}
                Err(why) => {
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
            if caught_up || idle || in_flight.len() >= ACK_EVERY {
                settle(&js, &log, &mut in_flight, &mut logged).await;
                // every revision up to this one is published: acknowledging
                // this one acknowledges them all
                let _ = message.ack().await;
                unacked = None;
            } else {
                unacked = Some(message);
            }
        }
        // stopping in a burst: what was published is waited for and
        // acknowledged, and the acknowledgement is on the server before the
        // hub tells it to stop
        if let Some(message) = unacked {
            settle(&js, &log, &mut in_flight, &mut logged).await;
            let _ = message.ack().await;
            let _ = js.client().flush().await;
        }
        let _ = sweep.await;
    }))
}

/// The hub's durable consumer on the bucket's stream, from revision
/// `start` (else from the first).
fn consumer_config(start: Option<u64>) -> consumer::push::Config {
    consumer::push::Config {
        durable_name: Some(DURABLE.to_string()),
        // a push consumer: a pending pull request would hold up the
        // coordination server's shutdown by tens of milliseconds
        deliver_subject: DELIVER_SUBJECT.to_string(),
        description: Some("bones hub: task revisions to events and hub.log".into()),
        filter_subject: format!("$KV.{TASKS_BUCKET}.>"),
        deliver_policy: match start {
            Some(start_sequence) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
            None => consumer::DeliverPolicy::All,
        },
        // acknowledging one revision acknowledges all before it, so a burst
        // is acknowledged once (a redelivered revision is a duplicate
        // publish, dropped by the server)
        ack_policy: consumer::AckPolicy::All,
        max_ack_pending: MAX_ACK_PENDING,
        ..Default::default()
    }
}

/// Waits for the publishes in flight, oldest first, publishing again any
/// whose acknowledgement failed (the message id makes that safe), and logs
/// each event unless it is a duplicate whose entry is already written;
/// then for the check of its claim, if it is one ([`orphans`]). Returns
/// once all are stored and checked: a later revision's acknowledgement
/// covers these too, so none may be left behind.
async fn settle(
    js: &jetstream::Context,
    log: &HubLog,
    in_flight: &mut VecDeque<(PublishAckFuture, Pending)>,
    logged: &mut Logged,
) {
    while let Some((mut ack, pending)) = in_flight.pop_front() {
        let mut backoff = Backoff::new();
        let duplicate = loop {
            match ack.await {
                Ok(ack) => break ack.duplicate,
                Err(err) => {
                    backoff
                        .wait(
                            log,
                            format!("event {} not confirmed ({err})", pending.msg_id),
                        )
                        .await;
                    ack = send(js, log, &pending).await;
                }
            }
        };
        let key = pending.key();
        // a duplicate whose entry was written before is the only one not
        // logged: a duplicate without one was published by a hub that died
        // before it could write the entry
        if !(duplicate && logged.contains(&key)) {
            log.write(pending.entry);
        }
        logged.insert(key);
        if let Some(check) = pending.check {
            let _ = check.await;
        }
    }
}

/// One event on its way: what to publish (again, should its
/// acknowledgement fail) and the log entry it earns.
struct Pending {
    subject: String,
    msg_id: String,
    body: bytes::Bytes,
    entry: LogEntry,
    /// The check of the claim this revision made, if it made one.
    check: Option<tokio::task::JoinHandle<()>>,
}

impl Pending {
    fn key(&self) -> (String, u64) {
        (
            self.entry.task.clone().unwrap_or_default(),
            self.entry.revision.unwrap_or(0),
        )
    }
}

/// Publishes an event, trying again with backoff until the server takes
/// the message (not yet its acknowledgement).
async fn send(js: &jetstream::Context, log: &HubLog, pending: &Pending) -> PublishAckFuture {
    let mut backoff = Backoff::new();
    loop {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, pending.msg_id.as_str());
        match js
            .publish_with_headers(pending.subject.clone(), headers, pending.body.clone())
            .await
        {
            Ok(ack) => return ack,
            Err(err) => {
                let why = format!("cannot publish event {} ({err})", pending.msg_id);
                backoff.wait(log, why).await;
            }
        }
    }
}

/// The wait before trying again: from [`FIRST_BACKOFF`], doubling up to
/// [`MAX_BACKOFF`].
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(FIRST_BACKOFF)
    }

    /// Logs why, then waits.
    async fn wait(&mut self, log: &HubLog, why: String) {
        log.warn(format!(
            "hub: task projector: {why}; trying again in {:?}",
            self.0
        ));
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
    }
}

/// The event and log entry for one revision, and the check of the claim it
/// made (started here); `None` for a delete or purge, an error for a
/// revision that cannot be projected.
fn prepare(message: &jetstream::Message, orphans: &Orphans) -> Result<Option<Pending>, String> {
    let info = message.info().map_err(|e| e.to_string())?;
    let revision = info.stream_sequence;
    if is_deletion(message) {
        return Ok(None); // a delete or purge: not a task event
    }
    // a record whose id is not its key is not projected: the id becomes a
    // subject token and a message id
    let task = record::decode(key_of(&message.subject), &message.payload)
        .map_err(|why| format!("revision {revision}: {why}"))?;
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
    let body = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
    let rpc = format!("tasks.{}", task.last_op.op);
    let mut entry = LogEntry::new(LogLevel::Info, EventKind::Rpc);
    entry.msg = Some(rpc.clone());
    entry.rpc = Some(rpc);
    entry.by = Some(task.last_op.by.clone());
    // deprecated for task entries (it is not always an agent id): kept one
    // release for readers and `bones logs --agent` (docs/json.md)
    entry.agent = Some(task.last_op.by.clone());
    entry.task = Some(task.id.clone());
    entry.took_ms = task.last_op.took_ms;
    entry.revision = Some(revision);
    let check = Orphans::claimant(&task).map(|slot| orphans.check(&task.id, slot));
    Ok(Some(Pending {
        subject: format!("{EVENTS_PREFIX}.{}", task.id),
        msg_id: format!("{}:{revision}", task.id),
        body: body.into(),
        entry,
        check,
    }))
}
