//! Bad input on every verb and corrupt state files: each gets a short error
//! (exit 1 or 2, one or two lines, no panic, no Debug dump) and changes
//! nothing: the state directory, the hub repository's refs, the task board
//! and the lease bucket are the same before and after.

mod support;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::net::TcpListener;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use bones::lease::{Lease, SESSIONS_BUCKET};
use bones::tasks::board::TASKS_BUCKET;
use support::{TestWorkspace, alive, run_with_stdin, runtime, stderr, stdout, wait_until};

/// Linux's limit on one argument or environment string (MAX_ARG_STRLEN,
/// 32 pages) including its NUL: the largest argument exec can pass.
const LARGEST_ARG: usize = 32 * 4096 - 1;
const TEN_MB: usize = 10 * 1024 * 1024;

/// Everything bad input must leave alone.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    /// Every path in the state directory (the coordination server's own
    /// store and log excluded) with its size, mode and modification time.
    files: BTreeMap<PathBuf, (u64, u32, i64, i64)>,
    /// `git for-each-ref` of the hub repository.
    refs: String,
    /// The last sequence of the task bucket, the lease bucket and the
    /// events stream: any write at all moves it.
    sequences: Vec<(String, u64)>,
}

fn snapshot(ws: &TestWorkspace, rt: &tokio::runtime::Runtime) -> Snapshot {
    let mut files = BTreeMap::new();
    walk(&ws.state_dir(), &ws.state_dir(), &mut files);
    let refs = ws.hub_git(&["for-each-ref", "--format=%(refname) %(objectname)"]);
    let js = rt.block_on(ws.jetstream());
    let sequences = rt.block_on(async {
        let mut out = Vec::new();
        for stream in [
            format!("KV_{TASKS_BUCKET}"),
            format!("KV_{SESSIONS_BUCKET}"),
            "tasks-events".to_string(),
        ] {
            let seq = match js.get_stream(&stream).await {
                Ok(mut s) => s.info().await.map(|i| i.state.last_sequence).unwrap_or(0),
                Err(_) => 0,
            };
            out.push((stream, seq));
        }
        out
    });
    Snapshot {
        files,
        refs,
        sequences,
    }
}

fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u64, u32, i64, i64)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let rel = path.strip_prefix(base).unwrap().to_path_buf();
        if rel == Path::new("coord") || rel == Path::new("nats.log") {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        out.insert(
            rel,
            (
                if meta.is_dir() { 0 } else { meta.len() },
                meta.mode(),
                meta.mtime(),
                meta.mtime_nsec(),
            ),
        );
        if meta.is_dir() {
            walk(base, &path, out);
        }
    }
}

/// Asserts the shape of a refusal: exit 1 or 2, one or two short lines on
/// stderr, no panic and no Debug dump.
fn assert_refused(what: &str, out: &Output) {
    let err = stderr(out);
    let code = out.status.code();
    assert!(
        matches!(code, Some(1) | Some(2)),
        "{what}: exit {code:?}, expected 1 or 2\nstdout: {}\nstderr: {err}",
        stdout(out)
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        (1..=2).contains(&lines.len()),
        "{what}: expected one or two lines on stderr, got {}:\n{err}",
        lines.len()
    );
    assert!(
        err.len() < 2000,
        "{what}: stderr is {} bytes; input must not be echoed whole",
        err.len()
    );
    for bad in ["panicked", "RUST_BACKTRACE", "Os {", "Error {", "kind:"] {
        assert!(!err.contains(bad), "{what}: stderr has {bad:?}:\n{err}");
    }
}

