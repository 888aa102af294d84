//! `bones hub backup` and `bones hub restore` against real hubs: a backup
//! of a running hub comes back with the same tasks and revisions, leases,
//! stream sequences and trunk refs, into the same workspace or a new one;
//! every refusal leaves the state as it was.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bones::tasks::{Board, NewTask};
use serde_json::{Value, json};
use support::{TestWorkspace, runtime, stderr, stdout, wait_until};

/// A JetStream API request; the raw JSON answer.
async fn api(js: &async_nats::jetstream::Context, subject: String, body: Value) -> Value {
    js.request(subject, &body).await.unwrap()
}

/// Everything a restore must bring back, read from a running hub: every
/// stream's configuration, state, messages (by sequence, headers included)
/// and consumers; the task records and leases with their revisions; every
/// ref of the trunk repository. (A restored stream's creation time is the
/// restore's: the server does not keep it.)
#[derive(Debug, PartialEq)]
struct HubState {
    refs: String,
    head: String,
    tasks: Vec<(Value, u64)>,
    leases: Vec<(String, Value, u64)>,
    streams: BTreeMap<String, Value>,
}

/// Compares part by part, so a failure shows the part that differs.
fn assert_same(actual: &HubState, expected: &HubState) {
    assert_eq!(actual.refs, expected.refs);
    assert_eq!(actual.head, expected.head);
    assert_eq!(actual.tasks, expected.tasks);
    assert_eq!(actual.leases, expected.leases);
    let names = |s: &HubState| s.streams.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(actual), names(expected));
    for (name, dump) in &expected.streams {
        for part in ["config", "state", "messages", "consumers"] {
            assert_eq!(
                actual.streams[name][part], dump[part],
                "stream {name}: {part}"
            );
        }
    }
    assert_eq!(actual, expected);
}

fn hub_state(ws: &TestWorkspace) -> HubState {
    let rt = runtime();
    rt.block_on(async {
        let js = ws.jetstream().await;
        let board = Board::open(&js).await.unwrap();
        let (tasks, unreadable) = board.list().await.unwrap();
        assert!(unreadable.is_empty());
        let mut with_revisions = Vec::new();
        for task in tasks {
            let (task, revision) = board.get(&task.id).await.unwrap();
            with_revisions.push((json!(task), revision));
        }
        let store = bones::lease::bucket(&js).await.unwrap();
        let leases = bones::lease::list(&store)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.key, json!(s.lease), s.revision))
            .collect();
        let names = api(&js, "STREAM.NAMES".into(), json!({})).await;
        let mut streams = BTreeMap::new();
        for name in names["streams"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            streams.insert(name.to_string(), stream_dump(&js, name).await);
        }
        HubState {
            refs: ws.hub_git(&["for-each-ref", "--format=%(objectname) %(refname)"]),
            head: ws.hub_git(&["symbolic-ref", "HEAD"]),
            tasks: with_revisions,
            leases,
            streams,
        }
    })
}

