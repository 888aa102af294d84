//! Every hub the user runs, from the per-user registry
//! ([`crate::state::registry`]): `bones hub status --all` and `bones hub reap`.
//!
//! An entry is judged by the process it names, never taken on trust:
//!
//! - **stale**: the pid is not running, or runs a process that started at
//!   another time (a reused pid), or one of another user, or one that is
//!   not `bones ... hub start`. The entry is removed by a reap; the process
//!   is never touched.
//! - **orphaned**: the very hub that registered (same uid, same start time,
//!   a hub's command line) whose state directory was deleted under it, or
//!   whose workspace is gone. Whether the state directory is gone is asked
//!   of the hub process itself: the run lock it holds for its whole life
//!   (`hub.run.lock`, see [`crate::state::lock`]) has no name left once the
//!   directory is deleted, while a workspace that was merely moved keeps it
//!   (and its hub, found there by `bones hub status`, is not an orphan).
//!   A reap stops it: SIGTERM, a grace for its own clean stop (which stops
//!   its `nats-server`), then SIGKILL, and then any `nats-server` child of
//!   it still running is stopped the same way.
//! - **serving**: anything else. Never stopped by a reap, healthy or not.

use std::path::PathBuf;
use std::time::Duration;

use crate::hub::{Health, server};
use crate::state::paths::Paths;
use crate::state::registry::{self, Entry, Listed, RegistryError};
use crate::state::workspace::Workspace;
use crate::sys::process::{self, Termination};

/// What an entry of the registry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The hub that registered, with its workspace and state directory.
    Serving,
    /// The hub that registered, whose workspace or state directory is gone
    /// (why, in words).
    Orphaned(String),
    /// No hub of this user: the entry outlived its hub (why, in words).
    Stale(String),
}

impl Condition {
    /// `serving`, `orphaned` or `stale`: the word `--json` prints.
    pub fn as_str(&self) -> &'static str {
        match self {
            Condition::Serving => "serving",
            Condition::Orphaned(_) => "orphaned",
            Condition::Stale(_) => "stale",
        }
    }

    /// Why it is orphaned or stale.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Condition::Serving => None,
            Condition::Orphaned(why) | Condition::Stale(why) => Some(why),
        }
    }
}

/// One registered hub, judged.
#[derive(Debug, Clone)]
pub struct Registered {
    /// Its file in the registry.
    pub file: PathBuf,
    pub entry: Entry,
    pub condition: Condition,
    /// What its status endpoint said, for a live hub (serving or orphaned).
    pub health: Option<Health>,
}

/// Every hub in the user's registry, judged and (the live ones) probed
/// like `bones hub status` probes one; the probes run side by side. Files
/// of the registry that are not entries are returned apart.
pub fn survey() -> Result<(Vec<Registered>, Vec<PathBuf>), RegistryError> {
    let (listed, unreadable) = registry::list()?;
    let judged: Vec<(Listed, Condition)> = listed
        .into_iter()
        .map(|l| {
            let condition = judge(&l.entry);
            (l, condition)
        })
        .collect();
    let hubs = std::thread::scope(|scope| {
        let probes: Vec<_> = judged
            .iter()
            .map(|(l, condition)| {
                let live = !matches!(condition, Condition::Stale(_));
                let record = l.entry.hub.clone();
                live.then(|| scope.spawn(move || crate::hub::health(record)))
            })
            .collect();
        judged
            .into_iter()
            .zip(probes)
            .map(|((l, condition), probe)| Registered {
                file: l.file,
                entry: l.entry,
                condition,
                health: probe.and_then(|p| p.join().ok()),
            })
            .collect()
    });
    Ok((hubs, unreadable))
}

/// Judges an entry by the process it names (see the module docs).
pub fn judge(entry: &Entry) -> Condition {
    let pid = entry.hub.pid;
    let Some(info) = process::inspect(pid).filter(|p| !p.zombie) else {
        return Condition::Stale(format!("pid {pid} is not running"));
    };
    if info.start_time != entry.hub.start_time {
        return Condition::Stale(format!(
            "pid {pid} is another process now (it started at another time)"
        ));
    }
    if !info.is_own() {
        return Condition::Stale(format!("pid {pid} runs as another user"));
    }
    if !crate::state::record::looks_like_hub(&info.cmdline) {
        return Condition::Stale(format!("pid {pid} is not a bones hub"));
    }
    orphaned(entry).map_or(Condition::Serving, Condition::Orphaned)
}

