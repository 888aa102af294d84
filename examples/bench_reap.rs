//! `scripts/bench.sh reap`: how soon the hub reaps a slot once its lease
//! expires.
//!
//! Each run writes a lease with a one-second TTL through the library and
//! nothing else: no verb, no renewal. The lease's expiry is its
//! `last_renewed + ttl_s` (whole seconds, as the lease records it); the run
//! then follows hub.log and takes the moment the slot's "reaped stale slot"
//! entry appears. The time between covers the watcher's wake-up, its
//! compare-and-swap delete, the slot's retirement and the log write.
//!
//! Usage: bench_reap WORKSPACE [RUNS] (a hub must be running for
//! WORKSPACE). Prints one line: `bench reap latency_ms=<median>
//! max_ms=<max> runs=<n>`.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bones::lease::{self, Lease};
use bones::state::Paths;
use bones::state::workspace::Workspace;
use time::OffsetDateTime;

#[path = "common/mod.rs"]
#[allow(dead_code)]
mod common;
use common::{Error, connect, median};

/// How long one run waits for its reap before giving up.
const GIVE_UP: Duration = Duration::from_secs(30);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        eprintln!("usage: bench_reap WORKSPACE [RUNS]");
        std::process::exit(2);
    }
    let workspace = PathBuf::from(&args[1]);
    let runs: usize = args.get(2).map_or(Ok(9), |s| s.parse())?;
    let paths = Paths::new(&Workspace::discover(&workspace)?);
    let js = connect(&paths).await?;

    let mut times = Vec::with_capacity(runs);
    for run in 0..runs {
        let slot = format!("reap-{run}");
        let mut log = std::fs::File::open(&paths.hub_log)?;
        log.seek(SeekFrom::End(0))?;
        let held = Lease::new(&slot, "bench", None, Duration::from_secs(1));
        let expiry = held.expires_at().ok_or("the lease has no expiry")?;
        lease::put(&js, &held).await?;
        let wanted = format!("reaped stale slot {slot} ");
        let started = Instant::now();
        let mut seen = String::new();
        let reaped_at = loop {
            log.read_to_string(&mut seen)?;
            if seen.contains(&wanted) {
                break OffsetDateTime::now_utc();
            }
            if started.elapsed() > GIVE_UP {
                return Err(format!("slot {slot} was not reaped within {GIVE_UP:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        times.push((reaped_at - expiry).as_seconds_f64() * 1e3);
    }
    let max = times.iter().copied().fold(f64::MIN, f64::max);
    let ms = median(&mut times);
    eprintln!(
        "bench: reap: median {ms:.1} ms, slowest {max:.1} ms from expiry to reap over {runs} runs (target <= 1000 ms)"
    );
    println!("bench reap latency_ms={ms:.1} max_ms={max:.1} runs={runs}");
    Ok(())
}
