//! The live picture of the swarm, for the hub's web page and a terminal
//! view: slots and their leases, the task board, trunk's recent landings,
//! the knowledge feed, hub.log and the health of each of those parts.
//!
//! It is built from what the coordination server and the state directory
//! push, never by looking again on a timer: KV watches on the sessions and
//! tasks buckets, an ordered consumer on the feed ([`follow`]), and hub.log
//! through inotify ([`logtail`]), and the landings the lander announces on
//! [`LANDINGS_SUBJECT`] (whatever hub.log's level; the landings already in
//! hub.log's tail are the history a new picture starts from). A subscriber
//! gets a [`Snapshot`], then each change as a [`Delta`] numbered in order.
//!
//! A [`View`] costs nothing until someone subscribes: the followers start
//! with the first subscriber and stop [`LINGER`] after the last one left.
//! The one timer, [`CHANGES_EVERY`], rescans checkouts for uncommitted
//! changes, and runs only while the followers do.
//! It needs only a workspace's paths and a way to reach its coordination
//! server ([`Connector`]), so the hub serves it from its own connection and
//! a client process builds the same picture with the workspace credential
//! ([`ClientConnector`]).

pub mod checkout;
pub mod follow;
pub mod logtail;
pub mod model;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

pub use model::{Applied, Change, Column, Delta, Landing, Model, Snapshot, SourceHealth};

use crate::state::paths::Paths;
use crate::sys::clock::utc_now_rfc3339;

/// How long the followers keep running after the last subscriber left: a
/// page that reloads, or whose stream the HTTP server's connection bound
/// closed, comes back within it and finds the picture ready.
pub const LINGER: Duration = Duration::from_secs(10);

/// The environment variable that sets the hub's [`LINGER`] in milliseconds
/// (read once when the hub starts; tests shorten it to see the followers
/// stop).
pub const LINGER_ENV: &str = "BONES_UI_LINGER_MS";

/// The core NATS subject the lander announces each landing on, as a JSON
/// [`Landing`] stamped with the time it acknowledged the landing. Core, not
/// JetStream: with no view following, the server drops it.
pub const LANDINGS_SUBJECT: &str = "bones.hub.landed";

/// How often checkouts are scanned for uncommitted changes while someone
/// watches (files edited between two slot verbs say nothing). The interval
/// grows with the scan's own time so it never takes more than
/// 1/[`CHANGES_SHARE`] of a core on a large repository.
pub const CHANGES_EVERY: Duration = Duration::from_secs(5);
const CHANGES_SHARE: u32 = 100;

/// The `rpc` of the hub.log entry the lander writes for a slot's commit
/// (landed or not, the checkout's files were all committed first).
const COMMIT_RPC: &str = "swarm.commit";

/// The shortest time between two reads of the slots' git facts: a burst of
/// landings and slot verbs is read once, after it. Each landing moves every
/// idle slot's "behind" by one, a delta per slot; at 10 landings a second a
/// quarter of a second sends those for two or three landings at once.
/// Landings themselves reach the page at once.
const GIT_WINDOW: Duration = Duration::from_millis(250);

/// How long a follower waits before starting again after its part failed.
pub const RETRY: Duration = Duration::from_secs(1);

/// Changes a subscriber may fall behind by before it is sent a fresh
/// snapshot instead.
const BACKLOG: usize = 1024;

/// A future that yields a JetStream context.
pub type Connecting = Pin<Box<dyn Future<Output = Result<jetstream::Context, String>> + Send>>;

/// How a view reaches the coordination server.
pub trait Connector: Send + Sync + 'static {
    /// A JetStream context, or why there is none yet (tried again after
    /// [`RETRY`]).
    fn connect(&self) -> Connecting;
}

/// Connects as a client of the workspace's hub, with its credential.
pub struct ClientConnector(pub Paths);

impl Connector for ClientConnector {
    fn connect(&self) -> Connecting {
        let paths = self.0.clone();
        Box::pin(async move {
            crate::coord::connect_running(&paths)
                .await
                .map(jetstream::new)
                .map_err(|e| e.to_string())
        })
    }
}

/// What a subscriber receives.
#[derive(Debug, Clone)]
pub enum Update {
    /// The whole picture: on subscribing, after a part was read afresh, and
    /// after the subscriber fell behind.
    Snapshot(Arc<Snapshot>),
    /// One change; its number is the snapshot's plus one, and so on.
    Delta { seq: u64, delta: Arc<Delta> },
}

/// The live picture, shared by its subscribers.
#[derive(Clone)]
pub struct View {
    inner: Arc<Inner>,
}

