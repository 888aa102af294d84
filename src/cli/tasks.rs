//! `bones tasks create | list | show | update | claim | release | close | ready`.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand, ValueEnum};

use super::Failure;
use crate::coord;
use crate::oplog::{EventKind, HubLog, LogEntry, LogLevel};
use crate::state::Paths;
use crate::swarm;
use crate::sys::duration;
use crate::sys::error::ErrorKind;
use crate::sys::shown::plain;
use crate::tasks::record;
use crate::tasks::{Board, NewTask, Status, Task, TaskError, Update};

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Create a task; prints its id.
    Create(CreateArgs),
    /// List tasks, oldest first.
    List(ListArgs),
    /// Show one task.
    Show(ShowArgs),
    /// Edit a task's title, body, parent, labels or blockers.
    Update(UpdateArgs),
    /// Claim a task (or the next ready one with --next); prints its id.
    ///
    /// A compare-and-swap on the task's record: of any number of racing
    /// claimers exactly one wins. A task another holds is refused (exit 6)
    /// naming the holder; claiming your own claim again succeeds. --next
    /// takes the highest priority, then oldest, ready task (--label L: only
    /// those labelled L); with no ready task: exit 7, or with --wait [D],
    /// wait for one (woken by the board's changes, not by polling). Claims belong to the slot you are
    /// in (--slot, $BONES_SLOT, or the checkout you run in), else to
    /// $BONES_AGENT_ID, else to this workspace's agent id.
    Claim(ClaimArgs),
    /// Give a claim back (the task becomes open again).
    Release(ReleaseArgs),
    /// Close a task (releasing its claim).
    Close(CloseArgs),
    /// Open tasks whose blockers are closed and whose parent is not.
    Ready(JsonArgs),
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// What to do, in one line.
    title: String,
    /// Details (at most 64 KiB).
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the details from a file (- for stdin).
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// The task this one is part of.
    #[arg(long, value_name = "ID")]
    parent: Option<String>,
    /// A task that must be closed before this one is ready (repeatable).
    #[arg(long = "blocked-by", value_name = "ID")]
    blocked_by: Vec<String>,
    /// A label (repeatable).
    #[arg(long = "label", value_name = "L")]
    labels: Vec<String>,
    /// Claim order: higher is claimed first, then older (-1000 to 1000; default 0).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    priority: i32,
    #[command(flatten)]
    out: JsonArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StatusFilter {
    Open,
    Claimed,
    Closed,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only tasks in this state.
    #[arg(long, value_enum)]
    status: Option<StatusFilter>,
    /// Only tasks you hold.
    #[arg(long)]
    mine: bool,
    /// Only tasks with this label.
    #[arg(long, value_name = "L")]
    label: Option<String>,
    #[command(flatten)]
    who: WhoArgs,
    #[command(flatten)]
    out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct WhoArgs {
    /// Act as this slot (default: $BONES_SLOT, else the checkout you are in).
    #[arg(long, value_name = "NAME")]
    slot: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    id: String,
    #[command(flatten)]
    out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    id: String,
    #[arg(long)]
    title: Option<String>,
    #[arg(long)]
    body: Option<String>,
    /// Set the parent task.
    #[arg(long, value_name = "ID", conflicts_with = "no_parent")]
    parent: Option<String>,
    /// Remove the parent.
    #[arg(long)]
    no_parent: bool,
    #[arg(long = "add-label", value_name = "L")]
    add_labels: Vec<String>,
    #[arg(long = "remove-label", value_name = "L")]
    remove_labels: Vec<String>,
    /// Add a blocker (repeatable).
    #[arg(long = "blocked-by", value_name = "ID")]
    add_blockers: Vec<String>,
    /// Remove a blocker (repeatable).
    #[arg(long = "unblock", value_name = "ID")]
    remove_blockers: Vec<String>,
    /// Set the priority (higher is claimed first).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    priority: Option<i32>,
    #[command(flatten)]
    who: WhoArgs,
    #[command(flatten)]
    out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// The task to claim.
    #[arg(required_unless_present = "next", conflicts_with = "next")]
    id: Option<String>,
    /// Claim the next ready task: highest priority, then oldest.
    #[arg(long)]
    next: bool,
    /// With --next: only tasks with this label.
    #[arg(long, value_name = "L", requires = "next")]
    label: Option<String>,
    /// With --next: when no task is ready, wait until one can be claimed
    /// (woken by the board's changes), at most D (e.g. 30s, 10m; no value:
    /// no limit). Exit 7 when the wait runs out.
    #[arg(
        long,
        value_name = "D",
        requires = "next",
        num_args = 0..=1,
        value_parser = duration::parse
    )]
    wait: Option<Option<std::time::Duration>>,
    #[command(flatten)]
    who: WhoArgs,
    #[command(flatten)]
    out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    id: String,
    /// Release a claim someone else holds.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    who: WhoArgs,
    #[command(flatten)]
    out: JsonArgs,
}

