//! `bones hub restore DIR`: a backup back onto a stopped hub.
//!
//! Nothing in the state directory changes until the backup has been
//! checked (manifest and every checksum) and rebuilt completely in a
//! staging directory next to it: the trunk from its bundle, the streams
//! through a coordination server of our own. Only then are the old
//! `hub.git`, `coord/` and `swarm/` moved into `pre-restore-<unix>/` and the
//! new ones renamed into place, so a failure at any step leaves the
//! workspace as it was, and a restore over existing state can be undone by
//! moving the old directories back.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;

use super::manifest::{self, BUNDLE_FILE, Manifest};
use super::scratch::Scratch;
use super::{BackupError, bundle, lock, runtime, snapshot, sync_dir};
use crate::coord::ServerError;
use crate::oplog::HubLog;
use crate::state::paths::Paths;
use crate::state::record;
use crate::state::record::HubState;
use crate::state::workspace::Workspace;
use crate::sys::fsutil;
use crate::sys::process;
use crate::sys::shown;

/// How long a restore waits for a `hub start` in progress to finish.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Options for [`restore`].
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore over an existing trunk, coordination store or slot
    /// checkouts (they are kept in `pre-restore-<unix>/`).
    pub force: bool,
}

/// What [`restore`] did.
#[derive(Debug, Clone)]
pub struct Restored {
    pub manifest: Manifest,
    /// The backup directory, absolute.
    pub dir: PathBuf,
    /// Where the state that was replaced now is, if there was any.
    pub previous: Option<PathBuf>,
}

/// Restores the backup in `dir` into the workspace containing `root`,
/// whose hub must be stopped. `progress` receives one line per step.
pub fn restore(
    root: &Path,
    dir: &Path,
    opts: &RestoreOptions,
    progress: &dyn Fn(&str),
) -> Result<Restored, BackupError> {
    let ws = Workspace::discover(root)?;
    let paths = Paths::new(&ws);
    let dir = manifest::absolute(dir);
    let manifest = Manifest::read(&dir)?;

    fsutil::ensure_private_dir(&paths.state_dir)
        .map_err(BackupError::io("cannot create", &paths.state_dir))?;
    // held throughout: no hub can start while its state is being replaced
    let _lock = lock(
        &paths.lock,
        LOCK_WAIT,
        "a `bones hub start` holds the workspace lock",
    )?;
    if let HubState::Running(record) = record::hub_state(&paths) {
        return Err(BackupError::Running(record.pid));
    }
    if let Some(pid) = crate::hub::server::recorded_server(&paths) {
        return Err(BackupError::OrphanServer(pid));
    }
    let found = existing_state(&paths);
    if !found.is_empty() && !opts.force {
        return Err(BackupError::NotEmpty {
            state_dir: paths.state_dir.clone(),
            found: found.iter().map(|(_, label)| label.clone()).collect(),
        });
    }
    manifest.verify_files(&dir)?;
    progress(&format!(
        "restore: backup of {} checked ({} file(s), {} bytes)",
        manifest.created_at,
        manifest.files.len(),
        manifest.bytes()
    ));

    remove_dead_stages(&paths.state_dir);
    let stage = paths
        .state_dir
        .join(format!("restore.{}", std::process::id()));
    let _ = fs::remove_dir_all(&stage);
    fsutil::ensure_private_dir(&stage).map_err(BackupError::io("cannot create", &stage))?;
    let built = build(&ws.root, &dir, &manifest, &stage, progress);
    let swapped = built.and_then(|()| swap(&paths, &stage, &found));
    let _ = fs::remove_dir_all(&stage);
    let previous = swapped?;
    sync_dir(&paths.state_dir);

    let log = HubLog::append_only(paths.hub_log.clone());
    log.info(format!(
        "hub: restored from backup {} (taken {}, trunk {}){}",
        shown::path(&dir),
        manifest.created_at,
        &manifest.trunk[..manifest.trunk.len().min(12)],
        previous
            .as_ref()
            .map(|p| format!("; previous state kept in {}", shown::path(p)))
            .unwrap_or_default()
    ));
    Ok(Restored {
        manifest,
        dir,
        previous,
    })
}

