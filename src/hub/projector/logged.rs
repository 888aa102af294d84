//! Which task events already have their `rpc` entry in hub.log.
//!
//! The projector writes an event's entry after the server stored the event
//! and acknowledges the revision after that; a hub killed in between gets
//! the revision again. Whether to write the entry then depends on whether
//! the dead hub got to it, which only hub.log knows: entries carry the task
//! and revision, and a starting projector reads back the newest ones. It
//! also remembers what it writes itself, for revisions the server delivers
//! again while it runs (after the coordination server restarts).

use std::collections::{HashSet, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// How much of the newest log files a starting projector reads back. The
/// entries it looks for are those of revisions not yet acknowledged when
/// the hub stopped: at most a few batches, written just before.
const READ_BACK: u64 = 1 << 20;

/// How many (task, revision) pairs are remembered: twice what the server
/// may hold delivered but unacknowledged.
const REMEMBERED: usize = 2 * super::MAX_ACK_PENDING as usize;

/// The newest task events known to be logged, oldest forgotten first.
#[derive(Debug, Default)]
pub struct Logged {
    keys: HashSet<(String, u64)>,
    order: VecDeque<(String, u64)>,
}

impl Logged {
    /// The task events logged in the newest part of hub.log: the newest
    /// [`READ_BACK`] bytes of the current file and of the one rotated
    /// before it, should the kill have come right after a rotation.
    pub fn read_back(hub_log: &Path) -> Logged {
        #[derive(serde::Deserialize)]
        struct Entry {
            event: String,
            task: Option<String>,
            revision: Option<u64>,
        }
        let mut logged = Logged::default();
        // opened together, so a rotation meanwhile cannot make the two
        // newest files seen here the wrong two
        let files = crate::oplog::read::open_oldest_first(hub_log).unwrap_or_default();
        for (_, file) in files.into_iter().rev().take(2).rev() {
            let Some(tail) = read_tail(file, READ_BACK) else {
                continue;
            };
            let finder = memchr::memmem::Finder::new(b"\"revision\":");
            for line in tail.split(|b| *b == b'\n') {
                // most lines are not task events: skip them unparsed
                if finder.find(line).is_none() {
                    continue;
                }
                if let Ok(Entry {
                    event,
                    task: Some(task),
                    revision: Some(revision),
                }) = serde_json::from_slice(line)
                    && event == "rpc"
                {
                    logged.insert((task, revision));
                }
            }
        }
        logged
    }

    pub fn contains(&self, key: &(String, u64)) -> bool {
        self.keys.contains(key)
    }

    pub fn insert(&mut self, key: (String, u64)) {
        if self.keys.insert(key.clone()) {
            self.order.push_back(key);
            if self.order.len() > REMEMBERED
                && let Some(oldest) = self.order.pop_front()
            {
                self.keys.remove(&oldest);
            }
        }
    }
}

/// The last `limit` bytes of a file, from the first whole line in them.
fn read_tail(mut file: std::fs::File, limit: u64) -> Option<Vec<u8>> {
    let len = file.metadata().ok()?.len();
    let start = len.saturating_sub(limit);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    file.read_to_end(&mut tail).ok()?;
    if start > 0 {
        // the first line is cut: keep from the next one
        let first = tail
            .iter()
            .position(|b| *b == b'\n')
            .map_or(tail.len(), |i| i + 1);
        tail.drain(..first);
    }
    Some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oplog::{EventKind, LogEntry, LogLevel};

    fn rpc(task: &str, revision: u64) -> String {
        let mut entry = LogEntry::new(LogLevel::Info, EventKind::Rpc);
        entry.rpc = Some("tasks.claim".into());
        entry.task = Some(task.into());
        entry.revision = Some(revision);
        serde_json::to_string(&entry).unwrap()
    }

    fn key(task: &str, revision: u64) -> (String, u64) {
        (task.to_string(), revision)
    }

    #[test]
    fn entries_are_read_back_from_the_two_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("hub.log");
        let other = LogEntry::lifecycle(LogLevel::Info, "hub: ready");
        let refusal = r#"{"ts":"2026-11-23T09:00:00Z","level":"WARN","event":"rpc","rpc":"tasks.claim","task":"t-x","err":"claimed"}"#;
        let not_rpc = r#"{"ts":"2026-11-23T09:00:00Z","level":"INFO","event":"hook","task":"t-y","revision":3}"#;
        std::fs::write(
            dir.path().join("hub.log.2"),
            format!("{}\n", rpc("t-old", 1)),
        )
        .unwrap();
        std::fs::write(dir.path().join("hub.log.1"), format!("{}\n", rpc("t-a", 7))).unwrap();
        std::fs::write(
            &log,
            format!(
                "{}\n{}\n{refusal}\n{not_rpc}\n{}\nnot json\n{}",
                rpc("t-b", 8),
                serde_json::to_string(&other).unwrap(),
                rpc("t-c", 9),
                // a line cut short by a kill
                &rpc("t-d", 10)[..20]
            ),
        )
        .unwrap();
        let logged = Logged::read_back(&log);
        let mut found: Vec<_> = logged.keys.iter().cloned().collect();
        found.sort();
        assert_eq!(found, vec![key("t-a", 7), key("t-b", 8), key("t-c", 9)]);
    }

    #[test]
    fn the_oldest_are_forgotten_first() {
        let mut logged = Logged::default();
        for revision in 0..REMEMBERED as u64 + 10 {
            logged.insert(key("t-a", revision));
        }
        logged.insert(key("t-a", 20)); // again: no change
        assert_eq!(logged.keys.len(), REMEMBERED);
        assert!(!logged.contains(&key("t-a", 9)));
        assert!(logged.contains(&key("t-a", 10)));
        assert!(logged.contains(&key("t-a", REMEMBERED as u64 + 9)));
    }

    #[test]
    fn a_tail_starts_at_a_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "first line\nsecond\nthird\n").unwrap();
        let open = || std::fs::File::open(&path).unwrap();
        assert_eq!(read_tail(open(), 10).unwrap(), b"third\n");
        assert_eq!(
            read_tail(open(), 1000).unwrap(),
            b"first line\nsecond\nthird\n"
        );
    }
}
