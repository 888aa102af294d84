//! The operator log, `hub.log`: one JSON [`LogEntry`] per line.
//!
//! Only entries go into this file; child processes write to their own logs
//! (decision 8), so `jq` never meets a stray line. Each entry is written with
//! a single `write(2)` on an `O_APPEND` descriptor, so the entries of
//! concurrent writers never interleave.
//!
//! # Rotation: one discipline for any number of writers
//!
//! Many processes write hub.log: the hub, and every CLI that logs (a refused
//! claim, the slot verbs, a restore). Each of them once rotated the file by
//! itself, by its own environment, with unlocked rename chains: two chains
//! running at once renamed files over each other (eight agents lost one
//! entry in seven), and a shell with `BONES_LOG_MAX_SIZE=1` rotated the
//! hub's history away. Now:
//!
//! - Only the hub rotates ([`HubLog::open`]), by the settings it read and
//!   checked once at start ([`LogConfig::from_env`]). A CLI only appends
//!   ([`HubLog::append_only`]) and reads no rotation setting at all.
//! - The lock is `flock(2)` on the current hub.log itself, so there is no
//!   lock file to plant, lose or confuse. An append holds it shared; a
//!   rotation holds it exclusive across the whole rename chain and until the
//!   new, empty hub.log exists. Whoever takes it then checks that the path
//!   still names the file it locked, and reopens if not. So an entry never
//!   lands in a file already rotated away, and a reader that finished a
//!   rotated file has all of it.
//! - The hub only *tries* the exclusive lock: while a CLI or a reader holds
//!   the file shared, the hub appends and rotates at a later write, so it
//!   never waits on another process (a file may run a few entries past the
//!   size). The hub also checks the size every second, which rotates what
//!   CLIs appended while the hub itself wrote nothing.
//! - Readers list and open the files under the shared lock
//!   ([`crate::oplog::read::open_oldest_first`]), so no rename chain runs while
//!   they look: a chain half done would show one file under two names.
//!
//! hub.log is opened with `O_NOFOLLOW` (and must be a regular file): a
//! symlink planted at it is never written through. The hub *replaces* such
//! a link by a regular file, removing the link and never touching its
//! target, and logs a WARN naming the target; a CLI *refuses* to write
//! through it and prints its entry on stderr instead, until the hub's next
//! entry replaces the link. Only the hub removes anything, so two writers
//! never race to replace the same link.

pub mod forward;
pub mod read;
pub(crate) mod schema;

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::libc;

use serde::{Deserialize, Serialize};

/// Default rotation size: 10 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Default number of rotated files kept.
pub const DEFAULT_MAX_FILES: u32 = 5;
/// Most rotated files the hub keeps. Every rotation renames each of them
/// under the lock, so the count bounds how long appends wait on a rotation;
/// `BONES_LOG_MAX_FILES=4000000000` once made a start hang in billions of
/// `rename` calls. Larger values are refused at start.
pub const MAX_FILES_LIMIT: u32 = 100;
/// Environment variable overriding the rotation size in bytes.
pub const MAX_SIZE_ENV: &str = "BONES_LOG_MAX_SIZE";
/// Environment variable overriding the number of rotated files.
pub const MAX_FILES_ENV: &str = "BONES_LOG_MAX_FILES";
/// Environment variable for the level floor (the `--log-level` flag wins).
pub const LEVEL_ENV: &str = "BONES_HUB_LOG_LEVEL";

/// Severity of an entry; ordered so a floor is a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// Parses a level name leniently (`warn`, `WARNING`, `Error` ...).
    pub fn parse(text: &str) -> Option<LogLevel> {
        match text.trim().to_ascii_lowercase().as_str() {
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" | "warning" => Some(LogLevel::Warn),
            "error" => Some(LogLevel::Error),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }
}

/// The closed set of entry kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A call through the hub (task mutations, slot verbs).
    Rpc,
    /// An agent hook firing.
    Hook,
    /// Hub start, ready, stop and supervision.
    Lifecycle,
    /// A failure not tied to one of the above.
    Error,
}