struct Inner {
    paths: Paths,
    connector: Box<dyn Connector>,
    linger: Duration,
    state: Mutex<State>,
    /// Whether the followers run, for [`View::idle`].
    running: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    subscribers: usize,
    /// Counts starts, so a stop scheduled for an earlier run leaves a
    /// later one alone.
    generation: u64,
    running: Option<Running>,
}

/// The followers of one run, and the picture they build.
struct Running {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The picture and its subscribers' channel, changed under one lock so a
/// new subscriber's snapshot and the deltas after it never overlap.
struct Shared {
    model: Mutex<Model>,
    updates: broadcast::Sender<Update>,
    /// What git facts to read again, and the wake-up of their reader.
    due: Mutex<checkout::Due>,
    due_notify: tokio::sync::Notify,
    /// How long the last scan of every checkout took.
    full_scan: Mutex<Duration>,
}

impl Shared {
    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, change: Change) {
        self.note_due(&change);
        let mut model = self.model();
        // a landing announced while hub.log's tail was read comes twice
        if let Change::One(Delta::Landing(landing)) = &change
            && model
                .snapshot()
                .landings
                .iter()
                .any(|l| l.commit == landing.commit)
        {
            return;
        }
        let (seq, applied) = model.apply(change);
        let update = match applied {
            Applied::Delta(delta) => Update::Delta { seq, delta },
            Applied::Reset => Update::Snapshot(Arc::new(model.snapshot().clone())),
        };
        // no receiver: nothing to tell
        let _ = self.updates.send(update);
    }

    /// Notes which slots' git facts a change may have moved.
    ///
    /// A slot's checkout is scanned when it appears and after a slot verb's
    /// hub.log entry, but not on a lease renewal: agents renew on every
    /// verb and between them, which says nothing about their files (the
    /// slow rescan sees edits made between verbs). A commit needs no scan
    /// either: `swarm commit` commits everything in the checkout before it
    /// asks the hub to land it, so nothing is left uncommitted.
    fn note_due(&self, change: &Change) {
        let appeared = match change {
            Change::One(Delta::Slot {
                slot,
                state: Some(_),
            }) => !self.model().snapshot().slots.contains_key(slot),
            _ => false,
        };
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        match change {
            Change::Slots(all) => due.slots.extend(all.iter().map(|s| s.slot.clone())),
            Change::One(Delta::Slot { slot, .. }) if appeared => {
                due.slots.insert(slot.clone());
            }
            Change::One(Delta::Log(entry)) if entry.rpc.as_deref() == Some(COMMIT_RPC) => {
                due.committed.extend(entry.slot.clone());
            }
            // a slot verb's own entry (join writes its lease before the
            // checkout exists)
            Change::One(Delta::Log(entry)) if entry.slot.is_some() => {
                due.slots.extend(entry.slot.clone());
            }
            Change::One(Delta::Landing(landing)) => {
                due.trunk_moved = true;
                due.committed.extend(landing.slot.clone());
            }
            _ => return,
        }
        drop(due);
        self.due_notify.notify_one();
    }

    fn health(&self, name: &str, result: Result<(), String>) {
        let health = SourceHealth {
            ok: result.is_ok(),
            detail: result.err().unwrap_or_default(),
            since: utc_now_rfc3339(),
        };
        let unchanged = self
            .model()
            .snapshot()
            .sources
            .get(name)
            .is_some_and(|h| h.ok == health.ok && h.detail == health.detail);
        if !unchanged {
            self.apply(Change::One(Delta::Source {
                name: name.to_string(),
                health,
            }));
        }
    }
}

impl View {
    /// A view of the workspace at `paths`, reaching its coordination
    /// server through `connector`. Nothing runs until [`View::subscribe`].
    pub fn new(paths: Paths, connector: impl Connector) -> View {
        View::with_linger(paths, connector, LINGER)
    }

    /// A view whose followers stop `linger` after the last subscriber left.
    pub fn with_linger(paths: Paths, connector: impl Connector, linger: Duration) -> View {
        View {
            inner: Arc::new(Inner {
                paths,
                connector: Box::new(connector),
                linger,
                state: Mutex::default(),
                running: tokio::sync::watch::Sender::new(false),
            }),
        }
    }

    /// The hub's linger: [`LINGER_ENV`] when set to a number of
    /// milliseconds, else [`LINGER`].
    pub fn linger_from_env() -> Duration {
        std::env::var(LINGER_ENV)
            .ok()
            .and_then(|ms| ms.trim().parse().ok())
            .map_or(LINGER, Duration::from_millis)
    }

