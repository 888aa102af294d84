//! `bones doctor`: everything that can keep a hub from starting or from
//! being trusted, checked read-only, each problem with the command that
//! fixes it.
//!
//! Doctor never starts a hub, never connects to one and changes nothing:
//! an operator runs it when things already look wrong, and a diagnosis that
//! alters the patient hides the cause (Go #207, #228). It works with no hub
//! running and outside a workspace (then only the tools are checked).
//!
//! The checks come in families, one module each: [`tools`] (`nats-server`
//! and `git`), [`processes`] (pid files and orphans), [`files`] (modes and
//! stale locks), [`ports`] (URL files whose ports others hold), [`disk`],
//! [`store`] (a missing trunk ref, store damage the hub recorded) and
//! [`log`] (recent errors in hub.log). Each reuses the hub's own
//! judgement (liveness by start time, which server is ours, how ports are
//! recorded) rather than a second opinion that could disagree with it.

mod disk;
mod files;
mod log;
mod ports;
mod processes;
mod store;
mod tools;

use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

use crate::state::Paths;
use crate::state::record;
use crate::state::record::HubState;
use crate::state::workspace::{BONES_DIR_ENV, Workspace, WorkspaceError};
use crate::sys::process;
use crate::sys::process::ProcessRow;

/// How much a finding matters. Errors and warnings make doctor fail;
/// info is said but does not fail it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something is broken or unsafe now.
    Error,
    /// Something will break, or misleads agents, unless fixed.
    Warning,
    /// Worth knowing; nothing to fix.
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One problem and the command that fixes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable, kebab-case: scripts may match on it.
    pub id: &'static str,
    pub severity: Severity,
    /// The check that found it (see [`Check::name`]).
    pub check: &'static str,
    /// What is wrong, in one line.
    pub problem: String,
    /// The exact shell command that fixes it, with a `#` comment when the
    /// command alone would not say why.
    pub fix: String,
}

impl Finding {
    fn new(severity: Severity, id: &'static str, problem: String, fix: String) -> Finding {
        Finding {
            id,
            severity,
            check: "",
            problem,
            fix,
        }
    }

    pub(crate) fn error(id: &'static str, problem: String, fix: String) -> Finding {
        Finding::new(Severity::Error, id, problem, fix)
    }

    pub(crate) fn warning(id: &'static str, problem: String, fix: String) -> Finding {
        Finding::new(Severity::Warning, id, problem, fix)
    }

    pub(crate) fn info(id: &'static str, problem: String, fix: String) -> Finding {
        Finding::new(Severity::Info, id, problem, fix)
    }

    /// True for errors and warnings: what makes doctor exit non-zero.
    pub fn fails(&self) -> bool {
        self.severity != Severity::Info
    }
}

/// One thing doctor looked at, and what it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable, kebab-case: `nats-server`, `git`, `workspace`, `hub-pid`,
    /// `nats-pid`, `orphans`, `permissions`, `locks`, `url-files`,
    /// `disk-space`, `trunk`, `store`, `hub-log`.
    pub name: &'static str,
    /// False when it produced an error or a warning.
    pub ok: bool,
    /// What was seen, in one line (a version, a count, "not running").
    pub detail: String,
}

/// The workspace doctor examined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkspaceInfo {
    pub root: PathBuf,
    pub state_dir: PathBuf,
}

/// Everything doctor found: `--json` prints exactly this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// True when no finding is an error or a warning.
    pub ok: bool,
    /// `None` outside a workspace.
    pub workspace: Option<WorkspaceInfo>,
    /// Errors first, then warnings, then info.
    pub findings: Vec<Finding>,
    pub checks: Vec<Check>,
}

