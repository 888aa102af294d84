//! `bones hub backup DIR` and `bones hub restore DIR`: a consistent copy of
//! a running hub, and its return onto a stopped one.
//!
//! A backup directory (0700, files 0600) holds:
//!
//! * `hub.bundle`: the trunk repository as a git bundle, every ref;
//! * `streams/<name>.snapshot`: each JetStream stream as the server's own
//!   snapshot, consumers included, so KV revisions come back unchanged;
//! * `manifest.json`: versions, the source workspace id, the refs, each
//!   stream's configuration and state, and a checksum per file.
//!
//! The coordination key (`nats.seed`) is never in it: a restored hub keeps or makes
//! its own. Why it is done this way, and what "consistent" means, is in
//! `adr/0006-hub-backup-and-restore.md`.

mod bundle;
mod manifest;
mod restore;
mod scratch;
mod snapshot;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::jetstream;

use manifest::{FileEntry, StreamEntry};
pub use manifest::{Manifest, absolute};
pub use restore::{RestoreOptions, Restored, restore};

use crate::coord;
use crate::coord::{CoordError, ServerError};
use crate::state::lock::{LockError, WorkspaceLock};
use crate::state::paths::Paths;
use crate::state::record;
use crate::state::record::HubState;
use crate::state::workspace::{Workspace, WorkspaceError};
use crate::sys::fsutil;
use crate::sys::shown;

