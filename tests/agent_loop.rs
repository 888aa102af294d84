//! The agent's loop end to end (issue 15): join, claim, edit, commit, sync,
//! close, against a real hub. One scenario per promise the loop makes:
//! conflict markers never land, slots and tasks agree, a slot answers only
//! to its holder, identities are distinct, live agents keep their slots,
//! reaped work comes back, the hub starts itself, and the operator can
//! follow a slot.

mod support;

use std::fs;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use support::{TestWorkspace, commit, join, stderr, stdout, wait_until};

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// Two slots edit the same lines; the second's commit conflicts (exit 5)
/// and `sync` writes markers into `file`. Returns the second checkout.
fn conflict_in(ws: &TestWorkspace, file: &str, base: &str, a: &str, b: &str) -> PathBuf {
    let first = join(ws, "first", "agent-1", &[]);
    fs::write(first.join(file), base).unwrap();
    assert!(commit(ws, "first", "base").status.success());
    let second = join(ws, "second", "agent-2", &[]);
    fs::write(first.join(file), a).unwrap();
    fs::write(second.join(file), b).unwrap();
    assert!(commit(ws, "first", "first edits").status.success());
    let out = commit(ws, "second", "second edits");
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    ws.ok(&["swarm", "sync", "--slot", "second"]);
    let text = fs::read_to_string(second.join(file)).unwrap();
    assert!(text.contains("<<<<<<< trunk"), "{text}");
    second
}

#[test]
fn commit_refuses_unresolved_conflict_markers_and_lands_nothing() {
    let ws = TestWorkspace::new();
    ws.start();
    let second = conflict_in(
        &ws,
        "notes.txt",
        "one\ntwo\nthree\n",
        "one\nTWO (first)\nthree\n",
        "one\nTWO (second)\nthree\n",
    );
    let trunk = ws.hub_git(&["rev-parse", "trunk"]);
    let slot_tip = ws.hub_git(&["rev-parse", "slot/second"]);

    // committing the markers as they are: refused, trunk and branch unchanged
    let out = commit(&ws, "second", "again");
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    assert!(stderr(&out).contains("notes.txt"), "{}", stderr(&out));
    assert_eq!(ws.hub_git(&["rev-parse", "trunk"]), trunk);
    assert_eq!(ws.hub_git(&["rev-parse", "slot/second"]), slot_tip);
    assert!(!ws.hub_git(&["show", "trunk:notes.txt"]).contains("<<<<<<<"));

    // resolved: it lands
    fs::write(second.join("notes.txt"), "one\nTWO (both)\nthree\n").unwrap();
    let out = commit(&ws, "second", "resolved");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        ws.hub_git(&["show", "trunk:notes.txt"]),
        "one\nTWO (both)\nthree"
    );
}

#[test]
fn a_file_that_legitimately_holds_marker_lines_commits_fine() {
    let ws = TestWorkspace::new();
    ws.start();
    // a setext heading is a line of "=======": it was there before
    let second = conflict_in(
        &ws,
        "guide.md",
        "Guide\n=======\n\nintro\n",
        "Guide\n=======\n\nintro by first\n",
        "Guide\n=======\n\nintro by second\n",
    );
    let out = commit(&ws, "second", "markers and all");
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    fs::write(second.join("guide.md"), "Guide\n=======\n\nintro by both\n").unwrap();
    let out = commit(&ws, "second", "resolved, heading kept");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        ws.hub_git(&["show", "trunk:guide.md"]),
        "Guide\n=======\n\nintro by both"
    );
}

#[test]
fn nothing_to_commit_is_not_a_failure() {
    let ws = TestWorkspace::new();
    ws.start();
    join(&ws, "idle", "agent-i", &[]);
    let out = commit(&ws, "idle", "nothing here");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing to commit"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    let out = ws.ok(&[
        "swarm",
        "commit",
        "--slot",
        "idle",
        "-m",
        "still nothing",
        "--json",
    ]);
    // every JSON document carries its vocabulary's version (docs/json.md)
    assert_eq!(json(&out), serde_json::json!({ "landed": [], "schema": 1 }));
}

