//! The hub: one per workspace. It runs the coordination server (a supervised
//! `nats-server` child), owns the hub repository (`hub.git`, driven through
//! git2), serves `/.status`, and writes the operator log.
//!
//! The public surface mirrors the reference design: [`start`], [`stop`],
//! [`is_running`], [`status`], [`repo_url`], [`nats_url`] and
//! [`hub_repo_path`], with options structs so new knobs never break callers.

pub mod backup;
pub mod damage;
mod detach;
pub mod guards;
pub mod http;
mod lander;
pub mod probe;
pub mod projector;
pub mod registry;
pub mod repair;
mod run;
pub mod server;
mod services;
pub mod status;
mod stop;
pub mod storage;
pub mod ui;
mod watcher;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::oplog::{EventKind, HubLog, LogEntry, LogLevel};
pub use paths::Paths;
pub use ports::Ports;
pub use record::{HubRecord, HubState};
pub use status::StatusReport;
pub use stop::{StopOptions, StopOutcome, stop};

use crate::coord;
use crate::state::lock;
use crate::state::paths;
use crate::state::ports;
use crate::state::record;
use crate::state::workspace::{Workspace, WorkspaceError};
use crate::sys::fsutil;
use crate::sys::gitcli::Progress;
use crate::trunk::repo;

/// Default bound on a graceful shutdown.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a detached start waits for the hub to be ready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Options for [`start`].
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Run the hub in a new background session and return once it is ready.
    pub detach: bool,
    /// Repo (HTTP) port; `None` = recorded port, else a free one.
    pub repo_port: Option<u16>,
    /// Coordination server port; `None` = recorded port, else a free one.
    pub coord_port: Option<u16>,
    /// Bound on the graceful shutdown after SIGINT/SIGTERM.
    pub drain_timeout: Duration,
    /// How long to wait for the hub (and its coordination server) to be ready.
    pub ready_timeout: Duration,
    /// Log level floor (`debug|info|warn|error`); `None` = env, else INFO.
    pub log_level: Option<String>,
    /// The `bones` binary a detached start runs; `None` = this executable.
    pub program: Option<PathBuf>,
    /// Set in the background process a detached start spawned: the parent
    /// already ran the guards, holds the lock and chose the ports.
    pub detached_child: bool,
}

impl Default for StartOptions {
    fn default() -> StartOptions {
        StartOptions {
            detach: false,
            repo_port: None,
            coord_port: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            log_level: None,
            program: None,
            detached_child: false,
        }
    }
}

/// What [`start`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// A hub was already running; nothing was changed.
    AlreadyRunning(HubRecord),
    /// A detached hub was started and is ready.
    Started { pid: u32, ports: Ports },
    /// The foreground hub ran and has stopped cleanly.
    Exited,
}

