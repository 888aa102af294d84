//! Store damage: a stream of the coordination server whose state went
//! backwards.
//!
//! A block file of the JetStream store cut short (a disk fault, a copy
//! interrupted, a hand that slipped) loses the messages in it, and the
//! server starts anyway: it rebuilds what is left and serves it as if
//! nothing happened. Half the task board once vanished that way with
//! `hub status` at 0 and a clean doctor. The hub therefore keeps, for each
//! stream it owns, the furthest it has seen it get (`coord/marks.json`,
//! written only when a value moved, a few times a minute at most), and
//! compares at start and every few seconds after (which covers a restart
//! of the coordination server under a running hub):
//!
//! - no stream's last sequence ever goes down (on some servers a cut
//!   block does that; the projector's durable consumer is then past the
//!   stream's end, another sign taken here);
//! - the task bucket never has fewer keys, and `tasks-events` never fewer
//!   messages (no bones verb deletes either);
//! - the task bucket has a key for every task `tasks-events` has an event
//!   for (this needs no mark, so it also catches damage done before the
//!   hub first recorded one).
//!
//! What it finds is logged (ERROR), kept in `coord/damage.json` until
//! `bones hub repair store` has brought the task records back from
//! `tasks-events` (see [`super::repair`]), reported as the failed `store`
//! part of `/.status`, and named by `bones doctor`. Both files live in
//! `coord/` so that `bones hub restore`, which replaces that directory,
//! takes them along with the store they describe.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::projector::{DURABLE, EVENTS_STREAM};
use crate::lease::SESSIONS_BUCKET;
use crate::oplog::HubLog;
use crate::state::paths::Paths;
use crate::sys::clock::utc_now_rfc3339;
use crate::sys::fsutil;
use crate::tasks::board::TASKS_BUCKET;

/// What the hub has seen of each stream, under `coord/`.
pub const MARKS_FILE: &str = "marks.json";
/// Damage found and not yet repaired, under `coord/`.
pub const DAMAGE_FILE: &str = "damage.json";
/// How often a running hub looks again.
const EVERY: Duration = Duration::from_secs(2);
/// How long one look may take before it is given up until the next.
const LOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest record file read: a few entries per stream.
const MAX_RECORD: u64 = 1024 * 1024;

/// The stream of the task bucket.
fn tasks_stream() -> String {
    format!("KV_{TASKS_BUCKET}")
}

/// The streams the hub owns, by name, in the order they are read: the
/// events before the bucket they come from, so that a task written between
/// the two reads can only make the bucket look ahead, never behind.
fn watched() -> [String; 4] {
    [
        EVENTS_STREAM.to_string(),
        crate::feed::store::STREAM.to_string(),
        format!("KV_{SESSIONS_BUCKET}"),
        tasks_stream(),
    ]
}

/// The path of the damage record in `coord_dir`.
pub fn record_path(coord_dir: &Path) -> PathBuf {
    coord_dir.join(DAMAGE_FILE)
}

/// How far one stream had got when the hub last looked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub last_seq: u64,
    pub messages: u64,
    pub subjects: u64,
}

