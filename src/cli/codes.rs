//! Stable names for the exit codes in [`super::exit`], for machine readers
//! that want a word rather than a number (the primer's loop, the MCP
//! server's tool errors).

use super::exit;
use crate::agent::ExitCode;

/// The name of exit code `code`: `ok`, `failure`, `usage`, `degraded`,
/// `live_leases`, `conflict`, `held`, `nothing_ready` or `unresolved`
/// (`failure` for a code bones does not use).
pub fn kind(code: u8) -> &'static str {
    match code {
        exit::OK => "ok",
        exit::USAGE => "usage",
        exit::DEGRADED => "degraded",
        exit::LIVE_LEASES => "live_leases",
        exit::CONFLICT => "conflict",
        exit::HELD => "held",
        exit::NOTHING_READY => "nothing_ready",
        exit::UNRESOLVED => "unresolved",
        _ => "failure",
    }
}

/// Exit code `code` with its name, and what it means where it is used.
pub fn exit_code(code: u8, meaning: &str) -> ExitCode {
    ExitCode::new(code, kind(code), meaning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_name() {
        let codes = [
            exit::OK,
            exit::FAILURE,
            exit::USAGE,
            exit::DEGRADED,
            exit::LIVE_LEASES,
            exit::CONFLICT,
            exit::HELD,
            exit::NOTHING_READY,
            exit::UNRESOLVED,
        ];
        let mut names: Vec<&str> = codes.iter().map(|&c| kind(c)).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), codes.len(), "{names:?}");
    }
}
