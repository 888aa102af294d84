//! Damage to the hub's own records, made for real on a stopped hub: a
//! block file of the task bucket cut in half, the trunk ref deleted. Each
//! must be reported (status, hub.log, doctor) and repaired by the command
//! doctor prints, run as printed.

mod support;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use support::{TestWorkspace, stderr, stdout};

/// `bones doctor --json`: exit code and report.
fn doctor(ws: &TestWorkspace) -> (i32, Value) {
    let out = ws.run(&["doctor", "--json"]);
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}): {}", stdout(&out)));
    (out.status.code().unwrap_or(-1), report)
}

fn finding<'a>(report: &'a Value, id: &str) -> Option<&'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
}

fn run_fix(ws: &TestWorkspace, fix: &str) -> String {
    let (out, err) = support::run_fix(ws, fix);
    format!("{out}{err}")
}

/// Every task as `(id, status, claimed_by)`, sorted by id.
fn board(ws: &TestWorkspace) -> Vec<(String, String, String)> {
    let out = ws.ok(&["tasks", "list", "--json"]);
    let list: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    let mut tasks: Vec<_> = list
        .iter()
        .map(|task| {
            let text = |key: &str| task[key].as_str().unwrap_or_default().to_string();
            (text("id"), text("status"), text("claimed_by"))
        })
        .collect();
    tasks.sort();
    tasks
}

/// The message block files of a stream in the JetStream store.
fn block_files(ws: &TestWorkspace, stream: &str) -> Vec<PathBuf> {
    let accounts = ws.state_dir().join("coord/jetstream");
    let mut found = Vec::new();
    for account in fs::read_dir(&accounts).unwrap().filter_map(Result::ok) {
        let msgs = account.path().join("streams").join(stream).join("msgs");
        let Ok(entries) = fs::read_dir(&msgs) else {
            continue;
        };
        found.extend(
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "blk")),
        );
    }
    found.sort();
    found
}

/// Hub.log entries at ERROR or WARN whose text mentions `needle`.
fn log_warnings(ws: &TestWorkspace, needle: &str) -> Vec<Value> {
    ws.hub_log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["level"] == "ERROR" || entry["level"] == "WARN")
        .filter(|entry| {
            let text = format!("{} {}", entry["msg"], entry["err"]);
            text.contains(needle)
        })
        .collect()
}

#[test]
fn a_task_bucket_cut_short_while_stopped_is_reported_and_repaired() {
    let ws = TestWorkspace::new();
    ws.start();
    let ids: Vec<String> = (0..30)
        .map(|i| {
            let out = ws.ok(&["tasks", "create", &format!("task {i}")]);
            stdout(&out).trim().to_string()
        })
        .collect();
    // the newest revision is a claim of the oldest task: cut off, it leaves
    // that task's first revision behind, older than its last event
    let claim = ws
        .command(&["tasks", "claim", &ids[0]])
        .env("BONES_AGENT_ID", "agent-one")
        .output()
        .unwrap();
    assert!(claim.status.success(), "{}", stderr(&claim));
    let before = board(&ws);
    assert_eq!(before.len(), 30);
    ws.stop();

    let blocks = block_files(&ws, "KV_bones-tasks");
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let len = fs::metadata(&blocks[0]).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&blocks[0])
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    // the hub starts (the repair needs it) and says what it found
    let out = ws.start();
    assert!(stderr(&out).contains("store damage"), "{}", stderr(&out));
    let damaged = board(&ws);
    assert!(damaged.len() < 30, "the cut lost no task: {damaged:?}");

    let (code, status) = ws.status();
    assert_eq!(code, 3, "status must not be ok: {status:#}");
    assert_eq!(status["parts"]["store"]["ok"], false, "{status:#}");
    let problem = status["parts"]["store"]["error"].as_str().unwrap();
    assert!(problem.contains("KV_bones-tasks"), "{problem}");
    assert!(problem.contains("bones hub repair store"), "{problem}");

    let warnings = log_warnings(&ws, "KV_bones-tasks");
    assert!(
        !warnings.is_empty(),
        "no warning in hub.log:\n{}",
        ws.hub_log()
    );
    let lost = 30 - damaged.len();
    assert!(
        warnings.iter().any(|w| w["err"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("({lost} lost)"))),
        "no entry says how many were lost ({lost}): {warnings:#?}"
    );

    let (code, report) = doctor(&ws);
    assert_eq!(code, 1, "{report:#}");
    let damage = finding(&report, "store-damage").expect("doctor names the damage");
    assert!(
        damage["problem"]
            .as_str()
            .unwrap()
            .contains("KV_bones-tasks")
    );
    let printed = run_fix(&ws, damage["fix"].as_str().unwrap());
    // the lost tasks written back, the claimed one brought up to date
    assert!(
        printed.contains(&format!(
            "{} task record(s) written back, 1 brought up to date",
            lost
        )),
        "{printed}"
    );

    // every task is back as it was, the claim included
    assert_eq!(board(&ws), before);
    let (code, status) = ws.status();
    assert_eq!(code, 0, "{status:#}");
    let (_, report) = doctor(&ws);
    assert!(finding(&report, "store-damage").is_none(), "{report:#}");
    // and it stays repaired across a restart
    ws.stop();
    ws.start();
    assert_eq!(ws.status().0, 0);
    assert_eq!(board(&ws), before);
    // a second repair finds nothing to do
    let again = stderr(&ws.ok(&["hub", "repair", "store"]));
    assert!(
        again.contains("0 task record(s) written back, 0 brought up to date"),
        "{again}"
    );
}

