//! What git knows about a slot: commits on its branch not on trunk
//! (ahead), trunk's commits it lacks (behind), and files changed in its
//! checkout and not committed.
//!
//! Read when something says they may have changed: a slot verb (join,
//! commit, sync, renew) writes the slot's lease or a hub.log entry naming
//! it, so its checkout is looked at then; a landing moves trunk, so every
//! slot's standing is brought up to date. That is cheap however many slots
//! there are: a [`Counter`] keeps each slot's counts with the branch tip and
//! trunk tip they were counted at, so a slot whose branch did not move and
//! that has nothing unlanded is simply behind by as many more commits as
//! trunk grew (counted once per landing), and only a slot whose branch
//! moved, or that has commits of its own, is walked again. Files edited
//! between two verbs are seen by the view's slow rescan while someone
//! watches ([`super`]'s `CHANGES_EVERY`).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use git2::{Oid, Repository, StatusOptions};
use serde::Serialize;

use crate::state::paths::Paths;
use crate::swarm::slot::{SlotDir, branch_ref};
use crate::trunk::repo::TRUNK_REF;

/// A slot's standing against trunk. A count is `None` when it could not
/// be read (no branch yet, a checkout being removed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SlotGit {
    pub ahead: Option<usize>,
    pub behind: Option<usize>,
    /// Files changed or new in the checkout, not committed.
    pub changes: Option<usize>,
}

/// What to read again.
#[derive(Debug, Clone, Default)]
pub struct Due {
    /// Slots whose checkout to scan for uncommitted changes.
    pub slots: BTreeSet<String>,
    /// Trunk (may have) moved: bring every slot's standing up to date.
    pub trunk_moved: bool,
    /// Scan every checkout not scanned for this long (the slow rescan;
    /// a slot a verb just had scanned is left out).
    pub older_than: Option<Duration>,
}

impl Due {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && !self.trunk_moved && self.older_than.is_none()
    }
}

/// One slot's counts, and the tips they were counted at.
#[derive(Debug, Clone, Copy)]
struct Counted {
    tip: Oid,
    trunk: Oid,
    ahead: usize,
    behind: usize,
}

/// Reads slots' git facts, counting again only what moved. Blocking: run
/// [`Counter::read`] off the runtime.
pub struct Counter {
    paths: Paths,
    /// Kept open between reads: opening reads the repository's config.
    repo: Option<Repository>,
    counted: HashMap<String, Counted>,
    /// How many commits trunk grew by from one tip to the next, counted
    /// once for every slot that needs it.
    grown: Option<(Oid, Oid, usize)>,
    /// Each slot's checkout, kept open between scans, and when it was
    /// last scanned.
    checkouts: HashMap<String, (Repository, Instant)>,
    /// How many commits the reads walked, in all (for tests of the cost).
    pub walked: usize,
}

impl Counter {
    pub fn new(paths: Paths) -> Counter {
        Counter {
            paths,
            repo: None,
            counted: HashMap::new(),
            grown: None,
            checkouts: HashMap::new(),
            walked: 0,
        }
    }

    /// The facts of every slot in `all`: ahead/behind brought up to date
    /// (one ref read per slot; a walk only where [`Counter`] says), the
    /// changed-files count scanned for the slots `due` names and kept from
    /// `known` for the others.
    pub fn read(
        &mut self,
        due: &Due,
        all: &[String],
        known: impl Fn(&str) -> Option<SlotGit>,
    ) -> Vec<(String, SlotGit)> {
        if self.repo.is_none() {
            self.repo = Repository::open_bare(&self.paths.hub_repo).ok();
        }
        self.counted.retain(|slot, _| all.contains(slot));
        self.checkouts.retain(|slot, _| all.contains(slot));
        let trunk = self
            .repo
            .as_ref()
            .and_then(|repo| repo.refname_to_id(TRUNK_REF).ok());
        let mut out = Vec::with_capacity(all.len());
        for name in all {
            let mut facts = known(name).unwrap_or_default();
            (facts.ahead, facts.behind) = trunk.and_then(|trunk| self.count(name, trunk)).unzip();
            let stale = |(_, at): &(Repository, Instant)| {
                due.older_than.is_some_and(|age| at.elapsed() >= age)
            };
            let rescan = due.older_than.is_some() && self.checkouts.get(name).is_none_or(stale);
            if due.slots.contains(name) || rescan {
                facts.changes = self.changes(name);
            }
            out.push((name.clone(), facts));
        }
        out
    }

    /// A slot's (ahead, behind) against `trunk`, from what was counted
    /// before when that still holds.
    fn count(&mut self, slot: &str, trunk: Oid) -> Option<(usize, usize)> {
        let Some(tip) = self
            .repo
            .as_ref()
            .and_then(|repo| repo.refname_to_id(&branch_ref(slot)).ok())
        else {
            self.counted.remove(slot);
            return None;
        };
        let counts = match self.counted.get(slot).copied() {
            Some(c) if c.tip == tip && c.trunk == trunk => (c.ahead, c.behind),
            // nothing of its own and its branch unmoved: it is an ancestor
            // of the old trunk and trunk's new commits are not, so it lacks
            // each of them
            Some(c) if c.tip == tip && c.ahead == 0 => match self.grown_by(c.trunk, trunk) {
                Some(grown) => (0, c.behind + grown),
                None => self.walk(tip, trunk)?,
            },
            _ => self.walk(tip, trunk)?,
        };
        let (ahead, behind) = counts;
        let counted = Counted {
            tip,
            trunk,
            ahead,
            behind,
        };
        self.counted.insert(slot.to_string(), counted);
        Some(counts)
    }

