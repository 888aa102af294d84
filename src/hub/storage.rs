//! The disk under the state directory: noticing it fill up, saying so, and
//! resuming once there is room again.
//!
//! When the disk fills, the coordination server fails the write and marks
//! the stream's store as broken until the stream is loaded again: space
//! freed later does not bring writes back by itself. The hub watches for
//! that (the server's own log line, or free space running out), reports the
//! storage part of `/.status` as failed, and once enough space is free
//! restarts the coordination server (same port, same store), which reloads
//! every stream. Reads keep working throughout.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::hub::server::Restarter;
use crate::oplog::HubLog;
use crate::state::paths::Paths;

/// Below this much free space the disk counts as full: writes are about to
/// fail, or already do.
pub const FULL_BELOW: u64 = 1024 * 1024;
/// Writes resume once this much is free again.
pub const RESUME_AT: u64 = 16 * 1024 * 1024;
/// How often the hub looks.
const EVERY: Duration = Duration::from_millis(500);
/// What the coordination server logs when a write fails for lack of space.
const SERVER_WRITE_FAILED: &[u8] = b"no space left on device";

/// Free bytes, for an unprivileged user, on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(stat.blocks_available().saturating_mul(stat.fragment_size()))
}

/// The hint a failed command adds when the state directory's disk is full:
/// whatever the error said, this is what to do about it.
pub fn full_disk_hint(state_dir: &Path) -> Option<String> {
    let free = free_bytes(state_dir).ok()?;
    (free < FULL_BELOW).then(|| {
        format!(
            "the disk holding {} is full ({} free): free some space; the hub resumes writing by itself",
            state_dir.display(),
            show_bytes(free)
        )
    })
}

/// `1.5 MiB`, `312 KiB`, `12 B`.
pub fn show_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    match n {
        n if n >= GIB => format!("{:.1} GiB", n as f64 / GIB as f64),
        n if n >= MIB => format!("{:.1} MiB", n as f64 / MIB as f64),
        n if n >= KIB => format!("{} KiB", n / KIB),
        n => format!("{n} B"),
    }
}

/// What the hub knows about its disk, shared with `/.status`.
#[derive(Debug, Default)]
pub struct StorageState {
    problem: Mutex<Option<String>>,
}

impl StorageState {
    /// Why writes fail, while they do.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }
}

/// Watches the disk until `stop` is cancelled (a look under way finishes).
pub fn spawn(
    paths: &Paths,
    log: HubLog,
    state: Arc<StorageState>,
    restarter: Restarter,
    js: async_nats::jetstream::Context,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let mut watch = Watch {
        state_dir: paths.state_dir.clone(),
        server_log: LogScan::from_end(&paths.nats_log),
        server_failed: false,
        restarting: None,
        log,
        state,
        restarter,
        js,
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => watch.look().await,
            }
        }
    })
}

struct Watch {
    state_dir: PathBuf,
    server_log: LogScan,
    /// The coordination server failed a write since it last started.
    server_failed: bool,
    /// The pid of the server a restart was asked of, until a new one answers.
    restarting: Option<Option<u32>>,
    log: HubLog,
    state: Arc<StorageState>,
    restarter: Restarter,
    js: async_nats::jetstream::Context,
}

