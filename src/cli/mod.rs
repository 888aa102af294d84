//! The command line: argument definitions and the mapping of results to
//! output and exit codes. Behaviour lives in the library modules; this layer
//! only parses, calls, and prints (results on stdout, everything else on
//! stderr).

mod apply;
mod doctor;
mod feed;
mod hub;
mod land;
mod logs;
mod swarm;
mod tasks;
mod top;
mod up;
mod usage;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes scripts can rely on.
pub mod exit {
    /// Success (for `hub status`: running and healthy).
    pub const OK: u8 = 0;
    /// The operation failed (for `hub status`: no hub running).
    pub const FAILURE: u8 = 1;
    /// The command line was wrong.
    pub const USAGE: u8 = 2;
    /// `hub status`: the hub runs but a part of it is not healthy.
    pub const DEGRADED: u8 = 3;
    /// `hub stop`: refused because slots hold live leases.
    pub const LIVE_LEASES: u8 = 4;
    /// `swarm commit`, `land`: the change conflicts with trunk; trunk is
    /// unchanged. `apply --worktree`: trunk's changes conflict with your
    /// commits; nothing was changed.
    pub const CONFLICT: u8 = 5;
    /// `swarm join`: another agent holds the slot's lease;
    /// `tasks claim`: another holds the task.
    pub const HELD: u8 = 6;
    /// `tasks claim --next`: no task is ready.
    pub const NOTHING_READY: u8 = 7;
    /// `swarm commit`: files `swarm sync` left conflicted still hold
    /// conflict markers; nothing was committed.
    pub const UNRESOLVED: u8 = 8;
}

#[derive(Debug, Parser)]
#[command(
    name = "bones",
    version,
    about = "Run many AI coding agents on one repository without them trampling each other",
    long_about = "Run many AI coding agents on one repository without them trampling each other.\n\n\
        One hub per workspace runs a coordination server (nats-server with JetStream) and a \
        shared trunk repository. Agents work in isolated slots and land every commit through \
        the hub, so trunk history stays linear.\n\n\
        Start here:\n  \
        bones up                    make this repository a workspace\n  \
        bones hub start --detach    start the hub in the background\n  \
        bones hub status            is it healthy? (exit 0 yes, 1 not running, 3 degraded)\n  \
        bones hub stop              stop it",
    after_help = "Exit codes: 0 success, 1 failure (doctor: something to fix), 2 usage error, \
        3 hub degraded (hub status), \
        4 live slot leases (hub stop), 5 conflict with trunk (swarm commit, land, apply --worktree), \
        6 held by another (swarm join, tasks claim), 7 no ready task (tasks claim --next), \
        8 unresolved conflict markers (swarm commit)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make the current directory a bones workspace (idempotent).
    ///
    /// Creates .bones/agent.id (the workspace marker every verb walks up to
    /// find) and adds .bones/ to .gitignore. Set BONES_DIR to keep the state
    /// directory elsewhere.
    Up(up::UpArgs),
    /// Start, stop and inspect the workspace hub.
    #[command(subcommand)]
    Hub(hub::HubCommand),
    /// Read the hub's operator log: filter it, follow it, pipe it to jq.
    ///
    /// Reads hub.log and its rotated files oldest first as one stream. Never
    /// starts a hub. Lines that are not log entries are skipped and counted
    /// on stderr. --json prints the original lines byte for byte.
    Logs(logs::LogsArgs),
    /// Agents' slots: isolated checkouts held by leases, landing on trunk.
    ///
    /// A typical agent session:
    ///   cd "$(bones swarm join --slot fix-parser)"
    ///   ...edit...
    ///   bones swarm commit -m "Fix the parser"
    ///   bones swarm close
    #[command(subcommand, verbatim_doc_comment)]
    Swarm(swarm::SwarmCommand),
    /// The task board: create, claim (never twice), release and close work items.
    ///
    /// A typical agent loop:
    ///   while id=$(bones tasks claim --next); do
    ///     ...work on $id...
    ///     bones tasks close "$id" --reason done
    ///   done
    #[command(subcommand, verbatim_doc_comment)]
    Tasks(tasks::TasksCommand),
    /// Bring the hub's trunk (or a slot) into your own repository.
    ///
    /// Fetches it as the local branch bones/trunk (or bones/slot/NAME) and
    /// prints how to take its commits; --worktree applies the changes to
    /// your working tree instead, refusing (touching nothing) when that
    /// would overwrite uncommitted changes.
    Apply(apply::ApplyArgs),
    /// Land your branch's new commits on trunk, so agents get them.
    ///
    /// Fetches your current branch into the hub and lands the commits
    /// trunk lacks the way a slot's commits land: replayed onto trunk,
    /// linear, compare-and-swap. Agents see them on their next
    /// `bones swarm sync`. Exit 5 on a conflict: trunk is unchanged and
    /// the paths are named.
    Land(land::LandArgs),
    /// Check what can keep the hub from working, and print how to fix it.
    ///
    /// Looks at the tools, pid and lock files, stray processes, recorded
    /// ports, disk space, permissions and recent hub.log errors. Read-only:
    /// never starts, stops or changes anything. Exit 0 when no error or
    /// warning was found, 1 otherwise.
    Doctor(doctor::DoctorArgs),
    /// Share what you decided or learned with every agent in the workspace.
    ///
    /// Appends an entry (decision, learning, convention or task) to the
    /// knowledge feed on the hub. The same id is stored once, however often
    /// and by whomever it is shared; prints the entry's id.
    Share(feed::ShareArgs),
    /// Read the knowledge feed: list it, follow it, or digest it for an agent.
    ///
    /// A typical agent session starts with
    ///   bones feed --prime
    /// and shares what it finds with
    ///   bones share --type learning "The parser tests need LANG=C"
    #[command(verbatim_doc_comment)]
    Feed(feed::FeedArgs),
    /// Watch the swarm live in the terminal: slots, tasks, landings, hub.log.
    ///
    /// The same picture as the hub's web page, updated as things happen
    /// (never by polling): tab or the arrow keys move between panes and
    /// rows, enter shows a row's detail, q quits. Never starts a hub: it
    /// waits for one and follows it across restarts.
    Top(top::TopArgs),
}

