//! Small filesystem helpers shared by every module that writes state.
//!
//! State files are written atomically (temp file + rename) so a crash never
//! leaves a half-written pid or URL file behind, and with owner-only modes so
//! other users on a shared machine cannot read tokens or tamper with state.
//! They are never opened through a symbolic link ([`open_state`]): a link
//! planted at a state file's name (a repository that ships
//! `.bones/nats.log -> ~/.bashrc`, say) would otherwise have bones write
//! wherever it points.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every state file bones writes: owner only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of every state directory bones makes: owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Why a state file was not opened: its name is a symbolic link.
#[derive(Debug, thiserror::Error)]
#[error("it is a symbolic link, and bones never opens a state file through one; remove the link")]
pub struct LinkRefused {
    #[source]
    source: io::Error,
}

/// Opens the state file `path` with `options`, refusing a symbolic link
/// at `path` itself (`O_NOFOLLOW`) with a [`LinkRefused`] error. Every
/// state file bones writes or reads back is opened here.
pub fn open_state(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    options
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|err| {
            let is_link = err.raw_os_error() == Some(nix::libc::ELOOP)
                && fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            if is_link {
                io::Error::other(LinkRefused { source: err })
            } else {
                err
            }
        })
}

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

/// The user state must belong to: the effective uid.
fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The owner of `meta` when it is not the user. The first half of the one
/// rule state is judged by (decision 11): whoever owns a state file or
/// directory can change what the hub runs and read what it keeps, whatever
/// its mode says.
pub fn foreign_owner(meta: &fs::Metadata) -> Option<u32> {
    (meta.uid() != me()).then_some(meta.uid())
}

/// The permission bits of `meta` when they give group or others any
/// access: the second half of the rule.
pub fn loose_mode(meta: &fs::Metadata) -> Option<u32> {
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// A state path bones refuses to use: it breaks [`foreign_owner`] or
/// [`loose_mode`]. Checked by `bones up` and `hub start` before they read
/// or write anything in the state directory; `bones doctor` reports the
/// same rule.
///
/// Paths are shown with control characters escaped: `BONES_DIR` is input.
#[derive(Debug, thiserror::Error)]
pub enum NotPrivate {
    #[error(
        "refusing the {what} {shown}: it belongs to uid {owner}, not to you (uid {me}), so that user may have planted or can change what is in it. {fix}"
    )]
    Owner {
        what: &'static str,
        path: PathBuf,
        shown: String,
        owner: u32,
        me: u32,
        fix: &'static str,
    },
    #[error(
        "refusing the {what} {shown}: its mode {mode:03o} gives other users access. Make it owner-only with `chmod {want:o} {quoted}` and run the command again"
    )]
    Mode {
        what: &'static str,
        path: PathBuf,
        shown: String,
        quoted: String,
        mode: u32,
        want: u32,
    },
    #[error("cannot check the {what} {shown}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        shown: String,
        #[source]
        source: io::Error,
    },
}

/// What a state path is, for [`check_private`]'s errors.
#[derive(Debug, Clone, Copy)]
pub struct StatePath {
    /// `state directory`, `coordination token`...
    pub what: &'static str,
    pub dir: bool,
    /// What to do about a path another user owns.
    pub fix_foreign: &'static str,
}

/// Refuses `path` when another user owns it or it gives group or others
/// access. A path that does not exist passes: bones makes it owner-only.
pub fn check_private(path: &Path, kind: StatePath) -> Result<(), NotPrivate> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(NotPrivate::Io {
                what: kind.what,
                path: path.to_path_buf(),
                shown: shown_path(path),
                source,
            });
        }
    };
    if let Some(owner) = foreign_owner(&meta) {
        return Err(NotPrivate::Owner {
            what: kind.what,
            path: path.to_path_buf(),
            shown: shown_path(path),
            owner,
            me: me(),
            fix: kind.fix_foreign,
        });
    }
    if let Some(mode) = loose_mode(&meta) {
        return Err(NotPrivate::Mode {
            what: kind.what,
            path: path.to_path_buf(),
            shown: shown_path(path),
            quoted: crate::sys::shown::plain(&shell_word(path)).into_owned(),
            mode,
            want: if kind.dir {
                PRIVATE_DIR_MODE
            } else {
                PRIVATE_FILE_MODE
            },
        });
    }
    Ok(())
}

/// `path` as it is safe to print: control characters escaped.
fn shown_path(path: &Path) -> String {
    crate::sys::shown::plain(&path.to_string_lossy()).into_owned()
}

