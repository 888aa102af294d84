//! What git knows about a slot: commits on its branch not on trunk
//! (ahead), trunk's commits it lacks (behind), and files changed in its
//! checkout and not committed.
//!
//! Read when something says they may have changed. A slot's checkout is
//! scanned when the slot appears and after a slot verb's hub.log entry
//! (join, sync, ...); a commit needs no scan, since `swarm commit` commits
//! everything first. A landing moves trunk, so every slot's standing is
//! brought up to date. That is cheap however many slots there are: a
//! [`Counter`] keeps each slot's counts with the branch tip and trunk tip
//! they were counted at, so a slot whose branch did not move and that has
//! nothing unlanded is simply behind by as many more commits as trunk grew
//! (counted once per landing), and only a slot whose branch moved, or that
//! has commits of its own, is walked again. Which branches moved the kernel
//! says ([`Moved`]: inotify on the slots' ref directory), so a landing
//! reads trunk's ref and the refs that changed, not one per slot. Files
//! edited between two verbs are seen by the view's slow rescan while
//! someone watches ([`super`]'s `CHANGES_EVERY`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use git2::{Oid, Repository, StatusOptions};
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde::Serialize;

use crate::state::paths::Paths;
use crate::swarm::slot::{BRANCHES, SlotDir, branch_ref};
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
    /// Slots whose checkout was just committed in full (`swarm commit`):
    /// nothing is uncommitted, no scan needed (unless `slots` names them
    /// too).
    pub committed: BTreeSet<String>,
    /// Trunk (may have) moved: bring every slot's standing up to date.
    pub trunk_moved: bool,
    /// Scan every checkout not scanned for this long (the slow rescan;
    /// a slot a verb just had scanned is left out).
    pub older_than: Option<Duration>,
}

impl Due {
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
            && self.committed.is_empty()
            && !self.trunk_moved
            && self.older_than.is_none()
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
    /// Which slot branches moved since the last read.
    moved: Moved,
    /// How many commits the reads walked, in all (for tests of the cost).
    pub walked: usize,
    /// How many slot refs the reads looked up, in all (for tests of the
    /// cost).
    pub refs_read: usize,
}

impl Counter {
    pub fn new(paths: Paths) -> Counter {
        Counter {
            paths,
            repo: None,
            counted: HashMap::new(),
            grown: None,
            checkouts: HashMap::new(),
            moved: Moved::new(),
            walked: 0,
            refs_read: 0,
        }
    }

