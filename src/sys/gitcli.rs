//! Runs the `git` program for the one thing bones leaves to it: moving
//! history between the user's repository and the hub repository.
//!
//! Everything else is git2, in process. Transfers are not: libgit2 builds
//! a pack by computing every delta again, where git reuses the deltas its
//! packs already hold, and on a 21,000-file repository that was the
//! difference between 14 s and 2 s (issue 16; ADR 0012). `git` is already
//! required (doctor checks it), so a fetch is git's own fetch.
//!
//! Progress: git reports counts on stderr (`Receiving objects: 45%
//! (9000/20000)`). They are passed on once a transfer has run for
//! [`PROGRESS_AFTER`], one line at a time, so a quick fetch prints nothing
//! and a slow one shows where it is, in a log as well as on a terminal.

use std::ffi::OsStr;
use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a step runs before its progress is shown.
pub const PROGRESS_AFTER: Duration = Duration::from_secs(2);

/// Variables that would point git at another repository, index or object
/// store than the one named on its command line (set when bones runs
/// inside a git hook, say).
const REDIRECTING_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_QUARANTINE_PATH",
];

/// Why git could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git ({source}); install git (`apt-get install git`) and try again")]
    Spawn {
        #[source]
        source: io::Error,
    },
    #[error("git {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
}

/// Where a long step's progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nowhere.
    Quiet,
    /// stderr, prefixed with this label (`apply`, `land`, ...).
    Stderr(&'static str),
}

/// `git --git-dir <git_dir> fetch --no-tags <source> <refspecs>`, with
/// progress as [`Progress`] says. `source` is a repository path.
pub fn fetch(
    git_dir: &Path,
    source: &Path,
    refspecs: &[&str],
    progress: Progress,
) -> Result<(), GitError> {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("--git-dir"),
        git_dir.as_os_str(),
        OsStr::new("fetch"),
        OsStr::new("--no-tags"),
        OsStr::new("--no-write-fetch-head"),
        OsStr::new("--no-auto-gc"),
        OsStr::new("--no-auto-maintenance"),
        OsStr::new("--progress"),
        source.as_os_str(),
    ];
    args.extend(refspecs.iter().map(OsStr::new));
    run(&args, progress)
}

/// Runs git with `args` and a clean environment; stderr is kept for the
/// error and shown as progress after [`PROGRESS_AFTER`].
pub fn run(args: &[&OsStr], progress: Progress) -> Result<(), GitError> {
    let mut command = Command::new("git");
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for name in REDIRECTING_ENV {
        command.env_remove(name);
    }
    let mut child = command
        .spawn()
        .map_err(|source| GitError::Spawn { source })?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let mut shown = Shown::new(progress);
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                shown.feed(&buf[..n]);
                kept.extend_from_slice(&buf[..n]);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let status = child.wait().map_err(|source| GitError::Spawn { source })?;
    shown.finish();
    if status.success() {
        return Ok(());
    }
    Err(GitError::Failed {
        args: args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        stderr: last_lines(&kept),
    })
}

/// The last few meaningful lines of git's stderr, progress left out.
fn last_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty() && !is_progress(l))
        .collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    if tail.is_empty() {
        "no message".to_string()
    } else {
        tail.join("; ")
    }
}

