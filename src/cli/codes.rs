//! The exit codes a step of the agent's loop documents (the primer's loop,
//! the MCP server's), named by their [`ErrorKind`]: the same code and the
//! same name a `--json` failure or an MCP tool error carries.

use crate::agent::ExitCode;
use crate::sys::error::ErrorKind;

/// The exit code of `kind` (from [`super::failure::exit_code`], the one
/// table), its name, and what it means where it is used.
pub fn exit_code(kind: ErrorKind, meaning: &str) -> ExitCode {
    ExitCode::new(super::failure::exit_code(kind), kind.as_str(), meaning)
}
