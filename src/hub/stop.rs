//! `hub stop`: SIGTERM, a grace period for the drain, then SIGKILL.
//!
//! `hub.pid` is removed only once the process is confirmed gone (decision 7;
//! the reference removed it unconditionally). Stopping a hub that is not
//! running succeeds, and clears what a crashed hub left behind. Without
//! `--force`, a stop is refused while any slot holds a live lease: agents
//! mid-task would lose their coordination server (decision 3).
//!
//! The hub to stop is the holder of the run lock (see [`crate::state::lock`]),
//! found even when `hub.pid` is gone; a `hub.json` copied from another
//! state directory names that directory's hub, which is never signalled.

use std::path::Path;
use std::time::Duration;

use crate::coord;
use crate::hub::{HubError, probe};
use crate::lease;
use crate::state::paths::Paths;
use crate::state::record;
use crate::state::record::{HubRecord, HubState};
use crate::state::workspace::Workspace;
use crate::sys::process;
use crate::sys::process::Termination;

/// Default time a hub gets to drain after SIGTERM before SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Options for [`stop`].
#[derive(Debug, Clone)]
pub struct StopOptions {
    /// Stop even while slots hold live leases.
    pub force: bool,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
}

impl Default for StopOptions {
    fn default() -> StopOptions {
        StopOptions {
            force: false,
            grace: DEFAULT_GRACE,
        }
    }
}

/// What [`stop`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// No hub was running. `cleaned` lists leftovers that were removed;
    /// `copy_of` names the state directory this one was copied from, whose
    /// hub (the pid its copied record names) was left alone.
    NotRunning {
        cleaned: Vec<String>,
        copy_of: Option<(std::path::PathBuf, u32)>,
    },
    /// The hub exited after SIGTERM (`killed` = false) or was SIGKILLed.
    Stopped { pid: u32, killed: bool },
}

/// Stops the hub of the workspace containing `root`.
pub fn stop(root: &Path, opts: &StopOptions) -> Result<StopOutcome, HubError> {
    let paths = Paths::new(&Workspace::discover(root)?);
    let record = match record::hub_state(&paths) {
        HubState::Running(record) => record,
        HubState::Stopped { stale_pid, copy_of } => {
            let copy_of = copy_of.map(|record| {
                let from = record.state_dir.map(|id| id.path).unwrap_or_default();
                (from, record.pid)
            });
            let mut cleaned = Vec::new();
            if let Some(pid) = stale_pid {
                HubRecord::remove(&paths).map_err(HubError::io("cannot remove", &paths.hub_pid))?;
                cleaned.push(format!("stale hub.pid (pid {pid} is gone)"));
            }
            if let Some(pid) = crate::hub::server::stop_orphan(&paths) {
                cleaned.push(format!("orphaned coord server (pid {pid})"));
            }
            return Ok(StopOutcome::NotRunning { cleaned, copy_of });
        }
    };
    if record.pid == std::process::id() {
        return Err(HubError::SelfSignal(record.pid));
    }
    if !opts.force {
        refuse_with_live_leases(&paths, record.repo_port)?;
    }
    let killed = match process::terminate(record.pid, opts.grace) {
        Termination::Exited => false,
        Termination::Killed => true,
        Termination::Survived => return Err(HubError::StillAlive(record.pid)),
    };
    // A hub that exits cleanly removes its own files; one that was killed
    // cannot, and neither can it stop its coordination server gracefully.
    // The files are cleared only while they still name the hub just seen
    // to exit: a hub started since then wrote its own. This asks the record
    // rather than the run lock, whose holder is gone and so could only be
    // looked up in `/proc/locks` (10 to 20 ms a read, in strace of this
    // very stop).
    if left_by(&paths, record.pid) {
        let _ = HubRecord::remove(&paths);
    }
    crate::state::registry::unregister(record.pid, record.start_time);
    crate::hub::server::stop_orphan(&paths);
    Ok(StopOutcome::Stopped {
        pid: record.pid,
        killed,
    })
}

fn refuse_with_live_leases(paths: &Paths, repo_port: u16) -> Result<(), HubError> {
    // the hub answers from its own connection; ask the coordination server
    // directly only when the hub cannot
    let checked = match probe::live_leases(repo_port, Duration::from_secs(3)) {
        Ok(live) => Ok(live),
        Err(_) => leases_from_coord(paths),
    };
    match checked {
        Ok(live) if live.is_empty() => Ok(()),
        Ok(live) => Err(HubError::ActiveSlots(live)),
        Err(why) => {
            // The coordination server is down, so no agent can renew or use
            // a lease either; stopping loses nothing (checkouts are kept).
            eprintln!("hub: warning: could not check slot leases ({why}); stopping anyway");
            Ok(())
        }
    }
}

/// Why the live leases could not be read from the coordination server.
#[derive(Debug, thiserror::Error)]
enum Unchecked {
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Coord(#[from] coord::CoordError),
    #[error(transparent)]
    Lease(#[from] lease::LeaseError),
    #[error("the sessions bucket did not answer within 5s")]
    Timeout,
}

fn leases_from_coord(paths: &Paths) -> Result<Vec<String>, Unchecked> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Unchecked::Runtime)?;
    let checked = runtime.block_on(async {
        let client = coord::connect(paths).await?;
        let js = async_nats::jetstream::new(client);
        Ok::<_, Unchecked>(
            tokio::time::timeout(Duration::from_secs(5), lease::live(&js))
                .await
                .map_err(|_| Unchecked::Timeout)??,
        )
    });
    checked.map(|live| live.iter().map(|l| l.slot().to_string()).collect())
}

/// Whether `hub.json` or `hub.pid` still names `pid`, a hub that has exited.
fn left_by(paths: &Paths, pid: u32) -> bool {
    HubRecord::read(paths).is_some_and(|record| record.pid == pid)
        || HubRecord::pid_file(paths) == Some(pid)
}