#[derive(Debug, Args)]
pub struct CloseArgs {
    id: String,
    /// Why (done, duplicate, wontfix, ...).
    #[arg(long)]
    reason: Option<String>,
    /// Close a task someone else holds.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    who: WhoArgs,
    #[command(flatten)]
    out: JsonArgs,
}

pub fn run(command: TasksCommand) -> Result<(), Failure> {
    let (paths, runtime) = super::workspace_and_runtime()?;
    let paths = &paths;
    runtime.block_on(async move {
        match command {
            TasksCommand::Create(args) => create(paths, args).await,
            TasksCommand::List(args) => list(paths, args).await,
            TasksCommand::Show(args) => show(paths, args).await,
            TasksCommand::Update(args) => update(paths, args).await,
            TasksCommand::Claim(args) => claim(paths, args).await,
            TasksCommand::Release(args) => release(paths, args).await,
            TasksCommand::Close(args) => close(paths, args).await,
            TasksCommand::Ready(args) => ready(paths, args).await,
        }
    })
}

async fn connect(paths: &Paths) -> Result<Board, Failure> {
    super::autostart(paths)?;
    let client = coord::connect_running(paths).await?;
    Ok(Board::open(&async_nats::jetstream::new(client)).await?)
}

/// Who acts: the slot, else `$BONES_AGENT_ID`, else the workspace's agent id.
fn who(paths: &Paths, args: &WhoArgs) -> Result<String, Failure> {
    // whatever the reason, the identity came from the command line or
    // the environment: a usage error
    swarm::identity(paths, args.slot.clone()).map_err(|e| Failure::usage(e.to_string()))
}

fn valid_id(id: &str) -> Result<(), Failure> {
    Ok(record::validate_id(id).map_err(TaskError::from)?)
}

async fn create(paths: &Paths, args: CreateArgs) -> Result<(), Failure> {
    let body = match (&args.body, &args.body_file) {
        (Some(body), _) => body.clone(),
        (None, Some(file)) => read_body(file)?,
        (None, None) => String::new(),
    };
    let new = NewTask {
        title: args.title,
        body,
        parent: args.parent,
        blocked_by: args.blocked_by,
        labels: args.labels,
        priority: args.priority,
    };
    new.validate().map_err(TaskError::from)?;
    let by = who(paths, &WhoArgs { slot: None })?;
    let board = connect(paths).await?;
    let task = board.create(new, &by).await?;
    print_task_result(&task, args.out.json);
    Ok(())
}

async fn list(paths: &Paths, args: ListArgs) -> Result<(), Failure> {
    if let Some(label) = &args.label {
        record::validate_label(label).map_err(TaskError::from)?;
    }
    let me = who(paths, &args.who)?;
    let board = connect(paths).await?;
    let (tasks, unreadable) = board.list().await?;
    let wanted = args.status.map(|s| match s {
        StatusFilter::Open => Status::Open,
        StatusFilter::Claimed => Status::Claimed,
        StatusFilter::Closed => Status::Closed,
    });
    let shown: Vec<&Task> = tasks
        .iter()
        .filter(|t| wanted.is_none_or(|w| t.status == w))
        .filter(|t| !args.mine || t.claimed_by.as_deref() == Some(me.as_str()))
        .filter(|t| args.label.as_ref().is_none_or(|l| t.labels.contains(l)))
        .collect();
    print_list(&shown, args.out.json);
    if !unreadable.is_empty() {
        eprintln!(
            "tasks: skipped {} unreadable record(s): {}",
            unreadable.len(),
            unreadable.join(", ")
        );
    }
    Ok(())
}