/// A workspace with a running hub, a slot `good` with a landed commit, and
/// an open task; returns the task id.
fn busy_workspace() -> (TestWorkspace, String) {
    let ws = TestWorkspace::new();
    ws.start();
    let wt = PathBuf::from(stdout(&ws.ok(&["swarm", "join", "--slot", "good"])).trim());
    fs::write(wt.join("notes.txt"), "work\n").unwrap();
    ws.ok(&["swarm", "commit", "--slot", "good", "-m", "notes"]);
    let id = stdout(&ws.ok(&["tasks", "create", "a task"]))
        .trim()
        .to_string();
    // the hub logs the creation on its own time: wait for it, so the
    // snapshots taken next see a quiet hub
    let logged = wait_until(Duration::from_secs(20), || {
        ws.hub_log()
            .lines()
            .any(|l| l.contains("tasks.create") && l.contains(&id))
    });
    assert!(logged, "{}", ws.hub_log());
    (ws, id)
}

/// Every verb's argument that takes a name, with `V` standing for the value.
fn name_positions(task: &str) -> Vec<Vec<String>> {
    let rows: Vec<Vec<&str>> = vec![
        vec!["swarm", "join", "--slot", "V"],
        vec!["swarm", "join", "--slot", "new-slot", "--task", "V"],
        vec!["swarm", "cwd", "--slot", "V"],
        vec!["swarm", "renew", "--slot", "V"],
        vec!["swarm", "commit", "-m", "msg", "--slot", "V"],
        vec!["swarm", "sync", "--slot", "V"],
        vec!["swarm", "close", "--slot", "V"],
        vec!["apply", "--slot", "V"],
        vec!["tasks", "create", "title", "--parent", "V"],
        vec!["tasks", "create", "title", "--blocked-by", "V"],
        vec!["tasks", "list", "--slot", "V"],
        vec!["tasks", "show", "V"],
        vec!["tasks", "update", "V", "--title", "t"],
        vec!["tasks", "update", task, "--parent", "V"],
        vec!["tasks", "update", task, "--blocked-by", "V"],
        vec!["tasks", "update", task, "--unblock", "V"],
        vec!["tasks", "claim", "V"],
        vec!["tasks", "claim", "--next", "--slot", "V"],
        vec!["tasks", "release", "V"],
        vec!["tasks", "close", "V"],
        vec!["tasks", "ready", "V"],
        vec!["logs", "--hub", "--event", "V"],
        vec!["logs", "--hub", "--level", "V"],
        vec!["logs", "--hub", "--since", "V"],
        vec!["hub", "start", "--log-level", "V"],
        vec!["hub", "start", "--repo-port", "V"],
        vec!["hub", "start", "--ready-timeout", "V"],
        vec!["hub", "stop", "--grace", "V"],
        vec!["hub", "status", "V"],
        vec!["hub", "stop", "V"],
        vec!["swarm", "status", "V"],
        vec!["logs", "--hub", "V"],
        vec!["up", "V"],
    ];
    rows.into_iter()
        .map(|r| r.into_iter().map(str::to_string).collect())
        .collect()
}

/// Runs `template` with `V` replaced by `value`.
fn run_with(ws: &TestWorkspace, template: &[String], value: &OsStr) -> Output {
    let mut command = ws.command(&[]);
    for arg in template {
        if arg == "V" {
            command.arg(value);
        } else {
            command.arg(arg);
        }
    }
    command.output().unwrap()
}

fn shown(template: &[String], value: &str) -> String {
    let value: String = value.chars().take(20).collect();
    template.join(" ").replace(" V", &format!(" {value:?}…"))
}

#[test]
fn names_with_traversal_are_refused_by_every_verb_and_change_nothing() {
    let (ws, task) = busy_workspace();
    let rt = runtime();
    let before = snapshot(&ws, &rt);
    for value in ["../x", "a/b", "/etc/passwd", "x/../../y", "..", "/"] {
        for template in name_positions(&task) {
            let out = run_with(&ws, &template, OsStr::new(value));
            assert_refused(&shown(&template, value), &out);
        }
        // the same names through the environment
        for (var, args) in [
            ("BONES_SLOT", vec!["swarm", "renew"]),
            ("BONES_SLOT", vec!["tasks", "claim", "--next"]),
        ] {
            let out = ws.command(&args).env(var, value).output().unwrap();
            assert_refused(&format!("{var}={value} {args:?}"), &out);
        }
    }
    assert_eq!(snapshot(&ws, &rt), before, "bad names changed state");
    assert!(!ws.root.parent().unwrap().join("y").exists());
}

