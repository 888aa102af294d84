//! Reading `hub.log`: the rotated files as one stream, tolerant of anything.
//!
//! The writer guarantees whole lines, but a reader must survive whatever is
//! on disk: a torn last line from a crash (skipped silently), lines that are
//! not entries (skipped and counted), invalid UTF-8, NULs, and lines so long
//! that buffering them would exhaust memory (skipped without buffering).
//! Memory stays bounded by [`MAX_LINE`] whatever the file size.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::oplog::{FileLock, LogLevel};

/// Longest line considered; longer ones are counted as malformed.
pub const MAX_LINE: usize = 1 << 20;
const READ_BUFFER: usize = 256 * 1024;

/// The log files of one `hub.log`, oldest first: `hub.log.N` ... `hub.log.1`,
/// then `hub.log`. Missing files are left out.
pub fn files_oldest_first(hub_log: &Path) -> Vec<PathBuf> {
    let name = hub_log
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!("{name}.");
    let mut rotated: Vec<(u32, PathBuf)> = hub_log
        .parent()
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let n = file_name.strip_prefix(&prefix)?.parse::<u32>().ok()?;
            Some((n, entry.path()))
        })
        .collect();
    rotated.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if hub_log.is_file() {
        files.push(hub_log.to_path_buf());
    }
    files
}

/// The log files of one `hub.log`, oldest first as [`files_oldest_first`]
/// lists them, each opened. They are listed and opened under the shared
/// lock on the current hub.log, so no rotation runs meanwhile (see
/// [`crate::oplog`]): a rename chain half done would show one file under two
/// names, or hide one. Once open, a file reads the same whatever is renamed
/// later. Files that vanish before they are opened are left out.
pub fn open_oldest_first(hub_log: &Path) -> io::Result<Vec<(PathBuf, File)>> {
    // bounded: each round follows a rotation that happened between the
    // open and the lock
    for _ in 0..8 {
        let current = match File::options()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(hub_log)
        {
            Ok(current) => current,
            // no hub.log (or a link bones does not write through): nothing
            // rotates, so the listing needs no lock
            Err(_) => return Ok(open_listed(hub_log, None)),
        };
        let _shared = FileLock::shared(&current)?;
        let held = current.metadata()?;
        let still_current = std::fs::symlink_metadata(hub_log)
            .is_ok_and(|m| m.dev() == held.dev() && m.ino() == held.ino());
        if still_current {
            return Ok(open_listed(hub_log, Some(&current)));
        }
    }
    Ok(open_listed(hub_log, None))
}

fn open_listed(hub_log: &Path, current: Option<&File>) -> Vec<(PathBuf, File)> {
    files_oldest_first(hub_log)
        .into_iter()
        .filter_map(|path| {
            let file = match current {
                Some(current) if path == hub_log => current.try_clone().ok()?,
                _ => File::open(&path).ok()?,
            };
            Some((path, file))
        })
        .collect()
}

