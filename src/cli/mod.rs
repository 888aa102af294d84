//! The command line: argument definitions and the mapping of results to
//! output and exit codes. Behaviour lives in the library modules; this layer
//! only parses, calls, and prints (results on stdout, everything else on
//! stderr).
//!
//! # How a verb is written
//!
//! * One handler per verb: `fn NAME(args: NameArgs) -> Result<(), Failure>`
//!   (async ones run inside [`workspace_and_runtime`]'s runtime), called
//!   from the one `match` in [`main`]. A verb with subcommands has a `run`
//!   that only dispatches to one handler per subcommand.
//! * Errors are returned, never printed by the verb: a library error
//!   converts with `?` into a [`Failure`] (every library error implements
//!   [`crate::sys::error::Kinded`]); a failure the verb finds itself is
//!   `Failure::new(ErrorKind::..., message)`. Its kind picks the exit code
//!   in [`failure::exit_code`], the only table of them.
//! * [`main`] prints the failure once: `bones: <message>` (and a hint
//!   line), or with `--json` one line `{"schema":1,"error":{"code","kind",
//!   "message","hint"}}` on stderr (docs/json.md). A verb whose own output
//!   already said what went wrong (doctor's findings, `hub status`)
//!   returns `Failure::quiet(kind, message)`: the exit code, and the
//!   message only in the `--json` error document.
//! * A new kind of failure scripts must tell apart gets a variant in
//!   [`ErrorKind`] and a row in [`failure::exit_code`] (and, for a new exit
//!   code, a constant in [`exit`] and a line in `--help`).
//! * Results go to stdout; progress to stderr with the verb's prefix.
//!   `--json` documents are printed with `json::print` (or made with
//!   `json::document`), which adds `schema` and the vocabulary of
//!   docs/json.md.
//!
//! ```ignore
//! // a new verb, from argument struct to exit code
//! pub fn run(args: PrimeArgs) -> Result<(), Failure> {
//!     let (paths, runtime) = super::workspace_and_runtime()?;
//!     let digest = runtime.block_on(crate::feed::prime(&paths))?; // Kinded error: `?`
//!     if digest.is_empty() {
//!         return Err(Failure::new(ErrorKind::NotFound, "nothing to prime yet"));
//!     }
//!     if args.json {
//!         super::json::print(&digest);
//!     }
//!     Ok(())
//! }
//! ```

mod apply;
pub(crate) mod completions;
mod doctor;
pub(crate) mod failure;
mod feed;
mod hook;
mod hub;
mod integrate;
mod json;
mod land;
mod logs;
mod mcp;
pub(crate) mod prime;
mod swarm;
mod tasks;
mod top;
mod ui;
mod up;
mod usage;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::sys::error::ErrorKind;
pub use failure::Failure;

/// Exit codes scripts can rely on.
pub use crate::agent::exit;

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
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    ///
    /// Generated from the same definitions that parse the command line.
    /// `source <(bones completions bash)` enables it in the current shell.
    Completions(completions::CompletionsArgs),
    /// Print the manual page (roff), or write every page into a directory.
    Man(completions::ManArgs),
    /// Print the primer for an agent's first turn: who, slot, loop, ready tasks, feed.
    ///
    /// A bounded digest to paste into the agent's context at session start
    /// (harness hooks print it): the agent id, its slot and checkout, the
    /// loop in five commands with their exit codes, the ready tasks it
    /// could claim, and the feed digest of `bones feed --prime`.
    Prime(prime::PrimeArgs),
    /// Serve the agent's loop as Model Context Protocol tools on stdio.
    ///
    /// For agent harnesses that speak MCP: join, status, sync, commit,
    /// close, restore, the task verbs, share, feed and prime, with typed
    /// JSON inputs and outputs. One server per agent session; its slot's
    /// lease lives while the session is connected.
    Mcp(mcp::McpArgs),
    /// Set up an agent harness for this project: MCP server, session hooks, instructions.
    ///
    /// Writes Claude Code's .mcp.json, .claude/settings.json and CLAUDE.md;
    /// Codex's .codex/config.toml, .codex/hooks.json and AGENTS.md; or
    /// Gemini CLI's .gemini/settings.json and GEMINI.md. Only bones' own
    /// entries are added or updated; your other entries keep their place
    /// and value, and a second run changes nothing. --dry-run prints the
    /// diff instead.
    Integrate(integrate::IntegrateArgs),
    /// What an agent harness's session hooks run (written by `bones integrate`).
    ///
    /// session-start takes a slot for the session (starting the hub when
    /// none runs) and prints the primer for the agent's context;
    /// session-end closes that slot. Reads the harness's JSON on stdin.
    /// Never fails the session: on any problem it warns on stderr and
    /// exits 0, within 10 seconds.
    Hook(hook::HookArgs),
    /// Watch the swarm live in a browser: slots, tasks, landings, feed, log.
    ///
    /// Prints a URL of the hub's page with a one-time secret; opening it
    /// sets a session cookie for that browser (the page shows task titles
    /// and commit subjects, so it is not for every local user). The page
    /// follows the hub by server-sent events and reconnects by itself.
    ///   bones ui --open       print the URL and open it in the browser
    ///   bones ui --json       {"url": ..., "expires_at": ...}
    #[command(verbatim_doc_comment)]
    Ui(ui::UiArgs),
    /// Watch the swarm live in the terminal: slots, tasks, landings, hub.log.
    ///
    /// The same picture as the hub's web page, updated as things happen
    /// (never by polling): tab or the arrow keys move between panes and
    /// rows, enter shows a row's detail, q quits. Never starts a hub: it
    /// waits for one and follows it across restarts.
    Top(top::TopArgs),
}