/// Everything that can go wrong in the hub lifecycle.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Guard(#[from] guards::GuardError),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Ports(#[from] ports::PortError),
    #[error(transparent)]
    Coord(#[from] coord::CoordError),
    #[error(transparent)]
    LogSetting(#[from] crate::oplog::LogSettingError),
    #[error("{0}")]
    Repo(#[from] repo::RepoError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bind the repo port 127.0.0.1:{port}: {source}; pick another with --repo-port")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("the hub exited before it was ready ({status}); hub.log says:\n{tail}")]
    ChildExited { status: String, tail: String },
    #[error(
        "the hub was not ready within {waited:?} ({reason}); it was stopped. hub.log says:\n{tail}"
    )]
    NotReady {
        waited: Duration,
        reason: String,
        tail: String,
    },
    #[error("shutdown exceeded the drain timeout of {0:?}; remaining parts were killed")]
    DrainTimeout(Duration),
    #[error(
        "refusing to stop: slots hold live leases: {}; close them first (`bones swarm close`) or pass --force",
        .0.join(", ")
    )]
    ActiveSlots(Vec<String>),
    #[error(
        "hub pid {0} is still alive after SIGKILL; hub.pid was kept. Check it with `ps -p {0}`"
    )]
    StillAlive(u32),
    #[error(
        "hub.pid names this very process ({0}); a hub never signals itself. Send it SIGTERM from another shell"
    )]
    SelfSignal(u32),
    #[error(
        "another hub (pid {0}) holds the run lock of this state directory; use it, or stop it with `bones hub stop`"
    )]
    RunLockHeld(u32),
    /// A service of the hub (the landing service, the task projector, the
    /// knowledge feed) did not start.
    #[error("cannot start the hub's {what}: {source}")]
    Service {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "cannot start the hub's live view: cannot read or make the session key {path}: {source}"
    )]
    UiKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl crate::sys::error::Kinded for HubError {
    fn kind(&self) -> crate::sys::error::ErrorKind {
        use crate::sys::error::ErrorKind;
        match self {
            HubError::Coord(err) => err.kind(),
            HubError::Workspace(err) => err.kind(),
            HubError::LogSetting(_) => ErrorKind::Usage,
            HubError::ActiveSlots(_) => ErrorKind::LiveLeases,
            HubError::NotReady { .. } | HubError::DrainTimeout(_) | HubError::StillAlive(_) => {
                ErrorKind::Timeout
            }
            HubError::Lock(_) | HubError::RunLockHeld(_) => ErrorKind::Contended,
            HubError::Repo(err) => err.kind(),
            HubError::Io { .. } | HubError::Bind { .. } | HubError::Runtime(_) => ErrorKind::Io,
            HubError::Guard(_) | HubError::Ports(_) | HubError::SelfSignal(_) => ErrorKind::Refused,
            HubError::ChildExited { .. } | HubError::Service { .. } => ErrorKind::Server,
            HubError::UiKey { .. } => ErrorKind::Io,
        }
    }
}

impl HubError {
    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HubError {
        let path = path.to_path_buf();
        move |source| HubError::Io { what, path, source }
    }
}

/// How the coordination key (and an older bones' token) is judged before a
/// start reads it: one another user planted would let that user in.
const SECRET: fsutil::StatePath = fsutil::StatePath {
    what: "coordination key",
    dir: false,
    fix_foreign: "Remove it; the hub makes a new one when it starts",
};

/// How long a detached hub waits for the run lock its starter released
/// just before spawning it.
const RUN_LOCK_HANDOVER: Duration = Duration::from_secs(5);

