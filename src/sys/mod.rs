//! Facts about the operating system and plain values that every layer
//! uses: processes with their start time, sockets (netlink socket
//! diagnostics and the `/proc/net/tcp` tables), the stop signals, durable
//! file writes, durations, hashing, the display of untrusted text, and the
//! validation of ids and names.

pub mod clock;
pub mod duration;
pub mod error;
pub mod fsutil;
pub mod gitcli;
pub mod hash;
pub mod name;
pub mod proc_net;
pub mod process;
pub mod schema;
pub mod shown;
pub mod signals;
pub mod sockdiag;