/// Generates [`LogEntry`] and its constructor from [`schema::entry_fields!`].
macro_rules! log_entry {
    (
        text { $($(#[$text_doc:meta])* $text:ident,)* }
        number { $($(#[$number_doc:meta])* $number:ident,)* }
    ) => {
        /// One line of `hub.log`. Optional fields are omitted when empty so
        /// that `jq 'has("err")'` means something. The optional fields are
        /// listed in [`schema`], which the reader's view shares.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct LogEntry {
            pub ts: String,
            pub level: LogLevel,
            pub event: EventKind,
            $(
                $(#[$text_doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $text: Option<String>,
            )*
            $(
                $(#[$number_doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $number: Option<u64>,
            )*
        }

        impl LogEntry {
            /// A new entry stamped now.
            pub fn new(level: LogLevel, event: EventKind) -> LogEntry {
                LogEntry {
                    ts: crate::sys::clock::utc_now_rfc3339(),
                    level,
                    event,
                    $($text: None,)*
                    $($number: None,)*
                }
            }
        }
    };
}

schema::entry_fields!(log_entry);

impl LogEntry {
    /// A lifecycle entry with a message.
    pub fn lifecycle(level: LogLevel, msg: impl Into<String>) -> LogEntry {
        LogEntry {
            msg: Some(msg.into()),
            ..LogEntry::new(level, EventKind::Lifecycle)
        }
    }

    /// Sets the error text.
    pub fn with_err(mut self, err: impl Into<String>) -> LogEntry {
        self.err = Some(err.into());
        self
    }

    /// Errors are always written, whatever the floor: an operator who asked
    /// for quiet logs still needs to see why the hub died.
    fn passes(&self, floor: LogLevel) -> bool {
        self.level == LogLevel::Error || self.err.is_some() || self.level >= floor
    }
}

/// Rotation and filtering settings of the hub's [`HubLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    pub floor: LogLevel,
    pub max_size: u64,
    pub max_files: u32,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            floor: LogLevel::Info,
            max_size: DEFAULT_MAX_SIZE,
            max_files: DEFAULT_MAX_FILES,
        }
    }
}

/// A log setting the hub refuses at start. A typo in a variable used to
/// fall back to the default in silence (the operator who asked for 100 files
/// got 5); like a bad `BONES_FEED_MAX_AGE`, it now stops the start instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={} is not accepted: {why}; unset it for the default ({default})", crate::sys::shown::shown(.value))]
pub struct LogSettingError {
    /// The variable (or flag) that holds the value.
    pub var: &'static str,
    value: String,
    why: String,
    default: String,
}

impl LogConfig {
    /// The hub's settings: the level from the `--log-level` flag, else
    /// [`LEVEL_ENV`], else INFO; the rotation from [`MAX_SIZE_ENV`] and
    /// [`MAX_FILES_ENV`]. Unset or empty means the default. Read by the hub
    /// alone, once, at start: a CLI's environment never decides how the
    /// workspace's log rotates.
    pub fn from_env(level_flag: Option<&str>) -> Result<LogConfig, LogSettingError> {
        let var = |name: &'static str| -> Result<Option<String>, LogSettingError> {
            match std::env::var_os(name) {
                None => Ok(None),
                Some(value) => match value.into_string() {
                    Ok(text) if text.trim().is_empty() => Ok(None),
                    Ok(text) => Ok(Some(text)),
                    Err(raw) => Err(LogSettingError {
                        var: name,
                        value: raw.to_string_lossy().into_owned(),
                        why: "it is not UTF-8 text".to_string(),
                        default: match name {
                            MAX_SIZE_ENV => DEFAULT_MAX_SIZE.to_string(),
                            MAX_FILES_ENV => DEFAULT_MAX_FILES.to_string(),
                            _ => "info".to_string(),
                        },
                    }),
                },
            }
        };
        let level = match level_flag.filter(|f| !f.is_empty()) {
            Some(flag) => Some(("--log-level", flag.to_string())),
            None => var(LEVEL_ENV)?.map(|v| (LEVEL_ENV, v)),
        };
        let max_size = var(MAX_SIZE_ENV)?;
        let max_files = var(MAX_FILES_ENV)?;
        LogConfig::parse(
            level.as_ref().map(|(name, v)| (*name, v.as_str())),
            max_size.as_deref(),
            max_files.as_deref(),
        )
    }

    /// Reads the settings as given: the level with the name of where it
    /// came from (for the error), then the two rotation variables; `None`
    /// takes the default.
    pub fn parse(
        level: Option<(&'static str, &str)>,
        max_size: Option<&str>,
        max_files: Option<&str>,
    ) -> Result<LogConfig, LogSettingError> {
        let mut config = LogConfig::default();
        if let Some((var, text)) = level {
            config.floor = LogLevel::parse(text).ok_or_else(|| LogSettingError {
                var,
                value: text.to_string(),
                why: "use debug, info, warn or error".to_string(),
                default: "info".to_string(),
            })?;
        }
        if let Some(text) = max_size {
            config.max_size = text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| LogSettingError {
                    var: MAX_SIZE_ENV,
                    value: text.to_string(),
                    why: "give the size at which hub.log rotates in bytes, a whole number from 1"
                        .to_string(),
                    default: DEFAULT_MAX_SIZE.to_string(),
                })?;
        }
        if let Some(text) = max_files {
            config.max_files = text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_FILES_LIMIT).contains(n))
                .ok_or_else(|| LogSettingError {
                    var: MAX_FILES_ENV,
                    value: text.to_string(),
                    why: format!("keep 1 to {MAX_FILES_LIMIT} rotated files"),
                    default: DEFAULT_MAX_FILES.to_string(),
                })?;
        }
        Ok(config)
    }
}

/// How the hub rotates (CLIs have none).
#[derive(Debug, Clone, Copy)]
struct Rotation {
    max_size: u64,
    max_files: u32,
}

impl Rotation {
    /// True when `incoming` more bytes would take the file past the size.
    /// An empty file is never rotated, even for an entry larger than the
    /// size.
    fn is_due(&self, file: &fs::Metadata, incoming: u64) -> bool {
        file.len() > 0 && file.len() + incoming > self.max_size
    }
}

/// The file a writer holds open, with the identity that tells whether the
/// path still names it.
struct Held {
    file: File,
    dev: u64,
    ino: u64,
}

impl Held {
    fn names(&self, on_disk: &fs::Metadata) -> bool {
        on_disk.dev() == self.dev && on_disk.ino() == self.ino
    }
}

/// How often a writer retries when hub.log was rotated or replaced between
/// its open and its lock; more than one rotation in that gap is rare.
const RETRIES: usize = 8;

/// A cloneable handle on `hub.log`. Logging never fails the caller: if the
/// file cannot be written, the entry goes to stderr instead, because a hub
/// that refuses to start over its log would hide the real problem.
#[derive(Clone)]
pub struct HubLog {
    path: PathBuf,
    floor: LogLevel,
    /// `Some` for the hub, the only writer that rotates.
    rotation: Option<Rotation>,
    held: Arc<Mutex<Option<Held>>>,
}

impl HubLog {
    /// The hub's writer: filters by `config.floor` and rotates by its
    /// limits. Only the hub (and `hub start` before it detaches) opens
    /// hub.log this way; see the module docs.
    pub fn open(path: impl Into<PathBuf>, config: LogConfig) -> HubLog {
        HubLog {
            path: path.into(),
            floor: config.floor,
            rotation: Some(Rotation {
                max_size: config.max_size,
                max_files: config.max_files,
            }),
            held: Arc::default(),
        }
    }

    /// A writer that only appends, for CLIs: INFO and above, never a
    /// rotation, whatever its environment says.
    pub fn append_only(path: impl Into<PathBuf>) -> HubLog {
        HubLog {
            path: path.into(),
            floor: LogLevel::Info,
            rotation: None,
            held: Arc::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn info(&self, msg: impl Into<String>) {
        self.write(LogEntry::lifecycle(LogLevel::Info, msg));
    }

    pub fn warn(&self, msg: impl Into<String>) {
        self.write(LogEntry::lifecycle(LogLevel::Warn, msg));
    }

    pub fn error(&self, msg: impl Into<String>, err: impl Into<String>) {
        self.write(LogEntry::lifecycle(LogLevel::Error, msg).with_err(err));
    }

    /// Appends one entry as one line.
    pub fn write(&self, entry: LogEntry) {
        if !entry.passes(self.floor) {
            return;
        }
        let Some(line) = line_of(&entry) else {
            return;
        };
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(err) = self.append(&mut held, &line) {
            *held = None;
            eprintln!(
                "bones: cannot write {}: {err}; entry was: {}",
                self.path.display(),
                String::from_utf8_lossy(&line).trim_end()
            );
        }
    }

    /// Rotates when the current file has grown past the size: the hub calls
    /// this every second, for what CLIs appended while it wrote nothing.
    /// A no-op on an [`HubLog::append_only`] writer.
    pub fn rotate_if_due(&self) {
        if let Some(rotation) = self.rotation {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            self.rotate_when_full(&mut held, rotation, 0);
        }
    }

    /// The fast path is one `flock`, one `lstat`, one `write` and the
    /// unlock; rotations and reopens are the rare detours.
    fn append(&self, held: &mut Option<Held>, line: &[u8]) -> io::Result<()> {
        let mut rotation = self.rotation;
        let mut replaced = None;
        for _ in 0..RETRIES {
            if held.is_none() {
                match open_log(&self.path) {
                    Ok(opened) => *held = Some(opened),
                    Err(err) if is_link(&err) && self.rotation.is_some() => {
                        replaced = Some(self.remove_link()?);
                        continue;
                    }
                    Err(err) if is_link(&err) => {
                        return Err(io::Error::other(
                            "it is a symbolic link, and bones never writes through one \
                             (the hub replaces it with a file at its next entry)",
                        ));
                    }
                    Err(err) => return Err(err),
                }
            }
            let current = held.as_ref().expect("opened above");
            let rotate_first = {
                let _shared = FileLock::shared(&current.file)?;
                // under the shared lock no rotation runs: if the path names
                // the file we hold, the entry lands in the current hub.log
                match fs::symlink_metadata(&self.path) {
                    Ok(on_disk) if current.names(&on_disk) => match rotation {
                        Some(due) if due.is_due(&on_disk, line.len() as u64) => Some(due),
                        _ => {
                            if let Some(target) = replaced.take() {
                                self.write_replaced(&current.file, &target)?;
                            }
                            return write_line(&current.file, line);
                        }
                    },
                    _ => None,
                }
            };
            match rotate_first {
                // tried once: while the exclusive lock is busy the entry goes
                // into the current file, and a later one rotates
                Some(due) => {
                    rotation = None;
                    self.rotate_when_full(held, due, line.len() as u64);
                }
                // rotated or replaced since we opened it: open what is there now
                None => *held = None,
            }
        }
        Err(io::Error::other(
            "it was rotated or replaced again at every attempt",
        ))
    }

    /// Writes the WARN that says a link at hub.log was replaced.
    fn write_replaced(&self, file: &File, target: &str) -> io::Result<()> {
        let warning = LogEntry::lifecycle(
            LogLevel::Warn,
            format!(
                "hub: {} was a symbolic link to {}; replaced it with a regular file \
                 (bones never writes through a link)",
                self.path.display(),
                crate::sys::shown::shown(target)
            ),
        );
        match line_of(&warning) {
            Some(warning) => write_line(file, &warning),
            None => Ok(()),
        }
    }

    /// Rotates when `incoming` more bytes would take the current file past
    /// the size, if the exclusive lock is free now; otherwise a later write
    /// rotates, so the hub never waits on a CLI or a reader.
    fn rotate_when_full(&self, held: &mut Option<Held>, rotation: Rotation, incoming: u64) {
        let Ok(on_disk) = fs::symlink_metadata(&self.path) else {
            return;
        };
        if !on_disk.is_file() || !rotation.is_due(&on_disk, incoming) {
            return;
        }
        if !held.as_ref().is_some_and(|h| h.names(&on_disk)) {
            *held = open_log(&self.path).ok();
        }
        let Some(current) = held.as_ref() else {
            return;
        };
        let fresh = {
            let Ok(Some(_exclusive)) = FileLock::try_exclusive(&current.file) else {
                return;
            };
            // another rotator (`hub start` before it detached) may have
            // been first: check again under the lock
            if !fs::symlink_metadata(&self.path)
                .is_ok_and(|m| current.names(&m) && rotation.is_due(&m, incoming))
            {
                return;
            }
            if let Err(err) = self.shift(rotation.max_files) {
                eprintln!(
                    "bones: cannot rotate {}: {err}; appending to it meanwhile",
                    self.path.display()
                );
                return;
            }
            // made before the lock goes, so whoever finds the old file
            // rotated finds the new one to append to
            open_log(&self.path)
        };
        *held = fresh.ok();
    }

    /// The rename chain: drops `hub.log.<max>`, moves every `hub.log.N` up
    /// by one and `hub.log` to `hub.log.1`. Runs under the exclusive lock.
    fn shift(&self, max_files: u32) -> io::Result<()> {
        let numbered = |n: u32| {
            let mut name = OsString::from(self.path.as_os_str());
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        let missing_is_fine = |result: io::Result<()>| match result {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        };
        let max = max_files.clamp(1, MAX_FILES_LIMIT);
        missing_is_fine(fs::remove_file(numbered(max)))?;
        for n in (1..max).rev() {
            missing_is_fine(fs::rename(numbered(n), numbered(n + 1)))?;
        }
        fs::rename(&self.path, numbered(1))
    }

    /// Removes a symlink found at hub.log (the link, never its target) and
    /// returns where it pointed. Only the hub calls this.
    fn remove_link(&self) -> io::Result<String> {
        let target = fs::read_link(&self.path)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        if fs::symlink_metadata(&self.path)?.file_type().is_symlink() {
            fs::remove_file(&self.path)?;
        }
        Ok(target)
    }
}

/// An entry as one line with its newline.
fn line_of(entry: &LogEntry) -> Option<Vec<u8>> {
    let mut line = serde_json::to_vec(entry).ok()?;
    line.push(b'\n');
    Some(line)
}

/// Opens (or creates, owner-only) hub.log for appending, never through a
/// symlink and never anything but a regular file: `O_NONBLOCK` keeps a FIFO
/// planted there from blocking the open.
fn open_log(path: &Path) -> io::Result<Held> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("it is not a regular file"));
    }
    Ok(Held {
        file,
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// The error `O_NOFOLLOW` gives for a symlink.
fn is_link(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ELOOP)
}

/// One `write(2)` per entry: with `O_APPEND` it lands whole at the end.
fn write_line(mut file: &File, line: &[u8]) -> io::Result<()> {
    let written = file.write(line)?;
    if written != line.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write to hub.log",
        ));
    }
    Ok(())
}

