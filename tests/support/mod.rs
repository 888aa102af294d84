//! Real fixtures for integration tests: a git repository in a temp dir with
//! a temp `HOME`, the `bones` binary, and a drop guard that kills every hub
//! and `nats-server` the test started, even when the test fails.

#![allow(dead_code)]

pub mod browser;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bones::state::Paths;
use bones::state::workspace::Workspace;
pub use nix::sys::signal::Signal;

pub const BONES: &str = env!("CARGO_BIN_EXE_bones");

/// A git repository with a few tracked files, made a bones workspace.
pub struct TestWorkspace {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub home: PathBuf,
    extra_pids: Vec<u32>,
}

impl TestWorkspace {
    /// A committed repository (`README.md`, `src/main.rs`, an executable
    /// `run.sh`) on which `bones up` has run.
    pub fn new() -> TestWorkspace {
        let ws = TestWorkspace::bare_dir();
        fs::create_dir_all(ws.root.join("src")).unwrap();
        fs::write(ws.root.join("README.md"), "# example\n").unwrap();
        fs::write(ws.root.join("src/main.rs"), "fn main() {}\n").unwrap();
        fs::write(ws.root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(ws.root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        ws.git(&["init", "-q", "-b", "main"]);
        ws.git(&["add", "."]);
        ws.git(&["commit", "-qm", "init"]);
        ws.ok(&["up"]);
        ws
    }

    /// An empty directory (no git, no workspace) with a temp HOME.
    pub fn bare_dir() -> TestWorkspace {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo").canonicalize().unwrap_or_else(|_| {
            fs::create_dir_all(tmp.path().join("repo")).unwrap();
            tmp.path().join("repo").canonicalize().unwrap()
        });
        let home = tmp.path().join("home");
        fs::create_dir_all(&home).unwrap();
        TestWorkspace {
            _tmp: tmp,
            root,
            home,
            extra_pids: Vec::new(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(".bones")
    }

    pub fn paths(&self) -> Paths {
        Paths::new(&Workspace {
            root: self.root.clone(),
            state_dir: self.state_dir(),
        })
    }

    pub fn git(&self, args: &[&str]) {
        let status = Command::new("git")
            .args(args)
            .current_dir(&self.root)
            .env("HOME", &self.home)
            .env("GIT_AUTHOR_NAME", "test")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "test")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?} failed");
    }