/// What a restore would replace: the trunk repository, a non-empty
/// coordination store, slot checkouts (which belong to the old trunk).
fn existing_state(paths: &Paths) -> Vec<(PathBuf, String)> {
    let non_empty = |dir: &Path| fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
    let mut found = Vec::new();
    if paths.hub_repo.exists() {
        found.push((paths.hub_repo.clone(), "hub.git".to_string()));
    }
    if non_empty(&paths.coord_dir) {
        found.push((paths.coord_dir.clone(), "coord/".to_string()));
    }
    if non_empty(&paths.swarm_dir) {
        found.push((
            paths.swarm_dir.clone(),
            "swarm/ (slot checkouts)".to_string(),
        ));
    }
    found
}

/// Staging directories of restores whose process is gone.
fn remove_dead_stages(state_dir: &Path) {
    let Ok(entries) = fs::read_dir(state_dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dead = name
            .strip_prefix("restore.")
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !process::is_alive(pid));
        if dead {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Rebuilds `hub.git` and `coord/` inside `stage`.
fn build(
    root: &Path,
    dir: &Path,
    manifest: &Manifest,
    stage: &Path,
    progress: &dyn Fn(&str),
) -> Result<(), BackupError> {
    bundle::unbundle(
        &dir.join(BUNDLE_FILE),
        &stage.join("hub.git"),
        &manifest.refs,
    )?;
    progress(&format!(
        "restore: trunk {} and {} ref(s) unbundled",
        &manifest.trunk[..manifest.trunk.len().min(12)],
        manifest.refs.len()
    ));
    let scratch = Scratch::start(root, stage)?;
    let rt = runtime()?;
    rt.block_on(async {
        let client = scratch.connect().await?;
        let js = jetstream::new(client.clone());
        for entry in &manifest.streams {
            snapshot::restore(&js, entry, &dir.join(&entry.file)).await?;
            progress(&format!(
                "restore: stream {}: {} message(s), seq {}..{}",
                entry.name, entry.messages, entry.first_seq, entry.last_seq
            ));
        }
        client.flush().await.map_err(|e| BackupError::Nats {
            what: "the restore's coordination server".to_string(),
            source: ServerError::new(e),
        })
    })?;
    drop(rt);
    scratch.stop()
}

/// Moves the old state aside (if any) and the staged state into place.
/// On failure every move made so far is undone.
fn swap(
    paths: &Paths,
    stage: &Path,
    found: &[(PathBuf, String)],
) -> Result<Option<PathBuf>, BackupError> {
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    let undo = |moved: &[(PathBuf, PathBuf)]| {
        for (from, to) in moved.iter().rev() {
            let _ = fs::rename(to, from);
        }
    };
    let previous = if found.is_empty() {
        None
    } else {
        let keep = keep_dir(&paths.state_dir);
        fsutil::ensure_private_dir(&keep).map_err(BackupError::io("cannot create", &keep))?;
        for (path, _) in found {
            let to = keep.join(path.file_name().unwrap_or_default());
            if let Err(err) = fs::rename(path, &to) {
                undo(&moved);
                return Err(BackupError::io("cannot move aside", path)(err));
            }
            moved.push((path.clone(), to));
        }
        Some(keep)
    };
    for (from, to) in [
        (stage.join("hub.git"), paths.hub_repo.clone()),
        (stage.join("coord"), paths.coord_dir.clone()),
    ] {
        if let Err(err) = fs::rename(&from, &to) {
            undo(&moved);
            return Err(BackupError::io("cannot move the restored state into", &to)(
                err,
            ));
        }
        moved.push((from, to));
    }
    Ok(previous)
}

/// `pre-restore-<unix>`, with a suffix if a restore in the same second
/// already used the name.
fn keep_dir(state_dir: &Path) -> PathBuf {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut keep = state_dir.join(format!("pre-restore-{unix}"));
    let mut n = 1;
    while keep.exists() {
        keep = state_dir.join(format!("pre-restore-{unix}.{n}"));
        n += 1;
    }
    keep
}
