//! The hub repository: a bare git repository, `hub.git`, with one linear
//! branch, `trunk`, that every slot commits through.
//!
//! It is seeded once, on the first start, and never wiped afterwards
//! (decision 2): a restart must not lose what agents committed. Trunk grows
//! from the user's own history (ADR 0012): the history of the workspace's
//! `HEAD` is fetched into `hub.git` (git's own fetch: the hub keeps its own
//! copy, so the user's `git gc` or a rewritten branch never takes an object
//! trunk needs), and trunk starts at that commit. When the working tree
//! holds tracked files that differ from `HEAD`, trunk's first commit is a
//! child of `HEAD` with that content, so agents start from what the user
//! sees. The seed is built in a temporary directory and renamed into place,
//! so a crash mid-seed leaves no half-made repository for the next start to
//! trip over.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use git2::{Delta, DiffOptions, Oid, Repository, Signature};

use crate::sys::error::{ErrorKind, Kinded};
use crate::sys::gitcli;
use crate::sys::gitcli::{GitError, Progress};

/// The one branch slots land on.
pub const TRUNK: &str = "trunk";
/// Fully qualified trunk ref.
pub const TRUNK_REF: &str = "refs/heads/trunk";
/// The user's commit trunk grew from (the workspace's `HEAD` at the seed).
/// Absent in hubs seeded before trunk shared the user's history.
pub const BASE_REF: &str = "refs/bones/base";
/// Trunk's first commit: the base itself, or its child holding the
/// working tree's uncommitted content at the seed. `bones apply
/// --worktree` never brings what is before it: the user already had it.
pub const SEED_REF: &str = "refs/bones/seed";
/// Where `bones land` puts the user's branch for the hub to land.
pub const USER_REF: &str = "refs/bones/user";
/// Author and committer of the seed commit.
pub const SEED_AUTHOR: &str = "orchestrator";

/// Why the hub repository could not be opened or seeded.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// libgit2 failed on the repository at `path` (the hub's, or the
    /// workspace's when seeding).
    #[error("hub repository {path}: {}", .source.message())]
    Git {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("hub repository {path}: trunk is not a direct reference")]
    TrunkNotDirect { path: PathBuf },
    #[error("seed: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("seed: cannot fetch the history of HEAD from {path}: {source}")]
    Fetch {
        path: PathBuf,
        #[source]
        source: GitError,
    },
    #[error("seed: cannot move the new repository into {path}: {source}")]
    Move {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "seed: no git-tracked files in {workspace} could be read; commit at least one regular file"
    )]
    NoFiles { workspace: PathBuf },
    /// The repository is there but its trunk ref is gone: starting would
    /// serve a hub that cannot land anything (and once waited out the whole
    /// ready timeout to say only "degraded").
    #[error(
        "hub repository {}: the trunk ref ({TRUNK_REF}) is missing; {}",
        .path.display(),
        match .last_tip {
            Some(tip) => format!("its reflog last recorded {tip}: restore it with `bones hub repair trunk`"),
            None => "no reflog records its tip: restore hub.git from a backup (`bones hub restore DIR --force`)".to_string(),
        }
    )]
    TrunkMissing {
        path: PathBuf,
        last_tip: Option<Oid>,
    },
}

impl Kinded for RepoError {
    fn kind(&self) -> ErrorKind {
        match self {
            RepoError::Git { .. }
            | RepoError::Read { .. }
            | RepoError::Fetch { .. }
            | RepoError::Move { .. } => ErrorKind::Io,
            RepoError::NoFiles { .. } => ErrorKind::Refused,
            RepoError::TrunkNotDirect { .. } | RepoError::TrunkMissing { .. } => ErrorKind::Corrupt,
        }
    }
}

fn git_err(path: &Path) -> impl FnOnce(git2::Error) -> RepoError + '_ {
    move |source| RepoError::Git {
        path: path.to_path_buf(),
        source,
    }
}

/// What a seed produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    /// Trunk's first commit.
    pub commit: String,
    /// The user's commit it descends from (`None` for a workspace without
    /// commits).
    pub base: Option<String>,
    /// Tracked files on trunk.
    pub files: usize,
    /// Files whose working-tree content differed from `HEAD`.
    pub changed: usize,
    /// Tracked files left out: deleted in the working tree, or not
    /// readable as a file or symbolic link.
    pub skipped: Vec<PathBuf>,
}

