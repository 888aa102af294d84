//! The per-user registry of running hubs: one file per hub under
//! `$XDG_STATE_HOME/bones/hubs/` (default `~/.local/state/bones/hubs/`).
//!
//! A hub is found through its workspace's state directory; once that
//! directory is deleted under it (`rm -rf .bones`, a removed checkout),
//! nothing in the workspace names it any more, and it holds its ports, its
//! `nats-server` and its memory until the machine reboots. The Go original
//! kept a per-user registry for that; so does bones. Each hub writes its
//! entry when it starts and removes it when it stops cleanly; an entry left
//! by a hub that was killed is stale, and `bones hub status --all` and
//! `bones hub reap` tell it from a live one by the process start time it
//! records (see `hub::registry`).
//!
//! An entry is a pointer, never a warrant: whoever acts on one checks the
//! process it names first (uid, start time, command line). The directory is
//! 0700 and each file 0600, written atomically, named `<pid>.json`: one
//! live process per pid, and a new hub that got a dead one's pid replaces
//! that stale entry.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::paths::Paths;
use crate::state::record::HubRecord;
use crate::sys::fsutil;

/// Environment variable of the XDG base directory for state.
pub const XDG_STATE_HOME_ENV: &str = "XDG_STATE_HOME";

/// One running hub, as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The workspace root the hub serves.
    pub workspace: PathBuf,
    /// pid, start time, ports, version, start stamp and state directory
    /// (path and identity): the hub's own `hub.json`.
    #[serde(flatten)]
    pub hub: HubRecord,
}

/// An entry as read from the registry, with the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub file: PathBuf,
    pub entry: Entry,
}

/// The registry directory of the calling user: `$XDG_STATE_HOME/bones/hubs`
/// when that is an absolute path (the XDG specification says to ignore a
/// relative one), else `$HOME/.local/state/bones/hubs`. `None` without a
/// usable `HOME`: then no registry is kept.
pub fn dir() -> Option<PathBuf> {
    let xdg = std::env::var_os(XDG_STATE_HOME_ENV)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = match xdg {
        Some(base) => base,
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())?
            .join(".local/state"),
    };
    Some(base.join("bones").join("hubs"))
}

/// Why the registry could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no registry of hubs: HOME is not set to an absolute path (nor XDG_STATE_HOME)")]
    NoHome,
    #[error("cannot {what} the registry of hubs {}: {source}", crate::sys::shown::plain(&.path.to_string_lossy()))]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    NotPrivate(#[from] fsutil::NotPrivate),
}

impl crate::sys::error::Kinded for RegistryError {
    fn kind(&self) -> crate::sys::error::ErrorKind {
        use crate::sys::error::ErrorKind;
        match self {
            RegistryError::NoHome => ErrorKind::Usage,
            RegistryError::Io { .. } => ErrorKind::Io,
            RegistryError::NotPrivate(_) => ErrorKind::Refused,
        }
    }
}

/// How the registry directory is judged before it is read or written: one
/// another user can write to could name any process for `hub reap`.
const REGISTRY_DIR: fsutil::StatePath = fsutil::StatePath {
    what: "registry of hubs",
    dir: true,
    fix_foreign: "Remove it (or point XDG_STATE_HOME at a directory of your own); hubs register again when they start",
};

/// The file of the hub with `pid` in `dir`.
pub fn file_of(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{pid}.json"))
}

/// Records the hub of `paths` (its `record`) in the user's registry.
pub fn register(paths: &Paths, record: &HubRecord) -> Result<PathBuf, RegistryError> {
    let dir = dir().ok_or(RegistryError::NoHome)?;
    fsutil::ensure_private_dir(&dir).map_err(|source| RegistryError::Io {
        what: "create",
        path: dir.clone(),
        source,
    })?;
    fsutil::check_private(&dir, REGISTRY_DIR)?;
    let entry = Entry {
        workspace: paths.root.clone(),
        hub: record.clone(),
    };
    let file = file_of(&dir, record.pid);
    let json = serde_json::to_vec_pretty(&entry).map_err(std::io::Error::other);
    json.and_then(|json| fsutil::write_ephemeral(&file, &json))
        .map_err(|source| RegistryError::Io {
            what: "write",
            path: file.clone(),
            source,
        })?;
    Ok(file)
}

/// Removes the entry of the hub with `pid` that started at `start_time`,
/// if the registry still holds that very hub: a clean stop, or a stop of a
/// hub that was killed.
pub fn unregister(pid: u32, start_time: u64) {
    let Some(dir) = dir() else {
        return;
    };
    let file = file_of(&dir, pid);
    if read(&file).is_some_and(|e| e.hub.pid == pid && e.hub.start_time == start_time) {
        let _ = fsutil::remove_if_exists(&file);
    }
}

/// One entry file; `None` when it is missing, unreadable or not an entry.
fn read(file: &Path) -> Option<Entry> {
    let bytes = fsutil::read_small(file).ok().flatten()?;
    serde_json::from_slice(&bytes).ok()
}

/// What the registry holds: its entries, oldest pid first, and the files
/// that are not entries (corrupt, or another program's), which are left
/// alone. An absent registry is an empty one.
pub fn list() -> Result<(Vec<Listed>, Vec<PathBuf>), RegistryError> {
    let dir = dir().ok_or(RegistryError::NoHome)?;
    fsutil::check_private(&dir, REGISTRY_DIR)?;
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), Vec::new()));
        }
        Err(source) => {
            return Err(RegistryError::Io {
                what: "read",
                path: dir,
                source,
            });
        }
    };
    let mut listed = Vec::new();
    let mut unreadable = Vec::new();
    for file in entries.filter_map(Result::ok).map(|e| e.path()) {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        // a write in progress (`.NAME.tmp.PID.N`, see fsutil) is not an entry yet
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        match read(&file) {
            Some(entry) => listed.push(Listed { file, entry }),
            None => unreadable.push(file),
        }
    }
    listed.sort_by_key(|l| l.entry.hub.pid);
    unreadable.sort();
    Ok((listed, unreadable))
}

/// Removes an entry file (a stale one, or that of a hub just stopped).
pub fn remove(file: &Path) -> Result<(), RegistryError> {
    fsutil::remove_if_exists(file).map_err(|source| RegistryError::Io {
        what: "remove an entry of",
        path: file.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::record::StateDirId;

    #[test]
    fn entries_keep_the_hub_record_flat() {
        let tmp = tempfile::tempdir().unwrap();
        let entry = Entry {
            workspace: PathBuf::from("/w"),
            hub: HubRecord {
                pid: 7,
                start_time: 11,
                repo_port: 1,
                coord_port: 2,
                version: "v".into(),
                started_at: "2026-01-01T00:00:00Z".into(),
                state_dir: Some(StateDirId::of(tmp.path()).unwrap()),
            },
        };
        let value = serde_json::to_value(&entry).unwrap();
        assert_eq!(value["workspace"], "/w");
        assert_eq!(value["pid"], 7);
        assert_eq!(value["start_time"], 11);
        assert!(value["state_dir"]["ino"].is_u64());
        assert_eq!(serde_json::from_value::<Entry>(value).unwrap(), entry);
    }
}
