//! `bones hub start | stop | status | backup | restore | repair | reap`.

mod backup;
mod registry;

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;

use super::Failure;
use crate::hub::{self, Health, StartOptions, StartOutcome, StopOptions, StopOutcome};
use crate::sys::duration;
use crate::sys::error::ErrorKind;
use crate::sys::shown;

#[derive(Debug, Subcommand)]
pub enum HubCommand {
    /// Start the hub (idempotent: succeeds at once when one already runs).
    ///
    /// Without --detach this command *is* the hub: it runs in the foreground
    /// until SIGINT or SIGTERM, then drains within --drain-timeout. With
    /// --detach it starts the hub in a new background session, waits until
    /// it is ready (JetStream answers and the trunk opens), prints one ready
    /// line on stderr and returns. The first start seeds the trunk from the
    /// working-tree content of every git-tracked file.
    Start(StartArgs),
    /// Stop the hub: SIGTERM, a grace period, then SIGKILL.
    ///
    /// Refuses (exit 4) while slots hold live leases, naming them, unless
    /// --force. Succeeds when no hub runs. The hub repository, the
    /// coordination state and the URL files are kept for the next start.
    Stop(StopArgs),
    /// Probe the hub: exit 0 healthy, 1 not running, 3 running but degraded.
    ///
    /// Never starts a hub. Checks that the process is the hub (pid and start
    /// time), that its status endpoint answers, that JetStream answers and
    /// that the trunk opens.
    Status(StatusArgs),
    /// Copy the running hub into DIR: trunk, task board, leases, event streams.
    ///
    /// Writes a git bundle of the trunk repository (every ref), a snapshot
    /// of every JetStream stream with its sequences (so task revisions stay
    /// valid) and manifest.json with versions and a checksum per file. DIR
    /// must not exist or be empty; it is made 0700 and appears only once the
    /// backup is complete. The coordination key is not copied.
    Backup(backup::BackupArgs),
    /// Put a backup back onto this workspace's stopped hub.
    ///
    /// Refuses while the hub runs, and over an existing trunk, coordination
    /// store or slot checkouts unless --force (they are then moved to
    /// .bones/pre-restore-<unix>/). Every checksum is verified and the new
    /// state is built aside before anything is changed. Slot checkouts are
    /// not restored; leases are, and `bones swarm join` makes the checkout.
    Restore(backup::RestoreArgs),
    /// Put back what store damage took, from the records the hub keeps.
    ///
    /// `trunk`: recreate a missing trunk ref at the newest tip its reflog
    /// recorded (hub.git logs every landing); an existing trunk is never
    /// moved. `store`: write lost task records back from the newest event
    /// of each task on tasks-events (never over a record as new as the
    /// event), then clear the damage record; needs the hub running. Both
    /// are safe to run again.
    #[command(subcommand)]
    Repair(RepairCommand),
    /// Stop the hubs whose workspace or state directory is gone.
    ///
    /// Every hub registers itself in a per-user registry
    /// ($XDG_STATE_HOME/bones/hubs, default ~/.local/state/bones/hubs) and
    /// leaves it when it stops. A hub whose .bones/ was deleted under it is
    /// found there and stopped: SIGTERM, --grace, then SIGKILL, and its
    /// nats-server with it. Each process is verified first (your uid, the
    /// start time it registered, a `bones hub start` command line): a pid
    /// now used by another process, another user's process and a hub that
    /// still serves its workspace are never touched. Entries of hubs that
    /// are gone are removed. `bones hub status --all` lists them all.
    Reap(registry::ReapArgs),
}

#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// Recreate a missing trunk ref from its reflog (works with the hub stopped).
    Trunk,
    /// Bring lost task records back from tasks-events (needs the hub running).
    Store,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Run in the background and return once the hub is ready.
    #[arg(long)]
    detach: bool,
    /// Port of the HTTP endpoint (default: the recorded port, else a free one).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    repo_port: Option<u16>,
    /// Port of the coordination server (default: the recorded port, else a free one).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    coord_port: Option<u16>,
    /// Bound on the graceful shutdown, e.g. 30s or 1m.
    #[arg(long, value_name = "D", default_value = "30s", value_parser = duration::parse)]
    drain_timeout: Duration,
    /// How long to wait for the hub to become ready, e.g. 15s.
    #[arg(long, value_name = "D", default_value = "15s", value_parser = duration::parse)]
    ready_timeout: Duration,
    /// Lowest level written to hub.log: debug, info, warn or error
    /// (default: $BONES_HUB_LOG_LEVEL, else info). Errors are always written.
    #[arg(long, value_name = "L", value_parser = ["debug", "info", "warn", "error"], ignore_case = true)]
    log_level: Option<String>,
    /// Internal: set on the background process a detached start spawns.
    #[arg(long, hide = true)]
    detached_child: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Stop even while slots hold live leases.
    #[arg(long)]
    force: bool,
    /// Time between SIGTERM and SIGKILL, e.g. 10s.
    #[arg(long, value_name = "D", default_value = "10s", value_parser = duration::parse)]
    grace: Duration,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bones hub status            this workspace's hub\n  \
    bones hub status --all      every hub you run: serving, orphaned (its .bones/ is gone) or stale\n  \
    bones hub status --all --json | jq '.hubs[] | select(.condition == \"orphaned\")'")]
