//! Agent harnesses (Claude Code, Codex, Gemini CLI): the project
//! configuration `bones integrate` writes for them, and what their hooks
//! hand `bones hook` on stdin.
//!
//! Each harness gets, in its own documented files and schema (cited in its
//! module): the `bones` MCP server (`bones mcp`), its session-start and
//! session-end hooks where it has them (`bones hook session-start|end
//! --harness NAME`), and an instructions block describing the loop. The
//! files belong to the user: a file is parsed, only bones' own entries are
//! added or updated, everything else keeps its place and value, and a file
//! whose content would not change is left byte for byte as it is. A second
//! run therefore changes nothing.

mod claude;
mod codex;
mod files;
mod gemini;
pub mod input;
pub mod json;
mod snippet;

use std::path::Path;

pub use files::{Change, IntegrateError, Unparsed};
use json::Json;

/// The MCP server's command and arguments, as every harness launches it.
pub const MCP_COMMAND: &str = "bones";
pub const MCP_ARGS: &[&str] = &["mcp"];
/// The name bones' MCP server has in each harness's configuration.
pub const MCP_SERVER_NAME: &str = "bones";

/// How long a harness lets a bones hook run before it gives up on it, in
/// seconds: well above the hook's own bound (`cli::hook`'s ten seconds), so
/// the harness never kills a hook that is about to print its warning.
pub const HOOK_TIMEOUT_S: u64 = 30;

/// An agent harness bones integrates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Harness {
    ClaudeCode,
    Codex,
    Gemini,
}

/// How a harness reads a session-start hook's stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutput {
    /// Plain text, added to the agent's context (Claude Code).
    Text,
    /// One JSON object, `{"hookSpecificOutput": {"hookEventName":
    /// "SessionStart", "additionalContext": ...}}`, and nothing else on
    /// stdout (Codex, Gemini CLI).
    Json,
}

impl Harness {
    pub const ALL: [Harness; 3] = [Harness::ClaudeCode, Harness::Codex, Harness::Gemini];

    /// The name on the command line: `claude-code`, `codex`, `gemini`.
    pub fn name(self) -> &'static str {
        match self {
            Harness::ClaudeCode => "claude-code",
            Harness::Codex => "codex",
            Harness::Gemini => "gemini",
        }
    }

    pub fn parse(text: &str) -> Option<Harness> {
        Harness::ALL.into_iter().find(|h| h.name() == text)
    }

    /// The start of the agent ids of its sessions (`claude-4e3eb4ecccb7`).
    pub fn agent_prefix(self) -> &'static str {
        match self {
            Harness::ClaudeCode => "claude",
            Harness::Codex => "codex",
            Harness::Gemini => "gemini",
        }
    }

    /// The instructions file it reads from the project root.
    pub fn instructions_file(self) -> &'static str {
        match self {
            Harness::ClaudeCode => "CLAUDE.md",
            Harness::Codex => "AGENTS.md",
            Harness::Gemini => "GEMINI.md",
        }
    }

    pub fn hook_output(self) -> HookOutput {
        match self {
            Harness::ClaudeCode => HookOutput::Text,
            Harness::Codex | Harness::Gemini => HookOutput::Json,
        }
    }

    /// The hook events it has, of the two bones uses. Codex documents no
    /// session-end event: its sessions' slots end with the Codex process
    /// (the lease follows it).
    pub fn events(self) -> &'static [HookEvent] {
        match self {
            Harness::ClaudeCode | Harness::Gemini => {
                &[HookEvent::SessionStart, HookEvent::SessionEnd]
            }
            Harness::Codex => &[HookEvent::SessionStart],
        }
    }

    /// Every change that brings the project at `root` to this harness's
    /// configuration, unchanged files included (see [`Change::changed`]).
    pub fn plan(self, root: &Path) -> Result<Vec<Change>, IntegrateError> {
        match self {
            Harness::ClaudeCode => claude::plan(root),
            Harness::Codex => codex::plan(root),
            Harness::Gemini => gemini::plan(root),
        }
    }

    /// What to do after the files are written, for the user (one line each).
    pub fn next_steps(self) -> &'static [&'static str] {
        match self {
            Harness::ClaudeCode => claude::NEXT_STEPS,
            Harness::Codex => codex::NEXT_STEPS,
            Harness::Gemini => gemini::NEXT_STEPS,
        }
    }
}