    /// Runs git on the hub repository and returns its trimmed stdout
    /// (empty when git fails).
    pub fn hub_git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(self.state_dir().join("hub.git"))
            .args(args)
            .env("HOME", &self.home)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A `bones` command in the workspace root with an isolated environment.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_in(&self.root, args)
    }

    pub fn command_in(&self, dir: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(BONES);
        command
            .args(args)
            .current_dir(dir)
            .env("HOME", &self.home)
            // the registry of hubs goes under the temp HOME
            .env_remove("XDG_STATE_HOME")
            .env("NO_COLOR", "1")
            .env_remove("BONES_DIR")
            .env_remove("BONES_HUB_LOG_LEVEL")
            .env_remove("BONES_LOG_MAX_SIZE")
            .env_remove("BONES_LOG_MAX_FILES")
            .env_remove("BONES_AGENT_ID")
            .env_remove("BONES_SLOT")
            .stdin(Stdio::null());
        if let Some(nats) = nats_server() {
            command.env("BONES_NATS_SERVER", nats);
        }
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and asserts exit 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "bones {args:?} failed ({}):\nstdout: {}\nstderr: {}\nhub.log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.hub_log()
        );
        out
    }

    pub fn start(&self) -> Output {
        self.ok(&["hub", "start", "--detach"])
    }

    pub fn stop(&self) -> Output {
        self.ok(&["hub", "stop"])
    }

    /// `hub status --json` as a value, with the exit code.
    pub fn status(&self) -> (i32, serde_json::Value) {
        let out = self.run(&["hub", "status", "--json"]);
        let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "status --json is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (out.status.code().unwrap_or(-1), value)
    }

    pub fn hub_pid(&self) -> Option<u32> {
        read_pid(&self.state_dir().join("hub.pid"))
    }

    pub fn nats_pid(&self) -> Option<u32> {
        read_pid(&self.state_dir().join("nats.pid"))
    }

    pub fn read_state(&self, name: &str) -> String {
        fs::read_to_string(self.state_dir().join(name)).unwrap_or_default()
    }

    pub fn hub_log(&self) -> String {
        self.read_state("hub.log")
    }

    /// Lifecycle messages in hub.log, in order.
    pub fn log_messages(&self) -> Vec<String> {
        self.hub_log()
            .lines()
            .map(|line| {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
                v["msg"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }

    /// Kills this pid too when the test ends.
    pub fn track(&mut self, pid: u32) {
        self.extra_pids.push(pid);
    }

    /// The port recorded in `hub-repo-url`.
    pub fn repo_port(&self) -> u16 {
        bones::state::ports::parse_loopback_url(&self.read_state("hub-repo-url"), "http").unwrap()
    }

    /// The port recorded in `hub-nats-url`.
    pub fn coord_port(&self) -> u16 {
        bones::state::ports::parse_loopback_url(&self.read_state("hub-nats-url"), "nats").unwrap()
    }

    /// A JetStream context on this workspace's coordination server.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        let client = bones::coord::connect(&self.paths()).await.unwrap();
        async_nats::jetstream::new(client)
    }

    /// Every live process started for this workspace: a hub (its cwd is the
    /// root) or a coordination server (its command line names the state dir).
    pub fn processes(&self) -> Vec<u32> {
        workspace_processes(&self.root, &self.state_dir())
    }
}

impl Drop for TestWorkspace {
    fn drop(&mut self) {
        let mut pids = self.processes();
        pids.extend(self.extra_pids.iter().copied());
        pids.extend(self.hub_pid());
        pids.extend(self.nats_pid());
        for pid in pids {
            if pid != std::process::id() {
                send_signal(pid, Signal::SIGKILL);
            }
        }
    }
}

/// Sends `signal` to `pid`, ignoring a process already gone.
pub fn send_signal(pid: u32, signal: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
}

pub fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The state letter `/proc/<pid>/stat` reports (`R`, `S`, `T`, `Z`, ...).
fn proc_state(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit(')').next()?;
    after_name.split_whitespace().next().map(str::to_string)
}

/// SIGSTOPs `pid` and waits until the kernel reports it stopped, so a test
/// never races the signal's delivery.
pub fn freeze(pid: u32) {
    send_signal(pid, Signal::SIGSTOP);
    let stopped = wait_until(Duration::from_secs(10), || {
        matches!(proc_state(pid).as_deref(), Some("T" | "t"))
    });
    assert!(stopped, "pid {pid} did not stop after SIGSTOP");
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    proc_state(pid).is_some_and(|state| state != "Z" && state != "X")
}

fn workspace_processes(root: &Path, state_dir: &Path) -> Vec<u32> {
    let state = state_dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || !alive(pid) {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok();
        let is_bones = cmdline.contains("bones") && cwd.as_deref() == Some(root);
        let is_nats = cmdline.contains("nats-server") && cmdline.contains(&state);
        if is_bones || is_nats {
            found.push(pid);
        }
    }
    found
}

/// A single-threaded runtime for the library calls a test makes.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `nats-server` binary tests hand to bones: `$BONES_NATS_SERVER`, else
/// the first on PATH.
pub fn nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BONES_NATS_SERVER").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// A spawned child that is killed when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every message on a stream, oldest first.
pub async fn stream_messages(
    js: &async_nats::jetstream::Context,
    stream: &async_nats::jetstream::stream::Stream,
) -> Vec<async_nats::jetstream::Message> {
    use futures::StreamExt;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::push::OrderedConfig {
            deliver_subject: js.client().new_inbox(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return out;
    }
    let mut messages = consumer.messages().await.unwrap();
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        let last = message.info().unwrap().pending == 0;
        out.push(message);
        if last {
            break;
        }
    }
    out
}

/// Every event on `tasks-events`, oldest first, as JSON.
pub async fn task_events(js: &async_nats::jetstream::Context) -> Vec<serde_json::Value> {
    let stream = js
        .get_stream(bones::hub::projector::EVENTS_STREAM)
        .await
        .unwrap();
    stream_messages(js, &stream)
        .await
        .iter()
        .map(|message| serde_json::from_slice(&message.payload).unwrap())
        .collect()
}

/// Another local user (`nobody`, uid 65534) racing for a port, as a real
/// unprivileged process: it tries to bind `127.0.0.1:port` (with
/// `SO_REUSEADDR`) every half millisecond until it holds it, then answers
/// every connection with a NATS `INFO` line carrying a challenge, answers
/// `PING` with `PONG`, and reports every line a client sends. With
/// `close_listener` it stops listening once it has accepted a connection
/// and only then sends `INFO`: the far end of that connection is all that
/// is left of it.
pub struct Impostor {
    child: KillOnDrop,
    events: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// The impostor's program; see [`Impostor`].
const IMPOSTOR: &str = r#"
import socket, sys, threading, time
port, close_listener = int(sys.argv[1]), sys.argv[2] == "close"
lock = threading.Lock()
def say(text):
    with lock:
        print(text, flush=True)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
say("racing")
while True:
    try:
        s.bind(("127.0.0.1", port))
        break
    except OSError:
        time.sleep(0.0005)
s.listen(64)
say("bound")
info = ('INFO {"server_id":"NIMPOSTOR","server_name":"impostor","version":"2.11.0",'
        '"proto":1,"host":"127.0.0.1","port":%d,"headers":true,"max_payload":1048576,'
        '"auth_required":true,"nonce":"aW1wb3N0b3Itbm9uY2U"}\r\n' % port).encode()
def serve(conn):
    try:
        conn.sendall(info)
        buf = b""
        while True:
            data = conn.recv(65536)
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                say("recv " + line.decode("utf-8", "replace").rstrip("\r"))
                if line.startswith(b"PING"):
                    conn.sendall(b"PONG\r\n")
    except OSError:
        pass
while True:
    conn, _ = s.accept()
    say("accepted")
    if close_listener:
        s.close()
        say("closed")
        serve(conn)
        threading.Event().wait()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

impl Impostor {
    /// Starts racing for `port`; returns once the race is on. `None`, with
    /// a message on stderr, where this process cannot act as another user.
    pub fn race(port: u16) -> Option<Impostor> {
        Impostor::start(port, false)
    }

    /// [`Impostor::race`], closing its listener after the first accept.
    pub fn race_closing_listener(port: u16) -> Option<Impostor> {
        Impostor::start(port, true)
    }

    fn start(port: u16, close_listener: bool) -> Option<Impostor> {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        if !nix::unistd::getuid().is_root() {
            eprintln!("SKIPPED: not root, so no process can run as another user here");
            return None;
        }
        // a python3 that `nobody` may run (a pyenv under /root is out of reach)
        let Some(python) = ["/usr/bin/python3", "/usr/local/bin/python3"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
        else {
            eprintln!("SKIPPED: no /usr/bin/python3 for the other user to run");
            return None;
        };
        let mut command = Command::new(python);
        command
            .args(["-u", "-c", IMPOSTOR, &port.to_string()])
            .arg(if close_listener { "close" } else { "keep" })
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let nobody = 65534;
                nix::unistd::setgroups(&[])?;
                nix::unistd::setgid(nix::unistd::Gid::from_raw(nobody))?;
                nix::unistd::setuid(nix::unistd::Uid::from_raw(nobody))?;
                Ok(())
            });
        }
        let mut child = KillOnDrop(command.spawn().expect("the impostor starts"));
        let stdout = child.0.stdout.take().unwrap();
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = events.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let impostor = Impostor {
            child,
            events,
            reader: Some(reader),
        };
        let racing = wait_until(Duration::from_secs(10), || {
            impostor.events().iter().any(|e| e == "racing")
        });
        assert!(
            racing,
            "the impostor did not start: {:?}",
            impostor.events()
        );
        Some(impostor)
    }

    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    /// Whether it holds the port now (it never gives it back).
    pub fn holds_port(&self) -> bool {
        self.events().iter().any(|e| e == "bound")
    }

    /// How many connections it accepted.
    pub fn accepted(&self) -> usize {
        self.events().iter().filter(|e| *e == "accepted").count()
    }

    /// Every line clients sent it, in order.
    pub fn received(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|e| e.strip_prefix("recv "))
            .map(str::to_string)
            .collect()
    }

    /// The `CONNECT` lines among [`Impostor::received`]: what a client
    /// answered it with.
    pub fn connects(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .filter(|l| l.starts_with("CONNECT"))
            .collect()
    }

    /// Kills it; the port is free (of it) once this returns.
    pub fn stop(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `bones swarm join --slot SLOT --agent AGENT EXTRA...`, which must
/// succeed; returns the checkout it prints.
pub fn join(ws: &TestWorkspace, slot: &str, agent: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["swarm", "join", "--slot", slot, "--agent", agent];
    args.extend_from_slice(extra);
    let out = ws.ok(&args);
    PathBuf::from(stdout(&out).trim())
}

/// `bones swarm commit --slot SLOT -m MESSAGE`, whatever it answers.
pub fn commit(ws: &TestWorkspace, slot: &str, message: &str) -> Output {
    ws.run(&["swarm", "commit", "--slot", slot, "-m", message])
}

/// Speaks the NATS protocol by hand: reads INFO, sends `connect_line`
/// (`CONNECT {...}`) and a PING, and returns the server's first answer line.
pub fn nats_handshake(port: u16, connect_line: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut info = String::new();
    reader.read_line(&mut info).unwrap();
    assert!(info.starts_with("INFO "), "not a NATS server: {info}");
    let mut writer = stream;
    write!(writer, "{connect_line}\r\nPING\r\n").unwrap();
    let mut answer = String::new();
    while answer.trim().is_empty() {
        answer.clear();
        if reader.read_line(&mut answer).unwrap_or(0) == 0 {
            break;
        }
    }
    answer.trim().to_string()
}

/// Waits (up to a minute) until the hub's task projector has handled every
/// revision of the task bucket: nothing pending, nothing unacknowledged.
pub async fn projector_caught_up(js: &async_nats::jetstream::Context) {
    let board = bones::tasks::board::Board::open(js).await.unwrap();
    let caught_up = async {
        loop {
            let info = board
                .store()
                .stream
                .clone()
                .consumer_info(bones::hub::projector::DURABLE)
                .await
                .unwrap();
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), caught_up)
        .await
        .expect("the projector caught up");
}

/// Runs a fix `bones doctor` printed through `sh` in the workspace, with
/// `bones` on PATH; it must succeed. Returns its stdout and stderr.
pub fn run_fix(ws: &TestWorkspace, fix: &str) -> (String, String) {
    let mut command = Command::new("sh");
    command
        .args(["-c", fix])
        .current_dir(&ws.root)
        .env("HOME", &ws.home)
        .env("PATH", path_with_bones())
        .env_remove("BONES_DIR")
        .stdin(Stdio::null());
    if let Some(nats) = nats_server() {
        command.env("BONES_NATS_SERVER", nats);
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "fix `{fix}` failed: {}", stderr(&out));
    (stdout(&out), stderr(&out))
}

/// Runs `command` with `input` on its stdin and returns its output. The
/// input is written from a thread of its own, so a command that stops
/// reading early (a bound on its input, a whole JSON value read) never
/// deadlocks the test; the broken pipe it leaves is expected.
pub fn run_with_stdin(mut command: Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// An agent harness's CLI (`claude`, `codex`, `gemini`) as
/// `scripts/setup.sh` installs it: in `$BONES_HARNESS_BIN`, else
/// `~/.cache/bones-harness/node_modules/.bin` of the user running the tests.
pub fn harness_cli(name: &str) -> PathBuf {
    let dir = std::env::var_os("BONES_HARNESS_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/bones-harness/node_modules/.bin"))
        })
        .unwrap_or_default();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh (it installs the harness CLIs with npm) or set BONES_HARNESS_BIN",
        path.display()
    );
    path
}

/// `PATH` with the directory of the `bones` under test first, so a harness
/// finds `bones hook` and `bones mcp`.
pub fn path_with_bones() -> std::ffi::OsString {
    let bones_dir = Path::new(BONES).parent().unwrap().to_path_buf();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bones_dir).chain(std::env::split_paths(&rest))).unwrap()
}

/// Every hub.log entry of one event kind, parsed.
pub fn log_entries(ws: &TestWorkspace, event: &str) -> Vec<serde_json::Value> {
    ws.hub_log()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["event"] == event)
        .collect()
}
