//! `bones mcp`: a Model Context Protocol server on stdio, so agent
//! harnesses drive bones with tool calls instead of shell glue.
//!
//! Built on the official Rust SDK (`rmcp`): [`tools`] exposes the agent's
//! loop (join, status, sync, commit, close, restore, the task verbs, share,
//! feed, prime) with typed inputs and structured outputs whose schemas are
//! derived from the library types that serialise them; [`error`] turns
//! failures into tool errors carrying the command line's exit code;
//! [`session`] is the one agent session a server serves, and keeps its
//! slot's lease while the client is connected. The tool list is documented
//! in `docs/mcp.md`.

pub mod error;
pub mod session;
pub mod tools;

use rmcp::ServiceExt;

pub use error::ToolError;
pub use session::Session;
pub use tools::BonesServer;

/// Why the server stopped other than by its client closing stdin.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the MCP session could not start: {0}")]
    Start(String),
    #[error("the MCP session ended abnormally: {0}")]
    Run(String),
}

impl crate::sys::error::Kinded for ServeError {
    fn kind(&self) -> crate::sys::error::ErrorKind {
        crate::sys::error::ErrorKind::Internal
    }
}

/// Serves `session` on stdin and stdout until the client closes stdin
/// (or the process is told to stop). The slot's lease is renewed while it
/// runs; after that the slot is left to its lease (see [`session`]).
pub async fn serve(session: Session) -> Result<(), ServeError> {
    let renewing = session.keep_renewing();
    let served = async {
        let service = BonesServer::new(session)
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| ServeError::Start(e.to_string()))?;
        service
            .waiting()
            .await
            .map(|_| ())
            .map_err(|e| ServeError::Run(e.to_string()))
    };
    let stopped = tokio::select! {
        served = served => served,
        () = crate::sys::signals::stopped() => Ok(()),
    };
    renewing.abort();
    stopped
}
