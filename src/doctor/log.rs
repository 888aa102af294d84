//! ERROR entries in hub.log during the last hour: what went wrong recently
//! that nobody may have read. Read with the same reader as `bones logs`,
//! so both agree on what an entry is.

use std::io;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use super::{Context, Finding, Report};
use crate::oplog::LogLevel;
use crate::oplog::read;
use crate::oplog::read::{Filter, Line, LineReader};

/// How far back doctor looks.
const WINDOW: Duration = Duration::from_secs(3600);

/// What the window holds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Errors {
    count: u64,
    /// `ts msg: err` of the newest.
    latest: Option<String>,
}

pub(super) fn check(ctx: &Context, report: &mut Report) {
    let since = ctx.now - WINDOW;
    let errors = match errors_since(&ctx.paths.hub_log, since) {
        Ok(errors) => errors,
        Err(err) => {
            let finding = Finding::warning(
                "hub-log-unreadable",
                format!("cannot read {}: {err}", ctx.paths.hub_log.display()),
                format!("ls -l {}*", super::shell_quote(&ctx.paths.hub_log)),
            );
            report.record("hub-log", "unreadable", vec![finding]);
            return;
        }
    };
    let Some(latest) = errors.latest else {
        report.record("hub-log", "no errors in the last hour", Vec::new());
        return;
    };
    let n = errors.count;
    let finding = Finding::warning(
        "hub-log-errors",
        format!(
            "{n} ERROR entr{} in hub.log in the last hour; the latest: {latest}",
            if n == 1 { "y" } else { "ies" }
        ),
        "bones logs --hub --level error --since 1h  # read them, then fix their cause".to_string(),
    );
    report.record(
        "hub-log",
        format!("{n} error(s) in the last hour"),
        vec![finding],
    );
}

fn errors_since(hub_log: &std::path::Path, since: OffsetDateTime) -> io::Result<Errors> {
    let filter = Filter {
        min_level: Some(LogLevel::Error),
        since: Some(since),
        ..Filter::default()
    };
    let cutoff = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(since.unix_timestamp()).unwrap_or(0));
    let mut errors = Errors::default();
    for path in read::files_oldest_first(hub_log) {
        // a file last written before the window holds nothing inside it
        let modified = std::fs::metadata(&path).and_then(|m| m.modified());
        if modified.is_ok_and(|at| at < cutoff) {
            continue;
        }
        let mut lines = match LineReader::open(&path) {
            Ok(lines) => lines,
            // rotated away between listing and opening
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        while let Some(line) = lines.next_line()? {
            let Line::Complete(bytes) = line else {
                continue;
            };
            let Some(entry) = read::parse_line(bytes) else {
                continue;
            };
            if !filter.matches(&entry) {
                continue;
            }
            errors.count += 1;
            let mut text = format!("{} {}", entry.ts, entry.msg.as_deref().unwrap_or(""));
            if let Some(err) = &entry.err {
                text.push_str(": ");
                text.push_str(err);
            }
            // one line, whatever the entry held
            errors.latest = Some(text.replace('\n', " "));
        }
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oplog::LogEntry;
    use crate::sys::clock::format_rfc3339;

    #[test]
    fn counts_errors_of_the_window_across_rotated_files() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("hub.log");
        let now = OffsetDateTime::now_utc();
        let line = |age: Duration, level: LogLevel, msg: &str| {
            let mut entry = LogEntry::lifecycle(level, msg).with_err("boom\nagain");
            entry.ts = format_rfc3339(now - age);
            format!("{}\n", serde_json::to_string(&entry).unwrap())
        };
        let minute = Duration::from_secs(60);
        std::fs::write(
            tmp.path().join("hub.log.1"),
            line(minute * 30, LogLevel::Error, "first"),
        )
        .unwrap();
        let current = [
            line(minute * 120, LogLevel::Error, "too old"),
            line(minute * 10, LogLevel::Warn, "only a warning"),
            line(minute * 5, LogLevel::Error, "second"),
            "not json\n".to_string(),
        ]
        .concat();
        std::fs::write(&log, current).unwrap();
        let errors = errors_since(&log, now - WINDOW).unwrap();
        assert_eq!(errors.count, 2);
        let latest = errors.latest.unwrap();
        assert!(latest.ends_with("second: boom again"), "{latest}");
        let none = errors_since(&tmp.path().join("missing.log"), now - WINDOW).unwrap();
        assert_eq!(none, Errors::default());
    }
}
