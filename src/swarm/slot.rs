//! A slot's checkout on disk: a git worktree of `hub.git` on the branch
//! `slot/<name>`, at `<state>/swarm/<name>/wt/`.
//!
//! Everything here is synchronous git2 and filesystem work, shared by the
//! CLI (join, commit, close) and the hub (reaping). The rule that matters
//! most: nothing deletes a checkout before its uncommitted work is saved to
//! `refs/bones/rescued/<slot>/<unix>` (decision 4). If the rescue fails, the
//! checkout stays.
//!
//! Refs (the slot branch, rescue refs) are always written through the bare
//! repository with a compare-and-swap: libgit2 opened on a worktree does not
//! see that a shared ref exists and can overwrite it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use git2::{IndexAddOption, Oid, Repository, Signature, WorktreePruneOptions};
use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::hub::Paths;
use crate::hub::repo::TRUNK_REF;

/// Where rescued work is kept, one ref per rescue.
pub const RESCUE_PREFIX: &str = "refs/bones/rescued";

/// Why a slot's checkout could not be made, saved or removed.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("slot {slot}: {message}")]
    Git { slot: String, message: String },
    #[error("slot {slot}: {what} {path}: {source}")]
    Io {
        slot: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The files of one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotDir {
    pub name: String,
    /// `<state>/swarm/<name>`
    pub dir: PathBuf,
    /// The checkout.
    pub wt: PathBuf,
    /// Written when the hub reaped the slot, so status can say so.
    pub reaped_file: PathBuf,
    /// The hub repository the checkout belongs to.
    pub hub_repo: PathBuf,
}

/// What the hub wrote when it reaped a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaped {
    /// UTC RFC 3339.
    pub reaped_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescue_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
}

/// What [`SlotDir::sync`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Synced {
    /// The trunk commit the checkout now stands on.
    pub trunk: String,
    /// Where the slot's own commits were saved, when it had any trunk lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved: Option<String>,
    /// Files with conflict markers to resolve before committing.
    pub conflicts: Vec<String>,
    /// False when the checkout could not move (files changed meanwhile).
    pub moved: bool,
}

impl SlotDir {
    /// The files of slot `name`; the name must already be validated.
    pub fn new(paths: &Paths, name: &str) -> SlotDir {
        let dir = paths.swarm_dir.join(name);
        SlotDir {
            name: name.to_string(),
            wt: dir.join("wt"),
            reaped_file: dir.join("reaped.json"),
            dir,
            hub_repo: paths.hub_repo.clone(),
        }
    }

    /// `refs/heads/slot/<name>`.
    pub fn branch_ref(&self) -> String {
        branch_ref(&self.name)
    }

