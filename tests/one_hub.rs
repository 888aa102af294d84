//! Exactly one hub per state directory, and only the user's own: a lost or
//! garbled `hub.pid` never lets a second hub onto the same store, a copied
//! workspace never takes the original's hub for its own, a state directory
//! or key another user made is refused, `BONES_DIR` naming no workspace
//! is an error, and a failed start leaves nothing it spawned running.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{TestWorkspace, alive, stderr, stdout};

/// Live processes whose command line names `nats_conf`: coordination
/// servers (or stand-ins) started for that state directory.
fn servers_running(nats_conf: &Path) -> Vec<u32> {
    let conf = nats_conf.to_string_lossy().into_owned();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id() && alive(*pid))
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).split('\0').any(|a| a == conf))
                .unwrap_or(false)
        })
        .collect()
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn a_lost_hub_pid_never_brings_up_a_second_hub_on_the_same_store() {
    let ws = TestWorkspace::new();
    ws.start();
    let hub = ws.hub_pid().unwrap();
    let server = ws.nats_pid().unwrap();
    let pid_file = ws.state_dir().join("hub.pid");
    for (damage, also_json) in [("", false), ("garbage\n", false), ("", true)] {
        if damage.is_empty() {
            fs::remove_file(&pid_file).unwrap();
        } else {
            fs::write(&pid_file, damage).unwrap();
        }
        if also_json {
            fs::remove_file(ws.state_dir().join("hub.json")).unwrap();
        }
        let out = ws.start();
        assert!(
            stderr(&out).contains(&format!("already running (pid={hub})")),
            "{}",
            stderr(&out)
        );
        // the running hub's server was not taken for an orphan
        assert!(alive(server), "the live hub's nats-server was stopped");
        assert_eq!(ws.nats_pid(), Some(server));
        let mut procs = ws.processes();
        procs.sort_unstable();
        let mut want = vec![hub, server];
        want.sort_unstable();
        assert_eq!(procs, want, "one hub and its server, nothing more");
        let (status, json) = ws.status();
        assert_eq!(status, 0, "{json}");
        assert_eq!(json["pid"], hub, "{json}");
    }
    // hub.pid and hub.json are gone: stop still finds the hub
    let out = ws.ok(&["hub", "stop", "--force"]);
    assert!(
        stderr(&out).contains(&format!("stopped (pid={hub})")),
        "{}",
        stderr(&out)
    );
    assert!(ws.processes().is_empty(), "{:?}", ws.processes());
    assert_eq!(ws.status().0, 1);

    // the run lock's file deleted under a running hub, hub.pid garbled:
    // hub.json, naming this state directory and a live hub, still counts
    ws.start();
    let hub = ws.hub_pid().unwrap();
    let _ = fs::remove_file(ws.state_dir().join("hub.run.lock"));
    fs::write(&pid_file, "garbage\n").unwrap();
    let out = ws.start();
    assert!(
        stderr(&out).contains(&format!("already running (pid={hub})")),
        "{}",
        stderr(&out)
    );
    assert_eq!(ws.processes().len(), 2, "{:?}", ws.processes());
    let out = ws.ok(&["hub", "stop", "--force"]);
    assert!(
        stderr(&out).contains(&format!("stopped (pid={hub})")),
        "{}",
        stderr(&out)
    );
    assert!(ws.processes().is_empty(), "{:?}", ws.processes());
}

