//! The task board: shared work items on JetStream KV with compare-and-swap
//! claims that never double-claim (decision 10).
//!
//! Records live in the `bones-tasks` bucket ([`board`]); their rules are in
//! [`record`]; [`claimer`] picks what `claim --next` tries; the hub turns
//! every revision into an event on `tasks-events`
//! and an `rpc` entry in hub.log (`hub::projector`). The record and event
//! schemas are documented in `docs/tasks.md` so any NATS client can use them.

pub mod board;
pub mod claimer;
pub mod record;

pub use board::{Board, NewTask, TaskError, Update};
pub use claimer::Claimer;
pub use record::{Status, Task};