/// Parses the command line, runs the command, and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return ExitCode::from(usage::report(&err)),
    };
    let code = match cli.command {
        Command::Up(args) => up::run(args),
        Command::Hub(command) => hub::run(command),
        Command::Logs(args) => logs::run(args),
        Command::Swarm(command) => swarm::run(command),
        Command::Apply(args) => apply::run(args),
        Command::Land(args) => land::run(args),
        Command::Tasks(command) => tasks::run(command),
        Command::Doctor(args) => doctor::run(args),
        Command::Share(args) => feed::share(args),
        Command::Feed(args) => feed::feed(args),
        Command::Top(args) => top::run(args),
    };
    if code == exit::FAILURE {
        hint_if_disk_full();
    }
    ExitCode::from(code)
}

/// Whatever a failure said, a full disk under the state directory is the
/// thing to fix first: say so.
fn hint_if_disk_full() {
    if let Ok(ws) = crate::state::workspace::Workspace::from_cwd()
        && let Some(hint) = crate::hub::storage::full_disk_hint(&ws.state_dir)
    {
        eprintln!("bones: {hint}");
    }
}

/// The current workspace's paths and a runtime for a verb that talks to
/// the hub; on failure the error is reported and the exit code returned.
fn workspace_and_runtime() -> Result<(crate::state::Paths, tokio::runtime::Runtime), u8> {
    // slot and task verbs write into the state directory (git objects,
    // checkouts, hub.log): owner-only, like everything the hub writes
    crate::sys::fsutil::restrict_umask();
    let paths = match crate::state::workspace::Workspace::from_cwd() {
        Ok(ws) => crate::state::Paths::new(&ws),
        Err(err) => {
            match crate::swarm::removed_checkout_hint() {
                Some(hint) => report(&hint),
                None => report(&err),
            }
            return Err(exit::FAILURE);
        }
    };
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Ok((paths, runtime)),
        Err(err) => {
            report(&format!("cannot start the async runtime: {err}"));
            Err(exit::FAILURE)
        }
    }
}

/// Longest line of an error [`report`] prints, in characters.
const MAX_ERROR_LINE: usize = 1000;

/// Environment variable that turns off starting the hub on demand.
pub const NO_AUTOSTART_ENV: &str = "BONES_NO_AUTOSTART";

/// Starts the workspace hub in the background when none runs, for a verb
/// that needs it (as the Go original does on the first such verb): one
/// ready line on stderr. `BONES_NO_AUTOSTART=1` turns it off, and the verb
/// then fails saying how to start one. Errors are reported here.
fn autostart(paths: &crate::state::Paths) -> Result<(), u8> {
    let off = std::env::var_os(NO_AUTOSTART_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    if off || crate::hub::is_running(&paths.root) {
        return Ok(());
    }
    let opts = crate::hub::StartOptions {
        detach: true,
        ..Default::default()
    };
    match crate::hub::start(&paths.root, &opts) {
        Ok(crate::hub::StartOutcome::Started { pid, ports }) => {
            eprintln!(
                "hub: no hub was running; started one in the background (pid={pid}) repo={} coord={} \
                 (set {NO_AUTOSTART_ENV}=1 to turn this off)",
                crate::state::ports::repo_url(ports.repo),
                crate::state::ports::nats_url(ports.coord)
            );
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(err) => {
            report(&format!(
                "no hub was running and starting one failed: {err}"
            ));
            Err(exit::FAILURE)
        }
    }
}

/// Prints an error the way every verb does: one `bones:` line (or a few,
/// when it carries a log tail) on stderr.
///
/// Errors quote input by [`crate::sys::shown`]; as a last guard, whatever an
/// error carries (an OS message, a path no one thought to escape) reaches
/// the terminal with control characters escaped and each line cut at
/// [`MAX_ERROR_LINE`] characters.
fn report(err: &dyn std::fmt::Display) {
    let text = err.to_string();
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut shown = crate::sys::shown::plain(line).into_owned();
            if let Some((cut, _)) = shown.char_indices().nth(MAX_ERROR_LINE) {
                shown.truncate(cut);
                shown.push('…');
            }
            shown
        })
        .collect();
    eprintln!("bones: {}", lines.join("\n"));
}
