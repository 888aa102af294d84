//! `hub.pid` and `hub.json`: who the running hub is.
//!
//! `hub.pid` holds only the pid so `kill $(cat .bones/hub.pid)` works;
//! `hub.json` adds the process start time (to reject a reused pid), ports,
//! version, start timestamp and the state directory it belongs to. Both are
//! written atomically by the hub and removed by it on a clean exit, or by
//! `hub stop` once the process is confirmed dead.
//!
//! Neither file decides whether a hub runs: the hub's run lock does (see
//! [`crate::state::lock`]), so a deleted or garbled `hub.pid` never hides a live
//! hub, and a `hub.json` copied along with the whole directory (`cp -a`)
//! is recognised by the state directory it names and never taken for this
//! directory's hub.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::lock;
use crate::state::lock::Holder;
use crate::state::paths::Paths;
use crate::sys::fsutil;
use crate::sys::process;

/// The contents of `hub.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubRecord {
    pub pid: u32,
    /// Process start time, seconds since the Unix epoch.
    pub start_time: u64,
    pub repo_port: u16,
    pub coord_port: u16,
    pub version: String,
    /// UTC RFC 3339.
    pub started_at: String,
    /// The state directory the hub runs for. `None` in a record written by
    /// a hub older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<StateDirId>,
}

/// A state directory by path and by identity: a copy has another device or
/// inode even where it has the same contents, and a directory moved (or
/// reached through a link) keeps them under another path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDirId {
    /// Canonical path when the hub started.
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
}

