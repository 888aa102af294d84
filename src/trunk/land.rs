//! Landing a slot's commits on `trunk`: rebase, then compare-and-swap.
//!
//! Trunk only ever moves forward to a commit whose first parent is the old
//! tip, so its history stays linear whatever the concurrency: a slot that is
//! already on top of trunk fast-forwards (its commits land unchanged); any
//! other slot's commits are replayed one by one onto the tip, in memory,
//! and the ref is swapped only if trunk still points where the replay began.
//! A conflict writes nothing: trunk is untouched and the slot keeps its
//! commits. A commit whose change is already on trunk (a retry after a lost
//! reply) replays to nothing and is skipped, so landing is idempotent.

use std::collections::HashSet;

use git2::{Oid, Repository, Signature};

use crate::sys::error::{ErrorKind, Kinded};
use crate::trunk::repo::TRUNK_REF;

/// Who trunk commits name as committer when a replay rewrites them.
pub const LANDER: &str = "bones hub";
/// Bound on compare-and-swap retries when trunk moves under a replay.
const MAX_ATTEMPTS: usize = 16;

/// What a landing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// Trunk after the landing.
    pub trunk: Oid,
    /// The trunk commits made from the slot's commits, oldest first.
    pub commits: Vec<Oid>,
    /// Slot commits whose change was already on trunk.
    pub skipped: usize,
}

/// Why a landing changed nothing.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum LandError {
    #[error("commit {commit} conflicts with trunk in {}", .paths.join(", "))]
    Conflict { commit: Oid, paths: Vec<String> },
    #[error(
        "commit {0} is a merge; slots land linear history only (rebase it away and commit again)"
    )]
    MergeCommit(Oid),
    #[error("the slot shares no history with trunk")]
    Unrelated,
    #[error("trunk kept moving; gave up after {MAX_ATTEMPTS} attempts")]
    Contended,
    /// libgit2 failed reading or writing the hub repository.
    #[error("{}", .0.message())]
    Git(#[from] git2::Error),
}

impl Kinded for LandError {
    fn kind(&self) -> ErrorKind {
        match self {
            LandError::Conflict { .. } => ErrorKind::Conflict,
            LandError::MergeCommit(_) | LandError::Unrelated => ErrorKind::Refused,
            LandError::Contended => ErrorKind::Contended,
            LandError::Git(_) => ErrorKind::Io,
        }
    }
}

/// Trunk's commits as one lander saw it grow, so that a slot's base (where
/// its commits leave trunk) is found by walking back the slot's own few
/// commits rather than by a merge-base search through both histories,
/// which reads every trunk commit since the slot's base from disk.
///
/// It holds trunk's tip when first seen and every commit trunk gained
/// through this lander since: a linear chain (landings refuse merges), all
/// ancestors of [`Seen::tip`]. When trunk is not where the lander left it
/// (moved by someone else, restored), it starts again from the new tip.
#[derive(Debug, Default)]
pub struct Seen {
    tip: Option<Oid>,
    on_trunk: HashSet<Oid>,
}

/// How many commits the set may hold before it starts again (a few MiB).
const SEEN_MOST: usize = 1 << 16;
/// How far back a slot's commits are walked looking for trunk before the
/// merge-base search is used instead.
const SEEN_WALK: usize = 64;

impl Seen {
    /// Trunk is at `tip`: forgets what was seen when that is news.
    fn at(&mut self, tip: Oid) {
        if self.tip != Some(tip) || self.on_trunk.len() > SEEN_MOST {
            self.on_trunk.clear();
            self.on_trunk.insert(tip);
            self.tip = Some(tip);
        }
    }

    /// Trunk moved from [`Seen::tip`] to `landed.trunk` through `landed`'s
    /// commits.
    fn grew(&mut self, landed: &Landed) {
        self.on_trunk.extend(landed.commits.iter().copied());
        self.on_trunk.insert(landed.trunk);
        self.tip = Some(landed.trunk);
    }

    /// Where `head`'s history meets trunk at `tip`, when the walk back from
    /// `head` reaches a commit seen on trunk. Landed history is linear, so
    /// the first such commit is the merge base.
    fn base(&self, repo: &Repository, tip: Oid, head: Oid) -> Result<Option<Oid>, LandError> {
        if self.tip != Some(tip) {
            return Ok(None);
        }
        let mut at = head;
        for _ in 0..SEEN_WALK {
            if self.on_trunk.contains(&at) {
                return Ok(Some(at));
            }
            let commit = repo.find_commit(at)?;
            if commit.parent_count() != 1 {
                // a root or a merge: the full search says what it is
                return Ok(None);
            }
            at = commit.parent_id(0)?;
        }
        Ok(None)
    }
}

/// Lands every commit of `head` that trunk lacks.
pub fn land(repo: &Repository, head: Oid, reflog: &str) -> Result<Landed, LandError> {
    land_seen(repo, head, reflog, &mut Seen::default())
}

