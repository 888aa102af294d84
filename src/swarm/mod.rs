//! Slots and their leases, as seen by clients of the hub.
//!
//! A slot is alive while its lease is: a record in the `bones-swarm-sessions`
//! KV bucket renewed by every slot verb (decision 3). The pid of a
//! short-lived CLI says nothing about whether an agent is still working.

pub mod apply;
mod checkout;
mod client;
mod identity;
pub mod protocol;
pub mod session;
pub mod slot;
pub mod user;

pub use client::{
    AGENT_ENV, Closed, CommitOutcome, InputError, JoinOptions, Joined, MAX_MESSAGE, NoAnswer,
    SLOT_ENV, SlotStatus, Swarm, SwarmError, agent_from_env, auto_slot_name, current_slot,
    env_text, validate_message,
};
pub use identity::identity;
pub use slot::removed_checkout_hint;
