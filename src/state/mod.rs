//! A workspace's state directory as every client sees it: discovery of the
//! workspace, the paths inside `.bones/`, the hub's pid record, the start
//! lock, and the recorded ports and URL files.

pub mod lock;
pub mod paths;
pub mod ports;
pub mod record;
pub mod registry;
pub mod workspace;

pub use paths::Paths;
pub use record::{HubRecord, HubState};
