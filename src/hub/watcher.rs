//! The lease watcher: reaps slots whose lease expired, inside the hub.
//!
//! It follows the `bones-swarm-sessions` bucket through a KV watch (the
//! latest record of every key, then each change) and keeps the records in
//! memory, so it never lists the bucket. It wakes when a record changes and
//! when the earliest lease deadline passes, like mini-redis's purge task,
//! and sleeps otherwise. A slot whose `last_renewed + ttl_s` has passed
//! loses its record (a compare-and-swap delete at the revision it saw, so a
//! renewal that races the reaper wins), then its uncommitted work is saved
//! under `refs/bones/rescued/<slot>/<unix>` and its checkout removed. A
//! checkout with no lease at all (the hub crashed mid-reap, a join failed
//! half-way, or the record was lost) is treated the same way; those are
//! looked for when the watch starts and after every deletion. The watcher is
//! silent when nothing is stale, and logs each failure once. Tasks a reaped
//! slot had claimed go back to open; a claim that lands after that is
//! released by the task projector, which knows the slot ended from the
//! deletion marker its lease record left (`projector::orphans`).
//!
//! Any client with the token can write into the bucket, so the watcher
//! trusts nothing in it: a record it cannot read is treated as live (never
//! reaped), one whose key is not a slot name is ignored and reported once
//! (such a key must never become a path), and expiry arithmetic is checked.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::{FutureExt, StreamExt};
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::coord::ServerError;
use crate::lease::{self, LeaseError};
use crate::oplog::{EventKind, HubLog, LogEntry, LogLevel};
use crate::state::paths::Paths;
use crate::swarm::slot::{self, Reaped, SlotDir};
use crate::tasks::Board;

/// How often the agent processes of slots joined with `--pid` are looked
/// at, and only while such slots exist. A process's death makes no KV
/// event, so it has to be looked for: one read of `/proc/<pid>/stat` per
/// such slot each second costs nothing, keeps the check the same as
/// [`lease::Lease::is_live`] (pid and start time, so a reused pid is not
/// mistaken for the agent), and, unlike a pidfd per slot, holds no file
/// descriptor and needs no second path for a process that is already gone
/// (or runs in another pid namespace) when its lease is first seen.
pub const PROCESS_CHECK: Duration = Duration::from_secs(1);

/// How long the watcher waits before trying again after the bucket could
/// not be read or written.
pub const RETRY: Duration = Duration::from_secs(2);

/// Runs the watcher until `stop` is cancelled. It looks at `stop` only
/// while it waits, so a reap under way finishes: the record deleted, the
/// work rescued, the reap logged and the tasks released.
pub fn spawn(
    js: jetstream::Context,
    paths: Paths,
    log: HubLog,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut watcher = Watcher {
            js,
            paths,
            log,
            reported: HashSet::new(),
            leases: HashMap::new(),
        };
        loop {
            match watcher.follow(&stop).await {
                Ok(()) => return,
                Err(err) => watcher.report(format!("hub: lease watcher: {err}; retrying")),
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    })
}

