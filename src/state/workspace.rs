//! Workspace discovery: which directory is the workspace root, and where its
//! state directory lives.
//!
//! The marker is `.bones/agent.id`, not just `.bones/`, so that a global
//! `~/.bones` is never mistaken for a workspace. Every verb walks up from the
//! current directory to the nearest marker, so running a verb from a
//! subdirectory never creates a second hub. `BONES_DIR` relocates the state
//! directory; the workspace root is then recorded in `<BONES_DIR>/root`.
//!
//! A `BONES_DIR` that names no workspace is an error, never a reason to walk
//! up instead: `BONES_DIR=/typo bones hub stop` once stopped the hub of the
//! directory the user stood in. Only `bones up` may create it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::sys::fsutil;

/// Name of the state directory inside a workspace root.
pub const STATE_DIR_NAME: &str = ".bones";
/// The marker file whose presence makes a directory a workspace.
pub const MARKER: &str = "agent.id";
/// Environment variable that relocates the state directory.
pub const BONES_DIR_ENV: &str = "BONES_DIR";
/// Bound on the walk-up, so a pathological tree cannot loop for long.
const MAX_WALK_UP: usize = 64;

/// A discovered workspace: the repository root and its state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The user's repository root (the directory that holds the code).
    pub root: PathBuf,
    /// Where bones keeps its state (`<root>/.bones` or `$BONES_DIR`).
    pub state_dir: PathBuf,
}

/// Why a workspace could not be found or created.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error(
        "no bones workspace found in {start} or any parent; run `bones up` in your repository first"
    )]
    NotFound { start: PathBuf },
    #[error(
        "BONES_DIR is set to {}, which {why}; fix or unset BONES_DIR",
        crate::sys::shown::shown(&.path.to_string_lossy())
    )]
    BadBonesDir { path: PathBuf, why: &'static str },
    #[error(transparent)]
    NotPrivate(#[from] fsutil::NotPrivate),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl crate::sys::error::Kinded for WorkspaceError {
    fn kind(&self) -> crate::sys::error::ErrorKind {
        use crate::sys::error::ErrorKind;
        match self {
            WorkspaceError::NotFound { .. } => ErrorKind::NotFound,
            WorkspaceError::BadBonesDir { .. } | WorkspaceError::NotPrivate(_) => {
                ErrorKind::Refused
            }
            WorkspaceError::Io { .. } => ErrorKind::Io,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WorkspaceError + '_ {
    move |source| WorkspaceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `$BONES_DIR` made absolute, when set and not empty.
fn bones_dir_override() -> Option<PathBuf> {
    let raw = std::env::var_os(BONES_DIR_ENV).filter(|v| !v.is_empty())?;
    let path = PathBuf::from(raw);
    Some(if path.is_absolute() {
        path
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(&path))
            .unwrap_or(path)
    })
}

/// How the state directory is judged before `bones up` and `hub start`
/// use it (see [`fsutil::check_private`]).
pub const STATE_DIR: fsutil::StatePath = fsutil::StatePath {
    what: "state directory",
    dir: true,
    fix_foreign: "Use a state directory of your own: unset BONES_DIR, or point it at a new path, and run `bones up`",
};

/// Why `state_dir` (from `BONES_DIR`) is not a workspace, if it is not.
fn bones_dir_problem(state_dir: &Path) -> Option<&'static str> {
    match fs::metadata(state_dir) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            Some("does not exist (`bones up` with it set makes a workspace there)")
        }
        Err(_) => Some("cannot be read"),
        Ok(meta) if !meta.is_dir() => Some("is not a directory"),
        Ok(_) if !state_dir.join(MARKER).is_file() => {
            Some("holds no bones workspace (no agent.id; `bones up` with it set makes one)")
        }
        Ok(_) => None,
    }
}

impl Workspace {
    /// Finds the workspace that contains `start`.
    pub fn discover(start: &Path) -> Result<Workspace, WorkspaceError> {
        Workspace::discover_with(start, bones_dir_override())
    }

