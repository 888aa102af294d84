//! The picture itself: plain data, changed only by [`Model::apply`], so the
//! same sequence of changes always gives the same picture (the web page and
//! a terminal view each render it; tests check it without a server).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::checkout::SlotGit;
use crate::feed::store::Stored as FeedStored;
use crate::lease::Lease;
use crate::oplog::LogEntry;
use crate::tasks::record::{Status, Task};

/// How many trunk landings the picture keeps, newest last.
pub const LANDINGS: usize = 50;
/// How many feed entries the picture keeps, newest last.
pub const FEED: usize = 100;
/// How many hub.log lines the picture keeps, newest last.
pub const LOG_LINES: usize = 500;

/// One slot, from its lease record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotView {
    pub slot: String,
    /// `None` when the record could not be read (another client wrote it).
    #[serde(flatten)]
    pub lease: Option<LeaseView>,
}

/// The lease fields a person looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseView {
    pub agent: String,
    /// The task the slot was joined for, if any.
    pub task: Option<String>,
    pub host: String,
    pub started_at: String,
    /// The page colours the lease by the time since this (UTC RFC 3339).
    pub last_renewed: String,
    pub ttl_s: u64,
    pub pid: Option<u32>,
}

impl From<&Lease> for LeaseView {
    fn from(lease: &Lease) -> LeaseView {
        LeaseView {
            agent: lease.agent_id.clone(),
            task: lease.task_id.clone(),
            host: lease.host.clone(),
            started_at: lease.started_at.clone(),
            last_renewed: lease.last_renewed.clone(),
            ttl_s: lease.ttl_s,
            pid: lease.pid,
        }
    }
}

/// One task without its body (a body may be 64 KiB; 5,000 of them would
/// make every snapshot megabytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskView {
    pub id: String,
    pub title: String,
    pub status: Status,
    pub claimed_by: Option<String>,
    pub parent: Option<String>,
    pub blocked_by: Vec<String>,
    pub labels: Vec<String>,
    pub priority: i32,
    pub updated_at: String,
    pub closed_reason: Option<String>,
}

impl From<&Task> for TaskView {
    fn from(task: &Task) -> TaskView {
        TaskView {
            id: task.id.clone(),
            title: task.title.clone(),
            status: task.status,
            claimed_by: task.claimed_by.clone(),
            parent: task.parent.clone(),
            blocked_by: task.blocked_by.clone(),
            labels: task.labels.clone(),
            priority: task.priority,
            updated_at: task.updated_at.clone(),
            closed_reason: task.closed_reason.clone(),
        }
    }
}

/// The board's four columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Column {
    Ready,
    Claimed,
    Blocked,
    Closed,
}

impl Column {
    pub const ALL: [Column; 4] = [
        Column::Ready,
        Column::Claimed,
        Column::Blocked,
        Column::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Column::Ready => "ready",
            Column::Claimed => "claimed",
            Column::Blocked => "blocked",
            Column::Closed => "closed",
        }
    }
}

/// One landing on trunk, as the lander announced it on
/// [`super::LANDINGS_SUBJECT`] (or, for those before the view started,
/// recorded it in hub.log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Landing {
    /// When the lander acknowledged the landing: stamped just before its
    /// reply is sent (UTC RFC 3339, microseconds). From hub.log, the
    /// entry's time, written just before the reply too.
    pub ts: String,
    /// `None` for `bones land` (the user's branch).
    pub slot: Option<String>,
    pub agent: Option<String>,
    pub task: Option<String>,
    /// The last commit landed (a trunk revision).
    pub commit: String,
    pub subject: String,
}

impl Landing {
    /// The landing an entry records: an INFO `rpc` entry of `swarm.commit`
    /// or `land` that names the commit it made.
    pub fn of(entry: &LogEntry) -> Option<Landing> {
        let rpc = entry.rpc.as_deref()?;
        if !matches!(rpc, "swarm.commit" | "land") || entry.err.is_some() {
            return None;
        }
        let commit = entry.commit.clone()?;
        // "swarm.commit: landed <12 hex> <subject quoted, cut at 40>": the
        // follower replaces it with the commit's own subject when it can
        // read the hub repository
        let subject = entry
            .msg
            .as_deref()
            .and_then(|m| m.strip_prefix("swarm.commit: landed "))
            .and_then(|rest| rest.split_once(' '))
            .map(|(_, quoted)| {
                serde_json::from_str::<String>(quoted).unwrap_or_else(|_| quoted.to_string())
            })
            .unwrap_or_default();
        Some(Landing {
            ts: entry.ts.clone(),
            slot: entry.slot.clone(),
            agent: entry.agent.clone(),
            task: entry.task.clone(),
            commit,
            subject,
        })
    }
}

/// Whether one part the picture is built from is followed right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceHealth {
    pub ok: bool,
    /// Empty when ok; else what failed.
    pub detail: String,
    /// When it last changed (UTC RFC 3339).
    pub since: String,
}

/// The parts the picture is built from, by name in [`Snapshot::sources`].
pub const SOURCES: [&str; 4] = ["slots", "tasks", "feed", "hub.log"];

