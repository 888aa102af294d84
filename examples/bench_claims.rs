//! `scripts/bench.sh claims`: claim throughput of the bones task board
//! against a bare async-nats KV compare-and-swap loop on the same server,
//! and the wall time of one `bones tasks claim --next` process against
//! `git rev-parse HEAD`.
//!
//! Usage: bench_claims WORKSPACE BONES_BIN [TASKS] [CLAIMERS] [ROUNDS]
//! (a hub must be running for WORKSPACE). Prints one line:
//! `bench claims ratio=<r> cli_ratio=<c> ...`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bones::state::Paths;
use bones::state::workspace::Workspace;
use bones::tasks::{Board, NewTask};

#[path = "common/mod.rs"]
mod common;
use common::{Cpu, Error, connect, median};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bench_claims WORKSPACE BONES_BIN [TASKS] [CLAIMERS] [ROUNDS]");
        std::process::exit(2);
    }
    let workspace = PathBuf::from(&args[1]);
    let bones_bin = PathBuf::from(&args[2]);
    let tasks: usize = args.get(3).map_or(Ok(300), |s| s.parse())?;
    let claimers: usize = args.get(4).map_or(Ok(8), |s| s.parse())?;
    let rounds: usize = args.get(5).map_or(Ok(3), |s| s.parse())?;
    let paths = Paths::new(&Workspace::discover(&workspace)?);

    // first, on a small board: the cost of one CLI claim
    let (cli_ms, git_ms) = cli_times(&paths, &workspace, &bones_bin, 21).await?;
    let mut lib_rates = Vec::new();
    let mut anchor_rates = Vec::new();
    for round in 0..rounds {
        // alternate which goes first so warm-up favours neither
        if round % 2 == 0 {
            lib_rates.push(bones_round(&paths, round, tasks, claimers).await?);
            anchor_rates.push(anchor_round(&paths, round, tasks, claimers).await?);
        } else {
            anchor_rates.push(anchor_round(&paths, round, tasks, claimers).await?);
            lib_rates.push(bones_round(&paths, round, tasks, claimers).await?);
        }
        eprintln!(
            "bench claims: round {round}: bones {:.0}/s, bare KV {:.0}/s",
            lib_rates[round], anchor_rates[round]
        );
    }
    let lib = median(&mut lib_rates);
    let anchor = median(&mut anchor_rates);
    println!(
        "bench claims ratio={:.2} cli_ratio={:.2} lib_claims_per_s={lib:.0} anchor_claims_per_s={anchor:.0} cli_ms={cli_ms:.2} git_ms={git_ms:.2} tasks={tasks} claimers={claimers}",
        lib / anchor,
        cli_ms / git_ms
    );
    Ok(())
}

/// Claims per second through the bones library: `claimers` concurrent
/// claimers, each with its own connection, until the board is empty.
async fn bones_round(
    paths: &Paths,
    round: usize,
    tasks: usize,
    claimers: usize,
) -> Result<f64, Error> {
    let board = Board::open(&connect(paths).await?).await?;
    for i in 0..tasks {
        let new = NewTask {
            title: format!("bench round {round} task {i}"),
            ..Default::default()
        };
        board.create(new, "bench").await?;
    }
    // the hub turns every creation into an event; start the clock once it
    // has, as the anchor starts on a server with nothing else to do
    projector_settled(&board).await?;
    let cpu = Cpu::now(paths);
    let started = Instant::now();
    let mut workers = Vec::new();
    for c in 0..claimers {
        let paths = paths.clone();
        workers.push(tokio::spawn(async move {
            let board = Board::open(&connect(&paths).await?).await?;
            let mut claimer = board.claimer(&format!("bench-{round}-{c}"));
            let mut claimed = 0usize;
            while claimer.next().await?.is_some() {
                claimed += 1;
            }
            Ok::<(usize, usize), Error>((claimed, claimer.refused()))
        }));
    }
    let (mut total, mut refused) = (0, 0);
    for worker in workers {
        let (claimed, lost) = worker.await??;
        total += claimed;
        refused += lost;
    }
    let elapsed = started.elapsed();
    assert_eq!(total, tasks, "bones claimed {total} of {tasks}");
    // the claims' events are the hub's to publish after the claimers are
    // done; reported, and waited for so the next round starts quiet
    let settle = Instant::now();
    projector_settled(&board).await?;
    let (server, hub, mine) = Cpu::now(paths).per_op_us(cpu, tasks);
    eprintln!(
        "bench claims: round {round}: bones: events settled {:.0} ms after the last claim; \
         CPU per claim: server {server:.0} us, hub {hub:.0} us, claimers {mine:.0} us; \
         {refused} swaps lost a race",
        settle.elapsed().as_secs_f64() * 1000.0
    );
    // every round starts from an empty board, as the anchor's does
    board.store().stream.purge().await?;
    Ok(tasks as f64 / elapsed.as_secs_f64())
}

