//! The live picture of the swarm, for the hub's web page and a terminal
//! view: slots and their leases, the task board, trunk's recent landings,
//! the knowledge feed, hub.log and the health of each of those parts.
//!
//! It is built from what the coordination server and the state directory
//! push, never by looking again on a timer: KV watches on the sessions and
//! tasks buckets, an ordered consumer on the feed ([`follow`]), and hub.log
//! through inotify ([`logtail`]); the lander records each landing in
//! hub.log, so landings come with it. A subscriber gets a [`Snapshot`],
//! then each change as a [`Delta`] numbered in order.
//!
//! A [`View`] costs nothing until someone subscribes: the followers start
//! with the first subscriber and stop [`LINGER`] after the last one left.
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
    state: Mutex<State>,
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
}

impl Shared {
    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, change: Change) {
        self.note_due(&change);
        let mut model = self.model();
        let (seq, applied) = model.apply(change);
        let update = match applied {
            Applied::Delta(delta) => Update::Delta { seq, delta },
            Applied::Reset => Update::Snapshot(Arc::new(model.snapshot().clone())),
        };
        // no receiver: nothing to tell
        let _ = self.updates.send(update);
    }

    /// Notes which slots' git facts a change may have moved.
    fn note_due(&self, change: &Change) {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        match change {
            Change::Slots(all) => due.slots.extend(all.iter().map(|s| s.slot.clone())),
            Change::One(Delta::Slot {
                slot,
                state: Some(_),
            }) => {
                due.slots.insert(slot.clone());
            }
            // a slot verb's own entry (join writes its lease before the
            // checkout exists)
            Change::One(Delta::Log(entry)) if entry.slot.is_some() => {
                due.slots.extend(entry.slot.clone());
            }
            Change::One(Delta::Landing(_)) => due.trunk_moved = true,
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
        View {
            inner: Arc::new(Inner {
                paths,
                connector: Box::new(connector),
                state: Mutex::default(),
            }),
        }
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
            first: Some(first),
            updates,
        }
    }

    /// Whether the followers run (for tests of the idle cost).
    pub fn is_running(&self) -> bool {
        self.inner.state().running.is_some()
    }

    fn start(&self) -> Running {
        let (updates, _) = broadcast::channel(BACKLOG);
        let shared = Arc::new(Shared {
            model: Mutex::default(),
            updates,
            due: Mutex::default(),
            due_notify: tokio::sync::Notify::new(),
        });
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(read_slot_git(
            self.inner.paths.clone(),
            shared.clone(),
        )));
        tasks.push(tokio::spawn(follow_log(
            self.inner.paths.clone(),
            shared.clone(),
        )));
        type Part = for<'a> fn(
            &'a jetstream::Context,
            &'a (dyn Fn(Change) + Sync),
        )
            -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
        let parts: [(&str, Part); 3] = [
            ("slots", |js, emit| Box::pin(follow::slots(js, emit))),
            ("tasks", |js, emit| Box::pin(follow::tasks(js, emit))),
            ("feed", |js, emit| Box::pin(follow::feed(js, emit))),
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
                    tokio::time::sleep(LINGER).await;
                    let mut state = inner.state();
                    if state.subscribers == 0 && state.generation == generation {
                        state.running = None;
                    }
                });
            }
            Err(_) => state.running = None,
        }
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
            |entry| {
                let landed = landing(&entry);
                shared.apply(Change::One(Delta::Log(Box::new(entry))));
                if let Some(landed) = landed {
                    shared.apply(Change::One(Delta::Landing(landed)));
                }
            },
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

/// Reads the git facts of slots as changes make them due; changes that
/// arrive while a read runs are taken together by the next one.
async fn read_slot_git(paths: Paths, shared: Arc<Shared>) {
    loop {
        shared.due_notify.notified().await;
        let due = std::mem::take(&mut *shared.due.lock().unwrap_or_else(|p| p.into_inner()));
        if due.is_empty() {
            continue;
        }
        let (all, known) = {
            let model = shared.model();
            let s = model.snapshot();
            (
                s.slots.keys().cloned().collect::<Vec<_>>(),
                s.slot_git.clone(),
            )
        };
        let paths = paths.clone();
        let read = tokio::task::spawn_blocking(move || {
            checkout::read(&paths, &due, &all, |slot| known.get(slot).cloned())
        })
        .await
        .unwrap_or_default();
        for (slot, git) in read {
            let unchanged = shared.model().snapshot().slot_git.get(&slot) == Some(&git);
            if !unchanged {
                shared.apply(Change::One(Delta::SlotGit { slot, git }));
            }
        }
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
    first: Option<Arc<Snapshot>>,
    updates: broadcast::Receiver<Update>,
}

impl Subscription {
    /// The next update: the snapshot taken when subscribing first, then
    /// each change; a fresh snapshot when this subscriber fell behind.
    pub async fn next(&mut self) -> Update {
        if let Some(first) = self.first.take() {
            return Update::Snapshot(first);
        }
        match self.updates.recv().await {
            Ok(update) => update,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let model = self.shared.model();
                self.updates = self.updates.resubscribe();
                Update::Snapshot(Arc::new(model.snapshot().clone()))
            }
            // the sender lives as long as this subscription's run
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
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
