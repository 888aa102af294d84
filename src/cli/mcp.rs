//! `bones mcp`: serve the agent's loop as MCP tools on stdio.

use clap::Args;

use super::Failure;
use crate::mcp::{self, Session};
use crate::sys::error::ErrorKind;

#[derive(Debug, Args)]
#[command(after_help = "Add it to Claude Code (run in the repository):\n  \
    claude mcp add bones -- bones mcp\n\n\
    One server serves one agent session: stdin and stdout carry JSON-RPC, stderr its notes. \
    The agent is $BONES_AGENT_ID, else a generated id; the join tool takes a slot whose lease \
    follows this server's process, so the slot is reaped (its work saved) within seconds after \
    the client disconnects, unless it was closed first. A slot a hook took for the session \
    ($BONES_SLOT, or the checkout the server starts in) is used instead of joining another. \
    Tools: join, restore, status, sync, commit, close, tasks_create, tasks_ready, tasks_show, \
    tasks_claim_next, tasks_close, tasks_release, share, feed, prime (docs/mcp.md).")]
pub struct McpArgs {}

pub fn run(_args: McpArgs) -> Result<(), Failure> {
    let (paths, _) = super::workspace_and_runtime()?;
    let session = Session::new(paths).map_err(|err| Failure::new(err.kind, err.message))?;
    // tool calls run side by side; stdin is read on the blocking pool
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| {
            Failure::new(
                ErrorKind::Internal,
                format!("cannot start the async runtime: {err}"),
            )
        })?;
    let agent = runtime.block_on(session.agent());
    eprintln!(
        "mcp: serving agent {} on stdio (workspace {})",
        crate::sys::shown::plain(&agent),
        session.paths().root.display()
    );
    Ok(runtime.block_on(mcp::serve(session))?)
}
