//! `bones share` and `bones feed`: the knowledge feed on the command line.

use std::io::{self, BufWriter, Read, Write};

use clap::Args;
use serde::Deserialize;

use super::Failure;
use crate::coord;
use crate::feed::cursor::Cursor;
use crate::feed::prime::{DEFAULT_MAX_CHARS, Digest, MIN_MAX_CHARS};
use crate::feed::{
    Ended, Feed, FeedError, FollowOptions, Kind, NewEntry, Published, Sink, Start, Stored,
};
use crate::state::Paths;
use crate::swarm;
use crate::sys::error::ErrorKind;
use crate::sys::shown::plain;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bones share --type decision \"The hub repository is bare; slots are worktrees of it\"\n  \
    bones share --type convention --tag rust \"Errors: thiserror in the library, anyhow in the CLI\"\n  \
    bones share --type learning --id nats-2-10 \"nats-server 2.10+ is needed for per-key TTL\"\n  \
    printf '%s\\n' '{\"type\":\"learning\",\"text\":\"cargo test needs nats-server\"}' | bones share --stdin\n\n\
    Without --id the id is derived from the type and the text, so the same fact shared twice \
    (by any agent) is stored once. Sharing an id already in the feed stores nothing and succeeds.")]
pub struct ShareArgs {
    /// What the entry records: decision, learning, convention or task.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_kind, required_unless_present = "stdin")]
    kind: Option<Kind>,
    /// The entry, at most 16 KiB.
    #[arg(required_unless_present = "stdin", conflicts_with = "stdin")]
    text: Option<String>,
    /// The entry's id: 1-64 characters from A-Z, a-z, 0-9, '.', '_', '-'.
    #[arg(long, value_name = "ID", conflicts_with = "stdin")]
    id: Option<String>,
    /// A tag (repeatable, at most 16).
    #[arg(long = "tag", value_name = "T")]
    tags: Vec<String>,
    /// Read entries from stdin, one JSON object per line:
    /// {"type": "learning", "text": "...", "id": "...", "tags": ["..."]}
    /// ("type" defaults to --type; "id" and "tags" are optional). Every line
    /// is checked before the first entry is shared.
    #[arg(long, verbatim_doc_comment)]
    stdin: bool,
    /// Share as this slot (default: $BONES_SLOT, the checkout you are in,
    /// else $BONES_AGENT_ID, else this workspace's agent id).
    #[arg(long, value_name = "NAME")]
    slot: Option<String>,
    /// Print {"id", "seq", "duplicate"} per entry instead of the id.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    bones feed                          every entry, oldest first\n  \
    bones feed --type decision --since 7d\n  \
    bones feed --follow --json          stream new entries; survives hub restarts\n  \
    bones feed --prime                  a digest to paste into an agent's context\n\n\
    --follow resumes after the last entry it printed for this slot or agent (its cursor is \
    .bones/feed.cursor/NAME, or NAME+TYPE with --type), so a follower started again shows \
    nothing twice; --since overrides the cursor.")]
pub struct FeedArgs {
    /// Only entries of this type: decision, learning, convention or task.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_kind)]
    kind: Option<Kind>,
    /// Entries after sequence SEQ (the last one you saw), or stored within
    /// DURATION (30m, 2h, 7d), or since an RFC 3339 time.
    #[arg(long, value_name = "SEQ|DURATION", value_parser = parse_since)]
    since: Option<Start>,
    /// Keep printing entries as they are shared, until interrupted.
    #[arg(long)]
    follow: bool,
    /// A compact digest for an agent's context at session start:
    /// conventions, decisions, learnings, tasks, newest first, bounded.
    #[arg(long, conflicts_with_all = ["follow", "kind", "since"])]
    prime: bool,
    /// Bound on the --prime digest, in characters (at least 1000).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CHARS as u64, requires = "prime",
          value_parser = clap::value_parser!(u64).range(MIN_MAX_CHARS as u64..))]
    max_chars: u64,
    /// Follow as this slot (default: $BONES_SLOT, the checkout you are in,
    /// else $BONES_AGENT_ID, else this workspace's agent id).
    #[arg(long, value_name = "NAME")]
    slot: Option<String>,
    /// Print one JSON object per entry (the entry's fields and "seq");
    /// with --prime, one object for the digest.
    #[arg(long)]
    json: bool,
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    Kind::parse(text).map_err(|e| e.to_string())
}

