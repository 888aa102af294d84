//! The hub's two locks: `hub.lock`, held while a start is in progress, and
//! `hub.run.lock`, held by the running hub for its whole life.
//!
//! Two `hub start` racing in one workspace once corrupted URL and pid state
//! (Go #208). Both locks are `flock(2)`s, so a holder that dies releases
//! them with its last descriptor: there is no stale lock to reclaim.
//! Unlike the reference, a second starter waits for the start lock instead
//! of failing, then finds the hub the first one started (decision 6).
//!
//! The run lock is what makes a hub *the* hub of its state directory:
//! `hub.pid` can be deleted or overwritten, a lock held by a live process
//! cannot. A start that cannot take it reports the hub that holds it and
//! touches nothing (a start that trusted a missing `hub.pid` once stopped
//! the running hub's `nats-server` as an "orphan" and brought up a second
//! hub on the same store). Readers ([`holder`]) look the holder up in
//! `/proc/locks` instead of taking the lock, so a `hub status` can never
//! make a concurrent start believe a hub runs.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::sys::fsutil;

/// Held while a start is in progress; dropping it releases the lock.
pub struct WorkspaceLock {
    _lock: Flock<File>,
}

/// Held by the hub process for as long as it lives (see the module docs);
/// the file holds the holder's pid, for readers without `/proc/locks`.
pub struct RunLock {
    _lock: Flock<File>,
}

/// Bytes the run lock's pid takes, newline included: any `u32`, padded
/// with spaces.
const PID_FIELD: usize = 11;

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another `bones hub start` held {path} for more than {waited:?}; check it with `bones hub status`"
    )]
    Timeout { path: String, waited: Duration },
    #[error("cannot open lock file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> LockError + '_ {
    move |source| LockError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn open(path: &Path) -> Result<File, LockError> {
    fsutil::open_state(
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(fsutil::PRIVATE_FILE_MODE),
    )
    .map_err(io_error(path))
}

/// One attempt at an exclusive lock: `Ok(Err(file))` when another holds it.
fn try_lock(file: File) -> Result<Result<Flock<File>, File>, Errno> {
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Ok(lock)),
        Err((returned, Errno::EWOULDBLOCK | Errno::EINTR)) => Ok(Err(returned)),
        Err((_, errno)) => Err(errno),
    }
}

/// Takes the exclusive lock on `path`, waiting up to `timeout`.
fn lock_waiting(path: &Path, timeout: Duration) -> Result<Flock<File>, LockError> {
    let deadline = Instant::now() + timeout;
    let mut file = open(path)?;
    loop {
        match try_lock(file).map_err(|errno| io_error(path)(io::Error::from(errno)))? {
            Ok(lock) => return Ok(lock),
            Err(returned) => file = returned,
        }
        if Instant::now() >= deadline {
            return Err(LockError::Timeout {
                path: path.display().to_string(),
                waited: timeout,
            });
        }
        thread::sleep(Duration::from_millis(10));
    }
}

impl WorkspaceLock {
    /// Takes the lock, waiting up to `timeout` for another starter.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<WorkspaceLock, LockError> {
        lock_waiting(path, timeout).map(|lock| WorkspaceLock { _lock: lock })
    }
}

impl RunLock {
    /// Takes the run lock if no hub holds it (`None` when one does).
    pub fn try_acquire(path: &Path) -> Result<Option<RunLock>, LockError> {
        let file = open(path)?;
        match try_lock(file).map_err(|errno| io_error(path)(io::Error::from(errno)))? {
            Ok(lock) => RunLock::holding(path, lock).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Takes the run lock, waiting up to `timeout`: for the detached hub,
    /// whose starter released it just before spawning it.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<RunLock, LockError> {
        let lock = lock_waiting(path, timeout)?;
        RunLock::holding(path, lock)
    }

    /// Writes the holder's pid over the file's first bytes, padded to
    /// [`PID_FIELD`]: the file never changes length, so taking the lock
    /// costs no truncation (on ext4 a journalled change that a start waited
    /// for on a busy disk, twice: starter and hub). Readers trim the padding.
    fn holding(path: &Path, lock: Flock<File>) -> Result<RunLock, LockError> {
        let pid = format!("{:<width$}\n", std::process::id(), width = PID_FIELD - 1);
        lock.write_all_at(pid.as_bytes(), 0)
            .and_then(|()| match lock.metadata()?.len() {
                // longer than any pid: not written by this version
                len if len > PID_FIELD as u64 => lock.set_len(PID_FIELD as u64),
                _ => Ok(()),
            })
            .map_err(io_error(path))?;
        Ok(RunLock { _lock: lock })
    }
}

/// Who holds the flock on a lock file, as `/proc/locks` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Nobody (or the file does not exist).
    Free,
    /// The process that took the lock.
    Pid(u32),
    /// `/proc/locks` cannot be read here: only taking the lock would tell.
    Unknown,
}

