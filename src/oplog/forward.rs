//! The hub's `tracing` subscriber: what its libraries report goes into
//! hub.log.
//!
//! async-nats, axum and hyper report through `tracing`, and without a
//! subscriber those reports went nowhere: a hub whose coordination client
//! lost its server, or whose listener ran out of descriptors, said so to no
//! one. [`Forward`] turns their WARN and ERROR events into hub.log entries
//! (`msg` is `"<crate>: <message>"`, the event's other fields follow as
//! `key=value`).
//!
//! async-nats 0.51 reports its connection events (a disconnect, a
//! reconnect, a slow consumer, lame duck mode) at INFO only, as
//! `event: <what>`; those are the reports an operator most needs, so they
//! are forwarded too, as WARN (a reconnect as INFO, since it ends the
//! trouble a WARN announced). Every other INFO, DEBUG and TRACE event is
//! disabled at its call site, so it costs the libraries nothing.
//!
//! A storm (a server flapping, a client reconnecting in a loop) must not
//! flood hub.log or rotate its history away: at most [`BURST`] entries are
//! forwarded per [`WINDOW`]; the rest are counted, and the first entry of
//! the next window says how many were dropped.
//!
//! Today only async-nats reports anything: the hub serves HTTP through its
//! own hyper loop, not `axum::serve`, axum is built without its `tracing`
//! feature, and hyper 1 emits events only when built with
//! `--cfg hyper_unstable_tracing`. Their targets are forwarded all the same,
//! so a report they start to make arrives without a change here.
//!
//! Only the hub installs it ([`Forward::install`]): a CLI neither reads nor
//! writes anything on the libraries' behalf.