fn parse_since(text: &str) -> Result<Start, String> {
    if let Ok(seq) = text.trim().parse::<u64>() {
        return Ok(Start::After(seq));
    }
    // otherwise a time, read as `bones logs --since` reads it
    super::logs::parse_since(text).map(Start::Since)
}

pub fn share(args: ShareArgs) -> Result<(), Failure> {
    let (paths, runtime) = super::workspace_and_runtime()?;
    runtime.block_on(share_entries(&paths, args))
}

pub fn feed(args: FeedArgs) -> Result<(), Failure> {
    let (paths, runtime) = super::workspace_and_runtime()?;
    runtime.block_on(read_feed(&paths, args))
}

fn who(paths: &Paths, slot: Option<String>) -> Result<String, Failure> {
    swarm::identity(paths, slot).map_err(|e| Failure::usage(e.to_string()))
}

/// Opens the feed of the running hub, starting the hub first when none
/// runs (`BONES_NO_AUTOSTART=1` turns that off). `feed --follow` does not
/// come here: it waits for a hub instead.
async fn open(paths: &Paths) -> Result<Feed, Failure> {
    super::autostart(paths)?;
    let client = coord::connect_running(paths).await?;
    Ok(Feed::open(&async_nats::jetstream::new(client)).await?)
}

/// One line of `bones share --stdin`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    #[serde(rename = "type")]
    kind: Option<String>,
    text: String,
    id: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

async fn share_entries(paths: &Paths, args: ShareArgs) -> Result<(), Failure> {
    let origin = who(paths, args.slot)?;
    let mut entries = if args.stdin {
        read_stdin_entries(args.kind, &args.tags)?
    } else {
        let Some(kind) = args.kind else {
            return Err(Failure::usage(
                "say what the entry records with --type decision|learning|convention|task",
            ));
        };
        let mut entry = NewEntry::new(kind, args.text.unwrap_or_default());
        entry.id = args.id;
        entry.tags = args.tags;
        vec![entry]
    };
    for entry in &entries {
        entry.validate().map_err(FeedError::from)?;
    }
    let feed = open(paths).await?;
    let mut out = io::stdout().lock();
    let mut counts = (0usize, 0usize);
    let show = |published: &Published, out: &mut io::StdoutLock| {
        let line = if args.json {
            super::json::document(published).to_string()
        } else {
            published.id.clone()
        };
        let _ = writeln!(out, "{line}");
    };
    if entries.len() == 1
        && let Some(entry) = entries.pop()
    {
        let kind = entry.kind;
        let published = feed.share(entry, &origin).await?;
        if published.duplicate {
            eprintln!(
                "feed: {} is already in the feed (#{}); nothing stored",
                published.id, published.seq
            );
        } else {
            eprintln!("feed: shared {kind} {} as #{}", published.id, published.seq);
        }
        show(&published, &mut out);
    } else {
        let total = entries.len();
        feed.share_all(entries, &origin, |published| {
            if published.duplicate {
                counts.1 += 1;
            } else {
                counts.0 += 1;
            }
            show(published, &mut out);
        })
        .await?;
        eprintln!(
            "feed: {total} entries: {} stored, {} already in the feed",
            counts.0, counts.1
        );
    }
    let _ = out.flush();
    Ok(())
}

/// Reads `--stdin` input: one JSON object per line, blank lines skipped.
fn read_stdin_entries(
    default_kind: Option<Kind>,
    tags: &[String],
) -> Result<Vec<NewEntry>, Failure> {
    let mut input = String::new();
    io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Failure::usage(format!("cannot read entries from stdin: {e}")))?;
    let mut entries = Vec::new();
    for (number, line) in input.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: String| {
            Failure::usage(format!(
                "stdin line {}: {why}; nothing was shared",
                number + 1
            ))
        };
        let parsed: InputLine = serde_json::from_str(line).map_err(|e| {
            bad(format!(
                "not an entry ({e}); expected {{\"type\": ..., \"text\": ..., \"id\"?: ..., \"tags\"?: [...]}}"
            ))
        })?;
        let kind = match (parsed.kind.as_deref(), default_kind) {
            (Some(text), _) => Kind::parse(text).map_err(|e| bad(e.to_string()))?,
            (None, Some(kind)) => kind,
            (None, None) => return Err(bad("no \"type\" and no --type".to_string())),
        };
        let mut entry = NewEntry::new(kind, parsed.text);
        entry.id = parsed.id;
        entry.tags = parsed.tags;
        entry.tags.extend(tags.iter().cloned());
        entry.validate().map_err(|e| bad(e.to_string()))?;
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(Failure::usage(
            "no entries on stdin; give one JSON object per line",
        ));
    }
    Ok(entries)
}

