//! `bones mcp` driven by a third-party client (the official Python MCP
//! SDK, `tests/mcp/two_sessions.py`), the slot lease that follows the
//! server's process, and `bones prime`.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{BONES, KillOnDrop, TestWorkspace, stdout};

/// Two agent sessions over MCP each join, claim, edit, commit, share and
/// close; every tool result validates against its declared output schema;
/// bad inputs are tool errors that change nothing. The script checks all
/// that as it goes; here the end state is checked again from outside.
#[test]
fn two_mcp_sessions_run_the_whole_loop_through_the_python_sdk() {
    let python_sdk = Command::new("python3")
        .args(["-c", "import mcp, jsonschema"])
        .output();
    assert!(
        python_sdk.is_ok_and(|out| out.status.success()),
        "the Python MCP SDK is missing: run `. scripts/setup.sh` (it installs it with pip)"
    );
    let ws = TestWorkspace::new();
    ws.start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/two_sessions.py");
    let mut command = Command::new("python3");
    command
        .arg(&script)
        .arg(BONES)
        .arg(&ws.root)
        .arg(ws.state_dir().join("hub.git"))
        .env("HOME", &ws.home)
        .env(
            "BONES_NATS_SERVER",
            support::nats_server().expect("nats-server: run `. scripts/setup.sh`"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // killed (with its servers, which end on stdin EOF) should the test fail
    let child = KillOnDrop(command.spawn().unwrap());
    let out = wait_with_timeout(child, Duration::from_secs(300));
    let said = stdout(&out);
    assert!(
        out.status.success() && said.contains("mcp-e2e ok tools=15 validated=15"),
        "the MCP script failed ({}):\nstdout: {said}\nstderr: {}\nhub.log:\n{}",
        out.status,
        support::stderr(&out),
        ws.hub_log()
    );
    // trunk holds both sessions' work, and is what the script last saw
    let trunk = ws.hub_git(&["rev-parse", "refs/heads/trunk"]);
    assert!(said.contains(&format!("trunk={trunk}")), "{said}");
    let files = ws.hub_git(&["ls-tree", "-r", "--name-only", "refs/heads/trunk"]);
    assert!(files.lines().any(|f| f == "a.txt"), "{files}");
    assert!(files.lines().any(|f| f == "b.txt"), "{files}");
    // the uncommitted work was saved on close, never landed
    assert!(!files.lines().any(|f| f == "wip.txt"), "{files}");
    // both tasks closed by the sessions that held them
    let list = ws.ok(&["tasks", "list", "--json"]);
    let tasks: Vec<Value> = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    let closers: Vec<&str> = tasks
        .iter()
        .map(|t| {
            assert_eq!(t["status"], "closed", "{t}");
            t["last_op"]["by"].as_str().unwrap()
        })
        .collect();
    assert!(closers.contains(&"alpha") && closers.contains(&"agent-agent-b"));
}

/// The join tool leases the slot to the server's own process: when the
/// client closes stdin the server ends, and the hub reaps the slot.
#[test]
fn the_slot_of_an_mcp_session_is_reaped_once_its_client_disconnects() {
    let ws = TestWorkspace::new();
    ws.start();
    let mut server = ws.command(&["mcp"]);
    server
        .env("BONES_AGENT_ID", "eof-agent")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut server = KillOnDrop(server.spawn().unwrap());
    let mut stdin = server.0.stdin.take().unwrap();
    let mut lines = BufReader::new(server.0.stdout.take().unwrap()).lines();
    let mut send = |message: Value| writeln!(stdin, "{message}").unwrap();
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"}}}),
    );
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "join", "arguments": {"slot": "eof"}}}));
    let joined = loop {
        let line = lines.next().expect("the server closed stdout").unwrap();
        let message: Value = serde_json::from_str(&line).unwrap();
        if message["id"] == 2 {
            break message;
        }
    };
    let result = &joined["result"];
    assert_ne!(result["isError"], true, "{joined}");
    assert_eq!(result["structuredContent"]["slot"], "eof", "{joined}");
    assert_eq!(
        result["structuredContent"]["agent_id"], "eof-agent",
        "{joined}"
    );
    assert_eq!(slot_state(&ws, "eof"), "active");

    drop(stdin);
    let ended = server.0.wait().unwrap();
    assert!(ended.success(), "the server ended with {ended}");
    assert!(
        support::wait_until(Duration::from_secs(30), || slot_state(&ws, "eof")
            == "reaped"),
        "the slot of a disconnected session was not reaped: {}\nhub.log:\n{}",
        slot_state(&ws, "eof"),
        ws.hub_log()
    );
}

/// `bones prime` names the agent, its slot and checkout, the loop with
/// its exit codes, the ready tasks and the feed, within its bound.
#[test]
fn prime_gives_an_agent_its_slot_the_loop_its_tasks_and_the_feed() {
    let ws = TestWorkspace::new();
    ws.start();
    ws.ok(&["tasks", "create", "Fix the parser", "--priority", "3"]);
    ws.ok(&["share", "--type", "convention", "Errors keep their source"]);
    let checkout = support::join(&ws, "fix-parser", "agent-7", &[]);

    let out = ws
        .command_in(&checkout, &["prime", "--max-chars", "6000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::stderr(&out));
    let text = stdout(&out);
    for wanted in [
        "Agent id: agent-7.",
        &format!(
            "Slot: fix-parser (branch slot/fix-parser), checkout {}",
            checkout.display()
        ),
        "bones swarm commit -m MSG",
        "5 conflict:",
        "7 nothing_ready:",
        "[p3] Fix the parser",
        "Errors keep their source",
    ] {
        assert!(text.contains(wanted), "{wanted:?} missing in:\n{text}");
    }
    assert!(text.chars().count() <= 6000, "{}", text.chars().count());

    let out = ws
        .command_in(&checkout, &["prime", "--json"])
        .output()
        .unwrap();
    let primer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(primer["slot"]["slot"], "fix-parser");
    assert_eq!(primer["agent"], "agent-7");
    assert_eq!(primer["ready"][0]["title"], "Fix the parser");
    assert_eq!(primer["feed"]["counts"]["convention"], 1);
    assert_eq!(primer["steps"].as_array().map(Vec::len), Some(5));

    // a slot named on purpose must be a valid name
    let out = ws.run(&["prime", "--slot", "Not A Slot"]);
    assert_eq!(out.status.code(), Some(2), "{}", support::stderr(&out));
}

fn slot_state(ws: &TestWorkspace, slot: &str) -> String {
    let out = ws.ok(&["swarm", "status", "--json"]);
    let slots: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    slots
        .iter()
        .find(|s| s["slot"] == slot)
        .map_or("missing".to_string(), |s| {
            s["state"].as_str().unwrap().to_string()
        })
}

/// Waits for `child` to end within `timeout` (killing it after), and
/// returns its output; its pipes are drained meanwhile, so a chatty child
/// never blocks on a full pipe.
fn wait_with_timeout(mut child: KillOnDrop, timeout: Duration) -> std::process::Output {
    use std::io::Read;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .0
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .0
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let ended = support::wait_until(timeout, || {
        child.0.try_wait().map(|s| s.is_some()).unwrap_or(true)
    });
    if !ended {
        let _ = child.0.kill();
    }
    let status = child.0.wait().unwrap();
    std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}
