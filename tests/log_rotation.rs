//! hub.log under rotation: any number of writers (the hub and every CLI
//! that logs) lose no entry, a CLI never rotates by its own environment,
//! bad settings are refused at start, `--follow` prints every line exactly
//! once across rotations, and a symlink planted at hub.log is never written
//! through.

mod support;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use support::{Signal, TestWorkspace, runtime, send_signal, stderr, stdout, wait_until};

/// The hub's rotation settings in these tests: a file per entry of the
/// hub's, and enough files that nothing written here is rotated out of
/// existence.
const HUB_MAX_SIZE: &str = "200";
const MAX_FILES: &str = "100";
/// What the CLIs' own environment says: a size that made every CLI rotate
/// at each of its entries before.
const CLI_MAX_SIZE: &str = "1";

/// Parallel workers, and rounds each: create a task, claim it, have
/// another agent's claim refused (three entries: two by the hub's
/// projector, one by the refused CLI). The workers take each step
/// together, so that writers and rotations overlap.
const WORKERS: usize = 8;
const ROUNDS: usize = 5;

fn start_hub(ws: &TestWorkspace) {
    let out = ws
        .command(&["hub", "start", "--detach"])
        .env("BONES_LOG_MAX_SIZE", HUB_MAX_SIZE)
        .env("BONES_LOG_MAX_FILES", MAX_FILES)
        .output()
        .unwrap();
    assert!(out.status.success(), "start failed: {}", stderr(&out));
}

/// A `bones` command run as `agent` with the CLIs' tiny rotation settings.
fn cli(ws: &TestWorkspace, agent: &str, args: &[&str]) -> std::process::Output {
    ws.command(args)
        .env("BONES_AGENT_ID", agent)
        .env("BONES_LOG_MAX_SIZE", CLI_MAX_SIZE)
        .env("BONES_LOG_MAX_FILES", MAX_FILES)
        .output()
        .unwrap()
}

