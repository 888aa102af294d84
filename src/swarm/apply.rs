//! `bones apply`: bring the hub's work into the user's own repository.
//!
//! Trunk descends from the user's branch (ADR 0012), so the hub's work is
//! ordinary history: `apply` fetches trunk as the branch `bones/trunk` and
//! says the one git command that integrates it (`git merge --ff-only` while
//! the user has not committed since, `git rebase` otherwise). With
//! `--worktree` it brings only what landed since the last applied trunk
//! commit (recorded as `refs/bones/applied/trunk` in the user's
//! repository) into the working tree, staged the way `git cherry-pick
//! --no-commit` stages it.
//!
//! Hubs seeded by earlier versions started trunk as a root commit of its
//! own; for them the command is still `git cherry-pick <seed>..bones/trunk`.

use std::path::{Path, PathBuf};

use git2::{ApplyLocation, Delta, DiffOptions, Oid, Repository, Status};
use serde::Serialize;

use crate::state::Paths;
use crate::sys::gitcli;
use crate::sys::gitcli::{GitError, Progress};
use crate::sys::name;
use crate::sys::name::NameError;
use crate::trunk::repo::{SEED_REF, TRUNK_REF};

/// Where the last applied commit of trunk is recorded in the user's
/// repository; slots get `refs/bones/applied/slot/<name>`.
pub const APPLIED_PREFIX: &str = "refs/bones/applied";

/// What to apply and how.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// A slot's branch instead of trunk.
    pub slot: Option<String>,
    /// Bring the changes into the working tree (and the index).
    pub worktree: bool,
    /// With `worktree`: leave the changes unstaged.
    pub unstaged: bool,
    /// With `worktree`: only say what would change.
    pub dry_run: bool,
}