#[test]
fn invalid_utf8_is_refused_by_every_verb_and_changes_nothing() {
    let (ws, task) = busy_workspace();
    let rt = runtime();
    let before = snapshot(&ws, &rt);
    // no NUL (exec cannot pass one), but not UTF-8 either
    let value = OsStr::from_bytes(b"slot-\xff\xfe-\xc3");
    let mut templates = name_positions(&task);
    templates.extend(
        [
            vec!["tasks", "create", "V"],
            vec!["tasks", "create", "t", "--body", "V"],
            vec!["tasks", "create", "t", "--label", "V"],
            vec!["tasks", "create", "t", "--body-file", "V"],
            vec!["tasks", "close", &task, "--reason", "V"],
            vec!["swarm", "commit", "--slot", "good", "-m", "V"],
            vec!["swarm", "join", "--slot", "s", "--agent", "V"],
            vec!["logs", "--hub", "--grep", "V"],
        ]
        .into_iter()
        .map(|r| r.into_iter().map(str::to_string).collect()),
    );
    for template in &templates {
        let out = run_with(&ws, template, value);
        assert_refused(&shown(template, "\\xff"), &out);
    }
    for (var, args) in [
        ("BONES_SLOT", vec!["swarm", "renew"]),
        ("BONES_SLOT", vec!["tasks", "list"]),
        ("BONES_AGENT_ID", vec!["swarm", "join", "--slot", "s"]),
        ("BONES_AGENT_ID", vec!["tasks", "create", "t"]),
    ] {
        let out = ws.command(&args).env(var, value).output().unwrap();
        assert_refused(&format!("{var}=<not UTF-8> {args:?}"), &out);
        assert!(stderr(&out).contains(var), "{}", stderr(&out));
    }
    assert_eq!(snapshot(&ws, &rt), before, "invalid UTF-8 changed state");
}

#[test]
fn the_largest_argument_exec_allows_is_refused_cleanly_and_ten_megabytes_cannot_be_passed() {
    let (ws, task) = busy_workspace();
    let rt = runtime();
    let before = snapshot(&ws, &rt);
    let huge = "a".repeat(LARGEST_ARG);
    let digits = "9".repeat(LARGEST_ARG);
    let mut cases: Vec<(Vec<String>, &str)> = name_positions(&task)
        .into_iter()
        .map(|t| (t, huge.as_str()))
        .collect();
    let text_positions: Vec<Vec<&str>> = vec![
        vec!["tasks", "create", "V"],
        vec!["tasks", "create", "t", "--body", "V"],
        vec!["tasks", "create", "t", "--label", "V"],
        vec!["tasks", "create", "t", "--body-file", "V"],
        vec!["tasks", "update", &task, "--title", "V"],
        vec!["tasks", "update", &task, "--body", "V"],
        vec!["tasks", "update", &task, "--add-label", "V"],
        vec!["tasks", "close", &task, "--reason", "V"],
        vec!["tasks", "list", "--label", "V"],
        vec!["swarm", "commit", "--slot", "good", "-m", "V"],
        vec!["swarm", "join", "--slot", "s", "--agent", "V"],
    ];
    for template in text_positions {
        cases.push((template.into_iter().map(str::to_string).collect(), &huge));
    }
    for template in [
        vec!["swarm", "join", "--slot", "s", "--ttl", "V"],
        vec!["hub", "stop", "--grace", "V"],
        vec!["logs", "--hub", "--since", "V"],
        vec!["hub", "start", "--coord-port", "V"],
    ] {
        cases.push((template.into_iter().map(str::to_string).collect(), &digits));
    }
    for (template, value) in &cases {
        let out = run_with(&ws, template, OsStr::new(value));
        assert_refused(&shown(template, value), &out);
    }
    let huge_env = "a".repeat(LARGEST_ARG - "BONES_AGENT_ID=".len());
    let out = ws
        .command(&["swarm", "join", "--slot", "s"])
        .env("BONES_AGENT_ID", &huge_env)
        .output()
        .unwrap();
    assert_refused("BONES_AGENT_ID=<128 KiB> swarm join", &out);
    assert_eq!(snapshot(&ws, &rt), before, "huge arguments changed state");

    // One byte more, and 10 MB, do not reach bones at all: the kernel
    // refuses the exec (E2BIG), for arguments and environment alike.
    for size in [LARGEST_ARG + 1, TEN_MB] {
        let too_big = "a".repeat(size);
        let arg = ws.command(&["tasks", "create"]).arg(&too_big).output();
        assert_eq!(
            arg.err().and_then(|e| e.raw_os_error()),
            Some(7),
            "argv of {size}"
        );
        let env = ws
            .command(&["tasks", "list"])
            .env("BONES_AGENT_ID", &too_big)
            .output();
        assert_eq!(
            env.err().and_then(|e| e.raw_os_error()),
            Some(7),
            "env of {size}"
        );
    }
}

