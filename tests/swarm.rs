//! Slots against a real hub: joins and leases, commits landing on a linear
//! trunk from many processes, conflicts, reaping with rescue, close, and
//! `bones apply` into the user's repository.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{Signal, TestWorkspace, commit, join, send_signal, stderr, stdout, wait_until};

fn trunk_files(ws: &TestWorkspace) -> Vec<String> {
    ws.hub_git(&["ls-tree", "-r", "--name-only", "trunk"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn count(ws: &TestWorkspace, args: &[&str]) -> usize {
    ws.hub_git(args).parse().unwrap()
}

#[test]
fn join_makes_a_checkout_of_trunk_and_is_idempotent_for_its_holder() {
    let ws = TestWorkspace::new();
    ws.start();
    let task = stdout(&ws.ok(&["tasks", "create", "the first task"]))
        .trim()
        .to_string();
    let wt = join(&ws, "alpha", "agent-a", &["--task", &task]);
    assert_eq!(wt, ws.state_dir().join("swarm/alpha/wt"));
    assert_eq!(
        fs::read_to_string(wt.join("README.md")).unwrap(),
        "# example\n"
    );
    assert_eq!(
        ws.hub_git(&["rev-parse", "slot/alpha"]),
        ws.hub_git(&["rev-parse", "trunk"])
    );

    // the same agent again: same checkout, exit 0
    assert_eq!(join(&ws, "alpha", "agent-a", &[]), wt);
    // another agent: refused, naming the holder
    let out = ws.run(&["swarm", "join", "--slot", "alpha", "--agent", "agent-b"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("held by agent agent-a"),
        "{}",
        stderr(&out)
    );

    // cwd prints the path again, from the flag or from inside the checkout
    let out = ws.ok(&["swarm", "cwd", "--slot", "alpha"]);
    assert_eq!(stdout(&out).trim(), wt.to_str().unwrap());
    let out = ws
        .command_in(&wt.join("src"), &["swarm", "cwd"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out).trim(),
        wt.to_str().unwrap(),
        "{}",
        stderr(&out)
    );

    // the lease record carries what the issue names
    let out = ws.ok(&["swarm", "status", "--json"]);
    let slots: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let alpha = &slots[0];
    assert_eq!(alpha["slot"], "alpha");
    assert_eq!(alpha["state"], "active");
    assert_eq!(alpha["agent_id"], "agent-a");
    assert_eq!(alpha["task_id"], task.as_str());
    assert_eq!(alpha["ttl_s"], 3600);

    // --auto makes an agent-<id> slot
    let out = ws.ok(&[
        "swarm",
        "join",
        "--auto",
        "--agent",
        "5e1f0c2a9b7d4e3f",
        "--json",
    ]);
    let joined: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(joined["slot"], "agent-5e1f0c2a9b7d4e3f");

    // a live lease blocks a plain stop
    let out = ws.run(&["hub", "stop"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("alpha"));
}

#[test]
fn commit_honours_gitignore_and_lands_deletions() {
    let ws = TestWorkspace::new();
    ws.start();
    let wt = join(&ws, "tidy", "agent-t", &[]);
    fs::write(wt.join(".gitignore"), "*.log\nbuild/\n").unwrap();
    fs::write(wt.join("debug.log"), "noise\n").unwrap();
    fs::create_dir_all(wt.join("build")).unwrap();
    fs::write(wt.join("build/out.bin"), "binary\n").unwrap();
    fs::write(wt.join("kept.txt"), "kept\n").unwrap();
    fs::remove_file(wt.join("run.sh")).unwrap();
    let out = commit(&ws, "tidy", "tidy up");
    assert!(out.status.success(), "{}", stderr(&out));
    let files = trunk_files(&ws);
    assert!(files.contains(&"kept.txt".to_string()));
    assert!(files.contains(&".gitignore".to_string()));
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with(".log") || f.starts_with("build/")),
        "{files:?}"
    );
    assert!(
        !files.contains(&"run.sh".to_string()),
        "the deletion did not land"
    );
    // nothing left to commit: said plainly, no empty commit, not a failure
    let trunk = ws.hub_git(&["rev-parse", "trunk"]);
    let out = commit(&ws, "tidy", "again");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(ws.hub_git(&["rev-parse", "trunk"]), trunk);
    assert!(
        stderr(&out).contains("nothing to commit"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_slot_names_and_task_ids_are_refused_and_create_nothing() {
    let ws = TestWorkspace::new();
    ws.start();
    for bad in [
        "../escape",
        "a/b",
        "Upper",
        "..",
        "x.lock",
        "-dash",
        "",
        "a..b",
    ] {
        let flag = format!("--slot={bad}");
        let out = ws.run(&["swarm", "join", &flag, "--agent", "a"]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("invalid slot name"),
            "{}",
            stderr(&out)
        );
    }
    let out = ws.run(&[
        "swarm", "join", "--slot", "ok", "--task", "../t", "--agent", "a",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!ws.state_dir().join("swarm").join("ok").exists());
    assert!(!ws.state_dir().parent().unwrap().join("escape").exists());
    let out = ws.ok(&["swarm", "status", "--json"]);
    assert_eq!(stdout(&out).trim(), "[]");
}

#[test]
fn eight_slots_in_eight_processes_land_two_hundred_commits_linearly() {
    let ws = TestWorkspace::new();
    ws.start();
    let slots: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    let checkouts: Vec<PathBuf> = slots
        .iter()
        .map(|s| join(&ws, s, &format!("agent-{s}"), &[]))
        .collect();
    std::thread::scope(|scope| {
        for (slot, wt) in slots.iter().zip(&checkouts) {
            let ws = &ws;
            scope.spawn(move || {
                for n in 0..25 {
                    let dir = wt.join(slot);
                    fs::create_dir_all(&dir).unwrap();
                    fs::write(dir.join(format!("f{n}.txt")), format!("{slot} {n}\n")).unwrap();
                    let out = commit(ws, slot, &format!("{slot} commit {n}"));
                    assert!(out.status.success(), "{slot} {n}: {}", stderr(&out));
                }
            });
        }
    });
    assert_eq!(count(&ws, &["rev-list", "--count", "trunk"]), 201);
    assert_eq!(count(&ws, &["rev-list", "--count", "--merges", "trunk"]), 0);
    let files = trunk_files(&ws);
    for slot in &slots {
        for n in 0..25 {
            let path = format!("{slot}/f{n}.txt");
            assert!(files.contains(&path), "{path} missing from trunk");
        }
    }
    // every slot's checkout now shows trunk as of its last landing
    assert!(checkouts[0].join("s0/f24.txt").exists());
}

#[test]
fn a_conflicting_commit_leaves_trunk_alone_and_stays_on_its_branch() {
    let ws = TestWorkspace::new();
    ws.start();
    let a = join(&ws, "a", "agent-a", &[]);
    let b = join(&ws, "b", "agent-b", &[]);
    fs::write(a.join("README.md"), "# edited by a\n").unwrap();
    fs::write(b.join("README.md"), "# edited by b\n").unwrap();
    let out = commit(&ws, "a", "a edits");
    assert!(out.status.success(), "{}", stderr(&out));
    let trunk_before = ws.hub_git(&["rev-parse", "trunk"]);

    let out = commit(&ws, "b", "b edits");
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("README.md"), "{}", stderr(&out));
    assert_eq!(ws.hub_git(&["rev-parse", "trunk"]), trunk_before);
    assert_eq!(
        ws.hub_git(&["log", "-1", "--format=%s", "slot/b"]),
        "b edits"
    );
    assert_eq!(ws.hub_git(&["show", "trunk:README.md"]), "# edited by a");

    // sync replays b's change with conflict markers; resolving lands it
    let out = ws.ok(&["swarm", "sync", "--slot", "b"]);
    assert!(stderr(&out).contains("README.md"), "{}", stderr(&out));
    let text = fs::read_to_string(b.join("README.md")).unwrap();
    assert!(
        text.contains("<<<<<<<") && text.contains("edited by b"),
        "{text}"
    );
    fs::write(b.join("README.md"), "# edited by a and b\n").unwrap();
    let out = commit(&ws, "b", "b resolves");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        ws.hub_git(&["show", "trunk:README.md"]),
        "# edited by a and b"
    );
    assert_eq!(count(&ws, &["rev-list", "--count", "--merges", "trunk"]), 0);
}

#[test]
fn an_expired_lease_is_reaped_and_its_work_is_recoverable() {
    let ws = TestWorkspace::new();
    ws.start();
    let wt = join(&ws, "sleepy", "agent-z", &["--ttl", "1s"]);
    fs::write(wt.join("unsaved.txt"), "precious\n").unwrap();
    fs::write(wt.join("README.md"), "# half done\n").unwrap();

    assert!(
        wait_until(Duration::from_secs(20), || ws
            .hub_log()
            .contains("reaped stale slot sleepy")),
        "not reaped; hub.log:\n{}",
        ws.hub_log()
    );
    assert!(!wt.exists(), "the checkout is still there");
    let rescue = ws.hub_git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/bones/rescued/sleepy/",
    ]);
    assert!(!rescue.is_empty(), "no rescue ref");
    assert!(
        ws.hub_log().contains(&rescue),
        "the log does not name {rescue}"
    );
    assert_eq!(
        ws.hub_git(&["show", &format!("{rescue}:unsaved.txt")]),
        "precious"
    );
    assert_eq!(
        ws.hub_git(&["show", &format!("{rescue}:README.md")]),
        "# half done"
    );

    let out = ws.ok(&["swarm", "status", "--json"]);
    let slots: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(slots[0]["state"], "reaped");
    assert_eq!(slots[0]["rescue_ref"], rescue.as_str());
    // the slot's own verbs now say what happened
    let out = commit(&ws, "sleepy", "too late");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no lease"), "{}", stderr(&out));
    // nothing holds a lease any more: a plain stop works
    ws.ok(&["hub", "stop"]);
}

#[test]
fn a_checkout_without_a_lease_is_reaped_at_hub_start() {
    let ws = TestWorkspace::new();
    ws.start();
    let wt = join(&ws, "orphan", "agent-o", &[]);
    fs::write(wt.join("draft.txt"), "draft\n").unwrap();
    ws.ok(&["hub", "stop", "--force"]);
    // losing the coordination state loses the lease, not the work
    fs::remove_dir_all(ws.state_dir().join("coord")).unwrap();
    ws.start();
    assert!(
        wait_until(Duration::from_secs(15), || ws
            .hub_log()
            .contains("reaped stale slot orphan")),
        "{}",
        ws.hub_log()
    );
    let rescue = ws.hub_git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/bones/rescued/orphan/",
    ]);
    assert_eq!(
        ws.hub_git(&["show", &format!("{rescue}:draft.txt")]),
        "draft"
    );
    assert!(!wt.exists());
}

#[test]
fn close_saves_uncommitted_work_then_releases_the_lease() {
    let ws = TestWorkspace::new();
    ws.start();
    let wt = join(&ws, "done", "agent-d", &[]);
    fs::write(wt.join("landed.txt"), "landed\n").unwrap();
    assert!(commit(&ws, "done", "land it").status.success());
    fs::write(wt.join("leftover.txt"), "not committed\n").unwrap();

    let out = ws.ok(&["swarm", "close", "--slot", "done", "--result", "success"]);
    assert!(
        stderr(&out).contains("refs/bones/rescued/done/"),
        "{}",
        stderr(&out)
    );
    assert!(!wt.exists());
    let rescue = ws.hub_git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/bones/rescued/done/",
    ]);
    assert_eq!(
        ws.hub_git(&["show", &format!("{rescue}:leftover.txt")]),
        "not committed"
    );
    assert!(ws.hub_log().contains(&rescue));
    // the lease is gone, so stop needs no --force
    ws.ok(&["hub", "stop"]);
}

