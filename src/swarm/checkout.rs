//! Making a slot's checkout at git's speed.
//!
//! libgit2's `git_worktree_add` checked out a 21,000-file trunk in twice
//! the time `git worktree add` took, and four at once in 2.5 times
//! (`scripts/bench.sh bigrepo`, issue 16). git2 cannot hand it checkout
//! options without `unsafe`, and `git worktree add` names the
//! administrative directory after the checkout's last path component
//! (`wt` for every slot), where bones names it after the slot. So the
//! worktree is registered here the way `git worktree add --no-checkout`
//! registers one (the layout gitrepository-layout(5) documents: `gitdir`,
//! `commondir` and `HEAD` under `worktrees/<name>`, a `.git` file in the
//! checkout), and git's own `checkout -f` writes the index and the files
//! before the `.git` file makes it a checkout. The slot branch points at
//! its commit throughout.

use std::fs;
use std::io;
use std::path::Path;

use crate::sys::gitcli;
use crate::sys::gitcli::{GitError, Progress};

/// Why a checkout could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the checkout's path is not UTF-8: {0}")]
    NotUtf8(String),
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Registers `wt` as worktree `name` of the bare repository `hub_repo` on
/// `branch` (a full ref that must already exist) and checks it out. On
/// failure nothing is left registered.
pub fn add(hub_repo: &Path, name: &str, wt: &Path, branch: &str) -> Result<(), CheckoutError> {
    let admin = hub_repo.join("worktrees").join(name);
    let result = register(&admin, wt, branch)
        .and_then(|()| {
            gitcli::run(
                &[
                    "--git-dir".as_ref(),
                    admin.as_os_str(),
                    "--work-tree".as_ref(),
                    wt.as_os_str(),
                    // `checkout -f` of HEAD, as `reset --hard` would, but
                    // with counts that show a slow one where it is
                    "checkout".as_ref(),
                    "-f".as_ref(),
                    "-q".as_ref(),
                    "--progress".as_ref(),
                ],
                Progress::Stderr("swarm"),
            )
            .map_err(CheckoutError::from)
        })
        // last: a checkout is recognised by its `.git` file, so one cut
        // short (a killed join) is never taken for a finished one
        .and_then(|()| {
            let dot_git = format!("gitdir: {}\n", utf8(&admin)?);
            write(&wt.join(".git"), dot_git)
        });
    if result.is_err() {
        let _ = fs::remove_dir_all(&admin);
        let _ = fs::remove_dir_all(wt);
    }
    result
}

fn register(admin: &Path, wt: &Path, branch: &str) -> Result<(), CheckoutError> {
    for dir in [admin, wt] {
        fs::create_dir_all(dir).map_err(|source| CheckoutError::Write {
            path: dir.display().to_string(),
            source,
        })?;
    }
    write(&admin.join("commondir"), "../..\n".to_string())?;
    write(&admin.join("HEAD"), format!("ref: {branch}\n"))?;
    write(
        &admin.join("gitdir"),
        format!("{}\n", utf8(&wt.join(".git"))?),
    )
}

fn write(path: &Path, content: String) -> Result<(), CheckoutError> {
    fs::write(path, content).map_err(|source| CheckoutError::Write {
        path: path.display().to_string(),
        source,
    })
}

fn utf8(path: &Path) -> Result<String, CheckoutError> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| CheckoutError::NotUtf8(path.display().to_string()))
}