/// Starts the hub of the workspace containing `root` (see the module docs
/// of `cli::hub` for the user-facing contract).
///
/// Exactly one hub runs per state directory: the hub holds the run lock
/// (`hub.run.lock`) for its whole life, and a start that finds it held
/// reports that hub and changes nothing. Starts are serialised by the
/// start lock (`hub.lock`), held until the new hub is ready, so a second
/// starter waits and then finds the first one's hub (decision 6).
pub fn start(root: &Path, opts: &StartOptions) -> Result<StartOutcome, HubError> {
    // before anything is created or spawned: libgit2 and nats-server create
    // files with modes of their own, which only the umask makes owner-only
    fsutil::restrict_umask();
    // read once, here, and refused when bad: the hub alone rotates hub.log
    let log_config = crate::oplog::LogConfig::from_env(opts.log_level.as_deref())?;
    let ws = Workspace::discover(root)?;
    let paths = Paths::new(&ws);
    // a state directory or key another user made or can reach is refused
    // before anything in it is read, written or run
    fsutil::check_private(&paths.state_dir, crate::state::workspace::STATE_DIR)
        .map_err(WorkspaceError::from)?;
    for secret in [&paths.nats_seed, &paths.nats_token] {
        fsutil::check_private(secret, SECRET).map_err(WorkspaceError::from)?;
    }
    let hub_log = HubLog::open(&paths.hub_log, log_config);
    if opts.detached_child {
        // the starter released the run lock just before spawning this
        // process; whoever else holds it now is another hub
        let run_lock = match lock::RunLock::acquire(&paths.run_lock, RUN_LOCK_HANDOVER) {
            Ok(run_lock) => run_lock,
            Err(lock::LockError::Timeout { .. }) => {
                let holder = running_hub(&paths).pid;
                hub_log.error(
                    "hub: another hub runs for this state directory; this one exits",
                    format!("pid {holder} holds {}", paths.run_lock.display()),
                );
                return Err(HubError::RunLockHeld(holder));
            }
            Err(err) => return Err(err.into()),
        };
        let ports = Ports {
            repo: opts.repo_port.unwrap_or_default(),
            coord: opts.coord_port.unwrap_or_default(),
        };
        let result = run::foreground(&paths, ports, opts, None, hub_log);
        drop(run_lock);
        return result.map(|()| StartOutcome::Exited);
    }

    guards::no_stale_claude_worktrees(&ws.root)?;
    // a running hub with no start in progress: nothing to wait for. While
    // a start runs, wait for it below, so the answer comes once its hub is
    // ready (decision 6)
    // (only when the run lock's holder is plain to see: otherwise the
    // locks taken below tell, without a read of the kernel's lock table)
    if lock::quick_holder(&paths.run_lock).is_some()
        && lock::holder(&paths.lock) == lock::Holder::Free
        && let HubState::Running(record) = record::hub_state(&paths)
    {
        return Ok(StartOutcome::AlreadyRunning(record));
    }
    if !paths.hub_repo.join("HEAD").is_file() {
        guards::has_tracked_files(&ws.root)?;
    }
    // a hub without trunk can land nothing: it once waited out the whole
    // ready timeout to say only "degraded"; name the missing ref at once
    repo::require_trunk(&paths.hub_repo)?;
    crate::hub::server::find_nats_server()?;
    // nats.conf must name the store; refuse before anything is written
    if paths.coord_dir.to_str().is_none() {
        return Err(coord::CoordError::NonUtf8Path(paths.state_dir.clone()).into());
    }
    fsutil::ensure_private_dir(&paths.state_dir)
        .map_err(HubError::io("cannot create", &paths.state_dir))?;

    let lock = match lock::WorkspaceLock::acquire(
        &paths.lock,
        opts.ready_timeout + Duration::from_secs(5),
    ) {
        Ok(lock) => lock,
        Err(err) => {
            // a start lock held past any start (doctor: hub-lock-held)
            // must not fail a start that has nothing to do
            if let HubState::Running(record) = record::hub_state(&paths) {
                return Ok(StartOutcome::AlreadyRunning(record));
            }
            return Err(err.into());
        }
    };
    // another starter may have won the race while we waited for the lock;
    // or a hub runs whose pid files are gone: it still holds the run lock
    let Some(run_lock) = lock::RunLock::try_acquire(&paths.run_lock)? else {
        return Ok(StartOutcome::AlreadyRunning(running_hub(&paths)));
    };
    // holding the run lock, no hub of this version runs here; one started
    // before the run lock existed is still recognised by its pid files
    if let HubState::Running(record) = record::left_behind(&paths) {
        return Ok(StartOutcome::AlreadyRunning(record));
    }
    clear_leftovers(&paths, &hub_log);
    let ports = ports::resolve(
        &paths,
        ports::PortRequest {
            repo: opts.repo_port,
            coord: opts.coord_port,
        },
        |line| hub_log.warn(line),
    )?;
    // the first start seeds here, under the lock: its progress reaches the
    // terminal, and a big repository's seed is not counted against the
    // detached hub's ready timeout (issue 16)
    if let Some(seeded) =
        repo::open_or_seed_with(&paths.hub_repo, &ws.root, Progress::Stderr("hub"))?
    {
        hub_log.info(repo::seeded_message(&seeded));
    }
    if opts.detach {
        // the detached hub takes the run lock as its first act; the start
        // lock, held until it is ready, keeps every other start out of the
        // gap
        drop(run_lock);
        let pid = detach::spawn(&paths, ports, opts, &hub_log)?;
        drop(lock);
        Ok(StartOutcome::Started { pid, ports })
    } else {
        let result = run::foreground(&paths, ports, opts, Some(lock), hub_log);
        drop(run_lock);
        result.map(|()| StartOutcome::Exited)
    }
}

