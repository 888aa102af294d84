//! The trunk repository as a git bundle: one file holding every ref
//! (`trunk`, `slot/*`, `refs/bones/rescued/*`) and the objects they reach.
//!
//! `git` is a required external program, and `git bundle` is the format
//! git itself offers for carrying a whole repository as one file, so
//! `git bundle verify` and `git clone` work on a backup without bones.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Command;

use git2::Repository;

use super::BackupError;
use crate::trunk::repo::TRUNK_REF;

fn git2_err(what: &'static str) -> impl Fn(git2::Error) -> BackupError {
    move |source| BackupError::Repo { what, source }
}

/// Runs git with a quiet, prompt-free environment; stderr becomes the error.
fn run(what: &'static str, args: &[&std::ffi::OsStr]) -> Result<(), BackupError> {
    let out = Command::new("git")
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|source| BackupError::GitSpawn { what, source })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("git failed without a message")
        .trim()
        .to_string();
    Err(BackupError::Git { what, stderr })
}

/// Bundles every ref of `hub_repo` (everything under `refs/`) into `file` and returns the refs the
/// bundle holds (read back from its header, so they are what was written).
///
/// Refs are read once by git at the start; commits landed later are simply
/// not in this bundle, and objects are never removed from the hub
/// repository, so every ref listed is complete.
pub fn create(hub_repo: &Path, file: &Path) -> Result<BTreeMap<String, String>, BackupError> {
    run(
        "cannot bundle the hub repository",
        &[
            "--git-dir".as_ref(),
            hub_repo.as_os_str(),
            "bundle".as_ref(),
            "create".as_ref(),
            "--quiet".as_ref(),
            file.as_os_str(),
            // every ref under refs/; `--all` would add the per-worktree
            // HEADs of slot checkouts, which are not refs of the trunk
            "--glob=refs/*".as_ref(),
        ],
    )?;
    heads(file)
}

/// The refs listed in a bundle's header (`HEAD` excluded).
pub fn heads(file: &Path) -> Result<BTreeMap<String, String>, BackupError> {
    let read = |source| BackupError::BundleRead {
        file: file.to_path_buf(),
        source,
    };
    let unreadable = |why: String| BackupError::BundleHeader {
        file: file.to_path_buf(),
        why,
    };
    let reader =
        BufReader::new(std::fs::File::open(file).map_err(BackupError::io("cannot read", file))?);
    let mut lines = reader.split(b'\n');
    let signature = lines.next().transpose().map_err(read)?.unwrap_or_default();
    if !signature.starts_with(b"# v2 git bundle") && !signature.starts_with(b"# v3 git bundle") {
        return Err(unreadable("not a git bundle".to_string()));
    }
    let mut refs = BTreeMap::new();
    for line in lines {
        let line = line.map_err(read)?;
        if line.is_empty() {
            break; // the header ends with an empty line; the pack follows
        }
        let line = String::from_utf8_lossy(&line);
        if line.starts_with('-') || line.starts_with('@') {
            continue; // prerequisites (none for --all) and v3 capabilities
        }
        let Some((oid, name)) = line.split_once(' ') else {
            return Err(unreadable(format!("malformed header line {line:?}")));
        };
        if name != "HEAD" {
            refs.insert(name.to_string(), oid.to_string());
        }
    }
    Ok(refs)
}

/// Makes `target` a bare hub repository holding exactly the bundle's refs,
/// with `HEAD` on trunk, and checks the refs against `expected`.
pub fn unbundle(
    file: &Path,
    target: &Path,
    expected: &BTreeMap<String, String>,
) -> Result<(), BackupError> {
    let repo =
        Repository::init_bare(target).map_err(git2_err("cannot create the hub repository"))?;
    run(
        "cannot fetch from the bundle",
        &[
            "--git-dir".as_ref(),
            target.as_os_str(),
            "fetch".as_ref(),
            "--quiet".as_ref(),
            "--no-write-fetch-head".as_ref(),
            file.as_os_str(),
            "+refs/*:refs/*".as_ref(),
        ],
    )?;
    repo.set_head(TRUNK_REF)
        .map_err(git2_err("cannot point HEAD at trunk"))?;
    let mut found = BTreeMap::new();
    let references = repo
        .references()
        .map_err(git2_err("cannot list the restored refs"))?;
    for reference in references.flatten() {
        if let (Ok(name), Some(oid)) = (reference.name(), reference.target()) {
            found.insert(name.to_string(), oid.to_string());
        }
    }
    if &found != expected {
        return Err(BackupError::RefsDiffer {
            expected: expected.len(),
            found: found.len(),
        });
    }
    Ok(())
}