    /// Finds the workspace that contains `start` as a process whose
    /// `BONES_DIR` (already made absolute) is `bones_dir` would: for telling
    /// which workspace another process works for.
    pub fn discover_with(
        start: &Path,
        bones_dir: Option<PathBuf>,
    ) -> Result<Workspace, WorkspaceError> {
        let start = start.canonicalize().map_err(io_err(start))?;
        if let Some(state_dir) = bones_dir {
            if let Some(why) = bones_dir_problem(&state_dir) {
                return Err(WorkspaceError::BadBonesDir {
                    path: state_dir,
                    why,
                });
            }
            let root = fsutil::read_trimmed(&state_dir.join("root"))
                .map_err(io_err(&state_dir))?
                .map(PathBuf::from)
                .unwrap_or_else(|| start.clone());
            return Ok(Workspace { root, state_dir });
        }
        let mut dir = start.as_path();
        for _ in 0..MAX_WALK_UP {
            let state_dir = dir.join(STATE_DIR_NAME);
            if state_dir.join(MARKER).is_file() {
                return Ok(Workspace {
                    root: dir.to_path_buf(),
                    state_dir,
                });
            }
            match dir.parent() {
                Some(parent) => dir = parent,
                None => break,
            }
        }
        Err(WorkspaceError::NotFound { start })
    }

    /// Finds the workspace containing the current directory.
    pub fn from_cwd() -> Result<Workspace, WorkspaceError> {
        let cwd = std::env::current_dir().map_err(io_err(Path::new(".")))?;
        Workspace::discover(&cwd)
    }

    /// Makes `root` a workspace (idempotent) and returns it with whether it
    /// was newly created. Adds `.bones/` to `.gitignore` when the state
    /// directory lives inside the root and the ignore file lacks it.
    ///
    /// A missing state directory is made (0700, parents too, which is how
    /// `BONES_DIR` names a new one); an existing one must be the user's
    /// own and owner-only ([`STATE_DIR`]), or nothing is written to it.
    pub fn init(root: &Path) -> Result<(Workspace, bool), WorkspaceError> {
        let root = root.canonicalize().map_err(io_err(root))?;
        let state_dir = bones_dir_override().unwrap_or_else(|| root.join(STATE_DIR_NAME));
        match fs::metadata(&state_dir) {
            Ok(meta) if !meta.is_dir() && bones_dir_override().is_some() => {
                return Err(WorkspaceError::BadBonesDir {
                    path: state_dir,
                    why: "is not a directory",
                });
            }
            _ => fsutil::check_private(&state_dir, STATE_DIR)?,
        }
        fsutil::ensure_private_dir(&state_dir).map_err(io_err(&state_dir))?;
        let marker = state_dir.join(MARKER);
        let created = !marker.is_file();
        if created {
            let id = format!("{}\n", uuid::Uuid::new_v4());
            fsutil::write_private(&marker, id.as_bytes()).map_err(io_err(&marker))?;
        }
        let root_file = state_dir.join("root");
        fsutil::write_private(&root_file, format!("{}\n", root.display()).as_bytes())
            .map_err(io_err(&root_file))?;
        if state_dir == root.join(STATE_DIR_NAME) {
            ensure_gitignored(&root)?;
        }
        Ok((Workspace { root, state_dir }, created))
    }

    /// The workspace's agent id (the marker's content).
    pub fn agent_id(&self) -> Result<String, WorkspaceError> {
        let marker = self.state_dir.join(MARKER);
        Ok(fsutil::read_trimmed(&marker)
            .map_err(io_err(&marker))?
            .unwrap_or_default())
    }
}

fn ensure_gitignored(root: &Path) -> Result<(), WorkspaceError> {
    let path = root.join(".gitignore");
    let existing = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(io_err(&path)(err)),
    };
    let already = existing
        .lines()
        .map(str::trim)
        .any(|line| matches!(line, ".bones" | ".bones/" | "/.bones" | "/.bones/"));
    if already {
        return Ok(());
    }
    let mut updated = existing;
    if !updated.is_empty() && !updated.ends_with('\n') {
        updated.push('\n');
    }
    updated.push_str(".bones/\n");
    fs::write(&path, updated).map_err(io_err(&path))
}