    /// How many commits `new` has over `old` when it descends from it
    /// (trunk grows by landings); `None` when trunk was moved another way.
    fn grown_by(&mut self, old: Oid, new: Oid) -> Option<usize> {
        if let Some((o, n, grown)) = self.grown
            && (o, n) == (old, new)
        {
            return Some(grown);
        }
        match self.walk(new, old)? {
            (grown, 0) => {
                self.grown = Some((old, new, grown));
                Some(grown)
            }
            _ => None,
        }
    }

    fn walk(&mut self, from: Oid, to: Oid) -> Option<(usize, usize)> {
        let counts = self.repo.as_ref()?.graph_ahead_behind(from, to).ok()?;
        self.walked += counts.0 + counts.1;
        Some(counts)
    }
}

impl Counter {
    /// The number of files changed or new in a slot's checkout, through
    /// its handle kept open (opening one parses its config); a handle that
    /// fails (the checkout went) is dropped and opened afresh next time.
    fn changes(&mut self, slot: &str) -> Option<usize> {
        let repo = match self.checkouts.remove(slot) {
            Some((repo, _)) => repo,
            None => Repository::open(SlotDir::new(&self.paths, slot).wt).ok()?,
        };
        let mut options = StatusOptions::new();
        options
            .include_untracked(true)
            .recurse_untracked_dirs(false)
            .exclude_submodules(true);
        let count = repo.statuses(Some(&mut options)).ok().map(|s| s.len())?;
        self.checkouts
            .insert(slot.to_string(), (repo, Instant::now()));
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::Signature;

    /// A commit on `parent` (or a root), made in `repo` without a ref.
    fn commit(repo: &Repository, parent: Option<Oid>, n: usize) -> Oid {
        let tree = repo.treebuilder(None).unwrap().write().unwrap();
        let tree = repo.find_tree(tree).unwrap();
        let who = Signature::now("t", "t@example.com").unwrap();
        let parents: Vec<_> = parent
            .map(|p| repo.find_commit(p).unwrap())
            .into_iter()
            .collect();
        let parents: Vec<_> = parents.iter().collect();
        repo.commit(None, &who, &who, &format!("c{n}"), &tree, &parents)
            .unwrap()
    }

    #[test]
    fn a_landing_is_counted_once_not_once_per_slot() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(tmp.path());
        let repo = Repository::init_bare(&paths.hub_repo).unwrap();
        let mut trunk = commit(&repo, None, 0);
        for n in 1..=50 {
            trunk = commit(&repo, Some(trunk), n);
        }
        let base = commit(&repo, None, 100);
        let slots: Vec<String> = (0..20).map(|i| format!("s{i}")).collect();
        for slot in &slots {
            repo.reference(&branch_ref(slot), base, true, "").unwrap();
        }
        // one slot with a commit of its own on trunk's tip
        let own = commit(&repo, Some(trunk), 200);
        repo.reference(&branch_ref("s0"), own, true, "").unwrap();
        repo.reference(TRUNK_REF, trunk, true, "").unwrap();

        let mut counter = Counter::new(paths);
        let first = counter.read(&Due::default(), &slots, |_| None);
        assert_eq!(first[0].1.ahead, Some(1));
        assert_eq!(first[0].1.behind, Some(0));
        assert_eq!(first[1].1.ahead, Some(1), "its unrelated root");
        assert_eq!(first[1].1.behind, Some(51));

        // unrelated roots count as a commit of their own: walked again;
        // rebase the idle slots on trunk's first commit instead
        let root = repo.revparse_single(&format!("{trunk}~50")).unwrap().id();
        for slot in &slots[1..] {
            repo.reference(&branch_ref(slot), root, true, "").unwrap();
        }
        let levelled = counter.read(&Due::default(), &slots, |_| None);
        assert_eq!(levelled[5].1.behind, Some(50));
        assert_eq!(levelled[5].1.ahead, Some(0));

        let walked = counter.walked;
        trunk = commit(&repo, Some(trunk), 51);
        repo.reference(TRUNK_REF, trunk, true, "").unwrap();
        let after = counter.read(&Due::default(), &slots, |_| None);
        for (slot, git) in &after[1..] {
            assert_eq!(git.behind, Some(51), "{slot}");
            assert_eq!(git.ahead, Some(0), "{slot}");
        }
        assert_eq!(after[0].1.ahead, Some(1));
        assert_eq!(after[0].1.behind, Some(1));
        // trunk's growth once, and the one slot with work of its own
        assert!(
            counter.walked - walked <= 4,
            "walked {} commits for one landing",
            counter.walked - walked
        );
        // nothing moved: nothing walked
        let walked = counter.walked;
        assert_eq!(counter.read(&Due::default(), &slots, |_| None), after);
        assert_eq!(counter.walked, walked);
    }
}