pub struct StatusArgs {
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Every hub you run, from the per-user registry (exit 3 when one is
    /// degraded or orphaned); works outside a workspace.
    #[arg(long)]
    all: bool,
}

pub fn run(command: HubCommand) -> Result<(), Failure> {
    let cwd = super::current_dir()?;
    match command {
        HubCommand::Start(args) => start(&cwd, args),
        HubCommand::Stop(args) => stop(&cwd, args),
        HubCommand::Status(args) => status(&cwd, args),
        HubCommand::Backup(args) => backup::backup(&cwd, args),
        HubCommand::Restore(args) => backup::restore(&cwd, args),
        HubCommand::Repair(what) => repair(&cwd, what),
        HubCommand::Reap(args) => registry::reap(args),
    }
}

fn start(cwd: &std::path::Path, args: StartArgs) -> Result<(), Failure> {
    let opts = StartOptions {
        detach: args.detach,
        repo_port: args.repo_port,
        coord_port: args.coord_port,
        drain_timeout: args.drain_timeout,
        ready_timeout: args.ready_timeout,
        log_level: args.log_level,
        program: None,
        detached_child: args.detached_child,
    };
    match hub::start(cwd, &opts)? {
        StartOutcome::AlreadyRunning(record) => {
            eprintln!(
                "hub: already running (pid={}) repo={} coord={}",
                record.pid,
                crate::state::ports::repo_url(record.repo_port),
                crate::state::ports::nats_url(record.coord_port)
            );
        }
        StartOutcome::Started { pid, ports } => {
            eprintln!(
                "hub: ready (pid={pid}) repo={} coord={}",
                crate::state::ports::repo_url(ports.repo),
                crate::state::ports::nats_url(ports.coord)
            );
            warn_of_store_damage(cwd);
        }
        StartOutcome::Exited => {}
    }
    Ok(())
}

/// The hub runs over a damaged store (so that it can be repaired); a
/// start says so rather than a plain "ready".
fn warn_of_store_damage(cwd: &std::path::Path) {
    let Ok(ws) = crate::state::workspace::Workspace::discover(cwd) else {
        return;
    };
    let found =
        hub::damage::read_record(&crate::state::Paths::new(&ws).coord_dir).unwrap_or_default();
    for damage in &found {
        eprintln!("hub: store damage: {}", damage.describe());
    }
    if !found.is_empty() {
        eprintln!(
            "hub: recover the task records with `bones hub repair store`; `bones hub status` is degraded until then"
        );
    }
}

fn repair(cwd: &std::path::Path, what: RepairCommand) -> Result<(), Failure> {
    match what {
        RepairCommand::Trunk => match hub::repair::repair_trunk(cwd)? {
            crate::trunk::repo::TrunkRestore::Present(tip) => {
                eprintln!("hub: trunk is at {tip}; nothing to repair");
            }
            crate::trunk::repo::TrunkRestore::Restored(tip) => {
                eprintln!("hub: trunk restored at {tip} from its reflog");
            }
        },
        RepairCommand::Store => {
            let done = hub::repair::repair_store(cwd)?;
            {
                for damage in &done.cleared {
                    eprintln!("hub: damage found: {}", damage.describe());
                }
                eprintln!(
                    "hub: {} task record(s) written back, {} brought up to date, from the last events of {} task(s)",
                    done.restored.len(),
                    done.updated.len(),
                    done.examined
                );
            }
        }
    }
    Ok(())
}

fn stop(cwd: &std::path::Path, args: StopArgs) -> Result<(), Failure> {
    let opts = StopOptions {
        force: args.force,
        grace: args.grace,
    };
    match hub::stop(cwd, &opts)? {
        StopOutcome::NotRunning { cleaned, copy_of } => {
            if let Some((from, pid)) = copy_of {
                eprintln!(
                    "hub: this state directory is a copy of {}; the hub its copied hub.json names (pid {pid}) is that directory's and was left alone",
                    crate::sys::shown::plain(&from.to_string_lossy())
                );
            }
            if cleaned.is_empty() {
                eprintln!("hub: not running");
            } else {
                eprintln!("hub: not running; cleaned up {}", cleaned.join(", "));
            }
        }
        StopOutcome::Stopped { pid, killed } => {
            if killed {
                eprintln!(
                    "hub: stopped (pid={pid}); it ignored SIGTERM for {} and was killed",
                    duration::format(args.grace)
                );
            } else {
                eprintln!("hub: stopped (pid={pid})");
            }
        }
    }
    Ok(())
}

fn status(cwd: &std::path::Path, args: StatusArgs) -> Result<(), Failure> {
    if args.all {
        return registry::status_all(args.json);
    }
    let (paths, health) = hub::status(cwd)?;
    let repo_url = hub::repo_url(cwd);
    let nats_url = hub::nats_url(cwd);
    let (code, value) = match &health {
        Health::NotRunning { copy_of } => (
            Err(Failure::quiet(ErrorKind::NoHub, "no hub is running")),
            json!({
                "running": false,
                "healthy": false,
                "status": "stopped",
                "copy_of": copy_of.as_ref().map(|record| json!({
                    "state_dir": record.state_dir.as_ref().map(|id| &id.path),
                    "pid": record.pid,
                })),
                "state_dir": paths.state_dir.to_string_lossy(),
                "repo_url": repo_url,
                "nats_url": nats_url,
            }),
        ),
        Health::Running {
            record,
            report,
            problem,
        } => {
            let healthy = problem.is_none();
            let code = if healthy {
                Ok(())
            } else {
                Err(Failure::quiet(
                    ErrorKind::Degraded,
                    "the hub runs but is not healthy",
                ))
            };
            (
                code,
                json!({
                    "running": true,
                    "healthy": healthy,
                    "status": if healthy { "ok" } else { "degraded" },
                    "problem": problem,
                    "pid": record.pid,
                    "started_at": record.started_at,
                    "uptime_s": report.as_ref().map(|r| r.uptime_s),
                    "version": record.version,
                    "state_dir": paths.state_dir.to_string_lossy(),
                    "repo_url": repo_url,
                    "nats_url": nats_url,
                    "ports": { "repo": record.repo_port, "coord": record.coord_port },
                    "trunk_tip": report.as_ref().and_then(|r| r.trunk_tip.clone()),
                    "jetstream": report.as_ref().is_some_and(|r| r.jetstream),
                    "parts": {
                        "process": { "ok": true },
                        "http": { "ok": report.is_some() },
                        "repo": report.as_ref().map(|r| json!(r.parts.repo)),
                        "coord": report.as_ref().map(|r| json!(r.parts.coord)),
                        "storage": report.as_ref().map(|r| json!(r.parts.storage)),
                        "store": report.as_ref().map(|r| json!(r.parts.store)),
                    },
                }),
            )
        }
    };
    if args.json {
        super::json::print(&value);
    } else {
        print_status(&health, &value);
    }
    code
}

fn print_status(health: &Health, value: &serde_json::Value) {
    let text = |key: &str| value[key].as_str().unwrap_or("-").to_string();
    // BONES_DIR may name anything: escaped and cut like every echoed path
    let state_dir = shown::path(std::path::Path::new(&text("state_dir")));
    match health {
        Health::NotRunning { copy_of } => {
            println!("hub: not running (state in {state_dir})");
            if let Some(record) = copy_of {
                let from = record
                    .state_dir
                    .as_ref()
                    .map(|id| id.path.to_string_lossy())
                    .unwrap_or_default();
                println!(
                    "this state directory is a copy of {}: its hub.json names that directory's hub (pid {}), not one of this copy",
                    crate::sys::shown::plain(&from),
                    record.pid
                );
            }
            println!("start it with: bones hub start --detach");
        }
        Health::Running {
            record,
            report,
            problem,
        } => {
            let uptime = report
                .as_ref()
                .map(|r| duration::format(Duration::from_secs(r.uptime_s)))
                .unwrap_or_else(|| "?".into());
            println!(
                "hub: {} (pid {}, up {uptime})",
                if problem.is_none() { "ok" } else { "DEGRADED" },
                record.pid
            );
            let part = |name: &str| {
                let p = &value["parts"][name];
                match (p["ok"].as_bool(), p["error"].as_str()) {
                    (Some(true), _) => "ok".to_string(),
                    (_, Some(err)) => format!("FAILED: {}", shown::plain(err)),
                    _ => "unknown".to_string(),
                }
            };
            let tip = report
                .as_ref()
                .and_then(|r| r.trunk_tip.as_deref())
                .map(|t| &t[..t.len().min(12)])
                .unwrap_or("-");
            println!(
                "  repo   {:<28} {} (trunk {tip})",
                text("repo_url"),
                part("repo")
            );
            println!("  coord  {:<28} {}", text("nats_url"), part("coord"));
            println!("  disk   {state_dir:<28} {}", part("storage"));
            println!("  store  {:<28} {}", "streams", part("store"));
            if let Some(problem) = problem {
                println!("  problem: {}", shown::plain(problem));
                println!("  details: {state_dir}/hub.log");
            }
        }
    }
}