/// The hub.log line for a seed.
pub fn seeded_message(seeded: &Seeded) -> String {
    format!(
        "hub: seeded trunk {} from {} tracked files ({} differing from HEAD {})",
        &seeded.commit[..7],
        seeded.files,
        seeded.changed,
        seeded.base.as_deref().map_or("(none)", |b| &b[..7]),
    )
}

/// Opens `hub.git`, seeding it from `workspace_root` if it does not exist.
/// Returns what was seeded, or `None` when the repository already existed.
pub fn open_or_seed(hub_repo: &Path, workspace_root: &Path) -> Result<Option<Seeded>, RepoError> {
    open_or_seed_with(hub_repo, workspace_root, Progress::Quiet)
}

/// [`open_or_seed`], showing the progress of a seed slower than
/// [`gitcli::PROGRESS_AFTER`] as `progress` says.
pub fn open_or_seed_with(
    hub_repo: &Path,
    workspace_root: &Path,
    progress: Progress,
) -> Result<Option<Seeded>, RepoError> {
    if hub_repo.join("HEAD").is_file() {
        let repo = Repository::open_bare(hub_repo).map_err(git_err(hub_repo))?;
        check_trunk(&repo, hub_repo)?;
        keep_ref_log(&repo).map_err(git_err(hub_repo))?;
        return Ok(None);
    }
    let tmp = hub_repo.with_extension(format!("git.seeding.{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let result = seed_into(&tmp, workspace_root, progress);
    match result {
        Ok(seeded) => {
            fs::rename(&tmp, hub_repo).map_err(|source| RepoError::Move {
                path: hub_repo.to_path_buf(),
                source,
            })?;
            Ok(Some(seeded))
        }
        Err(err) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(err)
        }
    }
}

fn seed_into(
    target: &Path,
    workspace_root: &Path,
    progress: Progress,
) -> Result<Seeded, RepoError> {
    let started = std::time::Instant::now();
    let source = Repository::open(workspace_root).map_err(git_err(workspace_root))?;
    let repo = Repository::init_bare(target).map_err(git_err(target))?;
    keep_ref_log(&repo).map_err(git_err(target))?;
    // HEAD names trunk before trunk exists, so its reflog has the seed too
    repo.set_head(TRUNK_REF).map_err(git_err(target))?;
    let base = match source.head().ok().and_then(|h| h.target()) {
        Some(_) => Some(fetch_head(&repo, target, workspace_root, progress)?),
        None => None, // no commit yet: trunk starts as a root commit
    };
    // the tree to start from, read in the user's repository (which has it)
    let base_tree = match base {
        Some(id) => Some(
            source
                .find_commit(id)
                .and_then(|c| c.tree())
                .map_err(git_err(workspace_root))?,
        ),
        None => None,
    };
    let mut opts = DiffOptions::new();
    opts.include_typechange(true)
        .ignore_submodules(true)
        .include_untracked(false);
    // compares through the index's stat data, as `git status` does: only
    // files whose size or time changed are read
    let diff = source
        .diff_tree_to_workdir_with_index(base_tree.as_ref(), Some(&mut opts))
        .map_err(git_err(workspace_root))?;

    let baseline = match base {
        Some(id) => repo
            .find_commit(id)
            .and_then(|c| c.tree())
            .map_err(git_err(target))?,
        None => {
            let empty = repo
                .treebuilder(None)
                .and_then(|b| b.write())
                .map_err(git_err(target))?;
            repo.find_tree(empty).map_err(git_err(target))?
        }
    };
    let mut update = git2::build::TreeUpdateBuilder::new();
    let mut changed = 0;
    let mut skipped = Vec::new();
    let total = diff.deltas().len();
    let mut shown = std::time::Instant::now();
    for delta in diff.deltas() {
        if let Progress::Stderr(label) = progress
            && started.elapsed() >= gitcli::PROGRESS_AFTER
            && shown.elapsed() >= std::time::Duration::from_secs(1)
        {
            eprintln!("{label}: seed: {changed}/{total} changed working-tree files read");
            shown = std::time::Instant::now();
        }
        let Some(rel) = delta.new_file().path().or(delta.old_file().path()) else {
            continue;
        };
        let rel = rel.to_path_buf();
        if delta.status() == Delta::Deleted {
            // tracked but deleted in the working tree: once aborted every start (Go #302)
            update.remove(&rel);
            skipped.push(rel);
            changed += 1;
            continue;
        }
        let abs = workspace_root.join(&rel);
        match working_entry(&repo, &abs).map_err(git_err(target))? {
            Some((blob, mode)) => {
                update.upsert(&rel, blob, mode);
            }
            None => {
                update.remove(&rel);
                skipped.push(rel);
            }
        }
        changed += 1;
    }
    let tree_id = update
        .create_updated(&repo, &baseline)
        .map_err(git_err(target))?;
    let tree = repo.find_tree(tree_id).map_err(git_err(target))?;
    let files = count_files(&tree).map_err(git_err(target))?;
    if files == 0 {
        return Err(RepoError::NoFiles {
            workspace: workspace_root.to_path_buf(),
        });
    }
    let commit = match base {
        Some(base) if tree_id == baseline.id() => base,
        _ => {
            let parent = match base {
                Some(id) => Some(repo.find_commit(id).map_err(git_err(target))?),
                None => None,
            };
            let short = base
                .map(|b| b.to_string()[..7].to_string())
                .unwrap_or_else(|| "uncommitted".to_string());
            let who =
                Signature::now(SEED_AUTHOR, "orchestrator@bones.local").map_err(git_err(target))?;
            let message = format!(
                "session base: {short}\n\nThe workspace's tracked files as they were when the hub first started,\nuncommitted changes included.\n"
            );
            repo.commit(
                None,
                &who,
                &who,
                &message,
                &tree,
                &parent.iter().collect::<Vec<_>>(),
            )
            .map_err(git_err(target))?
        }
    };
    repo.reference(TRUNK_REF, commit, true, "bones: seed")
        .and_then(|_| repo.reference(SEED_REF, commit, true, "bones: seed"))
        .map_err(git_err(target))?;
    Ok(Seeded {
        commit: commit.to_string(),
        base: base.map(|b| b.to_string()),
        files,
        changed,
        skipped,
    })
}

/// Fetches the history of the workspace's `HEAD` into `repo` as
/// [`BASE_REF`] and returns the commit.
fn fetch_head(
    repo: &Repository,
    target: &Path,
    workspace_root: &Path,
    progress: Progress,
) -> Result<Oid, RepoError> {
    gitcli::fetch(
        target,
        workspace_root,
        &[&format!("+HEAD:{BASE_REF}")],
        progress,
    )
    .map_err(|source| RepoError::Fetch {
        path: workspace_root.to_path_buf(),
        source,
    })?;
    repo.refname_to_id(BASE_REF).map_err(git_err(target))
}

/// The blob and mode of a working-tree path, written into `repo`; `None`
/// when it is neither a file nor a symbolic link (or vanished).
fn working_entry(
    repo: &Repository,
    abs: &Path,
) -> Result<Option<(Oid, git2::FileMode)>, git2::Error> {
    let meta = match fs::symlink_metadata(abs) {
        Ok(meta) => meta,
        Err(_) => return Ok(None),
    };
    if meta.file_type().is_symlink() {
        let Ok(target) = fs::read_link(abs) else {
            return Ok(None);
        };
        let bytes = target.as_os_str().as_encoded_bytes();
        return Ok(Some((repo.blob(bytes)?, git2::FileMode::Link)));
    }
    if !meta.file_type().is_file() {
        return Ok(None);
    }
    let Ok(content) = fs::read(abs) else {
        return Ok(None);
    };
    let executable = meta.permissions().mode() & 0o111 != 0;
    Ok(Some((
        repo.blob(&content)?,
        if executable {
            git2::FileMode::BlobExecutable
        } else {
            git2::FileMode::Blob
        },
    )))
}

/// Files (blobs) in a tree, recursively.
fn count_files(tree: &git2::Tree) -> Result<usize, git2::Error> {
    let mut files = 0;
    tree.walk(git2::TreeWalkMode::PreOrder, |_, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob) {
            files += 1;
        }
        git2::TreeWalkResult::Ok
    })?;
    Ok(files)
}