/// `path` as one shell word, so a printed fix can be pasted as it is.
pub fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@,=%".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Writes `contents` to `path` atomically and durably, with mode 0600.
///
/// The contents go to a temp file next to the target (so the rename never
/// crosses a filesystem), which is flushed to disk, renamed over `path`, and
/// then the directory is flushed too: without that last step a machine crash
/// can lose the rename and bring back the old file, or none. The temp name is
/// unique to the write ([`temp_name`]), so two threads or processes writing
/// the same file never share one; the last rename wins, whole.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic(path, contents, true)
}

/// Like [`write_private`], but skips the write when the file already holds
/// `contents` with mode 0600: a restart that changes nothing costs no disk
/// flush.
pub fn write_private_if_changed(path: &Path, contents: &[u8]) -> io::Result<()> {
    // a link is replaced, never kept for holding the same bytes; a file
    // another user owns is rewritten as ours
    if let Ok(meta) = fs::symlink_metadata(path)
        && meta.is_file()
        && foreign_owner(&meta).is_none()
        && meta.permissions().mode() & 0o777 == PRIVATE_FILE_MODE
        && meta.len() == contents.len() as u64
        && read_small(path).is_ok_and(|old| old.as_deref() == Some(contents))
    {
        return Ok(());
    }
    write_private(path, contents)
}

/// Like [`write_private`] without the flushes to disk: for records of a
/// running process (pid files), which a machine crash makes stale anyway and
/// which every reader validates. A process crash still leaves the old or
/// the new content, never half, and concurrent writers still never share a
/// temp file.
pub fn write_ephemeral(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic(path, contents, false)
}

/// The temp file one write of `path` goes through: `.NAME.tmp.PID.N`, with
/// `N` counted per process. The pid keeps processes apart and the counter
/// keeps the threads of one process apart, so a name is never in use by
/// another live write; whatever sits at it was left by a crashed process
/// that had this pid, and is removed.
fn temp_name(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{file_name}.tmp.{}.{n}", std::process::id()))
}

fn write_atomic(path: &Path, contents: &[u8], sync: bool) -> io::Result<()> {
    write_through(path, &temp_name(path), contents, sync)
}

fn write_through(path: &Path, tmp: &Path, contents: &[u8], sync: bool) -> io::Result<()> {
    // the rename replaces a link at `path` rather than writing through it;
    // the temp file is made anew (`create_new` refuses a link planted at
    // its name, and what a crashed process with this pid left is removed)
    remove_if_exists(tmp)?;
    let result = (|| {
        let mut file = open_state(
            tmp,
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(PRIVATE_FILE_MODE),
        )?;
        file.write_all(contents)?;
        if sync {
            file.sync_all()?;
        }
        fs::rename(tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
        return result;
    }
    if sync {
        sync_parent(path)?;
    }
    Ok(())
}

/// Flushes the directory holding `path` to disk, so a rename into it
/// survives a machine crash.
fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Largest state file [`read_trimmed`] reads: pid, URL, token and marker
/// files are a line each.
pub const MAX_SMALL_FILE: u64 = 64 * 1024;

/// Reads a small state file whole; `None` when it does not exist.
///
/// Reads at most [`MAX_SMALL_FILE`] bytes, and never through a link
/// ([`open_state`]): a state file replaced by something huge (or by a link
/// to `/dev/zero`) is an error instead of exhausting memory.
pub fn read_small(path: &Path) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = match open_state(path, OpenOptions::new().read(true)) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut bytes = Vec::new();
    file.take(MAX_SMALL_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SMALL_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_SMALL_FILE} bytes; not a bones state file"),
        ));
    }
    Ok(Some(bytes))
}

/// Reads a small text file and trims it; `None` when it does not exist.
/// Bounded and never through a link, as [`read_small`]; text that is not
/// UTF-8 is an `InvalidData` error.
pub fn read_trimmed(path: &Path) -> io::Result<Option<String>> {
    let Some(bytes) = read_small(path)? else {
        return Ok(None);
    };
    let text = String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))?;
    Ok(Some(text.trim().to_string()))
}

