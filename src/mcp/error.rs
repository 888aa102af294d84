//! Tool errors: a failed tool call answers `isError: true` with one JSON
//! text block carrying the exit code the same failure has on the command
//! line, its name and the message: `{"code": 6, "kind": "held",
//! "message": "..."}`. An agent (or its harness) branches on `kind` as a
//! script branches on the exit code.

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};
use serde::Serialize;

use crate::agent::exit::exit_code;
use crate::sys::error::{ErrorKind, Kinded};

/// A failed tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolError {
    /// The exit code of the same failure on the command line.
    pub code: u8,
    /// What kind of failure it is: the `kind` of a `--json` failure on
    /// the command line (docs/json.md).
    pub kind: ErrorKind,
    /// What failed and what to do, as the command line says it.
    pub message: String,
}

impl ToolError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ToolError {
        ToolError {
            code: exit_code(kind),
            kind,
            message: message.into(),
        }
    }

    /// A call the server cannot run as asked (exit code 2).
    pub fn usage(message: impl Into<String>) -> ToolError {
        ToolError::new(ErrorKind::Usage, message)
    }
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        let text = serde_json::to_string(&self).unwrap_or_default();
        Ok(CallToolResult::error(vec![ContentBlock::text(text)]).into())
    }
}

/// Every library error says its kind; the tool error carries it and its
/// exit code, as the command line's failure does.
impl<E: Kinded> From<E> for ToolError {
    fn from(err: E) -> ToolError {
        ToolError::new(err.kind(), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeaseError;
    use crate::swarm::SwarmError;

    #[test]
    fn an_error_carries_its_exit_code_and_kind() {
        let err: ToolError = SwarmError::Lease(LeaseError::Held {
            slot: "s".into(),
            agent: "a".into(),
            age_s: 1,
            ttl_s: 60,
        })
        .into();
        assert_eq!((err.code, err.kind), (6, ErrorKind::Held));
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
