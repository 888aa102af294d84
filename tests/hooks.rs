//! `bones hook session-start | session-end`: what an agent harness's
//! session hooks run. A session takes a slot, is told about it, and gives
//! it back; a hook never fails the session, whatever is wrong.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use serde_json::{Value, json};
use support::*;

const SESSION: &str = "4e3eb4ec-ccb7-46d0-ae99-02762dd11aa4";

/// The JSON Claude Code hands a hook on stdin.
fn claude_input(ws: &TestWorkspace, event: &str, session: &str) -> Vec<u8> {
    let extra = if event == "SessionStart" {
        ("source", "startup")
    } else {
        ("reason", "prompt_input_exit")
    };
    let mut input = json!({
        "session_id": session,
        "transcript_path": "/nonexistent/transcript.jsonl",
        "cwd": ws.root,
        "hook_event_name": event,
    });
    input[extra.0] = json!(extra.1);
    input.to_string().into_bytes()
}

fn hook(ws: &TestWorkspace, args: &[&str], input: &[u8]) -> Output {
    let mut full = vec!["hook"];
    full.extend_from_slice(args);
    let out = run_with_stdin(ws.command(&full), input);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a hook always exits 0: {}",
        stderr(&out)
    );
    out
}

fn swarm_status(ws: &TestWorkspace) -> Vec<Value> {
    let out = ws.ok(&["swarm", "status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn hook_entries(ws: &TestWorkspace, hook: &str) -> Vec<Value> {
    log_entries(ws, "hook")
        .into_iter()
        .filter(|e| e["hook"] == hook)
        .collect()
}

#[test]
fn a_session_takes_a_slot_is_primed_and_gives_the_slot_back() {
    let ws = TestWorkspace::new();
    let start = claude_input(&ws, "SessionStart", SESSION);
    // Claude Code names a file whose exports reach the session's shell
    let env_file = ws.home.join("session-env.sh");
    let mut command = ws.command(&["hook", "session-start", "--harness", "claude-code"]);
    command.env("CLAUDE_ENV_FILE", &env_file);
    let out = run_with_stdin(command, &start);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // the hub was started for it, and the session holds a slot
    assert!(ws.hub_pid().is_some(), "no hub: {}", stderr(&out));
    let record_path = ws.state_dir().join(format!("sessions/{SESSION}.json"));
    let record: Value = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    let mode = std::fs::metadata(&record_path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let slot = record["slot"].as_str().unwrap().to_string();
    let agent = record["agent"].as_str().unwrap().to_string();
    assert_eq!(agent, "claude-4e3eb4ecccb7");
    // the harness is the process that ran the hook: this test
    assert_eq!(record["harness_pid"], json!(std::process::id()));
    let slots = swarm_status(&ws);
    let ours = slots.iter().find(|s| s["slot"] == slot.as_str()).unwrap();
    assert_eq!(ours["state"], "active");
    assert_eq!(ours["agent_id"], agent.as_str());

    // the primer names the slot, its checkout and the loop
    let primer = stdout(&out);
    assert!(primer.contains(&slot), "{primer}");
    assert!(
        primer.contains(record["path"].as_str().unwrap()),
        "{primer}"
    );
    assert!(primer.contains("bones tasks claim --next"), "{primer}");
    assert!(primer.contains("Knowledge feed"), "{primer}");
    assert!(
        primer.contains("are set for your shell commands"),
        "{primer}"
    );
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap(),
        format!("export BONES_SLOT='{slot}'\nexport BONES_AGENT_ID='{agent}'\n")
    );

    // hub.log says so, with every field the log schema promises
    let entries = hook_entries(&ws, "session-start");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["result"], "ok");
    assert_eq!(entry["session"], SESSION);
    assert_eq!(entry["agent"], agent.as_str());
    assert_eq!(entry["slot"], slot.as_str());
    assert!(entry["took_ms"].is_u64(), "{entry}");

    // a resumed session rejoins the same slot
    let again = hook(&ws, &["session-start", "--harness", "claude-code"], &start);
    assert!(stdout(&again).contains(&slot));
    assert_eq!(hook_entries(&ws, "session-start").len(), 2);
    assert_eq!(swarm_status(&ws).len(), 1);

    // the end closes it and forgets the session
    let end = claude_input(&ws, "SessionEnd", SESSION);
    hook(&ws, &["session-end", "--harness", "claude-code"], &end);
    assert!(!record_path.exists());
    assert!(
        swarm_status(&ws)
            .iter()
            .all(|s| s["slot"] != slot.as_str() || s["state"] != "active"),
        "the slot is still active"
    );
    let entries = hook_entries(&ws, "session-end");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["result"], "ok");
    assert_eq!(entries[0]["slot"], slot.as_str());
    assert_eq!(entries[0]["session"], SESSION);
}

