//! Start/stop benchmark for `scripts/bench.sh`: how much slower is a
//! `bones hub start --detach` (and `bones hub stop`) than the bare
//! `nats-server` it supervises?
//!
//! * start: wall time of `bones hub start --detach` on an initialised
//!   workspace whose hub repository is already seeded (a restart), against
//!   spawning `nats-server -js -a 127.0.0.1 -p PORT -sd DIR` until its
//!   JetStream API answers (connect with retry, then `query_account`). DIR
//!   holds a copy of the hub's JetStream store, so both sides restore (and
//!   later shut down) the same streams.
//! * stop: wall time of `bones hub stop`, against SIGTERM to that bare
//!   server until `waitpid` returns.
//!
//! Runs alternate between bones and the anchor (and which goes first), and
//! the medians are compared. One machine-readable line per measure goes to
//! stdout; progress goes to stderr.
//!
//! ```text
//! cargo run --release --example bench_start -- \
//!     --bones target/release/bones --nats "$BONES_NATS_SERVER" \
//!     --workspace /tmp/ws --scratch /tmp/scratch [--runs 7] [--measure start|stop|both]
//! ```

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

struct Args {
    bones: PathBuf,
    nats: PathBuf,
    workspace: PathBuf,
    scratch: PathBuf,
    runs: usize,
    start: bool,
    stop: bool,
}

fn usage() -> &'static str {
    "usage: bench_start --bones PATH --nats PATH --workspace DIR --scratch DIR \
     [--runs N] [--measure start|stop|both]"
}

