//! Gemini CLI's project configuration.
//!
//! - `.gemini/settings.json`, the project settings (used once the user
//!   trusts the folder): `mcpServers` maps a name to `{"command", "args",
//!   "env"?, "cwd"?, "timeout"?, "trust"?}` for a stdio server
//!   (<https://geminicli.com/docs/tools/mcp-server/>); `hooks` maps an event
//!   (`SessionStart`, `SessionEnd`, ...) to a list of `{"matcher"?,
//!   "hooks": [{"type": "command", "command", "name"?, "timeout"?,
//!   "description"?}]}` groups, the timeout in milliseconds. A hook gets
//!   `session_id`, `cwd`, `hook_event_name` and `source` (`reason` at the
//!   end) on stdin and must print nothing but one JSON object on stdout; a
//!   SessionStart hook's `hookSpecificOutput.additionalContext` is added to
//!   the session (<https://geminicli.com/docs/hooks/reference/>).
//! - `GEMINI.md`, the context file Gemini CLI loads from the project
//!   (<https://geminicli.com/docs/cli/gemini-md/>).

use std::path::Path;

use super::files::{self, Change, IntegrateError};
use super::json::Json;
use super::{
    HOOK_TIMEOUT_S, Harness, HookEvent, MCP_COMMAND, hook_command, mcp_args, set_hooks,
    set_mcp_server, snippet,
};

pub(super) const NEXT_STEPS: &[&str] = &[
    "start `gemini` in this directory and trust the folder when asked: Gemini CLI ignores a project's settings until then",
    "`gemini mcp list` shows the `bones` server connected once the folder is trusted",
];

pub(super) fn plan(root: &Path) -> Result<Vec<Change>, IntegrateError> {
    let settings = files::json_file(root, ".gemini/settings.json", |settings| {
        set_mcp_server(
            settings,
            vec![("command", Json::text(MCP_COMMAND)), ("args", mcp_args())],
        )?;
        set_hooks(settings, Harness::Gemini, |event| {
            Json::of(vec![
                ("name", Json::String(format!("bones-{}", event.name()))),
                ("type", Json::text("command")),
                (
                    "command",
                    Json::String(hook_command(Harness::Gemini, event)),
                ),
                ("timeout", Json::Number((HOOK_TIMEOUT_S * 1000).into())),
                (
                    "description",
                    Json::text(match event {
                        HookEvent::SessionStart => {
                            "bones: take a slot for this session and print the primer"
                        }
                        HookEvent::SessionEnd => "bones: close this session's slot",
                    }),
                ),
            ])
        })
    })?;
    let context = files::text_file(root, Harness::Gemini.instructions_file(), snippet::merge)?;
    Ok(vec![settings, context])
}
