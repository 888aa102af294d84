//! `bones doctor`: print what is wrong and how to fix it.

use std::io::Write;

use clap::Args;

use super::Failure;
use crate::doctor::{self, Report};
use crate::sys::error::ErrorKind;

#[derive(Debug, Args)]
#[command(
    after_help = "Checks: nats-server (present, 2.10 or newer) and git; stale hub.pid and \
    nats.pid; orphaned nats-server or hub processes of this workspace; stale lock files; \
    URL files whose ports other processes hold; free disk space; state-file permissions; \
    ERROR entries in hub.log during the last hour. Outside a workspace only the tools are \
    checked.\n\n\
    Each finding prints as `SEVERITY ID PROBLEM` with the command that fixes it on the \
    next line. Severities: error and warning (something to fix), info (nothing to fix).\n\n\
    Exit codes: 0 no error or warning (info findings allowed), 1 at least one error or \
    warning.\n\n\
    Examples:\n  \
    bones doctor\n  \
    bones doctor --json | jq -r '.findings[] | select(.severity == \"error\") | .fix'\n  \
    bones doctor --json | jq '.checks[] | {name, detail}'"
)]
pub struct DoctorArgs {
    /// Print one JSON object on stdout: {ok, workspace, findings: [{id,
    /// severity, check, problem, fix}], checks: [{name, ok, detail}]}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DoctorArgs) -> Result<(), Failure> {
    let cwd = super::current_dir()?;
    let found = doctor::run(&cwd);
    let printed = if args.json {
        serde_json::to_string(&super::json::document(&found))
            .map_err(std::io::Error::other)
            .and_then(|json| writeln!(std::io::stdout(), "{json}"))
    } else {
        print_human(&found)
    };
    if let Err(err) = printed
        && err.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(Failure::new(
            ErrorKind::Io,
            format!("cannot write the report: {err}"),
        ));
    }
    eprintln!("{}", summary(&found));
    if found.ok {
        Ok(())
    } else {
        // the report said what to fix
        Err(Failure::quiet(
            ErrorKind::Unhealthy,
            "doctor found something to fix",
        ))
    }
}

/// One line per finding, its fix indented under it, on stdout.
fn print_human(found: &Report) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let id_width = found.findings.iter().map(|f| f.id.len()).max().unwrap_or(0);
    for finding in &found.findings {
        writeln!(
            out,
            "{:<7} {:<id_width$}  {}",
            finding.severity.as_str(),
            finding.id,
            finding.problem
        )?;
        writeln!(out, "{:<7} {:<id_width$}  fix: {}", "", "", finding.fix)?;
    }
    out.flush()
}

fn summary(found: &Report) -> String {
    let count = |severity| {
        found
            .findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    };
    let (errors, warnings) = (
        count(doctor::Severity::Error),
        count(doctor::Severity::Warning),
    );
    let checks = found.checks.len();
    if found.ok {
        format!("doctor: no problems ({checks} checks)")
    } else {
        format!("doctor: {errors} error(s), {warnings} warning(s) in {checks} checks")
    }
}
