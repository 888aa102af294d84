//! The round trip between the user's repository and the agents, on real
//! repositories: trunk grows from the user's history, `bones apply` brings
//! it back as ordinary history (and incrementally into the working tree),
//! and the user's own new commits reach trunk with `bones land`.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{TestWorkspace, stderr, stdout};

/// git in `dir` with the test's identity; returns trimmed stdout and
/// asserts success.
fn git_in(ws: &TestWorkspace, dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", &ws.home)
        .env("GIT_AUTHOR_NAME", "user")
        .env("GIT_AUTHOR_EMAIL", "user@example.com")
        .env("GIT_COMMITTER_NAME", "user")
        .env("GIT_COMMITTER_EMAIL", "user@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn git(ws: &TestWorkspace, args: &[&str]) -> String {
    git_in(ws, &ws.root, args)
}

/// The user commits `file` with `content` on their branch.
fn user_commit(ws: &TestWorkspace, file: &str, content: &str, message: &str) -> String {
    fs::write(ws.root.join(file), content).unwrap();
    git(ws, &["add", file]);
    git(ws, &["commit", "-qm", message]);
    git(ws, &["rev-parse", "HEAD"])
}

fn join(ws: &TestWorkspace, slot: &str) -> PathBuf {
    let out = ws.ok(&["swarm", "join", "--slot", slot, "--agent", slot]);
    PathBuf::from(stdout(&out).trim())
}

/// An agent in `slot` writes `file` and lands it.
fn agent_lands(ws: &TestWorkspace, slot: &str, file: &str, content: &str, message: &str) {
    let wt = ws.paths().swarm_dir.join(slot).join("wt");
    fs::write(wt.join(file), content).unwrap();
    ws.ok(&["swarm", "commit", "--slot", slot, "-m", message]);
}

fn subjects(ws: &TestWorkspace, rev: &str) -> Vec<String> {
    git(ws, &["log", "--format=%s", rev])
        .lines()
        .map(str::to_string)
        .collect()
}

fn lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn agents_work_fast_forwards_onto_the_users_history_and_worktree_apply_is_incremental() {
    let ws = TestWorkspace::new();
    user_commit(&ws, "notes.txt", "mine\n", "user: notes");
    ws.start();
    join(&ws, "a");
    for n in 1..=3 {
        agent_lands(
            &ws,
            "a",
            &format!("a{n}.txt"),
            "agent\n",
            &format!("agent {n}"),
        );
    }

    let out = ws.ok(&["apply"]);
    assert_eq!(stdout(&out).trim(), "bones/trunk");
    assert!(
        stderr(&out).contains("git merge --ff-only bones/trunk"),
        "{}",
        stderr(&out)
    );
    git(&ws, &["merge", "--ff-only", "bones/trunk"]);
    // the user's history under the agents' commits, as one line
    assert_eq!(
        subjects(&ws, "HEAD"),
        ["agent 3", "agent 2", "agent 1", "user: notes", "init"]
            .map(|s| s.to_string())
            .to_vec()
    );
    let head = git(&ws, &["rev-parse", "HEAD"]);

    // two more landings: a change to a file the user has, and a new file
    agent_lands(&ws, "a", "README.md", "# example, by an agent\n", "agent 4");
    agent_lands(&ws, "a", "a5.txt", "five\n", "agent 5");

    let before = git(&ws, &["status", "--porcelain"]);
    let out = ws.ok(&["apply", "--worktree", "--dry-run"]);
    assert_eq!(lines(&stdout(&out)), ["A\ta5.txt", "M\tREADME.md"]);
    assert_eq!(git(&ws, &["status", "--porcelain"]), before);
    assert!(!ws.root.join("a5.txt").exists());

    ws.ok(&["apply", "--worktree"]);
    assert_eq!(
        lines(&git(&ws, &["diff", "--cached", "--name-only"])),
        ["README.md", "a5.txt"]
    );
    assert_eq!(git(&ws, &["diff", "--name-only"]), "", "all of it staged");
    assert_eq!(git(&ws, &["rev-parse", "HEAD"]), head, "nothing committed");
    assert_eq!(
        fs::read_to_string(ws.root.join("README.md")).unwrap(),
        "# example, by an agent\n"
    );

    // nothing new: exit 0, and nothing changes
    let staged = git(&ws, &["status", "--porcelain"]);
    let out = ws.ok(&["apply", "--worktree"]);
    assert!(stderr(&out).contains("nothing new"), "{}", stderr(&out));
    assert_eq!(git(&ws, &["status", "--porcelain"]), staged);
    assert_eq!(git(&ws, &["rev-parse", "HEAD"]), head);
}

#[test]
fn worktree_apply_can_leave_changes_unstaged_and_refuses_to_overwrite() {
    let ws = TestWorkspace::new();
    ws.start();
    join(&ws, "a");
    agent_lands(&ws, "a", "README.md", "# agent\n", "agent readme");
    agent_lands(&ws, "a", "new.txt", "new\n", "agent new");

    fs::write(ws.root.join("README.md"), "# local edit\n").unwrap();
    let out = ws.run(&["apply", "--worktree"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("README.md"), "{}", stderr(&out));
    assert!(!ws.root.join("new.txt").exists(), "touched nothing");
    git(&ws, &["checkout", "README.md"]);

    ws.ok(&["apply", "--worktree", "--unstaged"]);
    assert_eq!(git(&ws, &["diff", "--cached", "--name-only"]), "");
    assert_eq!(git(&ws, &["diff", "--name-only"]), "README.md");
    assert_eq!(
        fs::read_to_string(ws.root.join("new.txt")).unwrap(),
        "new\n"
    );
}

#[test]
fn the_users_new_commits_reach_trunk_and_a_slot_sees_them_after_sync() {
    let ws = TestWorkspace::new();
    ws.start();
    let wt = join(&ws, "a");

    // on top of trunk: trunk takes the user's commit as it is
    let mine = user_commit(&ws, "user.txt", "from the user\n", "user: one");
    let out = ws.ok(&["land"]);
    assert_eq!(stdout(&out).trim(), mine, "{}", stderr(&out));
    assert_eq!(ws.hub_git(&["rev-parse", "trunk"]), mine);

    // trunk moved meanwhile: the user's commit is replayed on top, linearly
    agent_lands(&ws, "a", "agent.txt", "from an agent\n", "agent: one");
    user_commit(&ws, "user2.txt", "more\n", "user: two");
    ws.ok(&["land"]);
    assert_eq!(
        ws.hub_git(&["log", "--format=%s", "-3", "trunk"]),
        "user: two\nagent: one\nuser: one"
    );
    assert_eq!(
        ws.hub_git(&["rev-list", "--merges", "--count", "trunk"]),
        "0"
    );

    // each landing is one rpc entry in hub.log, like a slot's
    let lands = ws
        .hub_log()
        .lines()
        .filter(|l| l.contains(r#""rpc":"land""#))
        .count();
    assert_eq!(lands, 2, "{}", ws.hub_log());

    // again: nothing left to land
    let out = ws.ok(&["land"]);
    assert!(stderr(&out).contains("already has"), "{}", stderr(&out));

    ws.ok(&["swarm", "sync", "--slot", "a"]);
    assert_eq!(
        fs::read_to_string(wt.join("user.txt")).unwrap(),
        "from the user\n"
    );
    assert_eq!(fs::read_to_string(wt.join("user2.txt")).unwrap(), "more\n");

    // and the user lines up with trunk through the command apply names
    let out = ws.ok(&["apply"]);
    assert!(
        stderr(&out).contains("git rebase bones/trunk"),
        "{}",
        stderr(&out)
    );
    git(&ws, &["rebase", "-q", "bones/trunk"]);
    assert_eq!(
        git(&ws, &["rev-parse", "HEAD"]),
        ws.hub_git(&["rev-parse", "trunk"])
    );
}

#[test]
fn a_users_commit_that_conflicts_leaves_trunk_untouched_and_names_the_paths() {
    let ws = TestWorkspace::new();
    ws.start();
    join(&ws, "a");
    agent_lands(
        &ws,
        "a",
        "README.md",
        "# the agent's title\n",
        "agent: title",
    );
    let trunk = ws.hub_git(&["rev-parse", "trunk"]);

    user_commit(&ws, "README.md", "# the user's title\n", "user: title");
    let out = ws.run(&["land"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("README.md"), "{}", stderr(&out));
    assert_eq!(ws.hub_git(&["rev-parse", "trunk"]), trunk);
}

#[test]
fn every_verb_works_after_gc_prune_in_the_users_repository() {
    let ws = TestWorkspace::new();
    user_commit(&ws, "notes.txt", "mine\n", "user: notes");
    ws.start();
    // the user rewrites the commit trunk grew from and drops every trace
    git(
        &ws,
        &["commit", "-q", "--amend", "-m", "user: notes, reworded"],
    );
    git(&ws, &["reflog", "expire", "--expire=now", "--all"]);
    git(&ws, &["gc", "-q", "--prune=now"]);

    let wt = join(&ws, "a");
    assert_eq!(fs::read_to_string(wt.join("notes.txt")).unwrap(), "mine\n");
    agent_lands(&ws, "a", "a.txt", "agent\n", "agent: a");
    ws.ok(&["swarm", "status"]);
    ws.ok(&["apply"]);
    ws.ok(&["apply", "--worktree"]);
    assert_eq!(
        fs::read_to_string(ws.root.join("a.txt")).unwrap(),
        "agent\n"
    );
    git(&ws, &["commit", "-qm", "user: take a.txt"]);
    ws.ok(&["land"]);
    ws.ok(&["swarm", "sync", "--slot", "a"]);
    ws.ok(&["swarm", "close", "--slot", "a"]);

    let fsck = Command::new("git")
        .arg("--git-dir")
        .arg(ws.state_dir().join("hub.git"))
        .args(["fsck", "--full", "--strict"])
        .output()
        .unwrap();
    let report =
        String::from_utf8_lossy(&fsck.stdout).to_string() + &String::from_utf8_lossy(&fsck.stderr);
    assert!(fsck.status.success(), "git fsck: {report}");
    assert!(
        !report.contains("missing") && !report.contains("broken"),
        "{report}"
    );
}

#[test]
fn a_hub_seeded_by_an_earlier_version_keeps_working() {
    let ws = TestWorkspace::new();
    // what earlier versions made: trunk a root commit of the workspace's files
    let hub = ws.state_dir().join("hub.git");
    let hub_arg = hub.to_str().unwrap();
    git(&ws, &["init", "-q", "--bare", hub_arg]);
    let hub_git = |args: &[&str]| {
        let mut all = vec!["--git-dir", hub_arg];
        all.extend_from_slice(args);
        git(&ws, &all)
    };
    hub_git(&[
        "fetch",
        "-q",
        &ws.root.display().to_string(),
        "HEAD:refs/tmp",
    ]);
    let seed = hub_git(&[
        "commit-tree",
        "refs/tmp^{tree}",
        "-m",
        "session base: 0000000",
    ]);
    hub_git(&["update-ref", "refs/heads/trunk", &seed]);
    hub_git(&["update-ref", "-d", "refs/tmp"]);
    hub_git(&["symbolic-ref", "HEAD", "refs/heads/trunk"]);
    ws.start();
    assert_eq!(ws.hub_git(&["rev-list", "--max-parents=0", "trunk"]), seed);

    join(&ws, "a");
    agent_lands(&ws, "a", "a.txt", "a\n", "agent: a");
    let out = ws.ok(&["apply"]);
    assert!(
        stderr(&out).contains("shares no history"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!("git cherry-pick {}..bones/trunk", &seed[..12])),
        "{}",
        stderr(&out)
    );

    // worktree applies are incremental here too
    ws.ok(&["apply", "--worktree"]);
    assert_eq!(git(&ws, &["diff", "--cached", "--name-only"]), "a.txt");
    agent_lands(&ws, "a", "b.txt", "b\n", "agent: b");
    let out = ws.ok(&["apply", "--worktree"]);
    assert_eq!(stdout(&out).trim(), "A\tb.txt");
    assert_eq!(
        lines(&git(&ws, &["diff", "--cached", "--name-only"])),
        ["a.txt", "b.txt"]
    );

    // the user's commits cannot land on an unrelated trunk: say what to do
    git(&ws, &["commit", "-qm", "user: take the agents' work"]);
    let out = ws.run(&["land"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("README"), "{}", stderr(&out));
    assert_eq!(ws.hub_git(&["rev-list", "--count", "trunk"]), "3");
}