/// Whether a line of git's stderr is one of its progress counters.
fn is_progress(line: &str) -> bool {
    let line = line.strip_prefix("remote: ").unwrap_or(line);
    [
        "Enumerating objects",
        "Counting objects",
        "Compressing objects",
        "Receiving objects",
        "Resolving deltas",
        "Total ",
        "Writing objects",
        "Checking connectivity",
        "Updating files",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}

/// Passes git's progress lines on to stderr (`out`) once a step is slow.
struct Shown<W: Write> {
    out: W,
    progress: Progress,
    started: Instant,
    partial: Vec<u8>,
    last_shown: Option<Instant>,
    /// The newest counter line not yet shown.
    pending: Option<String>,
    terminal: bool,
    printed_any: bool,
}

impl Shown<io::Stderr> {
    fn new(progress: Progress) -> Shown<io::Stderr> {
        Shown::to(io::stderr(), io::stderr().is_terminal(), progress)
    }
}

impl<W: Write> Shown<W> {
    fn to(out: W, terminal: bool, progress: Progress) -> Shown<W> {
        Shown {
            out,
            progress,
            started: Instant::now(),
            partial: Vec::new(),
            last_shown: None,
            pending: None,
            terminal,
            printed_any: false,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.progress == Progress::Quiet {
            return;
        }
        for &b in bytes {
            if b == b'\r' || b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial).trim().to_string();
                self.partial.clear();
                if is_progress(&line) {
                    self.pending = Some(line);
                    self.show(false);
                }
            } else {
                self.partial.push(b);
            }
        }
    }

    /// Shows the pending line when the step has run long enough, at most
    /// once a second (every line on a terminal, overwriting itself).
    fn show(&mut self, last: bool) {
        let Progress::Stderr(label) = self.progress else {
            return;
        };
        let now = Instant::now();
        if now.duration_since(self.started) < PROGRESS_AFTER {
            return;
        }
        let due = self.terminal
            || last
            || self
                .last_shown
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if !due {
            return;
        }
        let Some(line) = self.pending.take() else {
            return;
        };
        if self.terminal {
            let _ = write!(self.out, "\r\x1b[K{label}: {line}");
        } else {
            let _ = writeln!(self.out, "{label}: {line}");
        }
        self.last_shown = Some(now);
        self.printed_any = true;
    }

    fn finish(&mut self) {
        self.show(true);
        if self.terminal && self.printed_any {
            let _ = writeln!(self.out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_the_message_and_drop_the_counters() {
        let stderr = b"Receiving objects:  50% (1/2)\rReceiving objects: 100% (2/2), done.\nfatal: couldn't find remote ref refs/heads/nope\n";
        assert_eq!(
            last_lines(stderr),
            "fatal: couldn't find remote ref refs/heads/nope"
        );
        assert_eq!(last_lines(b""), "no message");
    }

    const COUNTS: &[u8] = b"Receiving objects:  10% (1/10)\rReceiving objects:  20% (2/10)\r\
        warning: not a counter\nReceiving objects: 100% (10/10), done.\n";

    #[test]
    fn a_quick_step_shows_nothing() {
        let mut shown = Shown::to(Vec::new(), false, Progress::Stderr("apply"));
        shown.feed(COUNTS);
        shown.finish();
        assert!(shown.out.is_empty());
    }

    #[test]
    fn a_slow_step_shows_counts_as_lines_when_stderr_is_not_a_terminal() {
        let mut shown = Shown::to(Vec::new(), false, Progress::Stderr("apply"));
        shown.started -= PROGRESS_AFTER;
        shown.feed(COUNTS);
        shown.finish();
        // one line per shown counter: the first at once, then at most one
        // a second, and always the last; never git's other messages
        let out = String::from_utf8(shown.out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines.first(),
            Some(&"apply: Receiving objects:  10% (1/10)")
        );
        assert_eq!(
            lines.last(),
            Some(&"apply: Receiving objects: 100% (10/10), done.")
        );
        assert!(!out.contains("warning") && !out.contains('\r'), "{out:?}");
    }

    #[test]
    fn on_a_terminal_the_counter_overwrites_itself() {
        let mut shown = Shown::to(Vec::new(), true, Progress::Stderr("land"));
        shown.started -= PROGRESS_AFTER;
        shown.feed(COUNTS);
        shown.finish();
        let out = String::from_utf8(shown.out).unwrap();
        assert_eq!(out.matches("\r\x1b[K").count(), 3);
        assert!(out.ends_with("(10/10), done.\n"), "{out:?}");
    }
}