/// Runs the workers; returns (agent, task) of every refused claim.
fn workload(ws: &TestWorkspace) -> Vec<(String, String)> {
    let together = std::sync::Barrier::new(WORKERS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let together = &together;
                scope.spawn(move || {
                    let (owner, thief) = (format!("owner-{w}"), format!("thief-{w}"));
                    let mut refused = Vec::new();
                    for round in 0..ROUNDS {
                        let title = format!("w{w} r{round}");
                        together.wait();
                        let out = cli(ws, &owner, &["tasks", "create", &title]);
                        assert!(out.status.success(), "create: {}", stderr(&out));
                        let id = stdout(&out).trim().to_string();
                        together.wait();
                        let out = cli(ws, &owner, &["tasks", "claim", &id]);
                        assert!(out.status.success(), "claim: {}", stderr(&out));
                        together.wait();
                        let out = cli(ws, &thief, &["tasks", "claim", &id]);
                        assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
                        refused.push((thief.clone(), id));
                    }
                    refused
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

/// Every line of hub.log and its rotated files, oldest file first.
fn lines_on_disk(ws: &TestWorkspace) -> Vec<String> {
    bones::oplog::read::files_oldest_first(&ws.state_dir().join("hub.log"))
        .iter()
        .flat_map(|path| {
            fs::read_to_string(path)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Waits until the projector has logged every task event; returns the
/// events as (task, revision).
fn events_once_caught_up(ws: &TestWorkspace) -> Vec<(String, u64)> {
    runtime().block_on(async {
        let js = ws.jetstream().await;
        support::projector_caught_up(&js).await;
        support::task_events(&js)
            .await
            .iter()
            .map(|event| {
                (
                    event["task"].as_str().unwrap().to_string(),
                    event["revision"].as_u64().unwrap(),
                )
            })
            .collect()
    })
}

/// What does not match between the task events and refusals and the
/// entries in `lines`: each event has exactly one `rpc` entry with its
/// revision, each refused claim exactly one `rpc` entry with `err`.
fn mismatches(
    lines: &[String],
    events: &[(String, u64)],
    refused: &[(String, String)],
) -> Vec<String> {
    let mut logged: HashMap<(String, u64), usize> = HashMap::new();
    let mut refusals: HashMap<(String, String), usize> = HashMap::new();
    for line in lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
        if entry["event"] != "rpc" {
            continue;
        }
        let task = entry["task"].as_str().unwrap_or_default().to_string();
        if let Some(revision) = entry["revision"].as_u64() {
            *logged.entry((task, revision)).or_default() += 1;
        } else if entry.get("err").is_some() && entry["rpc"] == "tasks.claim" {
            let agent = entry["agent"].as_str().unwrap_or_default().to_string();
            *refusals.entry((agent, task)).or_default() += 1;
        }
    }
    let mut wrong = Vec::new();
    for event in events {
        match logged.get(event).copied().unwrap_or(0) {
            1 => {}
            n => wrong.push(format!("event {}:{} has {n} entries", event.0, event.1)),
        }
    }
    for refusal in refused {
        match refusals.get(refusal).copied().unwrap_or(0) {
            1 => {}
            n => wrong.push(format!(
                "refusal of {} to {} has {n} entries",
                refusal.1, refusal.0
            )),
        }
    }
    wrong
}

#[test]
fn concurrent_writers_lose_no_entry_under_rotation() {
    let ws = TestWorkspace::new();
    start_hub(&ws);
    let refused = workload(&ws);
    let events = events_once_caught_up(&ws);
    assert_eq!(
        events.len(),
        2 * WORKERS * ROUNDS,
        "create and claim events"
    );

    let wrong = mismatches(&lines_on_disk(&ws), &events, &refused);
    assert!(
        wrong.is_empty(),
        "{} lost or doubled: {wrong:?}",
        wrong.len()
    );
    let state = ws.state_dir();
    assert!(state.join("hub.log.3").exists(), "the log rotated");
    assert!(
        !state.join(format!("hub.log.{MAX_FILES}")).exists(),
        "nothing was rotated out of existence, so every entry had to be on disk"
    );
}

#[test]
fn a_cli_with_a_tiny_max_size_keeps_the_hubs_history() {
    let ws = TestWorkspace::new();
    ws.start();
    let id = stdout(&ws.ok(&["tasks", "create", "held"]))
        .trim()
        .to_string();
    let out = ws
        .command(&["tasks", "claim", &id])
        .env("BONES_AGENT_ID", "holder")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..7 {
        let out = ws
            .command(&["tasks", "claim", &id])
            .env("BONES_AGENT_ID", format!("other-{i}"))
            .env("BONES_LOG_MAX_SIZE", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    }

    let state = ws.state_dir();
    assert!(
        !state.join("hub.log.1").exists(),
        "a CLI rotated hub.log by its own environment"
    );
    let log = ws.hub_log();
    assert!(log.contains("\"msg\":\"hub: ready\""), "{log}");
    for i in 0..7 {
        assert!(log.contains(&format!("\"agent\":\"other-{i}\"")), "{log}");
    }
}

#[test]
fn bad_log_settings_are_refused_at_start_naming_the_variable() {
    let ws = TestWorkspace::new();
    for (var, value, says) in [
        ("BONES_LOG_MAX_FILES", "4000000000", "1 to 100"),
        ("BONES_LOG_MAX_FILES", "101", "1 to 100"),
        ("BONES_LOG_MAX_FILES", "0", "1 to 100"),
        ("BONES_LOG_MAX_FILES", "many", "1 to 100"),
        ("BONES_LOG_MAX_SIZE", "ten", "bytes"),
        ("BONES_LOG_MAX_SIZE", "0", "bytes"),
        ("BONES_LOG_MAX_SIZE", "-5", "bytes"),
        ("BONES_HUB_LOG_LEVEL", "loud", "debug, info, warn or error"),
    ] {
        let out = ws
            .command(&["hub", "start", "--detach"])
            .env(var, value)
            .output()
            .unwrap();
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {said}");
        assert!(said.contains(var) && said.contains(says), "{said}");
        assert!(said.lines().count() <= 2, "{said}");
        assert_eq!(ws.status().0, 1, "{var}={value} started a hub");
    }
    // the flag wins over the variable, and good values are taken
    let out = ws
        .command(&["hub", "start", "--detach", "--log-level", "warn"])
        .env("BONES_HUB_LOG_LEVEL", "loud")
        .env("BONES_LOG_MAX_FILES", "100")
        .env("BONES_LOG_MAX_SIZE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Reads a child's stdout lines on a thread, so the test can wait on them
/// with a deadline.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn follow_prints_every_line_exactly_once_across_many_rotations() {
    let mut ws = TestWorkspace::new();
    start_hub(&ws);
    let mut follower = ws
        .command(&["logs", "--hub", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ws.track(follower.id());
    let rx = lines_of(&mut follower);
    let mut printed = Vec::new();
    // ready to follow once it has printed what was there
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the follower printed the existing entries");
        let ready = line.contains("\"msg\":\"hub: ready\"");
        printed.push(line);
        if ready {
            break;
        }
    }

    let refused = workload(&ws);
    let events = events_once_caught_up(&ws);
    let on_disk = lines_on_disk(&ws);
    // the follower has caught up once it printed as many lines as there are
    let caught_up = wait_until(Duration::from_secs(30), || {
        printed.extend(rx.try_iter());
        printed.len() >= on_disk.len()
    });
    send_signal(follower.id(), Signal::SIGINT);
    assert!(follower.wait().unwrap().success());
    printed.extend(rx.iter());
    assert!(
        caught_up,
        "the follower printed {} of {} lines",
        printed.len(),
        on_disk.len()
    );

    let count = |lines: &[String]| {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for line in lines {
            *counts.entry(line.clone()).or_default() += 1;
        }
        counts
    };
    let (printed_counts, disk_counts) = (count(&printed), count(&on_disk));
    let mut differ: Vec<String> = printed_counts
        .iter()
        .filter(|(line, n)| disk_counts.get(*line) != Some(n))
        .map(|(line, n)| format!("printed {n}x: {line}"))
        .chain(
            disk_counts
                .iter()
                .filter(|(line, _)| !printed_counts.contains_key(*line))
                .map(|(line, n)| format!("on disk {n}x, never printed: {line}")),
        )
        .collect();
    differ.sort();
    assert!(differ.is_empty(), "{} differ: {differ:#?}", differ.len());
    let wrong = mismatches(&printed, &events, &refused);
    assert!(wrong.is_empty(), "{wrong:?}");
    assert!(ws.state_dir().join("hub.log.3").exists(), "the log rotated");
    assert!(!ws.state_dir().join(format!("hub.log.{MAX_FILES}")).exists());
}

/// The content of `path`, or `None` when it does not exist.
fn content(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

#[test]
fn a_symlink_planted_at_hub_log_is_never_written_through() {
    let ws = TestWorkspace::new();
    let state = ws.state_dir();
    let hub_log = state.join("hub.log");
    let victim = ws.home.join("victim");
    fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, &hub_log).unwrap();

    // the hub replaces a link by a file, and says so
    ws.start();
    assert_eq!(content(&victim).as_deref(), Some("precious\n"));
    assert!(fs::symlink_metadata(&hub_log).unwrap().is_file());
    let log = ws.hub_log();
    assert!(log.contains("hub: ready"), "{log}");
    assert!(log.contains("was a symbolic link to"), "{log}");

    let id = stdout(&ws.ok(&["tasks", "create", "held"]))
        .trim()
        .to_string();
    let out = cli(&ws, "holder", &["tasks", "claim", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    events_once_caught_up(&ws);

    // a CLI refuses to write through a link planted while the hub runs
    // (a dangling one: following it would create the file it names)
    let absent = ws.home.join("created-through-a-link");
    fs::remove_file(&hub_log).unwrap();
    std::os::unix::fs::symlink(&absent, &hub_log).unwrap();
    let out = cli(&ws, "other", &["tasks", "claim", &id]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(said.contains("symbolic link"), "{said}");
    assert!(
        said.contains("\"agent\":\"other\""),
        "the entry is on stderr: {said}"
    );
    assert!(
        content(&absent).is_none(),
        "a file was created through the link"
    );

    // the hub's next entry replaces it
    ws.ok(&["tasks", "create", "next"]);
    events_once_caught_up(&ws);
    assert!(content(&absent).is_none());
    assert_eq!(content(&victim).as_deref(), Some("precious\n"));
    assert!(fs::symlink_metadata(&hub_log).unwrap().is_file());
    let log = ws.hub_log();
    assert!(log.contains("was a symbolic link to"), "{log}");
    assert!(log.contains("\"rpc\":\"tasks.create\""), "{log}");
}
