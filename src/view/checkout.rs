//! What git knows about a slot: commits on its branch not on trunk
//! (ahead), trunk's commits it lacks (behind), and files changed in its
//! checkout and not committed.
//!
//! Read when something says they may have changed, never on a timer: a
//! slot verb (join, commit, sync, renew) writes the slot's lease or a
//! hub.log entry naming it, so its checkout is looked at then; a landing moves trunk, so every
//! slot's ahead/behind is counted again (a walk of a few commits each),
//! but no other checkout is scanned for it. Files edited between two verbs
//! show at the next one.

use std::collections::BTreeSet;
use std::path::Path;

use git2::{Repository, StatusOptions};
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
    /// Slots whose checkout and branch to read.
    pub slots: BTreeSet<String>,
    /// Count ahead/behind again for every slot in `all`.
    pub trunk_moved: bool,
}

impl Due {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && !self.trunk_moved
    }
}

/// Reads what `due` names, keeping the changed-files count of slots whose
/// checkout was not looked at from `known`. Blocking: run it off the
/// runtime.
pub fn read(
    paths: &Paths,
    due: &Due,
    all: &[String],
    known: impl Fn(&str) -> Option<SlotGit>,
) -> Vec<(String, SlotGit)> {
    let repo = Repository::open_bare(&paths.hub_repo).ok();
    let names: Vec<&String> = if due.trunk_moved {
        all.iter().collect()
    } else {
        due.slots.iter().collect()
    };
    let mut out = Vec::new();
    for name in names {
        let mut facts = known(name).unwrap_or_default();
        (facts.ahead, facts.behind) = match &repo {
            Some(repo) => ahead_behind(repo, name).unzip(),
            None => (None, None),
        };
        if due.slots.contains(name) {
            facts.changes = changes(&SlotDir::new(paths, name).wt);
        }
        out.push((name.clone(), facts));
    }
    out
}

fn ahead_behind(repo: &Repository, slot: &str) -> Option<(usize, usize)> {
    let tip = repo.refname_to_id(&branch_ref(slot)).ok()?;
    let trunk = repo.refname_to_id(TRUNK_REF).ok()?;
    repo.graph_ahead_behind(tip, trunk).ok()
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