async fn read_feed(paths: &Paths, args: FeedArgs) -> Result<(), Failure> {
    if args.follow {
        return follow(paths, args).await;
    }
    let feed = open(paths).await?;
    if args.prime {
        let mut all = Vec::new();
        let summary = feed
            .read(Start::After(0), |stored| all.push(stored))
            .await?;
        note_unreadable(summary.unreadable);
        let digest = Digest::build(all, usize::try_from(args.max_chars).unwrap_or(usize::MAX));
        let text = if args.json {
            format!("{}\n", super::json::document(&digest))
        } else {
            digest.text
        };
        return write_all(text.as_bytes());
    }
    let mut out = Printer::new(args.json, args.kind);
    let summary = feed
        .read(args.since.unwrap_or(Start::After(0)), |stored| {
            let _ = out.entry(&stored);
        })
        .await?;
    let _ = out.flush();
    note_unreadable(summary.unreadable);
    if out.shown == 0 && out.healthy {
        eprintln!("feed: no entries");
    }
    Ok(())
}

async fn follow(paths: &Paths, args: FeedArgs) -> Result<(), Failure> {
    let reader = who(paths, args.slot.clone())?;
    let cursor = Cursor::of(paths, &reader, args.kind);
    let mut printer = Printer::new(args.json, args.kind);
    let options = FollowOptions {
        start: args.since,
        cursor: Some(cursor),
    };
    // SIGINT, SIGTERM or SIGHUP end the follow, which then saves its
    // cursor and exits 0; a reader of stdout that went away (`| head`)
    // ends it too: not an error
    let _ended: Ended =
        crate::feed::follow(paths, options, &mut printer, crate::sys::signals::stopped()).await?;
    Ok(())
}

fn note_unreadable(count: usize) {
    if count > 0 {
        eprintln!("feed: skipped {count} message(s) that are not feed entries");
    }
}

/// Writes to stdout; a closed pipe is not an error.
fn write_all(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Failure::new(
            ErrorKind::Io,
            format!("cannot write to stdout: {e}"),
        )),
        _ => Ok(()),
    }
}

/// Prints entries as text or JSON lines, filtered by type.
struct Printer {
    out: BufWriter<io::Stdout>,
    json: bool,
    kind: Option<Kind>,
    shown: usize,
    /// False once stdout refused a write.
    healthy: bool,
}

impl Printer {
    fn new(json: bool, kind: Option<Kind>) -> Printer {
        Printer {
            out: BufWriter::with_capacity(64 * 1024, io::stdout()),
            json,
            kind,
            shown: 0,
            healthy: true,
        }
    }
}

impl Sink for Printer {
    fn entry(&mut self, stored: &Stored) -> io::Result<()> {
        if !self.healthy {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if self.kind.is_some_and(|k| k != stored.entry.kind) {
            return Ok(());
        }
        let written = if self.json {
            serde_json::to_writer(&mut self.out, &super::json::document(stored))
                .map_err(io::Error::from)
                .and_then(|()| self.out.write_all(b"\n"))
        } else {
            write_text(&mut self.out, stored)
        };
        if written.is_err() {
            self.healthy = false;
        }
        self.shown += 1;
        written
    }

    fn flush(&mut self) -> io::Result<()> {
        let flushed = self.out.flush();
        if flushed.is_err() {
            self.healthy = false;
        }
        flushed
    }

    fn notice(&mut self, text: &str) {
        eprintln!("feed: {text}");
    }
}

/// `#42 decision  fix-parser  2026-11-23T09:00:01Z  e-…  [tags]` and the
/// text indented below.
fn write_text(out: &mut impl Write, stored: &Stored) -> io::Result<()> {
    let e = &stored.entry;
    let at = e
        .created_at
        .get(..19)
        .map_or(e.created_at.clone(), |s| format!("{s}Z"));
    // entries are written by any token holder: no terminal escapes
    write!(
        out,
        "#{} {:<10} {}  {at}  {}",
        stored.seq,
        e.kind.as_str(),
        plain(&e.origin),
        plain(&e.id)
    )?;
    if !e.tags.is_empty() {
        write!(out, "  [{}]", plain(&e.tags.join(", ")))?;
    }
    writeln!(out)?;
    for line in e.text.lines() {
        writeln!(out, "    {}", plain(line))?;
    }
    Ok(())
}
