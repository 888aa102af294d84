//! The hub drains instead of aborting: a stop that comes while a landing is
//! under way still answers it, and the hub stops cleanly.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bones::swarm::protocol::{LAND_SUBJECT, LandReply, LandRequest};
use support::{Signal, TestWorkspace, freeze, runtime, send_signal, stdout, wait_until};

/// Enough commits that replaying them onto trunk takes a while.
const COMMITS: u32 = 300;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        support::stderr(&out)
    );
    stdout(&out).trim().to_string()
}

#[test]
fn a_stop_during_a_landing_answers_it_and_stops_cleanly() {
    let ws = TestWorkspace::new();
    ws.start();
    let out = ws.ok(&["swarm", "join", "--slot", "busy", "--agent", "agent-b"]);
    let wt = PathBuf::from(stdout(&out).trim());
    for n in 0..COMMITS {
        std::fs::write(wt.join(format!("file-{n}.txt")), format!("{n}\n")).unwrap();
        git(&wt, &["add", "-A"]);
        git(&wt, &["commit", "-qm", &format!("change {n}")]);
    }
    let head = git(&wt, &["rev-parse", "HEAD"]);
    let hub = ws.hub_pid().unwrap();

    let rt = runtime();
    let client = rt.block_on(bones::coord::connect(&ws.paths())).unwrap();
    let request = serde_json::to_vec(&LandRequest {
        slot: "busy".into(),
        head: head.clone(),
        agent: Some("agent-b".into()),
        task: None,
        user: None,
    })
    .unwrap();
    // the hub, frozen, gets the request and the stop at the same moment
    // when it wakes: the landing starts as the stop begins
    freeze(hub);
    let reply = rt.spawn({
        let client = client.clone();
        async move {
            let asked = client.request(LAND_SUBJECT, request.into());
            tokio::time::timeout(Duration::from_secs(30), asked).await
        }
    });
    rt.block_on(client.flush()).unwrap();
    send_signal(hub, Signal::SIGTERM);
    send_signal(hub, Signal::SIGCONT);

    let answered = rt.block_on(reply).unwrap();
    let message = answered
        .expect("the request got no answer: the landing was abandoned")
        .expect("the request failed");
    let reply: LandReply = serde_json::from_slice(&message.payload).unwrap();
    match &reply {
        LandReply::Landed { trunk, .. } => {
            assert_eq!(&ws.hub_git(&["rev-parse", "trunk"]), trunk);
            let landed = ws.hub_git(&["rev-list", "--count", "trunk"]);
            assert!(landed.parse::<u32>().unwrap() >= COMMITS, "{landed}");
        }
        LandReply::Failed { error } => assert!(error.contains("stopping"), "{error}"),
        LandReply::Conflict { .. } => panic!("unexpected {reply:?}"),
    }

    assert!(
        wait_until(Duration::from_secs(30), || !support::alive(hub)),
        "the hub did not stop; hub.log:\n{}",
        ws.hub_log()
    );
    let log = ws.hub_log();
    assert!(log.contains("hub: stopped"), "{log}");
    assert!(!log.contains("panic"), "{log}");
    assert!(!log.contains("aborted"), "{log}");
}
