//! Following the feed across hub restarts: every entry shown exactly once.
//!
//! The ctx Hub's listener restarted from zero after every reconnect. Here
//! the follower remembers the last sequence it showed and, whenever the
//! connection drops (a hub killed and started again takes its coordination
//! server with it), drops the client, reconnects with backoff (re-reading
//! the URL, which a restart may change), and starts a fresh ordered
//! consumer right after that sequence. A sequence at or below it is never
//! shown again, whatever the server redelivers.
//!
//! The last sequence shown is also saved in the reader's [`Cursor`] after
//! every burst (when the follower has caught up, at most every
//! [`SAVE_INTERVAL`], and every [`SAVE_EVERY`] entries while it catches
//! up), and when it stops; a new follower starts after it.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::time::Instant;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use time::OffsetDateTime;

use super::cursor::{Cursor, Position};
use super::store::{self, Feed, FeedError, Start, Stored};
use crate::coord;
use crate::state::Paths;

/// Save the cursor at least this often while catching up on a backlog.
pub const SAVE_EVERY: usize = 1000;
/// Save the cursor at most this often while entries keep coming: a file
/// write per entry would halve a busy follower's throughput, and a
/// follower killed with SIGKILL repeats at most this much of the feed.
pub const SAVE_INTERVAL: Duration = Duration::from_millis(100);
/// First wait before reconnecting; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where followed entries go.
pub trait Sink {
    /// Shows one entry. An error (a closed pipe, say) ends the follow.
    fn entry(&mut self, stored: &Stored) -> io::Result<()>;
    /// Makes what was shown visible; the cursor is saved only after this
    /// succeeds.
    fn flush(&mut self) -> io::Result<()>;
    /// A note for the operator: lost the hub, reconnected, ...
    fn notice(&mut self, _text: &str) {}
}

/// What to follow and where to start.
#[derive(Debug, Clone, Default)]
pub struct FollowOptions {
    /// Start here instead of after the cursor (`--since`).
    pub start: Option<Start>,
    /// The reader's cursor: read to start, saved as entries are shown.
    pub cursor: Option<Cursor>,
}

/// Why a follow ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `stop` completed.
    Stopped,
    /// The sink refused an entry or a flush (its reader went away).
    SinkClosed,
}

