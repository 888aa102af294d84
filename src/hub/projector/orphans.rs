//! Claims left to slots that ended: the guarantee that no task stays
//! claimed by a slot that was closed or reaped.
//!
//! Closing or reaping a slot deletes its lease, then releases the tasks it
//! holds. A claim whose compare-and-swap lands after that release (the
//! claimer checked the slot a moment before it ended, see
//! [`Board::check_claimant`]) would be held by nobody, for ever. Every claim
//! revision the projector sees is therefore checked: when its claimant is a
//! slot whose lease record is deleted ([`Board::claimant_ended`]) the claim
//! is released, as `hub`, with the reason in the task's `last_op`, and
//! hub.log says so. A check that comes before the slot's release finds a
//! lease and leaves the claim alone; the release, later, finds the claim.
//! A slot merely slow to renew, or expired but not yet reaped, still has
//! its record and is never touched (the lease watcher decides about it).
//!
//! The projector waits for the check before it acknowledges the revision,
//! so a hub that dies first checks it again after the restart; a starting
//! hub also looks at every claimed task once ([`Orphans::sweep`]), for
//! claims acknowledged by a hub that did not check them.

use std::time::Duration;

use crate::oplog::{HubLog, LogEntry, LogLevel};
use crate::sys::error::{ErrorKind, Kinded};
use crate::tasks::record::{Status, Task};
use crate::tasks::{Board, TaskError};

/// Who releases such a claim, in the task's `last_op.by`.
const BY: &str = "hub";
/// How many times a check that failed on the server is tried again.
const ATTEMPTS: usize = 8;
/// The first wait before trying a failed check again (doubling).
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// Releases claims held by slots that ended.
#[derive(Clone)]
pub struct Orphans {
    board: Board,
    log: HubLog,
}

impl Orphans {
    pub fn new(board: Board, log: HubLog) -> Orphans {
        Orphans { board, log }
    }

    /// The slot a revision claimed the task for, when the revision is a
    /// claim by a name that can be a slot.
    pub fn claimant(task: &Task) -> Option<&str> {
        match (&task.status, task.claimed_by.as_deref()) {
            (Status::Claimed, Some(slot))
                if task.last_op.op == "claim" && crate::lease::is_slot_key(slot) =>
            {
                Some(slot)
            }
            _ => None,
        }
    }

    /// Checks, off the projector's loop, the claim of `task` by `slot`.
    pub fn check(&self, task: &str, slot: &str) -> tokio::task::JoinHandle<()> {
        let (orphans, task, slot) = (self.clone(), task.to_string(), slot.to_string());
        tokio::spawn(async move { orphans.release_if_ended(&task, &slot).await })
    }

    /// Checks every claimed task once (a starting hub).
    pub async fn sweep(&self) {
        let tasks = match self.board.list().await {
            Ok((tasks, _)) => tasks,
            Err(err) => {
                self.log.warn(format!(
                    "hub: cannot look for claims left to closed slots ({err}); new claims are still checked"
                ));
                return;
            }
        };
        for task in &tasks {
            if let (Status::Claimed, Some(slot)) = (task.status, task.claimed_by.as_deref()) {
                self.release_if_ended(&task.id, slot).await;
            }
        }
    }

    /// Releases `task` if `slot` ended and still holds it, trying again
    /// while the server fails; logs the release, or why it failed.
    async fn release_if_ended(&self, task: &str, slot: &str) {
        let mut wait = FIRST_RETRY;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_release(task, slot).await {
                Ok(released) => {
                    if released {
                        let mut entry = LogEntry::lifecycle(
                            LogLevel::Info,
                            format!(
                                "hub: released task {task}: its claimant slot {slot} was closed or reaped before the claim landed"
                            ),
                        );
                        entry.slot = Some(slot.to_string());
                        entry.task = Some(task.to_string());
                        entry.by = Some(BY.to_string());
                        self.log.write(entry);
                    }
                    return;
                }
                Err(err) if attempt < ATTEMPTS && retryable(&err) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(err) => {
                    let mut entry = LogEntry::new(LogLevel::Error, crate::oplog::EventKind::Error)
                        .with_err(err.to_string());
                    entry.msg = Some(format!(
                        "hub: cannot check whether task {task} is held by closed slot {slot}; `bones tasks release {task} --force` frees it"
                    ));
                    entry.slot = Some(slot.to_string());
                    entry.task = Some(task.to_string());
                    self.log.write(entry);
                    return;
                }
            }
        }
    }

    async fn try_release(&self, task: &str, slot: &str) -> Result<bool, TaskError> {
        if !self.board.claimant_ended(slot).await? {
            return Ok(false);
        }
        let reason = format!("slot {slot} was closed or reaped: nothing holds this claim");
        match self.board.release_if_held_by(task, slot, BY, &reason).await {
            Err(TaskError::NotFound(_)) => Ok(false), // deleted meanwhile
            done => done,
        }
    }
}

/// Whether trying again may succeed.
fn retryable(err: &TaskError) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Server | ErrorKind::Timeout | ErrorKind::Contended
    )
}
