//! `bones apply`: bring the hub's work into the user's own repository.
//!
//! The hub trunk starts from a seed commit that holds the workspace's files
//! but shares no history with the user's branch, so work is carried over as
//! commits to cherry-pick (`<seed>..bones/trunk`) or as changes applied to
//! the working tree, never as a merge of unrelated histories.

use std::path::{Path, PathBuf};

use git2::{ApplyLocation, Oid, Repository, Status};
use serde::Serialize;

use super::name::{self, NameError};
use crate::hub::Paths;
use crate::hub::repo::TRUNK_REF;

/// What to apply and how.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// A slot's branch instead of trunk.
    pub slot: Option<String>,
    /// Also apply the changes to the working tree.
    pub worktree: bool,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The local branch that now holds the hub's commits.
    pub branch: String,
    pub tip: String,
    /// The seed commit: the hub's copy of the files it started from.
    pub seed: String,
    /// Commits after the seed.
    pub commits: usize,
    /// Files changed in the working tree (with `--worktree`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

/// Why nothing was applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("no hub repository at {0}; start the hub once (`bones hub start --detach`)")]
    NoHubRepo(PathBuf),
    #[error("the hub repository has no branch slot/{0}; `bones swarm status` lists the slots")]
    NoSuchSlot(String),
    #[error(
        "{0} is not a git repository; bones apply brings the hub's work into your git repository"
    )]
    NotGit(PathBuf),
    #[error(
        "refusing to update {0}: it is checked out; switch to another branch first (`git switch -`)"
    )]
    CheckedOut(String),
    #[error(
        "refusing to touch the working tree: uncommitted changes in {} would be overwritten; commit or stash them first",
        .0.join(", ")
    )]
    Dirty(Vec<String>),
    #[error(
        "the changes do not apply to your working tree ({0}); nothing was changed. Use the branch instead: git cherry-pick <seed>..<branch>"
    )]
    DoesNotApply(String),
    #[error("{0}")]
    Git(String),
}

impl From<git2::Error> for ApplyError {
    fn from(err: git2::Error) -> ApplyError {
        ApplyError::Git(err.message().to_string())
    }
}

/// Fetches trunk (or a slot branch) into the user's repository as
/// `bones/trunk` (or `bones/slot/<name>`), and with `worktree` applies its
/// changes since the seed to the working tree, refusing (touching nothing)
/// when that would overwrite uncommitted changes.
pub fn apply(paths: &Paths, opts: &ApplyOptions) -> Result<Applied, ApplyError> {
    if let Some(slot) = &opts.slot {
        name::validate_slot(slot)?;
    }
    if !paths.hub_repo.join("HEAD").is_file() {
        return Err(ApplyError::NoHubRepo(paths.hub_repo.clone()));
    }
    let hub = Repository::open_bare(&paths.hub_repo)?;
    let (source, branch) = match &opts.slot {
        Some(slot) => {
            name::validate_slot(slot)?;
            (super::slot::branch_ref(slot), format!("bones/slot/{slot}"))
        }
        None => (TRUNK_REF.to_string(), "bones/trunk".to_string()),
    };
    let tip = hub
        .refname_to_id(&source)
        .map_err(|_| ApplyError::NoSuchSlot(opts.slot.clone().unwrap_or_default()))?;
    let (seed, commits) = seed_of(&hub, tip)?;

    let user = Repository::open(&paths.root).map_err(|_| ApplyError::NotGit(paths.root.clone()))?;
    let local_ref = format!("refs/heads/{branch}");
    if user
        .head()
        .ok()
        .and_then(|h| h.name().ok().map(str::to_string))
        == Some(local_ref.clone())
    {
        return Err(ApplyError::CheckedOut(branch));
    }
    let mut remote = user.remote_anonymous(&path_url(&paths.hub_repo))?;
    remote.fetch(&[format!("+{source}:{local_ref}")], None, None)?;

    let mut changed = Vec::new();
    if opts.worktree {
        let old = user.find_commit(seed)?.tree()?;
        let new = user.find_commit(tip)?.tree()?;
        let diff = user.diff_tree_to_tree(Some(&old), Some(&new), None)?;
        let mut dirty = Vec::new();
        for delta in diff.deltas() {
            for file in [delta.old_file().path(), delta.new_file().path()]
                .into_iter()
                .flatten()
            {
                let shown = file.display().to_string();
                if changed.contains(&shown) {
                    continue;
                }
                if is_dirty(&user, file) {
                    dirty.push(shown.clone());
                }
                changed.push(shown);
            }
        }
        if !dirty.is_empty() {
            return Err(ApplyError::Dirty(dirty));
        }
        user.apply(&diff, ApplyLocation::WorkDir, None)
            .map_err(|e| ApplyError::DoesNotApply(e.message().to_string()))?;
    }
    Ok(Applied {
        branch,
        tip: tip.to_string(),
        seed: seed.to_string(),
        commits,
        changed,
    })
}

/// The root of `tip`'s first-parent history and how many commits follow it.
fn seed_of(repo: &Repository, tip: Oid) -> Result<(Oid, usize), ApplyError> {
    let mut at = repo.find_commit(tip)?;
    let mut count = 0;
    while at.parent_count() > 0 {
        at = at.parent(0)?;
        count += 1;
    }
    Ok((at.id(), count))
}

fn is_dirty(repo: &Repository, path: &Path) -> bool {
    match repo.status_file(path) {
        Ok(status) => {
            !(status.is_empty() || status == Status::CURRENT || status.contains(Status::IGNORED))
        }
        Err(_) => false, // not tracked and not present
    }
}

fn path_url(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
