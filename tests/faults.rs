//! The fault suite: agents commit through slots and claim tasks while the
//! hub or its coordination server is killed at random moments. Whatever was
//! acknowledged must survive, no task may be claimed twice, and nothing may
//! be left running.
//!
//! `BONES_FAULT_KILLS` sets how many times the hub is killed (5 by default;
//! `scripts/faults.sh` runs 20) and `BONES_FAULT_SEED` replays the kill
//! timings of an earlier run (each run prints its seed).

mod support;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bones::tasks::{Board, NewTask, Status, Task};
use support::{Impostor, Signal, TestWorkspace, runtime, send_signal, stderr, stdout, wait_until};

const AGENTS: usize = 8;
const TASKS: usize = 400;

/// Everything the agents were told succeeded.
#[derive(Default)]
struct Acked {
    /// (agent, file) for every file of an acknowledged commit.
    files: Mutex<Vec<(usize, String)>>,
    /// Every file an agent wrote, acknowledged or not.
    written: Mutex<Vec<(usize, String)>>,
    /// (slot, task id) for every acknowledged claim.
    claims: Mutex<Vec<(String, String)>>,
    commits: AtomicUsize,
    /// Conflicts reported to agents that only ever add their own files.
    conflicts: Mutex<Vec<String>>,
    /// The last failure each agent saw, for the report when they stall.
    last_failure: Mutex<HashMap<usize, String>>,
}

/// Kill timings: a small xorshift generator, seeded from the clock unless
/// `BONES_FAULT_SEED` replays a run.
struct Timing(u64);

