//! bones: run many AI coding agents on one repository without them
//! trampling each other.
//!
//! The binary is a thin layer over this library. The modules are layered,
//! lowest first; a module uses only modules on its own layer or below, never
//! above (`tests/layers.rs` checks it from the source, reading this table):
//!
//! | layer | modules | what they hold |
//! |---|---|---|
//! | 1 | `sys` | OS facts and plain values: processes, sockets, durable writes, durations, names |
//! | 2 | `state` | the workspace and its state directory: paths, the hub record, locks, ports |
//! | 3 | `oplog`, `coord`, `lease`, `trunk` | hub.log; the coordination client; slot leases in the sessions bucket (below both the swarm and the task board, which asks whether a claimant's slot has ended); the hub repository and landing |
//! | 4 | `swarm`, `tasks`, `feed` | the domain as clients see it: slots, the task board, the feed |
//! | 5 | `hub`, `doctor`, `agent`, `harness`, `view` | the hub server; read-only checks judged by the hub's rules; an agent's session as a whole (its primer, and the exit codes every interface gives); agent harnesses' configuration and hook input; the live picture of the swarm |
//! | 6 | `cli`, `mcp`, `top` | the interfaces: parse, call the library, print (`cli`); the same verbs as MCP tools on stdio (`mcp`); the terminal view (`top`) |

pub mod agent;
pub mod cli;
pub mod coord;
pub mod doctor;
pub mod feed;
pub mod harness;
pub mod hub;
pub mod lease;
pub mod mcp;
pub mod oplog;
pub mod state;
pub mod swarm;
pub mod sys;
pub mod tasks;
pub mod top;
pub mod trunk;
pub mod view;
