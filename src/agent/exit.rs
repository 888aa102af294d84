//! The exit codes of bones: what scripts may rely on, and the one table
//! that gives each kind of failure its code. The command line exits with
//! them; the MCP server's tool errors and the primer's loop carry the same
//! code and name, so an agent branches on them the same way everywhere.

use super::ExitCode;
use crate::sys::error::ErrorKind;

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

/// The exit code of each kind of failure: the one table (see
/// the constants above for what scripts may rely on).
pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Usage => USAGE,
        ErrorKind::Degraded => DEGRADED,
        ErrorKind::LiveLeases => LIVE_LEASES,
        ErrorKind::Conflict => CONFLICT,
        ErrorKind::Held => HELD,
        ErrorKind::NothingReady => NOTHING_READY,
        ErrorKind::Unresolved => UNRESOLVED,
        ErrorKind::NoHub
        | ErrorKind::Timeout
        | ErrorKind::Server
        | ErrorKind::NotFound
        | ErrorKind::Refused
        | ErrorKind::Contended
        | ErrorKind::Corrupt
        | ErrorKind::Io
        | ErrorKind::Unhealthy
        | ErrorKind::Internal => FAILURE,
    }
}

/// The exit code of `kind` (from [`exit_code`], the one table), its name,
/// and what it means where a step of the agent's loop uses it.
pub fn step(kind: ErrorKind, meaning: &str) -> ExitCode {
    ExitCode::new(exit_code(kind), kind.as_str(), meaning)
}
