//! Codex's project configuration.
//!
//! - `.codex/config.toml`, the project layer of Codex's configuration (read
//!   once the user trusts the project): a stdio MCP server is a
//!   `[mcp_servers.NAME]` table with `command`, `args` and optional `env`,
//!   `cwd`, `startup_timeout_sec`, ... (<https://developers.openai.com/codex/mcp>,
//!   <https://developers.openai.com/codex/config-reference>). The file is
//!   edited with `toml_edit`, so the user's comments, order and formatting
//!   stay.
//! - `.codex/hooks.json`, hooks next to that layer: `{"hooks": {EVENT:
//!   [{"matcher"?, "hooks": [{"type": "command", "command", "timeout"?,
//!   "statusMessage"?}]}]}}`, the timeout in seconds. Codex documents a
//!   `SessionStart` event (input `session_id`, `cwd`, `hook_event_name`,
//!   `source`; stdout one JSON object whose
//!   `hookSpecificOutput.additionalContext` joins the session) and **no
//!   session-end event**: a Codex session's slot ends with the Codex
//!   process, which its lease follows. Codex asks the user to review and
//!   trust new hooks before running them
//!   (<https://developers.openai.com/codex/hooks>).
//! - `AGENTS.md`, the instructions Codex reads from the project
//!   (<https://developers.openai.com/codex/guides/agents-md>).

use std::path::Path;

use toml_edit::{Array, DocumentMut, Item, Table, value};

use super::files::{self, Change, IntegrateError, Unparsed};
use super::json::Json;
use super::{
    HOOK_TIMEOUT_S, Harness, MCP_ARGS, MCP_COMMAND, MCP_SERVER_NAME, hook_command, set_hooks,
    snippet,
};

pub(super) const NEXT_STEPS: &[&str] = &[
    "start `codex` in this directory and trust the project when asked: Codex reads .codex/ only in trusted projects",
    "then review and trust bones' SessionStart hook (Codex asks for new hooks); `codex mcp list` shows the `bones` server",
];

pub(super) fn plan(root: &Path) -> Result<Vec<Change>, IntegrateError> {
    let config = files::text_file(root, ".codex/config.toml", |before, path| {
        with_mcp_server(before.unwrap_or_default(), path)
    })?;
    let hooks = files::json_file(root, ".codex/hooks.json", |settings| {
        set_hooks(settings, Harness::Codex, |event| {
            Json::of(vec![
                ("type", Json::text("command")),
                ("command", Json::String(hook_command(Harness::Codex, event))),
                ("timeout", Json::Number(HOOK_TIMEOUT_S.into())),
                (
                    "statusMessage",
                    Json::text("bones: taking a slot for this session"),
                ),
            ])
        })
    })?;
    let agents = files::text_file(root, Harness::Codex.instructions_file(), snippet::merge)?;
    Ok(vec![config, hooks, agents])
}

/// `text` with `[mcp_servers.bones]` holding bones' command and args; the
/// text itself when they are already there.
fn with_mcp_server(text: &str, path: &Path) -> Result<String, IntegrateError> {
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| IntegrateError::Unreadable {
                path: path.to_path_buf(),
                format: "TOML",
                source: Unparsed::Toml(Box::new(e)),
            })?;
    let shape = |key: String, item: &Item| IntegrateError::Shape {
        path: path.to_path_buf(),
        key,
        found: item.type_name(),
        expected: "a table",
    };
    let servers = doc.entry("mcp_servers").or_insert_with(|| {
        let mut table = Table::new();
        // `[mcp_servers.bones]` alone, without an empty `[mcp_servers]`
        table.set_implicit(true);
        Item::Table(table)
    });
    if !servers.is_table_like() {
        return Err(shape("mcp_servers".to_string(), servers));
    }
    let servers = servers.as_table_like_mut().expect("checked");
    let ours = servers
        .entry(MCP_SERVER_NAME)
        .or_insert(Item::Table(Table::new()));
    if !ours.is_table_like() {
        return Err(shape(format!("mcp_servers.{MCP_SERVER_NAME}"), ours));
    }
    let ours = ours.as_table_like_mut().expect("checked");
    let mut changed = false;
    if ours.get("command").and_then(Item::as_str) != Some(MCP_COMMAND) {
        ours.insert("command", value(MCP_COMMAND));
        changed = true;
    }
    let args_now: Option<Vec<&str>> = ours
        .get("args")
        .and_then(Item::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect());
    if args_now.as_deref() != Some(MCP_ARGS) {
        ours.insert("args", value(MCP_ARGS.iter().copied().collect::<Array>()));
        changed = true;
    }
    Ok(if changed {
        doc.to_string()
    } else {
        text.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_table_is_added_beside_the_users_config_and_kept_on_rerun() {
        let path = Path::new(".codex/config.toml");
        let user = "# my settings\nmodel = \"o4\"  # the fast one\n\n[mcp_servers.docs]\ncommand = \"docs-mcp\"\n";
        let once = with_mcp_server(user, path).unwrap();
        assert!(once.starts_with(user), "{once}");
        assert!(
            once.ends_with("[mcp_servers.bones]\ncommand = \"bones\"\nargs = [\"mcp\"]\n"),
            "{once}"
        );
        assert_eq!(with_mcp_server(&once, path).unwrap(), once);
        let parsed: toml_edit::DocumentMut = once.parse().unwrap();
        assert_eq!(
            parsed["mcp_servers"]["docs"]["command"].as_str(),
            Some("docs-mcp")
        );
    }

    #[test]
    fn a_server_key_that_is_not_a_table_is_refused() {
        let err = with_mcp_server("mcp_servers = 3\n", Path::new("c.toml")).unwrap_err();
        assert!(matches!(err, IntegrateError::Shape { .. }), "{err}");
        let err = with_mcp_server("[[[", Path::new("c.toml")).unwrap_err();
        assert!(matches!(err, IntegrateError::Unreadable { .. }), "{err}");
    }
}