/// Generates [`EntryView`] and the fast parser's key table ([`Key`]) from
/// [`crate::oplog::schema::entry_fields!`], the list the writer's
/// [`crate::oplog::LogEntry`] comes from too.
macro_rules! entry_view {
    (
        text { $($(#[$text_doc:meta])* $text:ident,)* }
        number { $($(#[$number_doc:meta])* $number:ident,)* }
    ) => {
        /// One entry, borrowed from its raw line where possible. It
        /// serializes back to the entry the writer wrote (the schema's test
        /// relies on that).
        #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
        pub struct EntryView<'a> {
            #[serde(borrow)]
            pub ts: Cow<'a, str>,
            #[serde(borrow)]
            pub level: Cow<'a, str>,
            #[serde(borrow)]
            pub event: Cow<'a, str>,
            $(
                $(#[$text_doc])*
                #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
                pub $text: Option<Cow<'a, str>>,
            )*
            $(
                $(#[$number_doc])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $number: Option<u64>,
            )*
        }

        impl<'a> EntryView<'a> {
            /// An entry with every field empty, for [`parse_compact`] to fill.
            fn blank() -> EntryView<'static> {
                EntryView {
                    ts: Cow::Borrowed(""),
                    level: Cow::Borrowed(""),
                    event: Cow::Borrowed(""),
                    $($text: None,)*
                    $($number: None,)*
                }
            }

            /// Stores a string value; false when `key` holds a number.
            #[inline(always)]
            fn set_text(&mut self, key: Key, value: &'a str) -> bool {
                let value = Cow::Borrowed(value);
                match key {
                    Key::ts => self.ts = value,
                    Key::level => self.level = value,
                    Key::event => self.event = value,
                    $(Key::$text => self.$text = Some(value),)*
                    _ => return false,
                }
                true
            }

            /// Stores a number; false when `key` holds a string.
            #[inline(always)]
            fn set_number(&mut self, key: Key, value: u64) -> bool {
                match key {
                    $(Key::$number => self.$number = Some(value),)*
                    _ => return false,
                }
                true
            }
        }

        /// The fast parser's key table: every field of an entry, each
        /// variant named as its key and numbered for its bit in the set of
        /// keys seen on a line.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Key {
            ts,
            level,
            event,
            $($text,)*
            $($number,)*
        }

        impl Key {
            /// The field a key names; `None` for keys an entry does not have.
            #[inline(always)]
            fn of(name: &str) -> Option<Key> {
                match name {
                    "ts" => Some(Key::ts),
                    "level" => Some(Key::level),
                    "event" => Some(Key::event),
                    $(stringify!($text) => Some(Key::$text),)*
                    $(stringify!($number) => Some(Key::$number),)*
                    _ => None,
                }
            }
        }
    };
}

crate::oplog::schema::entry_fields!(entry_view);

impl Key {
    /// The keys every entry has.
    const REQUIRED: u32 = Key::ts.bit() | Key::level.bit() | Key::event.bit();

    #[inline(always)]
    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

impl EntryView<'_> {
    /// The level, read leniently (unknown names count as INFO, as the
    /// writer of an older or newer version may spell them differently).
    pub fn level(&self) -> LogLevel {
        // the names the writer uses, without the allocation of the lenient parse
        match self.level.as_ref() {
            "INFO" => LogLevel::Info,
            "WARN" => LogLevel::Warn,
            "ERROR" => LogLevel::Error,
            "DEBUG" => LogLevel::Debug,
            other => LogLevel::parse(other).unwrap_or(LogLevel::Info),
        }
    }

    /// The timestamp, if it is RFC 3339.
    pub fn time(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.ts, &Rfc3339).ok()
    }
}

/// Parses one line (without its newline). `None` when it is not an entry:
/// not a JSON object, or missing a string `ts`, `level` or `event`, or a
/// `ts` that is not RFC 3339.
pub fn parse_line(line: &[u8]) -> Option<EntryView<'_>> {
    // filled in place: moving this large struct around costs more than
    // parsing a short line
    let mut entry = EntryView::blank();
    if !parse_compact(line, &mut entry) {
        entry = serde_json::from_slice(line).ok()?;
    }
    // RFC 3339 always has 'T' at index 10; checked cheaply, parsed on demand
    (entry.ts.len() >= 20 && entry.ts.as_bytes().get(10) == Some(&b'T')).then_some(entry)
}

/// The fast path of [`parse_line`], for lines as the writer makes them: one
/// compact object (no whitespace) whose values are strings without escapes
/// or unsigned integers. Fills `entry` (which must come in empty) and
/// returns true, or returns false for "not sure", never for "malformed":
/// the caller then asks serde_json. So every line this accepts is one
/// serde_json accepts with the same result, and everything else gets
/// serde_json's verdict. Several times faster than serde_json on hub.log.
#[inline]
fn parse_compact<'a>(line: &'a [u8], entry: &mut EntryView<'a>) -> bool {
    compact_into(line, entry).is_some()
}

#[inline(always)]
fn compact_into<'a>(line: &'a [u8], entry: &mut EntryView<'a>) -> Option<()> {
    // control characters are invalid in strings, and this path takes no
    // whitespace between tokens either (one vectorised pass per line)
    if line.iter().fold(false, |any, &b| any | (b < 0x20)) {
        return None;
    }
    // validated once per line; every slice below ends next to an ASCII
    // quote, so it is a char boundary
    let mut rest = std::str::from_utf8(line)
        .ok()?
        .strip_prefix('{')?
        .strip_suffix('}')?;
    // one bit per known field: a duplicate is serde_json's to judge
    let mut seen = 0u32;
    loop {
        let (name, after) = compact_str(rest.strip_prefix('"')?)?;
        rest = after.strip_prefix(':')?;
        let key = Key::of(name);
        if let Some(key) = key {
            if seen & key.bit() != 0 {
                return None;
            }
            seen |= key.bit();
        }
        match rest.as_bytes().first()? {
            b'"' => {
                let (value, after) = compact_str(&rest[1..])?;
                rest = after;
                // a string where a number belongs
                if let Some(key) = key
                    && !entry.set_text(key, value)
                {
                    return None;
                }
            }
            b'0'..=b'9' => {
                let bytes = rest.as_bytes();
                let digits = bytes
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .unwrap_or(bytes.len());
                // leading zeros are invalid JSON; 19 digits always fit a u64
                if digits > 19 || (digits > 1 && bytes[0] == b'0') {
                    return None;
                }
                let value = bytes[..digits]
                    .iter()
                    .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                rest = &rest[digits..];
                // a number where a string belongs
                if let Some(key) = key
                    && !entry.set_number(key, value)
                {
                    return None;
                }
            }
            // null, booleans, negative or fractional numbers, arrays,
            // objects, whitespace: serde_json's to judge
            _ => return None,
        }
        if rest.is_empty() {
            break;
        }
        rest = rest.strip_prefix(',')?;
    }
    (seen & Key::REQUIRED == Key::REQUIRED).then_some(())
}

/// A string's content up to its closing quote (which `text` starts after),
/// and what follows the quote. `None` for an escape or a missing quote.
#[inline]
fn compact_str(text: &str) -> Option<(&str, &str)> {
    let end = quote_or_backslash(text.as_bytes())?;
    if text.as_bytes()[end] != b'"' {
        return None;
    }
    Some((&text[..end], &text[end + 1..]))
}

/// The index of the first `"` or `\\`, eight bytes at a time: a byte equal
/// to either one becomes zero after the xor, and the lowest zero byte of a
/// word is found exactly by the classic has-zero-byte bit trick. Not
/// `memchr::memchr2`: on hub.log's short strings it measured slower
/// (`bench logs` 13.9 against 14.7 at 1M lines).
#[inline(always)]
fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut at = 0;
    while let Some(word) = bytes[at..].first_chunk::<8>() {
        let v = u64::from_le_bytes(*word);
        let found =
            zero_bytes(v ^ (ONES * u64::from(b'"'))) | zero_bytes(v ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|i| at + i)
}

/// Which entries to keep.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Keep this level and above.
    pub min_level: Option<LogLevel>,
    /// Keep only these events (any of them); empty keeps all.
    pub events: Vec<String>,
    /// Keep entries at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Keep entries whose `msg` or `err` contains this text.
    pub grep: Option<String>,
}