#[test]
fn a_copied_workspace_never_controls_the_original_hub() {
    let mut ws = TestWorkspace::new();
    ws.start();
    let original = ws.hub_pid().unwrap();
    let copy = ws.home.join("copy");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&ws.root)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());
    let copy = copy.canonicalize().unwrap();
    let in_copy = |ws: &TestWorkspace, args: &[&str]| ws.command_in(&copy, args).output().unwrap();

    let out = in_copy(&ws, &["hub", "status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(code(&out), Some(1), "the copy has no hub: {json}");
    assert_eq!(json["running"], false, "{json}");
    assert_eq!(json["copy_of"]["pid"], original, "{json}");
    assert_eq!(
        json["copy_of"]["state_dir"],
        ws.state_dir().to_str().unwrap(),
        "{json}"
    );

    let out = in_copy(&ws, &["hub", "stop", "--force"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a copy of"), "{}", stderr(&out));
    assert!(alive(original), "stop in the copy signalled the original");
    assert_eq!(ws.status().0, 0);

    // before its own hub runs, the copy's clients never reach the
    // original's server with the copied URL and key
    let created = ws
        .command_in(&copy, &["tasks", "create", "made in the copy"])
        .env("BONES_NO_AUTOSTART", "1")
        .output()
        .unwrap();
    assert_eq!(code(&created), Some(1), "{}", stderr(&created));
    assert!(
        stderr(&created).contains("is a copy of"),
        "{}",
        stderr(&created)
    );
    let listed = ws.run(&["tasks", "list", "--json"]);
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains("made in the copy"),
        "the copy wrote to the original's board"
    );

    let out = in_copy(&ws, &["hub", "start", "--detach"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let copy_state = copy.join(".bones");
    let copy_hub = support::read_pid(&copy_state.join("hub.pid")).unwrap();
    ws.track(copy_hub);
    if let Some(server) = support::read_pid(&copy_state.join("nats.pid")) {
        ws.track(server);
    }
    assert_ne!(copy_hub, original);
    assert!(alive(original));
    let url = |dir: &Path, name: &str| fs::read_to_string(dir.join(name)).unwrap();
    for name in ["hub-repo-url", "hub-nats-url", "nats.seed"] {
        assert_ne!(
            url(&copy_state, name),
            url(&ws.state_dir(), name),
            "{name} is the copy's own"
        );
    }
    let out = in_copy(&ws, &["hub", "status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(code(&out), Some(0), "{json}");
    assert_eq!(json["pid"], copy_hub);
    let (status, json) = ws.status();
    assert_eq!(status, 0, "{json}");
    assert_eq!(json["pid"], original);

    let out = in_copy(&ws, &["hub", "stop", "--force"]);
    assert!(
        stderr(&out).contains(&format!("stopped (pid={copy_hub})")),
        "{}",
        stderr(&out)
    );
    assert!(alive(original));
}

/// Runs `script` with `sh -c` as the unprivileged user `nobody`.
fn as_nobody(script: &str) {
    let status = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["sh", "-c", script])
        .status()
        .unwrap();
    assert!(status.success(), "as nobody: {script}");
}

/// True when another user can be played here (root, with setpriv).
fn can_play_another_user() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot act as another user; skipped");
        return false;
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("no setpriv: cannot act as another user; skipped");
        return false;
    }
    true
}

/// A directory every user may create entries in (like /tmp).
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

#[test]
fn a_state_directory_or_key_another_user_made_is_refused() {
    if !can_play_another_user() {
        return;
    }
    let ws = TestWorkspace::new();
    let shared = shared_dir();
    let planted = shared.path().join("S");
    // another user makes the state directory, workspace marker and key
    as_nobody(&format!(
        "umask 0; mkdir -m 777 {dir} && echo planted > {dir}/agent.id && echo {key} > {dir}/nats.seed",
        dir = planted.display(),
        key = "SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY",
    ));
    let with_planted = |args: &[&str]| {
        ws.command(args)
            .env("BONES_DIR", &planted)
            .output()
            .unwrap()
    };
    for args in [&["up"][..], &["hub", "start", "--detach"]] {
        let out = with_planted(args);
        assert_eq!(code(&out), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("belongs to uid 65534"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(!planted.join("nats.conf").exists());
    assert!(!planted.join("hub.pid").exists());

    // the user's own state directory, but others may write into it
    let open = shared.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let with_open = |args: &[&str]| ws.command(args).env("BONES_DIR", &open).output().unwrap();
    let out = with_open(&["up"]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("chmod 700 {}", open.display())),
        "{}",
        stderr(&out)
    );
    assert!(!open.join("agent.id").exists());

    // while it was open, another user planted the key
    as_nobody(&format!(
        "umask 077; echo SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY > {}/nats.seed",
        open.display()
    ));
    fs::set_permissions(&open, fs::Permissions::from_mode(0o700)).unwrap();
    let out = with_open(&["up"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let out = with_open(&["hub", "start", "--detach"]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("coordination key") && stderr(&out).contains("uid 65534"),
        "{}",
        stderr(&out)
    );
    assert!(!open.join("nats.conf").exists());

    // the user's own key, readable by others
    let token = open.join("nats.seed");
    fs::remove_file(&token).unwrap();
    fs::write(
        &token,
        "SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY\n",
    )
    .unwrap();
    fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
    let out = with_open(&["hub", "start", "--detach"]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("chmod 600 {}", token.display())),
        "{}",
        stderr(&out)
    );
    assert!(ws.processes().is_empty(), "{:?}", ws.processes());
    assert!(servers_running(&open.join("nats.conf")).is_empty());
}

#[test]
fn bones_dir_naming_no_workspace_is_an_error_naming_the_variable() {
    let ws = TestWorkspace::new();
    ws.start();
    let hub = ws.hub_pid().unwrap();
    let file = ws.home.join("a-file");
    fs::write(&file, "not a directory\n").unwrap();
    let empty = ws.home.join("empty");
    fs::create_dir(&empty).unwrap();
    let missing = ws.home.join("typo");
    let cases: [(&Path, &str); 3] = [
        (&missing, "does not exist"),
        (&file, "is not a directory"),
        (&empty, "holds no bones workspace"),
    ];
    for (dir, why) in cases {
        for args in [
            &["hub", "stop", "--force"][..],
            &["hub", "status"],
            &["tasks", "list"],
        ] {
            let out = ws
                .command_in(&ws.root.join("src"), args)
                .env("BONES_DIR", dir)
                .output()
                .unwrap();
            assert_eq!(code(&out), Some(1), "{args:?} {dir:?}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(
                err.contains("BONES_DIR") && err.contains(why),
                "{args:?} {dir:?}: {err}"
            );
        }
    }
    assert!(alive(hub), "a verb with a bad BONES_DIR reached this hub");
    assert_eq!(ws.status().0, 0);
    // `up` makes a missing BONES_DIR, owner-only; a file it refuses
    let out = ws
        .command(&["up"])
        .env("BONES_DIR", &file)
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("BONES_DIR"), "{}", stderr(&out));
    let out = ws
        .command(&["up"])
        .env("BONES_DIR", &missing)
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let mode = fs::metadata(&missing).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(missing.join("agent.id").is_file());
}

/// A stand-in for a misbehaving `nats-server`: it ignores SIGTERM and never
/// listens.
fn deaf_server(dir: &Path) -> PathBuf {
    let fake = dir.join("nats-server");
    fs::write(
        &fake,
        "#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 1; done\n",
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    fake
}

#[test]
fn a_failed_start_stops_everything_it_spawned() {
    let ws = TestWorkspace::new();
    let fake = deaf_server(&ws.home);
    let conf = ws.state_dir().join("nats.conf");
    for detach in [true, false] {
        let mut args = vec!["hub", "start", "--ready-timeout", "2s"];
        if detach {
            args.push("--detach");
        }
        let out = ws
            .command(&args)
            .env("BONES_NATS_SERVER", &fake)
            .output()
            .unwrap();
        assert_eq!(code(&out), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("ready within 2s"), "{}", stderr(&out));
        let left = servers_running(&conf);
        assert!(
            left.is_empty(),
            "{args:?}: the server that ignored SIGTERM outlived the failed start: {left:?}\n{}",
            ws.hub_log()
        );
        assert!(ws.processes().is_empty(), "{:?}", ws.processes());
        assert!(ws.nats_pid().is_none());
        assert!(ws.hub_pid().is_none());
    }
    // and the next start, with a real server, comes up
    let out = ws.start();
    assert!(stdout(&out).is_empty());
    assert_eq!(ws.status().0, 0);
}
