//! The task board against a real hub: racing claimers never double-claim,
//! events and rpc entries match the board exactly, across hub kills too.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;

use bones::tasks::{Board, NewTask, Status, Task};
use support::{Signal, TestWorkspace, runtime, send_signal, stderr, stdout, wait_until};

fn board(
    ws: &TestWorkspace,
    rt: &tokio::runtime::Runtime,
) -> (Board, async_nats::jetstream::Context) {
    rt.block_on(async {
        let js = ws.jetstream().await;
        (Board::open(&js).await.unwrap(), js)
    })
}

fn create_many(ws: &TestWorkspace, n: usize) -> Vec<String> {
    let rt = runtime();
    let (board, _) = board(ws, &rt);
    rt.block_on(async {
        let mut ids = Vec::new();
        for i in 0..n {
            let task = board
                .create(
                    NewTask {
                        title: format!("task {i}"),
                        ..Default::default()
                    },
                    "test",
                )
                .await
                .unwrap();
            ids.push(task.id);
        }
        ids
    })
}

fn all_tasks(ws: &TestWorkspace) -> Vec<Task> {
    let rt = runtime();
    let (board, _) = board(ws, &rt);
    rt.block_on(board.list()).unwrap().0
}

/// How many `tasks.create` entries hub.log has for task `id`.
fn create_entries(ws: &TestWorkspace, id: &str) -> usize {
    ws.hub_log()
        .lines()
        .filter(|l| l.contains("\"rpc\":\"tasks.create\"") && l.contains(id))
        .count()
}

/// `bones tasks create ARGS`; returns the new id.
fn create(ws: &TestWorkspace, args: &[&str]) -> String {
    let mut full = vec!["tasks", "create"];
    full.extend_from_slice(args);
    stdout(&ws.ok(&full)).trim().to_string()
}

/// `bones ARGS` run as agent `agent`.
fn as_agent(ws: &TestWorkspace, agent: &str, args: &[&str]) -> std::process::Output {
    ws.command(args)
        .env("BONES_AGENT_ID", agent)
        .output()
        .unwrap()
}

/// rpc entries in hub.log with this name and no `err`.
fn rpc_count(ws: &TestWorkspace, rpc: &str) -> usize {
    ws.hub_log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["rpc"] == rpc && e.get("err").is_none())
        .count()
}