/// A hook event bones handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookEvent {
    SessionStart,
    SessionEnd,
}

impl HookEvent {
    pub const ALL: [HookEvent; 2] = [HookEvent::SessionStart, HookEvent::SessionEnd];

    /// The name on bones' command line and in hub.log: `session-start`.
    pub fn name(self) -> &'static str {
        match self {
            HookEvent::SessionStart => "session-start",
            HookEvent::SessionEnd => "session-end",
        }
    }

    pub fn parse(text: &str) -> Option<HookEvent> {
        HookEvent::ALL.into_iter().find(|e| e.name() == text)
    }

    /// The event's key in the harnesses' hook settings (the three use the
    /// same names).
    pub fn settings_key(self) -> &'static str {
        match self {
            HookEvent::SessionStart => "SessionStart",
            HookEvent::SessionEnd => "SessionEnd",
        }
    }
}

/// The command a harness's hook runs for `event`.
pub fn hook_command(harness: Harness, event: HookEvent) -> String {
    format!("bones hook {} --harness {}", event.name(), harness.name())
}

/// True for a hook handler bones wrote for `event` (any harness flag, any
/// path to the binary): its command's words are `.../bones hook EVENT ...`.
fn is_bones_handler(handler: &Json, event: HookEvent) -> bool {
    let Some(command) = handler.get("command").and_then(Json::as_str) else {
        return false;
    };
    let mut words = command.split_whitespace();
    let program = words.next().unwrap_or_default();
    (program == "bones" || program.ends_with("/bones"))
        && words.next() == Some("hook")
        && words.next() == Some(event.name())
}

/// Adds or updates bones' handler for `event` in a settings object whose
/// `hooks` map each event to a list of `{"matcher"?, "hooks": [handler]}`
/// groups (the shape Claude Code, Codex and Gemini CLI share). A handler
/// bones wrote before is updated in place, keeping any field the user
/// added; otherwise a new group is appended after the user's own.
fn set_hook(
    settings: &mut Json,
    event: HookEvent,
    handler: Json,
) -> Result<(), (String, &'static str)> {
    let hooks = settings.entry("hooks", Json::object());
    if !hooks.is_object() {
        return Err(("hooks".to_string(), hooks.kind()));
    }
    let key = event.settings_key();
    let groups = hooks.entry(key, Json::Array(Vec::new()));
    let Json::Array(groups) = groups else {
        return Err((format!("hooks.{key}"), groups.kind()));
    };
    for group in groups.iter_mut() {
        if let Some(Json::Array(handlers)) = group.get_mut("hooks")
            && let Some(ours) = handlers.iter_mut().find(|h| is_bones_handler(h, event))
        {
            if let Json::Object(fields) = handler {
                for (k, v) in fields {
                    ours.set(&k, v);
                }
            }
            return Ok(());
        }
    }
    groups.push(Json::of(vec![("hooks", Json::Array(vec![handler]))]));
    Ok(())
}

/// [`set_hook`] for each event `harness` has, with `handler(event)`.
fn set_hooks(
    settings: &mut Json,
    harness: Harness,
    handler: impl Fn(HookEvent) -> Json,
) -> Result<(), (String, &'static str)> {
    for &event in harness.events() {
        set_hook(settings, event, handler(event))?;
    }
    Ok(())
}

/// Adds or updates the `bones` server in a settings object's `mcpServers`
/// map (Claude Code's `.mcp.json`, Gemini CLI's `settings.json`), keeping
/// any field the user added to it.
fn set_mcp_server(
    settings: &mut Json,
    fields: Vec<(&str, Json)>,
) -> Result<(), (String, &'static str)> {
    let servers = settings.entry("mcpServers", Json::object());
    if !servers.is_object() {
        return Err(("mcpServers".to_string(), servers.kind()));
    }
    let ours = servers.entry(MCP_SERVER_NAME, Json::object());
    if !ours.is_object() {
        return Err((format!("mcpServers.{MCP_SERVER_NAME}"), ours.kind()));
    }
    for (k, v) in fields {
        ours.set(k, v);
    }
    Ok(())
}

/// The MCP server's arguments as a JSON array.
fn mcp_args() -> Json {
    Json::Array(MCP_ARGS.iter().map(|a| Json::text(a)).collect())
}
