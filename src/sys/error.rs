//! The kinds of failure every bones error is sorted into.
//!
//! Each library error type keeps its own variants (and their sources) and
//! answers `kind()` with one of these, so a caller can match on what
//! happened without knowing which module failed: the CLI turns a kind into
//! an exit code and the `kind` of a `--json` error, a script retries a
//! [`ErrorKind::Timeout`] but starts a hub on [`ErrorKind::NoHub`].

use serde::Serialize;

/// What kind of failure an error is. The names are part of the `--json`
/// error document (`docs/json.md`): add variants, never rename them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input was wrong (a flag, a name, an id, a value): fix the
    /// command line; nothing was changed.
    Usage,
    /// No hub runs for this workspace, or its address or key is missing.
    NoHub,
    /// The hub or its coordination server did not answer in time: it may
    /// be busy or going away; trying again may succeed.
    Timeout,
    /// The coordination server answered with an error, or the connection
    /// to it failed in another way.
    Server,
    /// The thing named does not exist (a task, a slot, rescued work).
    NotFound,
    /// Another agent holds it (a slot's lease, a task's claim).
    Held,
    /// A change conflicts with trunk; trunk is unchanged.
    Conflict,
    /// Conflict markers are still in files; nothing was committed.
    Unresolved,
    /// No task is ready to claim.
    NothingReady,
    /// Slots hold live leases (a stop that would strand them).
    LiveLeases,
    /// The hub runs but a part of it is not healthy (`hub status`).
    Degraded,
    /// A check found something to fix (`doctor`).
    Unhealthy,
    /// The request is valid but the current state refuses it (a closed
    /// task, unlanded commits, a slot in use): the message says what to do.
    Refused,
    /// A record kept changing under a compare-and-swap; try again.
    Contended,
    /// Stored data is not readable (a damaged record or file).
    Corrupt,
    /// A local file, directory or git operation failed.
    Io,
    /// Something bones did not expect; the message says what.
    Internal,
}

impl ErrorKind {
    /// The name used in `--json` errors and logs (`no_hub`, `timeout`...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage",
            ErrorKind::NoHub => "no_hub",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Server => "server",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Held => "held",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unresolved => "unresolved",
            ErrorKind::NothingReady => "nothing_ready",
            ErrorKind::LiveLeases => "live_leases",
            ErrorKind::Degraded => "degraded",
            ErrorKind::Unhealthy => "unhealthy",
            ErrorKind::Refused => "refused",
            ErrorKind::Contended => "contended",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Io => "io",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that says which [`ErrorKind`] it is. Every library error type
/// implements it; the CLI's `Failure` is built from any of them.
pub trait Kinded: std::error::Error {
    fn kind(&self) -> ErrorKind;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_match_as_str() {
        for kind in [ErrorKind::NoHub, ErrorKind::NothingReady, ErrorKind::Usage] {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
        }
    }
}
