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

use crate::state::Paths;
use crate::sys::fsutil;
use crate::trunk::repo::TRUNK_REF;

/// Where rescued work is kept, one ref per rescue.
pub const RESCUE_PREFIX: &str = "refs/bones/rescued";

/// Where `sync` records the paths it left conflicted, in the checkout's own
/// git directory (`hub.git/worktrees/<slot>/`): it goes with the checkout.
const CONFLICTS_FILE: &str = "bones-conflicts.json";

/// The paths a replay left conflicted, each with the marker-like lines the
/// merged versions already had (those are the file's text, never markers).
#[derive(Debug, Default, Serialize, Deserialize)]
struct ConflictRecord {
    paths: std::collections::BTreeMap<String, Vec<String>>,
}

/// The lines of `content` that look like git's conflict markers.
fn marker_lines(content: &[u8]) -> impl Iterator<Item = String> + '_ {
    content
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| {
            line.starts_with(b"<<<<<<<")
                || line.starts_with(b">>>>>>>")
                || line.starts_with(b"|||||||")
                || *line == b"======="
        })
        .map(|line| String::from_utf8_lossy(line).into_owned())
}

/// Why a slot's checkout could not be made, saved or removed.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("slot {slot}: {}", .source.message())]
    Git {
        slot: String,
        #[source]
        source: git2::Error,
    },
    #[error("slot {slot}: {source}")]
    Checkout {
        slot: String,
        #[source]
        source: super::checkout::CheckoutError,
    },
    #[error(
        "slot {slot}: uncommitted changes in the checkout; commit them first (`bones swarm commit`)"
    )]
    Uncommitted { slot: String },
    #[error(
        "slot {slot}: unreadable conflict record {}: {source}; delete it once the conflicts are resolved",
        .file.display()
    )]
    ConflictRecord {
        slot: String,
        file: PathBuf,
        #[source]
        source: serde_json::Error,
    },
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
    /// The agent that held the slot, so `--auto` never hands its name
    /// (and its rescued work) to another agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
}

