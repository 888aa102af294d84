//! The hub repository: a bare git repository, `hub.git`, with one linear
//! branch, `trunk`, that every slot commits through.
//!
//! It is seeded once, on the first start, with the working-tree content of
//! every git-tracked file, and never wiped afterwards (decision 2): a restart
//! must not lose what agents committed. The seed is built in a temporary
//! directory and renamed into place, so a crash mid-seed leaves no
//! half-made repository for the next start to trip over.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use git2::{IndexEntry, IndexTime, Oid, Repository, Signature};

/// The one branch slots land on.
pub const TRUNK: &str = "trunk";
/// Fully qualified trunk ref.
pub const TRUNK_REF: &str = "refs/heads/trunk";
/// Author and committer of the seed commit.
pub const SEED_AUTHOR: &str = "orchestrator";

/// Why the hub repository could not be opened or seeded.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("hub repository {path}: {message}")]
    Git { path: PathBuf, message: String },
    #[error("seed: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("seed: {0}")]
    Seed(String),
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

fn git_err(path: &Path) -> impl FnOnce(git2::Error) -> RepoError + '_ {
    move |e| RepoError::Git {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    }
}

/// What a seed produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seeded {
    pub commit: String,
    pub files: usize,
    pub skipped: Vec<PathBuf>,
}

/// Opens `hub.git`, seeding it from `workspace_root` if it does not exist.
/// Returns what was seeded, or `None` when the repository already existed.
pub fn open_or_seed(hub_repo: &Path, workspace_root: &Path) -> Result<Option<Seeded>, RepoError> {
    if hub_repo.join("HEAD").is_file() {
        let repo = Repository::open_bare(hub_repo).map_err(git_err(hub_repo))?;
        check_trunk(&repo, hub_repo)?;
        keep_ref_log(&repo).map_err(git_err(hub_repo))?;
        return Ok(None);
    }
    let tmp = hub_repo.with_extension(format!("git.seeding.{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let result = seed_into(&tmp, workspace_root);
    match result {
        Ok(seeded) => {
            fs::rename(&tmp, hub_repo).map_err(|e| {
                RepoError::Seed(format!(
                    "cannot move the new repository into {}: {e}",
                    hub_repo.display()
                ))
            })?;
            Ok(Some(seeded))
        }
        Err(err) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(err)
        }
    }
}

fn seed_into(target: &Path, workspace_root: &Path) -> Result<Seeded, RepoError> {
    let source = Repository::open(workspace_root).map_err(git_err(workspace_root))?;
    let source_index = source.index().map_err(git_err(workspace_root))?;
    let short_head = source
        .head()
        .ok()
        .and_then(|h| h.target())
        .map(|oid| oid.to_string()[..7].to_string())
        .unwrap_or_else(|| "uncommitted".to_string());

    let repo = Repository::init_bare(target).map_err(git_err(target))?;
    keep_ref_log(&repo).map_err(git_err(target))?;
    // HEAD names trunk before trunk exists, so its reflog has the seed too
    repo.set_head(TRUNK_REF).map_err(git_err(target))?;
    let mut index = git2::Index::new().map_err(git_err(target))?;
    let mut files = 0;
    let mut skipped = Vec::new();
    for entry in source_index.iter() {
        let rel = PathBuf::from(String::from_utf8_lossy(&entry.path).into_owned());
        let abs = workspace_root.join(&rel);
        let meta = match fs::symlink_metadata(&abs) {
            Ok(meta) => meta,
            // tracked but deleted in the working tree: once aborted every start (Go #302)
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                skipped.push(rel);
                continue;
            }
            Err(source) => return Err(RepoError::Read { path: abs, source }),
        };
        if !meta.file_type().is_file() {
            skipped.push(rel);
            continue;
        }
        let content = fs::read(&abs).map_err(|source| RepoError::Read {
            path: abs.clone(),
            source,
        })?;
        let oid = repo.blob(&content).map_err(git_err(target))?;
        let executable = meta.permissions().mode() & 0o111 != 0;
        index
            .add(&index_entry(&entry.path, oid, executable, meta.size()))
            .map_err(git_err(target))?;
        files += 1;
    }
    if files == 0 {
        return Err(RepoError::Seed(format!(
            "no git-tracked files in {} could be read; commit at least one regular file",
            workspace_root.display()
        )));
    }
    let tree_id = index.write_tree_to(&repo).map_err(git_err(target))?;
    let tree = repo.find_tree(tree_id).map_err(git_err(target))?;
    let who = Signature::now(SEED_AUTHOR, "orchestrator@bones.local").map_err(git_err(target))?;
    let commit = repo
        .commit(
            Some(TRUNK_REF),
            &who,
            &who,
            &format!("session base: {short_head}"),
            &tree,
            &[],
        )
        .map_err(git_err(target))?;
    Ok(Seeded {
        commit: commit.to_string(),
        files,
        skipped,
    })
}

fn index_entry(path: &[u8], id: Oid, executable: bool, size: u64) -> IndexEntry {
    IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode: if executable { 0o100755 } else { 0o100644 },
        uid: 0,
        gid: 0,
        file_size: size as u32,
        id,
        flags: 0,
        flags_extended: 0,
        path: path.to_vec(),
    }
}

/// Removes `trunk.lock` left by a hub killed mid-update. Only the hub
/// writes trunk, and this runs before it serves, so the lock is stale.
pub fn clear_stale_trunk_lock(hub_repo: &Path) {
    let _ = crate::fsutil::remove_if_exists(&hub_repo.join(format!("{TRUNK_REF}.lock")));
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
    let oid = reference.target().ok_or_else(|| RepoError::Git {
        path: hub_repo.to_path_buf(),
        message: "trunk is not a direct reference".to_string(),
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

    #[test]
    fn seeds_working_tree_content_and_keeps_exec_bit() {
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

        let repo = Repository::open_bare(&hub).unwrap();
        let commit = repo
            .find_reference(TRUNK_REF)
            .unwrap()
            .peel_to_commit()
            .unwrap();
        assert!(commit.message().unwrap().starts_with("session base: "));
        assert_eq!(commit.author().name().ok(), Some(SEED_AUTHOR));
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
}