impl Report {
    fn new() -> Report {
        Report {
            ok: true,
            workspace: None,
            findings: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// Records a check and what it found.
    pub(crate) fn record(
        &mut self,
        name: &'static str,
        detail: impl Into<String>,
        findings: Vec<Finding>,
    ) {
        self.checks.push(Check {
            name,
            ok: !findings.iter().any(Finding::fails),
            detail: detail.into(),
        });
        self.findings.extend(findings.into_iter().map(|mut f| {
            f.check = name;
            f
        }));
    }

    fn finish(mut self) -> Report {
        // stable: within a severity, findings keep the order of the checks
        self.findings.sort_by_key(|f| f.severity);
        self.ok = !self.findings.iter().any(Finding::fails);
        self
    }
}

/// What the workspace checks share: looked up once, so every family judges
/// the same snapshot.
pub(crate) struct Context {
    pub paths: Paths,
    pub hub: HubState,
    /// The process table, without doctor itself.
    pub processes: Vec<ProcessRow>,
    pub now: OffsetDateTime,
}

impl Context {
    /// The running hub's pid, if a hub runs.
    pub fn hub_pid(&self) -> Option<u32> {
        match &self.hub {
            HubState::Running(record) => Some(record.pid),
            HubState::Stopped { .. } => None,
        }
    }

    /// True for a coordination server started with this workspace's config.
    pub fn is_our_server(&self, row: &ProcessRow) -> bool {
        crate::hub::server::runs_our_config(&self.paths, &row.info)
    }

    /// True for a `bones hub start` process working for this workspace,
    /// judged as that process itself would find its workspace: from its
    /// working directory and its own `BONES_DIR`.
    pub fn is_our_hub_process(&self, row: &ProcessRow) -> bool {
        if !record::looks_like_hub(&row.info.cmdline) {
            return false;
        }
        let Some(cwd) = &row.cwd else {
            return false;
        };
        let bones_dir = row
            .env(BONES_DIR_ENV)
            .filter(|dir| !dir.is_empty())
            .map(|dir| cwd.join(dir));
        Workspace::discover_with(cwd, bones_dir)
            .is_ok_and(|ws| same_dir(&ws.state_dir, &self.paths.state_dir))
    }

    /// True for any process of this workspace: its hub (running or
    /// orphaned) or a coordination server started with its config.
    pub fn is_ours(&self, pid: u32) -> bool {
        Some(pid) == self.hub_pid()
            || self.processes.iter().any(|row| {
                row.pid == pid && (self.is_our_server(row) || self.is_our_hub_process(row))
            })
    }

    /// A process's row, if it is in the snapshot.
    pub fn process(&self, pid: u32) -> Option<&ProcessRow> {
        self.processes.iter().find(|row| row.pid == pid)
    }
}

/// Runs every check for the workspace containing `cwd` (only the tools when
/// there is none). Never starts, stops or changes anything.
pub fn run(cwd: &Path) -> Report {
    let mut report = Report::new();
    tools::check(&mut report);
    let ws = match Workspace::discover(cwd) {
        Ok(ws) => ws,
        Err(err) => {
            let (detail, problem, fix) = match &err {
                WorkspaceError::NotFound { start } => (
                    "none",
                    format!(
                        "no bones workspace in {} or any parent; only the tools were checked",
                        start.display()
                    ),
                    "bones up  # in your repository's root, to make it one".to_string(),
                ),
                WorkspaceError::BadBonesDir { .. } => (
                    "unusable",
                    format!("{err}; only the tools were checked"),
                    format!(
                        "unset {BONES_DIR_ENV}  # or point it at a workspace's state directory"
                    ),
                ),
                WorkspaceError::Io { .. } | WorkspaceError::NotPrivate(_) => (
                    "unreadable",
                    format!("{err}; only the tools were checked"),
                    "cd /path/to/your/repository && bones doctor".to_string(),
                ),
            };
            let finding = Finding::info("no-workspace", problem, fix);
            report.record("workspace", detail, vec![finding]);
            return report.finish();
        }
    };
    let paths = Paths::new(&ws);
    report.record(
        "workspace",
        format!(
            "{} (state in {})",
            ws.root.display(),
            ws.state_dir.display()
        ),
        Vec::new(),
    );
    report.workspace = Some(WorkspaceInfo {
        root: ws.root.clone(),
        state_dir: ws.state_dir.clone(),
    });
    let ctx = Context {
        hub: record::hub_state(&paths),
        paths,
        processes: process::scan(),
        now: OffsetDateTime::now_utc(),
    };
    processes::check(&ctx, &mut report);
    files::check(&ctx, &mut report);
    ports::check(&ctx, &mut report);
    disk::check(&ctx, &mut report);
    store::check(&ctx, &mut report);
    log::check(&ctx, &mut report);
    report.finish()
}

/// True when both paths name the same directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

pub(crate) use crate::sys::fsutil::shell_word as shell_quote;

/// A process start time (seconds since the epoch) as UTC RFC 3339.
pub(crate) fn format_start(start_time: u64) -> String {
    i64::try_from(start_time)
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .map(crate::sys::clock::format_rfc3339)
        .unwrap_or_else(|| "at an unknown time".to_string())
}

/// A command line fit for a one-line message: control characters become
/// spaces and a long one is cut.
pub(crate) fn short_cmdline(cmdline: &str) -> String {
    const MAX: usize = 80;
    let line: String = cmdline
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line,
    }
}

/// `kill <pid>  # <why> started <time> from <dir>`: the fix for a stray
/// process, saying enough to recognise it before killing it.
pub(crate) fn kill_fix(row: &ProcessRow, what: &str) -> String {
    let from = row
        .cwd
        .as_deref()
        .map(|cwd| format!(" from {}", cwd.display()))
        .unwrap_or_default();
    format!(
        "kill {}  # {what} started {}{from}",
        row.pid,
        format_start(row.info.start_time)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(
            shell_quote(Path::new("/a/b.c/nats.token")),
            "/a/b.c/nats.token"
        );
        assert_eq!(shell_quote(Path::new("/a b/x")), "'/a b/x'");
        assert_eq!(shell_quote(Path::new("/it's")), r"'/it'\''s'");
        assert_eq!(shell_quote(Path::new("/$HOME")), "'/$HOME'");
    }

    #[test]
    fn command_lines_fit_on_one_line() {
        assert_eq!(short_cmdline("python3 -c\nprint(1)"), "python3 -c print(1)");
        let long = "x".repeat(200);
        assert_eq!(short_cmdline(&long).chars().count(), 83);
    }

    #[test]
    fn report_is_ok_with_info_only_and_sorts_by_severity() {
        let mut report = Report::new();
        report.record("a", "x", vec![Finding::info("i", "p".into(), "f".into())]);
        assert!(report.clone().finish().ok);
        report.record(
            "b",
            "y",
            vec![
                Finding::warning("w", "p".into(), "f".into()),
                Finding::error("e", "p".into(), "f".into()),
            ],
        );
        let report = report.finish();
        assert!(!report.ok);
        let ids: Vec<_> = report.findings.iter().map(|f| f.id).collect();
        assert_eq!(ids, ["e", "w", "i"]);
        assert_eq!(report.findings[0].check, "b");
        assert!(report.checks[0].ok && !report.checks[1].ok);
    }
}