/// What [`SlotDir::sync`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
        move |source| SlotError::Git {
            slot: self.name.clone(),
            source,
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
        super::checkout::add(&self.hub_repo, &self.name, &self.wt, &branch).map_err(|source| {
            SlotError::Checkout {
                slot: self.name.clone(),
                source,
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

    /// How many files in the checkout differ from its HEAD (changed,
    /// added, deleted or untracked, ignored files aside).
    pub fn uncommitted(&self) -> Result<usize, SlotError> {
        let repo = Repository::open(&self.wt).map_err(self.git())?;
        let mut opts = git2::StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        let statuses = repo.statuses(Some(&mut opts)).map_err(self.git())?;
        Ok(statuses
            .iter()
            .filter(|e| e.status() != git2::Status::CURRENT)
            .count())
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
            return Err(SlotError::Uncommitted {
                slot: self.name.clone(),
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
        let trunk_tree = repo
            .find_commit(trunk)
            .and_then(|c| c.tree())
            .map_err(self.git())?;
        let base_tree = repo
            .find_commit(base)
            .and_then(|c| c.tree())
            .map_err(self.git())?;
        let head_tree = head.tree().map_err(self.git())?;
        let saved = self.save_rescue(head.id())?;
        // the checkout now stands on trunk, with the slot's change on top
        let mut own_index = repo.index().map_err(self.git())?;
        own_index.read_tree(&trunk_tree).map_err(self.git())?;
        own_index.write().map_err(self.git())?;
        self.move_branch(head.id(), trunk, "bones: sync onto trunk")?;
        let conflicts = self.replay(&repo, &base_tree, &trunk_tree, &head_tree)?;
        Ok(Synced {
            trunk: trunk.to_string(),
            saved: Some(saved),
            conflicts,
            moved: true,
        })
    }

    /// Writes the change from `base` to `change`, merged onto `trunk` (what
    /// the checkout stands on), into the working tree as uncommitted edits,
    /// with conflict markers where trunk changed the same lines. The paths
    /// left conflicted are recorded (see [`SlotDir::unresolved`]) and
    /// returned.
    fn replay(
        &self,
        repo: &Repository,
        base: &git2::Tree,
        trunk: &git2::Tree,
        change: &git2::Tree,
    ) -> Result<Vec<String>, SlotError> {
        let mut merged = repo
            .merge_trees(base, trunk, change, None)
            .map_err(self.git())?;
        let mut record = ConflictRecord::default();
        if merged.has_conflicts() {
            for conflict in merged.conflicts().map_err(self.git())? {
                let conflict = conflict.map_err(self.git())?;
                let Some(entry) = conflict
                    .our
                    .as_ref()
                    .or(conflict.their.as_ref())
                    .or(conflict.ancestor.as_ref())
                else {
                    continue;
                };
                let path = String::from_utf8_lossy(&entry.path).into_owned();
                // marker-like lines any side already had are the file's own
                // text, not markers of this conflict
                let before = record.paths.entry(path).or_default();
                for side in [&conflict.ancestor, &conflict.our, &conflict.their]
                    .into_iter()
                    .flatten()
                {
                    if let Ok(blob) = repo.find_blob(side.id) {
                        for line in marker_lines(blob.content()) {
                            if !before.contains(&line) {
                                before.push(line);
                            }
                        }
                    }
                }
            }
        }
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
        let file = repo.path().join(CONFLICTS_FILE);
        if record.paths.is_empty() {
            let _ = fsutil::remove_if_exists(&file);
        } else {
            let json = serde_json::to_vec_pretty(&record).unwrap_or_default();
            fsutil::write_private(&file, &json).map_err(self.io("cannot write", &file))?;
        }
        Ok(record.paths.into_keys().collect())
    }

    /// The paths `sync` (or a restore) left conflicted that still hold
    /// conflict markers: lines starting `<<<<<<<`, `|||||||` or `>>>>>>>`,
    /// or reading `=======`, that none of the merged versions had. A path
    /// since deleted counts as resolved.
    pub fn unresolved(&self) -> Result<Vec<String>, SlotError> {
        let repo = Repository::open(&self.wt).map_err(self.git())?;
        let file = repo.path().join(CONFLICTS_FILE);
        let Ok(bytes) = fs::read(&file) else {
            return Ok(Vec::new());
        };
        // a record that cannot be read protects nothing: say so rather than
        // let markers through
        let record: ConflictRecord =
            serde_json::from_slice(&bytes).map_err(|source| SlotError::ConflictRecord {
                slot: self.name.clone(),
                file: file.clone(),
                source,
            })?;
        let mut left = Vec::new();
        for (path, before) in record.paths {
            let Ok(content) = fs::read(self.wt.join(&path)) else {
                continue;
            };
            if marker_lines(&content).any(|line| !before.contains(&line)) {
                left.push(path);
            }
        }
        Ok(left)
    }

    /// Forgets the conflicts `sync` recorded, once their resolution landed.
    pub fn clear_conflicts(&self) {
        if let Ok(repo) = Repository::open(&self.wt) {
            let _ = fsutil::remove_if_exists(&repo.path().join(CONFLICTS_FILE));
        }
    }

    /// Brings the uncommitted work saved under `rescue_ref` (see
    /// [`SlotDir::rescue`]) back into the checkout as uncommitted edits,
    /// merged onto what the checkout stands on: where nothing changed
    /// since, the files come back byte for byte; where trunk changed the
    /// same lines, with conflict markers (recorded as `sync` records them).
    /// Returns the conflicted paths.
    pub fn restore(&self, rescue_ref: &str) -> Result<Vec<String>, SlotError> {
        let repo = Repository::open(&self.wt).map_err(self.git())?;
        let rescued = repo
            .find_reference(rescue_ref)
            .and_then(|r| r.peel_to_commit())
            .map_err(self.git())?;
        let here = repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(self.git())?;
        // from where the slot's history left trunk: its commits that never
        // landed come back too, not only what was uncommitted
        let base = match repo.merge_base(here.id(), rescued.id()) {
            Ok(base) => repo
                .find_commit(base)
                .and_then(|c| c.tree())
                .map_err(self.git())?,
            Err(_) => rescued
                .parent(0)
                .and_then(|p| p.tree())
                .map_err(self.git())?,
        };
        let here = here.tree().map_err(self.git())?;
        let change = rescued.tree().map_err(self.git())?;
        self.replay(&repo, &base, &here, &change)
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
        let bytes = fsutil::read_small(&self.reaped_file).ok()??;
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

/// Where the slots' branches live in `hub.git`, one ref per slot.
pub const BRANCHES: &str = "refs/heads/slot";

/// The branch of slot `name` in `hub.git`: `refs/heads/slot/<name>`.
pub fn branch_ref(name: &str) -> String {
    format!("{BRANCHES}/{name}")
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
        .filter(|name| crate::sys::name::validate_slot(name).is_ok())
        .collect();
    names.sort();
    names
}

/// What to tell someone whose current directory was a slot's checkout that
/// is gone (reaped, or closed): which slot, where its work was saved, and
/// the command that brings it back. `None` when the current directory
/// exists or was not a checkout. Incident: a reaped agent's next command
/// said only `cannot read .: No such file or directory`.
pub fn removed_checkout_hint() -> Option<String> {
    if std::env::current_dir().is_ok() {
        return None;
    }
    // the kernel still knows the removed directory's path
    let link = fs::read_link("/proc/self/cwd").ok()?;
    let text = link.to_str()?;
    let cwd = Path::new(text.strip_suffix(" (deleted)").unwrap_or(text));
    let wt = cwd.ancestors().find(|a| {
        a.file_name().is_some_and(|n| n == "wt")
            && a.parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .is_some_and(|n| n == "swarm")
    })?;
    let dir = wt.parent()?;
    let name = dir.file_name()?.to_str()?;
    crate::sys::name::validate_slot(name).ok()?;
    let state = dir.parent()?.parent()?;
    let reaped: Option<Reaped> = fs::read(dir.join("reaped.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let rescue = reaped
        .as_ref()
        .and_then(|r| r.rescue_ref.clone())
        .or_else(|| latest_rescue(&state.join("hub.git"), name));
    let what = match &reaped {
        Some(r) => format!(
            "slot {name} was reaped at {} (its lease expired) and its checkout removed",
            crate::sys::shown::plain(&r.reaped_at)
        ),
        None => format!("the checkout of slot {name} was removed (the slot was closed or reaped)"),
    };
    Some(match rescue {
        Some(rescue) => format!(
            "{what}; its uncommitted work is saved at {rescue}. Bring it back in a new checkout: \
             cd \"$(bones swarm join --slot {name} --restore)\""
        ),
        None => format!(
            "{what}; nothing uncommitted was left in it. Start again: cd \"$(bones swarm join --slot {name})\""
        ),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_lines_are_git_markers_only() {
        let text = b"a\r\n<<<<<<< trunk\r\nx\n=======\ny\n>>>>>>> slot\n|||||||\n========\n = = \n<<<<<<x\n";
        let found: Vec<String> = marker_lines(text).collect();
        assert_eq!(
            found,
            ["<<<<<<< trunk", "=======", ">>>>>>> slot", "|||||||"]
        );
        assert_eq!(marker_lines(b"plain\ntext\n").count(), 0);
    }
}