    /// Subscribes, starting the followers if none run. Must be called
    /// within a tokio runtime.
    pub fn subscribe(&self) -> Subscription {
        let mut state = self.inner.state();
        state.subscribers += 1;
        if state.running.is_none() {
            state.generation += 1;
            state.running = Some(self.start());
        }
        let shared = state
            .running
            .as_ref()
            .map(|r| r.shared.clone())
            .expect("started above");
        let model = shared.model();
        let first = Arc::new(model.snapshot().clone());
        let updates = shared.updates.subscribe();
        drop(model);
        Subscription {
            view: self.clone(),
            shared: shared.clone(),
            held: Some(Update::Snapshot(first)),
            updates,
        }
    }

    /// Whether the followers run (for tests of the idle cost).
    pub fn is_running(&self) -> bool {
        self.inner.state().running.is_some()
    }

    /// Returns once the followers do not run (at once when they never
    /// started).
    pub async fn idle(&self) {
        let mut running = self.inner.running.subscribe();
        // the sender lives in `inner`, which `self` holds
        let _ = running.wait_for(|running| !*running).await;
    }

    fn start(&self) -> Running {
        let (updates, _) = broadcast::channel(BACKLOG);
        let shared = Arc::new(Shared {
            model: Mutex::default(),
            updates,
            due: Mutex::default(),
            due_notify: tokio::sync::Notify::new(),
            full_scan: Mutex::default(),
        });
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(read_slot_git(
            self.inner.paths.clone(),
            shared.clone(),
        )));
        tasks.push(tokio::spawn(rescan_changes(shared.clone())));
        tasks.push(tokio::spawn(follow_log(
            self.inner.paths.clone(),
            shared.clone(),
        )));
        type Part = for<'a> fn(
            &'a jetstream::Context,
            &'a (dyn Fn(Change) + Sync),
        )
            -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
        let parts: [(&str, Part); 4] = [
            ("slots", |js, emit| Box::pin(follow::slots(js, emit))),
            ("tasks", |js, emit| Box::pin(follow::tasks(js, emit))),
            ("feed", |js, emit| Box::pin(follow::feed(js, emit))),
            ("landings", |js, emit| Box::pin(follow::landings(js, emit))),
        ];
        for (name, part) in parts {
            let (inner, shared) = (self.inner.clone(), shared.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let result = match inner.connector.connect().await {
                        Ok(js) => {
                            let emit = |change| shared.apply(change);
                            shared.health(name, Ok(()));
                            part(&js, &emit).await
                        }
                        Err(err) => Err(err),
                    };
                    shared.health(name, result);
                    tokio::time::sleep(RETRY).await;
                }
            }));
        }
        self.inner.running.send_replace(true);
        Running { shared, tasks }
    }

    /// One subscriber left: stop the followers [`LINGER`] after the last.
    fn unsubscribe(&self) {
        let mut state = self.inner.state();
        state.subscribers = state.subscribers.saturating_sub(1);
        if state.subscribers > 0 {
            return;
        }
        let generation = state.generation;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let inner = self.inner.clone();
                runtime.spawn(async move {
                    tokio::time::sleep(inner.linger).await;
                    let mut state = inner.state();
                    if state.subscribers == 0 && state.generation == generation {
                        inner.stop(&mut state);
                    }
                });
            }
            Err(_) => self.inner.stop(&mut state),
        }
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stop(&self, state: &mut State) {
        state.running = None;
        self.running.send_replace(false);
    }
}

/// Follows hub.log into the picture, starting again after a failure.
async fn follow_log(paths: Paths, shared: Arc<Shared>) {
    loop {
        let subjects = Subjects::open(&paths.hub_repo);
        let landing = |entry: &crate::oplog::LogEntry| {
            Landing::of(entry).map(|mut landing| {
                if let Some(subject) = subjects.of(&landing.commit) {
                    landing.subject = subject;
                }
                landing
            })
        };
        let result = logtail::follow(
            paths.hub_log.clone(),
            |tail| {
                let landings = tail.iter().filter_map(landing).collect();
                shared.health("hub.log", Ok(()));
                shared.apply(Change::Log(tail, landings));
            },
            // later landings come from the lander's announcements
            |entry| shared.apply(Change::One(Delta::Log(Box::new(entry)))),
        )
        .await;
        let why = match result {
            Ok(()) => "stopped".to_string(),
            Err(err) => format!("cannot follow {}: {err}", paths.hub_log.display()),
        };
        shared.health("hub.log", Err(why));
        tokio::time::sleep(RETRY).await;
    }
}

