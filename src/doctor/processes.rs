//! Pid files and stray processes: a `hub.pid` or `nats.pid` naming a
//! process that is gone, a coordination server whose hub died, a hub
//! process that no `hub.pid` names.
//!
//! Which processes are this workspace's is decided exactly as the hub
//! decides it (liveness by start time, a server by the path of its config,
//! a hub by the workspace its own directory and `BONES_DIR` lead to), so a
//! process of another workspace is never called an orphan of this one.

use std::time::Duration;

use super::{Context, Finding, Report, kill_fix, short_cmdline};
use crate::state::record::HubState;
use crate::sys::process::ProcessRow;

/// A `hub start` process younger than this may be a start in progress (a
/// detach parent waiting for readiness, a starter waiting for the lock, a
/// hub not yet recorded): the ready timeout plus the lock's margin.
const START_GRACE: Duration = Duration::from_secs(20);

const STOP_CLEANS: &str = "bones hub stop";

pub(super) fn check(ctx: &Context, report: &mut Report) {
    hub_pid(ctx, report);
    nats_pid(ctx, report);
    orphans(ctx, report);
}

fn hub_pid(ctx: &Context, report: &mut Report) {
    match &ctx.hub {
        HubState::Running(record) => {
            let since = if record.started_at.is_empty() {
                String::new()
            } else {
                format!(" since {}", record.started_at)
            };
            report.record(
                "hub-pid",
                format!("hub running (pid {}){since}", record.pid),
                Vec::new(),
            );
        }
        HubState::Stopped {
            stale_pid: None, ..
        } => {
            report.record("hub-pid", "no hub running", Vec::new());
        }
        HubState::Stopped {
            stale_pid: Some(pid),
            ..
        } => {
            let now = match ctx.process(*pid) {
                Some(row) => format!(
                    "which is now another process ({})",
                    short_cmdline(&row.info.cmdline)
                ),
                None => "which is not running".to_string(),
            };
            let finding = Finding::warning(
                "stale-hub-pid",
                format!(
                    "{} names pid {pid}, {now}: the hub did not stop cleanly",
                    ctx.paths.hub_pid.display()
                ),
                format!("{STOP_CLEANS}  # removes the stale hub.pid and hub.json"),
            );
            report.record("hub-pid", "stale", vec![finding]);
        }
    }
}

fn nats_pid(ctx: &Context, report: &mut Report) {
    let Some(pid) = crate::hub::server::recorded_pid(&ctx.paths) else {
        report.record("nats-pid", "none recorded", Vec::new());
        return;
    };
    if ctx.hub_pid().is_some() {
        // the running hub's supervisor owns this file
        report.record(
            "nats-pid",
            format!("pid {pid}, supervised by the hub"),
            Vec::new(),
        );
        return;
    }
    if ctx.process(pid).is_some_and(|row| ctx.is_our_server(row)) {
        // an orphan: reported, with its fix, by the orphans check
        report.record("nats-pid", format!("pid {pid}, orphaned"), Vec::new());
        return;
    }
    let now = match ctx.process(pid) {
        Some(row) => format!(
            "which is now another process ({})",
            short_cmdline(&row.info.cmdline)
        ),
        None => "which is not running".to_string(),
    };
    let finding = Finding::warning(
        "stale-nats-pid",
        format!(
            "{} names pid {pid}, {now}: the hub did not stop cleanly",
            ctx.paths.nats_pid.display()
        ),
        format!("{STOP_CLEANS}  # removes the stale nats.pid"),
    );
    report.record("nats-pid", "stale", vec![finding]);
}

