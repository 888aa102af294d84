//! Checks that run before `hub start` has any side effect.
//!
//! Each guard names the incident it prevents; a guard without its reason
//! gets deleted by the next person.

use std::path::{Path, PathBuf};

/// Why a start was refused before doing anything.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(
        "refusing to start: legacy agent worktrees present ({}); move any work you need out of them, then remove them with `git worktree remove <dir>` (or `rm -rf` them)",
        .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    StaleClaudeWorktrees(Vec<PathBuf>),
    #[error(
        "{root} is not a git repository; bones seeds its trunk from git-tracked files: run `git init && git add . && git commit -m init` first"
    )]
    NotGitRepo { root: PathBuf },
    #[error(
        "{root} has no git-tracked files to seed the trunk from; commit at least one file (`git add . && git commit -m init`) before `bones hub start`"
    )]
    NoTrackedFiles { root: PathBuf },
    #[error("cannot read the git index of {root}: {}", .source.message())]
    GitIndex {
        root: PathBuf,
        #[source]
        source: git2::Error,
    },
}

/// Agents of an older layout kept checkouts in `.claude/worktrees/agent-*`;
/// starting a hub beside them split work between two systems (Go ADR 0050).
pub fn no_stale_claude_worktrees(root: &Path) -> Result<(), GuardError> {
    let dir = root.join(".claude").join("worktrees");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("agent-"))
        .map(|e| {
            e.path()
                .strip_prefix(root)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| e.path())
        })
        .collect();
    if found.is_empty() {
        return Ok(());
    }
    found.sort();
    Err(GuardError::StaleClaudeWorktrees(found))
}

/// A first start with nothing to seed used to wait out a 15 s readiness
/// timeout and then fail cryptically (Go #138 item 9): fail fast instead.
pub fn has_tracked_files(root: &Path) -> Result<(), GuardError> {
    let repo = git2::Repository::open(root).map_err(|_| GuardError::NotGitRepo {
        root: root.to_path_buf(),
    })?;
    if repo.is_bare() {
        return Err(GuardError::NotGitRepo {
            root: root.to_path_buf(),
        });
    }
    let index = repo.index().map_err(|source| GuardError::GitIndex {
        root: root.to_path_buf(),
        source,
    })?;
    if index.is_empty() {
        return Err(GuardError::NoTrackedFiles {
            root: root.to_path_buf(),
        });
    }
    Ok(())
}