    fn git(&self) -> impl FnOnce(git2::Error) -> SlotError + '_ {
        move |e| SlotError::Git {
            slot: self.name.clone(),
            message: e.message().to_string(),
        }
    }

    fn io(&self, what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SlotError + '_ {
        let path = path.to_path_buf();
        move |source| SlotError::Io {
            slot: self.name.clone(),
            what,
            path,
            source,
        }
    }

    /// Whether the checkout exists and is a git worktree.
    pub fn has_checkout(&self) -> bool {
        self.wt.join(".git").is_file()
    }

    /// Makes the checkout on `slot/<name>` from the trunk tip, or keeps an
    /// existing one. A leftover branch with commits trunk lacks (a slot
    /// closed after a conflict) is saved under a rescue ref first.
    /// Returns the rescue ref when one was made.
    pub fn create(&self) -> Result<Option<String>, SlotError> {
        if self.has_checkout() {
            return Ok(None);
        }
        let repo = Repository::open_bare(&self.hub_repo).map_err(self.git())?;
        fsutil::ensure_private_dir(&self.dir).map_err(self.io("cannot create", &self.dir))?;
        self.prune_admin(&repo);
        if self.wt.exists() {
            // a directory that is not a checkout: keep its content, never delete it
            let kept = self.dir.join(format!("wt.orphaned.{}", unix_now()));
            fs::rename(&self.wt, &kept).map_err(self.io("cannot move aside", &self.wt))?;
        }
        let trunk = repo.refname_to_id(TRUNK_REF).map_err(self.git())?;
        let branch = self.branch_ref();
        let mut saved = None;
        if let Ok(old) = repo.refname_to_id(&branch)
            && old != trunk
            && !repo.graph_descendant_of(trunk, old).map_err(self.git())?
        {
            saved = Some(self.save_rescue(old)?);
        }
        repo.reference(&branch, trunk, true, "bones: slot from trunk")
            .map_err(self.git())?;
        // git's own checkout: libgit2's took twice as long on big trees
        super::checkout::add(&self.hub_repo, &self.name, &self.wt, &branch).map_err(|e| {
            SlotError::Git {
                slot: self.name.clone(),
                message: e.to_string(),
            }
        })?;
        let _ = fsutil::remove_if_exists(&self.reaped_file);
        Ok(saved)
    }

    /// Commits everything changed in the checkout (honouring `.gitignore`)
    /// on the slot branch. `None` when nothing changed.
    pub fn commit_all(&self, message: &str, author: &Signature) -> Result<Option<Oid>, SlotError> {
        let Snapshot {
            repo,
            head,
            head_tree,
            mut index,
            tree: tree_id,
        } = self.snapshot()?;
        if tree_id == head_tree {
            return Ok(None);
        }
        index.write().map_err(self.git())?;
        let parent = repo.find_commit(head).map_err(self.git())?;
        let tree = repo.find_tree(tree_id).map_err(self.git())?;
        let id = repo
            .commit(None, author, author, message, &tree, &[&parent])
            .map_err(self.git())?;
        self.move_branch(head, id, "bones: slot commit")?;
        Ok(Some(id))
    }

    /// The slot branch's tip.
    pub fn head(&self) -> Result<Oid, SlotError> {
        let repo = Repository::open_bare(&self.hub_repo).map_err(self.git())?;
        repo.refname_to_id(&self.branch_ref()).map_err(self.git())
    }

    /// Moves the checkout to `target` (what trunk became after landing), so
    /// the agent sees everyone's work. Files the agent changed meanwhile are
    /// never overwritten: the checkout then stays where it was and `false`
    /// is returned (the next commit lands both).
    pub fn sync_to(&self, target: Oid) -> Result<bool, SlotError> {
        let repo = Repository::open(&self.wt).map_err(self.git())?;
        let old = repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(self.git())?
            .id();
        if old == target {
            return Ok(true);
        }
        let object = repo.find_object(target, None).map_err(self.git())?;
        let mut checkout = git2::build::CheckoutBuilder::new();
        checkout.safe();
        if repo.checkout_tree(&object, Some(&mut checkout)).is_err() {
            return Ok(false);
        }
        self.move_branch(old, target, "bones: synced to trunk")?;
        Ok(true)
    }

    /// Brings the checkout onto the trunk tip. Commits trunk lacks (one that
    /// conflicted, say) are saved under a rescue ref and their combined
    /// change is replayed into the working tree as uncommitted edits, with
    /// git's conflict markers where trunk changed the same lines. Refuses
    /// while there are uncommitted changes, so nothing is overwritten.
    pub fn sync(&self) -> Result<Synced, SlotError> {
        let Snapshot {
            repo,
            head,
            head_tree,
            tree,
            ..
        } = self.snapshot()?;
        if tree != head_tree {
            return Err(SlotError::Git {
                slot: self.name.clone(),
                message:
                    "uncommitted changes in the checkout; commit them first (`bones swarm commit`)"
                        .into(),
            });
        }
        let head = repo.find_commit(head).map_err(self.git())?;
        let trunk = repo.refname_to_id(TRUNK_REF).map_err(self.git())?;
        if head.id() == trunk
            || repo
                .graph_descendant_of(trunk, head.id())
                .map_err(self.git())?
        {
            let synced = self.sync_to(trunk)?;
            return Ok(Synced {
                trunk: trunk.to_string(),
                saved: None,
                conflicts: Vec::new(),
                moved: synced,
            });
        }
        let base = repo.merge_base(trunk, head.id()).map_err(self.git())?;
        let trunk_commit = repo.find_commit(trunk).map_err(self.git())?;
        let trunk_tree = trunk_commit.tree().map_err(self.git())?;
        let base_tree = repo
            .find_commit(base)
            .and_then(|c| c.tree())
            .map_err(self.git())?;
        let mut merged = repo
            .merge_trees(
                &base_tree,
                &trunk_tree,
                &head.tree().map_err(self.git())?,
                None,
            )
            .map_err(self.git())?;
        let mut conflicts = Vec::new();
        if merged.has_conflicts() {
            for conflict in merged.conflicts().map_err(self.git())? {
                let conflict = conflict.map_err(self.git())?;
                if let Some(entry) = conflict.our.or(conflict.their).or(conflict.ancestor) {
                    let path = String::from_utf8_lossy(&entry.path).into_owned();
                    if !conflicts.contains(&path) {
                        conflicts.push(path);
                    }
                }
            }
        }
        let saved = self.save_rescue(head.id())?;
        // the checkout now stands on trunk, with the slot's change on top
        let mut own_index = repo.index().map_err(self.git())?;
        own_index.read_tree(&trunk_tree).map_err(self.git())?;
        own_index.write().map_err(self.git())?;
        self.move_branch(head.id(), trunk, "bones: sync onto trunk")?;
        let mut checkout = git2::build::CheckoutBuilder::new();
        checkout
            .force()
            .allow_conflicts(true)
            .conflict_style_merge(true)
            .our_label("trunk")
            .their_label(&self.name)
            .update_index(false);
        repo.checkout_index(Some(&mut merged), Some(&mut checkout))
            .map_err(self.git())?;
        Ok(Synced {
            trunk: trunk.to_string(),
            saved: Some(saved),
            conflicts,
            moved: true,
        })
    }

    /// Opens the checkout and stages everything in it, in memory.
    fn snapshot(&self) -> Result<Snapshot, SlotError> {
        let repo = Repository::open(&self.wt).map_err(self.git())?;
        let head = repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(self.git())?
            .id();
        let head_tree = repo.find_commit(head).map_err(self.git())?.tree_id();
        let mut index = repo.index().map_err(self.git())?;
        let tree = stage_everything(&mut index).map_err(self.git())?;
        Ok(Snapshot {
            repo,
            head,
            head_tree,
            index,
            tree,
        })
    }

    /// Saves uncommitted work (staged, unstaged and untracked files that are
    /// not ignored) as a commit on top of the slot's HEAD, under
    /// `refs/bones/rescued/<slot>/<unix>`. `None` when there was nothing.
    pub fn rescue(&self) -> Result<Option<String>, SlotError> {
        if !self.wt.exists() {
            return Ok(None);
        }
        // the staged copy is not written: the checkout's index stays as it was
        let Snapshot {
            repo,
            head,
            head_tree,
            tree: tree_id,
            ..
        } = self.snapshot()?;
        if tree_id == head_tree {
            return Ok(None);
        }
        let head = repo.find_commit(head).map_err(self.git())?;
        let tree = repo.find_tree(tree_id).map_err(self.git())?;
        let sig = Signature::now("bones", "rescue@bones.invalid").map_err(self.git())?;
        let message = format!(
            "rescued: uncommitted work of slot {}\n\nBones-Slot: {}\n",
            self.name, self.name
        );
        let id = repo
            .commit(None, &sig, &sig, &message, &tree, &[&head])
            .map_err(self.git())?;
        self.save_rescue(id).map(Some)
    }

    /// Points a new rescue ref at `id`, never replacing an existing one.
    fn save_rescue(&self, id: Oid) -> Result<String, SlotError> {
        // refs are written through the bare repository: libgit2 opened on a
        // worktree does not see that a shared ref already exists and would
        // overwrite an earlier rescue made in the same second
        let repo = self.bare()?;
        let base = format!("{RESCUE_PREFIX}/{}/{}", self.name, unix_now());
        let mut name = base.clone();
        for n in 2.. {
            match repo.reference(&name, id, false, "bones: rescue") {
                Ok(_) => break,
                Err(err) if err.code() == git2::ErrorCode::Exists && n < 100 => {
                    name = format!("{base}-{n}");
                }
                Err(err) => return Err(self.git()(err)),
            }
        }
        Ok(name)
    }

    /// Rescues uncommitted work, then removes the checkout. The slot
    /// branch stays (it may hold commits that did not land). Returns the
    /// rescue ref, if any.
    pub fn retire(&self) -> Result<Option<String>, SlotError> {
        let rescued = self.rescue()?;
        let repo = Repository::open_bare(&self.hub_repo).map_err(self.git())?;
        if self.wt.exists() {
            fs::remove_dir_all(&self.wt).map_err(self.io("cannot remove", &self.wt))?;
        }
        self.prune_admin(&repo);
        // a lock left by a killed writer would block the next holder
        let _ =
            fsutil::remove_if_exists(&self.hub_repo.join(format!("{}.lock", self.branch_ref())));
        Ok(rescued)
    }

    /// Retires the slot and removes its directory entirely (closing).
    pub fn remove(&self) -> Result<Option<String>, SlotError> {
        let rescued = self.retire()?;
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir).map_err(self.io("cannot remove", &self.dir))?;
        }
        Ok(rescued)
    }

    fn bare(&self) -> Result<Repository, SlotError> {
        Repository::open_bare(&self.hub_repo).map_err(self.git())
    }

    /// Moves the slot branch from `from` to `to`, failing if it moved.
    fn move_branch(&self, from: Oid, to: Oid, why: &str) -> Result<(), SlotError> {
        self.bare()?
            .reference_matching(&self.branch_ref(), to, true, from, why)
            .map(|_| ())
            .map_err(self.git())
    }

    /// Records that the hub reaped this slot.
    pub fn mark_reaped(&self, reaped: &Reaped) -> Result<(), SlotError> {
        fsutil::ensure_private_dir(&self.dir).map_err(self.io("cannot create", &self.dir))?;
        let json = serde_json::to_vec_pretty(reaped).unwrap_or_default();
        fsutil::write_private(&self.reaped_file, &json)
            .map_err(self.io("cannot write", &self.reaped_file))
    }

    /// What the hub wrote when it reaped this slot, if it did.
    pub fn reaped(&self) -> Option<Reaped> {
        let bytes = fs::read(&self.reaped_file).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Forgets the worktree's administrative files in `hub.git` once its
    /// checkout is gone (or was never finished).
    fn prune_admin(&self, repo: &Repository) {
        if let Ok(worktree) = repo.find_worktree(&self.name)
            && worktree.validate().is_err()
        {
            let mut opts = WorktreePruneOptions::new();
            opts.valid(true).locked(true);
            let _ = worktree.prune(Some(&mut opts));
        }
        let admin = self.hub_repo.join("worktrees").join(&self.name);
        if admin.exists() && !self.has_checkout() {
            let _ = fs::remove_dir_all(admin);
        }
    }
}

