//! `bones hub status --all` and `bones hub reap`: every hub the user runs,
//! from the per-user registry (see `hub::registry`).

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use crate::cli::Failure;
use crate::cli::json;
use crate::hub::Health;
use crate::hub::registry::{self, Condition, ReapOptions, Reaped, Registered};
use crate::sys::error::ErrorKind;
use crate::sys::{duration, shown};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bones hub reap --dry-run    show what would be stopped and removed\n  \
    bones hub reap              stop orphaned hubs, forget stale entries\n  \
    bones hub reap --json | jq '.hubs[] | select(.action == \"stopped\")'")]
pub struct ReapArgs {
    /// Say what would be stopped and removed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Time each orphaned hub gets between SIGTERM and SIGKILL, e.g. 10s.
    #[arg(long, value_name = "D", default_value = "10s", value_parser = duration::parse)]
    grace: Duration,
}

/// `hub status --all`: exit 0 when every serving hub is healthy and none
/// is orphaned, 3 otherwise (stale entries do not count).
pub fn status_all(as_json: bool) -> Result<(), Failure> {
    let (hubs, unreadable) = registry::survey()?;
    let troubled = hubs.iter().any(|hub| match hub.condition {
        Condition::Serving => !is_healthy(hub),
        Condition::Orphaned(_) => true,
        Condition::Stale(_) => false,
    });
    if as_json {
        let hubs: Vec<Value> = hubs.iter().map(hub_json).collect();
        json::print(json!({ "hubs": hubs }));
    } else {
        print_table(&hubs);
        if hubs.iter().any(|h| h.condition != Condition::Serving) {
            eprintln!(
                "hub: stop the orphaned hubs and forget the stale entries with `bones hub reap` (try --dry-run first)"
            );
        }
    }
    for file in unreadable {
        eprintln!(
            "hub: warning: {} is not a registry entry; left alone",
            shown::path(&file)
        );
    }
    if troubled {
        return Err(Failure::quiet(
            ErrorKind::Degraded,
            "a hub you run is degraded or orphaned",
        ));
    }
    Ok(())
}

/// `hub reap`: exit 0 when every orphan was stopped, 1 when one survived.
pub fn reap(args: ReapArgs) -> Result<(), Failure> {
    let opts = ReapOptions {
        dry_run: args.dry_run,
        grace: args.grace,
    };
    let done = registry::reap(&opts)?;
    let failed = done.iter().any(|(_, r)| matches!(r, Reaped::Failed(_)));
    if args.json {
        let hubs: Vec<Value> = done
            .iter()
            .map(|(hub, reaped)| {
                let mut value = hub_json(hub);
                value["action"] = json!(action(reaped));
                if let Reaped::Stopped { servers, .. } = reaped {
                    value["servers_stopped"] = json!(servers);
                }
                if let Reaped::Failed(why) = reaped {
                    value["error"] = json!(why);
                }
                value
            })
            .collect();
        json::print(json!({ "dry_run": args.dry_run, "hubs": hubs }));
    } else {
        print_reaped(&done);
    }
    if failed {
        return Err(Failure::quiet(
            ErrorKind::Internal,
            "an orphaned hub survived SIGKILL",
        ));
    }
    Ok(())
}

fn action(reaped: &Reaped) -> &'static str {
    match reaped {
        Reaped::Kept => "kept",
        Reaped::Stopped { killed: false, .. } => "stopped",
        Reaped::Stopped { killed: true, .. } => "killed",
        Reaped::Failed(_) => "failed",
        Reaped::Removed => "removed",
        Reaped::WouldStop => "would_stop",
        Reaped::WouldRemove => "would_remove",
    }
}

fn print_reaped(done: &[(Registered, Reaped)]) {
    if done.iter().all(|(_, r)| *r == Reaped::Kept) {
        println!("hub reap: nothing to reap ({} hub(s) serving)", done.len());
        return;
    }
    for (hub, reaped) in done {
        let pid = hub.entry.hub.pid;
        let workspace = shown::path(&hub.entry.workspace);
        let why = hub.condition.reason().map(shown::plain).unwrap_or_default();
        let line = match reaped {
            Reaped::Kept => {
                format!("left pid {pid} ({workspace}) running: it serves its workspace")
            }
            Reaped::Stopped { killed, servers } => {
                let how = if *killed {
                    "killed (it ignored SIGTERM)"
                } else {
                    "stopped"
                };
                let servers = if servers.is_empty() {
                    String::new()
                } else {
                    format!("; and its nats-server {servers:?}")
                };
                format!("{how} pid {pid} ({workspace}): {why}{servers}")
            }
            Reaped::Failed(err) => format!("could not stop pid {pid} ({workspace}): {err}"),
            Reaped::Removed => format!("removed the stale entry of pid {pid}: {why}"),
            Reaped::WouldStop => format!("would stop pid {pid} ({workspace}): {why}"),
            Reaped::WouldRemove => format!("would remove the stale entry of pid {pid}: {why}"),
        };
        println!("hub reap: {line}");
    }
}

fn is_healthy(hub: &Registered) -> bool {
    matches!(&hub.health, Some(Health::Running { problem: None, .. }))
}

/// `ok`, `degraded` or `-` (not probed: a stale entry).
fn health_word(hub: &Registered) -> &'static str {
    match &hub.health {
        Some(Health::Running { problem: None, .. }) => "ok",
        Some(_) => "degraded",
        None => "-",
    }
}

/// One hub of `--all` and of `reap --json`.
fn hub_json(hub: &Registered) -> Value {
    let record = &hub.entry.hub;
    let (status, problem, uptime_s) = match &hub.health {
        Some(Health::Running {
            problem, report, ..
        }) => (
            Some(health_word(hub)),
            problem.clone(),
            report.as_ref().map(|r| r.uptime_s),
        ),
        _ => (None, None, None),
    };
    json!({
        "condition": hub.condition.as_str(),
        "reason": hub.condition.reason(),
        "pid": record.pid,
        "workspace": hub.entry.workspace.to_string_lossy(),
        "state_dir": record.state_dir.as_ref().map(|id| id.path.to_string_lossy()),
        "started_at": record.started_at,
        "version": record.version,
        "ports": { "repo": record.repo_port, "coord": record.coord_port },
        "healthy": hub.health.as_ref().map(|_| is_healthy(hub)),
        "status": status,
        "problem": problem,
        "uptime_s": uptime_s,
        "entry": hub.file.to_string_lossy(),
    })
}

fn print_table(hubs: &[Registered]) {
    if hubs.is_empty() {
        println!("hub: no hubs registered for this user");
        return;
    }
    println!(
        "{:<8} {:<9} {:<8} {:<6} {:<6} WORKSPACE",
        "PID", "STATE", "HEALTH", "REPO", "COORD"
    );
    for hub in hubs {
        let record = &hub.entry.hub;
        let mut line = format!(
            "{:<8} {:<9} {:<8} {:<6} {:<6} {}",
            record.pid,
            hub.condition.as_str(),
            health_word(hub),
            record.repo_port,
            record.coord_port,
            shown::path(&hub.entry.workspace)
        );
        if let Some(why) = hub.condition.reason() {
            line.push_str(&format!("  ({})", shown::plain(why)));
        } else if let Some(Health::Running {
            problem: Some(problem),
            ..
        }) = &hub.health
        {
            line.push_str(&format!("  ({})", shown::plain(problem)));
        }
        println!("{line}");
    }
}
