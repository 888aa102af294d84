//! `bones hub repair trunk | store`: putting back what store damage took,
//! from the records the hub keeps for that purpose.
//!
//! - **trunk**: a missing `trunk` ref is recreated at the newest tip its
//!   reflogs recorded (`hub.git` logs every move of trunk). An existing
//!   trunk is never moved. Works with the hub stopped, as it is when trunk
//!   is missing (a start refuses).
//! - **store**: task records the bucket lost are written back from the
//!   newest event of each task on `tasks-events` (every event carries the
//!   whole record after its change). A record is written only where the
//!   bucket has none, or has one older than the event (by `updated_at`,
//!   which every change sets), and always as a compare-and-swap on what
//!   was read, so a record changed meanwhile is left alone. A task deleted
//!   on purpose (a delete marker in the bucket) stays deleted. Then the
//!   damage record is cleared. Needs a running hub.
//!
//! Both are safe to run again: a second run finds nothing to do.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv};
use futures::StreamExt;

use super::damage::{self, Damage};
use super::projector::{EVENTS_PREFIX, EVENTS_STREAM};
use crate::coord;
use crate::hub::HubError;
use crate::oplog::HubLog;
use crate::state::paths::Paths;
use crate::state::workspace::Workspace;
use crate::tasks::board::Board;
use crate::tasks::record;
use crate::trunk::repo;
use crate::trunk::repo::{RepoError, TrunkRestore};