/// Why the watcher stopped following the sessions bucket (it starts again
/// after a pause).
#[derive(Debug, thiserror::Error)]
enum WatchError {
    #[error(transparent)]
    Bucket(#[from] LeaseError),
    #[error("cannot watch {bucket}: {0}", bucket = lease::SESSIONS_BUCKET)]
    Watch(#[source] ServerError),
    #[error("the watch failed: {0}")]
    Failed(#[source] ServerError),
    #[error("the watch ended")]
    Ended,
}

struct Watcher {
    js: jetstream::Context,
    paths: Paths,
    log: HubLog,
    /// Failures already logged (each is logged once until it clears).
    reported: HashSet<String>,
    /// The latest readable-key record of every slot, as the watch last
    /// delivered it.
    leases: HashMap<String, lease::Stored>,
}

impl Watcher {
    fn report(&mut self, message: String) {
        if self.reported.insert(message.clone()) {
            self.log.warn(message);
        }
    }

    /// Follows the bucket until `stop` is cancelled (`Ok`) or the watch
    /// fails or ends.
    async fn follow(&mut self, stop: &CancellationToken) -> Result<(), WatchError> {
        let store = lease::bucket(&self.js).await?;
        let mut watch = store
            .watch_with_history(">")
            .await
            .map_err(|e| WatchError::Watch(ServerError::new(e)))?;
        self.leases.clear();
        // a checkout made before the watch started may have no lease
        let mut checkouts_due = true;
        loop {
            // take every change already delivered before deciding anything
            while let Some(next) = watch.next().now_or_never() {
                match next {
                    Some(Ok(entry)) => checkouts_due |= self.apply(entry),
                    Some(Err(err)) => return Err(WatchError::Failed(ServerError::new(err))),
                    None => return Err(WatchError::Ended),
                }
            }
            let mut wake = None;
            if checkouts_due {
                match self.reap_leaseless(&store).await {
                    Ok(true) => checkouts_due = false,
                    Ok(false) => wake = Some(Instant::now() + RETRY),
                    Err(err) => {
                        self.report(format!("hub: lease watcher: {err}; retrying"));
                        wake = Some(Instant::now() + RETRY);
                    }
                }
            }
            wake = earliest(wake, self.reap_expired(&store).await);
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                next = watch.next() => match next {
                    Some(Ok(entry)) => checkouts_due |= self.apply(entry),
                    Some(Err(err)) => return Err(WatchError::Failed(ServerError::new(err))),
                    None => return Err(WatchError::Ended),
                },
                () = sleep => {}
            }
        }
    }

    /// Records one change; returns whether it removed a record (after which
    /// a checkout may be left without a lease).
    fn apply(&mut self, entry: kv::Entry) -> bool {
        if !lease::is_slot_key(&entry.key) {
            // not a slot name, so never a path: left alone, reported once
            if entry.operation == kv::Operation::Put {
                let message = format!(
                    "hub: lease watcher: ignoring record {} in {}: its key is not a slot name",
                    crate::sys::shown::shown(&entry.key),
                    lease::SESSIONS_BUCKET
                );
                self.report(message);
            }
            return false;
        }
        match entry.operation {
            kv::Operation::Put => {
                let stored = lease::Stored {
                    // a record naming another slot than its key is not one bones wrote
                    lease: lease::decode(&entry.value).filter(|l| l.slot == entry.key),
                    key: entry.key.clone(),
                    revision: entry.revision,
                };
                self.leases.insert(entry.key, stored);
                false
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                self.leases.remove(&entry.key);
                true
            }
        }
    }

    /// Reaps every slot whose lease is no longer live; returns when the
    /// next one may stop being live (the earliest deadline, or the next
    /// process check while slots joined with `--pid` exist).
    async fn reap_expired(&mut self, store: &kv::Store) -> Option<Instant> {
        let now = OffsetDateTime::now_utc();
        let mut wake = None;
        let mut stale = Vec::new();
        for stored in self.leases.values() {
            let Some(held) = &stored.lease else {
                continue; // unreadable: treated as live, never reaped
            };
            if held.is_live(now) {
                let next = match held.watched_process() {
                    Some(_) => Some(Instant::now() + PROCESS_CHECK),
                    None => held.expires_at().map(|at| {
                        Instant::now() + Duration::try_from(at - now).unwrap_or_default()
                    }),
                };
                wake = earliest(wake, next);
            } else {
                stale.push(stored.clone());
            }
        }
        for stored in stale {
            let Some(held) = stored.lease else { continue };
            match lease::delete_at(store, &stored.key, stored.revision).await {
                Ok(deleted) => {
                    // deleted, or renewed meanwhile: either way the watch
                    // brings the record's next state
                    self.leases.remove(&stored.key);
                    if deleted {
                        let why = match held.watched_process() {
                            Some((pid, _)) => format!("its agent process {pid} is gone"),
                            None => {
                                let excess = held.age_s(now).saturating_sub(held.ttl_s);
                                format!("lease expired {excess}s ago")
                            }
                        };
                        // a checkout it could not remove is left without a
                        // lease: the deletion's event brings it to
                        // reap_leaseless, which tries again
                        reap(
                            &self.js,
                            &self.paths,
                            &self.log,
                            &stored.key,
                            Some(&held),
                            &why,
                            &mut self.reported,
                        )
                        .await;
                    }
                }
                Err(err) => {
                    self.report(format!("hub: lease watcher: {err}; retrying"));
                    wake = earliest(wake, Some(Instant::now() + RETRY));
                }
            }
        }
        wake
    }

    /// Reaps every checkout that has no lease; returns whether all were
    /// (a checkout that could not be removed is tried again later).
    async fn reap_leaseless(&mut self, store: &kv::Store) -> Result<bool, LeaseError> {
        let mut all = true;
        for name in slot::on_disk(&self.paths) {
            let dir = SlotDir::new(&self.paths, &name);
            if self.leases.contains_key(&name) || !dir.wt.exists() {
                continue;
            }
            // the bucket is the authority: the watch may not have delivered
            // a lease taken just now (a slot leases before its checkout)
            if lease::get(store, &name).await?.is_some() {
                continue;
            }
            // a slot that never had a record gets the deletion marker a
            // closed or reaped one has, so a claim under its name that
            // lands after the release below is released by the projector
            // too; at revision 0, so neither a lease written meanwhile nor
            // an earlier marker is touched
            lease::delete_at(store, &name, 0).await?;
            all &= reap(
                &self.js,
                &self.paths,
                &self.log,
                &name,
                None,
                "checkout without a lease",
                &mut self.reported,
            )
            .await;
        }
        Ok(all)
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn reap(
    js: &jetstream::Context,
    paths: &Paths,
    log: &HubLog,
    name: &str,
    held: Option<&lease::Lease>,
    why: &str,
    reported: &mut HashSet<String>,
) -> bool {
    let task_id = held.and_then(|l| l.task_id.clone());
    let agent_id = held.map(|l| l.agent_id.clone());
    let dir = SlotDir::new(paths, name);
    let retired = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || dir.retire()
    })
    .await;
    match retired {
        Ok(Ok(rescue_ref)) => {
            let _ = dir.mark_reaped(&Reaped {
                reaped_at: crate::sys::clock::utc_now_rfc3339(),
                rescue_ref: rescue_ref.clone(),
                task_id: task_id.clone(),
                agent_id: agent_id.clone(),
            });
            let saved = match &rescue_ref {
                Some(name) => format!("uncommitted work saved to {name}"),
                None => "nothing uncommitted".to_string(),
            };
            let mut entry = LogEntry::lifecycle(
                LogLevel::Info,
                format!("hub: reaped stale slot {name} ({why}; {saved})"),
            );
            entry.slot = Some(name.to_string());
            entry.task = task_id;
            entry.agent = agent_id;
            log.write(entry);
            reported.remove(name);
            release_tasks(js, log, name).await;
            true
        }
        Ok(Err(err)) => {
            if reported.insert(name.to_string()) {
                let mut entry =
                    LogEntry::new(LogLevel::Error, EventKind::Error).with_err(err.to_string());
                entry.msg = Some(format!(
                    "hub: cannot reap slot {name}; its checkout is kept"
                ));
                entry.slot = Some(name.to_string());
                log.write(entry);
            }
            false
        }
        Err(join) => {
            log.error(
                format!("hub: reaping slot {name} panicked"),
                join.to_string(),
            );
            false
        }
    }
}

/// Puts the tasks a reaped slot held back on the board.
async fn release_tasks(js: &jetstream::Context, log: &HubLog, slot: &str) {
    let released = match Board::open(js).await {
        Ok(board) => {
            board
                .release_all_held_by(slot, "hub", &format!("slot {slot} was reaped"))
                .await
        }
        Err(err) => Err(err),
    };
    if let Err(err) = released {
        log.error(
            format!("hub: cannot release the tasks of reaped slot {slot}"),
            err.to_string(),
        );
    }
}
