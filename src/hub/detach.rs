//! `hub start --detach`: run the hub as a new session in the background and
//! return once it is ready.
//!
//! Ready means the new process says so on its stdout, a pipe to the
//! starter, at the moment `/.status` starts answering `ok` for it: it has
//! bound the repo port itself (a foreign service holding the port makes it
//! fail instead, Go #138 item 1) and JetStream answered. The starter wakes
//! on that line, or on the pipe's end when the hub exits, instead of
//! polling `/.status` (which cost a start a poll interval and a status
//! check in the hub, see the benchmarks in README.md). If the child dies or
//! the deadline passes, the error carries the tail of hub.log, where the
//! real cause is (Go #127).
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
    // the hub says it is ready on its stdout, this end of a pipe (see
    // `run::tell_starter_ready`): the wait ends the moment it is, with no
    // polling of `/.status`, and at once when the hub exits (end of file)
    let (mut ready, ready_tx) =
        std::io::pipe().map_err(HubError::io("cannot make a pipe for", paths.root.as_path()))?;
    command.stdout(ready_tx);
    let spawned = command.spawn();
    // the command's copy of the pipe's other end goes, so that only the
    // hub holds it
    drop(command);
    let mut child = spawned.map_err(HubError::io("cannot run", program.as_path()))?;
    let pid = child.id();
    let deadline = Instant::now() + opts.ready_timeout;
    match wait_for_ready(&mut ready, deadline) {
        Ok(true) => {}
        Ok(false) => {
            // end of file: the hub is gone (or is going)
            let status = child
                .wait()
                .map(|s| s.to_string())
                .unwrap_or_else(|e| format!("cannot be waited for: {e}"));
            log.error(
                "hub: detached hub exited before it was ready",
                status.clone(),
            );
            stop_spawned_servers(paths, log);
            return Err(HubError::ChildExited {
                status,
                tail: log_tail(paths, 12),
            });
        }
        Err(why) => {
            let last = match probe::status(ports.repo, Duration::from_millis(500)) {
                Probe::Answered { report, .. } if report.pid != pid => format!(
                    "port {} is answered by another process (pid {}); {why}",
                    ports.repo, report.pid
                ),
                Probe::Answered { report, .. } => format!("status {}", report.status),
                Probe::Foreign(reason) | Probe::Unreachable(reason) => reason,
            };
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
    }
    // Reap the child if this process outlives it (library callers); the CLI
    // exits right away and the hub is re-parented.
    thread::spawn(move || child.wait());
    Ok(pid)
}

/// Why the hub's stdout never said it was ready.
#[derive(Debug, thiserror::Error)]
enum Unready {
    #[error("it did not say it was ready")]
    Silent,
    /// The time left does not fit a poll's timeout.
    #[error("{0}")]
    Deadline(#[from] std::num::TryFromIntError),
    #[error("cannot wait for it: {0}")]
    Poll(#[source] rustix::io::Errno),
    #[error("cannot read its answer: {0}")]
    Read(#[source] std::io::Error),
}

/// Reads the hub's stdout until it says [`run::READY_LINE`] (`Ok(true)`)
/// or ends (`Ok(false)`: the hub exited); `Err` with why at `deadline`.
fn wait_for_ready(pipe: &mut std::io::PipeReader, deadline: Instant) -> Result<bool, Unready> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use std::io::Read;
    let mut said = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Unready::Silent);
        }
        let timeout = Timespec::try_from(left)?;
        let mut fds = [PollFd::new(&*pipe, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {}
            Err(err) => return Err(Unready::Poll(err)),
        }
        let mut chunk = [0u8; 256];
        match pipe.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => said.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(Unready::Read(err)),
        }
        if said
            .split(|&b| b == b'\n')
            .any(|line| line == run::READY_LINE)
        {
            return Ok(true);
        }
    }
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
