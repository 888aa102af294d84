//! The task board: task records in the `bones-tasks` KV bucket, changed
//! only by compare-and-swap on the record's revision.
//!
//! A mutation reads the record, applies a rule from [`super::record`] and
//! writes it back naming the revision it read; if another writer got there
//! first the write is refused by the server and the whole step is re-run on
//! a fresh read, so the rule is always checked against the latest state. A
//! refused claim writes nothing, and therefore produces no event: the hub
//! derives the events on `tasks-events` from the bucket's own revisions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::{self, consumer, kv};
use futures::StreamExt;

use super::claimer::Claimer;
use super::record::{self, InputError, Refusal, Status, Task};
use crate::coord::ServerError;
use crate::lease::{self, LeaseError, Standing};
use crate::sys::error::{ErrorKind, Kinded};

/// The bucket holding one record per task, keyed by id.
pub const TASKS_BUCKET: &str = "bones-tasks";
/// Revisions kept per task: the hub's event projector reads them, so a
/// burst of changes to one task is never collapsed before it is seen.
pub const HISTORY: i64 = 64;
/// Where the server republishes the headers of every revision of the
/// bucket, `bones.tasks.changed.<id>`: a claimer working through a list it
/// read earlier follows it to pass over tasks others changed since, rather
/// than learning it from a refused compare-and-swap per task.
pub const CHANGES_PREFIX: &str = "bones.tasks.changed";
/// Bound on compare-and-swap retries for one mutation.
const MAX_ATTEMPTS: usize = 32;

/// Why a board operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task board ({TASKS_BUCKET}): {0}")]
    Bucket(#[source] ServerError),
    #[error("no task {0}; `bones tasks list` shows the ids")]
    NotFound(String),
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("{0}")]
    Invalid(#[from] InputError),
    #[error("task {0} kept changing under this update; try again")]
    Contended(String),
    #[error(transparent)]
    Sessions(#[from] LeaseError),
    #[error(
        "task {id}: its record is not readable ({source}); fix or delete it with a NATS client"
    )]
    Corrupt {
        id: String,
        #[source]
        source: record::DecodeError,
    },
}

impl Kinded for TaskError {
    fn kind(&self) -> ErrorKind {
        match self {
            TaskError::Bucket(err) => err.kind(),
            TaskError::NotFound(_) => ErrorKind::NotFound,
            TaskError::Refused(refusal) => refusal.kind(),
            TaskError::Invalid(_) => ErrorKind::Usage,
            TaskError::Contended(_) => ErrorKind::Contended,
            TaskError::Sessions(err) => err.kind(),
            TaskError::Corrupt { .. } => ErrorKind::Corrupt,
        }
    }
}

/// The key a message of the bucket's stream is stored under.
pub fn key_of(subject: &str) -> &str {
    subject
        .strip_prefix("$KV.")
        .and_then(|s| s.strip_prefix(TASKS_BUCKET))
        .and_then(|s| s.strip_prefix('.'))
        .unwrap_or(subject)
}

/// Whether a message of the bucket's stream deletes or purges its key
/// rather than writing a record.
pub fn is_deletion(message: &async_nats::Message) -> bool {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get("KV-Operation"))
        .is_some()
}

pub(super) fn bucket_err(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TaskError {
    TaskError::Bucket(ServerError::new(err))
}

/// What to create.
#[derive(Debug, Clone, Default)]
pub struct NewTask {
    pub title: String,
    pub body: String,
    pub parent: Option<String>,
    pub blocked_by: Vec<String>,
    pub labels: Vec<String>,
    /// Higher is claimed first (see [`Task::priority`]).
    pub priority: i32,
}

impl NewTask {
    /// Checks every input before anything is read or written.
    pub fn validate(&self) -> Result<(), InputError> {
        record::validate_title(&self.title)?;
        record::validate_body(&self.body)?;
        record::validate_priority(self.priority)?;
        if self.labels.len() > record::MAX_LABELS {
            return Err(InputError::TooManyLabels);
        }
        for label in &self.labels {
            record::validate_label(label)?;
        }
        for id in self.parent.iter().chain(&self.blocked_by) {
            record::validate_id(id)?;
        }
        Ok(())
    }
}

/// An edit; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub title: Option<String>,
    pub body: Option<String>,
    /// `Some(None)` removes the parent.
    pub parent: Option<Option<String>>,
    pub add_labels: Vec<String>,
    pub remove_labels: Vec<String>,
    pub add_blockers: Vec<String>,
    pub remove_blockers: Vec<String>,
    pub priority: Option<i32>,
}