async fn stream_dump(js: &async_nats::jetstream::Context, name: &str) -> Value {
    let info = api(js, format!("STREAM.INFO.{name}"), json!({})).await;
    let mut state = info["state"].clone();
    let (first, last) = (
        state["first_seq"].as_u64().unwrap(),
        state["last_seq"].as_u64().unwrap(),
    );
    // timestamps of the newest message are compared through the messages
    state.as_object_mut().unwrap().remove("consumer_count");
    let mut messages = Vec::new();
    for seq in first..=last.max(first) {
        if last == 0 {
            break;
        }
        let got = api(js, format!("STREAM.MSG.GET.{name}"), json!({ "seq": seq })).await;
        messages.push(
            got.get("message")
                .cloned()
                .unwrap_or(json!({ "missing": seq })),
        );
    }
    let listed = api(js, format!("CONSUMER.LIST.{name}"), json!({})).await;
    let mut consumers = BTreeMap::new();
    for consumer in listed["consumers"].as_array().unwrap() {
        if consumer["config"]["durable_name"].is_null() {
            continue; // ephemeral: belongs to a client, not to the state
        }
        let mut config = consumer["config"].clone();
        // the backup's pause leaves these behind: a past deadline, and the
        // server's note that the consumer now needs API level 1 (pausing)
        config.as_object_mut().unwrap().remove("pause_until");
        if let Some(meta) = config["metadata"].as_object_mut() {
            meta.remove("_nats.req.level");
        }
        consumers.insert(
            consumer["name"].as_str().unwrap().to_string(),
            json!({
                "config": config,
                "delivered": consumer["delivered"]["stream_seq"],
                "ack_floor": consumer["ack_floor"]["stream_seq"],
                "num_ack_pending": consumer["num_ack_pending"],
            }),
        );
    }
    json!({
        "config": info["config"],
        "state": state,
        "messages": messages,
        "consumers": consumers,
    })
}

/// Waits until the projector has turned every task revision into an event.
fn wait_for_events(ws: &TestWorkspace) {
    let caught_up = wait_until(Duration::from_secs(20), || {
        let rt = runtime();
        rt.block_on(async {
            let js = ws.jetstream().await;
            let tasks = api(&js, "STREAM.INFO.KV_bones-tasks".into(), json!({})).await;
            let events = api(&js, "STREAM.INFO.tasks-events".into(), json!({})).await;
            let consumer = api(
                &js,
                "CONSUMER.INFO.KV_bones-tasks.bones-hub-projector".into(),
                json!({}),
            )
            .await;
            tasks["state"]["messages"] == events["state"]["messages"]
                && consumer["num_ack_pending"] == 0
                && consumer["num_pending"] == 0
        })
    });
    assert!(
        caught_up,
        "the projector did not catch up:\n{}",
        ws.hub_log()
    );
}

fn commit_file(ws: &TestWorkspace, slot: &str, name: &str, content: &str) {
    let wt = ws.state_dir().join("swarm").join(slot).join("wt");
    fs::write(wt.join(name), content).unwrap();
    ws.ok(&[
        "swarm",
        "commit",
        "--slot",
        slot,
        "-m",
        &format!("add {name}"),
    ]);
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file and directory under `dir` with its mode.
fn modes(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = vec![(dir.to_path_buf(), mode(dir))];
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(modes(&path));
        } else {
            found.push((path.clone(), mode(&path)));
        }
    }
    found
}

fn pre_restore_dirs(ws: &TestWorkspace) -> Vec<PathBuf> {
    fs::read_dir(ws.state_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("pre-restore-") || name.starts_with("restore.")
        })
        .collect()
}

/// A running hub with tasks (one claimed), two leased slots, commits on
/// trunk and a rescue ref; returns its state once events have caught up.
fn busy_hub(ws: &TestWorkspace) -> HubState {
    ws.start();
    let ids: Vec<String> = (1..=3)
        .map(|i| {
            let out = ws.ok(&["tasks", "create", &format!("task {i}")]);
            stdout(&out).trim().to_string()
        })
        .collect();
    ws.command(&["tasks", "claim", &ids[0]])
        .env("BONES_AGENT_ID", "agent-a")
        .output()
        .unwrap();
    ws.ok(&[
        "share",
        "--type",
        "decision",
        "Backups cover the knowledge feed",
    ]);
    ws.ok(&[
        "swarm", "join", "--slot", "alpha", "--agent", "agent-a", "--task", &ids[0], "--ttl", "1h",
    ]);
    commit_file(ws, "alpha", "one.txt", "one\n");
    commit_file(ws, "alpha", "two.txt", "two\n");
    // a slot closed with uncommitted work leaves a rescue ref
    ws.ok(&["swarm", "join", "--slot", "beta", "--agent", "agent-b"]);
    fs::write(ws.state_dir().join("swarm/beta/wt/draft.txt"), "draft\n").unwrap();
    ws.ok(&["swarm", "close", "--slot", "beta"]);
    ws.ok(&[
        "swarm", "join", "--slot", "gamma", "--agent", "agent-c", "--ttl", "1h",
    ]);
    wait_for_events(ws);
    let state = hub_state(ws);
    // the set-up holds what the round trip is meant to carry
    assert_eq!(state.tasks.len(), 3);
    assert_eq!(state.leases.len(), 2, "{:?}", state.leases);
    assert!(
        state.refs.contains("refs/bones/rescued/beta/"),
        "{}",
        state.refs
    );
    assert!(
        state.refs.contains("refs/heads/slot/alpha"),
        "{}",
        state.refs
    );
    assert_eq!(ws.hub_git(&["rev-list", "--count", "trunk"]), "3");
    assert!(
        state.streams["tasks-events"]["messages"]
            .as_array()
            .unwrap()
            .len()
            >= 4
    );
    state
}

