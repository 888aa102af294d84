//! `hub start --detach`: run the hub as a new session in the background and
//! return once it is ready.
//!
//! Ready means the new process answers `/.status` on its repo port with its
//! own pid and `status: ok` (or fails only its `store` part: damage found
//! in the store, which the running hub reports). Checking the pid rejects a foreign service that
//! happens to hold the port (Go #138 item 1); checking `ok` means JetStream
//! answered. If the child dies or the deadline passes, the error carries the
//! tail of hub.log, where the real cause is (Go #127).
//!
//! A failed start leaves nothing running: the hub is stopped (SIGKILL after
//! a grace), and so is every coordination server running this state
//! directory's config, which only the failed hub can have spawned. A
//! `nats-server` that ignored SIGTERM once outlived its failed start,
//! re-parented to init and named by no `nats.pid`.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::probe::{self, Probe};
use crate::hub::{HubError, StartOptions, log_tail, run};
use crate::oplog::HubLog;
use crate::state::lock::RunLock;
use crate::state::paths::Paths;
use crate::state::ports::Ports;
use crate::sys::duration;
use crate::sys::process;

/// Spawns the background hub and waits for it; returns its pid.
pub(super) fn spawn(
    paths: &Paths,
    ports: Ports,
    opts: &StartOptions,
    log: &HubLog,
) -> Result<u32, HubError> {
    let program = match &opts.program {
        Some(program) => program.clone(),
        None => std::env::current_exe().map_err(HubError::io(
            "cannot locate the bones executable",
            paths.root.as_path(),
        ))?,
    };
    let mut command = Command::new(&program);
    command
        .args(["hub", "start", "--detached-child"])
        .args(["--repo-port", &ports.repo.to_string()])
        .args(["--coord-port", &ports.coord.to_string()])
        .args(["--drain-timeout", &duration::format(opts.drain_timeout)])
        .args(["--ready-timeout", &duration::format(opts.ready_timeout)])
        .current_dir(&paths.root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(level) = &opts.log_level {
        command.args(["--log-level", level]);
    }
    // SAFETY: setsid is async-signal-safe, and the closure touches no
    // memory of the parent. Why not safe code: std's `CommandExt::setsid`
    // is unstable, and calling setsid in the child after exec leaves it in
    // the starter's process group (a Ctrl-C there reaches it) until then,
    // while `process_group(0)` makes it a group leader, which setsid refuses.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command
        .spawn()
        .map_err(HubError::io("cannot run", program.as_path()))?;
    let pid = child.id();
    let deadline = Instant::now() + opts.ready_timeout;
    let mut last;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            log.error(
                "hub: detached hub exited before it was ready",
                status.to_string(),
            );
            stop_spawned_servers(paths, log);
            return Err(HubError::ChildExited {
                status: status.to_string(),
                tail: log_tail(paths, 12),
            });
        }
        match probe::status(ports.repo, Duration::from_millis(500)) {
            Probe::Answered { report, .. } if report.pid == pid && report.is_ready() => break,
            Probe::Answered { report, .. } if report.pid != pid => {
                last = format!(
                    "port {} is answered by another process (pid {})",
                    ports.repo, report.pid
                );
            }
            Probe::Answered { report, .. } => last = format!("status {}", report.status),
            Probe::Foreign(why) | Probe::Unreachable(why) => last = why,
        }
        if Instant::now() >= deadline {
            // the hub stops its own server within FAILED_START_GRACE; more
            // than that, and it is killed (its server is then stopped below)
            process::terminate(pid, run::FAILED_START_GRACE * 2);
            let _ = child.wait();
            stop_spawned_servers(paths, log);
            log.error("hub: detached hub not ready; stopped it", last.clone());
            return Err(HubError::NotReady {
                waited: opts.ready_timeout,
                reason: last,
                tail: log_tail(paths, 12),
            });
        }
        thread::sleep(Duration::from_millis(2));
    }
    // Reap the child if this process outlives it (library callers); the CLI
    // exits right away and the hub is re-parented.
    thread::spawn(move || child.wait());
    Ok(pid)
}

/// Stops every coordination server running this state directory's config,
/// after the hub this start spawned has gone: SIGTERM, then SIGKILL after
/// a grace.
///
/// Only with the run lock free (taken here while it works): then no hub of
/// this state directory lives, and every such server was spawned by the
/// failed one. A server can outlive its hub when it ignores the death
/// signal (SIGTERM), and can be missing from `nats.pid` when the hub was
/// killed between spawning it and writing the file: so the process table
/// is searched too.
fn stop_spawned_servers(paths: &Paths, log: &HubLog) {
    let Ok(Some(_held)) = RunLock::try_acquire(&paths.run_lock) else {
        return;
    };
    let mut pids: Vec<u32> = crate::hub::server::recorded_server(paths)
        .into_iter()
        .collect();
    pids.extend(
        process::scan()
            .into_iter()
            .filter(|row| crate::hub::server::runs_our_config(paths, &row.info))
            .map(|row| row.pid),
    );
    pids.sort_unstable();
    pids.dedup();
    for pid in pids {
        let how = match process::terminate(pid, run::FAILED_START_GRACE) {
            process::Termination::Exited => "stopped",
            process::Termination::Killed => "killed (it ignored SIGTERM)",
            process::Termination::Survived => "could not be stopped",
        };
        log.warn(format!(
            "hub: coord server (pid={pid}) of the failed start {how}"
        ));
    }
    let _ = crate::sys::fsutil::remove_if_exists(&paths.nats_pid);
}