/// Every event on `tasks-events`, as (type, task) pairs.
fn events(ws: &TestWorkspace) -> Vec<(String, String)> {
    let rt = runtime();
    let (_, js) = board(ws, &rt);
    rt.block_on(support::task_events(&js))
        .iter()
        .map(|event| {
            (
                event["type"].as_str().unwrap().to_string(),
                event["task"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Runs `racers` claimers of `claim --next` until none is left; returns
/// what each reported. `during` runs once after the first claims.
fn race(
    ws: &TestWorkspace,
    racers: usize,
    during: impl FnOnce() + Send,
) -> HashMap<String, Vec<String>> {
    let claimed: Mutex<HashMap<String, Vec<String>>> = Mutex::new(HashMap::new());
    let first = std::sync::Barrier::new(racers + 1);
    std::thread::scope(|scope| {
        for r in 0..racers {
            let (ws, claimed, first) = (ws, &claimed, &first);
            scope.spawn(move || {
                let me = format!("racer-{r}");
                let mut waited = false;
                let mut failures = 0;
                loop {
                    let out = ws
                        .command(&["tasks", "claim", "--next"])
                        .env("BONES_AGENT_ID", &me)
                        .output()
                        .unwrap();
                    match out.status.code() {
                        Some(0) => {
                            let id = stdout(&out).trim().to_string();
                            claimed
                                .lock()
                                .unwrap()
                                .entry(me.clone())
                                .or_default()
                                .push(id);
                            if !waited {
                                first.wait();
                                waited = true;
                            }
                        }
                        Some(7) => break,
                        _ => {
                            // the hub is down (killed by the test): try again
                            failures += 1;
                            assert!(failures < 600, "{me}: {}", stderr(&out));
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
                if !waited {
                    first.wait();
                }
            });
        }
        first.wait();
        during();
    });
    claimed.into_inner().unwrap()
}

fn assert_claimed_exactly_once(
    ws: &TestWorkspace,
    ids: &[String],
    reported: &HashMap<String, Vec<String>>,
) {
    let mut seen = HashSet::new();
    for (racer, list) in reported {
        for id in list {
            assert!(
                seen.insert(id.clone()),
                "{id} reported claimed twice (again by {racer})"
            );
        }
    }
    let tasks = all_tasks(ws);
    assert_eq!(tasks.len(), ids.len());
    for task in &tasks {
        assert_eq!(task.status, Status::Claimed, "{} not claimed", task.id);
        assert_eq!(
            task.claim_epoch, 1,
            "{} claimed {} times",
            task.id, task.claim_epoch
        );
        let holder = task.claimed_by.as_deref().unwrap();
        if seen.contains(&task.id) {
            assert!(
                reported[holder].contains(&task.id),
                "{} held by {holder}, reported by another",
                task.id
            );
        }
    }
}

#[test]
fn eight_racers_claim_five_hundred_tasks_exactly_once() {
    let ws = TestWorkspace::new();
    ws.start();
    let ids = create_many(&ws, 500);
    let reported = race(&ws, 8, || {});
    assert_eq!(reported.values().map(Vec::len).sum::<usize>(), 500);
    assert_claimed_exactly_once(&ws, &ids, &reported);
    assert!(
        wait_until(Duration::from_secs(30), || rpc_count(&ws, "tasks.claim")
            >= 500),
        "only {} tasks.claim entries",
        rpc_count(&ws, "tasks.claim")
    );
    assert_eq!(rpc_count(&ws, "tasks.claim"), 500);
    let claims = events(&ws)
        .into_iter()
        .filter(|(t, _)| t == "claim")
        .count();
    assert_eq!(claims, 500);
}

#[test]
fn a_hub_killed_during_the_race_loses_and_repeats_nothing() {
    let ws = TestWorkspace::new();
    ws.start();
    let ids = create_many(&ws, 500);
    let reported = race(&ws, 8, || {
        let pid = ws.hub_pid().unwrap();
        send_signal(pid, Signal::SIGKILL);
        assert!(wait_until(Duration::from_secs(10), || !support::alive(pid)));
        ws.start();
    });
    assert_claimed_exactly_once(&ws, &ids, &reported);
    assert!(
        wait_until(Duration::from_secs(30), || rpc_count(&ws, "tasks.claim")
            >= 500),
        "only {} tasks.claim entries",
        rpc_count(&ws, "tasks.claim")
    );
    let events = events(&ws);
    let claim_events: Vec<&String> = events
        .iter()
        .filter(|(t, _)| t == "claim")
        .map(|(_, id)| id)
        .collect();
    let distinct: HashSet<&&String> = claim_events.iter().collect();
    assert_eq!(
        claim_events.len(),
        500,
        "claim events: {}",
        claim_events.len()
    );
    assert_eq!(distinct.len(), 500);
    assert_eq!(events.iter().filter(|(t, _)| t == "create").count(), 500);
    assert_eq!(rpc_count(&ws, "tasks.claim"), 500);
}

#[test]
fn a_refused_claim_changes_nothing_and_publishes_no_event() {
    let ws = TestWorkspace::new();
    ws.start();
    let id = create(&ws, &["Fix the parser", "--label", "bug"]);
    assert!(
        as_agent(&ws, "alice", &["tasks", "claim", &id])
            .status
            .success()
    );
    // claiming your own claim again is fine
    let out = as_agent(&ws, "alice", &["tasks", "claim", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = as_agent(&ws, "bob", &["tasks", "claim", &id]);
    assert_eq!(out.status.code(), Some(6));
    assert!(
        stderr(&out).contains("claimed by alice"),
        "{}",
        stderr(&out)
    );

    let out = ws.ok(&["tasks", "show", &id, "--json"]);
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["claimed_by"], "alice");
    assert_eq!(task["claim_epoch"], 1);
    assert!(wait_until(Duration::from_secs(10), || rpc_count(
        &ws,
        "tasks.claim"
    ) == 1));
    let events = events(&ws);
    assert_eq!(
        events,
        vec![
            ("create".to_string(), id.clone()),
            ("claim".to_string(), id.clone())
        ]
    );
    // the refusal is in the log, with its error
    assert!(ws.hub_log().contains("\"err\":\"task"), "{}", ws.hub_log());

    // closing releases; a closed task cannot be claimed
    assert!(
        as_agent(&ws, "alice", &["tasks", "close", &id, "--reason", "done"])
            .status
            .success()
    );
    let out = ws.ok(&["tasks", "show", &id, "--json"]);
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["status"], "closed");
    assert!(task.get("claimed_by").is_none());
    let out = as_agent(&ws, "bob", &["tasks", "claim", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn ready_follows_blockers_and_claim_next_takes_the_oldest() {
    let ws = TestWorkspace::new();
    ws.start();
    let first = create(&ws, &["first"]);
    let second = create(&ws, &["second", "--blocked-by", &first]);
    let third = create(&ws, &["third"]);
    let ready = |ws: &TestWorkspace| -> Vec<String> {
        let out = ws.ok(&["tasks", "ready", "--json"]);
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        list.iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ready(&ws), vec![first.clone(), third.clone()]);
    let out = as_agent(&ws, "a", &["tasks", "claim", "--next"]);
    assert_eq!(stdout(&out).trim(), first);
    assert!(
        as_agent(&ws, "a", &["tasks", "close", &first])
            .status
            .success()
    );
    assert_eq!(ready(&ws), vec![second.clone(), third.clone()]);
    let out = ws.ok(&["tasks", "list", "--status", "closed", "--json"]);
    let closed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(closed.len(), 1);
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let ws = TestWorkspace::new();
    ws.start();
    let big = "x".repeat(70 * 1024);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["tasks", "create", ""], 2, "title is empty"),
        (vec!["tasks", "create", "t", "--body", &big], 2, "64 KiB"),
        (
            vec!["tasks", "create", "t", "--parent", "t-nothere"],
            1,
            "no task t-nothere",
        ),
        (vec!["tasks", "claim", "t-nothere"], 1, "no task t-nothere"),
        (vec!["tasks", "show", "../../etc"], 2, "invalid task id"),
        (
            vec!["tasks", "update", "t-x", "--title", ""],
            2,
            "title is empty",
        ),
        (
            vec!["tasks", "create", "t", "--label", "two words"],
            2,
            "invalid label",
        ),
    ];
    for (args, code, text) in cases {
        let out = ws.run(&args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(text), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"));
    }
    assert!(all_tasks(&ws).is_empty());
}

#[test]
fn a_reaped_slot_gives_its_tasks_back() {
    let ws = TestWorkspace::new();
    ws.start();
    let id = create(&ws, &["slot work"]);
    // the slot lives as long as this process (ADR 0011): it is reaped when
    // the test says so, not when a short TTL runs out on a busy machine
    let mut agent = support::KillOnDrop(
        std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap(),
    );
    let pid = agent.0.id().to_string();
    ws.ok(&[
        "swarm", "join", "--slot", "short", "--agent", "s", "--pid", &pid,
    ]);
    let out = ws.ok(&["tasks", "claim", &id, "--slot", "short", "--json"]);
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["claimed_by"], "short");
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let out = ws.run(&["tasks", "show", &id, "--json"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|t| t["status"] == "open")
        }),
        "{}",
        ws.hub_log()
    );
    assert!(wait_until(Duration::from_secs(10), || rpc_count(
        &ws,
        "tasks.release"
    ) == 1));
}

#[test]
fn rpc_entries_are_neither_missed_nor_repeated_across_a_restart() {
    let ws = TestWorkspace::new();
    ws.start();
    for title in ["a", "b", "c"] {
        ws.ok(&["tasks", "create", title]);
    }
    assert!(wait_until(Duration::from_secs(10), || rpc_count(
        &ws,
        "tasks.create"
    ) == 3));
    ws.ok(&["hub", "stop"]);
    ws.start();
    let d = create(&ws, &["d"]);
    // the projector works in revision order: once d's entry is there, any
    // repeat of a, b or c (which would come first) is there too
    assert!(wait_until(Duration::from_secs(10), || ws
        .hub_log()
        .contains(&format!("\"task\":\"{d}\""))));
    assert_eq!(rpc_count(&ws, "tasks.create"), 4);
    assert_eq!(events(&ws).len(), 4);
}

#[test]
fn long_lived_claimers_race_through_the_library_exactly_once() {
    let ws = TestWorkspace::new();
    ws.start();
    let ids = create_many(&ws, 300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let reported: HashMap<String, Vec<String>> = rt.block_on(async {
        let mut workers = Vec::new();
        for c in 0..8 {
            let js = ws.jetstream().await;
            workers.push(tokio::spawn(async move {
                let board = Board::open(&js).await.unwrap();
                let me = format!("claimer-{c}");
                let mut claimer = board.claimer(&me);
                let mut mine = Vec::new();
                while let Some(task) = claimer.next().await.unwrap() {
                    assert_eq!(task.claimed_by.as_deref(), Some(me.as_str()));
                    mine.push(task.id);
                }
                (me, mine)
            }));
        }
        let mut reported = HashMap::new();
        for worker in workers {
            let (me, mine) = worker.await.unwrap();
            reported.insert(me, mine);
        }
        reported
    });
    assert_eq!(reported.values().map(Vec::len).sum::<usize>(), 300);
    assert_claimed_exactly_once(&ws, &ids, &reported);
}

#[test]
fn a_claimer_passes_over_tasks_claimed_since_it_read_the_board() {
    let ws = TestWorkspace::new();
    ws.start();
    let ids = create_many(&ws, 8);
    let rt = runtime();
    let (mine, js) = board(&ws, &rt);
    let (theirs, _) = board(&ws, &rt);
    rt.block_on(async {
        let mut claimer = mine.claimer("a");
        assert_eq!(claimer.next().await.unwrap().unwrap().id, ids[0]);
        // a second subscription on the claimer's connection says when the
        // changes have reached it
        let mut watch = js
            .client()
            .subscribe("bones.tasks.changed.>")
            .await
            .unwrap();
        js.client().flush().await.unwrap();
        for id in &ids[1..6] {
            theirs.claim(id, "b").await.unwrap();
        }
        // (the server republishes after it acknowledges, so the change of
        // the claimer's own claim may come first)
        let mut waited: HashSet<String> = ids[1..6]
            .iter()
            .map(|id| format!("bones.tasks.changed.{id}"))
            .collect();
        while !waited.is_empty() {
            let change = watch.next().await.unwrap();
            assert!(change.payload.is_empty(), "headers only");
            waited.remove(change.subject.as_str());
        }
        // the claimer's copies were sent with these; a ping answered after
        // them means they have arrived
        js.client().flush().await.unwrap();
        let next = claimer.next().await.unwrap().unwrap();
        assert_eq!(next.id, ids[6], "the oldest task still open");
        assert_eq!(
            claimer.refused(),
            0,
            "no swap tried on a task it knew taken"
        );
    });
}

#[test]
fn the_hub_makes_an_older_bucket_republish_its_changes() {
    let ws = TestWorkspace::new();
    ws.start();
    let rt = runtime();
    let name = format!("KV_{}", bones::tasks::board::TASKS_BUCKET);
    let made = rt.block_on(async {
        let js = ws.jetstream().await;
        let republish = |js: async_nats::jetstream::Context| {
            let name = name.clone();
            async move {
                let mut stream = js.get_stream(&name).await.unwrap();
                stream.info().await.unwrap().config.republish.clone()
            }
        };
        let made = republish(js.clone())
            .await
            .expect("the hub's bucket republishes");
        assert_eq!(made.destination, "bones.tasks.changed.>");
        assert!(made.headers_only);
        // as a bucket made before bones followed changes
        let mut config = js
            .get_stream(&name)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .config
            .clone();
        config.republish = None;
        js.update_stream(&config).await.unwrap();
        assert!(republish(js.clone()).await.is_none());
        made
    });
    // the hub sets it again when it starts
    ws.ok(&["hub", "stop"]);
    ws.start();
    rt.block_on(async {
        let js = ws.jetstream().await;
        let stream = js.get_stream(&name).await.unwrap();
        assert_eq!(stream.cached_info().config.republish, Some(made));
    });
}

/// Pauses the hub's task projector until `until` (RFC 3339). A consumer
/// unpaused outright does not start delivering again (nats-server 2.15);
/// one whose pause runs out does, so resuming is a pause that ends at once.
async fn pause_projector(js: &async_nats::jetstream::Context, until: &str) {
    let subject = format!(
        "$JS.API.CONSUMER.PAUSE.KV_{}.{}",
        bones::tasks::board::TASKS_BUCKET,
        bones::hub::projector::DURABLE
    );
    let body = serde_json::json!({ "pause_until": until });
    let reply = js
        .client()
        .request(subject, serde_json::to_vec(&body).unwrap().into())
        .await
        .unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap();
    assert!(reply.get("error").is_none(), "{reply}");
}

#[test]
fn a_hub_killed_between_an_event_and_its_log_entry_writes_the_entry_once() {
    let ws = TestWorkspace::new();
    ws.start();
    let first = create(&ws, &["logged before the kill"]);
    assert!(wait_until(Duration::from_secs(10), || rpc_count(
        &ws,
        "tasks.create"
    ) == 1));
    let rt = runtime();
    let (tasks, js) = board(&ws, &rt);
    rt.block_on(pause_projector(&js, "2999-01-01T00:00:00Z"));
    // two revisions the projector has not acknowledged; as a hub killed
    // midway would have left them, both events are published, and only
    // `logged`'s entry was written
    let unlogged = create(&ws, &["published, not logged"]);
    let logged = create(&ws, &["published and logged"]);
    rt.block_on(async {
        for id in [&unlogged, &logged] {
            let (task, revision) = tasks.get(id).await.unwrap();
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("{id}:{revision}").as_str());
            let event = serde_json::json!({ "schema": 1, "type": "create", "task": id,
                "revision": revision, "by": "test", "at": task.created_at, "record": task });
            js.publish_with_headers(
                format!("tasks.events.{id}"),
                headers,
                serde_json::to_vec(&event).unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
            if id == &logged {
                let mut entry = bones::oplog::LogEntry::new(
                    bones::oplog::LogLevel::Info,
                    bones::oplog::EventKind::Rpc,
                );
                entry.rpc = Some("tasks.create".into());
                entry.task = Some(id.clone());
                entry.revision = Some(revision);
                let mut line = serde_json::to_string(&entry).unwrap();
                line.push('\n');
                let mut log = std::fs::OpenOptions::new()
                    .append(true)
                    .open(ws.state_dir().join("hub.log"))
                    .unwrap();
                std::io::Write::write_all(&mut log, line.as_bytes()).unwrap();
            }
        }
    });
    let pid = ws.hub_pid().unwrap();
    send_signal(pid, Signal::SIGKILL);
    assert!(wait_until(Duration::from_secs(10), || !support::alive(pid)));
    ws.start();
    let (_, js) = board(&ws, &rt);
    // a second ahead, so the request is there before the moment it names
    let soon = time::OffsetDateTime::now_utc() + Duration::from_secs(1);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    rt.block_on(pause_projector(&js, &soon));
    let entries_of = |id: &str| create_entries(&ws, id);
    assert!(
        wait_until(Duration::from_secs(10), || entries_of(&unlogged) == 1),
        "the missing entry is written after the restart: {}",
        ws.hub_log()
    );
    // the projector works in revision order: `logged` came after `unlogged`,
    // and a marker created now comes after both
    let marker = create(&ws, &["after the restart"]);
    assert!(wait_until(Duration::from_secs(10), || entries_of(&marker) == 1));
    assert_eq!(entries_of(&first), 1);
    assert_eq!(entries_of(&unlogged), 1);
    assert_eq!(
        entries_of(&logged),
        1,
        "an entry already written is not repeated"
    );
    let events = events(&ws);
    for id in [&first, &unlogged, &logged, &marker] {
        assert_eq!(events.iter().filter(|(_, t)| t == id).count(), 1, "{id}");
    }
}

#[test]
fn revisions_delivered_to_a_hub_that_died_are_projected_after_a_restart() {
    let ws = TestWorkspace::new();
    ws.start();
    let first = create(&ws, &["projected before the freeze"]);
    assert!(wait_until(Duration::from_secs(10), || rpc_count(
        &ws,
        "tasks.create"
    ) == 1));
    let rt = runtime();
    let (tasks, _) = board(&ws, &rt);
    // the hub stops reading; the server still delivers to it
    let pid = ws.hub_pid().unwrap();
    support::freeze(pid);
    let unseen: Vec<String> = rt.block_on(async {
        let mut ids = Vec::new();
        for title in ["delivered to a frozen hub", "also delivered to it"] {
            let new = NewTask {
                title: title.into(),
                ..Default::default()
            };
            ids.push(tasks.create(new, "test").await.unwrap().id);
        }
        let stream = &tasks.store().stream;
        loop {
            let info = stream
                .consumer_info(bones::hub::projector::DURABLE)
                .await
                .unwrap();
            if info.num_ack_pending == 2 {
                break ids;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    send_signal(pid, Signal::SIGKILL);
    assert!(wait_until(Duration::from_secs(10), || !support::alive(pid)));
    ws.start();
    // a revision after the restart: acknowledging it must not pass over
    // the two the dead hub never handled
    let last = create(&ws, &["created after the restart"]);
    let entries_of = |id: &str| create_entries(&ws, id);
    assert!(wait_until(Duration::from_secs(10), || entries_of(&last) == 1));
    let events = events(&ws);
    for id in [&first, &unseen[0], &unseen[1], &last] {
        assert_eq!(
            events.iter().filter(|(_, t)| t == id).count(),
            1,
            "one event for {id}: {events:?}"
        );
        assert_eq!(entries_of(id), 1, "one entry for {id}:\n{}", ws.hub_log());
    }
}