impl StateDirId {
    /// The identity of `dir` now.
    pub fn of(dir: &Path) -> io::Result<StateDirId> {
        let meta = std::fs::metadata(dir)?;
        Ok(StateDirId {
            path: dir.canonicalize()?,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// True when `dir` is this very directory (not a copy of it).
    pub fn is(&self, dir: &Path) -> bool {
        std::fs::metadata(dir).is_ok_and(|meta| meta.dev() == self.dev && meta.ino() == self.ino)
    }
}

/// What the run lock and the pid files say about the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubState {
    /// No hub runs for this state directory. `stale_pid`: a pid file or
    /// record of this directory names a hub that is gone. `copy_of`: the
    /// record here was written for another state directory (this one is a
    /// copy of it); its hub, if it runs, is not this directory's.
    Stopped {
        stale_pid: Option<u32>,
        copy_of: Option<Box<HubRecord>>,
    },
    /// A live process confirmed to be this state directory's hub.
    Running(HubRecord),
}

impl HubState {
    fn stopped(stale_pid: Option<u32>) -> HubState {
        HubState::Stopped {
            stale_pid,
            copy_of: None,
        }
    }
}

impl HubRecord {
    /// Writes `hub.json` then `hub.pid`.
    pub fn write(&self, paths: &Paths) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        fsutil::write_ephemeral(&paths.hub_json, &json)?;
        fsutil::write_ephemeral(&paths.hub_pid, format!("{}\n", self.pid).as_bytes())
    }

    /// Removes both files.
    pub fn remove(paths: &Paths) -> io::Result<()> {
        fsutil::remove_if_exists(&paths.hub_pid)?;
        fsutil::remove_if_exists(&paths.hub_json)
    }

    /// The pid `hub.pid` names, if it holds one.
    pub fn pid_file(paths: &Paths) -> Option<u32> {
        fsutil::read_trimmed(&paths.hub_pid)
            .ok()
            .flatten()
            .and_then(|text| text.parse::<u32>().ok())
            .filter(|pid| *pid > 0)
    }

    /// `hub.json` as written, whatever pid it names.
    pub fn read(paths: &Paths) -> Option<HubRecord> {
        let bytes = std::fs::read(&paths.hub_json).ok()?;
        serde_json::from_slice::<HubRecord>(&bytes).ok()
    }

    /// False when the record names another state directory than this one:
    /// it came along with a copy. `None` for a record without the field.
    pub fn belongs_to(&self, paths: &Paths) -> Option<bool> {
        self.state_dir.as_ref().map(|id| id.is(&paths.state_dir))
    }
}

/// Who the hub of this state directory is.
///
/// The holder of the run lock is the hub, whatever the pid files say; its
/// record is `hub.json` when that names it, else one rebuilt from the
/// process and the URL files. With no holder, a record written for another
/// state directory marks a copy; one of this directory names a hub that is
/// gone. Where the lock table cannot be read, and for a record written by a
/// hub older than the run lock, the pid files are judged as before: the
/// pid, its start time, and the command line when `hub.json` is corrupt.
pub fn hub_state(paths: &Paths) -> HubState {
    judge(paths, lock::holder(&paths.run_lock))
}

/// What the pid files say once the caller holds the run lock itself (a
/// start about to clear what a dead hub left): a stale pid, a copied
/// record, or a hub started before the run lock existed, which does not
/// hold it and must not be cleared away.
pub fn left_behind(paths: &Paths) -> HubState {
    judge(paths, Holder::Free)
}

fn judge(paths: &Paths, holder: Holder) -> HubState {
    let record = HubRecord::read(paths);
    if let Holder::Pid(pid) = holder {
        let record = record
            .clone()
            .filter(|r| r.pid == pid && r.belongs_to(paths) != Some(false))
            .or_else(|| holder_record(paths, pid));
        if let Some(record) = record {
            return HubState::Running(record);
        }
    }
    if let Some(copied) = record
        .as_ref()
        .filter(|r| r.belongs_to(paths) == Some(false))
    {
        return HubState::Stopped {
            stale_pid: None,
            copy_of: Some(Box::new(copied.clone())),
        };
    }
    let pid_file = HubRecord::pid_file(paths);
    match (holder, record) {
        // a hub of this version holds the run lock for its whole life; its
        // record naming a live process with its start time means the lock
        // file itself was deleted under it
        (Holder::Free, Some(r)) if r.belongs_to(paths) == Some(true) => {
            if process::is_same_process(r.pid, r.start_time) {
                HubState::Running(r)
            } else {
                HubState::stopped(pid_file.or(Some(r.pid)))
            }
        }
        (Holder::Free, None) => HubState::stopped(pid_file),
        (_, record) => judge_pid_file(paths, pid_file, record),
    }
}

/// The record of a run-lock holder whose `hub.json` is gone or names
/// another pid: its start time from the process table, its ports from the
/// URL files. `None` when the holder is already gone.
pub fn holder_record(paths: &Paths, pid: u32) -> Option<HubRecord> {
    let info = process::inspect(pid).filter(|p| !p.zombie)?;
    Some(rebuilt(
        paths,
        pid,
        info.start_time,
        StateDirId::of(&paths.state_dir).ok(),
    ))
}

/// A record for a live hub whose `hub.json` cannot be used: what the
/// process table and the URL files say (no version, no start stamp).
fn rebuilt(paths: &Paths, pid: u32, start_time: u64, state_dir: Option<StateDirId>) -> HubRecord {
    HubRecord {
        pid,
        start_time,
        repo_port: port_from_url_file(&paths.repo_url_file, "http"),
        coord_port: port_from_url_file(&paths.nats_url_file, "nats"),
        version: String::new(),
        started_at: String::new(),
        state_dir,
    }
}

/// The judgement by pid files alone: `hub.pid` must name a live process
/// whose start time is the one in `hub.json`; with `hub.json` corrupt or
/// missing, only a `bones ... hub start` process counts, so a stranger
/// holding a reused pid is never mistaken for the hub.
fn judge_pid_file(paths: &Paths, pid: Option<u32>, record: Option<HubRecord>) -> HubState {
    let Some(pid) = pid else {
        return HubState::stopped(None);
    };
    let record = record.filter(|record| record.pid == pid);
    let Some(info) = process::inspect(pid).filter(|p| !p.zombie) else {
        return HubState::stopped(Some(pid));
    };
    match record {
        Some(record) if record.start_time == info.start_time => HubState::Running(record),
        Some(_) => HubState::stopped(Some(pid)),
        None if looks_like_hub(&info.cmdline) => {
            HubState::Running(rebuilt(paths, pid, info.start_time, None))
        }
        None => HubState::stopped(Some(pid)),
    }
}

/// True for the command line of a `bones ... hub start` process: the only
/// kind of process that can be a hub.
pub fn looks_like_hub(cmdline: &str) -> bool {
    let mut words = cmdline.split_whitespace();
    let is_bones = words
        .next()
        .is_some_and(|argv0| argv0.rsplit('/').next() == Some("bones"));
    let rest: Vec<&str> = words.collect();
    is_bones && rest.windows(2).any(|w| w == ["hub", "start"])
}

fn port_from_url_file(path: &std::path::Path, scheme: &str) -> u16 {
    fsutil::read_trimmed(path)
        .ok()
        .flatten()
        .and_then(|url| crate::state::ports::parse_loopback_url(&url, scheme))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn recognises_hub_command_lines() {
        assert!(looks_like_hub("/usr/bin/bones hub start --repo-port 1"));
        assert!(looks_like_hub("bones hub start"));
        assert!(!looks_like_hub("vim hub start.md"));
        assert!(!looks_like_hub("/usr/bin/bones hub stop"));
    }

    #[test]
    fn a_corrupt_record_next_to_a_stranger_is_not_a_hub() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(tmp.path());
        // this test process is alive but is not `bones hub start`
        let me = std::process::id();
        std::fs::write(&paths.hub_pid, format!("{me}\n")).unwrap();
        for json in [
            "",
            "{",
            "null",
            r#"{"pid":"x"}"#,
            r#"{"pid":-1,"start_time":1}"#,
            "\u{0}\u{ff}",
        ] {
            std::fs::write(&paths.hub_json, json).unwrap();
            assert_eq!(hub_state(&paths), HubState::stopped(Some(me)), "{json:?}");
        }
    }