#[test]
fn round_trip_restores_tasks_leases_and_trunk_into_the_same_and_a_new_workspace() {
    let ws = TestWorkspace::new();
    let before = busy_hub(&ws);
    let dir = ws.home.join("backups/first");
    fs::create_dir(ws.home.join("backups")).unwrap();

    let out = ws.ok(&["hub", "backup", dir.to_str().unwrap(), "--json"]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let trunk = ws.hub_git(&["rev-parse", "trunk"]);
    assert_eq!(summary["trunk"], trunk.as_str());
    assert_eq!(summary["dir"], dir.to_str().unwrap());
    let names: Vec<&str> = summary["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    // every stream, the knowledge feed's included
    assert_eq!(
        names,
        [
            "KV_bones-swarm-sessions",
            "KV_bones-tasks",
            "bones-feed",
            "tasks-events"
        ]
    );
    assert!(stderr(&out).contains("backup: stream KV_bones-tasks"));
    // task data: owner-only; the coordination key is not in it
    for (path, mode) in modes(&dir) {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{}", path.display());
    }
    let seed = ws.read_state("nats.seed");
    let manifest = fs::read_to_string(dir.join("manifest.json")).unwrap();
    assert!(!seed.trim().is_empty() && !manifest.contains(seed.trim()));
    let manifest: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest["workspace_id"], ws.read_state("agent.id").trim());
    assert_eq!(manifest["refs"]["refs/heads/trunk"], trunk.as_str());
    // the bundle is a plain git bundle
    let verified = std::process::Command::new("git")
        .args(["bundle", "list-heads"])
        .arg(dir.join("hub.bundle"))
        .output()
        .unwrap();
    assert!(stdout(&verified).contains(&format!("{trunk} refs/heads/trunk")));

    // work after the backup, which the restore must take back
    ws.ok(&["tasks", "create", "after the backup"]);
    commit_file(&ws, "alpha", "three.txt", "three\n");
    ws.ok(&["hub", "stop", "--force"]);
    let moved_on = ws.hub_git(&["for-each-ref"]);
    assert_ne!(moved_on, before.refs);

    // over existing state without --force: refused, nothing changed
    let out = ws.run(&["hub", "restore", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert!(stderr(&out).contains("hub.git"), "{}", stderr(&out));
    assert_eq!(ws.hub_git(&["for-each-ref"]), moved_on);
    assert!(pre_restore_dirs(&ws).is_empty());

    // (a) the same workspace, with --force: the old state is kept aside
    let out = ws.ok(&["hub", "restore", dir.to_str().unwrap(), "--force", "--json"]);
    let restored: Value = serde_json::from_slice(&out.stdout).unwrap();
    let previous = PathBuf::from(restored["previous_state"].as_str().unwrap());
    assert_eq!(pre_restore_dirs(&ws), vec![previous.clone()]);
    for kept in ["hub.git", "coord", "swarm"] {
        assert!(previous.join(kept).is_dir(), "{kept} was not kept");
    }
    assert!(!ws.state_dir().join("swarm").exists());
    ws.start();
    assert_same(&hub_state(&ws), &before);
    assert!(
        ws.log_messages()
            .iter()
            .any(|m| m.starts_with("hub: restored from backup")),
        "{}",
        ws.hub_log()
    );

    // (b) a new workspace: no --force needed, same state
    let fresh = TestWorkspace::new();
    let out = fresh.ok(&["hub", "restore", dir.to_str().unwrap()]);
    assert!(stdout(&out).contains(&trunk[..12]), "{}", stdout(&out));
    fresh.start();
    assert_same(&hub_state(&fresh), &before);

    // the restored board and slots carry on: a claim is still held, the
    // lease's holder rejoins its slot and lands on the restored trunk
    let out = fresh
        .command(&["tasks", "claim", "--next"])
        .env("BONES_AGENT_ID", "agent-z")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let claimed = stdout(&out).trim().to_string();
    assert_ne!(claimed, before.tasks[0].0["id"].as_str().unwrap());
    fresh.ok(&["swarm", "join", "--slot", "alpha", "--agent", "agent-a"]);
    commit_file(&fresh, "alpha", "four.txt", "four\n");
    assert_eq!(fresh.hub_git(&["rev-list", "--count", "trunk"]), "4");
    let out = fresh.run(&[
        "swarm",
        "join",
        "--slot",
        "gamma",
        "--agent",
        "someone-else",
    ]);
    assert_eq!(out.status.code(), Some(6), "the restored lease must hold");
}

#[test]
fn restore_refuses_a_running_hub_and_a_damaged_backup_changing_nothing() {
    let ws = TestWorkspace::new();
    ws.start();
    ws.ok(&["tasks", "create", "keep me"]);
    let dir = ws.home.join("b");
    ws.ok(&["hub", "backup", dir.to_str().unwrap()]);
    let refs = ws.hub_git(&["for-each-ref"]);

    // while the hub runs: refused, even with --force
    let out = ws.run(&["hub", "restore", dir.to_str().unwrap(), "--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("hub is running"), "{}", stderr(&out));
    assert_eq!(ws.status().0, 0, "the hub must still be healthy");
    assert!(pre_restore_dirs(&ws).is_empty());
    ws.stop();

    let damaged = |file: &str, damage: &dyn Fn(&Path)| -> PathBuf {
        let copy = ws.home.join(format!("damaged-{}", file.replace('/', "-")));
        copy_dir(&dir, &copy);
        damage(&copy.join(file));
        copy
    };
    let flip = |path: &Path| {
        let mut bytes = fs::read(path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(path, bytes).unwrap();
    };
    let truncate = |path: &Path| {
        let bytes = fs::read(path).unwrap();
        fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
    };
    let fresh = TestWorkspace::new();
    for (copy, named) in [
        (
            damaged("streams/KV_bones-tasks.snapshot", &flip),
            "KV_bones-tasks.snapshot",
        ),
        (damaged("hub.bundle", &truncate), "hub.bundle"),
    ] {
        // onto existing state with --force, and onto a new workspace
        for (target, force) in [(&ws, true), (&fresh, false)] {
            let mut args = vec!["hub", "restore", copy.to_str().unwrap()];
            if force {
                args.push("--force");
            }
            let out = target.run(&args);
            assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
            assert!(stderr(&out).contains("is damaged"), "{}", stderr(&out));
            assert!(stderr(&out).contains(named), "{}", stderr(&out));
            assert!(pre_restore_dirs(target).is_empty());
        }
        assert_eq!(ws.hub_git(&["for-each-ref"]), refs);
        assert!(!fresh.state_dir().join("hub.git").exists());
        assert!(!fresh.state_dir().join("coord").exists());
    }

    // intact files, but the server refuses the last stream half-way
    // through the restore: the old state is untouched, nothing is left over
    let refused = ws.home.join("refused-by-the-server");
    copy_dir(&dir, &refused);
    let path = refused.join("manifest.json");
    let mut manifest: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let events = manifest["streams"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["name"] == "tasks-events")
        .unwrap();
    events["config"]["subjects"] = json!(["$KV.bones-tasks.>"]);
    fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let out = ws.run(&["hub", "restore", refused.to_str().unwrap(), "--force"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot restore stream tasks-events"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("restore: stream KV_bones-tasks"));
    assert_eq!(ws.hub_git(&["for-each-ref"]), refs);
    assert!(pre_restore_dirs(&ws).is_empty());
    assert!(
        ws.processes().is_empty(),
        "the restore's server was left running"
    );

    // not a backup at all
    let out = fresh.run(&["hub", "restore", ws.state_dir().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not a bones backup"),
        "{}",
        stderr(&out)
    );

    // the intact backup still restores, and the board is back
    ws.ok(&["hub", "restore", dir.to_str().unwrap(), "--force"]);
    ws.start();
    let out = ws.ok(&["tasks", "list", "--json"]);
    assert!(stdout(&out).contains("keep me"), "{}", stdout(&out));
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn backup_needs_a_running_hub_and_a_new_or_empty_directory() {
    let ws = TestWorkspace::new();
    let dir = ws.home.join("b");
    let out = ws.run(&["hub", "backup", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("hub is not running"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.exists());

    ws.start();
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("precious.txt"), "mine\n").unwrap();
    let out = ws.run(&["hub", "backup", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    assert_eq!(
        fs::read_to_string(dir.join("precious.txt")).unwrap(),
        "mine\n"
    );

    let file = ws.home.join("a-file");
    fs::write(&file, "x").unwrap();
    let out = ws.run(&["hub", "backup", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));

    // an empty directory is fine, and is made private
    let empty = ws.home.join("empty");
    fs::create_dir(&empty).unwrap();
    fs::set_permissions(&empty, fs::Permissions::from_mode(0o755)).unwrap();
    ws.ok(&["hub", "backup", empty.to_str().unwrap()]);
    assert_eq!(mode(&empty), 0o700);
    assert!(empty.join("manifest.json").is_file());
    // no staging directory is left next to it
    let leftovers: Vec<_> = fs::read_dir(&ws.home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A task id and a revision of its record.
type TaskRevision = (String, u64);

/// Every (task, revision) the board's stream holds a record at, and the
/// (task, revision) each event on `tasks-events` describes, in order.
fn revisions(ws: &TestWorkspace) -> (BTreeSet<TaskRevision>, Vec<TaskRevision>) {
    let rt = runtime();
    rt.block_on(async {
        let js = ws.jetstream().await;
        let messages = |name: &'static str| {
            let js = js.clone();
            async move {
                let stream = js.get_stream(name).await.unwrap();
                let state = stream.cached_info().state.clone();
                let mut found = Vec::new();
                for seq in state.first_sequence..=state.last_sequence {
                    if let Ok(message) = stream.get_raw_message(seq).await {
                        found.push(message);
                    }
                }
                found
            }
        };
        let mut puts = BTreeSet::new();
        for m in messages("KV_bones-tasks").await {
            let deleted = m.headers.get("KV-Operation").is_some();
            if !deleted {
                let id = m.subject.rsplit('.').next().unwrap().to_string();
                puts.insert((id, m.sequence));
            }
        }
        let mut described = Vec::new();
        for m in messages("tasks-events").await {
            let event: Value = serde_json::from_slice(&m.payload).unwrap();
            described.push((
                event["task"].as_str().unwrap().to_string(),
                event["revision"].as_u64().unwrap(),
            ));
        }
        (puts, described)
    })
}

#[test]
fn a_backup_under_load_keeps_the_events_in_step_with_the_board() {
    let ws = TestWorkspace::new();
    ws.start();
    let stop = AtomicBool::new(false);
    let dir = ws.home.join("under-load");
    std::thread::scope(|scope| {
        // several writers, so revisions arrive in bursts the projector
        // batches: the backup must catch it mid-burst too
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (ws, stop) = (&ws, &stop);
                scope.spawn(move || {
                    let rt = runtime();
                    rt.block_on(async {
                        let js = ws.jetstream().await;
                        let board = Board::open(&js).await.unwrap();
                        let mut written = 0;
                        while !stop.load(Ordering::SeqCst) || written < 10 {
                            let title = format!("load {w}.{written}");
                            let new = NewTask {
                                title,
                                ..Default::default()
                            };
                            let task = board.create(new, "load").await.unwrap();
                            board.claim(&task.id, "loader").await.unwrap();
                            written += 1;
                        }
                        written
                    })
                })
            })
            .collect();
        // the backup starts once revisions are flowing
        assert!(wait_until(Duration::from_secs(20), || {
            ws.hub_log().matches("tasks.claim").count() >= 5
        }));
        ws.ok(&["hub", "backup", dir.to_str().unwrap()]);
        stop.store(true, Ordering::SeqCst);
        let written: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
        assert!(written >= 40);
    });
    ws.stop();

    let fresh = TestWorkspace::new();
    fresh.ok(&["hub", "restore", dir.to_str().unwrap()]);
    fresh.start();
    wait_for_events(&fresh);
    let (puts, described) = revisions(&fresh);
    assert!(
        puts.len() >= 10,
        "the backup caught too little load: {}",
        puts.len()
    );
    // one event per stored revision: none missing, none for a revision the
    // backup does not hold, none twice
    let unique: BTreeSet<_> = described.iter().cloned().collect();
    assert_eq!(unique.len(), described.len(), "an event was repeated");
    assert_eq!(unique, puts);
}

#[test]
fn a_backlog_paused_during_the_backup_is_projected_after_it_and_after_a_restore() {
    let ws = TestWorkspace::new();
    ws.start();
    ws.ok(&["tasks", "create", "projected"]);
    wait_for_events(&ws);
    // hold the projector back so revisions queue up, as they do when they
    // are written while a backup has it paused
    let rt = runtime();
    rt.block_on(async {
        let js = ws.jetstream().await;
        let until = time::OffsetDateTime::now_utc() + Duration::from_secs(600);
        let until = until
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let paused = api(
            &js,
            "CONSUMER.PAUSE.KV_bones-tasks.bones-hub-projector".into(),
            json!({ "pause_until": until }),
        )
        .await;
        assert_eq!(paused["paused"], true, "{paused}");
    });
    for i in 0..3 {
        ws.ok(&["tasks", "create", &format!("queued {i}")]);
    }
    let dir = ws.home.join("with-backlog");
    let out = ws.ok(&["hub", "backup", dir.to_str().unwrap(), "--json"]);
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let messages = |name: &str| {
        summary["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["messages"].as_u64().unwrap())
    };
    // the backup holds the board ahead of its events, as the hub had them
    assert_eq!(messages("KV_bones-tasks"), Some(4));
    assert_eq!(messages("tasks-events"), Some(1));

    // with nothing written after it, the backup's resume alone gets the
    // queued revisions projected
    wait_for_events(&ws);
    ws.stop();

    // the restored hub projects them too, once each
    let fresh = TestWorkspace::new();
    fresh.ok(&["hub", "restore", dir.to_str().unwrap()]);
    fresh.start();
    wait_for_events(&fresh);
    let (puts, described) = revisions(&fresh);
    assert_eq!(puts.len(), 4);
    assert_eq!(described.len(), 4);
    assert_eq!(described.iter().cloned().collect::<BTreeSet<_>>(), puts);
}