fn orphans(ctx: &Context, report: &mut Report) {
    let hub = ctx.hub_pid();
    let recorded = crate::hub::server::recorded_pid(&ctx.paths);
    // a server whose parent is a hub of ours goes with that hub: killing
    // the hub stops it (it dies with its parent), stopping it alone would
    // only get it restarted
    let hub_processes: Vec<u32> = ctx
        .processes
        .iter()
        .filter(|row| ctx.is_our_hub_process(row))
        .map(|row| row.pid)
        .collect();
    let mut findings = Vec::new();
    let mut looked_at = 0;
    for row in &ctx.processes {
        if ctx.is_our_server(row) {
            looked_at += 1;
            if row
                .parent
                .is_some_and(|parent| Some(parent) == hub || hub_processes.contains(&parent))
            {
                continue;
            }
            let problem = format!(
                "nats-server pid {} runs this workspace's nats.conf but {}",
                row.pid,
                match hub {
                    Some(pid) => format!("is not the child of the running hub (pid {pid})"),
                    None => "no hub runs".to_string(),
                }
            );
            // `hub stop` stops the server nats.pid names and removes the file
            let fix = if hub.is_none() && recorded == Some(row.pid) {
                format!(
                    "{STOP_CLEANS}  # stops orphaned nats-server {} and removes nats.pid",
                    row.pid
                )
            } else {
                kill_fix(row, "orphaned nats-server")
            };
            findings.push(Finding::error("orphaned-nats-server", problem, fix));
        } else if ctx.is_our_hub_process(row) {
            looked_at += 1;
            if Some(row.pid) == hub || is_young(ctx, row) {
                continue;
            }
            let problem = format!(
                "bones hub pid {} works for this workspace but hub.pid {}",
                row.pid,
                match hub {
                    Some(pid) => format!("names pid {pid}"),
                    None => "does not name it".to_string(),
                }
            );
            findings.push(Finding::error(
                "orphaned-hub",
                problem,
                kill_fix(row, "orphaned bones hub"),
            ));
        }
    }
    let detail = match findings.len() {
        0 => format!("{looked_at} process(es) of this workspace, none orphaned"),
        n => format!("{n} orphaned process(es)"),
    };
    report.record("orphans", detail, findings);
}

fn is_young(ctx: &Context, row: &ProcessRow) -> bool {
    let age = ctx.now.unix_timestamp() - i64::try_from(row.info.start_time).unwrap_or(0);
    age < START_GRACE.as_secs() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};

    use time::OffsetDateTime;

    use crate::state::Paths;
    use crate::state::workspace::{BONES_DIR_ENV, MARKER, Workspace};
    use crate::sys::process;

    /// A process whose command line reads `bones - hub start`: `cat`
    /// blocked on its stdin, named like a hub.
    fn fake_hub(cwd: &Path, bones_dir: Option<&Path>) -> Child {
        let mut command = Command::new("cat");
        command
            .arg0("bones")
            .args(["-", "hub", "start"])
            .current_dir(cwd)
            .env_remove(BONES_DIR_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(dir) = bones_dir {
            command.env(BONES_DIR_ENV, dir);
        }
        command.spawn().unwrap()
    }

    fn workspace(root: &Path) -> Workspace {
        let state_dir = root.join(".bones");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(&state_dir).unwrap();
        std::fs::write(state_dir.join(MARKER), "id\n").unwrap();
        Workspace {
            root: root.to_path_buf(),
            state_dir,
        }
    }

    fn orphaned_hubs(paths: &Paths, now: OffsetDateTime) -> Vec<String> {
        let ctx = Context {
            paths: paths.clone(),
            hub: HubState::Stopped {
                stale_pid: None,
                copy_of: None,
            },
            processes: process::scan(),
            now,
        };
        let mut report = Report::new();
        orphans(&ctx, &mut report);
        report
            .findings
            .iter()
            .filter(|f| f.id == "orphaned-hub")
            .map(|f| f.problem.clone())
            .collect()
    }

    #[test]
    fn hub_processes_are_attributed_to_their_own_workspace_only() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let a = workspace(&base.join("a"));
        // a path that contains a's: a naive prefix test would confuse them
        let b = workspace(&base.join("a-b"));
        let mut children = vec![
            // a's, started from a subdirectory
            fake_hub(&a.root.join("sub"), None),
            // b's
            fake_hub(&b.root, None),
            // runs in a's tree, but its BONES_DIR makes it b's
            fake_hub(&a.root, Some(&b.state_dir)),
        ];
        let pids: Vec<u32> = children.iter().map(Child::id).collect();
        let later = OffsetDateTime::now_utc() + time::Duration::hours(1);

        let of_a = orphaned_hubs(&Paths::new(&a), later);
        let of_b = orphaned_hubs(&Paths::new(&b), later);
        // a start in progress is not an orphan
        let young = orphaned_hubs(&Paths::new(&a), OffsetDateTime::now_utc());
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert_eq!(of_a.len(), 1, "{of_a:?}");
        assert!(of_a[0].contains(&format!("pid {} ", pids[0])), "{of_a:?}");
        assert_eq!(of_b.len(), 2, "{of_b:?}");
        assert!(
            of_b.iter()
                .any(|p| p.contains(&format!("pid {} ", pids[1])))
        );
        assert!(
            of_b.iter()
                .any(|p| p.contains(&format!("pid {} ", pids[2])))
        );
        assert!(young.is_empty(), "{young:?}");
    }
}