/// Removes `trunk.lock` left by a hub killed mid-update. Only the hub
/// writes trunk, and this runs before it serves, so the lock is stale.
pub fn clear_stale_trunk_lock(hub_repo: &Path) {
    let _ = crate::sys::fsutil::remove_if_exists(&hub_repo.join(format!("{TRUNK_REF}.lock")));
}

/// Creates the 256 directories loose objects go in (`objects/00` to
/// `objects/ff`) that are missing, so that writing an object never has to
/// make one: a directory is an inode allocation, which on a journal-less
/// ext4 with many recent deletions was the costliest step of a landing in
/// a young repository. Best effort; git makes any that are still missing.
pub fn make_object_dirs(hub_repo: &Path) {
    let objects = hub_repo.join("objects");
    let present: std::collections::HashSet<_> = match fs::read_dir(&objects) {
        Ok(entries) => entries.flatten().map(|e| e.file_name()).collect(),
        Err(_) => return,
    };
    for byte in 0..=255u8 {
        let name = format!("{byte:02x}");
        if !present.contains(std::ffi::OsStr::new(&name)) {
            let _ = fs::create_dir(objects.join(name));
        }
    }
}

/// Makes git log every move of trunk in `hub.git`: bare repositories do
/// not by default, and a deleted `trunk` ref then left no trace of its tip.
/// With `core.logAllRefUpdates=true` each landing appends one line to
/// `logs/refs/heads/trunk` and one to `logs/HEAD` (HEAD names trunk); the
/// latter survives `git update-ref -d`/`git branch -D` of trunk, and both
/// keep the commits reachable for `git gc` and `git fsck`. An `O_APPEND`
/// write per landing, without a flush: the ref update it follows costs more.
fn keep_ref_log(repo: &Repository) -> Result<(), git2::Error> {
    let mut config = repo.config()?;
    if config.get_bool("core.logAllRefUpdates").ok() != Some(true) {
        config.set_bool("core.logAllRefUpdates", true)?;
    }
    Ok(())
}

