//! `manifest.json`: what a backup holds and how to check it is intact.
//!
//! Checksums are git blob ids (SHA-1 over `blob <len>\0<content>`), made by
//! git2, which bones already links: anyone can check a file by hand with
//! `git hash-object FILE`, and no hashing crate is added. They guard against
//! corruption (a truncated copy, a flipped bit), not against an attacker who
//! can also rewrite the manifest; see `adr/0006-hub-backup-and-restore.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid};
use serde::{Deserialize, Serialize};

use super::BackupError;
use crate::sys::fsutil;

/// The manifest's file name inside a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The trunk bundle's file name inside a backup directory.
pub const BUNDLE_FILE: &str = "hub.bundle";
/// What `kind` says in every bones backup manifest.
pub const KIND: &str = "bones-hub-backup";
/// The manifest layout this build writes and reads.
pub const FORMAT: u32 = 1;

/// Everything a restore needs besides the data files themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`KIND`]: tells a bones backup from any other directory.
    pub kind: String,
    /// Layout version, [`FORMAT`]; a newer one is refused, never guessed at.
    pub format: u32,
    pub bones_version: String,
    /// The coordination server that took the stream snapshots; a restore
    /// onto an older server may be refused by that server.
    pub nats_server_version: String,
    /// When the streams began to be copied, UTC RFC 3339.
    pub created_at: String,
    /// The source workspace's `agent.id` (a restore keeps the target's own).
    pub workspace_id: String,
    /// The trunk tip in the bundle.
    pub trunk: String,
    /// Every ref in the bundle, name to commit id.
    pub refs: BTreeMap<String, String>,
    /// One entry per JetStream stream, in the order they were snapshotted.
    pub streams: Vec<StreamEntry>,
    /// Every data file with its size and checksum.
    pub files: Vec<FileEntry>,
}

/// One stream's snapshot, as the coordination server described it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEntry {
    pub name: String,
    /// Path of the snapshot, relative to the backup directory.
    pub file: String,
    pub messages: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    /// Durable consumers that were paused while the snapshot was taken; the
    /// restore resumes them.
    #[serde(default)]
    pub paused_consumers: Vec<String>,
    /// The stream configuration, passed back verbatim on restore.
    pub config: serde_json::Value,
    /// The stream state the server reported for the snapshot.
    pub state: serde_json::Value,
}

/// One data file of the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the backup directory.
    pub path: String,
    pub bytes: u64,
    /// `git hash-object FILE` of the content.
    pub git_blob_id: String,
}

impl StreamEntry {
    /// The entry for a snapshot the server described with `config` and `state`.
    pub fn new(
        name: &str,
        config: serde_json::Value,
        state: serde_json::Value,
        paused_consumers: Vec<String>,
    ) -> StreamEntry {
        let seq = |key: &str| state[key].as_u64().unwrap_or(0);
        StreamEntry {
            name: name.to_string(),
            file: stream_file(name),
            messages: seq("messages"),
            first_seq: seq("first_seq"),
            last_seq: seq("last_seq"),
            paused_consumers,
            config,
            state,
        }
    }
}

/// Where the snapshot of stream `name` is kept inside a backup.
pub fn stream_file(name: &str) -> String {
    format!("streams/{name}.snapshot")
}

/// True for a stream name that is also a safe file name. NATS already
/// forbids `.`, `/`, `\`, `*`, `>` and whitespace in stream names; the check
/// is repeated here because a manifest is input a user can edit.
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
}

impl FileEntry {
    /// Measures `rel` inside `dir`.
    pub fn measure(dir: &Path, rel: &str) -> Result<FileEntry, BackupError> {
        let path = dir.join(rel);
        let bytes = std::fs::metadata(&path)
            .map_err(BackupError::io("cannot read", &path))?
            .len();
        Ok(FileEntry {
            path: rel.to_string(),
            bytes,
            git_blob_id: blob_id(&path)?.to_string(),
        })
    }
}

/// The git blob id of a file's content, read in chunks by libgit2.
pub fn blob_id(path: &Path) -> Result<Oid, BackupError> {
    Oid::hash_file(ObjectType::Blob, path).map_err(|source| BackupError::Hash {
        path: path.to_path_buf(),
        source,
    })
}

