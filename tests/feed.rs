//! The knowledge feed against a real hub: ids stored once however they race,
//! one total order, followers that print every entry exactly once across
//! hub kills, cursors, the prime digest and retention.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::{
    KillOnDrop, Signal, TestWorkspace, runtime, send_signal, stderr, stdout, wait_until,
};

const WAIT: Duration = Duration::from_secs(60);

/// The `bones-feed` stream's configuration and message count.
fn stream_state(ws: &TestWorkspace) -> (async_nats::jetstream::stream::Config, u64) {
    let rt = runtime();
    let js = rt.block_on(ws.jetstream());
    rt.block_on(async {
        let mut stream = js.get_stream("bones-feed").await.unwrap();
        let info = stream.info().await.unwrap();
        (info.config.clone(), info.state.messages)
    })
}

/// `bones share ARGS` as agent `agent`.
fn share_as(ws: &TestWorkspace, agent: &str, args: &[&str]) -> Output {
    let mut full = vec!["share"];
    full.extend_from_slice(args);
    ws.command(&full)
        .env("BONES_AGENT_ID", agent)
        .output()
        .unwrap()
}

/// `bones share ARGS`, asserting success; returns the printed id.
fn share(ws: &TestWorkspace, args: &[&str]) -> String {
    let out = share_as(ws, "tester", args);
    assert!(out.status.success(), "share {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// `bones share --stdin --json` fed `lines`, as `agent`.
fn share_stdin(ws: &TestWorkspace, agent: &str, lines: &str) -> Output {
    let mut child = ws
        .command(&["share", "--stdin", "--json"])
        .env("BONES_AGENT_ID", agent)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `bones feed --json ARGS` as values.
fn feed(ws: &TestWorkspace, args: &[&str]) -> Vec<Value> {
    let mut full = vec!["feed", "--json"];
    full.extend_from_slice(args);
    json_lines(&stdout(&ws.ok(&full)))
}

fn ids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

fn seqs(entries: &[Value]) -> Vec<u64> {
    entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

/// A `bones feed --follow --json` child whose output lines are collected as
/// they come. The child is killed when this is dropped.
struct Follower {
    child: KillOnDrop,
    lines: Arc<Mutex<Vec<String>>>,
    errors: Arc<Mutex<String>>,
}

impl Follower {
    fn start(ws: &TestWorkspace, agent: &str, extra: &[&str]) -> Follower {
        let mut args = vec!["feed", "--follow", "--json"];
        args.extend_from_slice(extra);
        let child = ws
            .command(&args)
            .env("BONES_AGENT_ID", agent)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Follower::collect(child)
    }

    fn collect(mut child: Child) -> Follower {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (l, e) = (lines.clone(), errors.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut errors = e.lock().unwrap();
                errors.push_str(&line);
                errors.push('\n');
            }
        });
        Follower {
            child: KillOnDrop(child),
            lines,
            errors,
        }
    }

    fn entries(&self) -> Vec<Value> {
        json_lines(&self.lines.lock().unwrap().join("\n"))
    }

    fn stderr(&self) -> String {
        self.errors.lock().unwrap().clone()
    }

    /// Waits until an entry with this id has been printed.
    fn wait_for(&self, id: &str) {
        let seen = wait_until(WAIT, || ids(&self.entries()).iter().any(|i| i == id));
        assert!(
            seen,
            "follower never printed {id}; printed {} entries; stderr:\n{}",
            self.entries().len(),
            self.stderr()
        );
    }

    fn wait_for_count(&self, count: usize) {
        let seen = wait_until(WAIT, || self.entries().len() >= count);
        assert!(
            seen,
            "follower printed {} of {count} entries; stderr:\n{}",
            self.entries().len(),
            self.stderr()
        );
    }

    /// Stops it the way a terminal would (SIGTERM) and waits for its exit.
    fn stop(mut self) -> std::process::ExitStatus {
        send_signal(self.child.0.id(), Signal::SIGTERM);
        self.child.0.wait().unwrap()
    }
}

/// Kills the hub with SIGKILL and starts it again.
fn kill_and_restart(ws: &TestWorkspace) {
    let pid = ws.hub_pid().unwrap();
    send_signal(pid, Signal::SIGKILL);
    assert!(
        wait_until(WAIT, || !support::alive(pid)),
        "hub {pid} survived SIGKILL"
    );
    ws.start();
}

#[test]
fn shared_entries_are_listed_in_order_with_their_origin() {
    let ws = TestWorkspace::new();
    ws.start();
    let decision = share_as(
        &ws,
        "agent-7",
        &[
            "--type",
            "decision",
            "The hub repository is bare",
            "--tag",
            "hub",
            "--tag",
            "git",
        ],
    );
    assert!(decision.status.success(), "{}", stderr(&decision));
    let decision_id = stdout(&decision).trim().to_string();
    assert!(stderr(&decision).contains("as #1"), "{}", stderr(&decision));
    ws.ok(&[
        "share",
        "--slot",
        "fix-parser",
        "--type",
        "learning",
        "The parser needs LANG=C",
    ]);
    share(
        &ws,
        &[
            "--type",
            "convention",
            "--id",
            "errors",
            "thiserror in the library",
        ],
    );

    let all = feed(&ws, &[]);
    assert_eq!(seqs(&all), [1, 2, 3]);
    assert_eq!(all[0]["id"], decision_id.as_str());
    assert_eq!(all[0]["type"], "decision");
    assert_eq!(all[0]["origin"], "agent-7");
    assert_eq!(all[0]["tags"], serde_json::json!(["hub", "git"]));
    assert_eq!(all[0]["schema"], 1);
    assert!(all[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(all[1]["origin"], "fix-parser");
    assert_eq!(all[2]["id"], "errors");

    assert_eq!(ids(&feed(&ws, &["--type", "learning"])).len(), 1);
    assert_eq!(seqs(&feed(&ws, &["--since", "1"])), [2, 3]);
    assert_eq!(seqs(&feed(&ws, &["--since", "1h"])), [1, 2, 3]);
    let text = stdout(&ws.ok(&["feed"]));
    assert!(text.contains("#1 decision"), "{text}");
    assert!(text.contains("    The hub repository is bare"), "{text}");
    assert!(text.contains("[hub, git]"), "{text}");
}

#[test]
fn the_same_id_is_stored_once_even_beyond_the_duplicate_window() {
    let ws = TestWorkspace::new();
    ws.start();
    let first = share(
        &ws,
        &["--type", "learning", "--id", "nats-version", "needs 2.10"],
    );
    let again = share_as(
        &ws,
        "other",
        &[
            "--type",
            "learning",
            "--id",
            "nats-version",
            "other words",
            "--json",
        ],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(first, "nats-version");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["seq"], 1);

    // without --id the id comes from type and text: rewording the spacing
    // finds the same entry
    let a = share(&ws, &["--type", "decision", "Slots are  worktrees\n"]);
    let b = share(&ws, &["--type", "decision", "Slots are worktrees"]);
    assert_eq!(a, b);
    let c = share(&ws, &["--type", "learning", "Slots are worktrees"]);
    assert_ne!(a, c);

    // an entry published long ago: the server no longer remembers its
    // message id (none was given here), only its subject holds it
    let rt = runtime();
    let js = rt.block_on(ws.jetstream());
    let raw_seq = rt.block_on(async {
        let body = serde_json::json!({
            "schema": 1, "id": "old-fact", "type": "learning", "text": "from last year",
            "origin": "someone", "created_at": "2025-11-23T09:00:00.000000Z"
        });
        let ack = js
            .publish("feed.entries.old-fact", body.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
        ack.sequence
    });
    let (_, before) = stream_state(&ws);
    let out = share_as(
        &ws,
        "late",
        &["--type", "learning", "--id", "old-fact", "again", "--json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let published: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(published["duplicate"], true, "{published}");
    assert_eq!(published["seq"], raw_seq);
    assert_eq!(stream_state(&ws).1, before);
    let stored = feed(&ws, &[]);
    assert_eq!(ids(&stored).iter().filter(|i| *i == "old-fact").count(), 1);
    assert_eq!(
        ids(&stored).iter().filter(|i| *i == "nats-version").count(),
        1
    );
    assert_eq!(stored.len(), 4);
}

#[test]
fn ten_thousand_entries_from_eight_processes_are_stored_once_in_one_order() {
    let ws = TestWorkspace::new();
    ws.start();
    // each process shares 1,000 ids of its own and 500 shared ids, each
    // shared id by exactly two processes: 12,000 publishes, 10,000 ids
    let inputs: Vec<String> = (0..8)
        .map(|p| {
            let mut lines = String::new();
            for i in 0..1000 {
                lines.push_str(&format!(
                    "{{\"type\":\"learning\",\"id\":\"p{p}-{i}\",\"text\":\"fact {i} of writer {p}\"}}\n"
                ));
            }
            for j in 0..500 {
                let shared = (p * 250 + j) % 2000;
                lines.push_str(&format!(
                    "{{\"type\":\"decision\",\"id\":\"shared-{shared}\",\"text\":\"shared {shared} as seen by writer {p}\"}}\n"
                ));
            }
            lines
        })
        .collect();
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(p, lines)| {
                let ws = &ws;
                scope.spawn(move || share_stdin(ws, &format!("writer-{p}"), lines))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // per shared id: who stored it, and the sequence every sharer was told
    let mut stored_by: HashMap<String, Vec<usize>> = HashMap::new();
    let mut seq_of: HashMap<String, u64> = HashMap::new();
    for (p, out) in outputs.iter().enumerate() {
        assert!(out.status.success(), "writer {p}: {}", stderr(out));
        let results = json_lines(&stdout(out));
        assert_eq!(results.len(), 1500, "writer {p}");
        for r in results {
            let id = r["id"].as_str().unwrap().to_string();
            let seq = r["seq"].as_u64().unwrap();
            if let Some(known) = seq_of.insert(id.clone(), seq) {
                assert_eq!(known, seq, "{id} reported at two sequences");
            }
            if r["duplicate"] == false {
                stored_by.entry(id).or_default().push(p);
            }
        }
    }
    assert_eq!(seq_of.len(), 10_000);
    assert_eq!(stored_by.len(), 10_000, "some id was stored by nobody");
    assert!(
        stored_by.values().all(|writers| writers.len() == 1),
        "an id was stored twice"
    );

    let all = feed(&ws, &[]);
    assert_eq!(all.len(), 10_000);
    assert_eq!(stream_state(&ws).1, 10_000);
    let listed: HashSet<String> = ids(&all).into_iter().collect();
    assert_eq!(listed.len(), 10_000, "an id is listed twice");
    let order = seqs(&all);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "not one total order");
    for entry in &all {
        let id = entry["id"].as_str().unwrap();
        assert_eq!(entry["seq"].as_u64(), seq_of.get(id).copied(), "{id}");
        let writer = stored_by[id][0];
        assert_eq!(entry["origin"], format!("writer-{writer}"), "{id}");
    }
}

#[test]
fn a_follower_prints_every_entry_exactly_once_across_two_hub_kills() {
    let ws = TestWorkspace::new();
    ws.start();
    for i in 0..5 {
        share(
            &ws,
            &[
                "--type",
                "learning",
                "--id",
                &format!("early-{i}"),
                "before the follower",
            ],
        );
    }
    let follower = Follower::start(&ws, "watcher", &[]);
    follower.wait_for_count(5);

    // a publisher shares 90 entries, retrying each while the hub is down
    // (sharing is idempotent by id), while the hub is killed twice
    let published = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for n in 0..90 {
                let id = format!("live-{n}");
                let mut attempts = 0;
                loop {
                    let out = share_as(
                        &ws,
                        "publisher",
                        &["--type", "learning", "--id", &id, "during the kills"],
                    );
                    if out.status.success() {
                        break;
                    }
                    attempts += 1;
                    assert!(attempts < 600, "{id}: {}", stderr(&out));
                    std::thread::sleep(Duration::from_millis(50));
                }
                published.store(n + 1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        for round in 1..=2 {
            let at_least = 30 * round;
            assert!(wait_until(WAIT, || published
                .load(std::sync::atomic::Ordering::SeqCst)
                >= at_least));
            kill_and_restart(&ws);
        }
    });
    let sentinel = share(&ws, &["--type", "task", "--id", "sentinel", "the last one"]);
    follower.wait_for(&sentinel);

    // the sentinel has the highest sequence and entries arrive in order, so
    // a repeat of anything would have been printed before it
    let entries = follower.entries();
    let printed = ids(&entries);
    let mut expected: Vec<String> = (0..5).map(|i| format!("early-{i}")).collect();
    expected.extend((0..90).map(|n| format!("live-{n}")));
    expected.push("sentinel".to_string());
    assert_eq!(printed, expected, "stderr:\n{}", follower.stderr());
    let order = seqs(&entries);
    assert!(order.windows(2).all(|w| w[0] < w[1]));
    assert!(
        follower.stderr().matches("reconnected").count() >= 2,
        "{}",
        follower.stderr()
    );
    assert!(support::alive(follower.child.0.id()));
}

#[test]
fn a_new_follower_resumes_after_the_cursor_and_a_new_feed_starts_afresh() {
    let ws = TestWorkspace::new();
    ws.start();
    for i in 0..3 {
        share(
            &ws,
            &["--type", "decision", "--id", &format!("d-{i}"), "decided"],
        );
    }
    let first = Follower::start(&ws, "agent-x", &[]);
    first.wait_for("d-2");
    assert!(first.stop().success());
    let cursor = ws.state_dir().join("feed.cursor/agent-x");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&cursor).unwrap()).unwrap();
    assert_eq!(saved["seq"], 3);
    assert_eq!(
        std::fs::metadata(&cursor).unwrap().permissions().mode() & 0o777,
        0o600
    );

    share(&ws, &["--type", "learning", "--id", "l-3", "learned"]);
    share(&ws, &["--type", "decision", "--id", "d-4", "decided"]);
    let second = Follower::start(&ws, "agent-x", &[]);
    second.wait_for("d-4");
    assert_eq!(ids(&second.entries()), ["l-3", "d-4"]);
    assert!(second.stop().success());

    // a filtered follower has its own cursor: it starts from the beginning
    let decisions = Follower::start(&ws, "agent-x", &["--type", "decision"]);
    decisions.wait_for("d-4");
    assert_eq!(ids(&decisions.entries()), ["d-0", "d-1", "d-2", "d-4"]);
    assert!(decisions.stop().success());
    assert!(
        ws.state_dir()
            .join("feed.cursor/agent-x+decision")
            .is_file()
    );

    // the feed deleted and made again numbers from 1: the old cursor
    // (at 5) must not hide the new entries
    let rt = runtime();
    let js = rt.block_on(ws.jetstream());
    rt.block_on(js.delete_stream("bones-feed")).unwrap();
    share(&ws, &["--type", "learning", "--id", "fresh", "a new feed"]);
    let third = Follower::start(&ws, "agent-x", &[]);
    third.wait_for("fresh");
    assert_eq!(ids(&third.entries()), ["fresh"]);
    assert!(
        third.stderr().contains("earlier feed"),
        "{}",
        third.stderr()
    );
}

#[test]
fn share_starts_the_hub_when_none_runs() {
    let ws = TestWorkspace::new();
    let out = share_as(
        &ws,
        "a",
        &["--type", "learning", "--id", "early", "no hub yet"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("started one in the background"),
        "{}",
        stderr(&out)
    );
    let out = ws.run(&["feed", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"early\""));
}

#[test]
fn a_follower_started_before_the_hub_waits_for_it() {
    let ws = TestWorkspace::new();
    // with starting on demand turned off, the verbs that need a hub say so
    let out = ws
        .command(&["share", "--type", "learning", "no hub"])
        .env("BONES_AGENT_ID", "a")
        .env("BONES_NO_AUTOSTART", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bones hub start"), "{}", stderr(&out));
    let out = ws
        .command(&["feed"])
        .env("BONES_NO_AUTOSTART", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    let follower = Follower::start(&ws, "early-bird", &[]);
    assert!(wait_until(WAIT, || follower
        .stderr()
        .contains("waiting for the hub")));
    ws.start();
    share(
        &ws,
        &["--type", "learning", "--id", "first", "the hub came"],
    );
    follower.wait_for("first");
}

#[test]
fn prime_puts_conventions_and_decisions_first_within_its_bound() {
    let ws = TestWorkspace::new();
    ws.start();
    let mut lines = String::new();
    for i in 0..60 {
        lines.push_str(&format!(
            "{{\"type\":\"learning\",\"text\":\"learning {i}: {}\"}}\n",
            "detail ".repeat(20)
        ));
    }
    assert!(share_stdin(&ws, "a", &lines).status.success());
    share(
        &ws,
        &["--type", "convention", "--id", "c-old", "Run cargo fmt"],
    );
    share(
        &ws,
        &[
            "--type",
            "decision",
            "--id",
            "d-old",
            "The hub repository is bare",
        ],
    );
    share(&ws, &["--type", "task", "--id", "t-1", "The parser leaks"]);
    share(
        &ws,
        &[
            "--type",
            "convention",
            "--id",
            "c-new",
            "Errors name what to do",
        ],
    );
    share(
        &ws,
        &["--type", "decision", "--id", "d-new", "Slots are worktrees"],
    );

    let text = stdout(&ws.ok(&["feed", "--prime"]));
    assert!(
        text.chars().count() <= 4000,
        "{} chars",
        text.chars().count()
    );
    let pos = |s: &str| {
        text.find(s)
            .unwrap_or_else(|| panic!("{s:?} missing:\n{text}"))
    };
    assert!(pos("Errors name what to do") < pos("Run cargo fmt"));
    assert!(pos("Run cargo fmt") < pos("Slots are worktrees"));
    assert!(pos("Slots are worktrees") < pos("The hub repository is bare"));
    assert!(pos("The hub repository is bare") < pos("learning 59"));
    assert!(text.contains("more left out"), "{text}");

    let small = stdout(&ws.ok(&["feed", "--prime", "--max-chars", "1000"]));
    assert!(small.chars().count() <= 1000);
    let digest: Value =
        serde_json::from_slice(&ws.ok(&["feed", "--prime", "--json"]).stdout).unwrap();
    assert_eq!(digest["total"], 65);
    assert_eq!(digest["counts"]["convention"], 2);
    let kinds: Vec<&str> = digest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        &kinds[..4],
        ["convention", "convention", "decision", "decision"]
    );
    assert_eq!(
        digest["omitted"].as_u64().unwrap() as usize + kinds.len(),
        65
    );
}

#[test]
fn bad_input_is_refused_and_stores_nothing() {
    let ws = TestWorkspace::new();
    ws.start();
    let long = "x".repeat(16 * 1024 + 1);
    let too_many_tags: Vec<String> = (0..17)
        .flat_map(|i| ["--tag".to_string(), format!("t{i}")])
        .collect();
    let mut cases: Vec<Vec<String>> = vec![
        vec!["--type".into(), "note".into(), "text".into()],
        vec!["--type".into(), "learning".into(), "   ".into()],
        vec!["--type".into(), "learning".into(), long],
        vec![
            "--type".into(),
            "learning".into(),
            "--id".into(),
            "../../x".into(),
            "t".into(),
        ],
        vec![
            "--type".into(),
            "learning".into(),
            "--id".into(),
            "feed.>".into(),
            "t".into(),
        ],
        vec![
            "--type".into(),
            "learning".into(),
            "--tag".into(),
            "has space".into(),
            "t".into(),
        ],
        vec!["text without a type".into()],
    ];
    let mut with_tags = vec![
        "--type".to_string(),
        "learning".to_string(),
        "t".to_string(),
    ];
    with_tags.extend(too_many_tags);
    cases.push(with_tags);
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = share_as(&ws, "a", &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.lines().count() <= 6 && message.len() < 600,
            "{message}"
        );
        assert!(!message.contains("panicked"), "{message}");
    }
    // one bad line among good ones: nothing is shared
    let out = share_stdin(
        &ws,
        "a",
        "{\"type\":\"learning\",\"text\":\"good\"}\n{\"type\":\"learning\",\"text\":\"bad\",\"id\":\"a/b\"}\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("stdin line 2"), "{}", stderr(&out));
    for args in [
        &["feed", "--prime", "--follow"][..],
        &["feed", "--prime", "--max-chars", "500"],
        &["feed", "--since", "soon"],
    ] {
        assert_eq!(ws.run(args).status.code(), Some(2), "{args:?}");
    }
    assert_eq!(stream_state(&ws).1, 0);
}

#[test]
fn retention_comes_from_the_hub_environment() {
    let ws = TestWorkspace::new();
    let out = ws
        .command(&["hub", "start", "--detach"])
        .env("BONES_FEED_MAX_AGE", "30d")
        .env("BONES_FEED_MAX_MSGS", "100")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (config, _) = stream_state(&ws);
    assert_eq!(config.max_age, Duration::from_secs(30 * 86400));
    assert_eq!(config.max_messages, 100);
    assert!(
        ws.hub_log().contains("age limit 30d, count limit 100"),
        "{}",
        ws.hub_log()
    );

    let lines: String = (0..105)
        .map(|i| format!("{{\"type\":\"learning\",\"id\":\"n-{i}\",\"text\":\"entry {i}\"}}\n"))
        .collect();
    assert!(share_stdin(&ws, "a", &lines).status.success());
    let kept = feed(&ws, &[]);
    assert_eq!(kept.len(), 100);
    assert_eq!(kept[0]["id"], "n-5", "the oldest go first");

    // a restart with no settings brings back the defaults
    ws.stop();
    ws.start();
    let (config, count) = stream_state(&ws);
    assert_eq!(config.max_age, Duration::from_secs(365 * 86400));
    assert_eq!(config.max_messages, 1_000_000);
    assert_eq!(count, 100);

    // a bad setting stops the hub from starting, naming the variable
    ws.stop();
    let out = ws
        .command(&["hub", "start", "--detach"])
        .env("BONES_FEED_MAX_AGE", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = format!("{}{}", stderr(&out), ws.hub_log());
    assert!(said.contains("BONES_FEED_MAX_AGE"), "{said}");
}
