//! The agent's session as a whole: what an agent needs to know at its
//! first turn, gathered from the slots, the task board and the feed.
//!
//! The verbs themselves live below (`swarm`, `tasks`, `feed`); this layer
//! only combines them, so every interface (the command line, the MCP
//! server) hands an agent the same picture.

pub mod exit;
pub mod prime;

pub use prime::{ExitCode, PrimeError, Primer, SlotView, Step};
