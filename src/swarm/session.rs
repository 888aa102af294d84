//! The session registry: which slot an agent harness's session holds.
//!
//! An agent harness (Claude Code, Codex, Gemini CLI) runs `bones hook
//! session-start` when a session begins; the hook takes a slot for the
//! session and records it here, in `<state_dir>/sessions/<session-id>.json`
//! (0600). `bones hook session-end` reads the record back to close exactly
//! that slot, never another session's, and removes it.
//!
//! The record also names the harness process (pid and start time): the
//! hook's nearest ancestor that is not a shell ([`harness_process`]). The
//! MCP server the same harness launches is that process's child, so it
//! finds its session's slot with [`for_harness`] from its own parent; the
//! slot's lease follows the same process, so a session that ends without
//! its end hook (a crash, a harness with no such hook) is reaped by the hub
//! within seconds (see `adr/0015-integrate-sessions-follow-the-harness-process.md`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::Paths;
use crate::sys::fsutil;
use crate::sys::name::{self, NameError};
use crate::sys::process;

/// Version of the record's layout.
pub const SCHEMA: u32 = 1;

/// Commands that stand between a harness and the hook it runs: the shell a
/// hook command line goes through (`sh -c '...'`), and `env`.
const INTERMEDIARIES: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "env",
];

/// How many ancestors [`harness_process`] climbs at most.
const MAX_CLIMB: usize = 8;

/// One session's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub schema: u32,
    /// The harness's session id (validated as a name).
    pub session: String,
    /// Which harness (`claude-code`, `codex`, `gemini`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness: Option<String>,
    /// The agent id the slot is held by.
    pub agent: String,
    pub slot: String,
    /// The slot's checkout.
    pub path: PathBuf,
    /// The harness process: the slot's lease lives as long as it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_pid: Option<u32>,
    /// Its start time (seconds since the epoch), so a reused pid is never
    /// taken for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harness_start: Option<u64>,
    /// When the session took the slot (UTC, RFC 3339).
    pub started_at: String,
}

