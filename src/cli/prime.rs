//! `bones prime`: the primer for an agent's first turn.

use std::io::Write;

use clap::Args;

use super::Failure;
use crate::agent::exit::step as exit_code;
use crate::agent::prime::{DEFAULT_MAX_CHARS, MIN_MAX_CHARS, Primer, Step};
use crate::coord;
use crate::sys::error::ErrorKind;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bones prime                     paste into the agent's context at session start\n  \
    bones prime --slot fix-parser   the primer of that slot's agent\n  \
    bones prime --json | jq .ready  the ready tasks it could claim\n\n\
    The primer is bounded (--max-chars, default 8000 characters, about 2000 tokens): who the \
    agent is, its slot and checkout, the loop in five commands with their exit codes, up to 10 \
    ready tasks and the feed digest of `bones feed --prime` in what is left. When the hub \
    cannot be reached the primer says so and still exits 0, so a session-start hook never \
    fails for it.")]
pub struct PrimeArgs {
    /// The agent's slot (default: $BONES_SLOT, else the checkout you are in, else none).
    #[arg(long, value_name = "NAME")]
    slot: Option<String>,
    /// Bound on the primer, in characters.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CHARS as u64,
          value_parser = clap::value_parser!(u64).range(MIN_MAX_CHARS as u64..))]
    max_chars: u64,
    /// Print one JSON object (the text is left out: every part is a field).
    #[arg(long)]
    json: bool,
}

pub fn run(args: PrimeArgs) -> Result<(), Failure> {
    let (paths, runtime) = super::workspace_and_runtime()?;
    let max_chars = usize::try_from(args.max_chars).unwrap_or(usize::MAX);
    let primer = runtime.block_on(async {
        let hub = match super::autostart(&paths) {
            Err(_) => Err("no hub runs and none could be started".to_string()),
            Ok(()) => coord::connect_running(&paths)
                .await
                .map(async_nats::jetstream::new)
                .map_err(|e| e.to_string()),
        };
        Primer::gather(&paths, args.slot, the_loop(), hub, max_chars).await
    });
    let primer = primer?;
    if args.json {
        super::json::print(&primer);
        return Ok(());
    }
    // a reader that went away (`| head`) is not an error
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(primer.text.as_bytes())
        .and_then(|()| out.flush());
    Ok(())
}

/// The agent's loop in five commands, with the exit codes each can end
/// with besides 0, 1 and 2.
pub(crate) fn the_loop() -> Vec<Step> {
    vec![
        Step::new(
            "cd \"$(bones swarm join --auto --pid $PPID)\"",
            "take a slot (your own checkout of trunk) and work in it",
            vec![exit_code(ErrorKind::Held, "another agent holds that slot")],
        ),
        Step::new(
            "bones tasks claim --next",
            "claim the next ready task (prints its id); `bones tasks close ID --reason done` when it is done",
            vec![exit_code(ErrorKind::NothingReady, "no task is ready")],
        ),
        Step::new(
            "bones swarm sync",
            "bring the slot onto trunk (others' work); resolve any conflict markers it leaves",
            Vec::new(),
        ),
        Step::new(
            "bones swarm commit -m MSG",
            "commit everything changed and land it on trunk",
            vec![
                exit_code(
                    ErrorKind::Conflict,
                    "conflicts with trunk: trunk unchanged; `bones swarm sync`, fix, commit again",
                ),
                exit_code(
                    ErrorKind::Unresolved,
                    "conflict markers are still in files; nothing committed",
                ),
            ],
        ),
        Step::new(
            "bones swarm close",
            "release the slot when your work has landed (its tasks are released, or closed with --close-tasks)",
            Vec::new(),
        ),
    ]
}
