//! Small filesystem helpers shared by every module that writes state.
//!
//! State files are written atomically (temp file + rename) so a crash never
//! leaves a half-written pid or URL file behind, and with owner-only modes so
//! other users on a shared machine cannot read tokens or tamper with state.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every state file bones writes: owner only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of every state directory bones makes: owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and parents) with mode 0700, tightening an existing one.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)?;
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o777 != PRIVATE_DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE))?;
    }
    Ok(())
}

/// Writes `contents` to `path` atomically with mode 0600.
///
/// The temp file lives next to the target so the rename never crosses a
/// filesystem; its name carries the pid so concurrent writers never share one.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic(path, contents, true)
}

/// Like [`write_private`], but skips the write when the file already holds
/// `contents` with mode 0600: a restart that changes nothing costs no disk
/// flush.
pub fn write_private_if_changed(path: &Path, contents: &[u8]) -> io::Result<()> {
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o777 == PRIVATE_FILE_MODE
        && meta.len() == contents.len() as u64
        && fs::read(path).is_ok_and(|old| old == contents)
    {
        return Ok(());
    }
    write_private(path, contents)
}

/// Like [`write_private`] without the flush to disk: for records of a
/// running process (pid files), which a machine crash makes stale anyway and
/// which every reader validates. A process crash still leaves the old or
/// the new content, never half.
pub fn write_ephemeral(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic(path, contents, false)
}

fn write_atomic(path: &Path, contents: &[u8], sync: bool) -> io::Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&tmp)?;
        file.write_all(contents)?;
        if sync {
            file.sync_all()?;
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a small text file and trims it; `None` when it does not exist.
pub fn read_trimmed(path: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_string())),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// True for a file someone may execute: what a `PATH` search looks for.
pub fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Removes a file, treating "already gone" as success.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_and_dirs_have_owner_only_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let file = dir.join("token");
        write_private(&file, b"secret\n").unwrap();
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_trimmed(&file).unwrap().as_deref(), Some("secret"));
        assert_eq!(read_trimmed(&dir.join("missing")).unwrap(), None);
        // no temp files are left behind
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
    }
}
