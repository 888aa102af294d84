//! Small holes an adversarial run found: paths echoed raw, links planted at
//! state files written through, and input silently changed into something
//! else (a blank agent id, a zero lease, a backup's missing parents).

mod support;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use support::{TestWorkspace, stderr, stdout};

/// True when `text` can be shown on a terminal as it is: no control
/// characters but the line ends.
fn no_controls(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() && c != '\n')
}

/// Asserts an error is one or two short lines with nothing that drives a
/// terminal.
fn assert_short_and_escaped(what: &str, text: &str) {
    assert!(
        no_controls(text),
        "{what} echoed control characters: {text:?}"
    );
    assert!(text.lines().count() <= 2, "{what}: {text}");
    assert!(
        text.lines().all(|l| l.chars().count() <= 600),
        "{what} printed a line of {} characters",
        text.lines().map(|l| l.chars().count()).max().unwrap_or(0)
    );
}

#[test]
fn links_planted_at_state_files_are_refused_and_never_written_through() {
    for name in ["nats.log", "hub.lock"] {
        let ws = TestWorkspace::new();
        let outside = ws.home.join("outside");
        std::os::unix::fs::symlink(&outside, ws.state_dir().join(name)).unwrap();
        let out = ws.run(&["hub", "start", "--detach"]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(name) && stderr(&out).contains("remove the link"),
            "{name}: {}",
            stderr(&out)
        );
        assert!(!outside.exists(), "bones wrote through the link at {name}");
        // without the link the hub starts
        fs::remove_file(ws.state_dir().join(name)).unwrap();
        ws.start();
        ws.stop();
        assert!(!outside.exists());
    }
}

#[test]
fn backup_and_restore_echo_paths_escaped_and_cut_and_make_no_parents() {
    let ws = TestWorkspace::new();
    ws.start();
    let missing = ws.home.join("no-such-dir");

    let escaped = missing.join("\u{1b}[2Jx/backup");
    let out = ws.run(&["hub", "backup", escaped.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_short_and_escaped("hub backup", &stderr(&out));
    assert!(
        stderr(&out).contains("parent directory does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(
        !missing.exists(),
        "hub backup created {}",
        missing.display()
    );

    let long = ws.home.join("a".repeat(60_000));
    let out = ws.run(&["hub", "backup", long.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_short_and_escaped("hub backup of a 60 KB path", &stderr(&out));

    ws.stop();
    let not_a_backup = ws.home.join("not-\u{1b}]0;title\u{7}-a-backup");
    fs::create_dir(&not_a_backup).unwrap();
    for dir in [not_a_backup.as_path(), long.as_path()] {
        let out = ws.run(&["hub", "restore", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert_short_and_escaped("hub restore", &stderr(&out));
    }
}

#[test]
fn a_bones_dir_is_shown_escaped_by_up_and_status() {
    let ws = TestWorkspace::new();
    let state = ws.home.join("state-\u{1b}[31m-red");
    let out = ws
        .command(&["up"])
        .env("BONES_DIR", &state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(no_controls(&stderr(&out)), "up: {:?}", stderr(&out));
    let out = ws
        .command(&["hub", "status"])
        .env("BONES_DIR", &state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(no_controls(&stdout(&out)), "status: {:?}", stdout(&out));
    assert!(stdout(&out).contains("\\u{1b}[31m-red"), "{}", stdout(&out));

    // a name that is not UTF-8 is shown, not a panic
    let mut bytes = ws.home.join("state-").into_os_string().into_vec();
    bytes.extend_from_slice(b"\xff");
    let state = Path::new(OsStr::from_bytes(&bytes));
    for args in [&["up", "--json"][..], &["hub", "status", "--json"]] {
        let out = ws.command(args).env("BONES_DIR", state).output().unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{args:?}: {}",
            stderr(&out)
        );
        let value: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", stderr(&out)));
        assert!(
            value["state_dir"].as_str().unwrap().ends_with('\u{fffd}'),
            "{value}"
        );
    }
}

#[test]
fn a_blank_agent_id_and_a_lease_under_a_second_are_refused() {
    let ws = TestWorkspace::new();
    ws.start();
    let out = ws
        .command(&["swarm", "join", "--slot", "alpha"])
        .env("BONES_AGENT_ID", "   ")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("BONES_AGENT_ID"), "{}", stderr(&out));

    for ttl in ["0", "500ms"] {
        let out = ws.run(&[
            "swarm", "join", "--slot", "beta", "--agent", "a", "--ttl", ttl,
        ]);
        assert_eq!(out.status.code(), Some(2), "--ttl {ttl}: {}", stderr(&out));
        assert!(stderr(&out).contains("at least 1s"), "{}", stderr(&out));
    }
    // nothing was joined
    let out = ws.ok(&["swarm", "status", "--json"]);
    assert!(
        !stdout(&out).contains("alpha") && !stdout(&out).contains("beta"),
        "{}",
        stdout(&out)
    );
    ws.ok(&[
        "swarm", "join", "--slot", "beta", "--agent", "a", "--ttl", "1s",
    ]);
}
