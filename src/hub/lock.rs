//! The workspace start lock, `hub.lock`.
//!
//! Two `hub start` racing in one workspace once corrupted URL and pid state
//! (Go #208). The lock is a `flock(2)` on `hub.lock`, so a holder that dies
//! releases it with its last descriptor: there is no stale lock to reclaim.
//! Unlike the reference, a second starter waits for the lock instead of
//! failing, then finds the hub the first one started (decision 6).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Held while a start is in progress; dropping it releases the lock.
pub struct WorkspaceLock {
    _lock: Flock<File>,
}

/// Why the lock could not be taken.
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

impl WorkspaceLock {
    /// Takes the lock, waiting up to `timeout` for another starter.
    pub fn acquire(path: &Path, timeout: Duration) -> Result<WorkspaceLock, LockError> {
        let io_err = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        let deadline = Instant::now() + timeout;
        let mut file = crate::fsutil::open_state(
            path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600),
        )
        .map_err(io_err)?;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(WorkspaceLock { _lock: lock }),
                Err((returned, Errno::EWOULDBLOCK | Errno::EINTR)) => file = returned,
                Err((_, errno)) => return Err(io_err(io::Error::from(errno))),
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
}
