//! Planned changes to a project's files: read, edit in memory, show as a
//! unified diff, write atomically.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::json::{self, Json};

impl crate::sys::error::Kinded for IntegrateError {
    fn kind(&self) -> crate::sys::error::ErrorKind {
        use crate::sys::error::ErrorKind;
        match self {
            IntegrateError::Io { .. } => ErrorKind::Io,
            IntegrateError::Unreadable { .. }
            | IntegrateError::Shape { .. }
            | IntegrateError::Markers { .. } => ErrorKind::Refused,
        }
    }
}

/// Largest settings file bones reads, in bytes: far above any real one.
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// Why a project's configuration could not be planned or written. Nothing
/// is written when planning fails.
#[derive(Debug, thiserror::Error)]
pub enum IntegrateError {
    #[error("cannot {what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not valid {format} ({source}); fix it or move it aside, then run `bones integrate` again (nothing was written)", .path.display())]
    Unreadable {
        path: PathBuf,
        format: &'static str,
        #[source]
        source: Unparsed,
    },
    #[error("{}: `{key}` is {found}, where the harness expects {expected}; fix it, then run `bones integrate` again (nothing was written)", .path.display())]
    Shape {
        path: PathBuf,
        key: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("{}: bones' block starts with `{begin}` but has no `{end}` after it; restore or delete the block, then run `bones integrate` again (nothing was written)", .path.display())]
    Markers {
        path: PathBuf,
        begin: &'static str,
        end: &'static str,
    },
}

/// Why a file could not be read as its format.
#[derive(Debug, thiserror::Error)]
pub enum Unparsed {
    #[error("it is larger than {MAX_FILE} bytes")]
    TooLarge,
    #[error("it holds bytes that are not UTF-8")]
    NotUtf8(#[source] std::string::FromUtf8Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Boxed: a TOML error is large, and every plan returns this type.
    #[error("{}", .0.message())]
    Toml(#[source] Box<toml_edit::TomlError>),
}

/// One file of the project: what it holds now and what it will hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: PathBuf,
    /// The path as shown to the user, relative to the project root.
    pub shown: String,
    /// `None` when the file does not exist yet.
    pub before: Option<String>,
    pub after: String,
}

impl Change {
    /// True when writing it would change the file.
    pub fn changed(&self) -> bool {
        self.before.as_deref() != Some(self.after.as_str())
    }

    /// The change as a unified diff (`--- a/FILE`, `+++ b/FILE`; a new
    /// file is diffed against `/dev/null`); empty when nothing changes.
    pub fn diff(&self) -> String {
        if !self.changed() {
            return String::new();
        }
        let old = self.before.as_deref().unwrap_or_default();
        let from = match self.before {
            Some(_) => format!("a/{}", self.shown),
            None => "/dev/null".to_string(),
        };
        similar::TextDiff::from_lines(old, self.after.as_str())
            .unified_diff()
            .context_radius(3)
            .header(&from, &format!("b/{}", self.shown))
            .to_string()
    }

    /// Writes the file when it changes: through a temp file renamed over
    /// it, so a reader never sees half of it; an existing file keeps its
    /// mode, a new one gets 0644 (these files are the project's, usually
    /// committed, not bones' private state).
    pub fn write(&self) -> Result<(), IntegrateError> {
        if !self.changed() {
            return Ok(());
        }
        let io_err = |what, source| IntegrateError::Io {
            what,
            path: self.path.clone(),
            source,
        };
        if let Some(parent) = self.path.parent() {
            fs::create_dir_all(parent).map_err(|e| io_err("make the directory of", e))?;
        }
        let mode = fs::metadata(&self.path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = self
            .path
            .with_file_name(format!(".{name}.bones-{}.tmp", std::process::id()));
        let written = (|| -> io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            file.write_all(self.after.as_bytes())?;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            file.sync_all()?;
            fs::rename(&temp, &self.path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written.map_err(|e| io_err("write", e))
    }
}

/// Reads a project file; `None` when it does not exist.
fn read(path: &Path) -> Result<Option<String>, IntegrateError> {
    let io_err = |source| IntegrateError::Io {
        what: "read",
        path: path.to_path_buf(),
        source,
    };
    match fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_FILE => {
            return Err(IntegrateError::Unreadable {
                path: path.to_path_buf(),
                format: "settings",
                source: Unparsed::TooLarge,
            });
        }
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(io_err(err)),
    }
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| IntegrateError::Unreadable {
                path: path.to_path_buf(),
                format: "UTF-8 text",
                source: Unparsed::NotUtf8(e),
            }),
        Err(err) => Err(io_err(err)),
    }
}

/// Plans an edit of the text file `root/rel` (missing: empty).
pub(super) fn text_file(
    root: &Path,
    rel: &str,
    edit: impl FnOnce(Option<&str>, &Path) -> Result<String, IntegrateError>,
) -> Result<Change, IntegrateError> {
    let path = root.join(rel);
    let before = read(&path)?;
    let after = edit(before.as_deref(), &path)?;
    Ok(Change {
        path,
        shown: rel.to_string(),
        before,
        after,
    })
}

/// Plans an edit of the JSON settings file `root/rel`, whose top level is
/// an object (a missing or blank file is an empty one). When the edit
/// leaves the value as it was, the file keeps its bytes, whatever its
/// formatting. `edit` reports a key whose value has the wrong type as
/// `(key, the type found)`.
pub(super) fn json_file(
    root: &Path,
    rel: &str,
    edit: impl FnOnce(&mut Json) -> Result<(), (String, &'static str)>,
) -> Result<Change, IntegrateError> {
    text_file(root, rel, |before, path| {
        let mut value = match before {
            Some(text) if !text.trim().is_empty() => {
                json::parse(text).map_err(|e| IntegrateError::Unreadable {
                    path: path.to_path_buf(),
                    format: "JSON",
                    source: e.into(),
                })?
            }
            _ => Json::object(),
        };
        if !value.is_object() {
            return Err(IntegrateError::Shape {
                path: path.to_path_buf(),
                key: "(the top level)".to_string(),
                found: value.kind(),
                expected: "an object",
            });
        }
        let original = value.clone();
        edit(&mut value).map_err(|(key, found)| IntegrateError::Shape {
            path: path.to_path_buf(),
            key,
            found,
            expected: "an object or array as documented",
        })?;
        Ok(match before {
            Some(text) if value == original => text.to_string(),
            _ => json::pretty(&value),
        })
    })
}
