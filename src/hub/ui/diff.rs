//! The diff a trunk commit made, for a click on a landing.

use std::path::Path;

use git2::{DiffFormat, Oid, Repository};

/// The most of a diff the page is sent; the rest is cut with a note.
pub const MAX_DIFF: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("not a commit of the hub repository")]
    NotACommit,
    #[error("cannot read the hub repository: {0}")]
    Repo(#[from] git2::Error),
}

/// The patch `commit` (a full hex id) made against its first parent (or
/// the empty tree), cut at [`MAX_DIFF`] bytes.
pub fn of_commit(hub_repo: &Path, commit: &str) -> Result<String, DiffError> {
    // a full id only: a prefix or a ref name would let a request walk refs
    if !(commit.len() == 40 || commit.len() == 64) || !commit.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(DiffError::NotACommit);
    }
    let repo = Repository::open_bare(hub_repo)?;
    let id = Oid::from_str(commit).map_err(|_| DiffError::NotACommit)?;
    let Ok(found) = repo.find_commit(id) else {
        return Err(DiffError::NotACommit);
    };
    let tree = found.tree()?;
    let parent = found.parents().next().map(|p| p.tree()).transpose()?;
    let diff = repo.diff_tree_to_tree(parent.as_ref(), Some(&tree), None)?;
    let mut text = format!(
        "commit {}\n{}\n\n",
        found.id(),
        String::from_utf8_lossy(found.message_bytes()).trim_end()
    );
    let mut cut = false;
    diff.print(DiffFormat::Patch, |_, _, line| {
        if text.len() >= MAX_DIFF {
            cut = true;
            return false;
        }
        if matches!(line.origin(), '+' | '-' | ' ') {
            text.push(line.origin());
        }
        text.push_str(&String::from_utf8_lossy(line.content()));
        true
    })
    .or_else(|err| if cut { Ok(()) } else { Err(err) })?;
    if cut {
        text.push_str(&format!("\n[diff cut at {} KiB]\n", MAX_DIFF / 1024));
    }
    Ok(text)
}