use std::fmt::{self, Write as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use crate::oplog::{EventKind, HubLog, LogEntry, LogLevel};

/// The crates whose events are forwarded, by the first segment of the
/// event's target (its module path).
const CRATES: [&str; 3] = ["async_nats", "axum", "hyper"];

/// Entries forwarded per [`WINDOW`] at most.
pub const BURST: u32 = 20;
/// The rate limit's window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Longest `msg` forwarded; a library's report of a whole frame or payload
/// is cut there.
const MAX_MSG: usize = 1024;

/// A `tracing` subscriber that writes the events of [`CRATES`] to hub.log.
pub struct Forward {
    log: HubLog,
    limit: Mutex<Limit>,
}

/// A fixed-window count of the entries forwarded.
struct Limit {
    window_start: Instant,
    forwarded: u32,
    dropped: u64,
}

impl Forward {
    pub fn new(log: HubLog) -> Forward {
        Forward {
            log,
            limit: Mutex::new(Limit {
                window_start: Instant::now(),
                forwarded: 0,
                dropped: 0,
            }),
        }
    }

    /// Makes this the process's subscriber. Returns false when one was
    /// already set (a second hub in one process, as in a test), which then
    /// stays.
    pub fn install(log: HubLog) -> bool {
        tracing::subscriber::set_global_default(Forward::new(log)).is_ok()
    }

    /// Counts one entry against the window; `Some(dropped)` when it may be
    /// written, with how many entries the previous window dropped.
    fn admit(&self, now: Instant) -> Option<u64> {
        let mut limit = self.limit.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(limit.window_start) >= WINDOW {
            limit.window_start = now;
            limit.forwarded = 0;
        }
        if limit.forwarded >= BURST {
            limit.dropped += 1;
            return None;
        }
        limit.forwarded += 1;
        Some(std::mem::take(&mut limit.dropped))
    }
}

/// The crate an event comes from, if it is one of [`CRATES`].
fn source_crate(metadata: &Metadata<'_>) -> Option<&'static str> {
    let first = metadata.target().split("::").next()?;
    CRATES.iter().copied().find(|c| *c == first)
}

/// Whether events of this call site are forwarded: WARN and above from
/// [`CRATES`], and async-nats's connection events (INFO, from its crate
/// root).
fn forwarded(metadata: &Metadata<'_>) -> bool {
    metadata.is_event()
        && source_crate(metadata).is_some()
        && (*metadata.level() <= Level::WARN
            || (*metadata.level() == Level::INFO && metadata.target() == "async_nats"))
}

/// The entry's level: WARN and ERROR as they are; a connection event as
/// WARN, but INFO for a (re)connect.
fn level_of(level: Level, message: &str) -> LogLevel {
    match level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warn,
        _ if message == "event: connected" => LogLevel::Info,
        _ => LogLevel::Warn,
    }
}

/// Collects an event's message and its other fields as `key=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

impl Subscriber for Forward {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if forwarded(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        forwarded(metadata)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::INFO)
    }

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        let Some(source) = source_crate(metadata) else {
            return;
        };
        let mut text = Text::default();
        event.record(&mut text);
        if *metadata.level() == Level::INFO && !text.message.starts_with("event: ") {
            return;
        }
        let Some(dropped) = self.admit(Instant::now()) else {
            return;
        };
        if dropped > 0 {
            self.log.write(LogEntry {
                msg: Some(format!(
                    "hub: {dropped} reports of async-nats, axum or hyper were not logged \
                     (more than {BURST} in {}s)",
                    WINDOW.as_secs()
                )),
                ..LogEntry::new(LogLevel::Warn, EventKind::Lifecycle)
            });
        }
        let level = level_of(*metadata.level(), &text.message);
        let mut msg = format!("{source}: {}{}", text.message, text.fields);
        if msg.len() > MAX_MSG {
            let mut end = MAX_MSG;
            while !msg.is_char_boundary(end) {
                end -= 1;
            }
            msg.truncate(end);
        }
        self.log.write(LogEntry {
            msg: Some(msg),
            ..LogEntry::new(level, EventKind::Lifecycle)
        });
    }

    // spans are never enabled (see `forwarded`), so none is ever made,
    // entered or recorded
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oplog::read::parse_line;

    fn entries(path: &std::path::Path) -> Vec<(LogLevel, String)> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let entry = parse_line(line.as_bytes()).unwrap();
                (entry.level(), entry.msg.unwrap_or_default().into_owned())
            })
            .collect()
    }

    #[test]
    fn warnings_of_the_libraries_and_nats_connection_events_are_forwarded() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hub.log");
        let log = HubLog::open(&path, crate::oplog::LogConfig::default());
        tracing::subscriber::with_default(Forward::new(log), || {
            tracing::warn!(target: "async_nats::connector", server = "127.0.0.1:4222", "server not in pool");
            tracing::error!(target: "axum::serve::listener", "accept error: too many open files");
            tracing::info!(target: "async_nats", "event: {}", "disconnected");
            tracing::info!(target: "async_nats", "event: {}", "connected");
            // not forwarded: other INFO, lower levels, other crates
            tracing::info!(target: "async_nats", "purging old metadata");
            tracing::debug!(target: "async_nats::connector", "connection attempt failed");
            tracing::warn!(target: "bones_plugin", "not a library the hub forwards");
            tracing::warn!(target: "hyperion", "a prefix is not the crate");
        });
        assert_eq!(
            entries(&path),
            [
                (
                    LogLevel::Warn,
                    "async_nats: server not in pool server=127.0.0.1:4222".to_string()
                ),
                (
                    LogLevel::Error,
                    "axum: accept error: too many open files".to_string()
                ),
                (
                    LogLevel::Warn,
                    "async_nats: event: disconnected".to_string()
                ),
                (LogLevel::Info, "async_nats: event: connected".to_string()),
            ]
        );
    }

    #[test]
    fn a_storm_is_cut_to_a_burst_per_window_and_the_drop_is_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("hub.log");
        let forward = Forward::new(HubLog::open(&path, crate::oplog::LogConfig::default()));
        let start = forward.limit.lock().unwrap().window_start;
        let admitted = (0..BURST + 50)
            .filter(|_| forward.admit(start).is_some())
            .count();
        assert_eq!(admitted, BURST as usize);
        assert_eq!(forward.admit(start + WINDOW / 2), None);
        // the next window admits again and reports what was dropped
        assert_eq!(forward.admit(start + WINDOW), Some(51));
        assert_eq!(forward.admit(start + WINDOW), Some(0));

        tracing::subscriber::with_default(forward, || {
            for i in 0..BURST * 3 {
                tracing::info!(target: "async_nats", "event: disconnected {i}");
            }
        });
        // the window is the one just opened: two of its entries were used
        assert_eq!(entries(&path).len(), BURST as usize - 2);
    }
}