fn parse_args() -> Result<Args> {
    let mut bones = None;
    let mut nats = None;
    let mut workspace = None;
    let mut scratch = None;
    let mut runs = 7;
    let mut measure = String::from("both");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{}", usage());
            std::process::exit(0);
        }
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value; {}", usage()))?;
        match flag.as_str() {
            "--bones" => bones = Some(PathBuf::from(value)),
            "--nats" => nats = Some(PathBuf::from(value)),
            "--workspace" => workspace = Some(PathBuf::from(value)),
            "--scratch" => scratch = Some(PathBuf::from(value)),
            "--runs" => runs = value.parse().context("--runs takes a number")?,
            "--measure" => measure = value,
            _ => bail!("unknown flag {flag}; {}", usage()),
        }
    }
    let (start, stop) = match measure.as_str() {
        "start" => (true, false),
        "stop" => (false, true),
        "both" => (true, true),
        _ => bail!("--measure takes start, stop or both"),
    };
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(Args {
        bones: bones.context(usage())?,
        nats: nats.context(usage())?,
        workspace: workspace.context(usage())?,
        scratch: scratch.context(usage())?,
        runs,
        start,
        stop,
    })
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("bench_start: {err:#}");
            std::process::exit(2);
        }
    };
    let result = run(&args);
    // whatever happened, leave no hub behind
    let _ = bones(&args, &["hub", "stop", "--force"]);
    if let Err(err) = result {
        eprintln!("bench_start: {err:#}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let anchor_dir = args.scratch.join("anchor-js");
    std::fs::create_dir_all(&anchor_dir)?;
    let pid_file = args.scratch.join("anchor.pid");

    // warm-up (untimed): the hub repository is seeded, the JetStream stores
    // exist, and binaries and libraries are in the page cache
    eprintln!("bench: warm-up");
    bones_start(args)?;
    bones_stop(args)?;
    // the bare server gets a copy of the hub's JetStream store, so both
    // sides restore and shut down the same streams
    let hub_store = args.workspace.join(".bones/coord/jetstream");
    if hub_store.is_dir() && !anchor_dir.join("jetstream").exists() {
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(&hub_store)
            .arg(&anchor_dir)
            .status()?;
        anyhow::ensure!(copied.success(), "cannot copy the hub's JetStream store");
    }
    let (child, _) = anchor_start(args, &runtime, &anchor_dir, &pid_file)?;
    anchor_stop(child, &pid_file)?;

    let mut samples = Samples::default();
    for run in 0..args.runs {
        let bones_first = run % 2 == 0;
        for turn in 0..2 {
            if (turn == 0) == bones_first {
                let start = bones_start(args)?;
                let stop = bones_stop(args)?;
                eprintln!(
                    "bench: run {}/{} bones  start {:>7.1} ms  stop {:>7.1} ms",
                    run + 1,
                    args.runs,
                    ms(start),
                    ms(stop)
                );
                samples.bones_start.push(start);
                samples.bones_stop.push(stop);
            } else {
                let (child, start) = anchor_start(args, &runtime, &anchor_dir, &pid_file)?;
                let stop = anchor_stop(child, &pid_file)?;
                eprintln!(
                    "bench: run {}/{} anchor start {:>7.1} ms  stop {:>7.1} ms",
                    run + 1,
                    args.runs,
                    ms(start),
                    ms(stop)
                );
                samples.anchor_start.push(start);
                samples.anchor_stop.push(stop);
            }
        }
        samples.exec.push(bones(args, &["--version"])?);
    }
    // a start runs the bones executable twice (the CLI, then the hub it
    // spawns), a stop once: what that alone adds to the anchor
    let exec = median(&samples.exec);
    if args.start {
        print_line(
            "start",
            &samples.bones_start,
            &samples.anchor_start,
            2.0 * exec,
        );
    }
    if args.stop {
        print_line("stop", &samples.bones_stop, &samples.anchor_stop, exec);
    }
    Ok(())
}

#[derive(Default)]
struct Samples {
    bones_start: Vec<Duration>,
    bones_stop: Vec<Duration>,
    anchor_start: Vec<Duration>,
    anchor_stop: Vec<Duration>,
    /// `bones --version`: starting and ending the bones executable.
    exec: Vec<Duration>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(samples: &[Duration]) -> f64 {
    let mut v: Vec<f64> = samples.iter().copied().map(ms).collect();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// One line; `floor_ratio` is the ratio bones would have if it did
/// nothing but run its executable (`processes_ms`) around the anchor.
fn print_line(what: &str, bones: &[Duration], anchor: &[Duration], processes_ms: f64) {
    let (b, a) = (median(bones), median(anchor));
    println!(
        "bench {what} ratio={:.2} bones_ms={b:.1} anchor_ms={a:.1} runs={} floor_ratio={:.2} exec_ms={processes_ms:.1}",
        b / a,
        bones.len(),
        (a + processes_ms) / a
    );
}

/// Runs `bones ARGS` in the workspace; returns its wall time.
fn bones(args: &Args, argv: &[&str]) -> Result<Duration> {
    let began = Instant::now();
    let out = Command::new(&args.bones)
        .args(argv)
        .current_dir(&args.workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {}", args.bones.display()))?;
    let took = began.elapsed();
    if !out.status.success() {
        bail!(
            "bones {} failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

fn bones_start(args: &Args) -> Result<Duration> {
    bones(args, &["hub", "start", "--detach"])
}

fn bones_stop(args: &Args) -> Result<Duration> {
    bones(args, &["hub", "stop"])
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Spawns a bare JetStream server and waits until its JetStream API
/// answers; returns the child and the time that took.
fn anchor_start(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    store: &Path,
    pid_file: &Path,
) -> Result<(Child, Duration)> {
    let port = free_port()?;
    let url = format!("nats://127.0.0.1:{port}");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.scratch.join("anchor.log"))?;
    let mut command = Command::new(&args.nats);
    command
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: prctl is async-signal-safe. The anchor dies with this process
    // (spawned from the main thread, which lives as long as the process).
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let began = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {}", args.nats.display()))?;
    let _ = std::fs::write(pid_file, format!("{}\n", child.id()));
    let ready = runtime.block_on(async {
        let deadline = began + Duration::from_secs(15);
        let mut last = String::from("no attempt made");
        while Instant::now() < deadline {
            // polled as the hub polls its own server: a bare connect every
            // millisecond, then the client
            if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            match async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(2))
                .connect(url.as_str())
                .await
            {
                Ok(client) => {
                    let js = async_nats::jetstream::new(client.clone());
                    match tokio::time::timeout(Duration::from_secs(1), js.query_account()).await {
                        Ok(Ok(_)) => return Ok((began.elapsed(), client)),
                        Ok(Err(e)) => last = format!("JetStream: {e}"),
                        Err(_) => last = "JetStream did not answer within 1s".into(),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Err(last)
    });
    match ready {
        Ok((took, client)) => {
            // close the client before the stop is timed, as the hub does
            runtime.block_on(async {
                let _ = client.drain().await;
            });
            Ok((child, took))
        }
        Err(why) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("bare nats-server on port {port} not ready within 15s: {why}")
        }
    }
}

/// SIGTERM to the bare server, until `waitpid` returns.
fn anchor_stop(mut child: Child, pid_file: &Path) -> Result<Duration> {
    let pid = Pid::from_raw(i32::try_from(child.id())?);
    let began = Instant::now();
    kill(pid, Signal::SIGTERM)?;
    child.wait()?;
    let took = began.elapsed();
    let _ = std::fs::remove_file(pid_file);
    Ok(took)
}