/// Reads the git facts of slots as changes make them due, at most once a
/// [`GIT_WINDOW`]: changes that arrive meanwhile are taken together by the
/// next read.
async fn read_slot_git(paths: Paths, shared: Arc<Shared>) {
    let mut counter = Some(checkout::Counter::new(paths));
    loop {
        shared.due_notify.notified().await;
        let due = std::mem::take(&mut *shared.due.lock().unwrap_or_else(|p| p.into_inner()));
        if due.is_empty() {
            continue;
        }
        let next = tokio::time::Instant::now() + GIT_WINDOW;
        let (all, known) = {
            let model = shared.model();
            let s = model.snapshot();
            (
                s.slots.keys().cloned().collect::<Vec<_>>(),
                s.slot_git.clone(),
            )
        };
        let Some(mut reader) = counter.take() else {
            return;
        };
        let started = std::time::Instant::now();
        let read = tokio::task::spawn_blocking(move || {
            let read = reader.read(&due, &all, |slot| known.get(slot).cloned());
            (reader, read, due.older_than.is_some())
        })
        .await;
        // the blocking task panicked: nothing more to read with
        let Ok((reader, read, rescan)) = read else {
            return;
        };
        counter = Some(reader);
        if rescan {
            *shared.full_scan.lock().unwrap_or_else(|p| p.into_inner()) = started.elapsed();
        }
        for (slot, git) in read {
            let unchanged = shared.model().snapshot().slot_git.get(&slot) == Some(&git);
            if !unchanged {
                shared.apply(Change::One(Delta::SlotGit { slot, git }));
            }
        }
        tokio::time::sleep_until(next).await;
    }
}

/// Scans every checkout for uncommitted changes every [`CHANGES_EVERY`]
/// (or longer, when a scan is slow), while the followers run.
async fn rescan_changes(shared: Arc<Shared>) {
    loop {
        let took = *shared.full_scan.lock().unwrap_or_else(|p| p.into_inner());
        tokio::time::sleep(CHANGES_EVERY.max(took * CHANGES_SHARE)).await;
        // a checkout a verb had scanned in the last half of the interval
        // is left for the next round
        shared
            .due
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .older_than = Some(CHANGES_EVERY / 2);
        shared.due_notify.notify_one();
    }
}

/// Reads landed commits' subjects from the hub repository: hub.log holds
/// them quoted and cut at 40 characters.
struct Subjects {
    /// Behind a lock only to be shared by the follower's two callbacks
    /// (a repository handle is not `Sync`); they never run at once.
    repo: Option<Mutex<git2::Repository>>,
}

impl Subjects {
    fn open(hub_repo: &std::path::Path) -> Subjects {
        Subjects {
            repo: git2::Repository::open_bare(hub_repo).ok().map(Mutex::new),
        }
    }

    /// The first line of `commit`'s message (one object read).
    fn of(&self, commit: &str) -> Option<String> {
        let repo = self.repo.as_ref()?.lock().ok()?;
        let id = git2::Oid::from_str(commit).ok()?;
        let found = repo.find_commit(id).ok()?;
        found.summary().ok().flatten().map(str::to_string)
    }
}

/// One subscriber's place in the view; dropping it unsubscribes.
pub struct Subscription {
    view: View,
    shared: Arc<Shared>,
    /// The next update, taken from the channel but not yet handed out
    /// (the first snapshot; a snapshot met while gathering deltas).
    held: Option<Update>,
    updates: broadcast::Receiver<Update>,
}

impl Subscription {
    /// The next update: the snapshot taken when subscribing first, then
    /// each change; a fresh snapshot when this subscriber fell behind.
    pub async fn next(&mut self) -> Update {
        if let Some(held) = self.held.take() {
            return held;
        }
        match self.updates.recv().await {
            Ok(update) => update,
            Err(broadcast::error::RecvError::Lagged(_)) => self.caught_up(),
            // the sender lives as long as this subscription's run
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }

    /// The deltas already waiting, in order, at most `most` (a page sends
    /// them as one frame); a snapshot among them is kept for [`Self::next`].
    pub fn ready_deltas(&mut self, most: usize) -> Vec<(u64, Arc<Delta>)> {
        let mut deltas = Vec::new();
        while deltas.len() < most && self.held.is_none() {
            let update = match self.updates.try_recv() {
                Ok(update) => update,
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.caught_up(),
                Err(_) => break,
            };
            match update {
                Update::Delta { seq, delta } => deltas.push((seq, delta)),
                snapshot => self.held = Some(snapshot),
            }
        }
        deltas
    }

    /// A fresh snapshot for a subscriber that fell behind.
    fn caught_up(&mut self) -> Update {
        let model = self.shared.model();
        self.updates = self.updates.resubscribe();
        Update::Snapshot(Arc::new(model.snapshot().clone()))
    }

    /// The picture now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::new(self.shared.model().snapshot().clone())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.view.unsubscribe();
    }
}