#[test]
fn close_refuses_success_with_unlanded_commits_unless_abandoned() {
    let ws = TestWorkspace::new();
    ws.start();
    let a = join(&ws, "a", "agent-a", &[]);
    let b = join(&ws, "b", "agent-b", &[]);
    fs::write(a.join("run.sh"), "#!/bin/sh\necho a\n").unwrap();
    fs::write(b.join("run.sh"), "#!/bin/sh\necho b\n").unwrap();
    assert!(commit(&ws, "a", "a").status.success());
    assert_eq!(commit(&ws, "b", "b").status.code(), Some(5));
    let out = ws.run(&["swarm", "close", "--slot", "b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("abandon"), "{}", stderr(&out));
    assert!(b.exists());
    ws.ok(&["swarm", "close", "--slot", "b", "--result", "abandon"]);
    assert!(!b.exists());
    // the unlanded commit is kept on its branch
    assert_eq!(ws.hub_git(&["log", "-1", "--format=%s", "slot/b"]), "b");
}

#[test]
fn commits_reported_landed_survive_a_hub_kill() {
    let ws = TestWorkspace::new();
    ws.start();
    let wt = join(&ws, "stream", "agent-s", &[]);
    let mut reported = Vec::new();
    for n in 0..12 {
        if n == 6 {
            let pid = ws.hub_pid().unwrap();
            send_signal(pid, Signal::SIGKILL);
            assert!(wait_until(Duration::from_secs(10), || !support::alive(pid)));
        }
        if n == 8 {
            ws.start();
        }
        fs::write(wt.join(format!("n{n}.txt")), format!("{n}\n")).unwrap();
        let out = commit(&ws, "stream", &format!("n{n}"));
        if out.status.success() {
            reported.push(stdout(&out).trim().to_string());
        } else {
            assert!((6..8).contains(&n), "commit {n} failed: {}", stderr(&out));
        }
    }
    assert!(reported.len() >= 10);
    let trunk = ws.hub_git(&["rev-parse", "trunk"]);
    for sha in &reported {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(ws.state_dir().join("hub.git"))
            .args(["merge-base", "--is-ancestor", sha, &trunk])
            .status()
            .unwrap();
        assert!(
            out.success(),
            "{sha} was reported landed but is not on trunk"
        );
    }
    // the commits made while the hub was down landed with the next one
    let files = trunk_files(&ws);
    for n in 0..12 {
        assert!(files.contains(&format!("n{n}.txt")), "n{n}.txt lost");
    }
}

#[test]
fn apply_brings_trunk_into_the_user_repository() {
    let ws = TestWorkspace::new();
    ws.start();
    let wt = join(&ws, "feat", "agent-f", &[]);
    fs::write(wt.join("feature.txt"), "feature\n").unwrap();
    fs::write(wt.join("README.md"), "# example, improved\n").unwrap();
    assert!(commit(&ws, "feat", "add a feature").status.success());

    let out = ws.ok(&["apply"]);
    assert_eq!(stdout(&out).trim(), "bones/trunk");
    assert!(
        stderr(&out).contains("git merge --ff-only bones/trunk"),
        "{}",
        stderr(&out)
    );
    let user_git = |args: &[&str]| -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&ws.root)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        user_git(&["log", "-1", "--format=%s", "bones/trunk"]),
        "add a feature"
    );
    let out = ws.ok(&["apply", "--slot", "feat"]);
    assert_eq!(stdout(&out).trim(), "bones/slot/feat");

    // --worktree refuses to overwrite an uncommitted change, touching nothing
    fs::write(ws.root.join("README.md"), "# local edit\n").unwrap();
    let out = ws.run(&["apply", "--worktree"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("README.md"), "{}", stderr(&out));
    assert!(!ws.root.join("feature.txt").exists());
    assert_eq!(
        fs::read_to_string(ws.root.join("README.md")).unwrap(),
        "# local edit\n"
    );

    ws.git(&["checkout", "README.md"]);
    ws.ok(&["apply", "--worktree"]);
    assert_eq!(
        fs::read_to_string(ws.root.join("feature.txt")).unwrap(),
        "feature\n"
    );
    assert_eq!(
        fs::read_to_string(ws.root.join("README.md")).unwrap(),
        "# example, improved\n"
    );
}

#[test]
fn slot_verbs_without_a_hub_say_how_to_start_one() {
    let ws = TestWorkspace::new();
    let out = ws
        .command(&["swarm", "join", "--slot", "a"])
        .env("BONES_NO_AUTOSTART", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bones hub start"), "{}", stderr(&out));
    assert!(!Path::new(&ws.state_dir().join("swarm/a")).exists());
}

#[test]
fn rescues_made_in_the_same_second_never_replace_each_other() {
    let ws = TestWorkspace::new();
    ws.start();
    for n in 0..3 {
        let wt = join(&ws, "busy", "agent-b", &[]);
        fs::write(wt.join(format!("draft{n}.txt")), format!("{n}\n")).unwrap();
        ws.ok(&["swarm", "close", "--slot", "busy", "--result", "abandon"]);
    }
    let refs = ws.hub_git(&[
        "for-each-ref",
        "--format=%(refname)",
        "refs/bones/rescued/busy/",
    ]);
    let refs: Vec<&str> = refs.lines().collect();
    assert_eq!(refs.len(), 3, "{refs:?}");
    for n in 0..3 {
        let found = refs
            .iter()
            .any(|r| ws.hub_git(&["show", &format!("{r}:draft{n}.txt")]) == n.to_string());
        assert!(found, "draft{n}.txt was lost");
    }
}