/// Follows the feed until `stop` completes or the sink fails, reconnecting
/// for as long as it takes. Fails only on a cursor it cannot read or save.
pub async fn follow(
    paths: &Paths,
    options: FollowOptions,
    sink: &mut impl Sink,
    stop: impl Future<Output = ()>,
) -> Result<Ended, FeedError> {
    let mut state = State {
        cursor: options.cursor,
        start: options.start,
        last: None,
        flushed: None,
        stream_created: None,
        unsaved: 0,
        last_save: None,
        save_due: None,
        unreadable_noted: false,
    };
    tokio::pin!(stop);
    let mut backoff = FIRST_BACKOFF;
    let mut waiting_noted = false;
    let mut connected_once = false;
    loop {
        let (lost_tx, mut lost_rx) = tokio::sync::mpsc::unbounded_channel();
        let connected = tokio::select! {
            biased;
            _ = &mut stop => return state.finish(sink, Ended::Stopped),
            connected = connect(paths, lost_tx) => connected,
        };
        let mut feed = match connected {
            Ok(feed) => feed,
            Err(why) => {
                if !waiting_noted {
                    sink.notice(&format!(
                        "waiting for the hub ({why}); retrying with backoff"
                    ));
                    waiting_noted = true;
                }
                if !pause(stop.as_mut(), &mut backoff).await {
                    return state.finish(sink, Ended::Stopped);
                }
                continue;
            }
        };
        waiting_noted = false;
        let start = state.start_on(&mut feed, sink)?;
        if connected_once {
            sink.notice(&match state.last {
                Some(seq) => format!("reconnected; resuming after #{seq}"),
                None => "reconnected".to_string(),
            });
        }
        connected_once = true;
        let messages = match open_consumer(&feed, start).await {
            Ok(messages) => messages,
            Err(why) => {
                sink.notice(&format!("cannot read the feed ({why}); retrying"));
                if !pause(stop.as_mut(), &mut backoff).await {
                    return state.finish(sink, Ended::Stopped);
                }
                continue;
            }
        };
        tokio::pin!(messages);
        let shown_before = state.last;
        loop {
            let save_due = state.save_due;
            tokio::select! {
                biased;
                _ = &mut stop => return state.finish(sink, Ended::Stopped),
                _ = sleep_until(save_due), if save_due.is_some() => state.save()?,
                _ = lost_rx.recv() => {
                    sink.notice("lost the connection to the hub; reconnecting");
                    break;
                }
                next = messages.next() => match next {
                    None => break,
                    // the server went quiet (stopped, or the stream went
                    // away): start over, checking the stream is the same
                    Some(Err(err)) if err.kind() == consumer::push::OrderedErrorKind::MissingHeartbeat => break,
                    Some(Err(err)) => {
                        sink.notice(&format!("feed read failed ({err}); reconnecting"));
                        break;
                    }
                    Some(Ok(message)) => {
                        let Ok(info) = message.info() else { continue };
                        let (seq, pending) = (info.stream_sequence, info.pending);
                        if state.last.is_some_and(|last| seq <= last) {
                            continue;
                        }
                        if let Some(ended) = state.show(sink, seq, &message.payload, pending == 0)? {
                            return Ok(ended);
                        }
                    }
                },
            }
        }
        if state.save_due.is_some() {
            state.save()?;
        }
        // the client, consumer and subscription are dropped here; the next
        // round connects afresh, after a pause that grows while no entry
        // gets through
        drop(feed);
        if state.last != shown_before {
            backoff = FIRST_BACKOFF;
        }
        if !pause(stop.as_mut(), &mut backoff).await {
            return state.finish(sink, Ended::Stopped);
        }
    }
}

/// Waits out `backoff` and doubles it for next time; false when `stop`
/// completed first.
async fn pause(stop: std::pin::Pin<&mut impl Future<Output = ()>>, backoff: &mut Duration) -> bool {
    let waited = tokio::select! {
        biased;
        _ = stop => false,
        _ = tokio::time::sleep(*backoff) => true,
    };
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    waited
}

/// The follower's memory, kept across reconnections.
struct State {
    cursor: Option<Cursor>,
    /// Where to start before anything was shown.
    start: Option<Start>,
    /// The last sequence shown (or passed over as unreadable).
    last: Option<u64>,
    /// The last sequence known to have reached the sink's reader.
    flushed: Option<u64>,
    /// The creation time of the stream being followed.
    stream_created: Option<OffsetDateTime>,
    /// Entries shown since the cursor was last saved.
    unsaved: usize,
    last_save: Option<Instant>,
    /// When the cursor must be saved, if a save was put off.
    save_due: Option<Instant>,
    unreadable_noted: bool,
}

impl State {
    /// Decides where this connection's consumer starts.
    fn start_on(&mut self, feed: &mut Feed, sink: &mut impl Sink) -> Result<Start, FeedError> {
        let created = feed.created();
        match self.stream_created {
            Some(known) if known != created => {
                sink.notice("the feed was deleted and made again; starting from its first entry");
                self.last = None;
                self.flushed = None;
                self.start = Some(Start::After(0));
            }
            Some(_) => {}
            None => {
                if self.start.is_none() {
                    self.start = Some(self.start_from_cursor(created, sink)?);
                }
            }
        }
        self.stream_created = Some(created);
        Ok(match self.last {
            Some(seq) => Start::After(seq),
            None => self.start.unwrap_or(Start::After(0)),
        })
    }

