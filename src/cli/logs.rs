//! `bones logs --hub`: read, filter and follow hub.log.
//!
//! Never starts a hub: an operator reading the log of a dead hub must not
//! get a new one (Go #138 item 7). The rotated files are read oldest first
//! as one stream; `--json` passes the original lines through byte for byte.

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::Failure;
use crate::oplog::LogLevel;
use crate::oplog::read;
use crate::oplog::read::{EntryView, Filter, Line, LineReader};
use crate::state::Paths;
use crate::state::workspace::Workspace;
use crate::sys::duration;
use crate::sys::error::ErrorKind;
use crate::sys::shown::shown;

/// How often `--follow` looks for new entries.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bones logs --hub --level warn --since 1h\n  \
    bones logs --hub --event rpc --grep claim --last 20\n  \
    bones logs --hub --slot fix-parser\n  \
    bones logs --hub -f\n  \
    bones logs --hub --json | jq -c 'select(.took_ms > 500)'")]
pub struct LogsArgs {
    /// Read the hub's operator log (hub.log and its rotated files).
    #[arg(long, required = true)]
    hub: bool,
    /// Show this level and above: debug, info, warn or error.
    #[arg(long, value_name = "L", value_parser = parse_level)]
    level: Option<LogLevel>,
    /// Show only this event kind (repeatable): lifecycle, rpc, hook, error.
    #[arg(long, value_name = "E", value_parser = ["lifecycle", "rpc", "hook", "error"])]
    event: Vec<String>,
    /// Show entries newer than a duration (15m, 2h) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    since: Option<OffsetDateTime>,
    /// Show only the last N entries that pass the filters.
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// Show only entries whose msg or err contains TEXT.
    #[arg(long, value_name = "TEXT")]
    grep: Option<String>,
    /// Show only entries about this slot: its trail of join, sync, commit,
    /// close and reap.
    #[arg(long, value_name = "NAME")]
    slot: Option<String>,
    /// Show only entries about this agent.
    #[arg(long, value_name = "ID")]
    agent: Option<String>,
    /// Show only entries about this task.
    #[arg(long, value_name = "ID")]
    task: Option<String>,
    /// Keep printing new entries as they are written (Ctrl-C to stop).
    #[arg(long, short = 'f')]
    follow: bool,
    /// Print the original JSON lines, byte for byte.
    #[arg(long)]
    json: bool,
    /// Show times in UTC instead of local time.
    #[arg(long)]
    utc: bool,
}

fn parse_level(text: &str) -> Result<LogLevel, String> {
    LogLevel::parse(text).ok_or_else(|| {
        format!(
            "unknown level {}; use debug, info, warn or error",
            shown(text)
        )
    })
}

pub(super) fn parse_since(text: &str) -> Result<OffsetDateTime, String> {
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at);
    }
    let ago = match duration::parse(text) {
        Ok(ago) => ago,
        // a number with units: say what is wrong with it as a duration
        Err(why)
            if text.trim().starts_with(|c: char| c.is_ascii_digit())
                && !text.contains(['-', ':']) =>
        {
            return Err(why);
        }
        Err(_) => {
            return Err(format!(
                "cannot read {} as a duration (15m, 2h) or an RFC 3339 time (2026-11-23T09:00:00Z)",
                shown(text)
            ));
        }
    };
    // duration::parse bounds the duration, so this never leaves the calendar
    Ok(OffsetDateTime::now_utc() - ago)
}

pub fn run(args: LogsArgs) -> Result<(), Failure> {
    let ws = Workspace::from_cwd()?;
    let paths = Paths::new(&ws);
    let filter = Filter {
        min_level: args.level,
        events: args.event.clone(),
        since: args.since,
        grep: args.grep.clone(),
    };
    let color = !args.json
        && io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // must be read while the process is single-threaded
    let offset = if args.utc {
        UtcOffset::UTC
    } else {
        UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC)
    };
    let mut printer = Printer {
        out: io::BufWriter::with_capacity(64 * 1024, io::stdout().lock()),
        json: args.json,
        color,
        offset,
        utc: args.utc,
    };
    let mut reader = Reader {
        filter,
        about: About {
            slot: args.slot.clone(),
            agent: args.agent.clone(),
            task: args.task.clone(),
        },
        malformed: 0,
    };
    let result = reader.run(&paths.hub_log, &args, &mut printer);
    let _ = printer.out.flush();
    if reader.malformed > 0 {
        let s = if reader.malformed == 1 { "" } else { "s" };
        eprintln!("bones: skipped {} malformed line{s}", reader.malformed);
    }
    match result {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(err) => Err(Failure::new(
            ErrorKind::Io,
            format!("cannot read {}: {err}", paths.hub_log.display()),
        )),
    }
}