impl Filter {
    pub fn matches(&self, entry: &EntryView) -> bool {
        if let Some(min) = self.min_level
            && entry.level() < min
        {
            return false;
        }
        if !self.events.is_empty() && !self.events.iter().any(|e| e == &entry.event) {
            return false;
        }
        if let Some(grep) = &self.grep {
            let hit = |field: &Option<Cow<str>>| {
                field.as_deref().is_some_and(|t| t.contains(grep.as_str()))
            };
            if !hit(&entry.msg) && !hit(&entry.err) {
                return false;
            }
        }
        if let Some(since) = self.since {
            match entry.time() {
                Some(at) if at >= since => {}
                _ => return false,
            }
        }
        true
    }
}

/// What a line reader produced.
pub enum Line<'a> {
    /// A complete line, without its newline.
    Complete(&'a [u8]),
    /// A line longer than [`MAX_LINE`]; its bytes were discarded.
    Oversized,
}

/// Splits a file into lines with bounded memory. At end of file a partial
/// line is kept, so that [`LineReader::next_line`] completes it when a
/// follower reads on after the writer appended the rest.
pub struct LineReader {
    reader: BufReader<File>,
    line: Vec<u8>,
    /// `line` holds a finished line already handed out.
    handed_out: bool,
    /// Bytes of the read buffer handed out as a line (borrowed straight from
    /// the buffer, without copying) and to be consumed at the next call.
    pending: usize,
    /// The current line passed [`MAX_LINE`]; its bytes are being dropped.
    oversized: bool,
    consumed: u64,
}