async fn show(paths: &Paths, args: ShowArgs) -> Result<(), Failure> {
    valid_id(&args.id)?;
    let board = connect(paths).await?;
    let (task, revision) = board.get(&args.id).await?;
    if args.out.json {
        super::json::print(task);
    } else {
        print_one(&task, revision);
    }
    Ok(())
}

async fn update(paths: &Paths, args: UpdateArgs) -> Result<(), Failure> {
    let by = who(paths, &args.who)?;
    let edit = Update {
        title: args.title,
        body: args.body,
        parent: if args.no_parent {
            Some(None)
        } else {
            args.parent.map(Some)
        },
        add_labels: args.add_labels,
        remove_labels: args.remove_labels,
        add_blockers: args.add_blockers,
        remove_blockers: args.remove_blockers,
        priority: args.priority,
    };
    valid_id(&args.id)?;
    edit.validate(&args.id).map_err(TaskError::from)?;
    let board = connect(paths).await?;
    let task = board.update(&args.id, &by, &edit).await?;
    print_task_result(&task, args.out.json);
    Ok(())
}

async fn claim(paths: &Paths, args: ClaimArgs) -> Result<(), Failure> {
    if let Some(id) = &args.id {
        valid_id(id)?;
    }
    if let Some(label) = &args.label {
        record::validate_label(label).map_err(TaskError::from)?;
    }
    let by = who(paths, &args.who)?;
    let board = connect(paths).await?;
    if args.next {
        return claim_next(&board, &by, &args).await;
    }
    let id = args.id.unwrap_or_default();
    let started = Instant::now();
    match board.claim(&id, &by).await {
        Ok((task, fresh)) => {
            if !fresh {
                eprintln!("tasks: {id} was already yours");
            }
            print_task_result(&task, args.out.json);
            Ok(())
        }
        Err(err) => {
            if matches!(err, TaskError::Refused(_)) {
                log_refusal(paths, "tasks.claim", &by, &id, started, &err);
            }
            Err(err.into())
        }
    }
}

/// `tasks claim --next [--wait [D]]`.
async fn claim_next(board: &Board, by: &str, args: &ClaimArgs) -> Result<(), Failure> {
    let label = args.label.as_deref();
    let claimed = match args.wait {
        Some(wait) => {
            let mut said = false;
            let waiting = || {
                if !std::mem::replace(&mut said, true) {
                    eprintln!("tasks: no task is ready; waiting for one");
                }
            };
            board.claim_next_wait(by, label, wait, waiting).await?
        }
        None => board.claimer(by).with_label(label).next().await?,
    };
    match claimed {
        Some(task) => {
            print_task_result(&task, args.out.json);
            Ok(())
        }
        None => {
            let waited = match args.wait {
                Some(Some(wait)) => format!(" within {wait:?}"),
                _ => String::new(),
            };
            Err(Failure::new(
                ErrorKind::NothingReady,
                format!("no ready task to claim{waited} (`bones tasks list` shows them all)"),
            ))
        }
    }
}

async fn release(paths: &Paths, args: ReleaseArgs) -> Result<(), Failure> {
    valid_id(&args.id)?;
    let by = who(paths, &args.who)?;
    let board = connect(paths).await?;
    let task = board.release(&args.id, &by, args.force, None).await?;
    print_task_result(&task, args.out.json);
    Ok(())
}

async fn close(paths: &Paths, args: CloseArgs) -> Result<(), Failure> {
    valid_id(&args.id)?;
    if let Some(reason) = &args.reason {
        record::validate_reason(reason).map_err(TaskError::from)?;
    }
    let by = who(paths, &args.who)?;
    let board = connect(paths).await?;
    let task = board.close(&args.id, &by, args.reason, args.force).await?;
    print_task_result(&task, args.out.json);
    Ok(())
}