/// The whole picture at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// The number of the last change applied; a delta with the next number
    /// follows it.
    pub seq: u64,
    pub slots: BTreeMap<String, SlotView>,
    /// What git knows about each slot (ahead/behind trunk, changed files).
    pub slot_git: BTreeMap<String, SlotGit>,
    pub tasks: BTreeMap<String, TaskView>,
    /// Newest last.
    pub landings: VecDeque<Landing>,
    /// Newest last.
    pub feed: VecDeque<FeedStored>,
    /// Newest last.
    pub log: VecDeque<LogEntry>,
    pub sources: BTreeMap<String, SourceHealth>,
    /// The parts read in full at least once (of [`SOURCES`]).
    pub loaded: BTreeSet<String>,
}

/// One change to the picture.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Delta {
    /// A slot's lease was written (`state`), or removed (`None`).
    Slot {
        slot: String,
        state: Option<SlotView>,
    },
    /// What git knows about a slot was read again.
    SlotGit {
        slot: String,
        git: SlotGit,
    },
    /// A task was written, or removed.
    Task {
        id: String,
        state: Option<TaskView>,
    },
    Landing(Landing),
    Feed(FeedStored),
    Log(Box<LogEntry>),
    Source {
        name: String,
        health: SourceHealth,
    },
}

/// What a source hands the model.
#[derive(Debug, Clone)]
pub enum Change {
    /// The whole of one part, read when its follower (re)started.
    Slots(Vec<SlotView>),
    Tasks(Vec<TaskView>),
    Feed(Vec<FeedStored>),
    /// hub.log's last lines, and the landings among them.
    Log(Vec<LogEntry>, Vec<Landing>),
    /// One change to a part.
    One(Delta),
}

/// What applying a change produced: the delta to send, or a new snapshot
/// (a part was replaced wholesale).
#[derive(Debug, Clone)]
pub enum Applied {
    Delta(std::sync::Arc<Delta>),
    Reset,
}

/// The picture and the number of changes applied.
#[derive(Debug, Default)]
pub struct Model {
    snapshot: Snapshot,
}

impl Model {
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Applies one change; returns what to tell subscribers, with the
    /// picture's new sequence number.
    pub fn apply(&mut self, change: Change) -> (u64, Applied) {
        let s = &mut self.snapshot;
        s.seq += 1;
        let applied = match change {
            Change::Slots(all) => {
                s.slots = all.into_iter().map(|v| (v.slot.clone(), v)).collect();
                s.slot_git.retain(|slot, _| s.slots.contains_key(slot));
                s.loaded.insert("slots".into());
                Applied::Reset
            }
            Change::Tasks(all) => {
                s.tasks = all.into_iter().map(|t| (t.id.clone(), t)).collect();
                s.loaded.insert("tasks".into());
                Applied::Reset
            }
            Change::Feed(all) => {
                s.feed = all.into_iter().collect();
                trim(&mut s.feed, FEED);
                s.loaded.insert("feed".into());
                Applied::Reset
            }
            Change::Log(all, landings) => {
                s.landings = landings.into_iter().collect();
                trim(&mut s.landings, LANDINGS);
                s.log = all.into_iter().collect();
                trim(&mut s.log, LOG_LINES);
                s.loaded.insert("hub.log".into());
                Applied::Reset
            }
            Change::One(delta) => {
                apply_delta(s, &delta);
                Applied::Delta(std::sync::Arc::new(delta))
            }
        };
        (s.seq, applied)
    }
}

fn apply_delta(s: &mut Snapshot, delta: &Delta) {
    match delta {
        Delta::Slot { slot, state } => match state {
            Some(view) => {
                s.slots.insert(slot.clone(), view.clone());
            }
            None => {
                s.slots.remove(slot);
                s.slot_git.remove(slot);
            }
        },
        Delta::SlotGit { slot, git } => {
            if s.slots.contains_key(slot) {
                s.slot_git.insert(slot.clone(), git.clone());
            }
        }
        Delta::Task { id, state } => match state {
            Some(view) => {
                s.tasks.insert(id.clone(), view.clone());
            }
            None => {
                s.tasks.remove(id);
            }
        },
        Delta::Landing(landing) => {
            s.landings.push_back(landing.clone());
            trim(&mut s.landings, LANDINGS);
        }
        Delta::Feed(entry) => {
            s.feed.push_back(entry.clone());
            trim(&mut s.feed, FEED);
        }
        Delta::Log(entry) => {
            s.log.push_back((**entry).clone());
            trim(&mut s.log, LOG_LINES);
        }
        Delta::Source { name, health } => {
            s.sources.insert(name.clone(), health.clone());
        }
    }
}

fn trim<T>(items: &mut VecDeque<T>, keep: usize) {
    while items.len() > keep {
        items.pop_front();
    }
}

impl Snapshot {
    /// Whether every part was read in full at least once.
    pub fn is_loaded(&self) -> bool {
        SOURCES.iter().all(|part| self.loaded.contains(*part))
    }

