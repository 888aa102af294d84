//! `bones swarm join | cwd | renew | commit | close | status`.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::Failure;
use crate::state::Paths;
use crate::swarm::{self, JoinOptions, Swarm, SwarmError};
use crate::sys::duration;
use crate::sys::shown::plain;

#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Take a slot: an isolated checkout of trunk held by a lease.
    ///
    /// Makes a git worktree of the hub repository at .bones/swarm/NAME/wt on
    /// branch slot/NAME from the trunk tip, and a lease in the
    /// bones-swarm-sessions bucket. Prints the checkout path on stdout.
    /// Joining a slot you hold again is a no-op; joining one another agent
    /// holds fails (exit 6) naming the holder. An agent is named by --agent,
    /// else $BONES_AGENT_ID, else a generated id (printed on stderr).
    Join(JoinArgs),
    /// Print the slot's checkout path (and renew its lease).
    Cwd(SlotArgs),
    /// Renew the slot's lease. Every slot verb does this too.
    Renew(SlotArgs),
    /// Commit everything changed in the slot and land it on trunk.
    ///
    /// Honours .gitignore. Landing replays the slot's commits onto the trunk
    /// tip and moves trunk with a compare-and-swap, so trunk stays linear
    /// and never gets a merge commit. On a conflict (exit 5) trunk is
    /// untouched, the commit stays on slot/NAME and the conflicting paths
    /// are listed. After landing, the checkout shows trunk, everyone's work
    /// included. Prints the landed trunk commit on stdout.
    Commit(CommitArgs),
    /// Bring the slot onto the trunk tip, e.g. after a conflict.
    ///
    /// Commits trunk lacks are saved under refs/bones/rescued/NAME/<unix>
    /// and their change is replayed into the checkout as uncommitted edits,
    /// with conflict markers where trunk changed the same lines. Resolve
    /// them, then `bones swarm commit`. Refuses while there are uncommitted
    /// changes.
    Sync(SlotArgs),
    /// Release the slot: save uncommitted work, remove the checkout, free the lease.
    ///
    /// Uncommitted work is first saved to refs/bones/rescued/NAME/<unix>.
    /// --result success (the default) refuses while the slot has commits
    /// trunk lacks; --result abandon closes anyway and keeps them on
    /// slot/NAME. The tasks the slot holds are released (open again), or
    /// closed with --close-tasks; the ones it touched are named on stderr.
    Close(CloseArgs),
    /// Every slot: state and lease age, agent, tasks held, uncommitted files,
    /// commits ahead of and behind trunk, and its own last landed commit.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The slot to take: [a-z0-9][a-z0-9._-]{0,62}.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with = "auto",
        required_unless_present = "auto"
    )]
    slot: Option<String>,
    /// Take a generated slot named agent-<id> after the agent.
    #[arg(long)]
    auto: bool,
    /// The task this slot works on: claimed for the slot (refused, nothing
    /// made, when it does not exist, is closed or another holds it; a claim
    /// the joining agent holds passes to the slot).
    #[arg(long, value_name = "ID")]
    task: Option<String>,
    /// Who holds the slot (default: $BONES_AGENT_ID, else generated).
    #[arg(long, value_name = "ID")]
    agent: Option<String>,
    /// Lease time to live (at least 1s): without --pid, the hub reaps the slot this long
    /// after the last renewal (every slot verb and `bones swarm renew` renew).
    #[arg(long, value_name = "D", default_value = "1h", value_parser = duration::parse)]
    ttl: Duration,
    /// The agent's own process on this machine (from the agent's shell:
    /// --pid $PPID). The slot then lives exactly as long as that process,
    /// however long the agent is silent, and is reaped within seconds once
    /// it is gone; the TTL no longer applies.
    #[arg(long, value_name = "PID", env = "BONES_AGENT_PID")]
    pid: Option<u32>,
    /// Bring the slot's newest rescued work (refs/bones/rescued/NAME/*,
    /// saved when it was reaped or closed) back into the new checkout as
    /// uncommitted edits.
    #[arg(long)]
    restore: bool,
    /// Print one JSON object instead of the path.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct SlotArgs {
    /// The slot (default: $BONES_SLOT, else the checkout you are in).
    #[arg(long, value_name = "NAME")]
    slot: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Act on a live slot another agent holds (the caller is
    /// $BONES_AGENT_ID; without it, any slot is yours to act on).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// The commit message.
    #[arg(short, long, value_name = "MSG")]
    message: String,
    #[command(flatten)]
    slot: SlotArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CloseResult {
    Success,
    Abandon,
}

#[derive(Debug, Args)]
pub struct CloseArgs {
    /// success: all work landed; abandon: give up, keep unlanded commits on the branch.
    #[arg(long, value_enum, default_value = "success")]
    result: CloseResult,
    /// Close the tasks the slot holds instead of releasing them (they are done).
    #[arg(long)]
    close_tasks: bool,
    #[command(flatten)]
    slot: SlotArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON array.
    #[arg(long)]
    json: bool,
}

pub fn run(command: SwarmCommand) -> Result<(), Failure> {
    let (paths, runtime) = super::workspace_and_runtime()?;
    runtime.block_on(async move {
        match command {
            SwarmCommand::Join(args) => join(paths, args).await,
            SwarmCommand::Cwd(args) => cwd(paths, args).await,
            SwarmCommand::Renew(args) => renew(paths, args).await,
            SwarmCommand::Commit(args) => commit(paths, args).await,
            SwarmCommand::Sync(args) => sync(paths, args).await,
            SwarmCommand::Close(args) => close(paths, args).await,
            SwarmCommand::Status(args) => status(paths, args).await,
        }
    })
}

/// Connects to the hub, starting it first when none runs.
async fn connect(paths: Paths) -> Result<Swarm, Failure> {
    super::autostart(&paths)?;
    Ok(Swarm::connect(paths).await?)
}

/// The slot a verb acts on, validated before the hub is touched, and the
/// connection acting as `$BONES_AGENT_ID`.
async fn slot_and_hub(paths: Paths, args: &SlotArgs) -> Result<(String, Swarm), Failure> {
    let slot = swarm::current_slot(&paths, args.slot.clone())?;
    let agent = swarm::agent_from_env()?;
    let hub = connect(paths).await?;
    Ok((slot, hub.acting_as(agent, args.force)))
}

async fn join(paths: Paths, args: JoinArgs) -> Result<(), Failure> {
    // validate what the user typed before touching the hub
    if let Some(slot) = &args.slot {
        crate::sys::name::validate_slot(slot)?;
    }
    if let Some(task) = &args.task {
        crate::sys::name::validate_task_id(task)?;
    }
    match &args.agent {
        Some(agent) => crate::sys::name::validate_agent(agent)?,
        None => {
            swarm::agent_from_env()?;
        }
    }
    let hub = connect(paths).await?;
    let joined = hub
        .join(JoinOptions {
            slot: args.slot,
            agent: args.agent,
            task: args.task,
            ttl: Some(args.ttl),
            restore: args.restore,
            pid: args.pid,
        })
        .await?;
    eprintln!(
        "swarm: slot {} {} (branch {}, lease {}s)",
        joined.slot,
        joined.how.replace('_', " "),
        joined.branch,
        joined.ttl_s
    );
    if joined.generated_agent && joined.how == "created" {
        eprintln!(
            "swarm: agent id {} (export {}={} to join this slot again)",
            joined.agent_id,
            swarm::AGENT_ENV,
            joined.agent_id
        );
    }
    for saved in &joined.rescued {
        eprintln!("swarm: earlier work in this slot was saved to {saved}");
    }
    if let Some(restored) = &joined.restored {
        eprintln!("swarm: restored the work saved at {restored} as uncommitted edits");
    }
    if !joined.conflicts.is_empty() {
        eprintln!(
            "swarm: resolve the conflict markers in {}, then `bones swarm commit`",
            joined.conflicts.join(", ")
        );
    }
    if args.json {
        super::json::print(joined);
    } else {
        println!("{}", joined.path.display());
    }
    Ok(())
}

async fn cwd(paths: Paths, args: SlotArgs) -> Result<(), Failure> {
    let (slot, hub) = slot_and_hub(paths, &args).await?;
    let path = hub.checkout(&slot).await?;
    if args.json {
        super::json::print(json!({ "slot": slot, "path": path }));
    } else {
        println!("{}", path.display());
    }
    Ok(())
}

async fn renew(paths: Paths, args: SlotArgs) -> Result<(), Failure> {
    let (slot, hub) = slot_and_hub(paths, &args).await?;
    let lease = hub.renew(&slot).await?;
    if args.json {
        super::json::print(lease);
    } else {
        eprintln!("swarm: renewed slot {slot} until {}s from now", lease.ttl_s);
    }
    Ok(())
}

async fn commit(paths: Paths, args: CommitArgs) -> Result<(), Failure> {
    swarm::validate_message(&args.message)?;
    let (slot, hub) = slot_and_hub(paths, &args.slot).await?;
    let outcome = match hub.commit(&slot, &args.message).await {
        Err(SwarmError::NothingToCommit(_)) => {
            // nothing changed is an answer, not a failure
            eprintln!("swarm: slot {slot}: nothing to commit");
            if args.slot.json {
                super::json::print(json!({ "landed": [] }));
            }
            return Ok(());
        }
        other => other?,
    };
    eprintln!(
        "swarm: slot {slot}: landed {} commit(s); trunk is {}{}",
        outcome.landed.len(),
        &outcome.trunk[..12],
        if outcome.synced {
            ""
        } else {
            " (the checkout was left as it is: files changed during the commit)"
        }
    );
    if args.slot.json {
        super::json::print(outcome);
    } else {
        println!("{}", outcome.trunk);
    }
    Ok(())
}

async fn sync(paths: Paths, args: SlotArgs) -> Result<(), Failure> {
    let (slot, hub) = slot_and_hub(paths, &args).await?;
    let synced = hub.sync(&slot).await?;
    if let Some(saved) = &synced.saved {
        eprintln!(
            "swarm: slot {slot}: its commits were saved to {saved} and replayed as uncommitted edits"
        );
    }
    if synced.conflicts.is_empty() {
        eprintln!("swarm: slot {slot} is on trunk {}", &synced.trunk[..12]);
    } else {
        eprintln!(
            "swarm: slot {slot}: resolve the conflict markers in {}, then `bones swarm commit`",
            synced.conflicts.join(", ")
        );
    }
    if args.json {
        super::json::print(synced);
    }
    Ok(())
}

async fn close(paths: Paths, args: CloseArgs) -> Result<(), Failure> {
    let (slot, hub) = slot_and_hub(paths, &args.slot).await?;
    let closed = hub
        .close(&slot, args.result == CloseResult::Abandon, args.close_tasks)
        .await?;
    match &closed.rescue_ref {
        Some(r) => eprintln!("swarm: slot {slot} closed; uncommitted work saved to {r}"),
        None => eprintln!("swarm: slot {slot} closed"),
    }
    if !closed.released.is_empty() {
        eprintln!(
            "swarm: released task(s) {} (open again)",
            closed.released.join(", ")
        );
    }
    if !closed.closed_tasks.is_empty() {
        eprintln!("swarm: closed task(s) {}", closed.closed_tasks.join(", "));
    }
    if args.slot.json {
        super::json::print(closed);
    }
    Ok(())
}

async fn status(paths: Paths, args: StatusArgs) -> Result<(), Failure> {
    let hub = connect(paths).await?;
    let slots = hub.status().await?;
    if args.json {
        super::json::print(slots);
    } else if slots.is_empty() {
        println!("no slots (take one with `bones swarm join --slot NAME`)");
    } else {
        print_status(&slots);
    }
    Ok(())
}

fn print_status(slots: &[swarm::SlotStatus]) {
    // lease records and commit messages come from any token holder
    let rows: Vec<[String; 7]> = slots
        .iter()
        .map(|s| {
            let age = match (s.lease_age_s, s.ttl_s) {
                (Some(age), Some(ttl)) => format!("{age}s/{ttl}s"),
                _ => "-".to_string(),
            };
            let tasks = if s.tasks.is_empty() {
                "-".to_string()
            } else {
                plain(&s.tasks.join(",")).into_owned()
            };
            let count = |n: Option<usize>| n.map_or("-".to_string(), |n| n.to_string());
            let commit = match (&s.last_commit, &s.last_commit_summary) {
                (Some(id), Some(summary)) => {
                    format!("{} {}", &id[..id.len().min(8)], plain(summary))
                }
                _ => "-".to_string(),
            };
            [
                s.slot.clone(),
                format!("{} {age}", s.state),
                plain(s.agent_id.as_deref().unwrap_or("-")).into_owned(),
                tasks,
                count(s.uncommitted),
                format!("{}/{}", count(s.ahead), count(s.behind)),
                commit,
            ]
        })
        .collect();
    let header = [
        "SLOT",
        "STATE LEASE",
        "AGENT",
        "TASKS",
        "CHANGED",
        "AHEAD/BEHIND",
        "LAST LANDED",
    ];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..6).map(width).collect();
    let line = |cells: [&str; 7]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate().take(6) {
            out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
        }
        out.push_str(cells[6]);
        println!("{}", out.trim_end());
    };
    line(header);
    for (s, row) in slots.iter().zip(&rows) {
        line([
            &row[0], &row[1], &row[2], &row[3], &row[4], &row[5], &row[6],
        ]);
        if s.state != "active"
            && let Some(r) = &s.rescue_ref
        {
            println!(
                "  rescued work: {r} (`bones swarm join --slot {} --restore`)",
                s.slot
            );
        }
    }
}