    fn record_for(dir: &std::path::Path, pid: u32) -> HubRecord {
        HubRecord {
            pid,
            start_time: 1,
            repo_port: 1,
            coord_port: 2,
            version: "test".into(),
            started_at: String::new(),
            state_dir: Some(StateDirId::of(dir).unwrap()),
        }
    }

    #[test]
    fn a_record_written_for_another_state_directory_marks_a_copy() {
        let original = tempfile::tempdir().unwrap();
        let copy = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(copy.path());
        // the original's hub is alive: this very process
        let me = std::process::id();
        let mut record = record_for(original.path(), me);
        record.start_time = process::own_start_time();
        record.write(&paths).unwrap();
        match hub_state(&paths) {
            HubState::Stopped {
                stale_pid: None,
                copy_of: Some(found),
            } => assert_eq!(*found, record),
            other => panic!("{other:?}"),
        }
        // the same record in its own directory, with nobody holding the
        // run lock: a hub whose lock file was deleted under it
        let own = Paths::in_dir(original.path());
        record.write(&own).unwrap();
        assert_eq!(hub_state(&own), HubState::Running(record.clone()));
        // and once its process is not the one recorded, a stale pid
        record.start_time += 1;
        record.write(&own).unwrap();
        assert_eq!(hub_state(&own), HubState::stopped(Some(me)));
    }

    proptest! {
        #[test]
        fn any_pid_file_and_record_are_judged_without_panic(
            pid in proptest::collection::vec(any::<u8>(), 0..24),
            json in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let paths = Paths::in_dir(tmp.path());
            std::fs::write(&paths.hub_pid, &pid).unwrap();
            std::fs::write(&paths.hub_json, &json).unwrap();
            std::fs::write(&paths.repo_url_file, &json).unwrap();
            // pids this test can name are itself or dead ones: never a hub
            prop_assert!(!matches!(hub_state(&paths), HubState::Running(_)));
        }

        #[test]
        fn records_round_trip_and_garbage_never_panics(
            pid in any::<u32>(), start_time in any::<u64>(), repo_port in any::<u16>(),
            coord_port in any::<u16>(), version in "\\PC{0,20}", started_at in "\\PC{0,30}",
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let state_dir = Some(StateDirId { path: PathBuf::from(&version), dev: pid.into(), ino: start_time });
            let record = HubRecord { pid, start_time, repo_port, coord_port, version, started_at, state_dir };
            let json = serde_json::to_vec(&record).unwrap();
            prop_assert_eq!(serde_json::from_slice::<HubRecord>(&json).unwrap(), record);
            let _ = serde_json::from_slice::<HubRecord>(&bytes);
        }

        #[test]
        fn command_lines_are_judged_without_panic(cmdline in "(?s).{0,200}") {
            let _ = looks_like_hub(&cmdline);
        }
    }
}
