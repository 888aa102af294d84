//! A coordination server of our own for a restore: the hub's `nats-server`
//! set-up (config, key, supervised child that dies with us) pointed at a
//! staging directory instead of the state directory.
//!
//! Restoring through a real server, rather than unpacking snapshot files
//! into place, leaves the store exactly as the server version in use lays
//! it out; the staging directory is then renamed into place whole.

use std::path::Path;
use std::time::Duration;

use super::BackupError;
use crate::coord;
use crate::coord::credential;
use crate::coord::credential::{Guard, Key};
use crate::hub::server::Supervisor;
use crate::oplog::{HubLog, LogConfig};
use crate::state::paths::Paths;
use crate::state::workspace::Workspace;

/// How long the scratch server gets to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long it gets to flush and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running scratch server; stopped on drop if [`Scratch::stop`] was not
/// called (an error path), so no server outlives the restore.
pub struct Scratch {
    supervisor: Option<Supervisor>,
    paths: Paths,
    port: u16,
    key: Key,
}

impl Scratch {
    /// Starts `nats-server` on `<stage>/coord`, listening on a free
    /// loopback port with a throwaway key kept in `<stage>` (0600).
    pub fn start(root: &Path, stage: &Path) -> Result<Scratch, BackupError> {
        let paths = Paths::new(&Workspace {
            root: root.to_path_buf(),
            state_dir: stage.to_path_buf(),
        });
        let binary = crate::hub::server::find_nats_server()?;
        crate::sys::fsutil::ensure_private_dir(&paths.coord_dir)
            .map_err(BackupError::io("cannot create", &paths.coord_dir))?;
        let port = free_port()?;
        let (key, _) = credential::ensure(&paths)?;
        crate::hub::server::write_config(&paths, port, &key)?;
        let log = HubLog::open(stage.join("scratch.log"), LogConfig::default());
        let supervisor = Supervisor::start(binary, &paths, log)?;
        Ok(Scratch {
            supervisor: Some(supervisor),
            paths,
            port,
            key,
        })
    }

    /// Waits until JetStream answers and returns a client.
    pub async fn connect(&self) -> Result<async_nats::Client, BackupError> {
        let supervisor = self.supervisor.as_ref();
        let gave_up = || supervisor.and_then(Supervisor::first_exit);
        let log = &self.paths.nats_log;
        let guard = Guard::new(self.port);
        Ok(coord::wait_ready(&self.key, &guard, READY_TIMEOUT, log, gave_up).await?)
    }

    /// Stops the server and waits for it to exit, so everything it stored
    /// is on disk before the store is moved.
    pub fn stop(mut self) -> Result<(), BackupError> {
        let clean = self
            .supervisor
            .take()
            .is_none_or(|supervisor| supervisor.stop(STOP_TIMEOUT));
        if clean {
            return Ok(());
        }
        Err(BackupError::Server {
            what: "the restore's coordination server".to_string(),
            why: format!(
                "did not exit within {STOP_TIMEOUT:?} and was killed; nothing was changed, try again"
            ),
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(supervisor) = self.supervisor.take() {
            supervisor.stop(STOP_TIMEOUT);
        }
    }
}

fn free_port() -> Result<u16, BackupError> {
    let listener =
        std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).map_err(|e| {
            BackupError::Io {
                what: "cannot find a free port on",
                path: "127.0.0.1".into(),
                source: e,
            }
        })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| BackupError::Io {
            what: "cannot find a free port on",
            path: "127.0.0.1".into(),
            source: e,
        })
}
