//! The one error type of the command line, and the one place where a
//! failure becomes an exit code and the text (or JSON) on stderr.
//!
//! Every verb's handler returns `Result<(), Failure>`. A library error
//! converts with `?` (any error implementing [`Kinded`]); its
//! [`ErrorKind`] picks the exit code from [`exit_code`], the only table of
//! them. A failure the CLI itself finds is made with [`Failure::new`] (or
//! [`Failure::usage`]), naming its kind.
//!
//! Printed once, by `cli::main`: `bones: <message>` (and `bones: <hint>`
//! when there is one; `usage: <usage line>` for a usage error), or with `--json` one line
//! `{"schema":1,"error":{"code":..,"kind":..,"message":..,"hint":..}}`.

use serde_json::json;

use crate::sys::error::{ErrorKind, Kinded};

/// Longest line of an error printed, in characters.
const MAX_ERROR_LINE: usize = 1000;

/// A verb's failure: what to print and the exit code.
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: u8,
    pub kind: ErrorKind,
    /// What failed, and usually what to do (one line; a few when it
    /// carries a log tail).
    pub message: String,
    /// What to do, when it is said apart from the message.
    pub hint: Option<String>,
    /// The verb's own output already told it ([`Failure::quiet`]): only
    /// the `--json` error document repeats it.
    pub told: bool,
}

/// The exit code of each kind of failure: the one table lives with the
/// codes themselves.
pub use crate::agent::exit::exit_code;

impl Failure {
    /// A failure of `kind` found by the CLI itself.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            code: exit_code(kind),
            kind,
            message: message.into(),
            hint: None,
            told: false,
        }
    }

    /// The command line was wrong (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(ErrorKind::Usage, message)
    }

    /// A failure the verb's output has already told (doctor's findings,
    /// `hub status` of a stopped hub): the exit code, and `message` only in
    /// the `--json` error document.
    pub fn quiet(kind: ErrorKind, message: impl Into<String>) -> Failure {
        Failure {
            told: true,
            ..Failure::new(kind, message)
        }
    }

    /// The same failure with `hint` said after the message.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    /// The same failure with `context` in front of the message.
    pub fn context(mut self, context: &str) -> Failure {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// Prints the failure on stderr: `bones:` lines, or one JSON line.
    pub fn print(&self, json: bool) {
        if json {
            let error = json!({
                "schema": crate::sys::schema::JSON_SCHEMA,
                "error": {
                    "code": self.code,
                    "kind": self.kind,
                    "message": capped(&self.message),
                    "hint": self.hint.as_deref().map(capped),
                }
            });
            eprintln!("{error}");
            return;
        }
        if !self.told {
            eprintln!("bones: {}", shown_lines(&self.message));
        }
        // a usage error's hint is the usage line clap gave
        let label = if self.kind == ErrorKind::Usage {
            "usage"
        } else {
            "bones"
        };
        if let Some(hint) = &self.hint {
            eprintln!("{label}: {}", shown_lines(hint));
        }
    }
}

impl<E: Kinded> From<E> for Failure {
    fn from(err: E) -> Failure {
        Failure::new(err.kind(), err.to_string())
    }
}

/// A message whose text is whatever an error carried (an OS message, a
/// path no one thought to escape), cut to [`MAX_ERROR_LINE`] characters a
/// line. Errors quote input by [`crate::sys::shown`]; this is the last guard.
fn capped(text: &str) -> String {
    text.lines()
        .map(|line| match line.char_indices().nth(MAX_ERROR_LINE) {
            Some((cut, _)) => format!("{}…", &line[..cut]),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// [`capped`], with control characters escaped for the terminal.
fn shown_lines(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|line| capped(&crate::sys::shown::plain(line)))
        .collect();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::exit;

    #[test]
    fn kinds_pick_the_documented_codes() {
        assert_eq!(exit_code(ErrorKind::Usage), exit::USAGE);
        assert_eq!(exit_code(ErrorKind::Held), exit::HELD);
        assert_eq!(exit_code(ErrorKind::NoHub), exit::FAILURE);
        assert_eq!(exit_code(ErrorKind::Timeout), exit::FAILURE);
    }

    #[test]
    fn long_lines_are_cut_and_control_characters_escaped() {
        let long = "x".repeat(5000);
        assert_eq!(capped(&long).chars().count(), MAX_ERROR_LINE + 1);
        assert!(!shown_lines("a\u{1b}[31mb").contains('\u{1b}'));
    }
}
