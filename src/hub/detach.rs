//! `hub start --detach`: run the hub as a new session in the background and
//! return once it is ready.
//!
//! Ready means the new process answers `/.status` on its repo port with its
//! own pid and `status: ok` (or fails only its `store` part: damage found
//! in the store, which the running hub reports). Checking the pid rejects a foreign service that
//! happens to hold the port (Go #138 item 1); checking `ok` means JetStream
//! answered. If the child dies or the deadline passes, the error carries the
//! tail of hub.log, where the real cause is (Go #127).

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::log::HubLog;
use super::paths::Paths;
use super::ports::Ports;
use super::probe::{self, Probe};
use super::{HubError, StartOptions, log_tail, process};
use crate::duration;

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
    // SAFETY: setsid is async-signal-safe.
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
            process::terminate(pid, Duration::from_secs(2));
            let _ = child.wait();
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