impl Mark {
    fn of(state: &stream::State) -> Mark {
        Mark {
            last_seq: state.last_sequence,
            messages: state.messages,
            subjects: state.subjects_count,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MarksFile {
    streams: BTreeMap<String, Mark>,
}

/// One thing that went backwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    /// The stream, e.g. `KV_bones-tasks`.
    pub stream: String,
    /// What went back: `last sequence`, `keys`, `messages`, `task records`.
    pub what: String,
    /// What it was (or should be).
    pub before: u64,
    /// What it is now.
    pub now: u64,
    /// When the hub found it, UTC RFC 3339.
    pub found_at: String,
}

impl Damage {
    /// `KV_bones-tasks: keys went back from 30 to 15 (15 lost)`.
    pub fn describe(&self) -> String {
        format!(
            "{}: {} went back from {} to {} ({} lost)",
            self.stream,
            self.what,
            self.before,
            self.now,
            self.before.saturating_sub(self.now)
        )
    }

    fn same(&self, other: &Damage) -> bool {
        self.stream == other.stream && self.what == other.what
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DamageFile {
    damage: Vec<Damage>,
}

/// Why a record file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct RecordError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<T, RecordError> {
    use std::io::Read;
    let error = |source| RecordError {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(T::default()),
        Err(err) => return Err(error(err)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_RECORD)
        .read_to_end(&mut bytes)
        .map_err(error)?;
    serde_json::from_slice(&bytes).map_err(|e| error(io::Error::new(io::ErrorKind::InvalidData, e)))
}

/// The damage found and not yet repaired in the store under `coord_dir`;
/// empty when there is none. Read by `/.status` and by doctor.
pub fn read_record(coord_dir: &Path) -> Result<Vec<Damage>, RecordError> {
    read_json::<DamageFile>(&record_path(coord_dir)).map(|file| file.damage)
}

/// Forgets the damage found (after a repair).
pub fn clear_record(coord_dir: &Path) -> io::Result<()> {
    fsutil::remove_if_exists(&record_path(coord_dir))
}

/// Adds what is not recorded yet; returns what was added.
fn add_to_record(coord_dir: &Path, found: Vec<Damage>) -> Result<Vec<Damage>, RecordError> {
    let path = record_path(coord_dir);
    let mut file: DamageFile = read_json(&path).unwrap_or_default();
    let new: Vec<Damage> = found
        .into_iter()
        .filter(|d| !file.damage.iter().any(|known| known.same(d)))
        .collect();
    if !new.is_empty() {
        file.damage.extend(new.iter().cloned());
        let body = serde_json::to_vec_pretty(&file).unwrap_or_default();
        fsutil::write_private(&path, &body).map_err(|source| RecordError { path, source })?;
    }
    Ok(new)
}

/// What one look saw.
#[derive(Debug, Default)]
struct Seen {
    marks: BTreeMap<String, Mark>,
    /// Where the projector's consumer has acknowledged up to.
    projector_floor: Option<u64>,
}

/// Why a look at a stream failed; the next look tries again.
#[derive(Debug, thiserror::Error)]
#[error("stream {stream}: {source}")]
struct LookError {
    stream: String,
    #[source]
    source: jetstream::context::GetStreamError,
}

async fn look(js: &jetstream::Context) -> Result<Seen, LookError> {
    // side by side: a look is on the start's path to ready (one round trip
    // per stream, the tasks stream two, instead of two or four in a row)
    let looks = futures::future::join_all(watched().map(|name| look_at(js, name))).await;
    let mut seen = Seen::default();
    for look in looks {
        let Some((name, mark, floor)) = look? else {
            continue; // not made yet (or gone: its mark will say so)
        };
        seen.projector_floor = seen.projector_floor.or(floor);
        seen.marks.insert(name, mark);
    }
    Ok(seen)
}

/// One stream's mark, with the projector's acknowledgement floor for the
/// tasks stream; `None` when the stream does not exist.
async fn look_at(
    js: &jetstream::Context,
    name: String,
) -> Result<Option<(String, Mark, Option<u64>)>, LookError> {
    // the projector's position before the stream's end: a revision
    // projected between the two reads is then counted, never missed
    let floor = if name == tasks_stream() {
        match js
            .get_consumer_from_stream::<jetstream::consumer::push::Config, _, _>(DURABLE, &name)
            .await
        {
            Ok(consumer) => Some(consumer.cached_info().ack_floor.stream_sequence),
            Err(_) => None,
        }
    } else {
        None
    };
    let stream = match js.get_stream(&name).await {
        Ok(stream) => stream,
        Err(err)
            if matches!(
                err.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(_)
            ) =>
        {
            return Ok(None);
        }
        Err(source) => {
            return Err(LookError {
                stream: name,
                source,
            });
        }
    };
    // the answer to the lookup is the stream's info, read just now
    let mark = Mark::of(&stream.cached_info().state);
    Ok(Some((name, mark, floor)))
}

/// What went backwards between `marks` and `seen`.
fn compare(marks: &BTreeMap<String, Mark>, seen: &Seen, now: &str) -> Vec<Damage> {
    let mut found = Vec::new();
    let mut push = |stream: &str, what: &str, before: u64, now_value: u64| {
        if now_value < before {
            found.push(Damage {
                stream: stream.to_string(),
                what: what.to_string(),
                before,
                now: now_value,
                found_at: now.to_string(),
            });
        }
    };
    let tasks = tasks_stream();
    for (name, mark) in marks {
        let current = seen.marks.get(name).copied().unwrap_or_default();
        push(name, "last sequence", mark.last_seq, current.last_seq);
        if *name == tasks {
            push(name, "keys", mark.subjects, current.subjects);
        }
        if name == EVENTS_STREAM {
            push(name, "messages", mark.messages, current.messages);
        }
    }
    if let Some(bucket) = seen.marks.get(&tasks) {
        if let Some(events) = seen.marks.get(EVENTS_STREAM) {
            // every task with an event had a record first
            push(&tasks, "task records", events.subjects, bucket.subjects);
        }
        if let Some(floor) = seen.projector_floor {
            push(&tasks, "projected revision", floor, bucket.last_seq);
        }
    }
    found
}

/// Watches the hub's streams for state that went backwards.
pub struct Watch {
    coord_dir: PathBuf,
    js: jetstream::Context,
    log: HubLog,
    marks: BTreeMap<String, Mark>,
}

impl Watch {
    pub fn new(paths: &Paths, js: jetstream::Context, log: HubLog) -> Watch {
        let marks = match read_json::<MarksFile>(&paths.coord_dir.join(MARKS_FILE)) {
            Ok(file) => file.streams,
            Err(err) => {
                log.warn(format!(
                    "hub: {err}; store damage is judged from the streams alone until it is written again"
                ));
                BTreeMap::new()
            }
        };
        Watch {
            coord_dir: paths.coord_dir.clone(),
            js,
            log,
            marks,
        }
    }

    /// Looks once: logs and records new damage, then moves the marks to
    /// what is there now (damage is reported once, from the record on).
    pub async fn check(&mut self) {
        let seen = match tokio::time::timeout(LOOK_TIMEOUT, look(&self.js)).await {
            Ok(Ok(seen)) => seen,
            // the coordination server is down or restarting: the next look
            // after it is back compares against the same marks
            Ok(Err(_)) | Err(_) => return,
        };
        let found = compare(&self.marks, &seen, &utc_now_rfc3339());
        if !found.is_empty() {
            match add_to_record(&self.coord_dir, found) {
                Ok(new) => {
                    for damage in new {
                        self.log.error(
                            format!("hub: store damage in {}", damage.stream),
                            format!(
                                "{}; recover task records from {EVENTS_STREAM} with `bones hub repair store`",
                                damage.describe()
                            ),
                        );
                    }
                }
                Err(err) => self
                    .log
                    .error("hub: cannot record store damage", err.to_string()),
            }
        }
        let mut marks = self.marks.clone();
        marks.extend(seen.marks);
        if marks != self.marks {
            let body = serde_json::to_vec(&MarksFile {
                streams: marks.clone(),
            })
            .unwrap_or_default();
            let path = self.coord_dir.join(MARKS_FILE);
            // durable: a mark lost to a machine crash is a damage missed
            if let Err(err) = fsutil::write_private(&path, &body) {
                self.log
                    .warn(format!("hub: cannot write {}: {err}", path.display()));
                return;
            }
            self.marks = marks;
        }
    }

    /// Looks every few seconds until `stop` is cancelled (a look under way
    /// finishes: its marks are written whole).
    pub fn spawn(mut self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first look was made at start
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => self.check().await,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(last_seq: u64, messages: u64, subjects: u64) -> Mark {
        Mark {
            last_seq,
            messages,
            subjects,
        }
    }

    fn seen(entries: &[(&str, Mark)]) -> Seen {
        Seen {
            marks: entries
                .iter()
                .map(|(name, mark)| (name.to_string(), *mark))
                .collect(),
            projector_floor: None,
        }
    }

    fn whats(found: &[Damage]) -> Vec<(String, String, u64, u64)> {
        found
            .iter()
            .map(|d| (d.stream.clone(), d.what.clone(), d.before, d.now))
            .collect()
    }

    #[test]
    fn growth_and_legitimate_removals_are_not_damage() {
        let tasks = tasks_stream();
        let marks: BTreeMap<_, _> = [
            (tasks.clone(), mark(30, 30, 10)),
            ("bones-feed".to_string(), mark(9, 9, 1)),
        ]
        .into();
        // history limits drop old revisions, feed retention old entries
        let now = seen(&[
            (&tasks, mark(40, 25, 12)),
            ("bones-feed", mark(12, 2, 1)),
            (EVENTS_STREAM, mark(40, 40, 12)),
        ]);
        assert!(compare(&marks, &now, "t").is_empty());
        // no marks yet: only the cross-check applies
        assert!(compare(&BTreeMap::new(), &now, "t").is_empty());
    }

    #[test]
    fn what_went_back_is_named_with_how_far() {
        let tasks = tasks_stream();
        let marks: BTreeMap<_, _> = [
            (tasks.clone(), mark(30, 30, 30)),
            (EVENTS_STREAM.to_string(), mark(30, 30, 30)),
            ("bones-feed".to_string(), mark(5, 5, 1)),
        ]
        .into();
        let mut now = seen(&[
            (&tasks, mark(30, 15, 15)),
            (EVENTS_STREAM, mark(30, 30, 30)),
        ]);
        now.projector_floor = Some(30);
        let found = compare(&marks, &now, "t");
        assert_eq!(
            whats(&found),
            vec![
                (tasks.clone(), "keys".into(), 30, 15),
                ("bones-feed".into(), "last sequence".into(), 5, 0),
                (tasks.clone(), "task records".into(), 30, 15),
            ]
        );
        assert_eq!(
            found[0].describe(),
            "KV_bones-tasks: keys went back from 30 to 15 (15 lost)"
        );
        // a server that rewinds the stream: the consumer is past its end
        let mut rewound = seen(&[(&tasks, mark(15, 15, 15))]);
        rewound.projector_floor = Some(30);
        assert_eq!(
            whats(&compare(&BTreeMap::new(), &rewound, "t")),
            vec![(tasks, "projected revision".into(), 30, 15)]
        );
    }

    #[test]
    fn the_record_keeps_each_damage_once_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_record(dir.path()).unwrap().is_empty());
        let damage = |what: &str| Damage {
            stream: "s".into(),
            what: what.into(),
            before: 2,
            now: 1,
            found_at: "t".into(),
        };
        assert_eq!(
            add_to_record(dir.path(), vec![damage("a")]).unwrap().len(),
            1
        );
        let added = add_to_record(dir.path(), vec![damage("a"), damage("b")]).unwrap();
        assert_eq!(whats(&added), whats(&[damage("b")]));
        assert_eq!(read_record(dir.path()).unwrap().len(), 2);
        clear_record(dir.path()).unwrap();
        assert!(read_record(dir.path()).unwrap().is_empty());
        std::fs::write(record_path(dir.path()), "not json").unwrap();
        assert!(read_record(dir.path()).is_err());
    }
}