/// The hub that holds the run lock: its record, or one rebuilt from the
/// holder's pid (from `/proc/locks`, else the pid the holder wrote into the
/// lock file) when `hub.json` and `hub.pid` are gone.
fn running_hub(paths: &Paths) -> HubRecord {
    if let HubState::Running(record) = record::hub_state(paths) {
        return record;
    }
    let pid = match lock::holder(&paths.run_lock) {
        lock::Holder::Pid(pid) => Some(pid),
        _ => fsutil::read_trimmed(&paths.run_lock)
            .ok()
            .flatten()
            .and_then(|text| text.parse::<u32>().ok()),
    };
    pid.and_then(|pid| record::holder_record(paths, pid))
        .unwrap_or_else(|| HubRecord {
            pid: pid.unwrap_or_default(),
            start_time: 0,
            repo_port: 0,
            coord_port: 0,
            version: String::new(),
            started_at: String::new(),
            state_dir: None,
        })
}

/// Removes what a crashed hub left: stale pid files, an orphaned
/// coordination server, a half-made seed; and what a copy of the state
/// directory brought along from the original.
///
/// Called with the run lock held, so no hub of this state directory can be
/// running: a server that runs this directory's `nats.conf` is an orphan.
fn clear_leftovers(paths: &Paths, hub_log: &HubLog) {
    match record::left_behind(paths) {
        HubState::Stopped {
            stale_pid: Some(pid),
            ..
        } => {
            let _ = HubRecord::remove(paths);
            hub_log.warn(format!(
                "hub: previous hub (pid={pid}) is gone without stopping cleanly; recovering"
            ));
        }
        HubState::Stopped {
            copy_of: Some(original),
            ..
        } => {
            // The record, the URL files and the key came along with a
            // copy: the original's hub may use those ports, and a shared
            // key lets each workspace's clients into the other's server.
            for file in [
                &paths.hub_pid,
                &paths.hub_json,
                &paths.repo_url_file,
                &paths.nats_url_file,
                &paths.nats_seed,
                &paths.nats_token,
            ] {
                let _ = fsutil::remove_if_exists(file);
            }
            let from = original
                .state_dir
                .as_ref()
                .map(|id| id.path.display().to_string())
                .unwrap_or_default();
            hub_log.warn(format!(
                "hub: this state directory is a copy of {from} (its hub.json names that directory); starting its own hub on fresh ports with a new key"
            ));
        }
        _ => {}
    }
    if let Some(pid) = crate::hub::server::stop_orphan(paths) {
        hub_log.warn(format!(
            "hub: stopped orphaned coord server (pid={pid}) left by a previous hub"
        ));
    }
    for dir in seeding_leftovers(paths) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Half-made seeds (`hub.git.seeding.*`) a crash during the first start
/// left in the state directory; the next start removes them.
pub fn seeding_leftovers(paths: &Paths) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(&paths.state_dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("hub.git.seeding.")
        })
        .map(|entry| entry.path())
        .collect()
}

/// True when the workspace containing `root` has a live hub process.
pub fn is_running(root: &Path) -> bool {
    Workspace::discover(root)
        .map(|ws| matches!(record::hub_state(&Paths::new(&ws)), HubState::Running(_)))
        .unwrap_or(false)
}

/// The recorded repo URL (`http://127.0.0.1:PORT`), if any. A file that
/// holds anything else counts as no URL.
pub fn repo_url(root: &Path) -> Option<String> {
    let ws = Workspace::discover(root).ok()?;
    recorded_url(&Paths::new(&ws).repo_url_file, "http")
}

/// The recorded coordination URL (`nats://127.0.0.1:PORT`), if any. A file
/// that holds anything else counts as no URL.
pub fn nats_url(root: &Path) -> Option<String> {
    let ws = Workspace::discover(root).ok()?;
    recorded_url(&Paths::new(&ws).nats_url_file, "nats")
}

fn recorded_url(file: &Path, scheme: &str) -> Option<String> {
    let text = fsutil::read_trimmed(file).ok().flatten()?;
    let port = ports::parse_loopback_url(&text, scheme)?;
    Some(format!("{scheme}://127.0.0.1:{port}"))
}

/// Path of the hub repository (`hub.git`).
pub fn hub_repo_path(root: &Path) -> Result<PathBuf, HubError> {
    Ok(Paths::new(&Workspace::discover(root)?).hub_repo)
}

/// Health as seen from outside the hub process.
#[derive(Debug, Clone)]
pub enum Health {
    /// No hub process. `copy_of`: this state directory is a copy of the
    /// one the record names (see [`HubState::Stopped`]).
    NotRunning { copy_of: Option<Box<HubRecord>> },
    /// The process runs; `report` is what `/.status` said, if it answered.
    Running {
        record: HubRecord,
        report: Option<Box<StatusReport>>,
        /// Why the hub is not healthy, when it is not.
        problem: Option<String>,
    },
}