#[test]
fn ten_megabytes_through_stdin_or_a_body_file_are_refused_cleanly() {
    let (ws, _task) = busy_workspace();
    let rt = runtime();
    let before = snapshot(&ws, &rt);
    let big_file = ws.home.join("big-body.txt");
    fs::write(&big_file, "é".repeat(TEN_MB / 2)).unwrap();
    let out = ws
        .command(&["tasks", "create", "t", "--body-file"])
        .arg(&big_file)
        .output()
        .unwrap();
    assert_refused("--body-file <10 MB>", &out);
    assert!(stderr(&out).contains("64 KiB"), "{}", stderr(&out));

    // bones stops reading at the limit
    let out = run_with_stdin(
        ws.command(&["tasks", "create", "t", "--body-file", "-"]),
        &vec![b'x'; TEN_MB],
    );
    assert_refused("--body-file - <10 MB on stdin>", &out);
    assert!(stderr(&out).contains("64 KiB"), "{}", stderr(&out));

    // a file that is not text, and one that is not a file
    let binary = ws.home.join("binary");
    fs::write(&binary, b"\xff\xfe\x00\x01").unwrap();
    for path in [
        binary.as_path(),
        Path::new("/"),
        Path::new("/nonexistent/x"),
    ] {
        let out = ws
            .command(&["tasks", "create", "t", "--body-file"])
            .arg(path)
            .output()
            .unwrap();
        assert_refused(&format!("--body-file {}", path.display()), &out);
    }
    assert_eq!(snapshot(&ws, &rt), before, "huge bodies changed state");
}

#[test]
fn a_corrupt_hub_json_is_survived_by_every_reader_and_a_start_recovers() {
    let ws = TestWorkspace::new();
    ws.start();
    let pid = ws.hub_pid().unwrap();
    let good = ws.read_state("hub.json");
    let hub_json = ws.state_dir().join("hub.json");
    let garbage: Vec<Vec<u8>> = vec![
        b"\xff\xfe\x00garbage".to_vec(),
        good.as_bytes()[..good.len() / 2].to_vec(),
        br#"{"pid":"one","start_time":[],"repo_port":-1,"coord_port":1e99,"version":7,"started_at":null}"#.to_vec(),
        "[".repeat(100_000).into_bytes(),
        Vec::new(),
    ];
    for bytes in &garbage {
        fs::write(&hub_json, bytes).unwrap();
        // the process is still recognised as the hub by its command line
        let (code, status) = ws.status();
        assert_eq!(code, 0, "status with a corrupt hub.json: {status}");
        for args in [
            vec!["swarm", "status"],
            vec!["tasks", "list"],
            vec!["logs", "--hub", "--last", "1"],
        ] {
            let out = ws.run(&args);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            assert!(!stderr(&out).contains("panicked"));
        }
    }
    ws.stop();
    assert!(wait_until(Duration::from_secs(10), || !alive(pid)));
    for bytes in &garbage {
        fs::write(&hub_json, bytes).unwrap();
        assert_eq!(ws.status().0, 1, "no hub runs");
    }
    ws.start();
    let rewritten: serde_json::Value =
        serde_json::from_str(&ws.read_state("hub.json")).expect("start rewrites hub.json");
    assert_eq!(rewritten["pid"], ws.hub_pid().unwrap());
    assert_eq!(ws.status().0, 0);
}