/// How long reading the events may pause before it is given up.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a repair could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Coord(#[from] coord::CoordError),
    #[error("cannot read {EVENTS_STREAM}: {0}")]
    Events(#[source] coord::ServerError),
    #[error(transparent)]
    Board(#[from] crate::tasks::TaskError),
    #[error("cannot write task {task} back: {source}")]
    Write {
        task: String,
        #[source]
        source: coord::ServerError,
    },
    #[error("cannot write task {task} back: its last event holds no valid record ({source})")]
    Undecodable {
        task: String,
        #[source]
        source: record::DecodeError,
    },
    #[error(transparent)]
    Record(#[from] damage::RecordError),
    #[error("cannot clear the damage record {path}: {source}")]
    Clear {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::sys::error::Kinded for RepairError {
    fn kind(&self) -> crate::sys::error::ErrorKind {
        use crate::sys::error::ErrorKind;
        match self {
            RepairError::Hub(err) => err.kind(),
            RepairError::Coord(err) => err.kind(),
            RepairError::Board(err) => err.kind(),
            RepairError::Repo(err) => err.kind(),
            RepairError::Events(err) => err.kind(),
            RepairError::Write { source, .. } => source.kind(),
            RepairError::Undecodable { .. } => ErrorKind::Corrupt,
            _ => ErrorKind::Io,
        }
    }
}

fn paths_of(root: &Path) -> Result<Paths, RepairError> {
    let ws = Workspace::discover(root).map_err(HubError::from)?;
    Ok(Paths::new(&ws))
}

fn hub_log(paths: &Paths) -> HubLog {
    // a CLI: it appends, the hub alone rotates
    HubLog::append_only(paths.hub_log.clone())
}

/// Recreates a missing trunk ref from its reflog (see the module docs).
pub fn repair_trunk(root: &Path) -> Result<TrunkRestore, RepairError> {
    let paths = paths_of(root)?;
    let done = repo::restore_trunk(&paths.hub_repo)?;
    if let TrunkRestore::Restored(tip) = done {
        hub_log(&paths).warn(format!(
            "hub: trunk was missing; restored it at {tip} from its reflog"
        ));
    }
    Ok(done)
}

/// What [`repair_store`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreRepair {
    /// Tasks with an event on `tasks-events`.
    pub examined: usize,
    /// Tasks the bucket had no record of, written back.
    pub restored: Vec<String>,
    /// Tasks whose record in the bucket was older than their last event.
    pub updated: Vec<String>,
    /// The damage record this repair cleared.
    pub cleared: Vec<Damage>,
}

/// Brings lost task records back from `tasks-events`, then clears the
/// damage record (see the module docs). Needs the workspace's hub running.
pub fn repair_store(root: &Path) -> Result<StoreRepair, RepairError> {
    let paths = paths_of(root)?;
    let found = damage::read_record(&paths.coord_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(HubError::Runtime)?;
    let mut repair = runtime.block_on(async {
        let client = coord::connect_running(&paths).await?;
        let js = jetstream::new(client);
        recover_tasks(&js).await
    })?;
    damage::clear_record(&paths.coord_dir).map_err(|source| RepairError::Clear {
        path: damage::record_path(&paths.coord_dir),
        source,
    })?;
    repair.cleared = found;
    let log = hub_log(&paths);
    if !repair.restored.is_empty() || !repair.updated.is_empty() || !repair.cleared.is_empty() {
        log.warn(format!(
            "hub: store repaired: {} task record(s) written back and {} brought up to date from {EVENTS_STREAM}; {} damage record(s) cleared",
            repair.restored.len(),
            repair.updated.len(),
            repair.cleared.len()
        ));
    }
    Ok(repair)
}

/// Writes back, from the newest event of each task, every record the
/// bucket lacks or holds in an older state.
pub async fn recover_tasks(js: &jetstream::Context) -> Result<StoreRepair, RepairError> {
    let board = Board::open(js).await?;
    let store = board.store();
    let mut repair = StoreRepair::default();
    for (task, bytes) in newest_records(js).await? {
        repair.examined += 1;
        let event = record::decode(&task, &bytes).map_err(|source| RepairError::Undecodable {
            task: task.clone(),
            source,
        })?;
        // written as bones writes records, whatever the event's layout
        let bytes = serde_json::to_vec(&event).map_err(|e| RepairError::Write {
            task: task.clone(),
            source: coord::ServerError::internal(e),
        })?;
        let current = store
            .entry(task.as_str())
            .await
            .map_err(|e| RepairError::Write {
                task: task.clone(),
                source: coord::ServerError::new(e),
            })?;
        let written = match current {
            None => match store.create(task.as_str(), bytes.into()).await {
                Ok(_) => Some(true),
                // written meanwhile: what is there is newer than the damage
                Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => None,
                Err(err) => {
                    return Err(RepairError::Write {
                        task,
                        source: coord::ServerError::new(err),
                    });
                }
            },
            Some(entry) if entry.operation != kv::Operation::Put => None,
            Some(entry) => {
                let older = record::decode(&task, &entry.value)
                    .map(|held| held.updated_at < event.updated_at)
                    // an unreadable record is replaced by the last good one
                    .unwrap_or(true);
                if !older {
                    None
                } else {
                    match store
                        .update(task.as_str(), bytes.into(), entry.revision)
                        .await
                    {
                        Ok(_) => Some(false),
                        Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => None,
                        Err(err) => {
                            return Err(RepairError::Write {
                                task,
                                source: coord::ServerError::new(err),
                            });
                        }
                    }
                }
            }
        };
        match written {
            Some(true) => repair.restored.push(task),
            Some(false) => repair.updated.push(task),
            None => {}
        }
    }
    Ok(repair)
}

/// The record in the newest event of each task, by task id.
async fn newest_records(js: &jetstream::Context) -> Result<BTreeMap<String, Vec<u8>>, RepairError> {
    #[derive(serde::Deserialize)]
    struct Event {
        task: String,
        record: serde_json::Value,
    }
    fn events(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> RepairError {
        RepairError::Events(coord::ServerError::new(err))
    }
    let stream = js.get_stream(EVENTS_STREAM).await.map_err(events)?;
    let consumer = stream
        .create_consumer(consumer::push::OrderedConfig {
            deliver_subject: js.client().new_inbox(),
            filter_subject: format!("{EVENTS_PREFIX}.>"),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(events)?;
    let mut records = BTreeMap::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(records);
    }
    let mut messages = consumer.messages().await.map_err(events)?;
    loop {
        let message = match tokio::time::timeout(READ_TIMEOUT, messages.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(err))) => return Err(events(err)),
            Ok(None) => break,
            Err(_) => {
                return Err(RepairError::Events(coord::ServerError::timed_out(
                    "no event arrived for 10 s",
                )));
            }
        };
        let last = message.info().map(|i| i.pending == 0).unwrap_or(true);
        // an event that does not parse cannot give a record back
        if let Ok(event) = serde_json::from_slice::<Event>(&message.payload) {
            records.insert(event.task, event.record.to_string().into_bytes());
        }
        if last {
            break;
        }
    }
    Ok(records)
}
