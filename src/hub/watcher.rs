//! The lease watcher: reaps slots whose lease expired, inside the hub.
//!
//! Every [`SCAN_INTERVAL`] it lists the `bones-swarm-sessions` bucket. A
//! slot whose `last_renewed + ttl_s` has passed loses its record (a
//! compare-and-swap delete, so a renewal that races the reaper wins), then
//! its uncommitted work is saved under `refs/bones/rescued/<slot>/<unix>`
//! and its checkout removed. A checkout with no lease at all (the hub
//! crashed mid-reap, or the record was lost) is treated the same way. The
//! watcher is silent when nothing is stale, and logs each failure once.
//! Tasks a reaped slot had claimed go back to open.
//!
//! Any client with the token can write into the bucket, so the watcher
//! trusts nothing in it: a record it cannot read is treated as live (never
//! reaped), one whose key is not a slot name is ignored and reported once
//! (such a key must never become a path), and expiry arithmetic is checked.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream;
use time::OffsetDateTime;

use crate::oplog::{EventKind, HubLog, LogEntry, LogLevel};
use crate::state::paths::Paths;
use crate::swarm::lease;
use crate::swarm::slot::{self, Reaped, SlotDir};
use crate::tasks::Board;

/// How often the watcher looks for expired leases: reap latency is at most
/// the lease TTL plus this plus one scan.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(2);

/// Runs the watcher until the task is aborted.
pub fn spawn(js: jetstream::Context, paths: Paths, log: HubLog) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reported = HashSet::new();
        loop {
            if let Err(err) = scan(&js, &paths, &log, &mut reported).await
                && reported.insert(err.clone())
            {
                log.warn(format!("hub: lease watcher: {err}; retrying"));
            }
            tokio::time::sleep(SCAN_INTERVAL).await;
        }
    })
}

/// One pass: reaps expired leases and checkouts without a lease.
async fn scan(
    js: &jetstream::Context,
    paths: &Paths,
    log: &HubLog,
    reported: &mut HashSet<String>,
) -> Result<(), String> {
    let store = lease::bucket(js).await.map_err(|e| e.to_string())?;
    // checkouts first: a slot takes its lease before it makes its checkout,
    // so a checkout seen here without a lease in the list below is either
    // truly leaseless or was made after the list, and is asked about again
    let checkouts = slot::on_disk(paths);
    let (records, foreign) = lease::list_checked(&store)
        .await
        .map_err(|e| e.to_string())?;
    for key in foreign {
        // not a slot name, so never a path: left alone, reported once
        if reported.insert(format!("foreign key {key}")) {
            log.warn(format!(
                "hub: lease watcher: ignoring record {} in {}: its key is not a slot name",
                crate::sys::shown::shown(&key),
                lease::SESSIONS_BUCKET
            ));
        }
    }
    let now = OffsetDateTime::now_utc();
    let mut leased = HashSet::new();
    for record in records {
        leased.insert(record.key.clone());
        let Some(held) = record.lease else {
            continue; // unreadable: treated as live, never reaped
        };
        if held.is_live(now) {
            continue;
        }
        match lease::delete_at(&store, &record.key, record.revision).await {
            Ok(true) => {
                let why = match held.watched_process() {
                    Some((pid, _)) => format!("its agent process {pid} is gone"),
                    None => {
                        let excess = held.age_s(now).saturating_sub(held.ttl_s);
                        format!("lease expired {excess}s ago")
                    }
                };
                reap(js, paths, log, &record.key, Some(&held), &why, reported).await;
            }
            Ok(false) => {} // renewed meanwhile
            Err(err) => return Err(err.to_string()),
        }
    }
    for name in checkouts {
        let dir = SlotDir::new(paths, &name);
        if leased.contains(&name) || !dir.wt.exists() {
            continue;
        }
        // joined since the list was read: its lease is there now
        if lease::get(&store, &name)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            continue;
        }
        reap(
            js,
            paths,
            log,
            &name,
            None,
            "checkout without a lease",
            reported,
        )
        .await;
    }
    Ok(())
}

async fn reap(
    js: &jetstream::Context,
    paths: &Paths,
    log: &HubLog,
    name: &str,
    held: Option<&lease::Lease>,
    why: &str,
    reported: &mut HashSet<String>,
) {
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
                reaped_at: crate::oplog::utc_now_rfc3339(),
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
        }
        Err(join) => log.error(
            format!("hub: reaping slot {name} panicked"),
            join.to_string(),
        ),
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