async fn ready(paths: &Paths, args: JsonArgs) -> Result<(), Failure> {
    let board = connect(paths).await?;
    let tasks = board.ready().await?;
    let refs: Vec<&Task> = tasks.iter().collect();
    print_list(&refs, args.json);
    Ok(())
}

/// Reads a body from a file or stdin, never more than one byte past the
/// limit: 10 MB on stdin costs 64 KiB of memory and one clear error.
fn read_body(file: &PathBuf) -> Result<String, Failure> {
    use std::io::Read;
    let limit = record::MAX_BODY as u64 + 1;
    let mut bytes = Vec::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    let shown = || crate::sys::shown::shown(&file.to_string_lossy());
    read.map_err(|e| Failure::usage(format!("cannot read the body from {}: {e}", shown())))?;
    if bytes.len() > record::MAX_BODY {
        return Err(Failure::usage(format!(
            "the body in {} is larger than the limit of {} bytes (64 KiB); put long text in a file in the repository",
            shown(),
            record::MAX_BODY
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| Failure::usage(format!("the body in {} is not UTF-8 text", shown())))
}

/// A refused claim writes nothing to the board, so no event: the refusal
/// is logged here, as an rpc entry with `err`, for the operator.
fn log_refusal(paths: &Paths, rpc: &str, by: &str, task: &str, started: Instant, err: &TaskError) {
    let log = HubLog::append_only(paths.hub_log.clone());
    let mut entry = LogEntry::new(LogLevel::Warn, EventKind::Rpc).with_err(err.to_string());
    entry.msg = Some(rpc.to_string());
    entry.rpc = Some(rpc.to_string());
    entry.by = Some(by.to_string());
    // deprecated for task entries, kept one release (docs/json.md)
    entry.agent = Some(by.to_string());
    entry.task = Some(task.to_string());
    entry.took_ms = Some(started.elapsed().as_millis() as u64);
    log.write(entry);
}

fn print_task_result(task: &Task, as_json: bool) {
    if as_json {
        super::json::print(task);
    } else {
        eprintln!(
            "tasks: {} {} ({})",
            task.id,
            plain(&task.describe()),
            plain(&task.title)
        );
        println!("{}", task.id);
    }
}

fn print_list(tasks: &[&Task], as_json: bool) {
    if as_json {
        super::json::print(tasks);
        return;
    }
    if tasks.is_empty() {
        println!("no tasks");
        return;
    }
    // holders are shown whole, so they match slot names and agent ids
    let holders: Vec<String> = tasks
        .iter()
        .map(|t| plain(t.claimed_by.as_deref().unwrap_or("-")).into_owned())
        .collect();
    let width = holders
        .iter()
        .map(|h| h.chars().count())
        .max()
        .unwrap_or(0)
        .max("HOLDER".len());
    println!("{:<11} {:<8} {:<width$} TITLE", "ID", "STATUS", "HOLDER");
    for (t, holder) in tasks.iter().zip(&holders) {
        let title: String = plain(&t.title).chars().take(70).collect();
        println!(
            "{:<11} {:<8} {holder:<width$} {title}",
            t.id,
            t.status.as_str(),
        );
    }
}

fn print_one(task: &Task, revision: u64) {
    println!("{}  {}", task.id, plain(&task.title));
    println!("  status     {}", plain(&task.describe()));
    if let Some(parent) = &task.parent {
        println!("  parent     {}", plain(parent));
    }
    if !task.blocked_by.is_empty() {
        println!("  blocked by {}", plain(&task.blocked_by.join(", ")));
    }
    if !task.labels.is_empty() {
        println!("  labels     {}", plain(&task.labels.join(", ")));
    }
    if task.priority != 0 {
        println!("  priority   {}", task.priority);
    }
    println!("  created    {}", plain(&task.created_at));
    println!(
        "  updated    {} ({} by {}, revision {revision})",
        plain(&task.updated_at),
        plain(&task.last_op.op),
        plain(&task.last_op.by)
    );
    if let Some(reason) = &task.closed_reason {
        println!("  closed     {}", plain(reason));
    }
    if !task.body.is_empty() {
        println!();
        for line in task.body.lines() {
            println!("  {}", plain(line));
        }
    }
}