impl Timing {
    fn new() -> Timing {
        let seed = std::env::var("BONES_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("faults: seed {seed} (BONES_FAULT_SEED={seed} replays these timings)");
        Timing(seed | 1)
    }

    /// A pause between `min` and `max` milliseconds.
    fn pause(&mut self, min: u64, max: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(min + self.0 % (max - min))
    }
}

fn kills() -> usize {
    std::env::var("BONES_FAULT_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

fn with_board<T>(ws: &TestWorkspace, f: impl AsyncFnOnce(&Board) -> T) -> T {
    runtime().block_on(async {
        let board = Board::open(&ws.jetstream().await).await.unwrap();
        f(&board).await
    })
}

fn create_tasks(ws: &TestWorkspace, n: usize) {
    with_board(ws, async |board| {
        for i in 0..n {
            let new = NewTask {
                title: format!("fault task {i}"),
                ..Default::default()
            };
            board.create(new, "faults").await.unwrap();
        }
    });
}

fn slot_name(agent: usize) -> String {
    format!("a{agent}")
}

/// One agent: writes a new file, commits it, claims a task, again and
/// again until told to stop. Failures while the hub is down are expected;
/// the agent tries again, and a file whose commit failed goes into the
/// next one.
fn agent(ws: &TestWorkspace, n: usize, wt: &Path, acked: &Acked, stop: &AtomicBool) {
    let mut pending: Vec<String> = Vec::new();
    let mut seq = 0;
    let mut claims_left = true;
    while !stop.load(Ordering::SeqCst) {
        seq += 1;
        let file = format!("{}/f{seq:05}.txt", slot_name(n));
        fs::create_dir_all(wt.join(slot_name(n))).unwrap();
        fs::write(wt.join(&file), format!("{n} {seq}\n")).unwrap();
        acked.written.lock().unwrap().push((n, file.clone()));
        pending.push(file);
        let out = ws
            .command_in(wt, &["swarm", "commit", "-m", &format!("agent {n} #{seq}")])
            .output()
            .unwrap();
        match out.status.code() {
            Some(0) => {
                acked
                    .files
                    .lock()
                    .unwrap()
                    .extend(pending.drain(..).map(|f| (n, f)));
                acked.commits.fetch_add(1, Ordering::SeqCst);
            }
            Some(5) => {
                let why = stderr(&out);
                acked
                    .conflicts
                    .lock()
                    .unwrap()
                    .push(format!("agent {n}: {why}"));
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let why = format!("commit: {}", stderr(&out).trim());
                acked.last_failure.lock().unwrap().insert(n, why);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if claims_left {
            let out = ws
                .command_in(wt, &["tasks", "claim", "--next"])
                .output()
                .unwrap();
            match out.status.code() {
                Some(0) => acked
                    .claims
                    .lock()
                    .unwrap()
                    .push((slot_name(n), stdout(&out).trim().to_string())),
                Some(7) => claims_left = false,
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// Commits whatever an agent left uncommitted, retrying while the hub
/// settles; true once nothing is waiting.
fn flush(ws: &TestWorkspace, wt: &Path) -> bool {
    wait_until(Duration::from_secs(60), || {
        let out = ws
            .command_in(wt, &["swarm", "commit", "-m", "final"])
            .output()
            .unwrap();
        out.status.success() || stderr(&out).contains("nothing to commit")
    })
}

struct Outcome {
    acked_commits: usize,
    acked_claims: usize,
    lost: Vec<String>,
    double_claims: Vec<String>,
    /// Task events without exactly one `rpc` entry in hub.log, and entries
    /// without an event.
    log_mismatches: Vec<String>,
    orphans: Vec<u32>,
}

/// Runs the agents while `fault` is applied `kills` times, then checks
/// every promise and stops the hub.
fn run_under_faults(kills: usize, mut fault: impl FnMut(&TestWorkspace, &mut Timing)) -> Outcome {
    let ws = TestWorkspace::new();
    ws.start();
    create_tasks(&ws, TASKS);
    let slots: Vec<PathBuf> = (0..AGENTS)
        .map(|n| {
            let slot = slot_name(n);
            let agent = format!("agent-{n}");
            let out = ws.ok(&["swarm", "join", "--slot", &slot, "--agent", &agent]);
            PathBuf::from(stdout(&out).trim())
        })
        .collect();
    let acked = Acked::default();
    let stop = AtomicBool::new(false);
    let mut timing = Timing::new();
    std::thread::scope(|scope| {
        for (n, wt) in slots.iter().enumerate() {
            let (ws, acked, stop) = (&ws, &acked, &stop);
            scope.spawn(move || agent(ws, n, wt, acked, stop));
        }
        for _ in 0..kills {
            std::thread::sleep(timing.pause(200, 1500));
            // a failed check in the fault must end the test, not leave the
            // agents looping while the scope waits for them
            let faulted =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fault(&ws, &mut timing)));
            if let Err(panic) = faulted {
                stop.store(true, Ordering::SeqCst);
                std::panic::resume_unwind(panic);
            }
        }
        // the agents must get work through after the last fault, too
        let after = acked.commits.load(Ordering::SeqCst);
        let moving = wait_until(Duration::from_secs(60), || {
            acked.commits.load(Ordering::SeqCst) >= after + AGENTS
        });
        stop.store(true, Ordering::SeqCst);
        assert!(
            moving,
            "no commits landed after the last fault; last failures: {:#?}\nhub.log:\n{}",
            acked.last_failure.lock().unwrap(),
            ws.hub_log()
        );
    });

    let conflicts = acked.conflicts.lock().unwrap().clone();
    assert!(
        conflicts.is_empty(),
        "conflicts between agents that never touch the same file: {conflicts:?}\nhub.log:\n{}",
        ws.hub_log()
    );
    // every acknowledged commit is on trunk as the agents left it
    let trunk_files = || -> BTreeSet<String> {
        ws.hub_git(&["ls-tree", "-r", "--name-only", "trunk"])
            .lines()
            .map(str::to_string)
            .collect()
    };
    let trunk = trunk_files();
    let mut lost: Vec<String> = acked
        .files
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, f)| !trunk.contains(f))
        .map(|(_, f)| format!("{f} (acknowledged)"))
        .collect();
    // and every file an agent wrote reaches trunk once its last commit lands
    for wt in &slots {
        assert!(flush(&ws, wt), "a final commit never landed");
    }
    let trunk = trunk_files();
    lost.extend(
        acked
            .written
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, f)| !trunk.contains(f))
            .map(|(_, f)| format!("{f} (written)")),
    );
    let acked_files = acked.files.lock().unwrap().len();
    assert!(acked_files > 0, "no commit was ever acknowledged");

    // claims: each acknowledged once, and held by the one it was told to
    let claims = acked.claims.lock().unwrap().clone();
    let mut holders: HashMap<&str, Vec<&str>> = HashMap::new();
    for (slot, id) in &claims {
        holders.entry(id).or_default().push(slot);
    }
    let mut double_claims: Vec<String> = holders
        .iter()
        .filter(|(_, slots)| slots.len() > 1)
        .map(|(id, slots)| format!("{id} acknowledged to {slots:?}"))
        .collect();
    let tasks: Vec<Task> = with_board(&ws, async |board| board.list().await.unwrap().0);
    for task in &tasks {
        if task.claim_epoch > 1 {
            double_claims.push(format!("{} claimed {} times", task.id, task.claim_epoch));
        }
        if let Some(slots) = holders.get(task.id.as_str()) {
            assert_eq!(task.status, Status::Claimed, "{} lost its claim", task.id);
            assert_eq!(task.claimed_by.as_deref(), Some(slots[0]), "{}", task.id);
        }
    }

    let log_mismatches = rpc_entries_match_events(&ws);

    // no checkout lost: each is still there (no lease expired)
    for (n, wt) in slots.iter().enumerate() {
        let rescued = ws.hub_git(&[
            "for-each-ref",
            "--format=%(refname)",
            &format!("refs/bones/rescued/{}/", slot_name(n)),
        ]);
        assert!(
            wt.is_dir() || !rescued.is_empty(),
            "slot {} was removed without a rescue ref",
            slot_name(n)
        );
    }

    ws.ok(&["hub", "stop", "--force"]);
    let _ = wait_until(Duration::from_secs(10), || ws.processes().is_empty());
    let orphans = ws.processes();
    let acked_commits = acked.commits.load(Ordering::SeqCst);
    Outcome {
        acked_commits,
        acked_claims: claims.len(),
        lost,
        double_claims,
        log_mismatches,
        orphans,
    }
}

/// A task and a revision of its record.
type Revision = (String, u64);

/// Every revision of a task record in the bucket's stream (the bucket keeps
/// them all in these tests: fewer than 64 per task), as (task, revision).
async fn record_revisions(js: &async_nats::jetstream::Context, board: &Board) -> Vec<Revision> {
    support::stream_messages(js, &board.store().stream)
        .await
        .iter()
        .filter(|message| !bones::tasks::board::is_deletion(message))
        .map(|message| {
            let key = bones::tasks::board::key_of(&message.subject).to_string();
            (key, message.info().unwrap().stream_sequence)
        })
        .collect()
}

/// Once the hub's projector has caught up: every revision of a task record
/// has its event on `tasks-events`, every event has exactly one `rpc` entry
/// in hub.log, and every entry of a task event has its event. Returns what
/// does not match.
fn rpc_entries_match_events(ws: &TestWorkspace) -> Vec<String> {
    let (revisions, events): (Vec<Revision>, Vec<Revision>) = runtime().block_on(async {
        let js = ws.jetstream().await;
        let board = Board::open(&js).await.unwrap();
        support::projector_caught_up(&js).await;
        let events = support::task_events(&js)
            .await
            .iter()
            .map(|event| {
                (
                    event["task"].as_str().unwrap().to_string(),
                    event["revision"].as_u64().unwrap(),
                )
            })
            .collect();
        (record_revisions(&js, &board).await, events)
    });
    let mut entries: HashMap<(String, u64), usize> = HashMap::new();
    for line in ws.hub_log().lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let (Some("rpc"), Some(task), Some(revision)) = (
            entry["event"].as_str(),
            entry["task"].as_str(),
            entry["revision"].as_u64(),
        ) {
            *entries.entry((task.to_string(), revision)).or_default() += 1;
        }
    }
    let mut mismatches = Vec::new();
    let published: std::collections::HashSet<&(String, u64)> = events.iter().collect();
    for key in &revisions {
        if !published.contains(key) {
            mismatches.push(format!("revision {}:{} has no event", key.0, key.1));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for key in &events {
        if !seen.insert(key.clone()) {
            mismatches.push(format!("event {}:{} published twice", key.0, key.1));
        }
        match entries.get(key).copied().unwrap_or(0) {
            1 => {}
            n => mismatches.push(format!("event {}:{} has {n} log entries", key.0, key.1)),
        }
    }
    for key in entries.keys() {
        if !seen.contains(key) {
            mismatches.push(format!("log entry {}:{} has no event", key.0, key.1));
        }
    }
    mismatches
}

fn report(name: &str, kills: usize, outcome: &Outcome) {
    report_with(name, kills, outcome, "");
}

/// [`report`] with `extra` (` key=value` pairs) before the scenario's name.
fn report_with(name: &str, kills: usize, outcome: &Outcome, extra: &str) {
    // written past the test harness's capture, so that CI logs and
    // scripts/faults.sh show it for passing runs too
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "faults: kills={kills} acked_commits={} lost={} double_claims={} orphans={} acked_claims={} log_mismatches={}{extra} scenario={name}",
        outcome.acked_commits,
        outcome.lost.len(),
        outcome.double_claims.len(),
        outcome.orphans.len(),
        outcome.acked_claims,
        outcome.log_mismatches.len()
    );
    assert!(outcome.lost.is_empty(), "lost files: {:?}", outcome.lost);
    assert!(
        outcome.double_claims.is_empty(),
        "double claims: {:?}",
        outcome.double_claims
    );
    assert!(
        outcome.orphans.is_empty(),
        "left running: {:?}",
        outcome.orphans
    );
    assert!(
        outcome.log_mismatches.is_empty(),
        "task events and hub.log disagree: {:?}",
        outcome.log_mismatches
    );
}

#[test]
fn hub_killed_at_random_moments_loses_nothing_acknowledged() {
    let kills = kills();
    let outcome = run_under_faults(kills, |ws, _| {
        let pid = ws.hub_pid().expect("the hub runs between faults");
        send_signal(pid, Signal::SIGKILL);
        assert!(wait_until(Duration::from_secs(10), || !support::alive(pid)));
        ws.start();
    });
    report("hub-kill", kills, &outcome);
}

#[test]
fn coordination_server_killed_alone_loses_nothing_acknowledged() {
    let kills = kills().min(3);
    let outcome = run_under_faults(kills, |ws, _| {
        let pid = ws.nats_pid().expect("the coordination server runs");
        send_signal(pid, Signal::SIGKILL);
        // the hub restarts it (same port, same store) and says so
        assert!(
            wait_until(Duration::from_secs(30), || {
                ws.nats_pid().is_some_and(|p| p != pid) && ws.status().0 == 0
            }),
            "the hub did not bring its coordination server back:\n{}",
            ws.hub_log()
        );
    });
    report("coord-kill", kills, &outcome);
}

/// The coordination server is killed while another user (`nobody`) races
/// for its port, wins it, and holds it for a while with a listener that
/// answers like a NATS server. No client, the hub's or the agents', may
/// ever answer it: `captured` counts the `CONNECT` lines it received.
#[test]
fn coordination_server_killed_while_another_user_races_for_its_port() {
    let kills = kills().min(3);
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    if Impostor::race(probe.local_addr().unwrap().port()).is_none() {
        return;
    }
    let mut captured = Vec::new();
    let outcome = run_under_faults(kills, |ws, timing| {
        let mut impostor = Impostor::race(ws.coord_port()).expect("it ran above");
        let pid = ws.nats_pid().expect("the coordination server runs");
        send_signal(pid, Signal::SIGKILL);
        assert!(
            wait_until(Duration::from_secs(10), || impostor.holds_port()),
            "the other user never got the port"
        );
        // how long the other user keeps the port is part of the fault
        std::thread::sleep(timing.pause(100, 1500));
        impostor.stop();
        captured.extend(impostor.connects());
        assert!(
            wait_until(Duration::from_secs(30), || {
                ws.nats_pid().is_some_and(|p| p != pid) && ws.status().0 == 0
            }),
            "the hub did not get its port back:\n{}",
            ws.hub_log()
        );
    });
    let extra = format!(" captured={}", captured.len());
    report_with("coord-kill-port-race", kills, &outcome, &extra);
    assert!(captured.is_empty(), "answers captured: {captured:?}");
}

#[test]
fn a_hub_frozen_past_the_stop_grace_is_killed_and_restarts_with_everything() {
    let outcome = run_under_faults(1, |ws, _| {
        let hub = ws.hub_pid().expect("the hub runs");
        let nats = ws.nats_pid().expect("the coordination server runs");
        // what ran for the workspace before the stop; the agents, looping
        // meanwhile, may start a new hub once this one is gone (autostart),
        // which is theirs and no leftover
        let before = ws.processes();
        support::freeze(hub);
        let out = ws.ok(&["hub", "stop", "--force", "--grace", "300ms"]);
        assert!(stderr(&out).contains("killed"), "{}", stderr(&out));
        assert!(!support::alive(hub));
        assert!(wait_until(Duration::from_secs(10), || !support::alive(
            nats
        )));
        let left: Vec<u32> = before.into_iter().filter(|p| support::alive(*p)).collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        ws.start();
    });
    report("hub-freeze", 1, &outcome);
}

/// A small tmpfs mounted on a directory, unmounted (lazily, so the hub's
/// open files do not hold it) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// None when this machine does not let the test mount one.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "faults: skipped: cannot mount a tmpfs here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem of `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path
}

#[test]
fn a_full_disk_fails_writes_clearly_keeps_reads_and_resumes_once_freed() {
    let ws = TestWorkspace::bare_dir();
    fs::write(ws.root.join("README.md"), "# disk\n").unwrap();
    ws.git(&["init", "-q", "-b", "main"]);
    ws.git(&["add", "."]);
    ws.git(&["commit", "-qm", "init"]);
    let Some(_disk) = Tmpfs::mount(&ws.state_dir(), "48m") else {
        return;
    };
    ws.ok(&["up"]);
    ws.start();
    let first = stdout(&ws.ok(&["tasks", "create", "before the disk filled"]))
        .trim()
        .to_string();
    let out = ws.ok(&["swarm", "join", "--slot", "s", "--agent", "agent-s"]);
    let wt = PathBuf::from(stdout(&out).trim());
    fs::write(wt.join("work.txt"), "written before the disk filled\n").unwrap();

    let filler = fill(&ws.state_dir());
    // a write may still fit in a page the store already has; the next fail
    let body = "x".repeat(32 * 1024);
    let mut acked = vec![first.clone()];
    let mut refused = None;
    for i in 0..20 {
        let out = ws.run(&[
            "tasks",
            "create",
            &format!("on a full disk {i}"),
            "--body",
            &body,
        ]);
        if out.status.success() {
            acked.push(stdout(&out).trim().to_string());
        } else {
            refused = Some(out);
            break;
        }
    }
    let refused = refused.expect("writes kept succeeding on a full disk");
    assert_eq!(refused.status.code(), Some(1));
    let why = stderr(&refused);
    assert!(why.lines().count() <= 2, "{why}");
    assert!(
        why.contains("is full") && why.contains("free some space"),
        "{why}"
    );
    assert!(!why.contains("panicked"), "{why}");

    let out = ws.run(&["swarm", "commit", "--slot", "s", "-m", "on a full disk"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("is full"), "{}", stderr(&out));

    // the hub stays up, says what is wrong, and serves reads
    let (code, status) = ws.status();
    assert_eq!(code, 3, "{status}");
    assert_eq!(status["parts"]["storage"]["ok"], false, "{status}");
    let listed = stdout(&ws.ok(&["tasks", "list", "--json"]));
    assert!(listed.contains(&first), "{listed}");
    ws.ok(&["swarm", "status"]);
    ws.ok(&["logs", "--hub", "--last", "5"]);

    // space comes back: so do writes, with nothing acknowledged lost
    fs::remove_file(&filler).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || ws.status().0 == 0),
        "the hub did not recover: {}\n{}",
        ws.status().1,
        ws.hub_log()
    );
    assert!(ws.hub_log().contains("restarting the coordination server"));
    let after = stdout(&ws.ok(&["tasks", "create", "after the disk was freed"]))
        .trim()
        .to_string();
    acked.push(after);
    let listed = stdout(&ws.ok(&["tasks", "list", "--json"]));
    for id in &acked {
        assert!(listed.contains(id.as_str()), "{id} lost: {listed}");
    }
    ws.ok(&[
        "swarm",
        "commit",
        "--slot",
        "s",
        "-m",
        "after the disk was freed",
    ]);
    let files = ws.hub_git(&["ls-tree", "-r", "--name-only", "trunk"]);
    assert!(files.lines().any(|f| f == "work.txt"), "{files}");
    ws.ok(&["hub", "stop", "--force"]);
}
