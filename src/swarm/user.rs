//! `bones land`: the user's own new commits flow into trunk.
//!
//! The user keeps committing on their branch while agents work. `bones
//! land` fetches that branch into the hub repository (`refs/bones/user`)
//! and asks the hub to land the commits trunk lacks, through the same
//! replay and compare-and-swap as a slot's (ADR 0003): trunk stays linear,
//! a conflict changes nothing and names the paths, and agents see the
//! commits on their next `bones swarm sync`.

use git2::{Oid, Repository};
use serde::Serialize;

use super::client::{Swarm, SwarmError};
use super::protocol::{LandReply, LandRequest};
use crate::sys::gitcli;
use crate::sys::gitcli::Progress;
use crate::trunk::repo::{TRUNK_REF, USER_REF};

/// What [`Swarm::land_user`] did.
#[derive(Debug, Clone, Serialize)]
pub struct UserLanded {
    /// The user's branch (or `HEAD` when detached).
    pub branch: String,
    /// The user's commit that was landed.
    pub head: String,
    /// The trunk commits made from the user's commits, oldest first
    /// (the same ids when trunk could fast-forward).
    pub landed: Vec<String>,
    /// Trunk after landing.
    pub trunk: String,
    /// Whether trunk took the user's commits unchanged (a fast-forward),
    /// so `bones apply` then needs no rebase.
    pub fast_forward: bool,
}

/// Why `bones land` landed nothing.
#[derive(Debug, thiserror::Error)]
pub enum UserLandError {
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    #[error("your repository has no commit to land yet; commit first")]
    NoCommit,
    #[error(
        "commit {commit} of {branch} conflicts with trunk in {}; trunk is unchanged. \
         Bring trunk in (`bones apply`, then `git rebase bones/trunk`), resolve, and run `bones land` again",
        .paths.join(", ")
    )]
    Conflict {
        branch: String,
        commit: String,
        paths: Vec<String>,
    },
    #[error(
        "commit {0} on your branch is a merge; trunk takes linear history only: \
         `bones apply`, then `git rebase bones/trunk`, then `bones land` again"
    )]
    Merge(String),
    #[error(
        "the hub's trunk shares no history with your branch (a hub seeded by an earlier bones); \
         see \"Hubs seeded by earlier versions\" in the README"
    )]
    Unrelated,
    #[error("{}", .0.message())]
    Git(#[from] git2::Error),
    #[error("{}: {}", .root.display(), .source.message())]
    Open {
        root: std::path::PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("cannot fetch your branch into the hub: {0}")]
    Fetch(#[source] crate::sys::gitcli::GitError),
    #[error("background work failed: {0}")]
    Background(#[from] tokio::task::JoinError),
}

impl crate::sys::error::Kinded for UserLandError {
    fn kind(&self) -> crate::sys::error::ErrorKind {
        use crate::sys::error::ErrorKind;
        match self {
            UserLandError::Swarm(err) => err.kind(),
            UserLandError::Conflict { .. } => ErrorKind::Conflict,
            UserLandError::NoCommit | UserLandError::Merge(_) | UserLandError::Unrelated => {
                ErrorKind::Refused
            }
            UserLandError::Git(_) | UserLandError::Open { .. } | UserLandError::Fetch(_) => {
                ErrorKind::Io
            }
            UserLandError::Background(_) => ErrorKind::Internal,
        }
    }
}

impl Swarm {
    /// Lands the commits of the user's current branch that trunk lacks.
    /// `Ok` with nothing landed when trunk already has them all.
    pub async fn land_user(&self) -> Result<UserLanded, UserLandError> {
        let paths = self.paths().clone();
        let (branch, head, trunk) = tokio::task::spawn_blocking(move || prepare(&paths)).await??;
        let Some(head) = head else {
            return Ok(UserLanded {
                head: trunk.to_string(),
                branch,
                landed: Vec::new(),
                trunk: trunk.to_string(),
                fast_forward: true,
            });
        };
        let request = LandRequest {
            slot: String::new(),
            head: head.to_string(),
            agent: None,
            task: None,
            user: Some(branch.clone()),
        };
        match self.land(&request).await? {
            LandReply::Landed { trunk, commits, .. } => Ok(UserLanded {
                fast_forward: trunk == head.to_string(),
                branch,
                head: head.to_string(),
                landed: commits,
                trunk,
            }),
            LandReply::Conflict { commit, paths } => Err(UserLandError::Conflict {
                branch,
                commit,
                paths,
            }),
            LandReply::Failed { error } => Err(SwarmError::LandFailed {
                slot: "(your branch)".to_string(),
                error,
            }
            .into()),
        }
    }
}

/// Fetches the user's `HEAD` into [`USER_REF`] and checks it can land.
/// Returns the branch name, the commit to land (`None`: trunk has it
/// all) and the trunk tip.
fn prepare(paths: &crate::state::Paths) -> Result<(String, Option<Oid>, Oid), UserLandError> {
    let user = Repository::open(&paths.root).map_err(|source| UserLandError::Open {
        root: paths.root.clone(),
        source,
    })?;
    let branch = match user.head() {
        Ok(head) if head.is_branch() => head.shorthand().unwrap_or("HEAD").to_string(),
        Ok(_) => "HEAD".to_string(),
        Err(_) => return Err(UserLandError::NoCommit),
    };
    drop(user);
    gitcli::fetch(
        &paths.hub_repo,
        &paths.root,
        &[&format!("+HEAD:{USER_REF}")],
        Progress::Stderr("land"),
    )
    .map_err(UserLandError::Fetch)?;
    let hub = Repository::open_bare(&paths.hub_repo)?;
    let head = hub.refname_to_id(USER_REF)?;
    let trunk = hub.refname_to_id(TRUNK_REF)?;
    if head == trunk || hub.graph_descendant_of(trunk, head)? {
        return Ok((branch, None, trunk));
    }
    let base = hub
        .merge_base(trunk, head)
        .map_err(|_| UserLandError::Unrelated)?;
    let mut at = head;
    while at != base {
        let commit = hub.find_commit(at)?;
        if commit.parent_count() != 1 {
            return Err(UserLandError::Merge(at.to_string()[..12].to_string()));
        }
        at = commit.parent_id(0)?;
    }
    Ok((branch, Some(head), trunk))
}
