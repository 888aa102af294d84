//! `bones up` and workspace discovery.

mod support;

use std::fs;

use support::{TestWorkspace, stderr};

#[test]
fn up_creates_marker_and_gitignore_entry_idempotently() {
    let ws = TestWorkspace::new();
    let id = ws.read_state("agent.id");
    assert_eq!(id.trim().len(), 36, "agent.id holds a UUID: {id:?}");
    ws.ok(&["up"]);
    assert_eq!(ws.read_state("agent.id"), id, "a second up keeps the id");
    let ignore = fs::read_to_string(ws.root.join(".gitignore")).unwrap();
    assert_eq!(ignore.matches(".bones/").count(), 1, "{ignore}");
}

#[test]
fn up_keeps_an_existing_gitignore_and_its_entry() {
    let ws = TestWorkspace::bare_dir();
    fs::write(ws.root.join(".gitignore"), "target").unwrap();
    ws.ok(&["up"]);
    assert_eq!(
        fs::read_to_string(ws.root.join(".gitignore")).unwrap(),
        "target\n.bones/\n"
    );
    fs::write(ws.root.join(".gitignore"), "/.bones\n").unwrap();
    ws.ok(&["up"]);
    assert_eq!(
        fs::read_to_string(ws.root.join(".gitignore")).unwrap(),
        "/.bones\n"
    );
}

#[test]
fn verbs_outside_a_workspace_name_bones_up() {
    let ws = TestWorkspace::bare_dir();
    for args in [
        &["hub", "status"][..],
        &["hub", "stop"],
        &["hub", "start", "--detach"],
    ] {
        let out = ws.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("bones up"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    assert!(!ws.state_dir().exists(), "nothing was created");
}

#[test]
fn verbs_walk_up_from_a_subdirectory() {
    let ws = TestWorkspace::new();
    let sub = ws.root.join("src");
    let out = ws
        .command_in(&sub, &["hub", "start", "--detach"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(ws.state_dir().join("hub.pid").is_file());
    assert!(
        !sub.join(".bones").exists(),
        "no second hub in the subdirectory"
    );
    let out = ws.command_in(&sub, &["hub", "stop"]).output().unwrap();
    assert!(out.status.success());
    assert!(ws.hub_pid().is_none());
}

#[test]
fn bones_dir_relocates_the_state_directory() {
    let ws = TestWorkspace::new();
    let elsewhere = ws.home.join("state");
    let run = |args: &[&str]| {
        ws.command_in(&ws.root.join("src"), args)
            .env("BONES_DIR", &elsewhere)
            .output()
            .unwrap()
    };
    let out = ws
        .command(&["up"])
        .env("BONES_DIR", &elsewhere)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(elsewhere.join("agent.id").is_file());
    let out = run(&["hub", "start", "--detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(elsewhere.join("hub.pid").is_file());
    assert!(elsewhere.join("hub.git/HEAD").is_file());
    assert!(!ws.state_dir().join("hub.pid").exists());
    // the trunk was seeded from the workspace root, not from the subdirectory
    let repo = git2::Repository::open_bare(elsewhere.join("hub.git")).unwrap();
    let tree = repo
        .find_reference("refs/heads/trunk")
        .unwrap()
        .peel_to_tree()
        .unwrap();
    assert!(tree.get_name("README.md").is_some());
    let out = run(&["hub", "stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!elsewhere.join("hub.pid").exists());
}