/// How long derived streams' consumers get to finish what they hold.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a backup or a restore did not happen. Every variant leaves the
/// workspace as it was, except where its message says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Coord(#[from] CoordError),
    #[error(
        "the hub is not running; start it with `bones hub start --detach` (a backup is taken from a running hub)"
    )]
    NotRunning,
    #[error("the hub is running (pid {0}); stop it with `bones hub stop` before restoring")]
    Running(u32),
    #[error(
        "a coordination server left by a crashed hub still runs (pid {0}); `bones hub stop` stops it"
    )]
    OrphanServer(u32),
    #[error("{0}; wait for it to finish and try again")]
    Busy(String),
    #[error(
        "cannot back up into {}: {why}; name a new or empty directory",
        shown::path(dir)
    )]
    Target { dir: PathBuf, why: String },
    #[error(
        "cannot back up into {}: its parent directory does not exist; create it first (mkdir -p {})",
        shown::path(dir),
        shown::path(parent)
    )]
    NoParent { dir: PathBuf, parent: PathBuf },
    #[error("{} is not a bones backup: {why}", shown::path(dir))]
    NotABackup { dir: PathBuf, why: String },
    #[error(
        "backup file {} is damaged: {why}; nothing was changed. Restore from another copy of the backup",
        shown::path(file)
    )]
    Corrupt { file: PathBuf, why: String },
    #[error(
        "refusing to restore over existing state in {0} ({1}); pass --force to restore anyway (the current state is kept in {0}/pre-restore-<unix>)",
        shown::path(state_dir),
        .found.join(", ")
    )]
    NotEmpty {
        state_dir: PathBuf,
        found: Vec<String>,
    },
    #[error(
        "consumer {consumer} of stream {stream} still had {pending} unacknowledged messages after {waited:?}; is the hub healthy? (`bones hub status`) Try again"
    )]
    NotDrained {
        stream: String,
        consumer: String,
        pending: usize,
        waited: Duration,
    },
    /// A request to the coordination server failed.
    #[error("{what}: {source}")]
    Nats {
        what: String,
        #[source]
        source: ServerError,
    },
    /// The coordination server answered with an error, or not as a
    /// snapshot or restore needs; `why` says how.
    #[error("{what}: {why}")]
    Server { what: String, why: String },
    /// libgit2 failed on the repository being restored.
    #[error("{what}: {}", .source.message())]
    Repo {
        what: &'static str,
        #[source]
        source: git2::Error,
    },
    #[error("{what}: cannot run git: {source}; is git installed?")]
    GitSpawn {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// `git` failed; `stderr` is the last line it wrote.
    #[error("{what}: {stderr}")]
    Git { what: &'static str, stderr: String },
    /// libgit2 could not read a file to hash it.
    #[error("cannot read {}: {}", shown::path(path), .source.message())]
    Hash {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("cannot read the bundle: {}: {source}", shown::path(file))]
    BundleRead {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The bundle's header is not one git writes; `why` says where.
    #[error("cannot read the bundle: {}: {why}", shown::path(file))]
    BundleHeader { file: PathBuf, why: String },
    #[error("the restored refs differ from the manifest: expected {expected} refs, found {found}")]
    RefsDiffer { expected: usize, found: usize },
    #[error("cannot bundle the hub repository: it has no trunk")]
    NoTrunk,
    #[error("{what} {}: {source}", shown::path(path))]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(io::Error),
}

impl crate::sys::error::Kinded for BackupError {
    fn kind(&self) -> crate::sys::error::ErrorKind {
        use crate::sys::error::ErrorKind;
        match self {
            BackupError::Workspace(err) => err.kind(),
            BackupError::Coord(err) => err.kind(),
            BackupError::NotRunning => ErrorKind::NoHub,
            BackupError::NotDrained { .. } => ErrorKind::Timeout,
            BackupError::Nats { source, .. } => source.kind(),
            BackupError::Server { .. } => ErrorKind::Server,
            BackupError::Repo { .. }
            | BackupError::Hash { .. }
            | BackupError::GitSpawn { .. }
            | BackupError::Git { .. }
            | BackupError::BundleRead { .. }
            | BackupError::Io { .. } => ErrorKind::Io,
            BackupError::Corrupt { .. }
            | BackupError::NotABackup { .. }
            | BackupError::BundleHeader { .. }
            | BackupError::RefsDiffer { .. }
            | BackupError::NoTrunk => ErrorKind::Corrupt,
            _ => ErrorKind::Refused,
        }
    }
}

impl BackupError {
    pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError {
        let path = path.to_path_buf();
        move |source| BackupError::Io { what, path, source }
    }
}

/// Takes a backup of the running hub of the workspace containing `root`
/// into `dir`, which must not exist or be empty. `progress` receives one
/// line per step. The directory appears only once the backup is complete.
pub fn backup(root: &Path, dir: &Path, progress: &dyn Fn(&str)) -> Result<Manifest, BackupError> {
    let ws = Workspace::discover(root)?;
    let paths = Paths::new(&ws);
    if !matches!(record::hub_state(&paths), HubState::Running(_)) {
        return Err(BackupError::NotRunning);
    }
    let dir = manifest::absolute(dir);
    check_target(&dir)?;
    // two backups at once would resume each other's paused consumers
    let _lock = lock(&paths.backup_lock, Duration::ZERO, "another backup runs")?;
    // the backup goes where it was asked, never into directories made up
    // on the way (a typo in a parent would scatter backups)
    let parent = dir.parent().unwrap_or(Path::new("/"));
    if !parent.is_dir() {
        return Err(BackupError::NoParent {
            dir: dir.clone(),
            parent: parent.to_path_buf(),
        });
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let stage = parent.join(format!(
        ".{}.partial.{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&stage);
    let result = fsutil::ensure_private_dir(&stage.join("streams"))
        .map_err(BackupError::io("cannot create", &stage))
        .and_then(|()| runtime()?.block_on(take(&ws, &paths, &stage, progress)))
        .and_then(|manifest| {
            fs::rename(&stage, &dir).map_err(BackupError::io("cannot move the backup to", &dir))?;
            sync_dir(parent);
            Ok(manifest)
        });
    if result.is_err() {
        let _ = fs::remove_dir_all(&stage);
    }
    result
}

/// `dir` may not exist yet, or be an empty directory.
fn check_target(dir: &Path) -> Result<(), BackupError> {
    let refuse = |why: &str| BackupError::Target {
        dir: dir.to_path_buf(),
        why: why.to_string(),
    };
    match fs::symlink_metadata(dir) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(BackupError::io("cannot read", dir)(err)),
        Ok(meta) if !meta.is_dir() => Err(refuse("it exists and is not a directory")),
        Ok(_) => match fs::read_dir(dir) {
            Ok(mut entries) => match entries.next() {
                None => Ok(()),
                Some(_) => Err(refuse("it is not empty")),
            },
            Err(err) => Err(BackupError::io("cannot read", dir)(err)),
        },
    }
}

async fn take(
    ws: &Workspace,
    paths: &Paths,
    stage: &Path,
    progress: &dyn Fn(&str),
) -> Result<Manifest, BackupError> {
    let client = coord::connect(paths).await?;
    let js = jetstream::new(client.clone());
    let names = snapshot::stream_names(&js).await?;
    // the backup's point in time: the streams are copied from here on
    let created_at = crate::sys::clock::utc_now_rfc3339();
    let mut paused = Vec::new();
    let streams = match snapshot::pause_durables(&js, &names, &mut paused).await {
        Ok(()) => {
            progress(&format!(
                "backup: paused {} durable consumer(s) while the streams are copied",
                paused.len()
            ));
            snapshot_all(&js, &names, &paused, stage, progress).await
        }
        Err(err) => Err(err),
    };
    // resume whatever was paused, whatever happened meanwhile
    for failure in snapshot::resume(&js, &paused).await {
        progress(&format!(
            "backup: warning: cannot resume {failure}; it resumes by itself within {:?}",
            snapshot::PAUSE_WINDOW
        ));
    }
    let streams = streams?;

    // after the streams: every commit a stream record names is already in
    // the repository, so the bundle holds it
    let bundle_path = stage.join(manifest::BUNDLE_FILE);
    let refs = bundle::create(&paths.hub_repo, &bundle_path)?;
    restrict(&bundle_path)?;
    let trunk = refs
        .get(crate::trunk::repo::TRUNK_REF)
        .cloned()
        .ok_or(BackupError::NoTrunk)?;
    progress(&format!(
        "backup: trunk {} and {} ref(s) bundled",
        &trunk[..trunk.len().min(12)],
        refs.len()
    ));

    let mut files = vec![FileEntry::measure(stage, manifest::BUNDLE_FILE)?];
    for stream in &streams {
        files.push(FileEntry::measure(stage, &stream.file)?);
    }
    let manifest = Manifest {
        kind: manifest::KIND.to_string(),
        format: manifest::FORMAT,
        bones_version: env!("CARGO_PKG_VERSION").to_string(),
        nats_server_version: client.server_info().version,
        created_at,
        workspace_id: ws.agent_id()?,
        trunk,
        refs,
        streams,
        files,
    };
    manifest.write(stage)?;
    Ok(manifest)
}

/// Snapshots every stream while the durable consumers stay paused.
async fn snapshot_all(
    js: &jetstream::Context,
    names: &[String],
    paused: &[snapshot::Paused],
    stage: &Path,
    progress: &dyn Fn(&str),
) -> Result<Vec<StreamEntry>, BackupError> {
    snapshot::wait_drained(js, paused, DRAIN_TIMEOUT).await?;
    let mut streams = Vec::new();
    for name in names {
        if !manifest::valid_stream_name(name) {
            return Err(BackupError::Server {
                what: format!("cannot back up stream {name:?}"),
                why: "its name cannot be used as a file name".to_string(),
            });
        }
        // renew the pauses, then make sure this snapshot ended inside them
        let renewed = Instant::now();
        for item in paused {
            snapshot::extend_pause(js, item).await?;
        }
        let rel = manifest::stream_file(name);
        let (config, state) = snapshot::snapshot(js, name, &stage.join(&rel)).await?;
        if renewed.elapsed() >= snapshot::PAUSE_WINDOW {
            return Err(BackupError::Server {
                what: format!("cannot back up stream {name}"),
                why: format!(
                    "its snapshot took longer than {:?}, so the consumers paused for it may have resumed; try again",
                    snapshot::PAUSE_WINDOW
                ),
            });
        }
        let consumers = paused
            .iter()
            .filter(|p| &p.stream == name)
            .map(|p| p.consumer.clone())
            .collect();
        let entry = StreamEntry::new(name, config, state, consumers);
        progress(&format!(
            "backup: stream {name}: {} message(s), seq {}..{}",
            entry.messages, entry.first_seq, entry.last_seq
        ));
        streams.push(entry);
    }
    Ok(streams)
}

fn restrict(path: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(BackupError::io("cannot set the mode of", path))?;
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(BackupError::io("cannot write", path))
}

/// Flushes a directory's entries (a rename) to disk; best effort.
fn sync_dir(dir: &Path) {
    let _ = fs::File::open(dir).and_then(|f| f.sync_all());
}

fn lock(path: &Path, wait: Duration, busy: &str) -> Result<WorkspaceLock, BackupError> {
    match WorkspaceLock::acquire(path, wait) {
        Ok(lock) => Ok(lock),
        Err(LockError::Timeout { .. }) => Err(BackupError::Busy(busy.to_string())),
        Err(LockError::Io { path, source }) => Err(BackupError::Io {
            what: "cannot open lock file",
            path: path.into(),
            source,
        }),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, BackupError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BackupError::Runtime)
}