    /// The column a task sits in: claimed and closed by status; an open
    /// task is ready when [`Task::is_ready`]'s rule holds (every blocker
    /// closed, an unknown one blocks; a parent that is not closed).
    pub fn column(&self, task: &TaskView) -> Column {
        let lookup = |id: &str| self.tasks.get(id).map(|t| t.status);
        match task.status {
            Status::Claimed => Column::Claimed,
            Status::Closed => Column::Closed,
            Status::Open => {
                let blocked = task
                    .blocked_by
                    .iter()
                    .any(|b| lookup(b) != Some(Status::Closed));
                let parent_closed = task
                    .parent
                    .as_deref()
                    .is_some_and(|p| lookup(p) == Some(Status::Closed));
                if blocked || parent_closed {
                    Column::Blocked
                } else {
                    Column::Ready
                }
            }
        }
    }

    /// The tasks claimed by a slot (by its name or its agent's id, either
    /// of which `tasks claim` records as the holder).
    pub fn held_by<'a>(&'a self, slot: &'a SlotView) -> impl Iterator<Item = &'a TaskView> + 'a {
        let agent = slot.lease.as_ref().map(|l| l.agent.as_str());
        self.tasks.values().filter(move |t| {
            t.status == Status::Claimed
                && t.claimed_by
                    .as_deref()
                    .is_some_and(|h| h == slot.slot || Some(h) == agent)
        })
    }

    /// A slot's latest landing on trunk.
    pub fn last_landing(&self, slot: &str) -> Option<&Landing> {
        self.landings
            .iter()
            .rev()
            .find(|l| l.slot.as_deref() == Some(slot))
    }
}

/// A subscriber's own copy of the picture: a terminal view keeps one and
/// changes it by each delta it receives.
impl Snapshot {
    /// Applies a delta received numbered `seq` (the picture's number then).
    pub fn apply(&mut self, seq: u64, delta: &Delta) {
        apply_delta(self, delta);
        self.seq = seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oplog::{EventKind, LogLevel};
    use crate::sys::clock::utc_now_rfc3339 as precise_now;

    fn task(id: &str, status: Status, blocked_by: &[&str]) -> TaskView {
        let mut t = Task::new(id.into(), format!("title {id}"), "me", &precise_now());
        t.status = status;
        t.blocked_by = blocked_by.iter().map(|s| s.to_string()).collect();
        if status == Status::Claimed {
            t.claimed_by = Some("s1".into());
        }
        TaskView::from(&t)
    }

    #[test]
    fn tasks_fall_into_columns_by_status_and_blockers() {
        let mut model = Model::default();
        model.apply(Change::Tasks(vec![
            task("t-a", Status::Open, &[]),
            task("t-b", Status::Open, &["t-a"]),
            task("t-c", Status::Claimed, &[]),
            task("t-d", Status::Closed, &[]),
            task("t-e", Status::Open, &["t-d"]),
            task("t-f", Status::Open, &["t-unknown"]),
        ]));
        let s = model.snapshot();
        let column = |id: &str| s.column(&s.tasks[id]);
        assert_eq!(column("t-a"), Column::Ready);
        assert_eq!(column("t-b"), Column::Blocked);
        assert_eq!(column("t-c"), Column::Claimed);
        assert_eq!(column("t-d"), Column::Closed);
        assert_eq!(column("t-e"), Column::Ready);
        assert_eq!(column("t-f"), Column::Blocked);
    }

    #[test]
    fn a_landing_is_read_from_the_landers_log_entry() {
        let mut entry = LogEntry::new(LogLevel::Info, EventKind::Rpc);
        entry.rpc = Some("swarm.commit".into());
        entry.msg = Some("swarm.commit: landed 0123456789ab fix the parser".into());
        entry.commit = Some("0123456789abcdef".into());
        entry.slot = Some("s1".into());
        let landing = Landing::of(&entry).unwrap();
        assert_eq!(landing.subject, "fix the parser");
        entry.msg = Some("swarm.commit: landed 0123456789ab \"fix the parser\"".into());
        assert_eq!(Landing::of(&entry).unwrap().subject, "fix the parser");
        assert_eq!(landing.slot.as_deref(), Some("s1"));

        let mut model = Model::default();
        let (seq, applied) = model.apply(Change::One(Delta::Landing(landing)));
        assert_eq!(seq, 1);
        assert!(matches!(applied, Applied::Delta(_)));
        assert_eq!(
            model.snapshot().last_landing("s1").unwrap().subject,
            "fix the parser"
        );

        entry.err = Some("conflict".into());
        assert!(
            Landing::of(&entry).is_none(),
            "a failed landing is no landing"
        );
    }

    #[test]
    fn lists_keep_only_the_newest() {
        let mut model = Model::default();
        for i in 0..LOG_LINES + 10 {
            let entry = LogEntry::lifecycle(LogLevel::Info, format!("line {i}"));
            model.apply(Change::One(Delta::Log(Box::new(entry))));
        }
        let log = &model.snapshot().log;
        assert_eq!(log.len(), LOG_LINES);
        assert_eq!(
            log.back().unwrap().msg.as_deref(),
            Some(format!("line {}", LOG_LINES + 9).as_str())
        );
    }
}
