//! Every file the hub keeps in the state directory, named once.
//!
//! See `adr/0002-state-directory-layout.md` for what each holds and who
//! writes and removes it.

use std::path::PathBuf;

use crate::state::workspace::Workspace;

/// Absolute paths of the hub's state files for one workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub root: PathBuf,
    pub state_dir: PathBuf,
    pub hub_pid: PathBuf,
    pub hub_json: PathBuf,
    pub repo_url_file: PathBuf,
    pub nats_url_file: PathBuf,
    pub nats_conf: PathBuf,
    /// The coordination key's seed (see `coord::credential`).
    pub nats_seed: PathBuf,
    /// The shared token of an older bones, deleted at the next start.
    pub nats_token: PathBuf,
    pub nats_pid: PathBuf,
    pub nats_log: PathBuf,
    pub hub_repo: PathBuf,
    pub coord_dir: PathBuf,
    pub hub_log: PathBuf,
    /// flock target of `hub start`: one start at a time.
    pub lock: PathBuf,
    /// flock the running hub holds for its whole life (see `hub::lock`).
    pub run_lock: PathBuf,
    pub swarm_dir: PathBuf,
    /// flock target of `hub backup`: one backup at a time.
    pub backup_lock: PathBuf,
    /// The key the hub signs the live view's session cookies with (0600).
    pub ui_key: PathBuf,
    /// One-time login secrets `bones ui` made, one file each (0700).
    pub ui_login_dir: PathBuf,
}

impl Paths {
    /// The paths of a workspace whose root is its own state directory: for
    /// unit tests that need state files in a temp dir.
    #[cfg(test)]
    pub(crate) fn in_dir(dir: &std::path::Path) -> Paths {
        Paths::new(&Workspace {
            root: dir.to_path_buf(),
            state_dir: dir.to_path_buf(),
        })
    }

    pub fn new(ws: &Workspace) -> Paths {
        let dir = &ws.state_dir;
        Paths {
            root: ws.root.clone(),
            state_dir: dir.clone(),
            hub_pid: dir.join("hub.pid"),
            hub_json: dir.join("hub.json"),
            repo_url_file: dir.join("hub-repo-url"),
            nats_url_file: dir.join("hub-nats-url"),
            nats_conf: dir.join("nats.conf"),
            nats_seed: dir.join("nats.seed"),
            nats_token: dir.join("nats.token"),
            nats_pid: dir.join("nats.pid"),
            nats_log: dir.join("nats.log"),
            hub_repo: dir.join("hub.git"),
            coord_dir: dir.join("coord"),
            hub_log: dir.join("hub.log"),
            lock: dir.join("hub.lock"),
            run_lock: dir.join("hub.run.lock"),
            swarm_dir: dir.join("swarm"),
            backup_lock: dir.join("backup.lock"),
            ui_key: dir.join("ui.key"),
            ui_login_dir: dir.join("ui-login"),
        }
    }
}
