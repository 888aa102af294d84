//! `bones top` in a real terminal: tmux runs it in a detached session of a
//! fixed size on a private server, the test types with send-keys and reads
//! the screen with capture-pane. The view follows the swarm without a key
//! press, and every way out (q, a stop signal) leaves the terminal as it
//! was: the alternate screen left, raw mode off.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::{BONES, Signal, TestWorkspace, commit, join, send_signal, stderr, wait_until};

/// How long the screen may take to show what the test waits for.
const WAIT: Duration = Duration::from_secs(60);

/// What the pane prints after `bones top` ends: its exit code, then the
/// terminal's line discipline (`icanon`/`echo`, or `-icanon`/`-echo` when
/// raw mode was left on).
const AFTER: &str =
    "echo TOP-EXITED-$?; stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo)'";

/// A tmux server of its own (a socket in a temp dir), killed on drop with
/// everything it runs.
struct Tmux {
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

impl Tmux {
    /// A 160x45 session in the workspace running `bones ARGS`, then
    /// [`AFTER`], then waiting (so the pane stays to be read).
    fn run(ws: &TestWorkspace, args: &str) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let tmux = Tmux {
            socket: dir.path().join("tmux.sock"),
            _dir: dir,
        };
        let script = format!("'{BONES}' {args}; {AFTER}; exec cat");
        let mut command = tmux.command(&ws.root);
        command.args(["new-session", "-d", "-x", "160", "-y", "45"]);
        // the server, started by this command, hands its environment to the pane
        command
            .env("HOME", &ws.home)
            .env("BONES_NATS_SERVER", support::nats_server().unwrap())
            .env("TERM", "xterm-256color")
            .env_remove("BONES_DIR")
            .env_remove("BONES_NO_AUTOSTART")
            .env_remove("NO_COLOR");
        command.arg(script);
        let out = command.output().unwrap();
        assert!(out.status.success(), "tmux new-session: {}", stderr(&out));
        tmux
    }

    fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new("tmux");
        command
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .current_dir(dir)
            .env_remove("TMUX");
        command
    }

    fn tmux(&self, args: &[&str]) -> Output {
        self.command(Path::new("/")).args(args).output().unwrap()
    }

    /// The pane's screen as text.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p"]).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        let out = self.tmux(&args);
        assert!(out.status.success(), "send-keys: {}", stderr(&out));
    }

    /// Whether the pane shows the alternate screen (a full-screen program).
    fn alternate_on(&self) -> bool {
        let out = self.tmux(&["display-message", "-p", "#{alternate_on}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    /// Waits until the screen shows every one of `texts`; returns it.
    fn wait_for(&self, texts: &[&str]) -> String {
        let mut screen = String::new();
        let shown = wait_until(WAIT, || {
            screen = self.screen();
            texts.iter().all(|t| screen.contains(t))
        });
        assert!(shown, "the screen never showed {texts:?}:\n{screen}");
        screen
    }

    /// The pid of the program the pane's shell runs.
    fn program_pid(&self) -> u32 {
        let out = self.tmux(&["display-message", "-p", "#{pane_pid}"]);
        let shell: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .unwrap_or_default();
        children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .find(|pid: &u32| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("top"))
            })
            .expect("the pane runs bones top")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// After the view ended: it exited 0, the screen holds no frame of it,
/// and the terminal is out of the alternate screen and of raw mode.
fn assert_restored(tmux: &Tmux) {
    let screen = tmux.wait_for(&["TOP-EXITED-", "icanon"]);
    assert!(screen.contains("TOP-EXITED-0"), "exit code:\n{screen}");
    assert!(!screen.contains("Slots ("), "a frame was left:\n{screen}");
    let modes: Vec<&str> = screen.lines().map(str::trim).collect();
    assert!(
        modes.contains(&"icanon") && modes.contains(&"echo"),
        "raw mode was left on:\n{screen}"
    );
    assert!(!tmux.alternate_on(), "still on the alternate screen");
}

#[test]
fn shows_a_new_slot_and_a_landing_without_a_key_press_and_q_restores_the_terminal() {
    let ws = TestWorkspace::new();
    ws.start();
    let tmux = Tmux::run(&ws, "top");
    tmux.wait_for(&["Slots (0)", "slots ok", "hub.log ok"]);
    assert!(tmux.alternate_on(), "the view uses the alternate screen");

    let checkout = join(&ws, "tui-slot", "agent-tui", &[]);
    tmux.wait_for(&["tui-slot", "agent-tui", "Slots (1)"]);

    std::fs::write(checkout.join("top.txt"), "seen live\n").unwrap();
    let out = commit(&ws, "tui-slot", "Land a file for top");
    assert!(out.status.success(), "swarm commit: {}", stderr(&out));
    tmux.wait_for(&["Landings (latest 1)", "Land a file for top"]);

    // tab to the task board, select its row, and open its detail
    let out = ws.ok(&["tasks", "create", "Teach top to show details"]);
    let id = support::stdout(&out).trim().to_string();
    tmux.wait_for(&["ready 1", "Teach top to show details"]);
    tmux.keys(&["Tab", "Down", "Enter"]);
    tmux.wait_for(&["Tasks detail", &format!("id: {id}")]);

    tmux.keys(&["q"]);
    assert_restored(&tmux);
}

#[test]
fn a_stop_signal_restores_the_terminal() {
    let ws = TestWorkspace::new();
    ws.start();
    let tmux = Tmux::run(&ws, "top");
    tmux.wait_for(&["Slots (0)", "slots ok"]);
    send_signal(tmux.program_pid(), Signal::SIGTERM);
    assert_restored(&tmux);
}

#[test]
fn once_prints_one_plain_frame() {
    let ws = TestWorkspace::new();
    let out = ws.run(&["top", "--once"]);
    assert_eq!(out.status.code(), Some(1), "no hub: {}", stderr(&out));
    assert!(stderr(&out).contains("bones hub start"), "{}", stderr(&out));

    ws.start();
    join(&ws, "once-slot", "agent-once", &[]);
    let out = ws.ok(&["top", "--once", "--size", "120x30"]);
    let frame = support::stdout(&out);
    assert_eq!(frame.lines().count(), 30, "{frame}");
    assert!(frame.lines().all(|l| l.chars().count() <= 120), "{frame}");
    assert!(
        frame.contains("once-slot") && frame.contains("agent-once"),
        "{frame}"
    );
    assert!(!frame.contains('\x1b'), "no escape sequences: {frame:?}");
}

#[test]
fn without_a_terminal_it_says_to_use_once() {
    let ws = TestWorkspace::new();
    let out = ws.run(&["top"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--once"), "{}", stderr(&out));
}