struct Reader {
    filter: Filter,
    about: About,
    malformed: u64,
}

/// `--slot`, `--agent`, `--task`: entries whose field is exactly the value.
struct About {
    slot: Option<String>,
    agent: Option<String>,
    task: Option<String>,
}

impl About {
    fn matches(&self, entry: &EntryView) -> bool {
        let is = |wanted: &Option<String>, field: &Option<std::borrow::Cow<str>>| {
            wanted
                .as_deref()
                .is_none_or(|w| field.as_deref() == Some(w))
        };
        is(&self.slot, &entry.slot) && is(&self.agent, &entry.agent) && is(&self.task, &entry.task)
    }
}

impl Reader {
    fn run(
        &mut self,
        hub_log: &Path,
        args: &LogsArgs,
        printer: &mut Printer<impl Write>,
    ) -> io::Result<()> {
        let mut ring: VecDeque<Vec<u8>> = VecDeque::new();
        let mut current = None;
        // opened together while no rotation runs; the newest stays open to
        // follow, whatever its name is by then
        for (_, file) in read::open_oldest_first(hub_log)? {
            let mut lines = Following::new(file)?;
            self.drain(&mut lines.reader, |raw, entry| match args.last {
                Some(0) => Ok(()),
                Some(n) => {
                    let mut slot = if ring.len() == n {
                        ring.pop_front().unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    slot.clear();
                    slot.extend_from_slice(raw);
                    ring.push_back(slot);
                    Ok(())
                }
                None => printer.print(raw, entry),
            })?;
            current = Some(lines);
        }
        for raw in &ring {
            if let Some(entry) = read::parse_line(raw) {
                printer.print(raw, &entry)?;
            }
        }
        printer.out.flush()?;
        if args.follow {
            self.follow(hub_log, current, printer)?;
        }
        Ok(())
    }

    /// Prints every complete line that passes the filter; counts the rest.
    fn drain(
        &mut self,
        lines: &mut LineReader,
        mut keep: impl FnMut(&[u8], &EntryView) -> io::Result<()>,
    ) -> io::Result<()> {
        while let Some(line) = lines.next_line()? {
            match line {
                Line::Oversized => self.malformed += 1,
                Line::Complete(raw) => match read::parse_line(raw) {
                    None if raw.iter().all(u8::is_ascii_whitespace) => {}
                    None => self.malformed += 1,
                    Some(entry) if self.filter.matches(&entry) && self.about.matches(&entry) => {
                        keep(raw, &entry)?
                    }
                    Some(_) => {}
                },
            }
        }
        Ok(())
    }

    /// Prints new entries until SIGINT/SIGTERM, following the file by its
    /// inode rather than its name: when hub.log names another file, the one
    /// held is read to its end first (no writer appends to a rotated file:
    /// see `hub::log`), then every newer file in order. So each line on
    /// either side of any number of rotations is printed exactly once.
    fn follow(
        &mut self,
        hub_log: &Path,
        mut current: Option<Following>,
        printer: &mut Printer<impl Write>,
    ) -> io::Result<()> {
        // without the flag, a stop signal's default action ends the follow
        let stop = crate::sys::signals::stop_flag();
        while !stop
            .as_ref()
            .is_some_and(|stop| stop.load(Ordering::Relaxed))
        {
            let Some(lines) = current.as_mut() else {
                // nothing to follow yet: take whatever appears, from its start
                current = self.catch_up(hub_log, None, printer)?;
                if current.is_none() {
                    std::thread::sleep(FOLLOW_POLL);
                }
                continue;
            };
            self.drain(&mut lines.reader, |raw, entry| printer.print(raw, entry))?;
            printer.out.flush()?;
            match std::fs::symlink_metadata(hub_log) {
                Ok(on_disk) if !lines.is(&on_disk) => {
                    self.drain(&mut lines.reader, |raw, entry| printer.print(raw, entry))?;
                    if let Some(newer) = self.catch_up(hub_log, Some(lines.identity), printer)? {
                        current = Some(newer);
                        continue;
                    }
                }
                Ok(on_disk) if on_disk.len() < lines.reader.consumed() => {
                    // truncated in place: start over
                    current = std::fs::File::open(hub_log)
                        .ok()
                        .map(Following::new)
                        .transpose()?;
                    continue;
                }
                _ => {}
            }
            std::thread::sleep(FOLLOW_POLL);
        }
        printer.out.flush()
    }
}

/// The file a follower reads, with the identity (device, inode) that tells
/// whether hub.log still names it. The file stays open while it is
/// followed, so its inode cannot be reused by a newer file.
struct Following {
    reader: LineReader,
    identity: (u64, u64),
}

impl Following {
    fn new(file: std::fs::File) -> io::Result<Following> {
        let meta = file.metadata()?;
        Ok(Following {
            reader: LineReader::new(file),
            identity: (meta.dev(), meta.ino()),
        })
    }

