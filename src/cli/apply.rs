//! `bones apply [--slot NAME] [--worktree [--unstaged] [--dry-run]]`.

use clap::Args;

use super::Failure;
use crate::state::Paths;
use crate::state::workspace::Workspace;
use crate::swarm::apply::{self, ApplyOptions};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A slot's branch instead of trunk.
    #[arg(long, value_name = "NAME")]
    slot: Option<String>,
    /// Bring what landed since the last `apply --worktree` into your
    /// working tree, staged like `git cherry-pick --no-commit` (refuses,
    /// touching nothing, when that would overwrite uncommitted changes).
    #[arg(long)]
    worktree: bool,
    /// With --worktree: leave the changes unstaged.
    #[arg(long, requires = "worktree")]
    unstaged: bool,
    /// With --worktree: list what would change (A/M/D and the path) and
    /// change nothing.
    #[arg(long, requires = "worktree")]
    dry_run: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ApplyArgs) -> Result<(), Failure> {
    let paths = Paths::new(&Workspace::from_cwd()?);
    let opts = ApplyOptions {
        slot: args.slot,
        worktree: args.worktree,
        unstaged: args.unstaged,
        dry_run: args.dry_run,
    };
    let applied = apply::apply(&paths, &opts)?;
    let tip = &applied.tip[..12];
    if !applied.related {
        eprintln!(
            "apply: this hub's trunk shares no history with your branch (seeded by an earlier bones); \
             see \"Hubs seeded by earlier versions\" in the README"
        );
    }
    if opts.worktree {
        let from = applied.from.as_deref().map(|f| &f[..12]).unwrap_or("?");
        if applied.nothing_new {
            eprintln!(
                "apply: nothing new on {} since {from}; your working tree is unchanged",
                applied.branch
            );
        } else if applied.dry_run {
            eprintln!(
                "apply: would change {} file(s) ({from}..{tip}); nothing was changed",
                applied.changed.len()
            );
        } else {
            eprintln!(
                "apply: brought {from}..{tip} into your working tree: {} file(s), {}; review with `git status` and `git diff{}`",
                applied.changed.len(),
                if applied.staged { "staged" } else { "unstaged" },
                if applied.staged { " --cached" } else { "" }
            );
        }
    } else {
        eprintln!(
            "apply: {} is at {tip} ({} commit(s) your branch lacks)",
            applied.branch, applied.commits
        );
        match &applied.integrate {
            Some(command) => eprintln!("apply: integrate it with: {command}"),
            None => eprintln!(
                "apply: your branch already has everything on {}",
                applied.branch
            ),
        }
        if applied.ahead > 0 && applied.integrate.is_none() && opts.slot.is_none() {
            eprintln!(
                "apply: your branch has {} commit(s) trunk lacks; `bones land` puts them on trunk",
                applied.ahead
            );
        }
    }
    if args.json {
        super::json::print(applied);
    } else if opts.worktree {
        for change in &applied.changed {
            println!("{}\t{}", change.status, change.path);
        }
    } else {
        println!("{}", applied.branch);
    }
    Ok(())
}
