//! bones: run many AI coding agents on one repository without them
//! trampling each other.
//!
//! The dependency direction is `cli -> {hub, swarm} -> workspace`, never
//! back: the binary is a thin layer and everything is testable as a library.

pub mod cli;
pub mod coord;
pub mod doctor;
pub mod feed;
pub mod hub;
pub mod oplog;
pub mod state;
pub mod swarm;
pub mod sys;
pub mod tasks;
pub mod trunk;
