//! Follows hub.log for the picture: its last lines first, then every line
//! appended, woken by the kernel (inotify on the state directory) instead of
//! looking at the file on a timer.
//!
//! The directory is watched rather than the file so that a rotation (the
//! writer renames hub.log and creates a new one) is seen too: the file held
//! is read to its end, then the new hub.log from its start, as `bones logs
//! --hub --follow` does. Only direct children of the directory report
//! events, so the JetStream store's churn under `coord/` never wakes it.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

use crate::oplog::LogEntry;
use crate::oplog::read::{Line, LineReader};

/// How much of hub.log's end is read when following starts: enough for
/// [`super::model::LOG_LINES`] lines and the landings among them.
const TAIL_BYTES: u64 = 512 * 1024;

/// The inotify instance, as a descriptor tokio can wait on.
struct Watch(Inotify);

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// The file being read and the identity (device, inode) that tells whether
/// hub.log still names it.
struct Held {
    reader: LineReader,
    identity: (u64, u64),
}

impl Held {
    fn open(path: &Path, from_end: Option<u64>) -> io::Result<Held> {
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        let skip_partial = match from_end {
            Some(tail) if meta.len() > tail => {
                file.seek(SeekFrom::Start(meta.len() - tail))?;
                true
            }
            _ => false,
        };
        let mut held = Held {
            reader: LineReader::new(file),
            identity: (meta.dev(), meta.ino()),
        };
        if skip_partial {
            // the seek landed inside a line
            let _ = held.reader.next_line()?;
        }
        Ok(held)
    }

    /// Every complete entry up to the end of the file.
    fn read_new(&mut self, mut each: impl FnMut(LogEntry)) -> io::Result<()> {
        while let Some(line) = self.reader.next_line()? {
            if let Line::Complete(raw) = line
                && let Ok(entry) = serde_json::from_slice::<LogEntry>(raw)
            {
                each(entry);
            }
        }
        Ok(())
    }
}

/// Follows `hub_log`: hands the tail read at start to `start` (empty when
/// there is no log yet), then each new entry to `each`, until an error.
pub async fn follow(
    hub_log: PathBuf,
    start: impl FnOnce(Vec<LogEntry>),
    mut each: impl FnMut(LogEntry),
) -> io::Result<()> {
    let dir = hub_log.parent().unwrap_or(Path::new(".")).to_path_buf();
    let name = hub_log
        .file_name()
        .unwrap_or(OsStr::new("hub.log"))
        .to_owned();
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    inotify.add_watch(
        &dir,
        AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
    )?;
    // `AsyncFd::new` is deprecated for types whose descriptor may change
    // or close under it (its replacement is `unsafe`); `Watch` owns the
    // inotify descriptor and returns that one for its whole life
    #[allow(deprecated)]
    let watch = AsyncFd::new(Watch(inotify))?;
    // watching before the first read: a line written in between is not missed
    let mut held = Held::open(&hub_log, Some(TAIL_BYTES)).ok();
    let mut tail = Vec::new();
    if let Some(held) = held.as_mut() {
        held.read_new(|entry| tail.push(entry))?;
    }
    start(tail);
    loop {
        let mut ready = watch.readable().await?;
        let events = match ready.try_io(|w| w.get_ref().0.read_events().map_err(io::Error::from)) {
            Ok(events) => events?,
            Err(_would_block) => continue,
        };
        if !events
            .iter()
            .any(|e| e.name.as_deref() == Some(name.as_os_str()))
        {
            continue;
        }
        catch_up(&hub_log, &mut held, &mut each)?;
    }
}

/// Reads what was appended to the file held, then follows hub.log to a new
/// file if it was rotated or truncated.
fn catch_up(
    hub_log: &Path,
    held: &mut Option<Held>,
    each: &mut impl FnMut(LogEntry),
) -> io::Result<()> {
    if let Some(current) = held.as_mut() {
        current.read_new(&mut *each)?;
        match std::fs::metadata(hub_log) {
            Ok(meta)
                if (meta.dev(), meta.ino()) == current.identity
                    && meta.len() >= current.reader.consumed() =>
            {
                return Ok(());
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err),
        }
    }
    // a new file (rotated, truncated, or the first): from its start
    *held = match Held::open(hub_log, None) {
        Ok(held) => Some(held),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };
    if let Some(current) = held.as_mut() {
        current.read_new(each)?;
    }
    Ok(())
}