#[test]
fn url_files_that_do_not_name_loopback_are_never_followed() {
    let ws = TestWorkspace::new();
    ws.start();
    let rt = runtime();
    let before = snapshot(&ws, &rt);
    let good_nats = ws.read_state("hub-nats-url");
    let good_repo = ws.read_state("hub-repo-url");
    let port = good_nats.trim().rsplit(':').next().unwrap().to_string();
    // a listener on another loopback address sees whether anyone connects
    let trap = TcpListener::bind("127.0.0.2:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_port = trap.local_addr().unwrap().port();
    let bad_urls = [
        format!("nats://127.0.0.2:{trap_port}\n"),
        format!("nats://localhost:{port}\n"),
        "nats://10.0.0.1:4222\n".to_string(),
        "nats://127.0.0.1:0\n".to_string(),
        "nats://127.0.0.1:99999\n".to_string(),
        "\u{1b}[2J\u{0}garbage".to_string(),
        "x".repeat(200_000),
    ];
    for url in &bad_urls {
        fs::write(ws.state_dir().join("hub-nats-url"), url).unwrap();
        for args in [
            vec!["swarm", "status"],
            vec!["swarm", "join", "--slot", "s"],
            vec!["tasks", "list"],
            vec!["tasks", "create", "t"],
        ] {
            let out = ws.run(&args);
            let what = format!("{args:?} with hub-nats-url {:?}", &url[..url.len().min(30)]);
            assert_refused(&what, &out);
            assert!(
                stderr(&out).contains("hub-nats-url"),
                "{what}: {}",
                stderr(&out)
            );
            // a client never "repairs" the file behind the operator's back
            assert_eq!(&ws.read_state("hub-nats-url"), url, "{what}");
        }
        let accepted = trap.accept();
        assert!(
            accepted.is_err(),
            "a client connected to a non-loopback URL file"
        );
    }
    // the repo URL is only shown, never used to connect: status still works
    fs::write(
        ws.state_dir().join("hub-repo-url"),
        format!("http://127.0.0.2:{trap_port}\n"),
    )
    .unwrap();
    fs::write(ws.state_dir().join("hub-nats-url"), &good_nats).unwrap();
    let (code, status) = ws.status();
    assert_eq!(code, 0, "{status}");
    assert!(status["repo_url"].is_null(), "{status}");
    assert!(trap.accept().is_err());
    fs::write(ws.state_dir().join("hub-repo-url"), &good_repo).unwrap();
    let after = snapshot(&ws, &rt);
    assert_eq!(after.refs, before.refs);
    assert_eq!(after.sequences, before.sequences, "nothing was written");
    ws.ok(&["tasks", "list"]);
}

#[test]
fn a_garbled_hub_log_is_skipped_and_counted_and_the_hub_keeps_appending() {
    let ws = TestWorkspace::new();
    let log = ws.state_dir().join("hub.log");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"\xff\xfe\x00\x01binary\n");
    bytes.extend_from_slice(
        br#"{"ts":"2026-01-01T00:00:00Z","level":"INFO","event":"lifecycle","msg":"kept"}"#,
    );
    bytes.push(b'\n');
    bytes.extend(std::iter::repeat_n(b'{', 2 << 20)); // one 2 MiB line
    bytes.push(b'\n');
    bytes.extend_from_slice(b"{\"ts\":\"2026-01-01T00:00:01Z\",\"level\":\"ERR"); // torn tail
    fs::write(&log, &bytes).unwrap();
    let out = ws.ok(&["logs", "--hub"]);
    assert!(stdout(&out).contains("kept"));
    assert!(
        stderr(&out).contains("skipped 2 malformed lines"),
        "{}",
        stderr(&out)
    );
    // the hub appends after a torn tail; its first entry may share that
    // line, every later one is whole
    ws.start();
    let out = ws.ok(&["logs", "--hub", "--grep", "hub: ready"]);
    assert!(stdout(&out).contains("hub: ready"), "{}", stdout(&out));
    let (code, _) = ws.status();
    assert_eq!(code, 0);
}

