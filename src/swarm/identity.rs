//! Who is acting: the name a task claim or a knowledge-feed entry is
//! recorded under.
//!
//! Agents in slots are known by their slot (it outlives any one process),
//! agents outside a slot by `$BONES_AGENT_ID`, and a person at the
//! workspace root by the workspace's own agent id. Every verb that records
//! an actor resolves it here, so the same agent gets the same name on the
//! task board and in the feed.

use super::client::{SLOT_ENV, SwarmError, agent_from_env, current_slot, env_text};
use crate::state::Paths;

/// The acting identity: the slot (`--slot`, `$BONES_SLOT`, or the checkout
/// the current directory is in), else `$BONES_AGENT_ID`, else
/// `agent-` and the first 12 characters of the workspace's agent id.
///
/// Fails when a slot named by `--slot` or `$BONES_SLOT` is not a valid
/// slot name, or when either variable or `$BONES_AGENT_ID` is not valid
/// text: a name given on purpose is never silently replaced by another.
pub fn identity(paths: &Paths, slot: Option<String>) -> Result<String, SwarmError> {
    if slot.is_some() {
        return current_slot(paths, slot);
    }
    if env_text(SLOT_ENV)?.is_some() {
        return current_slot(paths, None);
    }
    if let Ok(slot) = current_slot(paths, None) {
        return Ok(slot);
    }
    if let Some(agent) = agent_from_env()? {
        return Ok(agent.trim().to_string());
    }
    let id = crate::sys::fsutil::read_trimmed(&paths.state_dir.join("agent.id"))
        .ok()
        .flatten()
        .unwrap_or_else(|| "operator".to_string());
    Ok(format!("agent-{}", id.chars().take(12).collect::<String>()))
}