#[test]
fn a_live_slot_answers_only_to_its_holder() {
    let ws = TestWorkspace::new();
    ws.start();
    let wt = join(&ws, "alice-slot", "alice", &[]);
    fs::write(wt.join("work.txt"), "alice's work\n").unwrap();
    let as_mallory = |args: &[&str]| {
        ws.command(args)
            .env("BONES_AGENT_ID", "mallory")
            .output()
            .unwrap()
    };
    for verb in [
        &["swarm", "close", "--slot", "alice-slot"][..],
        &["swarm", "commit", "--slot", "alice-slot", "-m", "mine now"],
        &["swarm", "sync", "--slot", "alice-slot"],
        &["swarm", "renew", "--slot", "alice-slot"],
    ] {
        let out = as_mallory(verb);
        assert_eq!(out.status.code(), Some(6), "{verb:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("alice"), "{verb:?}: {}", stderr(&out));
    }
    assert!(wt.join("work.txt").exists(), "the checkout was touched");
    assert!(
        !ws.hub_log().contains("alice-slot closed"),
        "{}",
        ws.hub_log()
    );

    // the holder itself, and anyone with --force, may
    let out = ws
        .command(&["swarm", "renew", "--slot", "alice-slot"])
        .env("BONES_AGENT_ID", "alice")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_mallory(&[
        "swarm",
        "close",
        "--slot",
        "alice-slot",
        "--force",
        "--result",
        "abandon",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!wt.exists());

    // a slot that does not exist is an error, and nothing is logged
    let before = ws.hub_log();
    let out = ws.run(&["swarm", "close", "--slot", "never-was"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no slot never-was"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ws.hub_log(), before);
}

fn create_task(ws: &TestWorkspace, title: &str, extra: &[&str]) -> String {
    let mut args = vec!["tasks", "create", title];
    args.extend_from_slice(extra);
    stdout(&ws.ok(&args)).trim().to_string()
}

fn task(ws: &TestWorkspace, id: &str) -> serde_json::Value {
    json(&ws.ok(&["tasks", "show", id, "--json"]))
}

#[test]
fn join_task_claims_for_the_slot_and_close_gives_the_task_back() {
    let ws = TestWorkspace::new();
    ws.start();
    let t1 = create_task(&ws, "first", &[]);
    let t2 = create_task(&ws, "second", &[]);

    // a task that does not exist, or that another holds: refused, nothing made
    let out = ws.run(&[
        "swarm", "join", "--slot", "ghost", "--agent", "a", "--task", "t-nosuch",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no task t-nosuch"),
        "{}",
        stderr(&out)
    );
    ws.command(&["tasks", "claim", &t2])
        .env("BONES_AGENT_ID", "someone-else")
        .output()
        .unwrap();
    let out = ws.run(&[
        "swarm", "join", "--slot", "ghost", "--agent", "a", "--task", &t2,
    ]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("someone-else"), "{}", stderr(&out));
    assert!(!ws.state_dir().join("swarm/ghost").exists());
    assert_eq!(
        json(&ws.ok(&["swarm", "status", "--json"])),
        serde_json::json!([])
    );

    // join --task claims it for the slot
    join(&ws, "worker", "agent-w", &["--task", &t1]);
    assert_eq!(task(&ws, &t1)["claimed_by"], "worker");
    // closing releases it (and says so)
    let out = ws.ok(&["swarm", "close", "--slot", "worker"]);
    assert!(stderr(&out).contains(&t1), "{}", stderr(&out));
    assert_eq!(task(&ws, &t1)["status"], "open");
    let out = ws
        .command(&["tasks", "claim", &t1])
        .env("BONES_AGENT_ID", "next-agent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // --close-tasks closes what the slot holds instead
    ws.ok(&["tasks", "release", &t1, "--force"]);
    join(&ws, "finisher", "agent-f", &["--task", &t1]);
    let out = ws.ok(&[
        "swarm",
        "close",
        "--slot",
        "finisher",
        "--close-tasks",
        "--json",
    ]);
    assert_eq!(json(&out)["closed_tasks"], serde_json::json!([t1]));
    assert_eq!(task(&ws, &t1)["status"], "closed");
}

#[test]
fn every_agent_id_gets_its_own_auto_slot_and_authors_its_commits() {
    let ws = TestWorkspace::new();
    ws.start();
    let mut agents: Vec<String> = (1..=40).map(|n| format!("claude-worker-{n}")).collect();
    agents.extend(
        [
            "a1",
            "A1",
            "agent",
            "Agent",
            "x",
            "claude worker 1",
            "claude_worker_1",
        ]
        .map(String::from),
    );
    agents.extend((0..20).map(|_| uuid::Uuid::new_v4().to_string()));
    agents.extend((0..10).map(|_| uuid::Uuid::new_v4().to_string().to_uppercase()));
    agents.extend(
        [
            "エージェント-1",
            "エージェント-2",
            "агент",
            "агент-2",
            "é€",
            "€é",
            "🤖",
            "🤖 bot",
            "Ünïcödé",
            "ünïcödé",
            "κ",
            "λ",
            "代理人",
            "代理",
            "ø",
            "Ø",
            "<angle> brackets",
            "angle brackets",
            "tab-less spaced  id",
            "dots.in.id",
            "UPPER-CASE",
            "upper-case",
            "MiXeD-1",
        ]
        .map(String::from),
    );
    assert_eq!(agents.len(), 100);
    // a slot name an id would derive, already held by someone else
    let out = ws.ok(&[
        "swarm",
        "join",
        "--slot",
        "agent-taken",
        "--agent",
        "first-comer",
    ]);
    assert!(out.status.success());
    agents.push("taken".to_string());

    let mut slots = std::collections::HashSet::new();
    for agent in &agents {
        let out = ws.ok(&["swarm", "join", "--auto", "--agent", agent, "--json"]);
        let joined = json(&out);
        let slot = joined["slot"].as_str().unwrap().to_string();
        assert_eq!(joined["agent_id"], agent.as_str());
        assert!(slot.starts_with("agent-"), "{agent:?} -> {slot}");
        assert!(
            slots.insert(slot.clone()),
            "{agent:?} got {slot}, already taken"
        );
        // joining again finds the same slot
        let again = json(&ws.ok(&["swarm", "join", "--auto", "--agent", agent, "--json"]));
        assert_eq!(again["slot"], slot.as_str(), "{agent:?}");
    }
    assert!(slots.contains("agent-claude-worker-7"));
    assert!(slots.contains("agent-a1"));
    assert!(slots.contains("agent-agent"));
    assert!(
        slots.contains("agent-taken-2"),
        "the derived name was held by another"
    );

    // a landed commit names the agent as author, the slot and task in trailers
    let agent = "claude-worker-7";
    let wt = ws.state_dir().join("swarm/agent-claude-worker-7/wt");
    fs::write(wt.join("by-agent.txt"), "hello\n").unwrap();
    let out = ws
        .command(&[
            "swarm",
            "commit",
            "--slot",
            "agent-claude-worker-7",
            "-m",
            "hello",
        ])
        .env("BONES_AGENT_ID", agent)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(ws.hub_git(&["log", "-1", "--format=%an", "trunk"]), agent);
    let body = ws.hub_git(&["log", "-1", "--format=%B", "trunk"]);
    assert!(body.contains("Bones-Slot: agent-claude-worker-7"), "{body}");
    assert!(body.contains(&format!("Bones-Agent: {agent}")), "{body}");
}

#[test]
fn reaped_work_comes_back_byte_for_byte_and_the_reaped_agent_is_told_how() {
    use std::io::Write;
    let ws = TestWorkspace::new();
    ws.start();
    let wt = join(&ws, "napper", "agent-n", &["--ttl", "1s"]);
    let precious: &[u8] = b"\x00\xffnot text\r\nline two\r\n";
    fs::write(wt.join("draft.bin"), precious).unwrap();
    fs::write(wt.join("README.md"), "# rewritten, not committed\n").unwrap();
    fs::remove_file(wt.join("run.sh")).unwrap();

    // an agent's shell sits in the checkout while the slot is reaped
    let mut shell = std::process::Command::new("sh")
        .args([
            "-c",
            "read go; exec \"$0\" swarm commit -m late",
            support::BONES,
        ])
        .current_dir(&wt)
        .env("HOME", &ws.home)
        .env_remove("BONES_SLOT")
        .env_remove("BONES_DIR")
        .env_remove("BONES_AGENT_ID")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || ws
            .hub_log()
            .contains("reaped stale slot napper")),
        "not reaped; hub.log:\n{}",
        ws.hub_log()
    );
    assert!(!wt.exists());
    shell.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let out = shell.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    let rescue = ws.hub_git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/bones/rescued/napper/",
    ]);
    assert!(said.contains("slot napper was reaped"), "{said}");
    assert!(said.contains(&rescue), "{said}");
    assert!(
        said.contains("bones swarm join --slot napper --restore"),
        "{said}"
    );

    // the command it names brings the work back, exactly
    let out = ws.ok(&[
        "swarm",
        "join",
        "--slot",
        "napper",
        "--agent",
        "agent-n",
        "--restore",
        "--json",
    ]);
    let joined = json(&out);
    assert_eq!(joined["restored"], rescue.as_str());
    let wt = PathBuf::from(joined["path"].as_str().unwrap());
    assert_eq!(fs::read(wt.join("draft.bin")).unwrap(), precious);
    assert_eq!(
        fs::read_to_string(wt.join("README.md")).unwrap(),
        "# rewritten, not committed\n"
    );
    assert!(!wt.join("run.sh").exists());
    // as uncommitted edits, ready to land
    let out = commit(&ws, "napper", "restored work");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        ws.hub_git(&["show", "trunk:README.md"]),
        "# rewritten, not committed"
    );
}

#[test]
fn verbs_that_need_the_hub_start_it_unless_told_not_to() {
    // `bones up` (run by the fixture) starts nothing
    let ws = TestWorkspace::new();
    assert!(ws.processes().is_empty(), "{:?}", ws.processes());
    assert_eq!(ws.status().0, 1);

    // opted out: the verb fails, saying how to start one, and starts nothing
    let out = ws
        .command(&["tasks", "create", "not yet"])
        .env("BONES_NO_AUTOSTART", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("bones hub start"), "{}", stderr(&out));
    assert_eq!(ws.status().0, 1);

    // otherwise the first verb that needs the hub starts it, in one line
    let out = ws.ok(&["tasks", "create", "first task"]);
    let said = stderr(&out);
    let started: Vec<&str> = said.lines().filter(|l| l.starts_with("hub:")).collect();
    assert_eq!(started.len(), 1, "{said}");
    assert!(started[0].contains("started"), "{said}");
    assert_eq!(ws.status().0, 0, "the hub runs after the verb");
    // a slot verb finds it running and says nothing about it
    let out = ws.ok(&["swarm", "join", "--slot", "s", "--agent", "a"]);
    assert!(!stderr(&out).contains("hub:"), "{}", stderr(&out));
}

fn log_lines(ws: &TestWorkspace, filter: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["logs", "--hub", "--json"];
    args.extend_from_slice(filter);
    stdout(&ws.ok(&args))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_operator_can_follow_a_slot_from_join_to_close() {
    let ws = TestWorkspace::new();
    ws.start();
    let slot = "a-rather-long-slot-name-for-the-trail";
    let t1 = create_task(&ws, "trail task", &[]);
    let t2 = create_task(&ws, "second trail task", &[]);
    let wt = join(&ws, slot, "agent-trail", &["--task", &t1]);
    ws.ok(&["tasks", "claim", &t2, "--slot", slot]);
    fs::write(wt.join("trail.txt"), "one\n").unwrap();
    assert!(commit(&ws, slot, "Leave a trail").status.success());
    let landed = ws.hub_git(&["rev-parse", "trunk"]);
    // another slot lands after it: the trail's slot is now behind by one
    let other = join(&ws, "other", "agent-o", &[]);
    fs::write(other.join("other.txt"), "other\n").unwrap();
    assert!(commit(&ws, "other", "Someone else's work").status.success());
    fs::write(wt.join("dirty-1.txt"), "x\n").unwrap();
    fs::write(wt.join("README.md"), "# changed\n").unwrap();

    // status: agent, tasks held (from the board), uncommitted, ahead/behind,
    // the slot's own last landed commit (not trunk's tip)
    let slots = json(&ws.ok(&["swarm", "status", "--json"]));
    let me = slots
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["slot"] == slot)
        .unwrap();
    assert_eq!(me["agent_id"], "agent-trail");
    assert_eq!(me["tasks"], serde_json::json!([t1, t2]));
    assert_eq!(me["uncommitted"], 2);
    assert_eq!(
        (me["ahead"].clone(), me["behind"].clone()),
        (0.into(), 1.into())
    );
    assert_eq!(me["last_commit"], landed.as_str());
    assert_eq!(me["last_commit_summary"], "Leave a trail");
    let table = stdout(&ws.ok(&["swarm", "status"]));
    assert!(table.contains(&format!("{t1},{t2}")), "{table}");
    // tasks list shows the holder whole
    let list = stdout(&ws.ok(&["tasks", "list"]));
    assert!(list.contains(slot), "{list}");

    fs::remove_file(wt.join("dirty-1.txt")).unwrap();
    ws.git(&["-C", wt.to_str().unwrap(), "checkout", "README.md"]);
    ws.ok(&["swarm", "sync", "--slot", slot]);
    ws.ok(&["swarm", "close", "--slot", slot]);

    // the trail: join, commit (landed id and subject), sync, close
    let trail = log_lines(&ws, &["--slot", slot]);
    assert!(trail.iter().all(|e| e["slot"] == slot), "{trail:?}");
    let msgs: Vec<&str> = trail.iter().filter_map(|e| e["msg"].as_str()).collect();
    for (what, at) in [("joined", 0), ("landed", 1), ("synced", 2), ("closed", 3)] {
        assert!(
            msgs.get(at).is_some_and(|m| m.contains(what)),
            "{what} at {at}: {msgs:?}"
        );
    }
    let landing = trail.iter().find(|e| e["rpc"] == "swarm.commit").unwrap();
    assert_eq!(landing["commit"], landed.as_str());
    assert!(landing["msg"].as_str().unwrap().contains("Leave a trail"));
    for entry in &trail {
        assert_eq!(entry["agent"], "agent-trail", "{entry}");
        assert!(
            entry["task"] == t1.as_str() || entry["task"] == t2.as_str(),
            "{entry}"
        );
    }
    assert_eq!(
        log_lines(&ws, &["--agent", "agent-trail"]).len(),
        trail.len()
    );
    assert!(
        log_lines(&ws, &["--task", &t1])
            .iter()
            .any(|e| e["msg"].as_str().unwrap_or("").contains("joined"))
    );

    // a reap is on the trail too, with its agent
    join(&ws, "brief", "agent-b", &["--ttl", "1s"]);
    assert!(wait_until(Duration::from_secs(20), || log_lines(
        &ws,
        &["--slot", "brief"]
    )
    .iter()
    .any(|e| e["msg"].as_str().unwrap_or("").contains("reaped"))));
    let reap = log_lines(&ws, &["--slot", "brief", "--agent", "agent-b"]);
    assert!(
        reap.iter()
            .any(|e| e["msg"].as_str().unwrap_or("").contains("reaped")),
        "{reap:?}"
    );
}

#[test]
fn a_silent_live_agent_keeps_its_slot_while_a_crashed_one_is_reaped() {
    let ws = TestWorkspace::new();
    ws.start();
    let spawn_agent = || {
        support::KillOnDrop(
            std::process::Command::new("sleep")
                .arg("600")
                .spawn()
                .unwrap(),
        )
    };
    let alive = spawn_agent();
    let mut crashed = spawn_agent();
    // TTLs far below the default, so the test need not wait minutes: what
    // keeps a slot is its agent's process, not the clock
    let (alive_pid, crashed_pid) = (alive.0.id().to_string(), crashed.0.id().to_string());
    let wt_alive = join(
        &ws,
        "a-alive",
        "agent-alive",
        &["--ttl", "1s", "--pid", &alive_pid],
    );
    let wt_crashed = join(
        &ws,
        "b-crashed",
        "agent-crashed",
        &["--ttl", "1s", "--pid", &crashed_pid],
    );
    fs::write(wt_crashed.join("unsaved.txt"), "kept\n").unwrap();

    // both leases are now older than their TTL: silent agents
    let age = |slot: &str| -> u64 {
        let slots = json(&ws.ok(&["swarm", "status", "--json"]));
        slots
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["slot"] == slot)
            .and_then(|s| s["lease_age_s"].as_u64())
            .unwrap_or(0)
    };
    assert!(wait_until(Duration::from_secs(20), || age("a-alive") >= 3
        && age("b-crashed") >= 3));

    crashed.0.kill().unwrap();
    crashed.0.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || ws
            .hub_log()
            .contains("reaped stale slot b-crashed")),
        "the crashed agent's slot was not reaped; hub.log:\n{}",
        ws.hub_log()
    );
    assert!(
        ws.hub_log()
            .contains(&format!("agent process {crashed_pid} is gone")),
        "{}",
        ws.hub_log()
    );
    // the watcher looks at slots in name order: the scan that reaped
    // b-crashed judged a-alive, silent past its TTL, first
    assert!(
        !ws.hub_log().contains("reaped stale slot a-alive"),
        "{}",
        ws.hub_log()
    );
    assert!(wt_alive.exists());
    let slots = json(&ws.ok(&["swarm", "status", "--json"]));
    assert_eq!(slots[0]["slot"], "a-alive");
    assert_eq!(slots[0]["state"], "active");
    // its holder still works in it
    fs::write(wt_alive.join("late.txt"), "after a long turn\n").unwrap();
    let out = ws
        .command(&[
            "swarm",
            "commit",
            "--slot",
            "a-alive",
            "-m",
            "after a long turn",
        ])
        .env("BONES_AGENT_ID", "agent-alive")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    drop(alive);
}