/// Fails with [`RepoError::TrunkMissing`] when trunk does not resolve.
fn check_trunk(repo: &Repository, hub_repo: &Path) -> Result<(), RepoError> {
    match repo.refname_to_id(TRUNK_REF) {
        Ok(_) => Ok(()),
        Err(err) if err.code() == git2::ErrorCode::NotFound => Err(RepoError::TrunkMissing {
            path: hub_repo.to_path_buf(),
            last_tip: recorded_trunk_tip(repo),
        }),
        Err(err) => Err(git_err(hub_repo)(err)),
    }
}

/// Fails with [`RepoError::TrunkMissing`] when an existing hub repository
/// has lost its trunk ref; `Ok` when there is no repository yet (the start
/// seeds one) or trunk resolves. Read-only.
pub fn require_trunk(hub_repo: &Path) -> Result<(), RepoError> {
    if !hub_repo.join("HEAD").is_file() {
        return Ok(());
    }
    let repo = Repository::open_bare(hub_repo).map_err(git_err(hub_repo))?;
    check_trunk(&repo, hub_repo)
}

/// The newest tip of trunk the reflogs record whose commit is still in the
/// repository: trunk's own reflog first (kept when only the ref file was
/// removed), then HEAD's (kept when git deleted the ref and its reflog).
/// Deletions are logged as a move to the zero id and are passed over.
pub fn recorded_trunk_tip(repo: &Repository) -> Option<Oid> {
    [TRUNK_REF, "HEAD"].into_iter().find_map(|name| {
        let reflog = repo.reflog(name).ok()?;
        // entry 0 is the newest
        reflog
            .iter()
            .map(|entry| entry.id_new())
            .find(|id| !id.is_zero() && repo.find_commit(*id).is_ok())
    })
}

/// What [`restore_trunk`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkRestore {
    /// Trunk resolves already: nothing was changed.
    Present(Oid),
    /// Trunk was missing and now points at this commit again.
    Restored(Oid),
}

