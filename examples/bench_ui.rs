//! `scripts/bench.sh ui`: what the live view costs the hub, and how soon a
//! landing reaches a page.
//!
//! Sets up 64 slots and 5,000 tasks, logs in as `bones ui` does and holds
//! one event stream open (as a page does), then lands 10 commits a second
//! through the library, round-robin over 8 of the slots. Each landing's
//! latency is from the time the lander stamped on it when it acknowledged
//! the landing (the landing event's `ts`, taken just before the reply is
//! sent) to its `landing` event arriving on the stream, both read from the
//! same machine's clock. The lander announces a landing only after its
//! reply, so none should arrive before its stamp; any that does counts as
//! 0 and in `before_ack`.
//! CPU is the hub process's user + system time over the landing phase, as
//! a share of one core (the open phase starts once the page's picture is
//! loaded: it measures updates, not the first read of 5,000 tasks);
//! `base_pct` is the same phase with no page open (the lander's own work),
//! so the view's cost is `view_pct`, the difference.
//!
//! Usage: bench_ui WORKSPACE [SECONDS] (a hub must be running for
//! WORKSPACE). Prints one line: `bench ui latency_ms=<median> cpu_pct=<%>
//! base_pct=<%> landings=<n> view_pct=<%> before_ack=<n>`.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use bones::state::Paths;
use bones::state::workspace::Workspace;
use bones::swarm::{JoinOptions, Swarm};
use bones::tasks::{Board, NewTask};

#[path = "common/mod.rs"]
#[allow(dead_code)]
mod common;
use common::{Error, connect, cpu_seconds, median};

const SLOTS: usize = 64;
const TASKS: usize = 5_000;
const LANDING_SLOTS: usize = 8;
const PER_SECOND: u32 = 10;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("usage: bench_ui WORKSPACE [SECONDS]");
        std::process::exit(2);
    }
    let workspace = PathBuf::from(&args[1]);
    let seconds: u64 = args.get(2).map_or(Ok(10), |s| s.parse())?;
    let paths = Paths::new(&Workspace::discover(&workspace)?);
    let js = connect(&paths).await?;

    eprintln!("bench: ui: joining {SLOTS} slots and creating {TASKS} tasks");
    let swarm = Swarm::connect(paths.clone()).await?;
    for i in 0..SLOTS {
        swarm
            .join(JoinOptions {
                slot: Some(format!("s{i}")),
                agent: Some(format!("agent-{i}")),
                ..Default::default()
            })
            .await?;
    }
    let board = Board::open(&js).await?;
    for i in 0..TASKS {
        let new = NewTask {
            title: format!("task {i}"),
            ..Default::default()
        };
        board.create(new, "bench").await?;
    }

    // the hub's projector and watchers still digest 5,000 new tasks and
    // 64 joins for a while: not the lander's work
    settle(&paths).await;
    let base = land_for(&swarm, &paths, "closed", seconds, None).await?;
    let port = repo_port(&paths)?;
    let cookie = login(&paths, port)?;
    let (arrivals_tx, arrivals) = mpsc::channel();
    let (loaded_tx, loaded) = mpsc::channel();
    let stream = follow_events(port, &cookie, arrivals_tx, loaded_tx)?;
    // the open phase measures updates: it starts once the page has the
    // whole picture (the first read of 5,000 tasks is not an update)
    loaded
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| "the page's picture was not loaded within 60 s")?;
    settle(&paths).await;
    let measured = land_for(&swarm, &paths, "open", seconds, Some(&arrivals)).await?;
    drop(stream);

    let raw = measured.latencies_ms;
    if raw.is_empty() {
        return Err("no landing event reached the stream".into());
    }
    let count = raw.len();
    let before_ack = raw.iter().filter(|ms| **ms < 0.0).count();
    let mut latencies: Vec<f64> = raw.iter().map(|ms| ms.max(0.0)).collect();
    let slowest = latencies.iter().copied().fold(f64::MIN, f64::max);
    let latency = median(&mut latencies);
    let view_pct = measured.cpu_pct - base.cpu_pct;
    eprintln!(
        "bench: ui: {count} landings seen on the stream, median {latency:.1} ms, slowest {slowest:.1} ms after the lander's acknowledgement ({before_ack} before it); hub CPU {:.2}% of a core with a page open, {:.2}% without, the view's share {view_pct:.2}% (targets: latency <= 100 ms, CPU <= 5%)",
        measured.cpu_pct, base.cpu_pct
    );
    println!(
        "bench ui latency_ms={latency:.1} cpu_pct={:.2} base_pct={:.2} landings={count} view_pct={view_pct:.2} before_ack={before_ack}",
        measured.cpu_pct, base.cpu_pct
    );
    Ok(())
}

struct Phase {
    cpu_pct: f64,
    latencies_ms: Vec<f64>,
}

