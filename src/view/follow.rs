//! The coordination server's parts of the picture, each followed by the
//! server pushing changes: the sessions and tasks buckets through KV
//! watches (the latest record of every key, then each change, as the lease
//! watcher and the claimers read them), the feed through an ordered
//! consumer from its last [`FEED`] entries on; landings through a core
//! subscription to the lander's announcements ([`super::LANDINGS_SUBJECT`]).
//!
//! Each follower first hands the whole of its part over at once (so a
//! board of 5,000 tasks becomes one snapshot, not 5,000 events), then one
//! change at a time; it returns only when its watch fails or ends.

use async_nats::jetstream::{self, consumer, kv};
use futures::StreamExt;

use super::model::{Change, Delta, FEED, Landing, SlotView, TaskView};
use crate::feed::store::{self as feed_store, Feed};
use crate::lease;
use crate::tasks::Board;
use crate::tasks::record;

/// Follows a bucket: `loaded` gets the latest record of every key, then
/// `changed` each later write or deletion.
async fn watch_bucket(
    store: &kv::Store,
    loaded: impl FnOnce(Vec<kv::Entry>),
    mut changed: impl FnMut(kv::Entry),
) -> Result<(), String> {
    // asked before the watch starts: an entry written in between comes
    // through the watch as a change
    let empty = store
        .stream
        .get_info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .messages
        == 0;
    let mut watch = store
        .watch_with_history(">")
        .await
        .map_err(|e| e.to_string())?;
    let mut first = Vec::new();
    let mut loaded = Some(loaded);
    if empty && let Some(loaded) = loaded.take() {
        loaded(Vec::new());
    }
    while let Some(entry) = watch.next().await {
        let entry = entry.map_err(|e| e.to_string())?;
        match loaded.as_ref() {
            Some(_) => {
                let done = entry.delta == 0;
                first.push(entry);
                if done && let Some(loaded) = loaded.take() {
                    loaded(std::mem::take(&mut first));
                }
            }
            None => changed(entry),
        }
    }
    Err("the watch ended".to_string())
}

/// A deletion or purge, whose value is empty.
fn removed(entry: &kv::Entry) -> bool {
    entry.operation != kv::Operation::Put
}

fn slot_of(entry: &kv::Entry) -> Option<SlotView> {
    // a record naming another slot than its key is not one bones wrote
    let lease = lease::decode(&entry.value).filter(|l| l.slot == entry.key);
    Some(SlotView {
        slot: entry.key.clone(),
        lease: lease.as_ref().map(Into::into),
    })
}

/// Follows the `bones-swarm-sessions` bucket: one [`SlotView`] per lease.
pub async fn slots(js: &jetstream::Context, emit: &(dyn Fn(Change) + Sync)) -> Result<(), String> {
    let store = lease::bucket(js).await.map_err(|e| e.to_string())?;
    watch_bucket(
        &store,
        |all| {
            let slots = all
                .iter()
                .filter(|e| !removed(e) && lease::is_slot_key(&e.key))
                .filter_map(slot_of)
                .collect();
            emit(Change::Slots(slots));
        },
        |entry| {
            if !lease::is_slot_key(&entry.key) {
                return;
            }
            let state = if removed(&entry) {
                None
            } else {
                slot_of(&entry)
            };
            emit(Change::One(Delta::Slot {
                slot: entry.key,
                state,
            }));
        },
    )
    .await
}

fn task_of(entry: &kv::Entry) -> Option<TaskView> {
    record::decode(&entry.key, &entry.value)
        .ok()
        .map(|t| TaskView::from(&t))
}

/// Follows the `bones-tasks` bucket: one [`TaskView`] per readable record.
pub async fn tasks(js: &jetstream::Context, emit: &(dyn Fn(Change) + Sync)) -> Result<(), String> {
    let board = Board::open(js).await.map_err(|e| e.to_string())?;
    watch_bucket(
        board.store(),
        |all| {
            let tasks = all
                .iter()
                .filter(|e| !removed(e))
                .filter_map(task_of)
                .collect();
            emit(Change::Tasks(tasks));
        },
        |entry| {
            let state = if removed(&entry) {
                None
            } else {
                task_of(&entry)
            };
            emit(Change::One(Delta::Task {
                id: entry.key,
                state,
            }));
        },
    )
    .await
}

/// Follows the feed from its last [`FEED`] entries on.
pub async fn feed(js: &jetstream::Context, emit: &(dyn Fn(Change) + Sync)) -> Result<(), String> {
    let mut feed = Feed::open(js).await.map_err(|e| e.to_string())?;
    let last = feed
        .refresh()
        .await
        .map_err(|e| e.to_string())?
        .state
        .last_sequence;
    let start = last.saturating_sub(FEED as u64);
    let consumer = feed
        .stream()
        .create_consumer(consumer::push::OrderedConfig {
            deliver_subject: feed.client().new_inbox(),
            deliver_policy: feed_store::deliver_policy(feed_store::Start::After(start)),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut first = Vec::new();
    let mut loading = consumer.cached_info().num_pending > 0;
    if !loading {
        emit(Change::Feed(Vec::new()));
    }
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let info = message.info().map_err(|e| e.to_string())?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        let stored = feed_store::decode(seq, &message.payload);
        if loading {
            first.extend(stored);
            if pending == 0 {
                loading = false;
                emit(Change::Feed(std::mem::take(&mut first)));
            }
        } else if let Some(stored) = stored {
            emit(Change::One(Delta::Feed(stored)));
        }
    }
    Err("the feed's consumer ended".to_string())
}

/// Follows the lander's announcements: each landing as it is acknowledged,
/// whatever hub.log's level (the history is hub.log's, read with its tail).
pub async fn landings(
    js: &jetstream::Context,
    emit: &(dyn Fn(Change) + Sync),
) -> Result<(), String> {
    let mut landed = js
        .client()
        .subscribe(super::LANDINGS_SUBJECT)
        .await
        .map_err(|e| e.to_string())?;
    while let Some(message) = landed.next().await {
        // a message bones did not write is no landing
        if let Ok(landing) = serde_json::from_slice::<Landing>(&message.payload) {
            emit(Change::One(Delta::Landing(landing)));
        }
    }
    Err("the subscription to the lander's announcements ended".to_string())
}