    fn start_from_cursor(
        &self,
        created: OffsetDateTime,
        sink: &mut impl Sink,
    ) -> Result<Start, FeedError> {
        let Some(cursor) = &self.cursor else {
            return Ok(Start::After(0));
        };
        match cursor.load().map_err(super::store::stream_err)? {
            Some(position) if position.belongs_to(created) => Ok(Start::After(position.seq)),
            Some(_) => {
                sink.notice(&format!(
                    "{} was saved for an earlier feed; starting from the first entry",
                    cursor.path().display()
                ));
                Ok(Start::After(0))
            }
            None => Ok(Start::After(0)),
        }
    }

    /// Shows one message; `Some` when the follow must end.
    fn show(
        &mut self,
        sink: &mut impl Sink,
        seq: u64,
        payload: &[u8],
        caught_up: bool,
    ) -> Result<Option<Ended>, FeedError> {
        match store::decode(seq, payload) {
            Some(stored) => {
                if sink.entry(&stored).is_err() {
                    return self.finish(sink, Ended::SinkClosed).map(Some);
                }
            }
            None => {
                if !self.unreadable_noted {
                    sink.notice(&format!("skipped #{seq}: not a feed entry"));
                    self.unreadable_noted = true;
                }
            }
        }
        self.last = Some(seq);
        self.unsaved += 1;
        if caught_up || self.unsaved >= SAVE_EVERY {
            if sink.flush().is_err() {
                return self.finish(sink, Ended::SinkClosed).map(Some);
            }
            self.flushed = self.last;
            match self.last_save {
                Some(at) if at.elapsed() < SAVE_INTERVAL && self.unsaved < SAVE_EVERY => {
                    self.save_due.get_or_insert(at + SAVE_INTERVAL);
                }
                _ => self.save()?,
            }
        }
        Ok(None)
    }

    /// Flushes what it can and saves the cursor at the last entry known to
    /// have been delivered.
    fn finish(&mut self, sink: &mut impl Sink, ended: Ended) -> Result<Ended, FeedError> {
        if ended == Ended::Stopped && sink.flush().is_ok() {
            self.flushed = self.last;
        }
        self.save()?;
        Ok(ended)
    }

    fn save(&mut self) -> Result<(), FeedError> {
        self.unsaved = 0;
        self.save_due = None;
        self.last_save = Some(Instant::now());
        let (Some(cursor), Some(seq), Some(created)) =
            (&self.cursor, self.flushed, self.stream_created)
        else {
            return Ok(());
        };
        cursor
            .save(&Position::new(seq, created))
            .map_err(super::store::stream_err)
    }
}

/// Sleeps until `due` (set whenever this is polled).
async fn sleep_until(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due).await;
    }
}

/// Connects with a callback that reports a lost connection on `lost`, and
/// opens the feed.
async fn connect(
    paths: &Paths,
    lost: tokio::sync::mpsc::UnboundedSender<()>,
) -> Result<Feed, FeedError> {
    let client = coord::connect_with(paths, |options| {
        options
            // reconnecting is done here, with a fresh look at the URL; the
            // client itself gives up at once
            .max_reconnects(Some(1))
            .event_callback(move |event| {
                let lost = lost.clone();
                async move {
                    use async_nats::Event;
                    if matches!(
                        event,
                        Event::Disconnected
                            | Event::Closed
                            | Event::ClientError(async_nats::ClientError::MaxReconnects)
                    ) {
                        let _ = lost.send(());
                    }
                }
            })
    })
    .await?;
    Feed::open(&jetstream::new(client)).await
}

async fn open_consumer(
    feed: &Feed,
    start: Start,
) -> Result<consumer::push::Ordered, async_nats::Error> {
    let client = feed.client();
    let consumer = feed
        .stream()
        .create_consumer(consumer::push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            // no filter: the stream holds only entries, and an unfiltered
            // consumer takes the server's fast path
            deliver_policy: store::deliver_policy(start),
            replay_policy: consumer::ReplayPolicy::Instant,
            description: Some("bones feed --follow".to_string()),
            ..Default::default()
        })
        .await?;
    Ok(consumer.messages().await?)
}