/// Parses the command line, runs the command, and returns its exit code:
/// the one place a verb's [`Failure`] is printed and becomes the exit code.
pub fn main() -> ExitCode {
    let json = wants_json(std::env::args_os());
    let result = match Cli::try_parse() {
        Ok(cli) => run(cli.command),
        Err(err) => match usage::failure(&err) {
            Ok(code) => return ExitCode::from(code),
            Err(failure) => Err(failure),
        },
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(failure) => {
            let failure = with_disk_hint(failure);
            failure.print(json);
            ExitCode::from(failure.code)
        }
    }
}

/// One handler per verb.
fn run(command: Command) -> Result<(), Failure> {
    match command {
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
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
        Command::Prime(args) => prime::run(args),
        Command::Mcp(args) => mcp::run(args),
        Command::Integrate(args) => integrate::run(args),
        Command::Hook(args) => hook::run(args),
        Command::Ui(args) => ui::run(args),
        Command::Top(args) => top::run(args),
    }
}

/// Whether the command line asks for JSON: a `--json` before any `--`.
/// Read from the raw arguments so that a command line clap refuses gets
/// its error as JSON too.
fn wants_json(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter()
        .skip(1)
        .take_while(|arg| arg != "--")
        .any(|arg| arg == "--json")
}

/// Whatever a failure said, a full disk under the state directory is the
/// thing to fix first: say so.
fn with_disk_hint(failure: Failure) -> Failure {
    if failure.code != exit::FAILURE || failure.hint.is_some() {
        return failure;
    }
    match crate::state::workspace::Workspace::from_cwd()
        .ok()
        .and_then(|ws| crate::hub::storage::full_disk_hint(&ws.state_dir))
    {
        Some(hint) => failure.with_hint(hint),
        None => failure,
    }
}

/// The current workspace's paths and a runtime for a verb that talks to
/// the hub.
fn workspace_and_runtime() -> Result<(crate::state::Paths, tokio::runtime::Runtime), Failure> {
    // slot and task verbs write into the state directory (git objects,
    // checkouts, hub.log): owner-only, like everything the hub writes
    crate::sys::fsutil::restrict_umask();
    let paths = match crate::state::workspace::Workspace::from_cwd() {
        Ok(ws) => crate::state::Paths::new(&ws),
        Err(err) => {
            return Err(match crate::swarm::removed_checkout_hint() {
                Some(hint) => Failure::new(ErrorKind::NotFound, hint),
                None => err.into(),
            });
        }
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|runtime| (paths, runtime))
        .map_err(|err| {
            Failure::new(
                ErrorKind::Internal,
                format!("cannot start the async runtime: {err}"),
            )
        })
}

/// The current directory, which every verb starts from.
fn current_dir() -> Result<std::path::PathBuf, Failure> {
    std::env::current_dir().map_err(|err| {
        Failure::new(
            ErrorKind::Io,
            format!("cannot read the current directory: {err}"),
        )
    })
}

pub use crate::hub::NO_AUTOSTART_ENV;

/// Starts a hub in the background when none is running (see
/// [`crate::hub::autostart`]); a failure says that starting one failed.
pub(crate) fn autostart(paths: &crate::state::Paths) -> Result<(), Failure> {
    crate::hub::autostart(paths)
        .map(drop)
        .map_err(|err| Failure::from(err).context("no hub was running and starting one failed"))
}
