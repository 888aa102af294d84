//! The requests slots send to the hub over the coordination server.
//!
//! Plain JSON on a NATS subject, so the hub is the one writer of `trunk`
//! and any client can land work the same way the CLI does.

use serde::{Deserialize, Serialize};

/// Subject the hub answers landing requests on.
pub const LAND_SUBJECT: &str = "bones.hub.land";

/// Land the commits of a slot branch that trunk lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandRequest {
    pub slot: String,
    /// The slot branch tip the client saw; the hub lands exactly this.
    pub head: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Set by `bones land`: the commits to land are the user's, fetched
    /// into `refs/bones/user` (`slot` is then empty); names the user's
    /// branch for the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The hub's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum LandReply {
    /// Trunk now holds the slot's work.
    Landed {
        trunk: String,
        commits: Vec<String>,
        skipped: usize,
    },
    /// A commit conflicts with trunk; nothing changed.
    Conflict { commit: String, paths: Vec<String> },
    /// The request could not be carried out; nothing changed.
    Failed { error: String },
}
