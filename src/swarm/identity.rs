//! Who is acting: the name a task claim or a knowledge-feed entry is
//! recorded under.
//!
//! Agents in slots are known by their slot (it outlives any one process),
//! agents outside a slot by `$BONES_AGENT_ID`, and a person at the
//! workspace root by the workspace's own agent id. Every verb that records
//! an actor resolves it here, so the same agent gets the same name on the
//! task board and in the feed.

use super::client::{AGENT_ENV, SwarmError, current_slot};
use crate::hub::Paths;

/// The acting identity: the slot (`--slot`, `$BONES_SLOT`, or the checkout
/// the current directory is in), else `$BONES_AGENT_ID`, else
/// `agent-` and the first 12 characters of the workspace's agent id.
///
/// Fails only when a slot is named explicitly and the name is invalid; an
/// unusable `$BONES_SLOT` falls through to the next source, as it always
/// has for task claims.
pub fn identity(paths: &Paths, slot: Option<String>) -> Result<String, SwarmError> {
    if slot.is_some() {
        return current_slot(paths, slot);
    }
    if let Ok(slot) = current_slot(paths, None) {
        return Ok(slot);
    }
    if let Ok(agent) = std::env::var(AGENT_ENV)
        && !agent.trim().is_empty()
    {
        return Ok(agent.trim().to_string());
    }
    let id = crate::fsutil::read_trimmed(&paths.state_dir.join("agent.id"))
        .ok()
        .flatten()
        .unwrap_or_else(|| "operator".to_string());
    Ok(format!("agent-{}", id.chars().take(12).collect::<String>()))
}