/// [`land`], for a lander that keeps what it saw of trunk between
/// landings in `seen`.
pub fn land_seen(
    repo: &Repository,
    head: Oid,
    reflog: &str,
    seen: &mut Seen,
) -> Result<Landed, LandError> {
    for _ in 0..MAX_ATTEMPTS {
        let tip = trunk(repo)?;
        seen.at(tip);
        let plan = replay(repo, tip, head, seen)?;
        if plan.trunk == tip {
            return Ok(plan);
        }
        match repo.reference_matching(TRUNK_REF, plan.trunk, true, tip, reflog) {
            Ok(_) => {
                seen.grew(&plan);
                return Ok(plan);
            }
            Err(err)
                if matches!(
                    err.code(),
                    git2::ErrorCode::Modified | git2::ErrorCode::Locked
                ) =>
            {
                continue;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Err(LandError::Contended)
}

/// The current trunk tip.
pub fn trunk(repo: &Repository) -> Result<Oid, LandError> {
    repo.refname_to_id(TRUNK_REF).map_err(LandError::from)
}

/// The commits of `head` not on trunk, oldest first; refuses merges.
pub fn pending(repo: &Repository, tip: Oid, head: Oid) -> Result<Vec<Oid>, LandError> {
    pending_seen(repo, tip, head, &Seen::default())
}

fn pending_seen(
    repo: &Repository,
    tip: Oid,
    head: Oid,
    seen: &Seen,
) -> Result<Vec<Oid>, LandError> {
    let base = match seen.base(repo, tip, head)? {
        Some(base) => base,
        None => match repo.merge_base(tip, head) {
            Ok(base) => base,
            Err(err) if err.code() == git2::ErrorCode::NotFound => {
                return Err(LandError::Unrelated);
            }
            Err(err) => return Err(err.into()),
        },
    };
    let mut commits = Vec::new();
    let mut at = head;
    while at != base {
        let commit = repo.find_commit(at)?;
        if commit.parent_count() != 1 {
            return Err(LandError::MergeCommit(at));
        }
        commits.push(at);
        at = commit.parent_id(0)?;
    }
    commits.reverse();
    Ok(commits)
}

/// Builds (but does not publish) the trunk that landing `head` on `tip`
/// would give.
fn replay(repo: &Repository, tip: Oid, head: Oid, seen: &Seen) -> Result<Landed, LandError> {
    let commits = pending_seen(repo, tip, head, seen)?;
    if commits.is_empty() {
        return Ok(Landed {
            trunk: tip,
            commits: Vec::new(),
            skipped: 0,
        });
    }
    let first_parent = repo.find_commit(commits[0])?.parent_id(0)?;
    if first_parent == tip {
        // already on top of trunk: a fast-forward keeps the slot's commits
        return Ok(Landed {
            trunk: head,
            commits,
            skipped: 0,
        });
    }
    let committer = Signature::now(LANDER, "hub@bones.invalid")?;
    let mut current = repo.find_commit(tip)?;
    let mut landed = Vec::new();
    let mut skipped = 0;
    for id in commits {
        let commit = repo.find_commit(id)?;
        let ancestor = commit.parent(0)?.tree()?;
        let ours = current.tree()?;
        let mut index = repo.merge_trees(&ancestor, &ours, &commit.tree()?, None)?;
        if index.has_conflicts() {
            return Err(LandError::Conflict {
                commit: id,
                paths: conflict_paths(&index)?,
            });
        }
        let tree_id = index.write_tree_to(repo)?;
        if tree_id == ours.id() {
            skipped += 1;
            continue;
        }
        let tree = repo.find_tree(tree_id)?;
        let message = String::from_utf8_lossy(commit.message_raw_bytes()).into_owned();
        let new_id = repo.commit(
            None,
            &commit.author(),
            &committer,
            &message,
            &tree,
            &[&current],
        )?;
        landed.push(new_id);
        current = repo.find_commit(new_id)?;
    }
    Ok(Landed {
        trunk: current.id(),
        commits: landed,
        skipped,
    })
}

fn conflict_paths(index: &git2::Index) -> Result<Vec<String>, LandError> {
    let mut paths = Vec::new();
    for conflict in index.conflicts()? {
        let conflict = conflict?;
        let entry = conflict
            .our
            .or(conflict.their)
            .or(conflict.ancestor)
            .map(|e| String::from_utf8_lossy(&e.path).into_owned());
        if let Some(path) = entry
            && !paths.contains(&path)
        {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A bare repository with trunk at a one-file seed.
    fn repo() -> (tempfile::TempDir, Repository, Oid) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let seed = commit_files(&repo, None, &[("a.txt", "one\ntwo\nthree\n")], "seed");
        repo.reference(TRUNK_REF, seed, true, "seed").unwrap();
        (dir, repo, seed)
    }

    fn commit_files(
        repo: &Repository,
        parent: Option<Oid>,
        files: &[(&str, &str)],
        msg: &str,
    ) -> Oid {
        let sig = Signature::now("t", "t@t").unwrap();
        let parent = parent.map(|p| repo.find_commit(p).unwrap());
        let mut builder = repo
            .treebuilder(parent.as_ref().map(|p| p.tree().unwrap()).as_ref())
            .unwrap();
        for (path, content) in files {
            let blob = repo.blob(content.as_bytes()).unwrap();
            builder.insert(path, blob, 0o100644).unwrap();
        }
        let tree = repo.find_tree(builder.write().unwrap()).unwrap();
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(None, &sig, &sig, msg, &tree, &parents).unwrap()
    }

    fn file(repo: &Repository, commit: Oid, path: &str) -> Option<String> {
        let tree = repo.find_commit(commit).unwrap().tree().unwrap();
        let entry = tree.get_path(Path::new(path)).ok()?;
        let blob = repo.find_blob(entry.id()).unwrap();
        Some(String::from_utf8(blob.content().to_vec()).unwrap())
    }

    #[test]
    fn fast_forwards_a_slot_on_top_of_trunk() {
        let (_d, repo, seed) = repo();
        let c = commit_files(&repo, Some(seed), &[("b.txt", "b")], "add b");
        let landed = land(&repo, c, "t").unwrap();
        assert_eq!(landed.trunk, c);
        assert_eq!(trunk(&repo).unwrap(), c);
    }

    #[test]
    fn replays_behind_slots_linearly_and_skips_what_is_already_there() {
        let (_d, repo, seed) = repo();
        let a = commit_files(&repo, Some(seed), &[("b.txt", "b")], "slot a");
        let b = commit_files(&repo, Some(seed), &[("c.txt", "c")], "slot b");
        land(&repo, a, "t").unwrap();
        let landed = land(&repo, b, "t").unwrap();
        let tip = repo.find_commit(landed.trunk).unwrap();
        assert_eq!(tip.parent_count(), 1);
        assert_eq!(tip.parent_id(0).unwrap(), a);
        assert_eq!(tip.message(), Ok("slot b"));
        assert_eq!(file(&repo, landed.trunk, "b.txt").as_deref(), Some("b"));
        assert_eq!(file(&repo, landed.trunk, "c.txt").as_deref(), Some("c"));
        // landing b again (a retry) changes nothing
        let again = land(&repo, b, "t").unwrap();
        assert_eq!(again.trunk, landed.trunk);
        assert_eq!(again.skipped, 1);
    }

    #[test]
    fn a_conflict_leaves_trunk_untouched() {
        let (_d, repo, seed) = repo();
        let a = commit_files(&repo, Some(seed), &[("a.txt", "one\nTWO-a\nthree\n")], "a");
        let b = commit_files(&repo, Some(seed), &[("a.txt", "one\nTWO-b\nthree\n")], "b");
        land(&repo, a, "t").unwrap();
        let err = land(&repo, b, "t").unwrap_err();
        assert_eq!(
            err,
            LandError::Conflict {
                commit: b,
                paths: vec!["a.txt".into()]
            }
        );
        assert_eq!(trunk(&repo).unwrap(), a);
    }

    #[test]
    fn a_lander_that_remembers_trunk_lands_as_one_that_does_not() {
        let (_d, repo, seed) = repo();
        let mut seen = Seen::default();
        let a = commit_files(&repo, Some(seed), &[("b.txt", "b")], "slot a");
        let b = commit_files(&repo, Some(seed), &[("c.txt", "c")], "slot b");
        let first = land_seen(&repo, a, "t", &mut seen).unwrap();
        let second = land_seen(&repo, b, "t", &mut seen).unwrap();
        assert_eq!(second.commits.len(), 1);
        // the next slot's base is found among what was seen, not searched
        let next = commit_files(&repo, Some(second.trunk), &[("e.txt", "e")], "next");
        assert_eq!(
            seen.base(&repo, second.trunk, next).unwrap(),
            Some(second.trunk)
        );

        // someone else moves trunk back: what was seen no longer holds, so
        // a slot based on the old trunk brings that commit along again
        repo.reference(TRUNK_REF, seed, true, "restore").unwrap();
        let c = commit_files(&repo, Some(first.trunk), &[("d.txt", "d")], "slot c");
        let third = land_seen(&repo, c, "t", &mut seen).unwrap();
        assert_eq!(third.commits, vec![a, c], "a fast-forward of both");
        assert_eq!(file(&repo, third.trunk, "b.txt").as_deref(), Some("b"));
        assert_eq!(file(&repo, third.trunk, "d.txt").as_deref(), Some("d"));
        assert_eq!(file(&repo, third.trunk, "c.txt"), None);
        assert_eq!(trunk(&repo).unwrap(), third.trunk);
    }

    #[test]
    fn refuses_merge_commits() {
        let (_d, repo, seed) = repo();
        let a = commit_files(&repo, Some(seed), &[("b.txt", "b")], "a");
        let b = commit_files(&repo, Some(seed), &[("c.txt", "c")], "b");
        let sig = Signature::now("t", "t@t").unwrap();
        let (ca, cb) = (repo.find_commit(a).unwrap(), repo.find_commit(b).unwrap());
        let merge = repo
            .commit(None, &sig, &sig, "merge", &ca.tree().unwrap(), &[&ca, &cb])
            .unwrap();
        assert_eq!(
            land(&repo, merge, "t").unwrap_err(),
            LandError::MergeCommit(merge)
        );
        assert_eq!(trunk(&repo).unwrap(), seed);
    }
}