#[test]
fn idle_agents_wait_for_work_filtered_by_label_in_priority_order() {
    use std::io::BufRead;
    let ws = TestWorkspace::new();
    ws.start();
    let claim = |args: &[&str]| {
        let mut all = vec!["tasks", "claim", "--next"];
        all.extend_from_slice(args);
        ws.command(&all)
            .env("BONES_AGENT_ID", "idle-agent")
            .output()
            .unwrap()
    };
    // priority first, then age
    let old = create_task(&ws, "old and ordinary", &[]);
    let urgent = create_task(&ws, "new but urgent", &["--priority", "5"]);
    let docs = create_task(&ws, "write the docs", &["--label", "docs"]);
    assert_eq!(stdout(&claim(&[])).trim(), urgent);
    // a label filter passes over older tasks without it
    assert_eq!(stdout(&claim(&["--label", "docs"])).trim(), docs);
    let out = claim(&["--label", "docs"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&claim(&[])).trim(), old);

    // nothing ready: a bounded wait runs out with exit 7
    let blocker = create_task(&ws, "blocker", &[]);
    ws.command(&["tasks", "claim", &blocker])
        .env("BONES_AGENT_ID", "busy-agent")
        .output()
        .unwrap();
    let next = create_task(&ws, "after the blocker", &["--blocked-by", &blocker]);
    let out = claim(&["--wait", "1s"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));

    // an unbounded wait returns the task once its blocker closes
    let mut waiter = support::KillOnDrop(
        ws.command(&["tasks", "claim", "--next", "--wait"])
            .env("BONES_AGENT_ID", "idle-agent")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(waiter.0.stderr.take().unwrap()).lines();
    let said = lines.next().unwrap().unwrap();
    assert!(said.contains("waiting"), "{said}");
    let out = ws
        .command(&["tasks", "close", &blocker, "--reason", "done"])
        .env("BONES_AGENT_ID", "busy-agent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let status = waiter.0.wait().unwrap();
    let mut got = String::new();
    std::io::Read::read_to_string(&mut waiter.0.stdout.take().unwrap(), &mut got).unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(got.trim(), next);
    assert_eq!(task(&ws, &next)["claimed_by"], "idle-agent");
}