fn lease_json(slot: &str, renewed: &str, ttl_s: u64) -> Vec<u8> {
    serde_json::to_vec(&Lease {
        slot: slot.to_string(),
        agent_id: "intruder".into(),
        task_id: None,
        host: "elsewhere".into(),
        started_at: renewed.to_string(),
        last_renewed: renewed.to_string(),
        ttl_s,
        pid: None,
        pid_start: None,
    })
    .unwrap()
}

#[test]
fn garbage_lease_records_never_crash_status_the_stop_guard_or_the_watcher() {
    let ws = TestWorkspace::new();
    ws.start();
    // a clean git repository named wt outside the state directory: what a
    // reaper taking an absolute key for a slot name would delete (NATS
    // refuses keys with `..`, but `/` is a valid key character)
    let victim_dir = ws.root.join("victim");
    let victim_key = victim_dir.to_str().unwrap().to_string();
    let victim = victim_dir.join("wt");
    fs::create_dir_all(&victim).unwrap();
    fs::write(victim.join("precious.txt"), "keep me\n").unwrap();
    for args in [
        vec!["init", "-q"],
        vec!["add", "."],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-qm",
            "v",
        ],
    ] {
        assert!(
            std::process::Command::new("git")
                .args(&args)
                .current_dir(&victim)
                .env("HOME", &ws.home)
                .status()
                .unwrap()
                .success()
        );
    }
    let rt = runtime();
    let js = rt.block_on(ws.jetstream());
    let old = "2020-01-01T00:00:00Z";
    rt.block_on(async {
        let store = js.get_key_value(SESSIONS_BUCKET).await.unwrap();
        let records: Vec<(&str, Vec<u8>)> = vec![
            ("ghost", b"\xff\x00 not json".to_vec()),
            ("forever", lease_json("forever", old, u64::MAX)),
            ("badtime", lease_json("badtime", "yesterday", 300)),
            ("liar", lease_json("someone-else", old, 1)),
            (victim_key.as_str(), lease_json(&victim_key, old, 1)),
        ];
        for (key, value) in records {
            store.put(key, value.into()).await.unwrap();
        }
    });
    // a slot whose lease expires at once: once the watcher has reaped it,
    // it has scanned every record above too
    ws.ok(&["swarm", "join", "--slot", "gone", "--ttl", "1s"]);
    let reaped = wait_until(Duration::from_secs(30), || {
        ws.hub_log().contains("reaped stale slot gone")
    });
    assert!(reaped, "the watcher stopped reaping:\n{}", ws.hub_log());
    assert!(
        victim.join("precious.txt").is_file(),
        "a lease key escaped swarm/"
    );
    assert!(!ws.hub_log().contains("panic"), "{}", ws.hub_log());
    assert!(
        ws.hub_log().contains("its key is not a slot name"),
        "{}",
        ws.hub_log()
    );
    assert_eq!(ws.status().0, 0);

    let out = ws.ok(&["swarm", "status", "--json"]);
    let slots: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let state = |name: &str| {
        slots
            .iter()
            .find(|s| s["slot"] == name)
            .map(|s| s["state"].as_str().unwrap().to_string())
    };
    // unreadable records count as live: nothing is reaped on a guess
    for name in ["ghost", "forever", "badtime", "liar"] {
        assert_eq!(state(name).as_deref(), Some("active"), "{name}: {slots:?}");
    }
    assert_eq!(state(&victim_key), None);
    let out = ws.run(&["swarm", "status"]);
    assert!(out.status.success() && !stderr(&out).contains("panicked"));

    let out = ws.run(&["hub", "stop"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("ghost") && stderr(&out).contains("forever"));
    assert!(!stderr(&out).contains("victim"));
    ws.ok(&["hub", "stop", "--force"]);
}