#[test]
fn a_stream_that_lost_its_newest_sequences_is_reported_and_projected_on() {
    let ws = TestWorkspace::new();
    ws.start();
    for i in 0..10 {
        ws.ok(&["tasks", "create", &format!("task {i}")]);
    }
    ws.stop();
    // the cut and the server's index of the stream gone: the server
    // rebuilds the stream from what is left, which ends at an earlier
    // sequence than the projector had read up to
    let blocks = block_files(&ws, "KV_bones-tasks");
    let len = fs::metadata(&blocks[0]).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&blocks[0])
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let index = blocks[0].with_file_name("index.db");
    let _ = fs::remove_file(index);

    ws.start();
    let (code, status) = ws.status();
    assert_eq!(code, 3, "{status:#}");
    assert!(
        status["parts"]["store"]["error"]
            .as_str()
            .unwrap()
            .contains("went back"),
        "{status:#}"
    );
    // a task made now, on a sequence number used before, still has its event
    let id = stdout(&ws.ok(&["tasks", "create", "after the damage"]))
        .trim()
        .to_string();
    let rt = support::runtime();
    let found = support::wait_until(std::time::Duration::from_secs(10), || {
        rt.block_on(async {
            let js = ws.jetstream().await;
            support::task_events(&js)
                .await
                .iter()
                .any(|event| event["task"] == id.as_str())
        })
    });
    assert!(found, "no event for {id}:\n{}", ws.hub_log());
    ws.ok(&["hub", "repair", "store"]);
    assert_eq!(ws.status().0, 0);
    assert_eq!(board(&ws).len(), 11);
}

#[test]
fn a_deleted_trunk_fails_the_start_at_once_and_is_restored_exactly() {
    let ws = TestWorkspace::new();
    ws.start();
    let checkout = PathBuf::from(
        stdout(&ws.ok(&["swarm", "join", "--slot", "one", "--agent", "a"]))
            .trim()
            .to_string(),
    );
    fs::write(checkout.join("landed.txt"), "landed\n").unwrap();
    ws.ok(&["swarm", "commit", "--slot", "one", "-m", "land a file"]);
    let tip = ws.hub_git(&["rev-parse", "trunk"]);
    assert_eq!(tip.len(), 40, "{tip}");
    ws.ok(&["swarm", "close", "--slot", "one"]);
    ws.stop();

    // git deletes the ref and trunk's own reflog with it
    let deleted = Command::new("git")
        .arg("--git-dir")
        .arg(ws.state_dir().join("hub.git"))
        .args(["update-ref", "-d", "refs/heads/trunk"])
        .status()
        .unwrap();
    assert!(deleted.success());

    let out = ws.run(&["hub", "start", "--detach", "--ready-timeout", "60s"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("trunk ref") && err.contains("missing"),
        "{err}"
    );
    assert!(err.contains(&tip), "the error names the last tip: {err}");
    assert!(err.contains("bones hub repair trunk"), "{err}");
    // refused before anything ran: no hub, no coordination server
    assert!(ws.hub_pid().is_none());
    assert!(ws.processes().is_empty(), "{:?}", ws.processes());

    let (code, report) = doctor(&ws);
    assert_eq!(code, 1, "{report:#}");
    let missing = finding(&report, "trunk-missing").expect("doctor names the missing trunk");
    assert!(
        missing["problem"].as_str().unwrap().contains(&tip),
        "{missing:#}"
    );
    run_fix(&ws, missing["fix"].as_str().unwrap());

    assert_eq!(ws.hub_git(&["rev-parse", "trunk"]), tip);
    let fsck = Command::new("git")
        .arg("--git-dir")
        .arg(ws.state_dir().join("hub.git"))
        .args(["fsck", "--strict"])
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{}", stderr(&fsck));
    let (_, report) = doctor(&ws);
    assert!(finding(&report, "trunk-missing").is_none(), "{report:#}");
    ws.start();
    let (code, status) = ws.status();
    assert_eq!(code, 0, "{status:#}");
    assert_eq!(status["trunk_tip"], tip.as_str());
}

#[test]
fn a_busy_board_is_never_mistaken_for_damage() {
    let ws = TestWorkspace::new();
    ws.start();
    // writers racing the hub's looks: each task is created, then claimed
    std::thread::scope(|scope| {
        for agent in ["agent-a", "agent-b", "agent-c", "agent-d"] {
            let ws = &ws;
            scope.spawn(move || {
                for i in 0..15 {
                    let out = ws.ok(&["tasks", "create", &format!("{agent} {i}")]);
                    let id = stdout(&out).trim().to_string();
                    let claim = ws
                        .command(&["tasks", "claim", &id])
                        .env("BONES_AGENT_ID", agent)
                        .output()
                        .unwrap();
                    assert!(claim.status.success(), "{}", stderr(&claim));
                }
            });
        }
    });
    // once the hub has looked at the final state, nothing was reported
    let rt = support::runtime();
    let last = rt.block_on(async {
        let js = ws.jetstream().await;
        let mut stream = js.get_stream("KV_bones-tasks").await.unwrap();
        stream.info().await.unwrap().state.last_sequence
    });
    assert_eq!(last, 120);
    let marks = ws.state_dir().join("coord/marks.json");
    let looked = support::wait_until(std::time::Duration::from_secs(20), || {
        fs::read_to_string(&marks)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .is_some_and(|m| m["streams"]["KV_bones-tasks"]["last_seq"] == last)
    });
    assert!(looked, "the hub never recorded the bucket's end");
    let (code, status) = ws.status();
    assert_eq!(code, 0, "{status:#}");
    assert_eq!(status["parts"]["store"]["ok"], true, "{status:#}");
    assert!(!ws.state_dir().join("coord/damage.json").exists());
    assert!(
        log_warnings(&ws, "store damage").is_empty(),
        "{}",
        ws.hub_log()
    );
}