/// Why the live hub of `entry` is an orphan, if it is one.
fn orphaned(entry: &Entry) -> Option<String> {
    let paths = paths_of(entry);
    let lock_name = paths.run_lock.file_name()?.to_str()?;
    // the hub holds its run lock from before it registers until it exits;
    // when its descriptors cannot be read, nothing is known: not an orphan
    let held = process::open_files_named(entry.hub.pid, lock_name);
    let lock = held.first()?;
    if lock.links == 0 {
        let dir = lock.path.parent().unwrap_or(&lock.path);
        return Some(format!("its state directory {} was deleted", dir.display()));
    }
    // a state directory elsewhere (BONES_DIR) outlives its workspace
    let state_dir = lock.path.parent()?;
    let outside =
        !state_dir.starts_with(&entry.workspace) && !paths.state_dir.starts_with(&entry.workspace);
    (outside && !entry.workspace.exists())
        .then(|| format!("its workspace {} was deleted", entry.workspace.display()))
}

/// The state paths of the hub of `entry`, where it was when it started.
fn paths_of(entry: &Entry) -> Paths {
    let state_dir = entry
        .hub
        .state_dir
        .as_ref()
        .map(|id| id.path.clone())
        .unwrap_or_else(|| {
            entry
                .workspace
                .join(crate::state::workspace::STATE_DIR_NAME)
        });
    Paths::new(&Workspace {
        root: entry.workspace.clone(),
        state_dir,
    })
}

/// Options for [`reap`].
#[derive(Debug, Clone)]
pub struct ReapOptions {
    /// Say what would be done, and do nothing.
    pub dry_run: bool,
    /// Time between SIGTERM and SIGKILL for each orphan.
    pub grace: Duration,
}

/// What [`reap`] did with one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reaped {
    /// A serving hub: left alone.
    Kept,
    /// An orphan: stopped (`killed`: it ignored SIGTERM for the grace), with
    /// the `nats-server` children that were still running after it.
    Stopped {
        killed: bool,
        servers: Vec<u32>,
    },
    /// An orphan that is still running after SIGKILL.
    Failed(String),
    /// A stale entry: its file was removed.
    Removed,
    /// `--dry-run`: what would have been done (`stop` or `remove`).
    WouldStop,
    WouldRemove,
}

/// Stops every orphaned hub of the user and removes the stale entries.
/// Serving hubs, and every process an entry names that is not the hub it
/// registered, are left alone.
pub fn reap(opts: &ReapOptions) -> Result<Vec<(Registered, Reaped)>, RegistryError> {
    let (hubs, _) = survey()?;
    let mut done = Vec::with_capacity(hubs.len());
    for hub in hubs {
        let action = match (&hub.condition, opts.dry_run) {
            (Condition::Serving, _) => Reaped::Kept,
            (Condition::Orphaned(_), true) => Reaped::WouldStop,
            (Condition::Stale(_), true) => Reaped::WouldRemove,
            (Condition::Stale(_), false) => {
                registry::remove(&hub.file)?;
                Reaped::Removed
            }
            (Condition::Orphaned(_), false) => {
                let action = stop_orphan(&hub.entry, opts.grace);
                if matches!(action, Reaped::Stopped { .. } | Reaped::Removed) {
                    registry::remove(&hub.file)?;
                }
                action
            }
        };
        done.push((hub, action));
    }
    Ok(done)
}

/// How long a `nats-server` left by a stopped orphan gets after SIGTERM.
const SERVER_GRACE: Duration = Duration::from_secs(2);

/// Stops the orphaned hub of `entry`, then whatever `nats-server` child of
/// it outlived it.
fn stop_orphan(entry: &Entry, grace: Duration) -> Reaped {
    let pid = entry.hub.pid;
    if pid == std::process::id() {
        // a hub run as a library, reaping: it stops through its own signals
        return Reaped::Failed(format!("pid {pid} is this very process; send it SIGTERM"));
    }
    // judged again at the last moment: the hub may have exited meanwhile,
    // and its pid been taken by another process
    match judge(entry) {
        Condition::Orphaned(_) => {}
        Condition::Stale(_) => return Reaped::Removed,
        Condition::Serving => return Reaped::Kept,
    }
    let servers = children_running_config(pid, &paths_of(entry));
    let killed = match process::terminate(pid, grace) {
        Termination::Exited => false,
        Termination::Killed => true,
        Termination::Survived => {
            return Reaped::Failed(format!("pid {pid} is still running after SIGKILL"));
        }
    };
    // it stops its server on SIGTERM, and the server dies with it on
    // SIGKILL (PR_SET_PDEATHSIG); one that survived either is stopped here
    let mut left = Vec::new();
    for (server, start_time) in servers {
        if process::is_same_process(server, start_time) {
            process::terminate(server, SERVER_GRACE);
            left.push(server);
        }
    }
    Reaped::Stopped {
        killed,
        servers: left,
    }
}

/// The children of `pid` running the coordination server config of
/// `paths`, with their start times: the servers an orphaned hub supervises.
fn children_running_config(pid: u32, paths: &Paths) -> Vec<(u32, u64)> {
    process::scan()
        .into_iter()
        .filter(|row| row.parent == Some(pid))
        .filter(|row| server::runs_our_config(paths, &row.info))
        .map(|row| (row.pid, row.info.start_time))
        .collect()
}
