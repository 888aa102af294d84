//! No task stays claimed by a slot that is gone. Closing or reaping a slot
//! releases what it holds at that moment; a claim whose compare-and-swap
//! lands just after (its claimer checked the slot a moment before it
//! ended) is released by the hub's task projector, and a claim made under
//! the name of a slot that already ended is refused outright. A live slot,
//! and an agent outside any slot, keep their claims.
//!
//! The race is driven deterministically: the slot ends first, then the
//! claim is written the way the board's claim writes it (a compare-and-swap
//! of the record read), skipping the check that would refuse it, as a
//! claimer that checked just before the slot ended would.

mod support;

use std::process::Command;
use std::time::Duration;

use bones::tasks::{Board, NewTask, Status, Task};
use support::{KillOnDrop, Signal, TestWorkspace, join, runtime, send_signal, stderr, wait_until};

/// How long the hub may take to release a claim left to a slot that ended.
const DEADLINE: Duration = Duration::from_secs(30);

fn board(ws: &TestWorkspace, rt: &tokio::runtime::Runtime) -> Board {
    rt.block_on(async { Board::open(&ws.jetstream().await).await.unwrap() })
}

/// A workspace with its hub started and one task per title; the task ids.
fn hub_with_tasks(titles: &[&str]) -> (TestWorkspace, tokio::runtime::Runtime, Board, Vec<String>) {
    let ws = TestWorkspace::new();
    ws.start();
    let rt = runtime();
    let board = board(&ws, &rt);
    let ids = titles
        .iter()
        .map(|title| {
            let new = NewTask {
                title: title.to_string(),
                ..Default::default()
            };
            rt.block_on(board.create(new, "test")).unwrap().id
        })
        .collect();
    (ws, rt, board, ids)
}

/// Waits until the hub's projector handled (and checked) every revision.
fn caught_up(ws: &TestWorkspace, rt: &tokio::runtime::Runtime) {
    rt.block_on(async { support::projector_caught_up(&ws.jetstream().await).await });
}

/// Writes a claim of `id` by `slot` as the board's claim does, without its
/// check of the slot: the claim of a claimer that checked a moment before
/// the slot ended.
fn claim_behind_the_check(rt: &tokio::runtime::Runtime, board: &Board, id: &str, slot: &str) {
    rt.block_on(async {
        let (mut task, revision) = board.get(id).await.unwrap();
        let now = bones::sys::clock::utc_now_rfc3339();
        assert!(task.claim(slot, &now).unwrap());
        let record = serde_json::to_vec(&task).unwrap();
        board
            .store()
            .update(id, record.into(), revision)
            .await
            .unwrap();
    });
}

fn task(rt: &tokio::runtime::Runtime, board: &Board, id: &str) -> Task {
    rt.block_on(board.get(id)).unwrap().0
}

/// Who holds task `id`.
fn task_holder(rt: &tokio::runtime::Runtime, board: &Board, id: &str) -> Option<String> {
    task(rt, board, id).claimed_by
}

/// Waits until nobody holds task `id` and returns it; fails the test,
/// showing hub.log, when it stays claimed.
fn released(ws: &TestWorkspace, rt: &tokio::runtime::Runtime, board: &Board, id: &str) -> Task {
    let open = wait_until(DEADLINE, || task(rt, board, id).status == Status::Open);
    let task = task(rt, board, id);
    assert!(
        open,
        "task {id} stayed claimed by {:?}; hub.log:\n{}",
        task.claimed_by,
        ws.hub_log()
    );
    assert_eq!(task.claimed_by, None);
    task
}

/// The hub.log entry saying the hub released `id` from `slot`.
fn release_logged(ws: &TestWorkspace, id: &str, slot: &str) -> bool {
    support::log_entries(ws, "lifecycle")
        .iter()
        .any(|e| e["task"] == id && e["slot"] == slot && e["by"] == "hub")
}

/// Waits until the hub released task `id` from `slot`: the record says so
/// and hub.log has its entry.
fn released_by_hub(
    ws: &TestWorkspace,
    rt: &tokio::runtime::Runtime,
    board: &Board,
    id: &str,
    slot: &str,
) -> Task {
    let task = released(ws, rt, board, id);
    assert_eq!(task.last_op.op, "release");
    assert_eq!(task.last_op.by, "hub");
    let reason = task.last_op.reason.clone().unwrap_or_default();
    assert!(reason.contains(&format!("slot {slot} ")), "{reason}");
    assert!(
        wait_until(DEADLINE, || release_logged(ws, id, slot)),
        "{}",
        ws.hub_log()
    );
    task
}

