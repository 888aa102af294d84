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
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::log::LogLevel;

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

/// One entry, borrowed from its raw line where possible.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EntryView<'a> {
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    #[serde(borrow)]
    pub level: Cow<'a, str>,
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    #[serde(borrow, default)]
    pub msg: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub rpc: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub agent: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub task: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub slot: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub session: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub hook: Option<Cow<'a, str>>,
    #[serde(default)]
    pub took_ms: Option<u64>,
    #[serde(default)]
    pub result_count: Option<u64>,
    #[serde(borrow, default)]
    pub err: Option<Cow<'a, str>>,
}

impl EntryView<'_> {
    /// The level, read leniently (unknown names count as INFO, as the
    /// writer of an older or newer version may spell them differently).
    pub fn level(&self) -> LogLevel {
        LogLevel::parse(&self.level).unwrap_or(LogLevel::Info)
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
    let entry: EntryView = serde_json::from_slice(line).ok()?;
    // RFC 3339 always has 'T' at index 10; checked cheaply, parsed on demand
    (entry.ts.len() >= 20 && entry.ts.as_bytes().get(10) == Some(&b'T')).then_some(entry)
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

    proptest! {
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
