//! Process liveness and termination.
//!
//! A pid alone lies: after a crash the kernel may hand the hub's old pid to
//! an unrelated process, and `kill(pid, 0)` would then call a dead hub alive
//! (decision 7). Liveness therefore compares the process start time with the
//! one recorded when the process was launched.

use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

/// What the process table says about one pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Start time in seconds since the Unix epoch.
    pub start_time: u64,
    /// The command line, arguments joined by spaces.
    pub cmdline: String,
    /// The command line, one argument each (paths with spaces stay whole).
    pub args: Vec<String>,
    /// True for a zombie: exited but not yet reaped by its parent.
    pub zombie: bool,
    /// Its real and effective user ids, when the table shows them.
    pub uids: Option<(u32, u32)>,
}

impl ProcessInfo {
    /// True when the process runs as the calling user, really and
    /// effectively: the only processes bones ever stops on the strength
    /// of a record outside a workspace (`hub reap`).
    pub fn is_own(&self) -> bool {
        let me = nix::unistd::geteuid().as_raw();
        self.uids == Some((me, me))
    }
}

/// Looks a pid up in the process table.
pub fn inspect(pid: u32) -> Option<ProcessInfo> {
    if pid == 0 || pid > i32::MAX as u32 {
        return None;
    }
    let spid = sysinfo::Pid::from_u32(pid);
    let mut system = System::new().ok()?;
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[spid]),
        true,
        ProcessRefreshKind::nothing()
            .with_cmd(UpdateKind::Always)
            .with_user(UpdateKind::Always),
    );
    system.process(spid).map(info_of)
}

fn info_of(process: &sysinfo::Process) -> ProcessInfo {
    let args: Vec<String> = process
        .cmd()
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    ProcessInfo {
        start_time: process.start_time(),
        cmdline: args.join(" "),
        args,
        zombie: matches!(process.status(), sysinfo::ProcessStatus::Zombie),
        uids: process
            .user_id()
            .zip(process.effective_user_id())
            .map(|(real, effective)| (**real, **effective)),
    }
}

/// One live process of the whole table, as seen by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRow {
    pub pid: u32,
    pub parent: Option<u32>,
    pub info: ProcessInfo,
    /// Its working directory, when readable (own processes, or as root).
    pub cwd: Option<PathBuf>,
    /// Its `NAME=value` environment, when readable.
    pub environ: Vec<String>,
}

impl ProcessRow {
    /// The value of one environment variable of the process.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.environ
            .iter()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }
}

/// Every live (not zombie) process but the calling one: for finding
/// processes that outlived their owner, which no pid file names any more.
pub fn scan() -> Vec<ProcessRow> {
    let Ok(mut system) = System::new() else {
        return Vec::new();
    };
    system.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing()
            .with_cmd(UpdateKind::Always)
            .with_cwd(UpdateKind::Always)
            .with_environ(UpdateKind::Always),
    );
    let me = std::process::id();
    let mut rows: Vec<ProcessRow> = system
        .processes()
        .iter()
        .filter(|(pid, _)| pid.as_u32() != me)
        // threads show up as processes on Linux; their leader stands for them
        .filter(|(_, p)| p.thread_kind().is_none())
        .map(|(pid, p)| ProcessRow {
            pid: pid.as_u32(),
            parent: p.parent().map(|pp| pp.as_u32()),
            info: info_of(p),
            cwd: p.cwd().map(PathBuf::from),
            environ: p
                .environ()
                .iter()
                .map(|kv| kv.to_string_lossy().into_owned())
                .collect(),
        })
        .filter(|row| !row.info.zombie)
        .collect();
    rows.sort_by_key(|row| row.pid);
    rows
}

/// A file a process holds open, as `/proc/<pid>/fd` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFile {
    /// The path it was opened by (where it is now, if it was renamed).
    pub path: PathBuf,
    /// Its link count now: 0 once every name of it was deleted, while the
    /// process still holds it.
    pub links: u64,
}

/// The files `pid` holds open under the file name `name`, deleted ones
/// included. Only the user's own processes (or every one, as root) show
/// their descriptors; another's show none.
pub fn open_files_named(pid: u32, name: &str) -> Vec<OpenFile> {
    use std::os::unix::fs::MetadataExt;
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            let text = target.to_string_lossy();
            // the kernel marks a descriptor whose file has no name left
            let path = PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(&text));
            if path.file_name()? != name {
                return None;
            }
            // the magic link leads to the open file itself, named or not
            let links = std::fs::metadata(fd.path()).ok()?.nlink();
            Some(OpenFile { path, links })
        })
        .collect()
}

/// True while `pid` runs and started at `start_time` (seconds since epoch).
pub fn is_same_process(pid: u32, start_time: u64) -> bool {
    inspect(pid).is_some_and(|p| !p.zombie && p.start_time == start_time)
}

/// Sends `signal` to `pid`; a process already gone is not an error.
pub fn signal(pid: u32, signal: Signal) -> nix::Result<()> {
    let Ok(raw) = i32::try_from(pid) else {
        return Err(Errno::ESRCH);
    };
    if raw <= 0 {
        return Err(Errno::ESRCH);
    }
    match kill(Pid::from_raw(raw), signal) {
        Err(Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// Waits until `pid` is gone or `timeout` passes; true when it is gone.
///
/// Waits on a pidfd, which turns readable the moment the process exits, so
/// a stop returns as soon as its process is gone (`hub stop` once polled
/// every millisecond, half a millisecond late on average). Where pidfds are
/// not to be had (a kernel before 5.3, a sandbox that refuses the call) it
/// looks every millisecond instead.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    if let Some(gone) = wait_pidfd(pid, deadline) {
        return gone;
    }
    loop {
        if !is_alive(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// [`wait_gone`] on a pidfd; `None` when no pidfd can be opened for `pid`.
fn wait_pidfd(pid: u32, deadline: Instant) -> Option<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let raw = i32::try_from(pid).ok().filter(|raw| *raw > 0)?;
    let pidfd = match rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(raw)?,
        rustix::process::PidfdFlags::empty(),
    ) {
        Ok(pidfd) => pidfd,
        // no such process: already gone
        Err(rustix::io::Errno::SRCH) => return Some(true),
        Err(_) => return None,
    };
    loop {
        // a zombie counts as gone, as in `is_alive`: its pidfd is readable
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = Timespec::try_from(left).ok()?;
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) if Instant::now() >= deadline => return Some(!is_alive(pid)),
            Ok(0) | Err(rustix::io::Errno::INTR) => {}
            Ok(_) => return Some(true),
            Err(_) => return None,
        }
    }
}