#[test]
fn a_claim_that_lands_after_its_slot_was_reaped_is_released() {
    let (ws, rt, board, ids) =
        hub_with_tasks(&["held when the slot is reaped", "claimed too late"]);
    let [held, id] = &ids[..] else { unreachable!() };
    // the slot lives as long as this process (ADR 0011), so the test says
    // when it is reaped
    let mut agent = KillOnDrop(Command::new("sleep").arg("600").spawn().unwrap());
    let pid = agent.0.id().to_string();
    join(&ws, "late", "agent-l", &["--pid", &pid]);
    ws.ok(&["tasks", "claim", held, "--slot", "late"]);
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    // the reap released what the slot held: it is over
    let task = released(&ws, &rt, &board, held);
    assert!(
        task.last_op
            .reason
            .is_some_and(|r| r.contains("slot late was reaped")),
        "{}",
        ws.hub_log()
    );

    claim_behind_the_check(&rt, &board, id, "late");
    released_by_hub(&ws, &rt, &board, id, "late");
    // the claim the slot's agent tries now is refused outright
    let out = ws.run(&["tasks", "claim", id, "--slot", "late"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("swarm join --slot late"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_closed_slot_releases_its_tasks_and_refuses_or_loses_later_claims() {
    let (ws, rt, board, ids) =
        hub_with_tasks(&["held when the slot closes", "claimed after the slot closed"]);
    let [held, late] = &ids[..] else {
        unreachable!()
    };
    join(&ws, "done", "agent-d", &["--ttl", "1h"]);
    ws.ok(&["tasks", "claim", held, "--slot", "done"]);
    ws.ok(&["swarm", "close", "--slot", "done"]);
    let task = released(&ws, &rt, &board, held);
    assert!(
        task.last_op.reason.unwrap_or_default().contains("closed"),
        "closing the slot released its task"
    );

    // the claim and claim --next refuse, with a kind and what to do
    let (_, revision) = rt.block_on(board.get(late)).unwrap();
    let out = ws.run(&["tasks", "claim", late, "--slot", "done", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let error: serde_json::Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(error["error"]["kind"], "refused", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("slot done was closed"), "{message}");
    // logged like any refused claim
    assert!(
        support::log_entries(&ws, "rpc")
            .iter()
            .any(|e| e["rpc"] == "tasks.claim"
                && e["err"]
                    .as_str()
                    .is_some_and(|err| err.contains("slot done was closed"))),
        "{}",
        ws.hub_log()
    );
    let out = ws.run(&["tasks", "claim", "--next", "--slot", "done"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        rt.block_on(board.get(late)).unwrap().1,
        revision,
        "a refused claim wrote nothing"
    );

    // a claim that slipped past the check is released by the hub
    claim_behind_the_check(&rt, &board, late, "done");
    released_by_hub(&ws, &rt, &board, late, "done");

    // joined again, the slot claims as before
    join(&ws, "done", "agent-d", &["--ttl", "1h"]);
    ws.ok(&["tasks", "claim", late, "--slot", "done"]);
    caught_up(&ws, &rt);
    assert_eq!(task_holder(&rt, &board, late), Some("done".to_string()));
}

#[test]
fn a_live_slot_and_an_agent_outside_slots_keep_their_claims() {
    let (ws, rt, board, ids) = hub_with_tasks(&[
        "held by a slot slow to renew",
        "held by an agent outside slots",
    ]);
    let [slow, loose] = &ids[..] else {
        unreachable!()
    };
    // a long TTL: the lease is live however long the agent stays silent
    join(&ws, "slow", "agent-s", &["--ttl", "1h"]);
    claim_behind_the_check(&rt, &board, slow, "slow");
    rt.block_on(board.claim(loose, "lonely")).unwrap();
    // the projector checks a claim before it acknowledges its revision
    caught_up(&ws, &rt);
    assert_eq!(task_holder(&rt, &board, slow), Some("slow".to_string()));
    assert_eq!(task_holder(&rt, &board, loose), Some("lonely".to_string()));
    assert!(!release_logged(&ws, slow, "slow"), "{}", ws.hub_log());
}

#[test]
fn a_hub_that_died_before_checking_a_claim_checks_it_after_a_restart() {
    let (ws, rt, board, ids) = hub_with_tasks(&["claimed while the hub was frozen"]);
    let id = &ids[0];
    join(&ws, "gone", "agent-g", &["--ttl", "1h"]);
    ws.ok(&["swarm", "close", "--slot", "gone"]);
    caught_up(&ws, &rt);

    // the hub stops reading; the claim is delivered to it, never checked
    let pid = ws.hub_pid().unwrap();
    support::freeze(pid);
    claim_behind_the_check(&rt, &board, id, "gone");
    rt.block_on(async {
        let stream = &board.store().stream;
        while stream
            .consumer_info(bones::hub::projector::DURABLE)
            .await
            .unwrap()
            .num_ack_pending
            == 0
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    send_signal(pid, Signal::SIGKILL);
    assert!(wait_until(Duration::from_secs(10), || !support::alive(pid)));
    ws.start();
    let board = self::board(&ws, &rt);
    released_by_hub(&ws, &rt, &board, id, "gone");
}
