//! Tool errors: a failed tool call answers `isError: true` with one JSON
//! text block carrying the exit code the same failure has on the command
//! line, its name and the message: `{"code": 6, "kind": "held",
//! "message": "..."}`. An agent (or its harness) branches on `kind` as a
//! script branches on the exit code.

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};
use serde::Serialize;

use crate::agent::PrimeError;
use crate::cli::codes;
use crate::cli::exit;
use crate::feed::FeedError;
use crate::swarm::SwarmError;
use crate::swarm::lease::LeaseError;
use crate::tasks::TaskError;
use crate::tasks::record::Refusal;

/// A failed tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolError {
    /// The exit code of the same failure on the command line.
    pub code: u8,
    /// Its name ([`codes::kind`]).
    pub kind: &'static str,
    /// What failed and what to do, as the command line says it.
    pub message: String,
}

impl ToolError {
    pub fn new(code: u8, message: impl Into<String>) -> ToolError {
        ToolError {
            code,
            kind: codes::kind(code),
            message: message.into(),
        }
    }

    /// A call the server cannot run as asked (exit code 2).
    pub fn usage(message: impl Into<String>) -> ToolError {
        ToolError::new(exit::USAGE, message)
    }
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        let text = serde_json::to_string(&self).unwrap_or_default();
        Ok(CallToolResult::error(vec![ContentBlock::text(text)]).into())
    }
}

impl From<SwarmError> for ToolError {
    fn from(err: SwarmError) -> ToolError {
        let code = match &err {
            SwarmError::Conflict { .. } => exit::CONFLICT,
            SwarmError::Unresolved { .. } => exit::UNRESOLVED,
            SwarmError::Lease(LeaseError::Held { .. }) | SwarmError::NotHolder { .. } => exit::HELD,
            SwarmError::Task(err) => return ToolError::from_task(err),
            SwarmError::Name(_) | SwarmError::Usage(_) => exit::USAGE,
            SwarmError::NotStarted(code) => *code,
            _ => exit::FAILURE,
        };
        ToolError::new(code, err.to_string())
    }
}

impl ToolError {
    fn from_task(err: &TaskError) -> ToolError {
        let code = match err {
            TaskError::Refused(Refusal::ClaimedBy { .. }) => exit::HELD,
            TaskError::Invalid(_) => exit::USAGE,
            _ => exit::FAILURE,
        };
        ToolError::new(code, err.to_string())
    }
}

impl From<TaskError> for ToolError {
    fn from(err: TaskError) -> ToolError {
        ToolError::from_task(&err)
    }
}

impl From<FeedError> for ToolError {
    fn from(err: FeedError) -> ToolError {
        let code = match err {
            FeedError::Invalid(_) => exit::USAGE,
            _ => exit::FAILURE,
        };
        ToolError::new(code, err.to_string())
    }
}

impl From<PrimeError> for ToolError {
    fn from(err: PrimeError) -> ToolError {
        match err {
            PrimeError::Swarm(err) => err.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_carries_its_exit_code_and_kind() {
        let err: ToolError = SwarmError::Lease(LeaseError::Held {
            slot: "s".into(),
            agent: "a".into(),
            age_s: 1,
            ttl_s: 60,
        })
        .into();
        assert_eq!((err.code, err.kind), (6, "held"));
        let response = err.into_call_tool_result().unwrap();
        let CallToolResponse::Complete(result) = response else {
            panic!("not a complete result");
        };
        assert_eq!(result.is_error, Some(true));
        let text = serde_json::to_value(&result.content[0]).unwrap();
        let body: serde_json::Value = serde_json::from_str(text["text"].as_str().unwrap()).unwrap();
        assert_eq!(body["code"], 6);
        assert_eq!(body["kind"], "held");
    }
}
