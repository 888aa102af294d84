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
use std::path::Path;

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
}

impl Due {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && !self.trunk_moved
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
        let trunk = self
            .repo
            .as_ref()
            .and_then(|repo| repo.refname_to_id(TRUNK_REF).ok());
        let mut out = Vec::with_capacity(all.len());
        for name in all {
            let mut facts = known(name).unwrap_or_default();
            (facts.ahead, facts.behind) = trunk.and_then(|trunk| self.count(name, trunk)).unzip();
            if due.slots.contains(name) {
                facts.changes = changes(&SlotDir::new(&self.paths, name).wt);
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

fn changes(checkout: &Path) -> Option<usize> {
    let repo = Repository::open(checkout).ok()?;
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(false)
        .exclude_submodules(true);
    repo.statuses(Some(&mut options)).ok().map(|s| s.len())
}