/// The anchor: the same claim-the-oldest-open loop written directly against
/// a KV bucket, with the same compare-and-swap.
async fn anchor_round(
    paths: &Paths,
    round: usize,
    tasks: usize,
    claimers: usize,
) -> Result<f64, Error> {
    let js = connect(paths).await?;
    let bucket = format!("bench-anchor-{round}");
    let _ = js.delete_key_value(&bucket).await;
    let store = js
        .create_key_value(kv::Config {
            bucket: bucket.clone(),
            history: 64,
            ..Default::default()
        })
        .await?;
    let keys: Vec<String> = (0..tasks).map(|i| format!("k{i:06}")).collect();
    for key in &keys {
        store.put(key, r#"{"status":"open"}"#.into()).await?;
    }
    let cpu = Cpu::now(paths);
    let started = Instant::now();
    let mut workers = Vec::new();
    for c in 0..claimers {
        let paths = paths.clone();
        let keys = keys.clone();
        let bucket = bucket.clone();
        workers.push(tokio::spawn(async move {
            let js = connect(&paths).await?;
            let store = js.get_key_value(&bucket).await?;
            let mine = format!(r#"{{"status":"claimed","by":"anchor-{c}"}}"#);
            let mut claimed = 0usize;
            for key in &keys {
                let Some(entry) = store.entry(key).await? else {
                    continue;
                };
                if !entry.value.starts_with(br#"{"status":"open""#) {
                    continue;
                }
                match store.update(key, mine.clone().into(), entry.revision).await {
                    Ok(_) => claimed += 1,
                    Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => {}
                    Err(err) => return Err(Error::from(err)),
                }
            }
            Ok::<usize, Error>(claimed)
        }));
    }
    let mut total = 0;
    for worker in workers {
        total += worker.await??;
    }
    let elapsed = started.elapsed();
    let (server, hub, mine) = Cpu::now(paths).per_op_us(cpu, tasks);
    eprintln!(
        "bench claims: round {round}: anchor: CPU per claim: server {server:.0} us, hub {hub:.0} us, claimers {mine:.0} us"
    );
    let _ = js.delete_key_value(&bucket).await;
    assert_eq!(total, tasks, "anchor claimed {total} of {tasks}");
    Ok(tasks as f64 / elapsed.as_secs_f64())
}

/// Median wall times of one `bones tasks claim --next` process and one
/// `git rev-parse HEAD`, alternating.
async fn cli_times(
    paths: &Paths,
    workspace: &Path,
    bones_bin: &Path,
    runs: usize,
) -> Result<(f64, f64), Error> {
    let board = Board::open(&connect(paths).await?).await?;
    for i in 0..runs {
        let new = NewTask {
            title: format!("cli bench task {i}"),
            ..Default::default()
        };
        board.create(new, "bench").await?;
    }
    let time = |program: &Path, args: &[&str]| -> Result<Duration, Error> {
        let started = Instant::now();
        let status = Command::new(program)
            .args(args)
            .current_dir(workspace)
            .env("BONES_AGENT_ID", "bench-cli")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        let elapsed = started.elapsed();
        if !status.success() {
            return Err(format!("{} {args:?} failed: {status}", program.display()).into());
        }
        Ok(elapsed)
    };
    let mut cli = Vec::new();
    let mut git = Vec::new();
    for _ in 0..runs {
        cli.push(time(bones_bin, &["tasks", "claim", "--next"])?.as_secs_f64() * 1000.0);
        git.push(time(Path::new("git"), &["rev-parse", "HEAD"])?.as_secs_f64() * 1000.0);
    }
    board.store().stream.purge().await?;
    Ok((median(&mut cli), median(&mut git)))
}

/// Waits until the hub's task projector has acknowledged every revision of
/// the board, i.e. published its event.
async fn projector_settled(board: &Board) -> Result<(), Error> {
    let stream = &board.store().stream;
    loop {
        let info = stream.consumer_info(bones::hub::projector::DURABLE).await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