impl LineReader {
    pub fn new(file: File) -> LineReader {
        LineReader {
            reader: BufReader::with_capacity(READ_BUFFER, file),
            line: Vec::new(),
            handed_out: false,
            pending: 0,
            oversized: false,
            consumed: 0,
        }
    }

    pub fn open(path: &Path) -> io::Result<LineReader> {
        File::open(path).map(LineReader::new)
    }

    pub fn file(&self) -> &File {
        self.reader.get_ref()
    }

    /// True when bytes of an unfinished line are held.
    pub fn has_partial(&self) -> bool {
        (!self.handed_out && !self.line.is_empty()) || self.oversized
    }

    /// Bytes consumed from the file so far (complete and partial lines).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The next complete line, or `None` at end of file.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.reader.consume(std::mem::take(&mut self.pending));
        if std::mem::take(&mut self.handed_out) {
            self.line.clear();
        }
        loop {
            let available = match self.reader.fill_buf() {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(None);
            }
            match memchr::memchr(b'\n', available) {
                // the whole line is in the buffer: hand it out from there
                Some(end) if self.line.is_empty() && !self.oversized && end <= MAX_LINE => {
                    self.pending = end + 1;
                    self.consumed += end as u64 + 1;
                    return Ok(Some(Line::Complete(&self.reader.buffer()[..end])));
                }
                Some(end) => {
                    if !self.oversized {
                        if self.line.len() + end > MAX_LINE {
                            self.oversized = true;
                        } else {
                            self.line.extend_from_slice(&available[..end]);
                        }
                    }
                    self.reader.consume(end + 1);
                    self.consumed += end as u64 + 1;
                    self.handed_out = true;
                    if std::mem::take(&mut self.oversized) {
                        return Ok(Some(Line::Oversized));
                    }
                    return Ok(Some(Line::Complete(&self.line)));
                }
                None => {
                    let len = available.len();
                    if !self.oversized {
                        if self.line.len() + len > MAX_LINE {
                            self.oversized = true;
                            self.line.clear();
                        } else {
                            self.line.extend_from_slice(available);
                        }
                    }
                    self.reader.consume(len);
                    self.consumed += len as u64;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn reader_over(bytes: &[u8]) -> (tempfile::NamedTempFile, LineReader) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(bytes).unwrap();
        let reader = LineReader::open(file.path()).unwrap();
        (file, reader)
    }

    fn lines(reader: &mut LineReader) -> Vec<Option<Vec<u8>>> {
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            out.push(match line {
                Line::Complete(bytes) => Some(bytes.to_vec()),
                Line::Oversized => None,
            });
        }
        out
    }

    #[test]
    fn splits_lines_and_holds_a_partial_tail_until_completed() {
        let (mut file, mut reader) = reader_over(b"one\ntwo\npart");
        assert_eq!(
            lines(&mut reader),
            vec![Some(b"one".to_vec()), Some(b"two".to_vec())]
        );
        assert!(reader.has_partial());
        file.write_all(b"ial\n").unwrap();
        file.flush().unwrap();
        assert_eq!(lines(&mut reader), vec![Some(b"partial".to_vec())]);
        assert!(!reader.has_partial());
    }

    #[test]
    fn oversized_lines_are_skipped_without_buffering() {
        let mut bytes = vec![b'x'; MAX_LINE + 10];
        bytes.extend_from_slice(b"\nafter\n");
        let (_file, mut reader) = reader_over(&bytes);
        assert_eq!(lines(&mut reader), vec![None, Some(b"after".to_vec())]);
    }

    #[test]
    fn parses_entries_and_rejects_everything_else() {
        let line = br#"{"ts":"2026-11-23T09:43:10Z","level":"WARN","event":"rpc","rpc":"tasks.claim","took_ms":12,"extra":[1,2]}"#;
        let entry = parse_line(line).unwrap();
        assert_eq!(entry.level(), LogLevel::Warn);
        assert_eq!(entry.rpc.as_deref(), Some("tasks.claim"));
        assert_eq!(entry.took_ms, Some(12));
        assert!(entry.time().is_some());
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            br#"{"level":"INFO","event":"rpc"}"#,
            br#"{"ts":"yesterday","level":"INFO","event":"rpc"}"#,
            br#"{"ts":1,"level":"INFO","event":"rpc"}"#,
            b"\xff\xfe\x00",
        ] {
            assert!(
                parse_line(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn filter_combines_level_event_grep_and_since() {
        let e = parse_line(br#"{"ts":"2026-11-23T09:43:10Z","level":"ERROR","event":"lifecycle","msg":"hub: bring-up failed","err":"disk full"}"#).unwrap();
        let since = |s: &str| Some(OffsetDateTime::parse(s, &Rfc3339).unwrap());
        let mut f = Filter {
            min_level: Some(LogLevel::Warn),
            events: vec!["rpc".into(), "lifecycle".into()],
            since: since("2026-11-23T09:00:00Z"),
            grep: Some("disk".into()),
        };
        assert!(f.matches(&e));
        f.grep = Some("nothing".into());
        assert!(!f.matches(&e));
        f.grep = None;
        f.since = since("2026-11-23T10:00:00Z");
        assert!(!f.matches(&e));
        f.since = None;
        f.events = vec!["rpc".into()];
        assert!(!f.matches(&e));
    }

    #[test]
    fn rotated_files_come_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "hub.log",
            "hub.log.1",
            "hub.log.10",
            "hub.log.2",
            "hub.log.x",
            "other.log.1",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let names: Vec<String> = files_oldest_first(&dir.path().join("hub.log"))
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["hub.log.10", "hub.log.2", "hub.log.1", "hub.log"]);
    }

    /// The fast path alone: `None` when it defers to serde_json.
    fn compact(line: &[u8]) -> Option<EntryView<'_>> {
        let mut entry = EntryView::blank();
        parse_compact(line, &mut entry).then_some(entry)
    }

    /// What [`parse_line`] was before the fast path: serde_json alone.
    fn parse_with_serde(line: &[u8]) -> Option<EntryView<'_>> {
        let entry: EntryView = serde_json::from_slice(line).ok()?;
        (entry.ts.len() >= 20 && entry.ts.as_bytes().get(10) == Some(&b'T')).then_some(entry)
    }

    /// The writer, the view and the fast parser agree on the schema: an
    /// entry with every field set, as the writer writes it, is read by the
    /// fast path (no field unknown to its key table, no field deferred to
    /// serde_json) into a view that serializes back to the same entry. The
    /// literal names every field, so a field added to the schema fails to
    /// compile here until it is tested too.
    #[test]
    fn every_field_the_writer_writes_is_read_back_by_the_fast_path() {
        use crate::oplog::{EventKind, LogEntry};
        let entry = LogEntry {
            ts: "2026-11-23T09:43:10Z".to_string(),
            level: LogLevel::Warn,
            event: EventKind::Rpc,
            msg: Some("swarm.commit landed".to_string()),
            rpc: Some("swarm.commit".to_string()),
            agent: Some("agent-1".to_string()),
            task: Some("bn-7".to_string()),
            slot: Some("alice".to_string()),
            session: Some("s-1".to_string()),
            hook: Some("stop".to_string()),
            took_ms: Some(12),
            result_count: Some(3),
            err: Some("claimed by agent 2".to_string()),
            revision: Some(41),
            commit: Some("0123456789abcdef0123456789abcdef01234567".to_string()),
            result: Some("ok".to_string()),
            by: Some("alice".to_string()),
        };
        let line = serde_json::to_vec(&entry).unwrap();
        let written: serde_json::Value = serde_json::from_slice(&line).unwrap();
        for key in written.as_object().unwrap().keys() {
            assert!(
                Key::of(key).is_some(),
                "the fast parser does not know {key}"
            );
        }
        let view = compact(&line).expect("the fast path reads what the writer writes");
        assert_eq!(serde_json::to_value(&view).unwrap(), written);
        assert_eq!(parse_line(&line), Some(view));
    }

    #[test]
    fn compact_path_defers_whatever_it_does_not_fully_understand() {
        let ok = r#"{"ts":"2026-11-23T09:43:10.123Z","level":"WARN","event":"rpc","msg":"tasks.claim {x}, y:z","rpc":"tasks.claim","agent":"agent-3","task":"t-1","slot":"s","session":"u","hook":"h","took_ms":12,"result_count":0,"err":"été","extra":"x","n":7}"#.as_bytes();
        let entry = compact(ok).unwrap();
        assert_eq!(Some(entry.clone()), parse_with_serde(ok));
        assert_eq!(entry.err.as_deref(), Some("\u{e9}t\u{e9}"));
        assert_eq!(entry.result_count, Some(0));
        for deferred in [
            // whitespace, escapes, null, booleans, signs, fractions, nesting
            &br#"{ "ts":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc"}"#[..],
            br#"{"ts":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc"} "#,
            br#"{"ts":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc","msg":"a\"b"}"#,
            br#"{"t\u0073":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc"}"#,
            br#"{"ts":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc","msg":null}"#,
            br#"{"ts":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc","x":true}"#,
            br#"{"ts":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc","took_ms":-1}"#,
            br#"{"ts":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc","took_ms":1.5}"#,
            br#"{"ts":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc","x":[1]}"#,
            br#"["2026-11-23T09:43:10Z","INFO","rpc"]"#,
            // not entries at all
            br#"{"ts":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc","took_ms":01}"#,
            br#"{"ts":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc","took_ms":"1"}"#,
            br#"{"ts":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc","msg":1}"#,
            br#"{"ts":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc","ts":"2026-11-23T09:43:10Z"}"#,
            br#"{"ts":"2026-11-23T09:43:10Z","level":"INFO"}"#,
            br#"{"ts":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc","took_ms":99999999999999999999}"#,
            br#"{"ts":"2026-11-23T09:43:10Z","level":"INFO","event":"rpc",}"#,
            b"{\"ts\":\"2026-11-23T09:43:10Z\",\"level\":\"INFO\",\"event\":\"rpc\",\"msg\":\"\xff\"}",
            b"{\"ts\":\"2026-11-23T09:43:10Z\",\"level\":\"INFO\",\"event\":\"rpc\",\"msg\":\"a\tb\"}",
            br#"{}"#,
            br#"{"#,
            b"",
        ] {
            assert!(
                compact(deferred).is_none(),
                "{}",
                String::from_utf8_lossy(deferred)
            );
        }
    }

    #[test]
    fn quote_or_backslash_finds_the_first_of_either() {
        for len in 0..40 {
            for at in 0..len {
                for (c, other) in [(b'"', b'\\'), (b'\\', b'"')] {
                    // bytes that defeat a careless bit trick: 0x00, 0x01, 0x80, 0xff
                    let mut bytes: Vec<u8> = (0..len)
                        .map(|i| [b'a', 0x01, 0x80, 0xff, 0x00, 0x21, 0x23, 0x5b][i % 8])
                        .collect();
                    bytes[at] = c;
                    if at + 1 < len {
                        bytes[at + 1] = other;
                    }
                    let want = bytes.iter().position(|&b| b == b'"' || b == b'\\');
                    assert_eq!(quote_or_backslash(&bytes), want, "{bytes:?}");
                }
            }
            let plain = vec![b'x'; len];
            assert_eq!(quote_or_backslash(&plain), None);
        }
    }

    #[test]
    fn lines_across_read_buffer_boundaries_come_out_whole() {
        let mut text = Vec::new();
        let mut want = Vec::new();
        let mut i = 0usize;
        while text.len() < 3 * READ_BUFFER + 100 {
            let line = format!("{i}:{}", "y".repeat(i * 7919 % 3000));
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
            want.push(Some(line.into_bytes()));
            i += 1;
        }
        let (_file, mut reader) = reader_over(&text);
        assert_eq!(lines(&mut reader), want);
        assert_eq!(reader.consumed(), text.len() as u64);
        assert!(!reader.has_partial());
    }

    /// One JSON member of a line for the agreement property: known and
    /// unknown keys, easy values and every kind the fast path must defer.
    fn member() -> impl Strategy<Value = String> {
        // regexes, each matching exactly the key named
        let key = prop_oneof![
            1 => "ts",
            1 => "level",
            1 => "event",
            3 => "msg",
            3 => "err",
            3 => "took_ms",
            3 => "result_count",
            6 => "[a-z_]{1,6}",
            1 => "t\\\\u0073",
        ];
        let value = prop_oneof![
            1 => Just("\"2026-11-23T09:43:10.5Z\"".to_string()),
            1 => Just("\"2026-11-23\"".to_string()),
            8 => "[a-z0-9 ,:{}\\[\\]\u{e9}\u{1F600}]{0,8}".prop_map(|s| format!("\"{s}\"")),
            1 => "[a-z\"\\\\\t\u{7f}]{0,4}".prop_map(|s| format!("\"{s}\"")),
            6 => "(0|[1-9][0-9]{0,20})",
            1 => "(0[0-9]|-[0-9]|[0-9]\\.[0-9]|[0-9]e2)",
            1 => Just("null".to_string()),
            1 => Just("true".to_string()),
            1 => Just("[1,\"a\"]".to_string()),
            1 => Just("{\"a\":1}".to_string()),
        ];
        let space = || prop_oneof![9 => Just(""), 1 => Just(" ")];
        (key, value, space(), space()).prop_map(|(k, v, a, b)| format!("\"{k}\"{a}:{b}{v}"))
    }

    proptest! {
        #[test]
        fn compact_path_agrees_with_serde(
            members in proptest::collection::vec(member(), 0..6),
            required in prop::bool::weighted(0.8),
            cut in any::<prop::sample::Index>(),
            trim in prop::bool::weighted(0.2),
        ) {
            let mut all = if required {
                vec![
                    r#""ts":"2026-11-23T09:43:10Z""#.to_string(),
                    r#""level":"INFO""#.to_string(),
                    r#""event":"rpc""#.to_string(),
                ]
            } else {
                Vec::new()
            };
            all.extend(members);
            let mut line = format!("{{{}}}", all.join(",")).into_bytes();
            if trim {
                // a torn or mangled line
                line.truncate(cut.index(line.len() + 1));
            }
            if let Some(fast) = compact(&line) {
                let slow: Option<EntryView> = serde_json::from_slice(&line).ok();
                prop_assert_eq!(Some(fast), slow, "{}", String::from_utf8_lossy(&line));
            }
            prop_assert_eq!(parse_line(&line), parse_with_serde(&line));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse_line(&bytes);
            let (_file, mut reader) = reader_over(&bytes);
            let mut total = 0;
            while let Some(line) = reader.next_line().unwrap() {
                if let Line::Complete(l) = line {
                    let _ = parse_line(l);
                    total += l.len() + 1;
                }
            }
            prop_assert!(total <= bytes.len());
        }

        #[test]
        fn lines_round_trip(parts in proptest::collection::vec("[^\n]{0,50}", 0..30)) {
            let text: String = parts.iter().map(|p| format!("{p}\n")).collect();
            let (_file, mut reader) = reader_over(text.as_bytes());
            let got: Vec<Vec<u8>> = lines(&mut reader).into_iter().map(Option::unwrap).collect();
            let want: Vec<Vec<u8>> = parts.iter().map(|p| p.as_bytes().to_vec()).collect();
            prop_assert_eq!(got, want);
        }
    }
}