/// One file a worktree apply changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    /// `A`, `M`, `D` or `T` (type change), as `git diff --name-status`.
    pub status: char,
    pub path: String,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The local branch that holds the hub's commits.
    pub branch: String,
    pub tip: String,
    /// Trunk's first commit: the user's commit it grew from, or its child
    /// holding the uncommitted content the hub started with.
    pub seed: String,
    /// Commits on the branch that the user's `HEAD` lacks.
    pub commits: usize,
    /// Commits of the user's `HEAD` that the branch lacks (`bones land`
    /// puts them on trunk).
    pub ahead: usize,
    /// The git command that integrates the branch (none when the user's
    /// branch already has it all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrate: Option<String>,
    /// Whether the hub's trunk shares history with the user's branch
    /// (false for hubs seeded by earlier versions).
    pub related: bool,
    /// With `--worktree`: the commit the changes start from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// With `--worktree`: the files changed (or that would change).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<FileChange>,
    /// With `--worktree`: nothing landed since the last apply.
    pub nothing_new: bool,
    /// With `--worktree`: the changes are staged.
    pub staged: bool,
    pub dry_run: bool,
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
        "the changes conflict with your commits in {}; nothing was changed. Integrate the branch instead: git merge {branch}",
        .paths.join(", ")
    )]
    Conflict { branch: String, paths: Vec<String> },
    #[error(
        "the changes do not apply to your working tree ({}); nothing was changed. Integrate the branch instead: git merge {branch}",
        .source.message()
    )]
    DoesNotApply {
        branch: String,
        #[source]
        source: git2::Error,
    },
    #[error("cannot fetch from the hub repository: {0}")]
    Fetch(#[source] GitError),
    /// libgit2 failed reading the hub repository or the user's.
    #[error("{}", .0.message())]
    Git(#[from] git2::Error),
}

impl crate::sys::error::Kinded for ApplyError {
    fn kind(&self) -> crate::sys::error::ErrorKind {
        use crate::sys::error::ErrorKind;
        match self {
            ApplyError::Name(_) => ErrorKind::Usage,
            ApplyError::Conflict { .. } => ErrorKind::Conflict,
            ApplyError::NoSuchSlot(_) | ApplyError::NoHubRepo(_) => ErrorKind::NotFound,
            ApplyError::NotGit(_)
            | ApplyError::CheckedOut(_)
            | ApplyError::Dirty(_)
            | ApplyError::DoesNotApply { .. } => ErrorKind::Refused,
            ApplyError::Fetch(_) | ApplyError::Git(_) => ErrorKind::Io,
        }
    }
}

/// Fetches trunk (or a slot branch) into the user's repository as
/// `bones/trunk` (or `bones/slot/<name>`); with `worktree`, brings what
/// landed since the last applied commit into the working tree.
pub fn apply(paths: &Paths, opts: &ApplyOptions) -> Result<Applied, ApplyError> {
    if let Some(slot) = &opts.slot {
        name::validate_slot(slot)?;
    }
    if !paths.hub_repo.join("HEAD").is_file() {
        return Err(ApplyError::NoHubRepo(paths.hub_repo.clone()));
    }
    let hub = Repository::open_bare(&paths.hub_repo)?;
    let (source, branch, applied_ref) = match &opts.slot {
        Some(slot) => (
            super::slot::branch_ref(slot),
            format!("bones/slot/{slot}"),
            format!("{APPLIED_PREFIX}/slot/{slot}"),
        ),
        None => (
            TRUNK_REF.to_string(),
            "bones/trunk".to_string(),
            format!("{APPLIED_PREFIX}/trunk"),
        ),
    };
    let tip = hub
        .refname_to_id(&source)
        .map_err(|_| ApplyError::NoSuchSlot(opts.slot.clone().unwrap_or_default()))?;
    let seed = seed_of(&hub, tip)?;
    drop(hub);

    let user = Repository::open(&paths.root).map_err(|_| ApplyError::NotGit(paths.root.clone()))?;
    let local_ref = format!("refs/heads/{branch}");
    let dry_run = opts.worktree && opts.dry_run;
    if !dry_run
        && user
            .head()
            .ok()
            .and_then(|h| h.name().ok().map(str::to_string))
            == Some(local_ref.clone())
    {
        return Err(ApplyError::CheckedOut(branch));
    }
    // a dry run fetches the objects only: no ref of the user's moves
    let refspec = if dry_run {
        source.clone()
    } else {
        format!("+{source}:{local_ref}")
    };
    gitcli::fetch(
        user.path(),
        &paths.hub_repo,
        &[&refspec],
        Progress::Stderr("apply"),
    )
    .map_err(ApplyError::Fetch)?;

    let head = user.head().ok().and_then(|h| h.target());
    let related = match head {
        Some(head) => head == seed || user.merge_base(head, tip).is_ok(),
        None => false,
    };
    let commits = count_missing(&user, tip, head)?;
    let ahead = match head {
        Some(head) if related => count_missing(&user, head, Some(tip))?,
        _ => 0,
    };
    let mut applied = Applied {
        integrate: integrate_command(&user, &branch, tip, head, seed, related)?,
        branch: branch.clone(),
        tip: tip.to_string(),
        seed: seed.to_string(),
        commits,
        ahead,
        related,
        from: None,
        changed: Vec::new(),
        nothing_new: false,
        staged: false,
        dry_run,
    };
    if !opts.worktree {
        return Ok(applied);
    }

    let from = start_of_new_work(&user, &applied_ref, tip, head, seed)?;
    applied.from = Some(from.to_string());
    let theirs = user.find_commit(tip)?.tree()?;
    let base = user.find_commit(from)?.tree()?;
    let ours = match head {
        Some(head) => user.find_commit(head)?.tree()?,
        None => user.find_tree(user.treebuilder(None)?.write()?)?,
    };
    let result = if from == tip {
        ours.id()
    } else {
        // the three-way merge cherry-pick does: what landed since `from`,
        // onto whatever the user committed meanwhile
        let mut merged = user.merge_trees(&base, &ours, &theirs, None)?;
        if merged.has_conflicts() {
            return Err(ApplyError::Conflict {
                branch,
                paths: conflict_paths(&merged)?,
            });
        }
        merged.write_tree_to(&user)?
    };
    if result == ours.id() {
        applied.nothing_new = true;
        if !dry_run {
            user.reference(&applied_ref, tip, true, "bones apply --worktree")?;
        }
        return Ok(applied);
    }
    let result = user.find_tree(result)?;
    let mut diff_opts = DiffOptions::new();
    diff_opts.show_binary(true).include_typechange(true);
    let diff = user.diff_tree_to_tree(Some(&ours), Some(&result), Some(&mut diff_opts))?;
    let mut dirty = Vec::new();
    for delta in diff.deltas() {
        let Some(path) = delta.new_file().path().or(delta.old_file().path()) else {
            continue;
        };
        let shown = path.display().to_string();
        if is_dirty(&user, path) {
            dirty.push(shown.clone());
        }
        applied.changed.push(FileChange {
            status: status_letter(delta.status()),
            path: shown,
        });
    }
    if dry_run {
        return Ok(applied);
    }
    if !dirty.is_empty() {
        return Err(ApplyError::Dirty(dirty));
    }
    let location = if opts.unstaged {
        ApplyLocation::WorkDir
    } else {
        ApplyLocation::Both
    };
    user.apply(&diff, location, None)
        .map_err(|source| ApplyError::DoesNotApply {
            branch: branch.clone(),
            source,
        })?;
    user.reference(&applied_ref, tip, true, "bones apply --worktree")?;
    applied.staged = !opts.unstaged;
    Ok(applied)
}

/// Trunk's first commit: [`SEED_REF`] when it is an ancestor of `tip`,
/// else (a hub seeded by an earlier version, or a slot branch) the root of
/// `tip`'s first-parent history.
fn seed_of(repo: &Repository, tip: Oid) -> Result<Oid, ApplyError> {
    if let Ok(seed) = repo.refname_to_id(SEED_REF)
        && (seed == tip || repo.graph_descendant_of(tip, seed)?)
    {
        return Ok(seed);
    }
    let mut at = repo.find_commit(tip)?;
    while at.parent_count() > 0 {
        at = at.parent(0)?;
    }
    Ok(at.id())
}

/// Commits of `tip` that `head` lacks.
fn count_missing(repo: &Repository, tip: Oid, head: Option<Oid>) -> Result<usize, ApplyError> {
    let mut walk = repo.revwalk()?;
    walk.push(tip)?;
    if let Some(head) = head {
        walk.hide(head)?;
    }
    Ok(walk.count())
}

/// The one command that integrates `branch` into the user's branch.
fn integrate_command(
    repo: &Repository,
    branch: &str,
    tip: Oid,
    head: Option<Oid>,
    seed: Oid,
    related: bool,
) -> Result<Option<String>, ApplyError> {
    let Some(head) = head else {
        return Ok(Some(format!("git merge --ff-only {branch}")));
    };
    if head == tip || repo.graph_descendant_of(head, tip)? {
        return Ok(None);
    }
    if !related {
        return Ok(Some(format!("git cherry-pick {}..{branch}", short(seed))));
    }
    if repo.graph_descendant_of(tip, head)? {
        return Ok(Some(format!("git merge --ff-only {branch}")));
    }
    // both moved: replaying the user's commits on top keeps history linear
    // like trunk's, and drops those `bones land` already put on trunk
    Ok(Some(format!("git rebase {branch}")))
}

/// Where the work a worktree apply brings starts: the latest of the seed,
/// the last applied commit, and the point where the user's branch and
/// trunk meet (the user merged trunk since), as long as it is part of
/// trunk's history.
fn start_of_new_work(
    repo: &Repository,
    applied_ref: &str,
    tip: Oid,
    head: Option<Oid>,
    seed: Oid,
) -> Result<Oid, ApplyError> {
    let on_trunk =
        |c: Oid| -> Result<bool, ApplyError> { Ok(c == tip || repo.graph_descendant_of(tip, c)?) };
    let mut from = seed;
    let recorded = repo.refname_to_id(applied_ref).ok();
    let met = head.and_then(|h| repo.merge_base(h, tip).ok());
    for candidate in [met, recorded].into_iter().flatten() {
        if candidate != from && on_trunk(candidate)? && repo.graph_descendant_of(candidate, from)? {
            from = candidate;
        }
    }
    Ok(from)
}

fn conflict_paths(index: &git2::Index) -> Result<Vec<String>, ApplyError> {
    let mut paths = Vec::new();
    for conflict in index.conflicts()? {
        let conflict = conflict?;
        if let Some(entry) = conflict.our.or(conflict.their).or(conflict.ancestor) {
            let path = String::from_utf8_lossy(&entry.path).into_owned();
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
    }
    paths.sort();
    Ok(paths)
}

fn status_letter(delta: Delta) -> char {
    match delta {
        Delta::Added => 'A',
        Delta::Deleted => 'D',
        Delta::Typechange => 'T',
        Delta::Renamed => 'R',
        Delta::Copied => 'C',
        _ => 'M',
    }
}

fn is_dirty(repo: &Repository, path: &Path) -> bool {
    match repo.status_file(path) {
        Ok(status) => {
            !(status.is_empty() || status == Status::CURRENT || status.contains(Status::IGNORED))
        }
        Err(_) => false, // not tracked and not present
    }
}

fn short(id: Oid) -> String {
    id.to_string()[..12].to_string()
}
