//! bones: run many AI coding agents on one repository without them
//! trampling each other.
//!
//! The dependency direction is `cli -> {hub, swarm} -> workspace`, never
//! back: the binary is a thin layer and everything is testable as a library.

pub mod cli;
pub mod doctor;
pub mod duration;
pub mod feed;
pub mod fsutil;
pub mod gitcli;
pub mod hash;
pub mod hub;
pub mod shown;
pub mod swarm;
pub mod tasks;
pub mod workspace;
