//! The per-user registry of hubs: `bones hub status --all` lists every hub
//! the user runs, and `bones hub reap` stops the ones whose state directory
//! is gone, and nothing else.
//!
//! Each test keeps its registry in a temp `XDG_STATE_HOME` shared by its
//! workspaces, so tests run in parallel and never see the user's hubs.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bones::state::record::{HubRecord, StateDirId};
use bones::state::registry::Entry;
use serde_json::Value;
use support::{KillOnDrop, TestWorkspace, alive, stderr, stdout};

/// A registry of hubs in a temp dir, shared by the workspaces of a test.
struct Registry {
    tmp: tempfile::TempDir,
}

impl Registry {
    fn new() -> Registry {
        Registry {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    /// Where the hubs' entries are: `$XDG_STATE_HOME/bones/hubs`.
    fn dir(&self) -> PathBuf {
        self.tmp.path().join("bones/hubs")
    }

    fn entry_files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn command(&self, ws: &TestWorkspace, args: &[&str]) -> Command {
        let mut command = ws.command(args);
        command.env("XDG_STATE_HOME", self.tmp.path());
        command
    }

    fn run(&self, ws: &TestWorkspace, args: &[&str]) -> Output {
        self.command(ws, args).output().unwrap()
    }

    fn ok(&self, ws: &TestWorkspace, args: &[&str]) -> Output {
        let out = self.run(ws, args);
        assert!(
            out.status.success(),
            "bones {args:?} failed ({}):\n{}{}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
        out
    }

    /// Runs a `--json` command; its exit code and its document.
    fn json(&self, ws: &TestWorkspace, args: &[&str]) -> (i32, Value) {
        let out = self.run(ws, args);
        let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no JSON ({e}): {}{}",
                stdout(&out),
                stderr(&out)
            )
        });
        (out.status.code().unwrap_or(-1), value)
    }

    /// Writes an entry by hand, as a hub of an older run could have left it.
    fn plant(&self, entry: &Entry) {
        bones::sys::fsutil::ensure_private_dir(&self.dir()).unwrap();
        let file = self.dir().join(format!("{}.json", entry.hub.pid));
        bones::sys::fsutil::write_private(&file, &serde_json::to_vec(entry).unwrap()).unwrap();
    }
}