/// Lands `PER_SECOND` commits a second for `seconds`; with `arrivals`,
/// matches each to its event on the stream.
async fn land_for(
    swarm: &Swarm,
    paths: &Paths,
    phase: &str,
    seconds: u64,
    arrivals: Option<&mpsc::Receiver<Arrival>>,
) -> Result<Phase, Error> {
    let total = seconds as usize * PER_SECOND as usize;
    eprintln!("bench: ui: landing for {seconds} s with the page {phase}");
    let mut acked = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / PER_SECOND);
    let before = hub_cpu(paths);
    let started = Instant::now();
    for n in 0..total {
        tick.tick().await;
        let slot = format!("s{}", n % LANDING_SLOTS);
        let checkout = swarm.checkout(&slot).await?;
        // a new file each landing: always something to commit. Each phase
        // fills a directory of its own, so the trees a landing rewrites are
        // as big in both phases (the second does not pay for the first's)
        let dir = checkout.join(format!("bench-{phase}"));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{n}.txt")), format!("{n}\n"))?;
        let outcome = swarm
            .commit(&slot, &format!("bench landing {phase} {n}"))
            .await?;
        if let Some(commit) = outcome.landed.last() {
            acked.insert(commit.clone());
        }
    }
    let cpu = hub_cpu(paths) - before;
    let wall = started.elapsed().as_secs_f64();
    eprintln!("bench: ui: landed with the page {phase}");
    let mut latencies_ms = Vec::new();
    if let Some(arrivals) = arrivals {
        let deadline = Instant::now() + Duration::from_secs(10);
        while latencies_ms.len() < acked.len() && Instant::now() < deadline {
            let Ok(arrival) = arrivals.recv_timeout(Duration::from_secs(1)) else {
                continue;
            };
            if acked.contains(&arrival.commit) {
                latencies_ms.push((arrival.at - arrival.acked).as_seconds_f64() * 1e3);
            }
        }
    }
    Ok(Phase {
        cpu_pct: cpu / wall * 100.0,
        latencies_ms,
    })
}

/// Waits until the hub is idle: less than 1% of a core over half a second
/// (at most 60 s), so a phase measures only its own work.
async fn settle(paths: &Paths) {
    const WINDOW: Duration = Duration::from_millis(500);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let before = hub_cpu(paths);
        tokio::time::sleep(WINDOW).await;
        if hub_cpu(paths) - before < WINDOW.as_secs_f64() / 100.0 {
            return;
        }
    }
    eprintln!("bench: ui: the hub was still busy after 60 s; measuring anyway");
}

fn hub_cpu(paths: &Paths) -> f64 {
    let pid = std::fs::read_to_string(&paths.hub_pid).unwrap_or_default();
    cpu_seconds(pid.trim())
}

fn repo_port(paths: &Paths) -> Result<u16, Error> {
    let url = std::fs::read_to_string(&paths.repo_url_file)?;
    bones::state::ports::parse_loopback_url(url.trim(), "http")
        .ok_or_else(|| "no repo port recorded".into())
}

/// Redeems a one-time secret as the page does; the session cookie.
fn login(paths: &Paths, port: u16) -> Result<String, Error> {
    let login = bones::hub::ui::access::issue_login(paths)?;
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        stream,
        "GET /ui/login?secret={} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        login.secret
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    answer
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
        .ok_or_else(|| format!("login refused: {answer}").into())
}

/// A landing event as the stream delivered it.
struct Arrival {
    commit: String,
    /// When the lander acknowledged it (its stamp).
    acked: OffsetDateTime,
    /// When it was read off the stream.
    at: OffsetDateTime,
}

/// Opens `/ui/events` and sends each landing with its arrival time, and
/// `()` on `loaded` once a snapshot had every part of the picture read;
/// the thread ends with the connection.
fn follow_events(
    port: u16,
    cookie: &str,
    arrivals: mpsc::Sender<Arrival>,
    loaded: mpsc::Sender<()>,
) -> Result<TcpStream, Error> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    write!(
        stream,
        "GET /ui/events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n"
    )?;
    let reader = BufReader::new(stream.try_clone()?);
    std::thread::spawn(move || {
        let mut event = String::new();
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_string();
                continue;
            }
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            if event == "snapshot" {
                let snapshot: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
                let parts = snapshot["loaded"].as_array().cloned().unwrap_or_default();
                if bones::view::model::SOURCES
                    .iter()
                    .all(|part| parts.iter().any(|p| p == part))
                {
                    let _ = loaded.send(());
                }
                continue;
            }
            if !data.contains("\"kind\":\"landing\"") {
                continue;
            }
            let at = OffsetDateTime::now_utc();
            let Ok(serde_json::Value::Array(frame)) = serde_json::from_str(data) else {
                continue;
            };
            for numbered in frame {
                let delta = &numbered["delta"];
                if delta["kind"] != "landing" {
                    continue;
                }
                let (Some(commit), Some(Ok(acked))) = (
                    delta["commit"].as_str(),
                    delta["ts"]
                        .as_str()
                        .map(|ts| OffsetDateTime::parse(ts, &Rfc3339)),
                ) else {
                    continue;
                };
                let arrival = Arrival {
                    commit: commit.to_string(),
                    acked,
                    at,
                };
                if arrivals.send(arrival).is_err() {
                    return;
                }
            }
        }
    });
    Ok(stream)
}
