//! `bones apply [--slot NAME] [--worktree]`.

use clap::Args;
use serde_json::json;

use super::{exit, report};
use crate::hub::Paths;
use crate::swarm::apply::{self, ApplyError, ApplyOptions};
use crate::workspace::Workspace;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A slot's branch instead of trunk.
    #[arg(long, value_name = "NAME")]
    slot: Option<String>,
    /// Apply the changes to your working tree (refuses when that would
    /// overwrite uncommitted changes).
    #[arg(long)]
    worktree: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ApplyArgs) -> u8 {
    let paths = match Workspace::from_cwd() {
        Ok(ws) => Paths::new(&ws),
        Err(err) => {
            report(&err);
            return exit::FAILURE;
        }
    };
    let opts = ApplyOptions {
        slot: args.slot,
        worktree: args.worktree,
    };
    match apply::apply(&paths, &opts) {
        Ok(applied) => {
            let seed = &applied.seed[..12];
            eprintln!(
                "apply: {} is at {} ({} commit(s) after the session base {seed})",
                applied.branch,
                &applied.tip[..12],
                applied.commits
            );
            if opts.worktree {
                eprintln!(
                    "apply: changed {} file(s) in your working tree; review with `git status` and `git diff`",
                    applied.changed.len()
                );
            } else if applied.commits > 0 {
                eprintln!(
                    "apply: to take these commits onto your branch: git cherry-pick {seed}..{}",
                    applied.branch
                );
                eprintln!("apply: or as changes to your working tree: bones apply --worktree");
            }
            if args.json {
                println!("{}", json!(applied));
            } else {
                println!("{}", applied.branch);
            }
            exit::OK
        }
        Err(err) => {
            report(&err);
            match err {
                ApplyError::Name(_) => exit::USAGE,
                _ => exit::FAILURE,
            }
        }
    }
}
