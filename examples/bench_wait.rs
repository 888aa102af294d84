//! `scripts/bench.sh wait`: how soon a waiting `bones tasks claim --next
//! --wait` returns once the task it waits for becomes ready.
//!
//! Each run makes a blocker (claimed by another agent) and a task blocked
//! by it, starts `bones tasks claim --next --wait` as a process, waits for
//! its "waiting" line on stderr, then closes the blocker through the
//! library and times from just before the close to the moment the claimed
//! id arrives on the process's stdout. That covers the close's own round
//! trip, the server's republished change, the claimer's wake-up, its read
//! of the board and its claim.
//!
//! Usage: bench_wait WORKSPACE BONES_BIN [RUNS] (a hub must be running for
//! WORKSPACE). Prints one line: `bench wait ms=<median> max_ms=<max> runs=<n>`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use bones::state::Paths;
use bones::state::workspace::Workspace;
use bones::tasks::{Board, NewTask};

#[path = "common/mod.rs"]
#[allow(dead_code)]
mod common;
use common::{Error, connect, median};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bench_wait WORKSPACE BONES_BIN [RUNS]");
        std::process::exit(2);
    }
    let workspace = PathBuf::from(&args[1]);
    let bones_bin = PathBuf::from(&args[2]);
    let runs: usize = args.get(3).map_or(Ok(21), |s| s.parse())?;
    let paths = Paths::new(&Workspace::discover(&workspace)?);
    let board = Board::open(&connect(&paths).await?).await?;

    let mut times = Vec::with_capacity(runs);
    for run in 0..runs {
        let blocker = board
            .create(
                NewTask {
                    title: format!("blocker {run}"),
                    ..Default::default()
                },
                "bench",
            )
            .await?;
        board.claim(&blocker.id, "busy").await?;
        let next = board
            .create(
                NewTask {
                    title: format!("after blocker {run}"),
                    blocked_by: vec![blocker.id.clone()],
                    ..Default::default()
                },
                "bench",
            )
            .await?;
        let mut waiter = Command::new(&bones_bin)
            .args(["tasks", "claim", "--next", "--wait", "30s"])
            .current_dir(&workspace)
            .env("BONES_AGENT_ID", "waiter")
            .env("BONES_NO_AUTOSTART", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = waiter.stderr.take().ok_or("no stderr")?;
        let mut stdout = BufReader::new(waiter.stdout.take().ok_or("no stdout")?);
        // the waiter has read the board and found nothing: it waits now
        let mut stderr = BufReader::new(stderr);
        let (said, mut stderr) = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            stderr.read_line(&mut line).map(|_| (line, stderr))
        })
        .await??;
        if !said.contains("waiting") {
            return Err(format!("the waiting claim said {said:?}").into());
        }
        let started = Instant::now();
        board.close(&blocker.id, "busy", None, false).await?;
        let got = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            stdout.read_line(&mut line).map(|_| line)
        })
        .await??;
        let took = started.elapsed().as_secs_f64() * 1e3;
        let status = waiter.wait()?;
        if got.trim() != next.id {
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut rest)?;
            return Err(format!(
                "the waiting claim returned {got:?} ({status}), not {}: {rest}",
                next.id
            )
            .into());
        }
        board.close(&next.id, "waiter", None, false).await?;
        times.push(took);
    }
    let max = times.iter().copied().fold(0.0, f64::max);
    let ms = median(&mut times);
    eprintln!(
        "bench: wait: median {ms:.1} ms, slowest {max:.1} ms over {runs} runs (target <= 100 ms)"
    );
    println!("bench wait ms={ms:.1} max_ms={max:.1} runs={runs}");
    Ok(())
}