/// A `flock(2)` held on a log file, released on drop.
pub(crate) struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    /// Waits for the shared lock: only a rotation (a bounded rename chain)
    /// holds the exclusive one.
    pub(crate) fn shared(file: &'a File) -> io::Result<FileLock<'a>> {
        loop {
            match file.lock_shared() {
                Ok(()) => return Ok(FileLock(file)),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// The exclusive lock if nobody holds the file now.
    fn try_exclusive(file: &'a File) -> io::Result<Option<FileLock<'a>>> {
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock(file))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(err)) => Err(err),
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(floor: LogLevel, max_size: u64) -> LogConfig {
        LogConfig {
            floor,
            max_size,
            max_files: 3,
        }
    }

    #[test]
    fn entries_are_single_json_lines_without_empty_fields() {
        let tmp = tempfile::tempdir().unwrap();
        let log = HubLog::open(tmp.path().join("hub.log"), config(LogLevel::Info, 1 << 20));
        log.info("hub: ready");
        let text = fs::read_to_string(tmp.path().join("hub.log")).unwrap();
        assert_eq!(text.lines().count(), 1);
        let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        let object = value.as_object().unwrap();
        let mut keys: Vec<_> = object.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["event", "level", "msg", "ts"]);
        assert_eq!(object["level"], "INFO");
        assert_eq!(object["event"], "lifecycle");
        let ts = object["ts"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 27, "{ts}");
    }

    #[test]
    fn floor_filters_but_errors_always_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let log = HubLog::open(tmp.path().join("hub.log"), config(LogLevel::Warn, 1 << 20));
        log.info("quiet");
        log.write(LogEntry::lifecycle(LogLevel::Debug, "debug with err").with_err("boom"));
        log.error("hub: bring-up failed", "disk full");
        let text = fs::read_to_string(tmp.path().join("hub.log")).unwrap();
        assert!(!text.contains("quiet"));
        assert!(text.contains("debug with err"));
        assert!(text.contains("bring-up failed"));
    }

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hub.log");
        let log = HubLog::open(&path, config(LogLevel::Info, 2048));
        for i in 0..400 {
            log.info(format!("entry {i}"));
        }
        assert!(tmp.path().join("hub.log.1").exists());
        assert!(tmp.path().join("hub.log.3").exists());
        assert!(!tmp.path().join("hub.log.4").exists());
        for name in ["hub.log", "hub.log.1", "hub.log.2", "hub.log.3"] {
            let text = fs::read_to_string(tmp.path().join(name)).unwrap();
            assert!(text.len() as u64 <= 2048, "{name} is {} bytes", text.len());
            for line in text.lines() {
                serde_json::from_str::<LogEntry>(line).unwrap();
            }
        }
        let newest = fs::read_to_string(&path).unwrap();
        assert!(newest.contains("entry 399"));
    }

    #[test]
    fn level_parsing_is_lenient() {
        assert_eq!(LogLevel::parse("warning"), Some(LogLevel::Warn));
        assert_eq!(LogLevel::parse("ERROR"), Some(LogLevel::Error));
        assert_eq!(LogLevel::parse("trace"), None);
    }

    #[test]
    fn settings_are_checked_and_bad_ones_name_their_variable() {
        let config = LogConfig::parse(Some((LEVEL_ENV, "WARNING")), Some("4096"), Some("100"));
        assert_eq!(
            config,
            Ok(LogConfig {
                floor: LogLevel::Warn,
                max_size: 4096,
                max_files: 100,
            })
        );
        assert_eq!(LogConfig::parse(None, None, None), Ok(LogConfig::default()));
        for (level, size, files, var) in [
            (Some((LEVEL_ENV, "loud")), None, None, LEVEL_ENV),
            (Some(("--log-level", "trace")), None, None, "--log-level"),
            (None, Some("0"), None, MAX_SIZE_ENV),
            (None, Some("10MB"), None, MAX_SIZE_ENV),
            (None, Some("-1"), None, MAX_SIZE_ENV),
            (None, None, Some("0"), MAX_FILES_ENV),
            (None, None, Some("101"), MAX_FILES_ENV),
            (None, None, Some("4000000000"), MAX_FILES_ENV),
            (None, None, Some("five"), MAX_FILES_ENV),
        ] {
            let err = LogConfig::parse(level, size, files).unwrap_err();
            assert_eq!(err.var, var);
            let said = err.to_string();
            assert!(said.starts_with(var) && !said.contains('\n'), "{said}");
        }
        let hostile = format!("\x1b[2J{}", "9".repeat(100_000));
        let said = LogConfig::parse(None, None, Some(&hostile))
            .unwrap_err()
            .to_string();
        assert!(said.len() < 200 && !said.contains('\x1b'), "{said}");
        assert!(said.contains("1 to 100"), "{said}");
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn an_append_only_writer_never_rotates() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hub.log");
        let hub = HubLog::open(&path, config(LogLevel::Info, 200));
        hub.info("history");
        let cli = HubLog::append_only(&path);
        for i in 0..20 {
            cli.info(format!("cli entry {i}"));
        }
        assert!(!tmp.path().join("hub.log.1").exists());
        assert_eq!(read(&path).lines().count(), 21);
        // the hub's next entry, or its periodic check, rotates it
        hub.rotate_if_due();
        assert_eq!(read(&tmp.path().join("hub.log.1")).lines().count(), 21);
        assert_eq!(read(&path), "");
        hub.info("after");
        assert_eq!(read(&path).lines().count(), 1);
    }

    #[test]
    fn rotation_with_many_writers_loses_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hub.log");
        let hub_config = LogConfig {
            floor: LogLevel::Info,
            max_size: 1500,
            max_files: MAX_FILES_LIMIT,
        };
        let (writers, each) = (6, 60);
        // each its own descriptor, as separate processes would have
        let hub = HubLog::open(&path, hub_config);
        let checker = hub.clone();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for i in 0..each {
                    hub.info(format!("hub {i}"));
                }
            });
            for w in 0..writers {
                let cli = HubLog::append_only(&path);
                scope.spawn(move || {
                    for i in 0..each {
                        cli.info(format!("cli {w} {i}"));
                    }
                });
            }
        });
        // how often the hub rotated meanwhile depends on when the writers'
        // shared locks let it (it only tries); the periodic check rotates
        // whatever is left past the size, so at least once in all (the
        // writers wrote over 20 times the size)
        checker.rotate_if_due();
        assert!(tmp.path().join("hub.log.1").exists(), "it rotated");
        let files = crate::oplog::read::open_oldest_first(&path).unwrap();
        let mut seen = std::collections::HashSet::new();
        for (_, mut file) in files {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut file, &mut text).unwrap();
            for line in text.lines() {
                let entry: LogEntry = serde_json::from_str(line).unwrap();
                assert!(seen.insert(entry.msg.unwrap()), "{line} twice");
            }
        }
        assert_eq!(seen.len(), (writers + 1) * each);
    }

    #[test]
    fn a_symlink_at_hub_log_is_replaced_by_the_hub_and_refused_by_a_cli() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hub.log");
        let victim = tmp.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();

        HubLog::append_only(&path).info("from a cli");
        assert_eq!(read(&victim), "precious\n");
        assert!(
            fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );

        let hub = HubLog::open(&path, config(LogLevel::Info, 1 << 20));
        hub.info("from the hub");
        assert_eq!(read(&victim), "precious\n");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        let text = read(&path);
        assert!(text.contains("symbolic link to"), "{text}");
        assert!(text.contains("from the hub"), "{text}");

        // planted again under a running hub: it notices at its next entry
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        hub.info("again");
        assert_eq!(read(&victim), "precious\n");
        assert!(read(&path).contains("again"));
    }

    #[test]
    fn concurrent_writers_never_tear_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hub.log");
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = HubLog::open(&path, config(LogLevel::Info, 1 << 30));
                std::thread::spawn(move || {
                    for i in 0..200 {
                        log.info(format!("writer {t} entry {i} {}", "x".repeat(300)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 800);
        for line in text.lines() {
            serde_json::from_str::<LogEntry>(line).unwrap();
        }
    }
}