/// A checkout with everything in it staged in memory.
struct Snapshot {
    repo: Repository,
    /// HEAD's commit and tree.
    head: Oid,
    head_tree: Oid,
    /// The checkout's index with everything staged (not written).
    index: git2::Index,
    /// The tree of everything in the checkout now.
    tree: Oid,
}

/// Stages additions, changes and deletions of every file that is not
/// ignored, and writes the resulting tree.
fn stage_everything(index: &mut git2::Index) -> Result<Oid, git2::Error> {
    index.add_all(["*"], IndexAddOption::DEFAULT, None)?;
    index.update_all(["*"], None)?;
    index.write_tree()
}

/// The branch of slot `name` in `hub.git`: `refs/heads/slot/<name>`.
pub fn branch_ref(name: &str) -> String {
    format!("refs/heads/slot/{name}")
}

/// Names of the slots that have a directory under `swarm/`.
pub fn on_disk(paths: &Paths) -> Vec<String> {
    let Ok(entries) = fs::read_dir(&paths.swarm_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| super::name::validate_slot(name).is_ok())
        .collect();
    names.sort();
    names
}

/// The newest rescue ref of a slot, if any.
pub fn latest_rescue(hub_repo: &Path, slot: &str) -> Option<String> {
    let repo = Repository::open_bare(hub_repo).ok()?;
    let glob = format!("{RESCUE_PREFIX}/{slot}/*");
    let mut names: Vec<String> = repo
        .references_glob(&glob)
        .ok()?
        .filter_map(|r| r.ok()?.name().ok().map(str::to_string))
        .collect();
    names.sort_by_key(|n| {
        let tail = n.rsplit('/').next().unwrap_or_default();
        let (secs, seq) = tail.split_once('-').unwrap_or((tail, "0"));
        (
            secs.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    });
    names.pop()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