/// The hub of `hubs` (a `.hubs` array) with `pid`.
fn hub_with(doc: &Value, pid: u32) -> &Value {
    doc["hubs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["pid"] == pid)
        .unwrap_or_else(|| panic!("no hub with pid {pid} in {doc}"))
}

/// An entry for `pid` at `start_time`, of a workspace that does not exist.
fn planted(pid: u32, start_time: u64) -> Entry {
    Entry {
        workspace: PathBuf::from("/nonexistent/workspace"),
        hub: HubRecord {
            pid,
            start_time,
            repo_port: 1,
            coord_port: 2,
            version: "0.0.0".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            state_dir: Some(StateDirId {
                path: PathBuf::from("/nonexistent/workspace/.bones"),
                dev: 1,
                ino: 1,
            }),
        },
    }
}

/// The entry of `pid` in `doc` is stale, for a reason that says `why`.
fn assert_stale(doc: &Value, pid: u32, why: &str) {
    let entry = hub_with(doc, pid);
    assert_eq!(entry["condition"], "stale", "{entry}");
    let reason = entry["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(why), "{entry}");
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn reap_stops_the_hub_whose_state_dir_was_deleted_and_keeps_a_healthy_one() {
    let registry = Registry::new();
    let gone = TestWorkspace::new();
    let kept = TestWorkspace::new();
    registry.ok(&gone, &["hub", "start", "--detach"]);
    registry.ok(&kept, &["hub", "start", "--detach"]);
    let (gone_hub, gone_nats) = (gone.hub_pid().unwrap(), gone.nats_pid().unwrap());
    let (kept_hub, kept_nats) = (kept.hub_pid().unwrap(), kept.nats_pid().unwrap());

    // each hub registered itself, owner-only
    let mut expected = vec![format!("{gone_hub}.json"), format!("{kept_hub}.json")];
    expected.sort();
    assert_eq!(registry.entry_files(), expected);
    assert_eq!(mode(&registry.dir()), 0o700);
    assert_eq!(mode(&registry.dir().join(&expected[0])), 0o600);

    // --all lists both, from anywhere
    let (code, doc) = registry.json(&kept, &["hub", "status", "--all", "--json"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["hubs"].as_array().unwrap().len(), 2, "{doc}");
    for (ws, pid) in [(&gone, gone_hub), (&kept, kept_hub)] {
        let hub = hub_with(&doc, pid);
        assert_eq!(hub["condition"], "serving", "{hub}");
        assert_eq!(hub["healthy"], true, "{hub}");
        assert_eq!(hub["workspace"], ws.root.to_str().unwrap());
        assert_eq!(hub["ports"]["repo"], ws.repo_port());
    }

    // the workspace's state directory is deleted under its running hub
    fs::remove_dir_all(gone.state_dir()).unwrap();
    let (code, doc) = registry.json(&kept, &["hub", "status", "--all", "--json"]);
    assert_eq!(code, 3, "an orphan is reported: {doc}");
    let orphan = hub_with(&doc, gone_hub);
    assert_eq!(orphan["condition"], "orphaned", "{orphan}");
    assert!(
        orphan["reason"].as_str().unwrap().contains("was deleted"),
        "{orphan}"
    );
    assert_eq!(hub_with(&doc, kept_hub)["condition"], "serving");

    // a dry run changes nothing
    let (code, doc) = registry.json(&kept, &["hub", "reap", "--dry-run", "--json"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(hub_with(&doc, gone_hub)["action"], "would_stop", "{doc}");
    assert_eq!(hub_with(&doc, kept_hub)["action"], "kept", "{doc}");
    assert!(alive(gone_hub) && alive(gone_nats));

    let (code, doc) = registry.json(&kept, &["hub", "reap", "--json"]);
    assert_eq!(code, 0, "{doc}");
    let reaped = hub_with(&doc, gone_hub);
    assert!(
        reaped["action"] == "stopped" || reaped["action"] == "killed",
        "{reaped}"
    );
    assert_eq!(hub_with(&doc, kept_hub)["action"], "kept", "{doc}");
    // the orphan and its coordination server are gone when reap returns
    assert!(!alive(gone_hub), "the orphaned hub {gone_hub} still runs");
    assert!(!alive(gone_nats), "its nats-server {gone_nats} still runs");
    assert_eq!(registry.entry_files(), [format!("{kept_hub}.json")]);

    // the other hub was not touched, and still serves its workspace
    assert!(alive(kept_hub) && alive(kept_nats));
    assert_eq!(
        registry.run(&kept, &["hub", "status"]).status.code(),
        Some(0)
    );
    // and a clean stop takes it out of the registry
    registry.ok(&kept, &["hub", "stop"]);
    assert!(registry.entry_files().is_empty());
    let (code, doc) = registry.json(&kept, &["hub", "status", "--all", "--json"]);
    assert_eq!(
        (code, doc["hubs"].as_array().unwrap().len()),
        (0, 0),
        "{doc}"
    );
}

#[test]
fn reap_leaves_alone_a_process_that_reuses_an_old_pid() {
    let registry = Registry::new();
    let ws = TestWorkspace::bare_dir();
    let sleeper = |secs: &str| KillOnDrop(Command::new("sleep").arg(secs).spawn().unwrap());
    // an entry whose pid now belongs to a process that started later
    let reused = sleeper("600");
    // and one that names a live process at its start time, but no hub
    let stranger = sleeper("601");
    let start_time = |pid: u32| bones::sys::process::inspect(pid).unwrap().start_time;
    let (reused_pid, stranger_pid) = (reused.0.id(), stranger.0.id());
    registry.plant(&planted(reused_pid, start_time(reused_pid) - 1000));
    registry.plant(&planted(stranger_pid, start_time(stranger_pid)));

    let (code, doc) = registry.json(&ws, &["hub", "status", "--all", "--json"]);
    assert_eq!(code, 0, "stale entries are no trouble: {doc}");
    assert_stale(&doc, reused_pid, "another process");
    assert_stale(&doc, stranger_pid, "not a bones hub");

    let (code, doc) = registry.json(&ws, &["hub", "reap", "--json"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(hub_with(&doc, reused_pid)["action"], "removed", "{doc}");
    assert_eq!(hub_with(&doc, stranger_pid)["action"], "removed", "{doc}");
    // the processes live on; only their entries are gone
    assert!(alive(reused_pid) && alive(stranger_pid));
    assert!(registry.entry_files().is_empty());
}

#[test]
fn reap_never_signals_another_users_process() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("SKIPPED: not root, so no process can run as another user here");
        return;
    }
    let registry = Registry::new();
    let ws = TestWorkspace::bare_dir();
    // `nobody` runs it; setpriv execs in place, so the pid and start time stay
    let other = KillOnDrop(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sleep",
                "600",
            ])
            .spawn()
            .unwrap(),
    );
    let pid = other.0.id();
    let runs_as_nobody = support::wait_until(std::time::Duration::from_secs(10), || {
        bones::sys::process::inspect(pid).is_some_and(|p| p.uids == Some((65534, 65534)))
    });
    assert!(runs_as_nobody, "setpriv did not switch to nobody");
    let start_time = bones::sys::process::inspect(pid).unwrap().start_time;
    registry.plant(&planted(pid, start_time));
    let (code, doc) = registry.json(&ws, &["hub", "reap", "--json"]);
    assert_eq!(code, 0, "{doc}");
    assert_stale(&doc, pid, "another user");
    assert_eq!(hub_with(&doc, pid)["action"], "removed", "{doc}");
    assert!(alive(pid), "another user's process was signalled");
}

#[test]
fn a_hub_whose_workspace_was_moved_is_not_an_orphan() {
    let registry = Registry::new();
    let mut ws = TestWorkspace::new();
    registry.ok(&ws, &["hub", "start", "--detach"]);
    let (hub, nats) = (ws.hub_pid().unwrap(), ws.nats_pid().unwrap());
    // the drop guard finds processes by the workspace's path: name them
    ws.track(hub);
    ws.track(nats);
    let moved = ws.root.with_file_name("moved");
    fs::rename(&ws.root, &moved).unwrap();
    // commands run from elsewhere: the old root is gone
    let elsewhere = TestWorkspace::bare_dir();

    let (_, doc) = registry.json(&elsewhere, &["hub", "status", "--all", "--json"]);
    let entry = hub_with(&doc, hub);
    assert_eq!(entry["condition"], "serving", "{entry}");
    let (_, doc) = registry.json(&elsewhere, &["hub", "reap", "--json"]);
    assert_eq!(hub_with(&doc, hub)["action"], "kept", "{doc}");
    assert!(alive(hub) && alive(nats));
}

#[test]
fn reap_stops_the_hub_of_a_deleted_workspace_whose_bones_dir_lives_on() {
    let registry = Registry::new();
    let mut ws = TestWorkspace::new();
    let outside = tempfile::tempdir().unwrap();
    let state = outside.path().join("state");
    let with_dir = |args: &[&str]| {
        let out = registry
            .command(&ws, args)
            .env("BONES_DIR", &state)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    with_dir(&["up"]);
    with_dir(&["hub", "start", "--detach"]);
    let hub = support::read_pid(&state.join("hub.pid")).unwrap();
    let nats = support::read_pid(&state.join("nats.pid")).unwrap();
    // the drop guard finds processes by the workspace's paths: name them
    ws.track(hub);
    ws.track(nats);
    let elsewhere = TestWorkspace::bare_dir();
    let (_, doc) = registry.json(&elsewhere, &["hub", "status", "--all", "--json"]);
    assert_eq!(hub_with(&doc, hub)["condition"], "serving", "{doc}");

    fs::remove_dir_all(&ws.root).unwrap();
    let (code, doc) = registry.json(&elsewhere, &["hub", "reap", "--json"]);
    assert_eq!(code, 0, "{doc}");
    let reaped = hub_with(&doc, hub);
    assert!(
        reaped["reason"]
            .as_str()
            .is_some_and(|r| r.contains("workspace")),
        "{reaped}"
    );
    assert!(!alive(hub) && !alive(nats), "{doc}");
    // its state directory is kept: nothing in it is deleted
    assert!(state.join("hub.git").is_dir());
}
