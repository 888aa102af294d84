//! The hub: one per workspace. It runs the coordination server (a supervised
//! `nats-server` child), owns the hub repository (`hub.git`, driven through
//! git2), serves `/.status`, and writes the operator log.
//!
//! The public surface mirrors the reference design: [`start`], [`stop`],
//! [`is_running`], [`status`], [`repo_url`], [`nats_url`] and
//! [`hub_repo_path`], with options structs so new knobs never break callers.

pub mod backup;
pub mod coord;
mod detach;
pub mod guards;
pub mod http;
pub mod land;
mod lander;
pub mod lock;
pub mod log;
pub mod logread;
pub mod paths;
pub mod ports;
pub mod probe;
pub mod process;
pub mod projector;
pub mod record;
pub mod repo;
mod run;
pub mod sockdiag;
pub mod status;
mod stop;
pub mod storage;
mod watcher;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use log::{EventKind, HubLog, LogEntry, LogLevel};
pub use paths::Paths;
pub use ports::Ports;
pub use record::{HubRecord, HubState};
pub use status::StatusReport;
pub use stop::{StopOptions, StopOutcome, stop};

use crate::fsutil;
use crate::gitcli::Progress;
use crate::workspace::{Workspace, WorkspaceError};

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
    #[error("cannot start the hub's {0}")]
    Service(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl HubError {
    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HubError {
        let path = path.to_path_buf();
        move |source| HubError::Io { what, path, source }
    }
}

/// Starts the hub of the workspace containing `root` (see the module docs
/// of `cli::hub` for the user-facing contract).
pub fn start(root: &Path, opts: &StartOptions) -> Result<StartOutcome, HubError> {
    // before anything is created or spawned: libgit2 and nats-server create
    // files with modes of their own, which only the umask makes owner-only
    fsutil::restrict_umask();
    let ws = Workspace::discover(root)?;
    let paths = Paths::new(&ws);
    let log_config = log::LogConfig::from_env(LogLevel::floor(opts.log_level.as_deref()));
    let hub_log = HubLog::open(&paths.hub_log, log_config);
    if opts.detached_child {
        let ports = Ports {
            repo: opts.repo_port.unwrap_or_default(),
            coord: opts.coord_port.unwrap_or_default(),
        };
        return run::foreground(&paths, ports, opts, None, hub_log).map(|()| StartOutcome::Exited);
    }

    guards::no_stale_claude_worktrees(&ws.root)?;
    if let HubState::Running(record) = record::hub_state(&paths) {
        return Ok(StartOutcome::AlreadyRunning(record));
    }
    if !paths.hub_repo.join("HEAD").is_file() {
        guards::has_tracked_files(&ws.root)?;
    }
    coord::find_nats_server()?;
    // nats.conf must name the store; refuse before anything is written
    if paths.coord_dir.to_str().is_none() {
        return Err(coord::CoordError::NonUtf8Path(paths.state_dir.clone()).into());
    }
    fsutil::ensure_private_dir(&paths.state_dir)
        .map_err(HubError::io("cannot create", &paths.state_dir))?;

    let lock =
        lock::WorkspaceLock::acquire(&paths.lock, opts.ready_timeout + Duration::from_secs(5))?;
    // another starter may have won the race while we waited for the lock
    if let HubState::Running(record) = record::hub_state(&paths) {
        return Ok(StartOutcome::AlreadyRunning(record));
    }
    clear_leftovers(&paths, &hub_log);
    let ports = ports::resolve(
        &paths,
        ports::PortRequest {
            repo: opts.repo_port,
            coord: opts.coord_port,
        },
        &hub_log,
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
        let pid = detach::spawn(&paths, ports, opts, &hub_log)?;
        drop(lock);
        Ok(StartOutcome::Started { pid, ports })
    } else {
        run::foreground(&paths, ports, opts, Some(lock), hub_log).map(|()| StartOutcome::Exited)
    }
}

/// Removes what a crashed hub left: stale pid files, an orphaned
/// coordination server, a half-made seed.
fn clear_leftovers(paths: &Paths, hub_log: &HubLog) {
    if let HubState::Stopped {
        stale_pid: Some(pid),
    } = record::hub_state(paths)
    {
        let _ = HubRecord::remove(paths);
        hub_log.warn(format!(
            "hub: previous hub (pid={pid}) is gone without stopping cleanly; recovering"
        ));
    }
    if let Some(pid) = coord::stop_orphan(paths) {
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
    /// No hub process.
    NotRunning,
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
    let HubState::Running(record) = record::hub_state(&paths) else {
        return Ok((paths, Health::NotRunning));
    };
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
    Ok((
        paths,
        Health::Running {
            record,
            report,
            problem,
        },
    ))
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