/// Why a record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("cannot {what} the session record {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the session record {} is not one ({source}); delete it", .path.display())]
    Garbled {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The directory holding the records.
pub fn dir(paths: &Paths) -> PathBuf {
    paths.state_dir.join("sessions")
}

/// The record of session `id`: `sessions/<id>.json`, once `id` is a valid
/// name.
pub fn record_path(paths: &Paths, id: &str) -> Result<PathBuf, SessionError> {
    name::validate_session_id(id)?;
    Ok(dir(paths).join(format!("{id}.json")))
}

/// Writes (or replaces) a session's record, 0600 in a 0700 directory.
pub fn write(paths: &Paths, session: &Session) -> Result<PathBuf, SessionError> {
    let path = record_path(paths, &session.session)?;
    let io_err = |what, source| SessionError::Io {
        what,
        path: path.clone(),
        source,
    };
    fsutil::ensure_private_dir(&dir(paths)).map_err(|e| io_err("make the directory of", e))?;
    let mut text = serde_json::to_vec_pretty(session).unwrap_or_default();
    text.push(b'\n');
    fsutil::write_private(&path, &text).map_err(|e| io_err("write", e))?;
    Ok(path)
}

/// The record of session `id`; `None` when there is none.
pub fn read(paths: &Paths, id: &str) -> Result<Option<Session>, SessionError> {
    let path = record_path(paths, id)?;
    read_file(&path)
}

fn read_file(path: &Path) -> Result<Option<Session>, SessionError> {
    let bytes = match fsutil::read_small(path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(source) => {
            return Err(SessionError::Io {
                what: "read",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| SessionError::Garbled {
            path: path.to_path_buf(),
            source,
        })
}

/// Removes session `id`'s record; none is not an error.
pub fn remove(paths: &Paths, id: &str) -> Result<(), SessionError> {
    let path = record_path(paths, id)?;
    fsutil::remove_if_exists(&path).map_err(|source| SessionError::Io {
        what: "remove",
        path,
        source,
    })
}

/// Every readable record, in no particular order; unreadable ones are
/// skipped.
pub fn list(paths: &Paths) -> Vec<Session> {
    let Ok(entries) = fs::read_dir(dir(paths)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let file = entry.file_name();
            let id = file.to_str()?.strip_suffix(".json")?;
            name::validate_session_id(id).ok()?;
            read_file(&entry.path()).ok().flatten()
        })
        .collect()
}

/// The session whose harness is the live process `pid` (with its recorded
/// start time): how an MCP server finds its session's slot from its own
/// parent ([`harness_process`] of itself).
pub fn for_harness(paths: &Paths, pid: u32) -> Option<Session> {
    let started = process::inspect(pid)?.start_time;
    list(paths)
        .into_iter()
        .filter(|s| s.harness_pid == Some(pid) && s.harness_start == Some(started))
        .max_by(|a, b| a.started_at.cmp(&b.started_at))
}

/// The session of the harness that launched this process: what `bones
/// mcp` calls to find the slot it acts on. `None` until the session's start
/// hook has recorded it (the harness runs the hook and starts its MCP
/// servers concurrently), or when this process runs outside a harness
/// session: ask again later rather than once at start.
pub fn for_this_process(paths: &Paths) -> Option<Session> {
    let (harness, _) = harness_process(std::process::id())?;
    for_harness(paths, harness)
}

/// The harness process above `pid`: its nearest ancestor that is not a
/// shell or `env` (a harness runs a hook command through `sh -c`, and may
/// launch an MCP server directly), with that process's start time. `None`
/// when no such ancestor is found within a few levels.
pub fn harness_process(pid: u32) -> Option<(u32, u64)> {
    let mut current = process::parent(pid)?;
    for _ in 0..MAX_CLIMB {
        let name = process::command_name(current)?;
        if !INTERMEDIARIES.contains(&name.as_str()) {
            let started = process::inspect(current)?.start_time;
            return Some((current, started));
        }
        current = process::parent(current)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str) -> Session {
        Session {
            schema: SCHEMA,
            session: id.to_string(),
            harness: Some("claude-code".to_string()),
            agent: "claude-0123".to_string(),
            slot: "agent-claude-0123".to_string(),
            path: PathBuf::from("/w/.bones/swarm/agent-claude-0123/wt"),
            harness_pid: Some(std::process::id()),
            harness_start: Some(process::own_start_time()),
            started_at: "2026-12-01T10:00:00Z".to_string(),
        }
    }

    #[test]
    fn a_record_round_trips_owner_only_and_is_removed() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(tmp.path());
        let session = sample("4e3eb4ec-ccb7-46d0-ae99-02762dd11aa4");
        let path = write(&paths, &session).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            read(&paths, &session.session).unwrap(),
            Some(session.clone())
        );
        assert_eq!(
            for_harness(&paths, std::process::id()),
            Some(session.clone())
        );
        remove(&paths, &session.session).unwrap();
        assert_eq!(read(&paths, &session.session).unwrap(), None);
        remove(&paths, &session.session).unwrap();
    }

    #[test]
    fn a_session_id_that_could_climb_out_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(tmp.path());
        for id in ["../x", "", "a/b", ".hidden", "x.lock", "a b"] {
            assert!(record_path(&paths, id).is_err(), "{id:?}");
            assert!(write(&paths, &sample(id)).is_err(), "{id:?}");
        }
        assert!(!dir(&paths).join("..").join("x.json").exists());
    }

    #[test]
    fn the_harness_is_the_first_ancestor_that_is_not_a_shell() {
        use std::io::BufRead;
        // a shell that starts a sleeper and names it: the sleeper's harness
        // is this test process, above the shell
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(shell.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let sleeper: u32 = line.trim().parse().unwrap();
        let found = harness_process(sleeper);
        process::signal(sleeper, nix::sys::signal::Signal::SIGKILL).unwrap();
        let _ = shell.wait();
        assert_eq!(
            found,
            Some((std::process::id(), process::own_start_time())),
            "the sleeper's harness is the test process, above its shell"
        );
    }
}