/// Removes group and other access from `dir` and everything under it (not
/// following links), when `dir` itself gives any: state written before the
/// hub ran with umask 077 (see [`restrict_umask`]) is brought in line at the
/// next start, and a tree already private costs one `stat`.
pub fn make_owner_only(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {}
        Ok(_) => return Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o700))?;
        }
        if meta.is_dir() {
            for entry in fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// Sets the process umask to 077, so every file and directory this
/// process creates without an explicit mode (git objects and worktrees
/// written by libgit2, the coordination server's store, which inherits the
/// umask) is owner-only like the state files written here. Called by the
/// processes that write state: the hub and the slot and task verbs; not by
/// `bones up` or `bones apply`, which write into the user's repository.
pub fn restrict_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
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

    #[test]
    fn a_tree_made_owner_only_keeps_the_owner_bits() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("hub.git");
        fs::create_dir_all(top.join("objects/ab")).unwrap();
        fs::write(top.join("objects/ab/cd"), "x").unwrap();
        fs::write(top.join("hook"), "#!/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", top.join("link")).unwrap();
        for (path, mode) in [
            (top.clone(), 0o755),
            (top.join("objects"), 0o775),
            (top.join("objects/ab"), 0o755),
            (top.join("objects/ab/cd"), 0o444),
            (top.join("hook"), 0o755),
        ] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        let etc_passwd = fs::metadata("/etc/passwd").unwrap().permissions().mode();
        make_owner_only(&top).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&top), 0o700);
        assert_eq!(mode(&top.join("objects")), 0o700);
        assert_eq!(mode(&top.join("objects/ab/cd")), 0o400);
        assert_eq!(mode(&top.join("hook")), 0o700);
        // links are not followed
        assert_eq!(
            fs::metadata("/etc/passwd").unwrap().permissions().mode(),
            etc_passwd
        );
        make_owner_only(&tmp.path().join("missing")).unwrap();
    }

    #[test]
    fn small_files_are_read_within_a_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let big = tmp.path().join("big");
        fs::write(&big, vec![b'1'; MAX_SMALL_FILE as usize + 1]).unwrap();
        let err = read_trimmed(&big).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let binary = tmp.path().join("binary");
        fs::write(&binary, [0xff, 0xfe, b'\n']).unwrap();
        assert_eq!(
            read_trimmed(&binary).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let zero = tmp.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = read_trimmed(&zero).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn state_files_are_never_written_or_read_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::write(&outside, "precious\n").unwrap();
        let state = tmp.path().join("state");
        ensure_private_dir(&state).unwrap();
        // at the name itself: replaced by the rename, never written through
        let url = state.join("hub-repo-url");
        std::os::unix::fs::symlink(&outside, &url).unwrap();
        write_private(&url, b"http://127.0.0.1:1\n").unwrap();
        assert!(!fs::symlink_metadata(&url).unwrap().file_type().is_symlink());
        // at the temp file's predictable name
        let pid = state.join("hub.pid");
        let tmp_name = temp_name(&pid);
        std::os::unix::fs::symlink(&outside, &tmp_name).unwrap();
        write_through(&pid, &tmp_name, b"1\n", false).unwrap();
        assert_eq!(read_trimmed(&pid).unwrap().as_deref(), Some("1"));
        assert_eq!(fs::read_to_string(&outside).unwrap(), "precious\n");
        // a link with the same bytes as the new content is replaced too
        let same = state.join("same");
        fs::write(tmp.path().join("same-target"), "x").unwrap();
        fs::set_permissions(
            tmp.path().join("same-target"),
            fs::Permissions::from_mode(PRIVATE_FILE_MODE),
        )
        .unwrap();
        std::os::unix::fs::symlink(tmp.path().join("same-target"), &same).unwrap();
        write_private_if_changed(&same, b"x").unwrap();
        assert!(
            !fs::symlink_metadata(&same)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // appending and reading refuse a link, naming the fix
        let log = state.join("nats.log");
        std::os::unix::fs::symlink(&outside, &log).unwrap();
        let err = open_state(&log, OpenOptions::new().append(true).create(true)).unwrap_err();
        assert!(err.to_string().contains("remove the link"), "{err}");
        assert!(read_trimmed(&log).is_err());
        assert_eq!(fs::read_to_string(&outside).unwrap(), "precious\n");
    }

    /// Many threads replacing one file at once: each write has its own temp
    /// file, so every rename moves a whole content into place and none is
    /// left behind. With one temp name per process, the threads truncated
    /// and renamed each other's files (a write failing with "not found", or
    /// a file mixing two contents).
    #[test]
    fn concurrent_writers_of_one_file_leave_one_whole_content() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hub-repo-url");
        let contents: Vec<Vec<u8>> = (0..16u8).map(|i| vec![b'a' + i; 64 * 1024]).collect();
        let barrier = std::sync::Barrier::new(contents.len());
        std::thread::scope(|scope| {
            let writers: Vec<_> = contents
                .iter()
                .enumerate()
                .map(|(i, content)| {
                    let (path, barrier) = (&path, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        for _ in 0..20 {
                            if i % 2 == 0 {
                                write_private(path, content)?;
                            } else {
                                write_ephemeral(path, content)?;
                            }
                        }
                        io::Result::Ok(())
                    })
                })
                .collect();
            for writer in writers {
                writer.join().unwrap().unwrap();
            }
        });
        let written = fs::read(&path).unwrap();
        assert!(
            contents.contains(&written),
            "the file holds no one write whole ({} bytes)",
            written.len()
        );
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["hub-repo-url"], "temp files were left behind");
    }
}