impl Manifest {
    /// Writes `manifest.json` (0600, flushed to disk) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), BackupError> {
        let path = dir.join(MANIFEST_FILE);
        let mut json = serde_json::to_vec_pretty(self)
            .map_err(|e| BackupError::io("cannot write", &path)(std::io::Error::other(e)))?;
        json.push(b'\n');
        fsutil::write_private(&path, &json).map_err(BackupError::io("cannot write", &path))
    }

    /// Reads and checks the manifest of the backup in `dir`: its kind and
    /// format, and that every name in it is one this build would write.
    /// Does not read the data files; see [`Manifest::verify_files`].
    pub fn read(dir: &Path) -> Result<Manifest, BackupError> {
        let path = dir.join(MANIFEST_FILE);
        let invalid = |why: String| BackupError::NotABackup {
            dir: dir.to_path_buf(),
            why,
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(invalid(format!("it has no {MANIFEST_FILE}")));
            }
            Err(err) => return Err(BackupError::io("cannot read", &path)(err)),
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("{MANIFEST_FILE} is not JSON ({e})")))?;
        if value["kind"] != KIND {
            return Err(invalid(format!(
                "{MANIFEST_FILE} does not say kind {KIND:?}"
            )));
        }
        match value["format"].as_u64() {
            Some(f) if f == u64::from(FORMAT) => {}
            Some(f) => {
                return Err(invalid(format!(
                    "it has format {f}, this bones reads format {FORMAT}; use the bones that wrote it"
                )));
            }
            None => return Err(invalid(format!("{MANIFEST_FILE} has no format"))),
        }
        let manifest: Manifest = serde_json::from_value(value)
            .map_err(|e| invalid(format!("{MANIFEST_FILE} is incomplete ({e})")))?;
        manifest.check_names().map_err(invalid)?;
        Ok(manifest)
    }

    fn check_names(&self) -> Result<(), String> {
        let listed: Vec<&str> = self.files.iter().map(|f| f.path.as_str()).collect();
        if !listed.contains(&BUNDLE_FILE) {
            return Err(format!("{BUNDLE_FILE} is not listed"));
        }
        for stream in &self.streams {
            if !valid_stream_name(&stream.name) || stream.file != stream_file(&stream.name) {
                return Err(format!("stream entry {:?} is malformed", stream.name));
            }
            if !listed.contains(&stream.file.as_str()) {
                return Err(format!("{} is not listed", stream.file));
            }
            if stream.config["name"] != stream.name.as_str() {
                return Err(format!(
                    "stream {} has a config for another name",
                    stream.name
                ));
            }
        }
        for file in &self.files {
            let known =
                file.path == BUNDLE_FILE || self.streams.iter().any(|s| s.file == file.path);
            if !known {
                return Err(format!("it lists an unexpected file {:?}", file.path));
            }
            if Oid::from_str(&file.git_blob_id).is_err() {
                return Err(format!("{} has a malformed checksum", file.path));
            }
        }
        if self.refs.get(crate::trunk::repo::TRUNK_REF) != Some(&self.trunk) {
            return Err("its trunk is not among its refs".to_string());
        }
        Ok(())
    }

    /// Checks every data file's size and checksum; the first mismatch is
    /// the error. Run before anything is changed.
    pub fn verify_files(&self, dir: &Path) -> Result<(), BackupError> {
        for file in &self.files {
            let path = dir.join(&file.path);
            let meta = match std::fs::metadata(&path) {
                Ok(meta) => meta,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    return Err(BackupError::Corrupt {
                        file: path,
                        why: "it is missing".to_string(),
                    });
                }
                Err(err) => return Err(BackupError::io("cannot read", &path)(err)),
            };
            if meta.len() != file.bytes {
                return Err(BackupError::Corrupt {
                    file: path,
                    why: format!(
                        "it has {} bytes, the manifest says {}",
                        meta.len(),
                        file.bytes
                    ),
                });
            }
            let actual = blob_id(&path)?.to_string();
            if actual != file.git_blob_id {
                return Err(BackupError::Corrupt {
                    file: path,
                    why: format!(
                        "its checksum (git blob id) is {actual}, the manifest says {}",
                        file.git_blob_id
                    ),
                });
            }
        }
        Ok(())
    }

    /// Total size of the data files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// A short JSON summary for `--json` output.
    pub fn summary(&self, dir: &Path) -> serde_json::Value {
        serde_json::json!({
            "dir": dir.to_string_lossy(),
            "created_at": self.created_at,
            "bones_version": self.bones_version,
            "nats_server_version": self.nats_server_version,
            "workspace_id": self.workspace_id,
            "trunk": self.trunk,
            "refs": self.refs.len(),
            "bytes": self.bytes(),
            "streams": self.streams.iter().map(|s| serde_json::json!({
                "name": s.name,
                "messages": s.messages,
                "first_seq": s.first_seq,
                "last_seq": s.last_seq,
            })).collect::<Vec<_>>(),
        })
    }
}

/// `dir` made absolute, for messages and output: canonical when it exists,
/// else joined to the current directory.
pub fn absolute(dir: &Path) -> PathBuf {
    if let Ok(canonical) = dir.canonicalize() {
        canonical
    } else if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(dir))
            .unwrap_or_else(|_| dir.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_that_could_escape_the_directory_are_refused() {
        for good in ["KV_bones-tasks", "tasks-events", "bones-feed", "$X"] {
            assert!(valid_stream_name(good), "{good}");
        }
        for bad in ["", "../x", "a/b", "a.b", "-x", "a b", "a\\b"] {
            assert!(!valid_stream_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn checksums_are_git_blob_ids() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), b"hello\n").unwrap();
        let entry = FileEntry::measure(tmp.path(), "f").unwrap();
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            entry.git_blob_id,
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(entry.bytes, 6);
    }
}
