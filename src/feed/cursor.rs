//! Where a follower stopped reading, so the next one resumes right after.
//!
//! One file per reader in `.bones/feed.cursor/`: named for the slot or
//! agent (`fix-parser`), with `+<type>` for a follower that shows one type
//! only (`fix-parser+decision`), since entries it passed over are unread
//! for its unfiltered self. The file holds the last sequence shown and the
//! creation time of the stream it belongs to: a stream deleted and made
//! again starts numbering afresh, and a cursor from the old one would
//! silently skip the new entries.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::entry::Kind;
use crate::state::Paths;
use crate::sys::fsutil;
use crate::sys::name;

/// The directory holding every reader's cursor.
pub fn dir(paths: &Paths) -> PathBuf {
    paths.state_dir.join("feed.cursor")
}

/// A reader's place in the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The last sequence shown.
    pub seq: u64,
    /// When the stream was created (RFC 3339), to recognise a new stream.
    pub stream_created: String,
}

impl Position {
    pub fn new(seq: u64, stream_created: OffsetDateTime) -> Position {
        Position {
            seq,
            stream_created: stamp(stream_created),
        }
    }

    /// True when this position belongs to the stream created at `created`.
    pub fn belongs_to(&self, created: OffsetDateTime) -> bool {
        self.stream_created == stamp(created)
    }
}

fn stamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Why a cursor could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    #[error("cannot read the feed cursor {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the feed cursor {0} is not readable; delete it to start from the first entry")]
    Corrupt(PathBuf),
    #[error("cannot save the feed cursor {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One reader's cursor file.
#[derive(Debug, Clone)]
pub struct Cursor {
    path: PathBuf,
}

impl Cursor {
    /// The cursor of reader `who`, following `kind` only if given.
    pub fn of(paths: &Paths, who: &str, kind: Option<Kind>) -> Cursor {
        Cursor {
            path: dir(paths).join(file_name(who, kind)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved position; `None` before the first save.
    pub fn load(&self) -> Result<Option<Position>, CursorError> {
        let text = fsutil::read_trimmed(&self.path).map_err(|source| CursorError::Read {
            path: self.path.clone(),
            source,
        })?;
        match text {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|_| CursorError::Corrupt(self.path.clone())),
        }
    }

    /// Saves a position: atomically (a crash leaves the old or the new
    /// one), 0600 in a 0700 directory, without a flush to disk, since it
    /// is written after every burst a follower shows and a machine crash
    /// only costs showing that burst again.
    pub fn save(&self, position: &Position) -> Result<(), CursorError> {
        let write = |source| CursorError::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(parent) = self.path.parent() {
            fsutil::ensure_private_dir(parent).map_err(write)?;
        }
        let mut text = serde_json::to_vec(position).unwrap_or_default();
        text.push(b'\n');
        fsutil::write_ephemeral(&self.path, &text).map_err(write)
    }
}

/// The file name for a reader: its name when that is safe as one path
/// component, else `id-` and a hash of it (an agent id may hold anything).
fn file_name(who: &str, kind: Option<Kind>) -> String {
    let base = if name::validate_entry_id(who).is_ok() {
        who.to_string()
    } else {
        format!("id-{:016x}", crate::sys::hash::Fnv1a::of(who.as_bytes()))
    };
    match kind {
        Some(kind) => format!("{base}+{kind}"),
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn paths(dir: &Path) -> Paths {
        Paths::new(&crate::state::workspace::Workspace {
            root: dir.to_path_buf(),
            state_dir: dir.join(".bones"),
        })
    }

    #[test]
    fn names_are_one_safe_component_per_reader_and_filter() {
        assert_eq!(file_name("fix-parser", None), "fix-parser");
        assert_eq!(
            file_name("fix-parser", Some(Kind::Decision)),
            "fix-parser+decision"
        );
        for who in ["../../etc/passwd", "a/b", "claude worker 1", "", ".."] {
            let name = file_name(who, None);
            assert!(name.starts_with("id-") && !name.contains('/'), "{who:?}");
        }
        assert_ne!(file_name("a b", None), file_name("a c", None));
    }

    #[test]
    fn a_saved_position_reads_back_private_and_tied_to_its_stream() {
        let tmp = tempfile::tempdir().unwrap();
        let cursor = Cursor::of(&paths(tmp.path()), "agent-1", None);
        assert_eq!(cursor.load().unwrap(), None);
        let created = OffsetDateTime::now_utc();
        let position = Position::new(42, created);
        cursor.save(&position).unwrap();
        let back = cursor.load().unwrap().unwrap();
        assert_eq!(back, position);
        assert!(back.belongs_to(created));
        assert!(!back.belongs_to(created + time::Duration::seconds(1)));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(cursor.path()), 0o600);
        assert_eq!(mode(cursor.path().parent().unwrap()), 0o700);
        std::fs::write(cursor.path(), "garbage").unwrap();
        assert!(matches!(cursor.load(), Err(CursorError::Corrupt(_))));
    }
}
