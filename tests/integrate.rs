//! `bones integrate claude-code | codex | gemini`: the harness's project
//! configuration, merged into the user's own, checked by the real CLIs of
//! the harnesses (installed by scripts/setup.sh; offline, no account, a
//! temp HOME each).

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use support::*;

/// A harness CLI run in the workspace with the test's HOME and `bones` on
/// PATH.
fn harness(ws: &TestWorkspace, name: &str, args: &[&str]) -> Output {
    let mut command = Command::new(harness_cli(name));
    command
        .args(args)
        .current_dir(&ws.root)
        .env("HOME", &ws.home)
        .env("PATH", path_with_bones())
        .env("NO_COLOR", "1")
        // no update checks or telemetry: the tests run offline
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env_remove("BONES_DIR")
        .env_remove("BONES_AGENT_ID")
        .env_remove("BONES_SLOT")
        .env_remove("CLAUDECODE")
        .env_remove("CLAUDE_ENV_FILE")
        .stdin(Stdio::null());
    if let Some(nats) = nats_server() {
        command.env("BONES_NATS_SERVER", nats);
    }
    command.output().unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// True when this build has `bones mcp` (another branch builds it): only
/// then can a harness show the server connected.
fn has_mcp_server() -> bool {
    Command::new(BONES)
        .args(["mcp", "--help"])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The hooks a settings file gives `event`: every handler of every group.
fn handlers(settings: &Value, event: &str) -> Vec<Value> {
    settings["hooks"][event]
        .as_array()
        .unwrap_or_else(|| panic!("no hooks.{event} array in {settings}"))
        .iter()
        .flat_map(|group| group["hooks"].as_array().unwrap().clone())
        .collect()
}

/// The one handler bones wrote for `event`, checked against the shape the
/// harnesses document: `{"type": "command", "command": STRING, "timeout":
/// NUMBER, ...}` inside a `{"hooks": [...]}` group.
fn bones_handler(settings: &Value, event: &str, command: &str) -> Value {
    let ours: Vec<Value> = handlers(settings, event)
        .into_iter()
        .filter(|h| {
            h["command"]
                .as_str()
                .is_some_and(|c| c.starts_with("bones hook "))
        })
        .collect();
    assert_eq!(ours.len(), 1, "bones' {event} hooks: {ours:?}");
    let handler = ours[0].clone();
    assert_eq!(handler["type"], "command");
    assert_eq!(handler["command"], command);
    assert!(handler["timeout"].is_u64(), "{handler}");
    handler
}

const USER_SETTINGS: &str = r#"{
  "permissions": {
    "allow": ["Bash(make:*)"]
  },
  "hooks": {
    "PreToolUse": [
      {"matcher": "Bash", "hooks": [{"type": "command", "command": "echo checked"}]}
    ],
    "SessionStart": [
      {"matcher": "startup", "hooks": [{"type": "command", "command": "echo mine"}]}
    ]
  }
}
"#;

const USER_MCP: &str =
    r#"{"mcpServers": {"docs": {"command": "docs-mcp", "args": ["--port", "1"]}}}"#;

/// A workspace whose project already has the user's Claude Code settings.
fn claude_project() -> TestWorkspace {
    let ws = TestWorkspace::new();
    fs::create_dir_all(ws.root.join(".claude")).unwrap();
    fs::write(ws.root.join(".claude/settings.json"), USER_SETTINGS).unwrap();
    fs::write(ws.root.join(".mcp.json"), USER_MCP).unwrap();
    fs::write(
        ws.root.join("CLAUDE.md"),
        "# Project\n\nRun `make test` before committing.\n",
    )
    .unwrap();
    ws
}

#[test]
fn claude_code_keeps_the_users_entries_and_a_second_run_changes_nothing() {
    let ws = claude_project();
    ws.ok(&["integrate", "claude-code"]);

    let settings = read_json(&ws.root.join(".claude/settings.json"));
    let user: Value = serde_json::from_str(USER_SETTINGS).unwrap();
    assert_eq!(settings["permissions"], user["permissions"]);
    assert_eq!(settings["hooks"]["PreToolUse"], user["hooks"]["PreToolUse"]);
    // the user's own SessionStart hook stays first, bones' comes after it
    assert_eq!(
        handlers(&settings, "SessionStart")[0]["command"],
        "echo mine"
    );
    bones_handler(
        &settings,
        "SessionStart",
        "bones hook session-start --harness claude-code",
    );
    bones_handler(
        &settings,
        "SessionEnd",
        "bones hook session-end --harness claude-code",
    );
    // the user's key order stays
    let text = fs::read_to_string(ws.root.join(".claude/settings.json")).unwrap();
    assert!(
        text.find("\"permissions\"") < text.find("\"hooks\""),
        "key order changed:\n{text}"
    );

    let mcp = read_json(&ws.root.join(".mcp.json"));
    assert_eq!(
        mcp["mcpServers"]["docs"],
        json!({"command": "docs-mcp", "args": ["--port", "1"]})
    );
    assert_eq!(mcp["mcpServers"]["bones"]["command"], "bones");
    assert_eq!(mcp["mcpServers"]["bones"]["args"], json!(["mcp"]));

    let memory = fs::read_to_string(ws.root.join("CLAUDE.md")).unwrap();
    assert!(memory.starts_with("# Project\n\nRun `make test` before committing.\n"));
    assert_eq!(memory.matches("<!-- bones:begin -->").count(), 1);

    // again: nothing changes, not even a file's modification time
    let files = [".claude/settings.json", ".mcp.json", "CLAUDE.md"];
    let before: Vec<_> = files
        .iter()
        .map(|f| {
            let path = ws.root.join(f);
            (
                fs::read(&path).unwrap(),
                fs::metadata(&path).unwrap().modified().unwrap(),
            )
        })
        .collect();
    let out = ws.ok(&["integrate", "claude-code"]);
    assert!(
        stderr(&out).contains("nothing to change"),
        "{}",
        stderr(&out)
    );
    for (file, (bytes, modified)) in files.iter().zip(before) {
        let path = ws.root.join(file);
        assert_eq!(fs::read(&path).unwrap(), bytes, "{file} changed");
        assert_eq!(
            fs::metadata(&path).unwrap().modified().unwrap(),
            modified,
            "{file} rewritten"
        );
    }
}

#[test]
fn dry_run_prints_the_diff_and_writes_nothing() {
    let ws = claude_project();
    let before = fs::read(ws.root.join(".claude/settings.json")).unwrap();
    let out = ws.ok(&["integrate", "claude-code", "--dry-run"]);
    let diff = stdout(&out);
    assert!(
        diff.contains("--- a/.claude/settings.json\n+++ b/.claude/settings.json\n"),
        "{diff}"
    );
    assert!(
        diff.contains(
            "+            \"command\": \"bones hook session-start --harness claude-code\","
        ),
        "{diff}"
    );
    assert!(diff.contains("+++ b/.mcp.json"), "{diff}");
    assert!(diff.contains("+<!-- bones:begin -->"), "{diff}");
    assert_eq!(
        fs::read(ws.root.join(".claude/settings.json")).unwrap(),
        before
    );
    assert_eq!(
        fs::read_to_string(ws.root.join(".mcp.json")).unwrap(),
        USER_MCP
    );

    // with --json, the same diff and which files would change
    let out = ws.ok(&["integrate", "claude-code", "--dry-run", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["diff"], diff.as_str());
    assert!(
        report["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["changed"] == true)
    );
    assert_eq!(
        fs::read(ws.root.join(".claude/settings.json")).unwrap(),
        before
    );
}

#[test]
fn a_settings_file_that_does_not_parse_is_refused_and_nothing_is_written() {
    let ws = TestWorkspace::new();
    fs::create_dir_all(ws.root.join(".claude")).unwrap();
    fs::write(ws.root.join(".claude/settings.json"), "{\"hooks\": ").unwrap();
    let out = ws.run(&["integrate", "claude-code"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(".claude/settings.json is not valid JSON"),
        "{}",
        stderr(&out)
    );
    assert!(!ws.root.join(".mcp.json").exists());
    assert!(!ws.root.join("CLAUDE.md").exists());
    assert_eq!(
        fs::read_to_string(ws.root.join(".claude/settings.json")).unwrap(),
        "{\"hooks\": "
    );
}

/// The line `claude mcp list` prints for the bones server.
fn claude_lists_bones(ws: &TestWorkspace) -> String {
    let out = harness(ws, "claude", &["mcp", "list"]);
    let listed = stdout(&out);
    listed
        .lines()
        .find(|l| l.starts_with("bones:"))
        .unwrap_or_else(|| {
            panic!(
                "claude mcp list shows no bones server:\n{listed}{}",
                stderr(&out)
            )
        })
        .to_string()
}

#[test]
fn claude_code_lists_the_project_server_pending_approval() {
    let ws = claude_project();
    ws.ok(&["integrate", "claude-code"]);
    let line = claude_lists_bones(&ws);
    assert!(line.contains("bones mcp"), "{line}");
    assert!(line.contains("Pending approval"), "{line}");
}

#[test]
fn claude_code_connects_a_local_server_added_the_way_the_readme_says() {
    let ws = TestWorkspace::new();
    // README: `claude mcp add bones -- bones mcp`
    let out = harness(
        &ws,
        "claude",
        &["mcp", "add", "bones", "--", "bones", "mcp"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let line = claude_lists_bones(&ws);
    assert!(line.contains("bones mcp"), "{line}");
    if !has_mcp_server() {
        eprintln!(
            "SKIPPED the connected check: this build has no `bones mcp` (`bones mcp --help` fails); \
             it comes with the MCP server's branch"
        );
        return;
    }
    assert!(line.contains("Connected"), "{line}");
}

#[test]
fn claude_code_runs_the_session_hooks_offline() {
    let ws = claude_project();
    ws.ok(&["integrate", "claude-code"]);
    // `claude -p` without an account fails its request, but starts and
    // ends a session first, running both hooks
    let out = harness(&ws, "claude", &["-p", "hello"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    let hooks = log_entries(&ws, "hook");
    let start = hooks
        .iter()
        .find(|e| e["hook"] == "session-start")
        .unwrap_or_else(|| panic!("no session-start hook entry in hub.log; claude said: {said}"));
    assert_eq!(start["result"], "ok", "{start}");
    let session = start["session"].as_str().unwrap();
    let end = hooks
        .iter()
        .find(|e| e["hook"] == "session-end")
        .unwrap_or_else(|| panic!("no session-end hook entry; claude said: {said}"));
    assert_eq!(end["result"], "ok", "{end}");
    assert_eq!(end["session"], session);
    assert_eq!(end["slot"], start["slot"]);
    assert!(
        !ws.state_dir()
            .join(format!("sessions/{session}.json"))
            .exists()
    );
}

#[test]
fn codex_lists_the_server_from_the_merged_project_config() {
    let ws = TestWorkspace::new();
    let user = "# mine\nmodel = \"o4-mini\"  # fast\n\n[mcp_servers.docs]\ncommand = \"docs-mcp\"\nargs = [\"--port\", \"1\"]\n";
    fs::create_dir_all(ws.root.join(".codex")).unwrap();
    fs::write(ws.root.join(".codex/config.toml"), user).unwrap();
    ws.ok(&["integrate", "codex"]);
    let config = fs::read_to_string(ws.root.join(".codex/config.toml")).unwrap();
    assert!(
        config.starts_with(user),
        "the user's config changed:\n{config}"
    );
    let hooks = read_json(&ws.root.join(".codex/hooks.json"));
    bones_handler(
        &hooks,
        "SessionStart",
        "bones hook session-start --harness codex",
    );
    assert!(
        hooks["hooks"].get("SessionEnd").is_none(),
        "Codex documents no SessionEnd"
    );
    assert!(
        fs::read_to_string(ws.root.join("AGENTS.md"))
            .unwrap()
            .contains("<!-- bones:end -->")
    );

    // Codex reads a project's .codex/ once the user trusts the project
    fs::create_dir_all(ws.home.join(".codex")).unwrap();
    fs::write(
        ws.home.join(".codex/config.toml"),
        format!(
            "[projects.\"{}\"]\ntrust_level = \"trusted\"\n",
            ws.root.display()
        ),
    )
    .unwrap();
    let out = harness(&ws, "codex", &["mcp", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let servers: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("codex mcp list --json: {e}: {}", stdout(&out)));
    let by_name = |name: &str| {
        servers
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("codex lists no {name}: {servers}"))
            .clone()
    };
    let bones = by_name("bones");
    assert_eq!(bones["enabled"], true);
    assert_eq!(bones["transport"]["command"], "bones");
    assert_eq!(bones["transport"]["args"], json!(["mcp"]));
    assert_eq!(by_name("docs")["transport"]["command"], "docs-mcp");

    let out = ws.ok(&["integrate", "codex"]);
    assert!(
        stderr(&out).contains("nothing to change"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn gemini_loads_the_merged_settings_and_lists_the_server() {
    let ws = TestWorkspace::new();
    let user = r#"{"ui": {"theme": "GitHub"}, "mcpServers": {"quick": {"command": "true"}}, "hooks": {"SessionEnd": [{"hooks": [{"type": "command", "command": "echo bye"}]}]}}"#;
    fs::create_dir_all(ws.root.join(".gemini")).unwrap();
    fs::write(ws.root.join(".gemini/settings.json"), user).unwrap();
    ws.ok(&["integrate", "gemini"]);
    let settings = read_json(&ws.root.join(".gemini/settings.json"));
    assert_eq!(settings["ui"], json!({"theme": "GitHub"}));
    assert_eq!(settings["mcpServers"]["quick"], json!({"command": "true"}));
    assert_eq!(handlers(&settings, "SessionEnd")[0]["command"], "echo bye");
    let start = bones_handler(
        &settings,
        "SessionStart",
        "bones hook session-start --harness gemini",
    );
    bones_handler(
        &settings,
        "SessionEnd",
        "bones hook session-end --harness gemini",
    );
    // Gemini CLI's timeouts are milliseconds
    assert!(start["timeout"].as_u64().unwrap() >= 10_000, "{start}");
    assert!(
        fs::read_to_string(ws.root.join("GEMINI.md"))
            .unwrap()
            .contains("bones tasks claim")
    );

    // Gemini CLI reads a project's settings once the user trusts the folder
    fs::create_dir_all(ws.home.join(".gemini")).unwrap();
    fs::write(
        ws.home.join(".gemini/trustedFolders.json"),
        json!({ws.root.display().to_string(): "TRUST_FOLDER"}).to_string(),
    )
    .unwrap();
    let out = harness(&ws, "gemini", &["mcp", "list"]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    // it checks the settings against its schema on load and names any error
    assert!(!said.contains("Error in:"), "{said}");
    let line = said
        .lines()
        .find(|l| l.contains("bones:"))
        .unwrap_or_else(|| panic!("gemini mcp list shows no bones server:\n{said}"));
    assert!(line.contains("bones mcp"), "{line}");
    if has_mcp_server() {
        assert!(
            line.contains("Connected") && !line.contains("Disconnected"),
            "{line}"
        );
    } else {
        eprintln!("SKIPPED the connected check: this build has no `bones mcp`");
    }
}
