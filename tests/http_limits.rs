//! The HTTP endpoint against a flood of idle connections: it holds only a
//! capped number of them, closes a half-sent request after the header
//! timeout, and landing keeps working meanwhile.

mod support;

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{BONES, KillOnDrop, TestWorkspace, stderr, stdout};

/// The descriptor limit the hub runs under in this test: low, so a flood
/// of a few hundred connections is enough to exhaust a hub without a cap.
const HUB_DESCRIPTORS: u64 = 128;

/// A request's head without the blank line that ends it.
const HALF_REQUEST: &[u8] = b"GET /.status HTTP/1.1\r\nHost: 127.0.0.1\r\n";

/// Opens up to `count` connections to a port, sends each half a request,
/// prints `ready` and holds them until killed or `seconds` pass. It stops
/// opening when a connection is not taken within 3 s (the listen queue of
/// a server that no longer accepts is full). A process of its own, so the
/// test's descriptors are not the ones that run out.
const HOLDER: &str = r#"
import socket, sys, time
port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
held = []
for _ in range(count):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
    except OSError:
        break
    try:
        s.sendall(b"GET /.status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    except OSError:
        pass  # closed at once by a server over its cap
    held.append(s)
print("ready", flush=True)
time.sleep(seconds)
"#;

/// Starts the hub detached under a descriptor limit (soft and hard), as a
/// shell's `ulimit -n` would.
fn start_with_descriptor_limit(ws: &TestWorkspace, limit: u64) {
    let template = ws.command(&[]);
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!(
            "ulimit -n {limit} && exec \"$0\" hub start --detach"
        ))
        .arg(BONES)
        .current_dir(&ws.root)
        .stdin(Stdio::null());
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => sh.env(key, value),
            None => sh.env_remove(key),
        };
    }
    let out = sh.output().unwrap();
    assert!(
        out.status.success(),
        "hub start under ulimit -n {limit} failed: {}\nhub.log:\n{}",
        stderr(&out),
        ws.hub_log()
    );
}

#[test]
fn a_flood_of_half_sent_requests_neither_stops_landing_nor_stays_open() {
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("skipped: python3 (which holds the flood of connections) is not installed");
        return;
    }
    let ws = TestWorkspace::new();
    start_with_descriptor_limit(&ws, HUB_DESCRIPTORS);
    let wt = ws.ok(&["swarm", "join", "--slot", "alpha", "--agent", "a"]);
    let wt = std::path::PathBuf::from(stdout(&wt).trim());
    fs::write(wt.join("flood.txt"), "landed during the flood\n").unwrap();
    let port = ws.repo_port();

    // ours comes first, so it is one the server takes rather than refuses
    let mut half_sent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    half_sent.write_all(HALF_REQUEST).unwrap();

    // three times the descriptors the hub may open: without a cap, every
    // one the hub accepts holds a descriptor until the client goes
    let flood = HUB_DESCRIPTORS * 3;
    let mut holder = KillOnDrop(
        Command::new("python3")
            .args(["-c", HOLDER, &port.to_string(), &flood.to_string(), "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut ready = String::new();
    BufReader::new(holder.0.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(
        ready.trim(),
        "ready",
        "the holder did not open its connections"
    );

    let out = ws.run(&[
        "swarm",
        "commit",
        "--slot",
        "alpha",
        "-m",
        "during the flood",
    ]);
    assert!(
        out.status.success(),
        "a commit failed while idle HTTP connections were held: {}\nhub.log:\n{}",
        stderr(&out),
        ws.hub_log()
    );
    assert!(
        ws.hub_git(&["ls-tree", "--name-only", "trunk"])
            .lines()
            .any(|f| f == "flood.txt")
    );

    // the server ends our half-sent request: end of stream (or a reset),
    // not our own read timeout, which is far past the header timeout
    half_sent
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match half_sent.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(err) if err.kind() == ErrorKind::ConnectionReset => break true,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break false;
            }
            Err(err) => panic!("reading the half-sent connection: {err}"),
        }
    };
    assert!(closed, "the server kept a half-sent request open");

    drop(holder);
    let (code, status) = ws.status();
    assert_eq!(code, 0, "{status}");
}