/// Probes the hub of the workspace containing `root`. Never starts one.
pub fn status(root: &Path) -> Result<(Paths, Health), HubError> {
    let paths = Paths::new(&Workspace::discover(root)?);
    let record = match record::hub_state(&paths) {
        HubState::Running(record) => record,
        HubState::Stopped { copy_of, .. } => return Ok((paths, Health::NotRunning { copy_of })),
    };
    Ok((paths, health(record)))
}

/// What the status endpoint of the live hub `record` names says: the
/// judgement of `bones hub status`, and of each hub `--all` lists.
pub fn health(record: HubRecord) -> Health {
    let (report, problem) = match probe::status(record.repo_port, Duration::from_secs(3)) {
        probe::Probe::Answered { report, .. } if report.pid != record.pid => {
            let problem = format!(
                "127.0.0.1:{} is served by pid {}, not the hub (pid {})",
                record.repo_port, report.pid, record.pid
            );
            (None, Some(problem))
        }
        probe::Probe::Answered { report, .. } => {
            let problem = (!report.is_ok()).then(|| {
                let mut parts = Vec::new();
                if let Some(e) = &report.parts.repo.error {
                    parts.push(format!("repo: {e}"));
                }
                if let Some(e) = &report.parts.coord.error {
                    parts.push(format!("coord: {e}"));
                }
                if let Some(e) = &report.parts.storage.error {
                    parts.push(format!("disk: {e}"));
                }
                if let Some(e) = &report.parts.store.error {
                    parts.push(format!("store: {e}"));
                }
                parts.join("; ")
            });
            (Some(report), problem)
        }
        probe::Probe::Foreign(why) => (None, Some(why)),
        probe::Probe::Unreachable(why) => (
            None,
            Some(format!(
                "the status endpoint on 127.0.0.1:{} does not answer: {why}",
                record.repo_port
            )),
        ),
    };
    Health::Running {
        record,
        report,
        problem,
    }
}

/// The last `max_lines` entries of hub.log as readable lines, for error
/// messages (`09:48:51 ERROR hub: bring-up failed: <err>`).
pub fn log_tail(paths: &Paths, max_lines: usize) -> String {
    coord::file_tail(&paths.hub_log, max_lines)
        .lines()
        .map(|line| match serde_json::from_str::<LogEntry>(line) {
            Ok(entry) => {
                let time = entry.ts.get(11..19).unwrap_or(&entry.ts);
                let mut text = format!(
                    "  {time} {:<5} {}",
                    entry.level.as_str(),
                    entry.msg.unwrap_or_default()
                );
                if let Some(err) = entry.err {
                    text.push_str(": ");
                    text.push_str(&err.replace('\n', "\n      "));
                }
                text
            }
            Err(_) => format!("  {line}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Environment variable that turns off starting the hub on demand.
pub const NO_AUTOSTART_ENV: &str = "BONES_NO_AUTOSTART";

/// Starts the workspace hub in the background when none runs, for a verb
/// that needs it (as the Go original does on the first such verb): one
/// ready line on stderr. `BONES_NO_AUTOSTART=1` turns it off, and the verb
/// then fails saying how to start one. The pid of the hub started, if one
/// was.
pub fn autostart(paths: &Paths) -> Result<Option<u32>, HubError> {
    let off = std::env::var_os(NO_AUTOSTART_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    if off || is_running(&paths.root) {
        return Ok(None);
    }
    let opts = StartOptions {
        detach: true,
        ..Default::default()
    };
    match start(&paths.root, &opts)? {
        StartOutcome::Started { pid, ports } => {
            eprintln!(
                "hub: no hub was running; started one in the background (pid={pid}) repo={} coord={} \
                 (set {NO_AUTOSTART_ENV}=1 to turn this off)",
                crate::state::ports::repo_url(ports.repo),
                crate::state::ports::nats_url(ports.coord)
            );
            Ok(Some(pid))
        }
        _ => Ok(None),
    }
}
