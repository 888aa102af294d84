//! The operator log, `hub.log`: one JSON [`LogEntry`] per line.
//!
//! Only entries go into this file; child processes write to their own logs
//! (decision 8), so `jq` never meets a stray line. Each entry is written with
//! a single `write(2)` on an `O_APPEND` descriptor, so entries from the
//! detach parent and the hub itself never interleave. The file is rotated by
//! size (`hub.log` -> `hub.log.1` ... `hub.log.N`); a writer notices when
//! another process rotated it and reopens.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Default rotation size: 10 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Default number of rotated files kept.
pub const DEFAULT_MAX_FILES: u32 = 5;
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

    /// The floor for a hub process: the flag, else `BONES_HUB_LOG_LEVEL`,
    /// else INFO. An unknown value falls back to INFO rather than failing a
    /// start over a typo in an environment variable.
    pub fn floor(flag: Option<&str>) -> LogLevel {
        let env = std::env::var(LEVEL_ENV).ok();
        flag.filter(|f| !f.is_empty())
            .or(env.as_deref().filter(|e| !e.is_empty()))
            .and_then(LogLevel::parse)
            .unwrap_or(LogLevel::Info)
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

/// One line of `hub.log`. Optional fields are omitted when empty so that
/// `jq 'has("err")'` means something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub ts: String,
    pub level: LogLevel,
    pub event: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
    /// On a task event's `rpc` entry, the record's revision in
    /// `bones-tasks`: a restarted hub reads it back to know which events it
    /// has already logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// On a `swarm.commit` entry, the trunk commit the landing made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

impl LogEntry {
    /// A new entry stamped now.
    pub fn new(level: LogLevel, event: EventKind) -> LogEntry {
        LogEntry {
            ts: utc_now_rfc3339(),
            level,
            event,
            msg: None,
            rpc: None,
            agent: None,
            task: None,
            slot: None,
            session: None,
            hook: None,
            took_ms: None,
            result_count: None,
            err: None,
            revision: None,
            commit: None,
        }
    }

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

/// Current UTC time as RFC 3339 with second precision and a `Z` suffix,
/// the one timestamp format bones persists (jq's `fromdate` reads it).
pub fn utc_now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// Formats a time as UTC RFC 3339, seconds precision, `Z` suffix.
pub fn format_rfc3339(at: OffsetDateTime) -> String {
    let at = at
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_default()
}

/// Rotation and filtering settings for a [`HubLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    pub floor: LogLevel,
    pub max_size: u64,
    pub max_files: u32,
}

impl LogConfig {
    /// Settings from the environment, with the given floor.
    pub fn from_env(floor: LogLevel) -> LogConfig {
        let positive = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|v| *v > 0)
        };
        LogConfig {
            floor,
            max_size: positive(MAX_SIZE_ENV).unwrap_or(DEFAULT_MAX_SIZE),
            max_files: positive(MAX_FILES_ENV)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(DEFAULT_MAX_FILES),
        }
    }
}

struct Sink {
    file: Option<File>,
}

/// A cloneable handle on `hub.log`. Logging never fails the caller: if the
/// file cannot be written, the entry goes to stderr instead, because a hub
/// that refuses to start over its log would hide the real problem.
#[derive(Clone)]
pub struct HubLog {
    path: PathBuf,
    config: LogConfig,
    sink: Arc<Mutex<Sink>>,
}

impl HubLog {
    pub fn open(path: impl Into<PathBuf>, config: LogConfig) -> HubLog {
        HubLog {
            path: path.into(),
            config,
            sink: Arc::new(Mutex::new(Sink { file: None })),
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
        if !entry.passes(self.config.floor) {
            return;
        }
        let mut line = match serde_json::to_vec(&entry) {
            Ok(line) => line,
            Err(_) => return,
        };
        line.push(b'\n');
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(err) = self.append(&mut sink, &line) {
            sink.file = None;
            eprintln!(
                "bones: cannot write {}: {err}; entry was: {}",
                self.path.display(),
                String::from_utf8_lossy(&line).trim_end()
            );
        }
    }

    fn append(&self, sink: &mut Sink, line: &[u8]) -> std::io::Result<()> {
        // Another process may have rotated the file under us: reopen when the
        // path no longer names the inode we hold.
        let on_disk = fs::metadata(&self.path).ok();
        if let (Some(file), Some(meta)) = (&sink.file, &on_disk) {
            if file.metadata()?.ino() != meta.ino() {
                sink.file = None;
            }
        } else {
            sink.file = None;
        }
        if on_disk.is_some_and(|m| m.len() + line.len() as u64 > self.config.max_size) {
            self.rotate();
            sink.file = None;
        }
        if sink.file.is_none() {
            sink.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&self.path)?,
            );
        }
        let file = sink.file.as_mut().expect("opened above");
        // One write call per entry: O_APPEND makes it land whole at the end.
        let written = file.write(line)?;
        if written != line.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "short write to hub.log",
            ));
        }
        Ok(())
    }

    fn rotate(&self) {
        let rotated = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let max = self.config.max_files.max(1);
        let _ = fs::remove_file(rotated(max));
        for n in (1..max).rev() {
            let _ = fs::rename(rotated(n), rotated(n + 1));
        }
        let _ = fs::rename(&self.path, rotated(1));
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
        assert!(ts.ends_with('Z') && ts.len() == 20, "{ts}");
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
        assert_eq!(LogLevel::floor(Some("debug")), LogLevel::Debug);
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
