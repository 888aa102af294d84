//! `hub.pid` and `hub.json`: who the running hub is.
//!
//! `hub.pid` holds only the pid so `kill $(cat .bones/hub.pid)` works;
//! `hub.json` adds the process start time (to reject a reused pid), ports,
//! version and start timestamp. Both are written atomically by the hub and
//! removed by it on a clean exit, or by `hub stop` once the process is
//! confirmed dead.

use std::io;

use serde::{Deserialize, Serialize};

use super::paths::Paths;
use super::process;
use crate::fsutil;

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
}

/// What the pid files say about the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubState {
    /// No hub.pid, or it names a process that is gone.
    Stopped { stale_pid: Option<u32> },
    /// hub.pid names a live process confirmed to be the hub.
    Running(HubRecord),
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
}

/// Reads the pid files and checks the process behind them.
///
/// A corrupt or missing `hub.json` next to a live pid is judged by the
/// command line instead: only a `bones ... hub start` process counts, so a
/// stranger holding a reused pid is never mistaken for the hub.
pub fn hub_state(paths: &Paths) -> HubState {
    let pid = fsutil::read_trimmed(&paths.hub_pid)
        .ok()
        .flatten()
        .and_then(|text| text.parse::<u32>().ok())
        .filter(|pid| *pid > 0);
    let Some(pid) = pid else {
        return HubState::Stopped { stale_pid: None };
    };
    let record = std::fs::read(&paths.hub_json)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<HubRecord>(&bytes).ok())
        .filter(|record| record.pid == pid);
    let Some(info) = process::inspect(pid).filter(|p| !p.zombie) else {
        return HubState::Stopped {
            stale_pid: Some(pid),
        };
    };
    match record {
        Some(record) if record.start_time == info.start_time => HubState::Running(record),
        Some(_) => HubState::Stopped {
            stale_pid: Some(pid),
        },
        None if looks_like_hub(&info.cmdline) => HubState::Running(HubRecord {
            pid,
            start_time: info.start_time,
            repo_port: port_from_url_file(&paths.repo_url_file, "http"),
            coord_port: port_from_url_file(&paths.nats_url_file, "nats"),
            version: String::new(),
            started_at: String::new(),
        }),
        None => HubState::Stopped {
            stale_pid: Some(pid),
        },
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
        .and_then(|url| super::ports::parse_loopback_url(&url, scheme))
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

    fn paths_in(dir: &std::path::Path) -> Paths {
        Paths::new(&crate::workspace::Workspace {
            root: dir.to_path_buf(),
            state_dir: dir.to_path_buf(),
        })
    }

    #[test]
    fn a_corrupt_record_next_to_a_stranger_is_not_a_hub() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = paths_in(tmp.path());
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
            assert_eq!(
                hub_state(&paths),
                HubState::Stopped {
                    stale_pid: Some(me)
                },
                "{json:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_pid_file_and_record_are_judged_without_panic(
            pid in proptest::collection::vec(any::<u8>(), 0..24),
            json in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let paths = paths_in(tmp.path());
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
            let record = HubRecord { pid, start_time, repo_port, coord_port, version, started_at };
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