    /// The facts of every slot in `all`: ahead/behind brought up to date
    /// (a ref read where [`Moved`] says; a walk only where [`Counter`]
    /// says), the changed-files count scanned for the slots `due` names,
    /// zero for those it says were committed, and kept from `known` for
    /// the others.
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
        // the moves are taken before the refs are read: a ref that moves
        // after this is read again next time
        let moved = self.moved.take(&self.paths.hub_repo.join(BRANCHES));
        let trunk = self
            .repo
            .as_ref()
            .and_then(|repo| repo.refname_to_id(TRUNK_REF).ok());
        let mut out = Vec::with_capacity(all.len());
        for name in all {
            let mut facts = known(name).unwrap_or_default();
            let tip = match (self.counted.get(name), &moved) {
                (Some(counted), Some(moved)) if !moved.contains(name) => Some(counted.tip),
                _ => self.tip(name),
            };
            (facts.ahead, facts.behind) = match (tip, trunk) {
                (Some(tip), Some(trunk)) => self.count(name, tip, trunk),
                _ => {
                    self.counted.remove(name);
                    None
                }
            }
            .unzip();
            let stale = |(_, at): &(Repository, Instant)| {
                due.older_than.is_some_and(|age| at.elapsed() >= age)
            };
            let rescan = due.older_than.is_some() && self.checkouts.get(name).is_none_or(stale);
            if due.slots.contains(name) || rescan {
                facts.changes = self.changes(name);
            } else if due.committed.contains(name) {
                facts.changes = Some(0);
                if let Some((_, scanned)) = self.checkouts.get_mut(name) {
                    *scanned = Instant::now();
                }
            }
            out.push((name.clone(), facts));
        }
        out
    }

    /// Where a slot's branch points, read from its ref.
    fn tip(&mut self, slot: &str) -> Option<Oid> {
        self.refs_read += 1;
        self.repo
            .as_ref()
            .and_then(|repo| repo.refname_to_id(&branch_ref(slot)).ok())
    }

    /// A slot's (ahead, behind) between its branch at `tip` and `trunk`,
    /// from what was counted before when that still holds.
    fn count(&mut self, slot: &str, tip: Oid, trunk: Oid) -> Option<(usize, usize)> {
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

/// Which slots' branch refs changed, from inotify on their directory
/// ([`BRANCHES`]): git
/// writes a ref by renaming `<name>.lock` over `<name>` and removes one by
/// unlinking it, so each move names its slot. The watch is added on the
/// first read that finds the directory; until then, and whenever events
/// may have been lost, every ref counts as moved.
struct Moved {
    inotify: Option<Inotify>,
    watching: bool,
}

impl Moved {
    fn new() -> Moved {
        Moved {
            inotify: Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok(),
            watching: false,
        }
    }

    /// The slots whose ref moved since the last call; `None` when that is
    /// not known (every ref must be read).
    fn take(&mut self, dir: &Path) -> Option<HashSet<String>> {
        let inotify = self.inotify.as_ref()?;
        if !self.watching {
            let flags = AddWatchFlags::IN_CREATE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_DELETE
                | AddWatchFlags::IN_MOVED_FROM
                | AddWatchFlags::IN_ONLYDIR;
            // watching before the refs are read: no move is missed
            self.watching = inotify.add_watch(dir, flags).is_ok();
            return None;
        }
        let mut moved = HashSet::new();
        loop {
            match inotify.read_events() {
                Ok(events) => {
                    for event in events {
                        if event
                            .mask
                            .intersects(AddWatchFlags::IN_Q_OVERFLOW | AddWatchFlags::IN_IGNORED)
                        {
                            // events were dropped, or the directory went
                            // (its watch with it): start again
                            self.watching = false;
                            return None;
                        }
                        let Some(name) = event.name.as_ref().and_then(|n| n.to_str()) else {
                            continue;
                        };
                        if !name.ends_with(".lock") {
                            moved.insert(name.to_string());
                        }
                    }
                }
                Err(Errno::EAGAIN) => return Some(moved),
                Err(_) => {
                    self.watching = false;
                    return None;
                }
            }
        }
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

        let (walked, refs_read) = (counter.walked, counter.refs_read);
        trunk = commit(&repo, Some(trunk), 51);
        repo.reference(TRUNK_REF, trunk, true, "").unwrap();
        let after = counter.read(&Due::default(), &slots, |_| None);
        assert_eq!(
            counter.refs_read, refs_read,
            "no slot's branch moved: no slot ref is read"
        );
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

        // one slot's branch moves (a commit of its own), one is deleted:
        // those two refs are read again, and counted right
        let refs_read = counter.refs_read;
        let own = commit(&repo, Some(trunk), 300);
        repo.reference(&branch_ref("s7"), own, true, "").unwrap();
        repo.find_reference(&branch_ref("s8"))
            .unwrap()
            .delete()
            .unwrap();
        let moved = counter.read(&Due::default(), &slots, |_| None);
        assert_eq!(counter.refs_read - refs_read, 2);
        assert_eq!((moved[7].1.ahead, moved[7].1.behind), (Some(1), Some(0)));
        assert_eq!((moved[8].1.ahead, moved[8].1.behind), (None, None));
        assert_eq!(moved[9].1.behind, Some(51));

        // a slot whose checkout was committed in full has nothing
        // uncommitted, without a scan (there is no checkout to scan here)
        let due = Due {
            committed: ["s3".to_string()].into(),
            ..Due::default()
        };
        let known = |_: &str| {
            Some(SlotGit {
                changes: Some(5),
                ..SlotGit::default()
            })
        };
        let read = counter.read(&due, &slots, known);
        assert_eq!(read[3].1.changes, Some(0));
        assert_eq!(read[4].1.changes, Some(5), "the others keep what was known");
    }
}