/// True while `pid` names a running (not zombie) process: `/proc/<pid>/stat`
/// exists and does not say zombie. Cheap enough for polling loops.
pub fn is_alive(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // the state follows the last ')' (the command may contain one)
            let state = stat
                .iter()
                .rposition(|&b| b == b')')
                .and_then(|i| stat.get(i + 2));
            state != Some(&b'Z') && state != Some(&b'X')
        }
        Err(_) => false,
    }
}

/// How a [`terminate`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// Exited within the grace period after SIGTERM.
    Exited,
    /// Ignored SIGTERM past the grace period and was killed.
    Killed,
    /// Still there after SIGKILL (uninterruptible sleep, or not ours to kill).
    Survived,
}

/// SIGTERM, up to `grace` for a clean exit, then SIGKILL.
pub fn terminate(pid: u32, grace: Duration) -> Termination {
    if signal(pid, Signal::SIGTERM).is_err() {
        return if is_alive(pid) {
            Termination::Survived
        } else {
            Termination::Exited
        };
    }
    if wait_gone(pid, grace) {
        return Termination::Exited;
    }
    let _ = signal(pid, Signal::SIGKILL);
    if wait_gone(pid, Duration::from_secs(2)) {
        Termination::Killed
    } else {
        Termination::Survived
    }
}

/// The parent of `pid`, from `/proc/<pid>/stat` (its fourth field, after
/// the command in parentheses, which may itself hold a `)`); `None` when the
/// process is gone or has no parent (pid 1's is 0).
pub fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(after + 2..)?).ok()?;
    let ppid: u32 = rest.split_ascii_whitespace().nth(1)?.parse().ok()?;
    (ppid != 0).then_some(ppid)
}

/// The short command name of `pid` (`/proc/<pid>/comm`: at most 15 bytes,
/// e.g. `sh`, `node`, `claude`).
pub fn command_name(pid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end_matches('\n').to_string())
}

/// Start time of the calling process (seconds since the epoch).
pub fn own_start_time() -> u64 {
    inspect(std::process::id())
        .map(|p| p.start_time)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_itself_and_rejects_a_wrong_start_time() {
        let me = std::process::id();
        let info = inspect(me).unwrap();
        assert!(is_same_process(me, info.start_time));
        assert!(!is_same_process(me, info.start_time + 1000));
        assert!(!is_alive(0));
        assert!(info.is_own());
    }

    #[test]
    fn open_files_show_a_deleted_file_with_no_links() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().canonicalize().unwrap().join("held.lock");
        let _held = std::fs::File::create(&path).unwrap();
        let me = std::process::id();
        let open = open_files_named(me, "held.lock");
        assert_eq!(
            open,
            [OpenFile {
                path: path.clone(),
                links: 1
            }]
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            open_files_named(me, "held.lock"),
            [OpenFile { path, links: 0 }]
        );
        assert!(open_files_named(me, "other.lock").is_empty());
    }

    #[test]
    fn scan_sees_a_child_with_its_parent_cwd_and_environment() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = tmp.path().canonicalize().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .current_dir(&cwd)
            .env("BONES_SCAN_TEST", "here")
            .spawn()
            .unwrap();
        // under load the kernel may show the child's new image a moment
        // after spawn returns: scan until its environment reads (bounded)
        let mut rows = scan();
        for _ in 0..200 {
            if rows
                .iter()
                .any(|r| r.pid == child.id() && r.env("BONES_SCAN_TEST").is_some())
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            rows = scan();
        }
        let _ = child.kill();
        let _ = child.wait();
        let row = rows
            .iter()
            .find(|r| r.pid == child.id())
            .expect("child listed");
        assert_eq!(row.parent, Some(std::process::id()));
        assert_eq!(row.cwd.as_deref(), Some(cwd.as_path()));
        assert_eq!(row.env("BONES_SCAN_TEST"), Some("here"));
        assert_eq!(row.info.args, ["sleep", "30"]);
        assert!(rows.iter().all(|r| r.pid != std::process::id()));
    }

    #[test]
    fn terminate_kills_a_process_that_ignores_sigterm() {
        use std::io::BufRead;
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "trap '' TERM; echo ready; while :; do sleep 0.05; done",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        // the trap is installed once the child says so
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        // reap in the background so the pid does not linger as a zombie
        let reaper = thread::spawn(move || child.wait());
        assert_eq!(
            terminate(pid, Duration::from_millis(200)),
            Termination::Killed
        );
        reaper.join().unwrap().unwrap();
        assert!(!is_alive(pid));
    }

    #[test]
    fn parent_and_command_name_read_the_process_table() {
        let me = std::process::id();
        assert_eq!(parent(me), Some(std::os::unix::process::parent_id()));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert_eq!(parent(child.id()), Some(me));
        assert_eq!(command_name(child.id()).as_deref(), Some("sleep"));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(parent(child.id()), None);
    }
}