    fn is(&self, meta: &std::fs::Metadata) -> bool {
        (meta.dev(), meta.ino()) == self.identity
    }
}

impl Reader {
    /// After a rotation: reads every file newer than the one just finished
    /// (`None`: every file), oldest first, and returns the newest to keep
    /// following. The files are opened together under the log's shared lock,
    /// so none is renamed meanwhile; the finished file is found by identity,
    /// and when it was rotated out of existence every file present is newer.
    fn catch_up(
        &mut self,
        hub_log: &Path,
        finished: Option<(u64, u64)>,
        printer: &mut Printer<impl Write>,
    ) -> io::Result<Option<Following>> {
        let files = read::open_oldest_first(hub_log)?
            .into_iter()
            .map(|(_, file)| Following::new(file))
            .collect::<io::Result<Vec<_>>>()?;
        let start = files
            .iter()
            .position(|f| Some(f.identity) == finished)
            .map_or(0, |i| i + 1);
        let mut newest = None;
        for mut lines in files.into_iter().skip(start) {
            self.drain(&mut lines.reader, |raw, entry| printer.print(raw, entry))?;
            newest = Some(lines);
        }
        Ok(newest)
    }
}

struct Printer<W: Write> {
    out: W,
    json: bool,
    color: bool,
    offset: UtcOffset,
    utc: bool,
}

impl<W: Write> Printer<W> {
    fn print(&mut self, raw: &[u8], entry: &EntryView) -> io::Result<()> {
        if self.json {
            self.out.write_all(raw)?;
            return self.out.write_all(b"\n");
        }
        let level = entry.level();
        let (on, off) = match (self.color, level) {
            (false, _) => ("", ""),
            (true, LogLevel::Error) => ("\x1b[31m", "\x1b[0m"),
            (true, LogLevel::Warn) => ("\x1b[33m", "\x1b[0m"),
            (true, LogLevel::Debug) => ("\x1b[2m", "\x1b[0m"),
            (true, LogLevel::Info) => ("", ""),
        };
        write!(
            self.out,
            "{}  {on}{:<5}{off}  {:<9}",
            self.time(entry),
            level.as_str(),
            entry.event
        )?;
        if let Some(msg) = &entry.msg {
            write!(self.out, "  {}", without_controls(msg))?;
        }
        let fields = [
            ("rpc", entry.rpc.as_deref()),
            ("agent", entry.agent.as_deref()),
            ("task", entry.task.as_deref()),
            ("slot", entry.slot.as_deref()),
            ("session", entry.session.as_deref()),
            ("hook", entry.hook.as_deref()),
            ("commit", entry.commit.as_deref()),
            ("result", entry.result.as_deref()),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                write!(self.out, "  {key}={}", quoted(value))?;
            }
        }
        for (key, value) in [
            ("took_ms", entry.took_ms),
            ("result_count", entry.result_count),
            ("revision", entry.revision),
        ] {
            if let Some(value) = value {
                write!(self.out, "  {key}={value}")?;
            }
        }
        if let Some(err) = &entry.err {
            write!(self.out, "  {on}err={}{off}", quoted(err))?;
        }
        self.out.write_all(b"\n")
    }

    fn time(&self, entry: &EntryView) -> String {
        if self.utc {
            return entry.ts.to_string();
        }
        match entry.time() {
            Some(at) => {
                let local = at.to_offset(self.offset);
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                    local.year(),
                    u8::from(local.month()),
                    local.day(),
                    local.hour(),
                    local.minute(),
                    local.second()
                )
            }
            None => entry.ts.to_string(),
        }
    }
}

/// Quotes a value that holds spaces or quotes; control characters are
/// escaped so a hostile entry cannot drive the terminal.
fn quoted(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"');
    if plain {
        value.to_string()
    } else {
        format!("{value:?}")
    }
}

/// Escapes control characters (an ESC in a message must not reach the
/// terminal) and leaves everything else as written.
fn without_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}