impl Update {
    /// Checks every input before anything is read or written.
    pub fn validate(&self, id: &str) -> Result<(), InputError> {
        if let Some(title) = &self.title {
            record::validate_title(title)?;
        }
        if let Some(body) = &self.body {
            record::validate_body(body)?;
        }
        if let Some(priority) = self.priority {
            record::validate_priority(priority)?;
        }
        if let Some(Some(parent)) = &self.parent {
            record::validate_id(parent)?;
            if parent == id {
                return Err(InputError::SelfReference("parent"));
            }
        }
        for label in self.add_labels.iter().chain(&self.remove_labels) {
            record::validate_label(label)?;
        }
        for blocker in self.add_blockers.iter().chain(&self.remove_blockers) {
            record::validate_id(blocker)?;
            if blocker == id {
                return Err(InputError::SelfReference("blocker"));
            }
        }
        Ok(())
    }
}

/// A handle on the board.
#[derive(Clone)]
pub struct Board {
    pub(super) store: kv::Store,
    pub(super) client: async_nats::Client,
    /// The sessions bucket, opened on the first claim (see
    /// [`Board::check_claimant`]).
    sessions: Arc<tokio::sync::OnceCell<kv::Store>>,
}

impl Board {
    /// Opens the bucket, creating it on first use.
    pub async fn open(js: &jetstream::Context) -> Result<Board, TaskError> {
        let store = match js.get_key_value(TASKS_BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: TASKS_BUCKET.to_string(),
                    description: "bones task board (schema: docs/tasks.md)".to_string(),
                    history: HISTORY,
                    max_value_size: record::MAX_RECORD as i32,
                    republish: Some(changes_republish()),
                    ..Default::default()
                })
                .await
                .map_err(bucket_err)?,
        };
        Ok(Board {
            store,
            client: js.client(),
            sessions: Arc::default(),
        })
    }

    /// Opens the bucket and makes sure it republishes its changes (a
    /// bucket made by an older bones does not); the hub calls this at start.
    pub async fn ensure(js: &jetstream::Context) -> Result<Board, TaskError> {
        let board = Board::open(js).await?;
        let mut config = board.store.stream.cached_info().config.clone();
        if config.republish.as_ref() != Some(&changes_republish()) {
            config.republish = Some(changes_republish());
            js.update_stream(&config).await.map_err(bucket_err)?;
        }
        Ok(board)
    }

    /// The bucket's store, for the hub's projector.
    pub fn store(&self) -> &kv::Store {
        &self.store
    }

    /// Creates a task; its id is generated (`t-` and 8 characters).
    pub async fn create(&self, new: NewTask, by: &str) -> Result<Task, TaskError> {
        let started = Instant::now();
        new.validate()?;
        for id in new.parent.iter().chain(&new.blocked_by) {
            self.get(id).await?;
        }
        loop {
            let now = crate::sys::clock::utc_now_rfc3339();
            let mut task = Task::new(new_id(), new.title.clone(), by, &now);
            task.body = new.body.clone();
            task.parent = new.parent.clone();
            task.blocked_by = new.blocked_by.clone();
            task.labels = new.labels.clone();
            task.priority = new.priority;
            task.last_op.took_ms = Some(started.elapsed().as_millis() as u64);
            match self.store.create(&task.id, encode(&task)?).await {
                Ok(_) => return Ok(task),
                Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => continue,
                Err(err) => return Err(bucket_err(err)),
            }
        }
    }

    /// One task and the revision a compare-and-swap must name.
    pub async fn get(&self, id: &str) -> Result<(Task, u64), TaskError> {
        record::validate_id(id)?;
        let entry = self
            .store
            .entry(id)
            .await
            .map_err(bucket_err)?
            .filter(|e| e.operation == kv::Operation::Put)
            .ok_or_else(|| TaskError::NotFound(id.to_string()))?;
        let task = record::decode(id, &entry.value).map_err(|source| TaskError::Corrupt {
            id: id.to_string(),
            source,
        })?;
        Ok((task, entry.revision))
    }

    /// Every task, oldest first, read in one pass over the bucket. Records
    /// that do not decode are skipped and returned by id.
    pub async fn list(&self) -> Result<(Vec<Task>, Vec<String>), TaskError> {
        let (tasks, unreadable) = self.list_revisions().await?;
        Ok((tasks.into_iter().map(|(t, _)| t).collect(), unreadable))
    }

    /// Like [`Board::list`], with each record's revision.
    pub(super) async fn list_revisions(
        &self,
    ) -> Result<(Vec<(Task, u64)>, Vec<String>), TaskError> {
        let consumer = self
            .store
            .stream
            .create_consumer(consumer::push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: format!("$KV.{TASKS_BUCKET}.>"),
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                replay_policy: consumer::ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(bucket_err)?;
        let mut tasks = Vec::new();
        let mut unreadable = Vec::new();
        if consumer.cached_info().num_pending > 0 {
            let mut messages = consumer.messages().await.map_err(bucket_err)?;
            while let Some(message) = messages.next().await {
                let message = message.map_err(bucket_err)?;
                let (pending, revision) = message
                    .info()
                    .map(|i| (i.pending, i.stream_sequence))
                    .unwrap_or((0, 0));
                if !is_deletion(&message) {
                    let key = key_of(&message.subject);
                    match record::decode(key, &message.payload) {
                        Ok(task) => tasks.push((task, revision)),
                        Err(_) => unreadable.push(key.to_string()),
                    }
                }
                if pending == 0 {
                    break;
                }
            }
        }
        tasks.sort_by(|(a, _), (b, _)| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        Ok((tasks, unreadable))
    }

    /// Open tasks whose blockers are closed and whose parent is not, in
    /// claim order: highest priority first, then oldest.
    pub async fn ready(&self) -> Result<Vec<Task>, TaskError> {
        let (tasks, _) = self.list().await?;
        let ready = ready_mask(tasks.iter());
        let mut ready: Vec<Task> = tasks
            .into_iter()
            .zip(ready)
            .filter_map(|(task, ready)| ready.then_some(task))
            .collect();
        // stable: equal priorities stay oldest first
        ready.sort_by_key(|t| std::cmp::Reverse(t.priority));
        Ok(ready)
    }

    /// Applies `rule` to the latest record and writes it with a
    /// compare-and-swap, re-reading and re-applying on every race. `rule`
    /// returns whether it changed anything; nothing is written if not.
    /// With a `claimant`, the first read goes with
    /// [`Board::check_claimant`], so the check costs no round trip of its
    /// own.
    async fn mutate(
        &self,
        id: &str,
        started: Instant,
        claimant: Option<&str>,
        mut rule: impl FnMut(&mut Task, &str) -> Result<bool, TaskError>,
    ) -> Result<(Task, bool), TaskError> {
        for attempt in 0..MAX_ATTEMPTS {
            let (mut task, revision) = match claimant {
                Some(who) if attempt == 0 => {
                    let (checked, read) = tokio::join!(self.check_claimant(who), self.get(id));
                    checked?;
                    read?
                }
                _ => self.get(id).await?,
            };
            let now = crate::sys::clock::utc_now_rfc3339();
            if !rule(&mut task, &now)? {
                return Ok((task, false));
            }
            task.last_op.took_ms = Some(started.elapsed().as_millis() as u64);
            match self.store.update(id, encode(&task)?, revision).await {
                Ok(_) => return Ok((task, true)),
                Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(err) => return Err(bucket_err(err)),
            }
        }
        Err(TaskError::Contended(id.to_string()))
    }

    /// Claims a task for `who`. `Ok((task, false))` when `who` already held it.
    pub async fn claim(&self, id: &str, who: &str) -> Result<(Task, bool), TaskError> {
        self.mutate(id, Instant::now(), Some(who), |task, now| {
            Ok(task.claim(who, now)?)
        })
        .await
    }

    /// Claims a task for `who`, taking it over from `from` when `from`
    /// holds it: an agent that claimed a task, then joins a slot for it,
    /// hands the claim to the slot in one compare-and-swap.
    pub async fn claim_from(
        &self,
        id: &str,
        who: &str,
        from: &str,
    ) -> Result<(Task, bool), TaskError> {
        self.mutate(id, Instant::now(), Some(who), |task, now| {
            if from != who
                && task.status == Status::Claimed
                && task.claimed_by.as_deref() == Some(from)
            {
                task.release(from, now, false, Some(format!("handed to {who}")))?;
            }
            Ok(task.claim(who, now)?)
        })
        .await
    }

    /// Claims the oldest ready task (under contention, one of the oldest:
    /// see [`Claimer`]); `None` when no task is ready. Tasks taken by others
    /// meanwhile are skipped.
    pub async fn claim_next(&self, who: &str) -> Result<Option<Task>, TaskError> {
        self.claimer(who).next().await
    }

    /// Like [`Board::claim_next`], among tasks with `label` (any task when
    /// `None`), and when none is ready, waits until one can be claimed or
    /// `wait` passes (`None`: no limit); `None` when the wait ran out.
    /// `waiting` is called each time it starts to wait (nothing was ready).
    ///
    /// The wait is woken by the bucket's own changes (the republished
    /// `bones.tasks.changed.<id>` hints), never by polling: subscribed
    /// before each read of the board, so a change between the read and
    /// the wait is not missed; a burst of changes costs one read.
    pub async fn claim_next_wait(
        &self,
        who: &str,
        label: Option<&str>,
        wait: Option<std::time::Duration>,
        mut waiting: impl FnMut(),
    ) -> Result<Option<Task>, TaskError> {
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        let mut changes = self
            .client
            .subscribe(format!("{CHANGES_PREFIX}.>"))
            .await
            .map_err(bucket_err)?;
        let mut claimer = self.claimer(who).with_label(label);
        loop {
            if let Some(task) = claimer.next().await? {
                return Ok(Some(task));
            }
            waiting();
            let change = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, changes.next()).await {
                    Ok(change) => change,
                    Err(_) => return Ok(None),
                },
                None => changes.next().await,
            };
            if change.is_none() {
                return Err(bucket_err("the subscription to the board's changes ended"));
            }
            // one read of the board for the whole burst
            while let Some(Some(_)) = futures::FutureExt::now_or_never(changes.next()) {}
        }
    }

    /// A claimer for a long-lived process that claims task after task: it
    /// reads the board once and works through the ready tasks, oldest first
    /// unless it loses races, passing over those changed since; it reads
    /// the board again only when they are used up.
    pub fn claimer(&self, who: &str) -> Claimer<'_> {
        Claimer::new(self, who)
    }

    /// Gives a claim back (only its holder, unless `force`).
    pub async fn release(
        &self,
        id: &str,
        who: &str,
        force: bool,
        reason: Option<String>,
    ) -> Result<Task, TaskError> {
        if let Some(reason) = &reason {
            record::validate_reason(reason)?;
        }
        self.mutate(id, Instant::now(), None, |task, now| {
            task.release(who, now, force, reason.clone())?;
            Ok(true)
        })
        .await
        .map(|(task, _)| task)
    }

    /// Closes a task, releasing its claim.
    pub async fn close(
        &self,
        id: &str,
        who: &str,
        reason: Option<String>,
        force: bool,
    ) -> Result<Task, TaskError> {
        if let Some(reason) = &reason {
            record::validate_reason(reason)?;
        }
        self.mutate(id, Instant::now(), None, |task, now| {
            task.close(who, now, reason.clone(), force)?;
            Ok(true)
        })
        .await
        .map(|(task, _)| task)
    }

    /// Edits a task.
    pub async fn update(&self, id: &str, who: &str, edit: &Update) -> Result<Task, TaskError> {
        edit.validate(id)?;
        if let Some(Some(parent)) = &edit.parent {
            self.get(parent).await?;
        }
        for blocker in &edit.add_blockers {
            self.get(blocker).await?;
        }
        self.mutate(id, Instant::now(), None, |task, now| {
            apply_edit(task, edit)?;
            task.touch(who, now)?;
            Ok(true)
        })
        .await
        .map(|(task, _)| task)
    }

    /// Releases every task `holder` claimed (a reaped slot's), as `by`.
    pub async fn release_all_held_by(
        &self,
        holder: &str,
        by: &str,
        reason: &str,
    ) -> Result<Vec<String>, TaskError> {
        self.settle_all_held_by(holder, by, reason, false).await
    }

    /// Closes every task `holder` claimed (a slot closed with its work
    /// done), as `by`.
    pub async fn close_all_held_by(
        &self,
        holder: &str,
        by: &str,
        reason: &str,
    ) -> Result<Vec<String>, TaskError> {
        self.settle_all_held_by(holder, by, reason, true).await
    }

    async fn settle_all_held_by(
        &self,
        holder: &str,
        by: &str,
        reason: &str,
        close: bool,
    ) -> Result<Vec<String>, TaskError> {
        let (tasks, _) = self.list().await?;
        let mut settled = Vec::new();
        for task in tasks
            .iter()
            .filter(|t| t.status == Status::Claimed && t.claimed_by.as_deref() == Some(holder))
        {
            if self
                .settle_held(&task.id, holder, by, reason, close)
                .await?
            {
                settled.push(task.id.clone());
            }
        }
        Ok(settled)
    }

    /// Releases task `id` as `by` if `holder` still holds it (a claim left
    /// to a slot that ended, see `hub::projector`); returns whether it did.
    pub async fn release_if_held_by(
        &self,
        id: &str,
        holder: &str,
        by: &str,
        reason: &str,
    ) -> Result<bool, TaskError> {
        self.settle_held(id, holder, by, reason, false).await
    }

    /// Releases (or closes) task `id` as `by` if `holder` still holds it.
    async fn settle_held(
        &self,
        id: &str,
        holder: &str,
        by: &str,
        reason: &str,
        close: bool,
    ) -> Result<bool, TaskError> {
        let (_, done) = self
            .mutate(id, Instant::now(), None, |task, now| {
                if task.status != Status::Claimed || task.claimed_by.as_deref() != Some(holder) {
                    return Ok(false);
                }
                let reason = Some(reason.to_string());
                if close {
                    task.close(by, now, reason, true)?;
                } else {
                    task.release(by, now, true, reason)?;
                }
                Ok(true)
            })
            .await?;
        Ok(done)
    }

    /// Whether `who` names a slot that was closed or reaped (its lease
    /// record deleted) and has not been joined again: nothing holds a claim
    /// made under that name. A name that never had a lease (an agent
    /// outside a slot) has not ended, nor has a slot whose lease is live,
    /// expired but not yet reaped, or unreadable.
    pub async fn claimant_ended(&self, who: &str) -> Result<bool, TaskError> {
        if !lease::is_slot_key(who) {
            return Ok(false);
        }
        let sessions = self
            .sessions
            .get_or_try_init(|| async { lease::bucket(&jetstream::new(self.client.clone())).await })
            .await?;
        Ok(matches!(
            lease::standing(sessions, who).await?,
            Standing::Ended
        ))
    }

    /// Refuses a claim under the name of a slot that ended
    /// ([`Refusal::SlotEnded`]; see [`Board::claimant_ended`]), so an
    /// agent whose slot was reaped is told so at once. The check and the
    /// claim's compare-and-swap are two reads of two buckets, so a slot can
    /// still end between them: the hub releases such a claim when it
    /// projects it (`hub::projector`).
    pub async fn check_claimant(&self, who: &str) -> Result<(), TaskError> {
        if self.claimant_ended(who).await? {
            return Err(Refusal::SlotEnded {
                slot: who.to_string(),
            }
            .into());
        }
        Ok(())
    }

    /// The ids of the tasks `holder` has claimed, oldest first.
    pub async fn held_by(&self, holder: &str) -> Result<Vec<String>, TaskError> {
        let (tasks, _) = self.list().await?;
        Ok(tasks
            .into_iter()
            .filter(|t| t.status == Status::Claimed && t.claimed_by.as_deref() == Some(holder))
            .map(|t| t.id)
            .collect())
    }
}