#[test]
fn a_session_end_never_closes_another_sessions_slot() {
    let ws = TestWorkspace::new();
    hook(
        &ws,
        &["session-start", "--harness", "claude-code"],
        &claude_input(&ws, "SessionStart", SESSION),
    );
    let record_path = ws.state_dir().join(format!("sessions/{SESSION}.json"));
    let mut record: Value = serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    let slot = record["slot"].as_str().unwrap().to_string();
    // a second session's record that names the first one's slot
    let other = "0ther-session-1";
    record["session"] = json!(other);
    record["agent"] = json!("claude-0thersession1");
    std::fs::write(
        ws.state_dir().join(format!("sessions/{other}.json")),
        record.to_string(),
    )
    .unwrap();
    let out = hook(
        &ws,
        &["session-end", "--harness", "claude-code"],
        &claude_input(&ws, "SessionEnd", other),
    );
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    let slots = swarm_status(&ws);
    let ours = slots.iter().find(|s| s["slot"] == slot.as_str()).unwrap();
    assert_eq!(
        ours["state"], "active",
        "another session's end closed the slot"
    );
    let entries = hook_entries(&ws, "session-end");
    assert_eq!(entries[0]["result"], "failed", "{entries:?}");
    assert!(
        entries[0]["err"].as_str().unwrap().contains("held by"),
        "{entries:?}"
    );
}

#[test]
fn without_a_hub_and_without_autostart_the_hook_warns_and_exits_0() {
    let ws = TestWorkspace::new();
    let mut command = ws.command(&["hook", "session-start", "--harness", "gemini"]);
    command.env("BONES_NO_AUTOSTART", "1");
    let out = run_with_stdin(command, &claude_input(&ws, "SessionStart", SESSION));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(ws.hub_pid().is_none(), "a hub was started");
    let warning = stderr(&out);
    assert!(warning.contains("warning"), "{warning}");
    // Gemini CLI takes one JSON object on stdout, telling the agent
    let said: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(said["hookSpecificOutput"]["hookEventName"], "SessionStart");
    assert!(
        said["hookSpecificOutput"]["additionalContext"]
            .as_str()
            .unwrap()
            .contains("no slot")
    );
    let entries = hook_entries(&ws, "session-start");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["result"], "failed");
    assert_eq!(entries[0]["level"], "WARN");
    assert!(
        !ws.state_dir()
            .join(format!("sessions/{SESSION}.json"))
            .exists()
    );
}

#[test]
fn garbage_on_stdin_or_no_workspace_exits_0_with_a_warning() {
    let ws = TestWorkspace::new();
    for input in [
        &b"not json \x00\xff"[..],
        b"[1, 2, 3]",
        b"{\"session_id\": \"../../etc\"}",
    ] {
        let out = hook(&ws, &["session-start"], input);
        assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
        assert!(stdout(&out).contains("no slot"), "{}", stdout(&out));
    }
    assert!(ws.hub_pid().is_none(), "a hub was started for garbage");
    assert!(!ws.state_dir().join("sessions").exists());
    let outside = TestWorkspace::bare_dir();
    let out = hook(
        &outside,
        &["session-end"],
        &claude_input(&outside, "SessionEnd", SESSION),
    );
    assert!(stderr(&out).contains("bones up"), "{}", stderr(&out));
}

#[test]
fn codex_and_gemini_get_the_primer_as_one_json_object() {
    let ws = TestWorkspace::new();
    for (harness, session) in [("codex", "codex-session-1"), ("gemini", "gemini-session-1")] {
        let out = hook(
            &ws,
            &["session-start", "--harness", harness],
            &claude_input(&ws, "SessionStart", session),
        );
        let said: Value = serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| {
            panic!(
                "{harness}: stdout is not one JSON object ({e}): {}",
                stdout(&out)
            )
        });
        let context = said["hookSpecificOutput"]["additionalContext"]
            .as_str()
            .unwrap();
        assert!(context.contains(&format!("agent-{harness}-")), "{context}");
    }
    assert_eq!(swarm_status(&ws).len(), 2);
}

#[test]
fn a_frozen_hub_still_lets_the_session_start_with_a_warning() {
    let ws = TestWorkspace::new();
    ws.start();
    let hub = ws.hub_pid().unwrap();
    let nats = ws.nats_pid().unwrap();
    freeze(nats);
    freeze(hub);
    let out = hook(
        &ws,
        &["session-start", "--harness", "claude-code"],
        &claude_input(&ws, "SessionStart", SESSION),
    );
    send_signal(hub, Signal::SIGCONT);
    send_signal(nats, Signal::SIGCONT);
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    assert!(stdout(&out).contains("no slot"), "{}", stdout(&out));
    let entries = hook_entries(&ws, "session-start");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(
        matches!(entries[0]["result"].as_str(), Some("failed" | "timeout")),
        "{entries:?}"
    );
    assert!(
        !ws.state_dir()
            .join(format!("sessions/{SESSION}.json"))
            .exists()
    );
}
