//! The lease watcher follows the sessions bucket instead of scanning it: an
//! expired lease is reaped with nothing else happening, a renewed one is
//! kept, a slot joined with `--pid` goes once its process is gone, and an
//! idle watcher asks the coordination server nothing.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use bones::lease;
use support::{KillOnDrop, TestWorkspace, runtime, stdout, wait_until};

fn join(ws: &TestWorkspace, slot: &str, agent: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["swarm", "join", "--slot", slot, "--agent", agent];
    args.extend_from_slice(extra);
    PathBuf::from(stdout(&ws.ok(&args)).trim())
}

fn reaped(ws: &TestWorkspace, slot: &str) -> bool {
    ws.hub_log().contains(&format!("reaped stale slot {slot} "))
}

#[test]
fn an_expired_lease_is_reaped_and_a_renewed_one_is_kept() {
    let ws = TestWorkspace::new();
    ws.start();
    let gone = join(&ws, "sleepy", "agent-s", &["--ttl", "1s"]);
    let kept = join(&ws, "busy", "agent-b", &["--ttl", "3s"]);

    // busy's agent renews through the library, far within its TTL, until
    // sleepy (silent, a shorter TTL) is reaped: no verb touches sleepy
    let rt = runtime();
    let store = rt.block_on(async { lease::bucket(&ws.jetstream().await).await.unwrap() });
    let mut renewals = 0;
    let done = wait_until(Duration::from_secs(30), || {
        rt.block_on(lease::renew(&store, "busy")).unwrap();
        renewals += 1;
        reaped(&ws, "sleepy")
    });
    assert!(done, "sleepy was not reaped; hub.log:\n{}", ws.hub_log());
    assert!(renewals > 1);
    assert!(!gone.exists(), "sleepy's checkout is still there");
    assert!(
        !reaped(&ws, "busy"),
        "a renewed lease was reaped; hub.log:\n{}",
        ws.hub_log()
    );
    assert!(kept.exists());
    let held = rt.block_on(lease::get(&store, "busy")).unwrap();
    assert!(held.is_some_and(|s| s.lease.is_some()));
}

#[test]
fn a_pid_bound_slot_is_reaped_once_its_process_dies() {
    let ws = TestWorkspace::new();
    ws.start();
    let mut agent = KillOnDrop(
        std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id().to_string();
    // a TTL far in the future: only the process's death can end the slot
    let wt = join(&ws, "bound", "agent-p", &["--ttl", "1h", "--pid", &pid]);
    assert!(!reaped(&ws, "bound"));

    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || reaped(&ws, "bound")),
        "the slot of a dead agent was not reaped; hub.log:\n{}",
        ws.hub_log()
    );
    assert!(
        ws.hub_log()
            .contains(&format!("its agent process {pid} is gone")),
        "{}",
        ws.hub_log()
    );
    assert!(!wt.exists());
}

#[test]
fn an_idle_watcher_reads_nothing_from_the_bucket() {
    let ws = TestWorkspace::new();
    ws.start();
    join(&ws, "idle", "agent-i", &["--ttl", "1h"]);
    let rt = runtime();
    // every read of a record or listing of keys is a JetStream API request
    // naming the bucket's stream: a direct get, a message get, or the
    // consumer a key listing makes; any client may listen to them
    let reads = rt.block_on(async {
        let client = bones::coord::connect(&ws.paths()).await.unwrap();
        let mut requests = client.subscribe("$JS.API.>").await.unwrap();
        client.flush().await.unwrap();
        let stream = format!("KV_{}", lease::SESSIONS_BUCKET);
        let mut reads = Vec::new();
        // long enough for a scan on a tick to list the bucket twice
        let window = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(window);
        loop {
            tokio::select! {
                Some(request) = futures::StreamExt::next(&mut requests) => {
                    let subject = request.subject.to_string();
                    let read = ["DIRECT.GET.", "MSG.GET.", "CONSUMER.CREATE."]
                        .iter()
                        .any(|kind| subject.contains(&format!("{kind}{stream}")));
                    if read {
                        reads.push(subject);
                    }
                }
                () = &mut window => break,
            }
        }
        reads
    });
    assert!(
        reads.is_empty(),
        "the hub read the bucket while nothing changed: {reads:?}"
    );
}