fn changes_republish() -> jetstream::stream::Republish {
    jetstream::stream::Republish {
        source: format!("$KV.{TASKS_BUCKET}.>"),
        destination: format!("{CHANGES_PREFIX}.>"),
        headers_only: true,
    }
}

fn apply_edit(task: &mut Task, edit: &Update) -> Result<(), TaskError> {
    if let Some(title) = &edit.title {
        task.title = title.clone();
    }
    if let Some(body) = &edit.body {
        task.body = body.clone();
    }
    if let Some(parent) = &edit.parent {
        task.parent = parent.clone();
    }
    if let Some(priority) = edit.priority {
        task.priority = priority;
    }
    for label in &edit.add_labels {
        if !task.labels.contains(label) {
            task.labels.push(label.clone());
        }
    }
    task.labels.retain(|l| !edit.remove_labels.contains(l));
    if task.labels.len() > record::MAX_LABELS {
        return Err(InputError::TooManyLabels.into());
    }
    for blocker in &edit.add_blockers {
        if !task.blocked_by.contains(blocker) {
            task.blocked_by.push(blocker.clone());
        }
    }
    task.blocked_by
        .retain(|b| !edit.remove_blockers.contains(b));
    Ok(())
}

/// Which of `tasks` are ready, in order. `tasks` must be the whole board:
/// readiness depends on blockers and parents.
pub(super) fn ready_mask<'a>(tasks: impl Iterator<Item = &'a Task> + Clone) -> Vec<bool> {
    let status: HashMap<&str, Status> = tasks.clone().map(|t| (t.id.as_str(), t.status)).collect();
    tasks
        .map(|t| t.is_ready(|id| status.get(id).copied()))
        .collect()
}

pub(super) fn encode(task: &Task) -> Result<bytes::Bytes, TaskError> {
    let bytes =
        serde_json::to_vec(task).map_err(|e| TaskError::Bucket(ServerError::internal(e)))?;
    if bytes.len() > record::MAX_RECORD {
        return Err(InputError::RecordTooLarge(bytes.len()).into());
    }
    Ok(bytes.into())
}

/// `t-` and 8 characters from `[a-z0-9]`.
fn new_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let tail: String = bytes[..8]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("t-{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid() {
        for _ in 0..100 {
            assert!(record::validate_id(&new_id()).is_ok());
        }
    }
}