/// Puts a missing trunk ref back at the tip its reflog recorded. Never
/// moves an existing trunk: the ref is created only if it is still absent.
pub fn restore_trunk(hub_repo: &Path) -> Result<TrunkRestore, RepoError> {
    let repo = Repository::open_bare(hub_repo).map_err(git_err(hub_repo))?;
    if let Ok(tip) = repo.refname_to_id(TRUNK_REF) {
        return Ok(TrunkRestore::Present(tip));
    }
    let Some(tip) = recorded_trunk_tip(&repo) else {
        return Err(RepoError::TrunkMissing {
            path: hub_repo.to_path_buf(),
            last_tip: None,
        });
    };
    keep_ref_log(&repo).map_err(git_err(hub_repo))?;
    repo.reference(
        TRUNK_REF,
        tip,
        false,
        "bones: restore trunk from its reflog",
    )
    .map_err(git_err(hub_repo))?;
    if repo.head().is_err() {
        repo.set_head(TRUNK_REF).map_err(git_err(hub_repo))?;
    }
    Ok(TrunkRestore::Restored(tip))
}

/// The trunk tip of an existing hub repository.
pub fn trunk_tip(hub_repo: &Path) -> Result<String, RepoError> {
    let repo = Repository::open_bare(hub_repo).map_err(git_err(hub_repo))?;
    check_trunk(&repo, hub_repo)?;
    let reference = repo.find_reference(TRUNK_REF).map_err(git_err(hub_repo))?;
    let oid = reference
        .target()
        .ok_or_else(|| RepoError::TrunkNotDirect {
            path: hub_repo.to_path_buf(),
        })?;
    Ok(oid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }

    fn head(dir: &Path) -> Oid {
        Repository::open(dir)
            .unwrap()
            .head()
            .unwrap()
            .target()
            .unwrap()
    }

    #[test]
    fn seeds_working_tree_content_on_top_of_head_and_keeps_exec_bit() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        fs::create_dir_all(ws.join("src")).unwrap();
        fs::write(ws.join("README.md"), "committed\n").unwrap();
        fs::write(ws.join("src/run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(ws.join("src/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(ws.join("gone.txt"), "x").unwrap();
        git(&ws, &["init", "-q"]);
        git(&ws, &["add", "."]);
        git(&ws, &["commit", "-qm", "init"]);
        fs::remove_file(ws.join("gone.txt")).unwrap();
        fs::write(ws.join("README.md"), "edited in the working tree\n").unwrap();

        let hub = tmp.path().join("hub.git");
        let seeded = open_or_seed(&hub, &ws).unwrap().expect("seeded");
        assert_eq!(seeded.files, 2);
        assert_eq!(seeded.skipped, vec![PathBuf::from("gone.txt")]);
        assert_eq!(seeded.base, Some(head(&ws).to_string()));

        let repo = Repository::open_bare(&hub).unwrap();
        let commit = repo
            .find_reference(TRUNK_REF)
            .unwrap()
            .peel_to_commit()
            .unwrap();
        assert!(commit.message().unwrap().starts_with("session base: "));
        assert_eq!(commit.author().name().ok(), Some(SEED_AUTHOR));
        // trunk descends from the user's history
        assert_eq!(commit.parent_ids().collect::<Vec<_>>(), vec![head(&ws)]);
        assert_eq!(repo.refname_to_id(SEED_REF).unwrap(), commit.id());
        let tree = commit.tree().unwrap();
        let readme = tree.get_path(Path::new("README.md")).unwrap();
        let blob = repo.find_blob(readme.id()).unwrap();
        assert_eq!(blob.content(), b"edited in the working tree\n");
        assert_eq!(
            tree.get_path(Path::new("src/run.sh")).unwrap().filemode(),
            0o100755
        );
        assert_eq!(trunk_tip(&hub).unwrap(), commit.id().to_string());

        // a second open never reseeds
        assert!(open_or_seed(&hub, &ws).unwrap().is_none());
        assert_eq!(trunk_tip(&hub).unwrap(), commit.id().to_string());
    }

    #[test]
    fn a_deleted_trunk_is_named_and_restored_from_the_reflog() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        fs::create_dir_all(&ws).unwrap();
        fs::write(ws.join("a.txt"), "a\n").unwrap();
        git(&ws, &["init", "-q"]);
        git(&ws, &["add", "."]);
        git(&ws, &["commit", "-qm", "init"]);
        let hub = tmp.path().join("hub.git");
        let seed = open_or_seed(&hub, &ws).unwrap().unwrap().commit;
        // a landing moves trunk through libgit2, as the lander does
        let repo = Repository::open_bare(&hub).unwrap();
        let seed = repo.find_commit(Oid::from_str(&seed).unwrap()).unwrap();
        let who = Signature::now("t", "t@t").unwrap();
        let next = repo
            .commit(None, &who, &who, "next", &seed.tree().unwrap(), &[&seed])
            .unwrap();
        repo.reference_matching(TRUNK_REF, next, true, seed.id(), "land")
            .unwrap();
        // git deletes the ref and its own reflog; HEAD's reflog stays
        git(&hub, &["update-ref", "-d", TRUNK_REF]);
        assert!(!hub.join("logs/refs/heads/trunk").exists());

        let err = require_trunk(&hub).unwrap_err();
        assert!(
            matches!(err, RepoError::TrunkMissing { last_tip: Some(tip), .. } if tip == next),
            "{err}"
        );
        assert!(err.to_string().contains("bones hub repair trunk"), "{err}");
        assert!(open_or_seed(&hub, &ws).is_err());
        assert!(trunk_tip(&hub).unwrap_err().to_string().contains("missing"));

        assert_eq!(restore_trunk(&hub).unwrap(), TrunkRestore::Restored(next));
        assert_eq!(trunk_tip(&hub).unwrap(), next.to_string());
        // a second repair changes nothing
        assert_eq!(restore_trunk(&hub).unwrap(), TrunkRestore::Present(next));
        require_trunk(&hub).unwrap();
    }

    #[test]
    fn without_a_record_the_error_says_to_restore_a_backup() {
        let tmp = tempfile::tempdir().unwrap();
        let hub = tmp.path().join("hub.git");
        let repo = Repository::init_bare(&hub).unwrap();
        repo.set_head(TRUNK_REF).unwrap();
        let err = restore_trunk(&hub).unwrap_err();
        assert!(
            matches!(err, RepoError::TrunkMissing { last_tip: None, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("bones hub restore"), "{err}");
    }

    #[test]
    fn a_clean_working_tree_starts_trunk_at_head() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        fs::create_dir_all(&ws).unwrap();
        fs::write(ws.join("a.txt"), "a\n").unwrap();
        fs::write(ws.join("untracked.txt"), "not seeded\n").unwrap();
        git(&ws, &["init", "-q"]);
        git(&ws, &["add", "a.txt"]);
        git(&ws, &["commit", "-qm", "one"]);
        fs::write(ws.join("a.txt"), "a2\n").unwrap();
        git(&ws, &["commit", "-qam", "two"]);

        let hub = tmp.path().join("hub.git");
        let seeded = open_or_seed(&hub, &ws).unwrap().expect("seeded");
        assert_eq!(seeded.commit, head(&ws).to_string());
        assert_eq!(seeded.changed, 0);
        assert_eq!(trunk_tip(&hub).unwrap(), head(&ws).to_string());
        let repo = Repository::open_bare(&hub).unwrap();
        let tip = repo.find_commit(head(&ws)).unwrap();
        assert_eq!(tip.parent(0).unwrap().summary(), Ok(Some("one")));
        assert!(
            tip.tree()
                .unwrap()
                .get_path(Path::new("untracked.txt"))
                .is_err()
        );
    }

    #[test]
    fn a_workspace_without_commits_seeds_a_root_commit_of_its_index() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        fs::create_dir_all(&ws).unwrap();
        fs::write(ws.join("staged.txt"), "staged\n").unwrap();
        fs::write(ws.join("untracked.txt"), "not seeded\n").unwrap();
        git(&ws, &["init", "-q"]);
        git(&ws, &["add", "staged.txt"]);

        let hub = tmp.path().join("hub.git");
        let seeded = open_or_seed(&hub, &ws).unwrap().expect("seeded");
        assert_eq!((seeded.files, seeded.base), (1, None));
        let repo = Repository::open_bare(&hub).unwrap();
        let commit = repo
            .find_commit(Oid::from_str(&seeded.commit).unwrap())
            .unwrap();
        assert_eq!(commit.parent_count(), 0);
        let tree = commit.tree().unwrap();
        assert_eq!(tree.len(), 1);
        assert!(tree.get_name("staged.txt").is_some());
    }
}