impl Watch {
    async fn look(&mut self) {
        if let Some(old) = self.restarting {
            // writes are back only once the new server answers
            let new = self.restarter.child_pid();
            let answers = new.is_some()
                && new != old
                && tokio::time::timeout(EVERY, self.js.query_account())
                    .await
                    .is_ok_and(|r| r.is_ok());
            if answers {
                self.restarting = None;
                self.state.set(None);
                self.log
                    .info("hub: the coordination server takes writes again");
            }
            return;
        }
        let Ok(free) = free_bytes(&self.state_dir) else {
            return;
        };
        if let Some(line) = self.server_log.find_new(SERVER_WRITE_FAILED)
            && !self.server_failed
        {
            self.server_failed = true;
            self.log.error(
                "hub: the coordination server cannot write: the disk is full",
                line,
            );
        }
        let failing = self.state.problem().is_some();
        if !failing && (free < FULL_BELOW || self.server_failed) {
            let problem = format!(
                "the disk holding {} is full ({} free): writes fail until space is freed; \
                 the hub resumes them once {} are free",
                self.state_dir.display(),
                show_bytes(free),
                show_bytes(RESUME_AT)
            );
            self.log.warn(format!("hub: {problem}"));
            self.state.set(Some(problem));
        } else if failing && free >= RESUME_AT {
            if self.server_failed {
                // a store that failed a write stays failed until reloaded
                self.log.info(format!(
                    "hub: {} free again; restarting the coordination server to resume writes",
                    show_bytes(free)
                ));
                self.restarting = Some(self.restarter.child_pid());
                self.state.set(Some(
                    "the coordination server is restarting to resume writes after the disk filled"
                        .to_string(),
                ));
                self.restarter.restart();
                self.server_failed = false;
            } else {
                self.log
                    .info(format!("hub: {} free again", show_bytes(free)));
                self.state.set(None);
            }
        }
    }
}

/// Reads what was appended to a log file since the last look.
struct LogScan {
    path: PathBuf,
    offset: u64,
}

impl LogScan {
    /// Starts at the current end: what earlier runs logged is not news.
    fn from_end(path: &Path) -> LogScan {
        let offset = std::fs::metadata(path).map_or(0, |m| m.len());
        LogScan {
            path: path.to_path_buf(),
            offset,
        }
    }

    /// The first new line containing `needle`, if any; consumes what is new.
    fn find_new(&mut self, needle: &[u8]) -> Option<String> {
        let mut file = File::open(&self.path).ok()?;
        let len = file.metadata().ok()?.len();
        if len < self.offset {
            self.offset = 0; // truncated or replaced
        }
        if len == self.offset {
            return None;
        }
        file.seek(SeekFrom::Start(self.offset)).ok()?;
        let mut new = Vec::new();
        // bounded: a flood of output is read a piece at a time
        let take = (len - self.offset).min(1024 * 1024);
        file.take(take).read_to_end(&mut new).ok()?;
        // whole lines only: a line still being written is read next time
        let whole = memchr::memrchr(b'\n', &new).map_or(0, |i| i + 1);
        if whole == 0 && new.len() < 1024 * 1024 {
            return None;
        }
        let whole = if whole == 0 { new.len() } else { whole };
        new.truncate(whole);
        self.offset += whole as u64;
        let at = memchr::memmem::find(&new, needle)?;
        let start = new[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let end = new[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(new.len(), |i| at + i);
        Some(String::from_utf8_lossy(&new[start..end]).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_scan_sees_only_new_lines_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nats.log");
        std::fs::write(&path, "old: no space left on device\n").unwrap();
        let mut scan = LogScan::from_end(&path);
        assert_eq!(scan.find_new(SERVER_WRITE_FAILED), None);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        use std::io::Write;
        writeln!(file, "[1] [INF] fine").unwrap();
        writeln!(file, "[1] [ERR] write x.blk: no space left on device").unwrap();
        assert_eq!(
            scan.find_new(SERVER_WRITE_FAILED).as_deref(),
            Some("[1] [ERR] write x.blk: no space left on device")
        );
        assert_eq!(scan.find_new(SERVER_WRITE_FAILED), None);
        // a line caught half-written is found once it is whole
        write!(file, "[1] [ERR] write y.blk: no space left").unwrap();
        assert_eq!(scan.find_new(SERVER_WRITE_FAILED), None);
        writeln!(file, " on device").unwrap();
        assert_eq!(
            scan.find_new(SERVER_WRITE_FAILED).as_deref(),
            Some("[1] [ERR] write y.blk: no space left on device")
        );
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(show_bytes(12), "12 B");
        assert_eq!(show_bytes(312 * 1024), "312 KiB");
        assert_eq!(show_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(show_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn free_space_is_read_from_the_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).is_ok());
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }
}