#[test]
fn garbage_task_records_are_skipped_by_readers_and_the_projector() {
    let ws = TestWorkspace::new();
    ws.start();
    let first = stdout(&ws.ok(&["tasks", "create", "first"]))
        .trim()
        .to_string();
    let rt = runtime();
    let js = rt.block_on(ws.jetstream());
    rt.block_on(async {
        let store = js.get_key_value(TASKS_BUCKET).await.unwrap();
        store
            .put("t-garbage", b"\xff\x00{".to_vec().into())
            .await
            .unwrap();
        // a well-formed record under a key it does not name
        let mut liar: serde_json::Value =
            serde_json::from_slice(&store.get(&first).await.unwrap().unwrap()).unwrap();
        liar["id"] = "t-other".into();
        store
            .put("t-liar", serde_json::to_vec(&liar).unwrap().into())
            .await
            .unwrap();
        // terminal escapes in a record another client wrote
        let mut loud = liar.clone();
        loud["id"] = "t-loud".into();
        loud["title"] = "\u{1b}[2Jcleared".into();
        loud["status"] = "claimed".into();
        loud["claimed_by"] = "\u{1b}]0;owned\u{7}".into();
        loud["body"] = "line\n\u{1b}[31mred".into();
        store
            .put("t-loud", serde_json::to_vec(&loud).unwrap().into())
            .await
            .unwrap();
    });
    for args in [vec!["tasks", "list"], vec!["tasks", "show", "t-loud"]] {
        let out = ws.ok(&args);
        assert!(
            stdout(&out).contains("cleared"),
            "{args:?}: {}",
            stdout(&out)
        );
        assert!(
            !out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b),
            "{args:?} printed an escape sequence"
        );
    }
    let out = ws
        .command(&["tasks", "create"])
        .arg("a\u{1b}[2Jb")
        .output()
        .unwrap();
    assert_refused("tasks create <title with ESC>", &out);
    let out = ws.ok(&["tasks", "list"]);
    assert!(stderr(&out).contains("t-garbage"), "{}", stderr(&out));
    let out = ws.run(&["tasks", "show", "t-garbage"]);
    assert_refused("tasks show t-garbage", &out);
    assert!(stderr(&out).contains("not readable"));
    let out = ws.run(&["tasks", "claim", "t-garbage"]);
    assert_refused("tasks claim t-garbage", &out);
    // the projector skipped both and still projects what comes after
    let next = stdout(&ws.ok(&["tasks", "create", "next"]))
        .trim()
        .to_string();
    let projected = wait_until(Duration::from_secs(20), || {
        ws.hub_log()
            .lines()
            .any(|l| l.contains("tasks.create") && l.contains(&next))
    });
    assert!(projected, "{}", ws.hub_log());
    assert!(ws.hub_log().contains("task projector skipped a revision"));
    assert!(!ws.hub_log().contains("t-other"), "{}", ws.hub_log());
    assert!(!ws.hub_log().contains("panic"));
}

#[test]
fn a_state_directory_that_is_not_utf8_is_refused_before_anything_starts() {
    let ws = TestWorkspace::new();
    let odd = ws.home.join(OsString::from_vec(b"state-\xff".to_vec()));
    let up = ws.command(&["up"]).env("BONES_DIR", &odd).output().unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    let out = ws
        .command(&["hub", "start", "--detach"])
        .env("BONES_DIR", &odd)
        .output()
        .unwrap();
    assert_refused("hub start in a non-UTF-8 state directory", &out);
    assert!(stderr(&out).contains("UTF-8"), "{}", stderr(&out));
    assert!(!odd.join("nats.conf").exists());
    assert!(!odd.join("coord").exists());
    assert!(ws.processes().is_empty());
}