/// `/proc/locks` whole, in as few reads as possible: every read, even the
/// one that only finds the end, walks the system's lock lists again, which
/// took 10 to 20 ms on a busy machine (seen in `strace` of `hub stop`:
/// `read_to_string` makes a 32-byte probe read and a read for the end).
/// The kernel fills a read as far as the table goes (`seq_read`), so a
/// read that leaves the buffer short has read it all.
fn read_lock_table() -> std::io::Result<String> {
    use std::io::Read;
    const CHUNK: usize = 64 * 1024;
    let mut file = std::fs::File::open("/proc/locks")?;
    let mut table = Vec::new();
    loop {
        let start = table.len();
        table.resize(start + CHUNK, 0);
        let n = file.read(&mut table[start..])?;
        table.truncate(start + n);
        if n < CHUNK {
            break;
        }
    }
    String::from_utf8(table).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Who holds the flock on `path`, read from `/proc/locks` without taking
/// it. The table names files by inode alone (its device is the
/// superblock's, which on btrfs and overlayfs differs from the one `stat`
/// reports), so a holder counts only once its open files show it holds
/// this very file: another filesystem's file with the same inode number is
/// never taken for it. A holder the table shows without a usable pid (one
/// in another pid namespace) is named by the pid written into the file.
pub fn holder(path: &Path) -> Holder {
    let Ok(meta) = std::fs::metadata(path) else {
        return Holder::Free;
    };
    let written = written_pid(path);
    if let Some(pid) = written.filter(|pid| holds(*pid, &meta)) {
        return Holder::Pid(pid);
    }
    let Ok(table) = read_lock_table() else {
        return Holder::Unknown;
    };
    let candidates = flock_holders(&table, meta.ino());
    if let Some(pid) = candidates
        .iter()
        .filter_map(|pid| u32::try_from(*pid).ok().filter(|pid| *pid > 0))
        .find(|pid| has_open(*pid, &meta))
    {
        return Holder::Pid(pid);
    }
    if !candidates.iter().any(|pid| *pid <= 0) {
        return Holder::Free;
    }
    written.map_or(Holder::Unknown, Holder::Pid)
}

/// The holder of the lock on `path` as far as it can be told without the
/// lock table: the process whose pid the holder wrote into the file, when
/// it has this very file open. `None` says nothing for sure (a holder in
/// the moment between taking the lock and writing its pid, or one that
/// wrote no pid): it only spares a caller about to take the lock anyway,
/// which learns the truth from that, a read of `/proc/locks` (whose every
/// read cost 10 to 20 ms, up to 23 ms in strace of a `hub start`).
pub fn quick_holder(path: &Path) -> Option<u32> {
    let meta = std::fs::metadata(path).ok()?;
    written_pid(path).filter(|pid| holds(*pid, &meta))
}

/// The pid the holder wrote into the lock file, if any.
fn written_pid(path: &Path) -> Option<u32> {
    fsutil::read_trimmed(path)
        .ok()
        .flatten()
        .and_then(|text| text.parse::<u32>().ok())
        .filter(|pid| *pid > 0)
}

/// Whether `pid`, another process, holds the lock file `meta` describes,
/// as its keeping the file open shows: only the process that takes the
/// lock keeps it open (readers open it for a moment to read the pid).
fn holds(pid: u32, meta: &std::fs::Metadata) -> bool {
    pid != std::process::id() && has_open(pid, meta)
}

/// Whether process `pid` has the file `meta` describes open. Another
/// user's process, whose descriptors cannot be read, has not.
fn has_open(pid: u32, meta: &std::fs::Metadata) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok).any(|fd| {
        std::fs::metadata(fd.path()).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
    })
}

/// Parses `/proc/locks` lines such as
/// `3: FLOCK  ADVISORY  WRITE 4242 00:2f:1234567 0 EOF` for the holders of
/// `inode` (waiters, marked `->`, hold nothing).
fn flock_holders(table: &str, inode: u64) -> Vec<i64> {
    table
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.get(1) != Some(&"FLOCK") {
                return None;
            }
            let pid = words.get(4)?.parse::<i64>().ok()?;
            let ino = words.get(5)?.rsplit(':').next()?.parse::<u64>().ok()?;
            (ino == inode).then_some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_waits_then_gets_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hub.lock");
        let first = WorkspaceLock::acquire(&path, Duration::from_secs(1)).unwrap();
        let err = WorkspaceLock::acquire(&path, Duration::from_millis(50)).err();
        assert!(matches!(err, Some(LockError::Timeout { .. })));
        drop(first);
        WorkspaceLock::acquire(&path, Duration::from_millis(50)).unwrap();
    }

    #[test]
    fn finds_the_flock_holder_and_ignores_waiters() {
        let table = "1: POSIX  ADVISORY  WRITE 10 00:2f:77 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 08:01:77 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 4343 08:01:77 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 5 08:01:78 0 EOF\n";
        assert_eq!(flock_holders(table, 77), [4242]);
        assert_eq!(flock_holders(table, 78), [5]);
        assert!(flock_holders(table, 79).is_empty());
    }

    #[test]
    fn the_run_lock_names_its_holder_and_excludes_a_second_taker() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hub.run.lock");
        assert_eq!(holder(&path), Holder::Free);
        let held = RunLock::try_acquire(&path).unwrap().unwrap();
        assert_eq!(holder(&path), Holder::Pid(std::process::id()));
        assert_eq!(
            fsutil::read_trimmed(&path).unwrap().unwrap(),
            std::process::id().to_string()
        );
        assert!(RunLock::try_acquire(&path).unwrap().is_none());
        drop(held);
        assert_eq!(holder(&path), Holder::Free);
        RunLock::acquire(&path, Duration::from_millis(50)).unwrap();
    }
}
