//! Claude Code's project configuration.
//!
//! - `.mcp.json`, the project-scope MCP servers: `{"mcpServers": {NAME:
//!   {"type": "stdio", "command", "args", "env"?}}}`; Claude Code asks
//!   each user once to approve a project server before it starts it
//!   (<https://code.claude.com/docs/en/mcp>, "Project scope").
//! - `.claude/settings.json`, the shared project settings: `hooks` maps an
//!   event (`SessionStart`, `SessionEnd`, ...) to a list of `{"matcher"?,
//!   "hooks": [{"type": "command", "command", "timeout"?}]}` groups, the
//!   timeout in seconds; a group without a matcher runs for every source
//!   (`startup`, `resume`, `clear`, `compact`). The hook gets the session
//!   as JSON on stdin (`session_id`, `cwd`, `hook_event_name`, `source` or
//!   `reason`), and a SessionStart hook's stdout is added to the session's
//!   context (<https://code.claude.com/docs/en/hooks>,
//!   <https://code.claude.com/docs/en/settings>).
//! - `CLAUDE.md`, the project memory Claude Code reads at start
//!   (<https://code.claude.com/docs/en/memory>).

use std::path::Path;

use super::files::{self, Change, IntegrateError};
use super::json::Json;
use super::{
    HOOK_TIMEOUT_S, Harness, MCP_COMMAND, hook_command, mcp_args, set_hooks, set_mcp_server,
    snippet,
};

pub(super) const NEXT_STEPS: &[&str] = &[
    "start `claude` in this directory and approve the project's `bones` MCP server when asked (once per user)",
    "or, for yourself only, without the approval: claude mcp add bones -- bones mcp",
];

pub(super) fn plan(root: &Path) -> Result<Vec<Change>, IntegrateError> {
    let mcp = files::json_file(root, ".mcp.json", |settings| {
        set_mcp_server(
            settings,
            vec![
                ("type", Json::text("stdio")),
                ("command", Json::text(MCP_COMMAND)),
                ("args", mcp_args()),
            ],
        )
    })?;
    let settings = files::json_file(root, ".claude/settings.json", |settings| {
        set_hooks(settings, Harness::ClaudeCode, |event| {
            Json::of(vec![
                ("type", Json::text("command")),
                (
                    "command",
                    Json::String(hook_command(Harness::ClaudeCode, event)),
                ),
                ("timeout", Json::Number(HOOK_TIMEOUT_S.into())),
            ])
        })
    })?;
    let memory = files::text_file(
        root,
        Harness::ClaudeCode.instructions_file(),
        snippet::merge,
    )?;
    Ok(vec![mcp, settings, memory])
}
