//! Claiming task after task: `claim --next`, and long-lived claimers that
//! take one ready task after another from one read of the board.
//!
//! Every claim is a compare-and-swap on the revision the board was read at,
//! so a task is claimed once whatever a claimer picks. What this module
//! decides is which candidate to try, so that racing claimers rarely lose a
//! swap (a lost swap is a wasted round trip to the server):
//!
//! * a claimer follows the bucket's changes (`bones.tasks.changed.<id>`,
//!   headers only, republished by the server) and passes over candidates
//!   changed since it read them, instead of finding out by a refused swap
//!   per task;
//! * racing claimers that lose a swap fan out over the oldest few
//!   candidates instead of colliding on the same one again
//!   (`adr/0009-claimers-follow-changes-and-fan-out.md`).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use async_nats::jetstream::kv;
use futures::{FutureExt, StreamExt};

use super::board::{Board, CHANGES_PREFIX, TaskError, bucket_err, encode, ready_mask};
use super::record::Task;

/// Reads of the board in one `next` when every candidate was taken meanwhile.
const MAX_NEXT_ROUNDS: usize = 64;

/// Claims ready tasks one after another; see [`Board::claimer`].
pub struct Claimer<'a> {
    board: &'a Board,
    who: String,
    /// Ready tasks as last read, with the revision to swap against.
    queue: VecDeque<(Task, u64)>,
    /// The bucket's changes since before the last read; `None` before the
    /// first read, after a read that found nothing, or when subscribing
    /// failed (then lost swaps tell). A claimer that holds on to a task for
    /// long collects changes meanwhile, up to the client's 65,536 per
    /// subscription; the next `next` goes through them.
    changes: Option<async_nats::Subscriber>,
    spread: Spread,
    refused: usize,
    /// Only tasks with this label.
    label: Option<String>,
}

impl<'a> Claimer<'a> {
    pub(super) fn new(board: &'a Board, who: &str) -> Claimer<'a> {
        Claimer {
            board,
            who: who.to_string(),
            queue: VecDeque::new(),
            changes: None,
            spread: Spread::new(),
            refused: 0,
            label: None,
        }
    }

    /// Claims only tasks carrying `label` (any task when `None`).
    pub fn with_label(mut self, label: Option<&str>) -> Claimer<'a> {
        self.label = label.map(str::to_string);
        self
    }

    /// How many of this claimer's swaps lost a race so far: the claims
    /// benchmark reports it, and it shows whether following the changes
    /// works.
    pub fn refused(&self) -> usize {
        self.refused
    }

    /// Claims the next ready task; `None` when the board has none left.
    /// Refused ([`super::record::Refusal::SlotEnded`]) when the claimer is
    /// a slot that was closed or reaped (see [`Board::check_claimant`]).
    ///
    /// Uncontended, that is the oldest ready task. A candidate someone
    /// changed since the board was read is passed over; when the candidates
    /// run out the board is read afresh, so a task passed over but still
    /// open is found again.
    pub async fn next(&mut self) -> Result<Option<Task>, TaskError> {
        let started = Instant::now();
        for _ in 0..MAX_NEXT_ROUNDS {
            if self.queue.is_empty() {
                // the claimant is checked with each read of the board, not
                // before each swap: a claim that slips past a slot ending
                // between reads is released by the hub
                let (board, who) = (self.board, self.who.clone());
                let (checked, read) = tokio::join!(board.check_claimant(&who), self.read_board());
                checked?;
                if !read? {
                    return Ok(None);
                }
            }
            self.pass_over_changed();
            while let Some((mut task, revision)) =
                self.queue.remove(self.spread.pick(self.queue.len()))
            {
                if task
                    .claim(&self.who, &crate::sys::clock::utc_now_rfc3339())
                    .is_err()
                {
                    continue;
                }
                task.last_op.took_ms = Some(started.elapsed().as_millis() as u64);
                match self
                    .board
                    .store
                    .update(&task.id, encode(&task)?, revision)
                    .await
                {
                    Ok(_) => {
                        self.spread.won();
                        return Ok(Some(task));
                    }
                    Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        self.refused += 1;
                        self.spread.lost();
                        self.pass_over_changed();
                    }
                    Err(err) => return Err(bucket_err(err)),
                }
            }
        }
        Err(TaskError::Contended("(next ready task)".to_string()))
    }

    /// Reads the ready tasks into the queue; false when there are none.
    async fn read_board(&mut self) -> Result<bool, TaskError> {
        // a fresh subscription before each read, so that no change after
        // the read goes unseen; whatever the old one still holds is older
        // than the read and is dropped with it
        self.changes = self
            .board
            .client
            .subscribe(format!("{CHANGES_PREFIX}.>"))
            .await
            .ok();
        let (all, _) = self.board.list_revisions().await?;
        let ready = ready_mask(all.iter().map(|(t, _)| t));
        let label = self.label.as_deref();
        let mut queue: Vec<(Task, u64)> = all
            .into_iter()
            .zip(ready)
            .filter_map(|(entry, ready)| ready.then_some(entry))
            .filter(|(task, _)| label.is_none_or(|l| task.labels.iter().any(|t| t == l)))
            .collect();
        // claim order: highest priority, then oldest (the sort is stable)
        queue.sort_by_key(|(task, _)| std::cmp::Reverse(task.priority));
        self.queue = queue.into();
        if self.queue.is_empty() {
            // nothing to pass over: stop collecting changes until next time
            self.changes = None;
        }
        Ok(!self.queue.is_empty())
    }

    /// Drops the candidates changed since the board was read, from the
    /// changes that have arrived (without waiting for more; the runtime's
    /// per-task budget may also end a long drain early, which only leaves
    /// some for the next call).
    fn pass_over_changed(&mut self) {
        let Some(changes) = self.changes.as_mut() else {
            return;
        };
        let mut changed: HashMap<String, u64> = HashMap::new();
        while let Some(Some(message)) = changes.next().now_or_never() {
            if let Some((key, revision)) = change_of(&message) {
                let latest = changed.entry(key.to_string()).or_default();
                *latest = (*latest).max(revision);
            }
        }
        if !changed.is_empty() {
            self.queue
                .retain(|(task, revision)| changed.get(&task.id).is_none_or(|seq| seq <= revision));
        }
    }
}

/// The key and revision a republished change names. A change without a
/// readable revision counts as newer than anything read.
fn change_of(message: &async_nats::Message) -> Option<(&str, u64)> {
    let key = message
        .subject
        .strip_prefix(CHANGES_PREFIX)?
        .strip_prefix('.')?;
    let revision = message
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_SEQUENCE))
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(u64::MAX);
    Some((key, revision))
}

/// How far past the oldest candidate a claimer looks.
///
/// Claimers racing for the oldest task all aim at the same record and all
/// but one lose. The window starts at 1 (the oldest); each lost race doubles
/// it, each win halves it, and the next candidate is picked at random
/// inside it, so racing claimers spread over the head of the board.
struct Spread {
    window: usize,
    state: u64,
}

impl Spread {
    /// The widest window: a claimer passes over at most this many, less
    /// one, older ready tasks it knows of.
    const MAX: usize = 16;

    fn new() -> Spread {
        let bytes = uuid::Uuid::new_v4().into_bytes();
        let seed = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default());
        Spread {
            window: 1,
            state: seed | 1,
        }
    }

    /// The position, among `len` candidates oldest first, to try next.
    fn pick(&mut self, len: usize) -> usize {
        let window = self.window.min(len);
        if window <= 1 {
            return 0;
        }
        // xorshift64: plenty to spread claimers, no crate needed
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state % window as u64) as usize
    }

    fn lost(&mut self) {
        self.window = (self.window * 2).min(Spread::MAX);
    }

    fn won(&mut self) {
        self.window = (self.window / 2).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uncontended_claimer_takes_the_oldest() {
        let mut spread = Spread::new();
        assert!((0..100).all(|_| spread.pick(10) == 0));
        spread.lost();
        spread.won();
        assert_eq!(spread.pick(10), 0);
    }

    #[test]
    fn lost_races_widen_the_window_up_to_its_bound() {
        let mut spread = Spread::new();
        for _ in 0..3 {
            spread.lost();
        }
        let picks: Vec<usize> = (0..400).map(|_| spread.pick(100)).collect();
        assert!(picks.iter().all(|&p| p < 8), "window of 8 after 3 losses");
        assert!(picks.iter().any(|&p| p > 0), "the window is used");
        for _ in 0..20 {
            spread.lost();
        }
        assert!((0..400).all(|_| spread.pick(1000) < Spread::MAX));
        assert!((0..400).all(|_| spread.pick(3) < 3), "never past the end");
    }

    #[test]
    fn wins_narrow_the_window_back_to_the_oldest() {
        let mut spread = Spread::new();
        for _ in 0..10 {
            spread.lost();
        }
        for _ in 0..10 {
            spread.won();
        }
        assert!((0..100).all(|_| spread.pick(50) == 0));
    }

    fn change(subject: &str, seq: Option<&str>) -> async_nats::Message {
        let mut headers = async_nats::HeaderMap::new();
        if let Some(seq) = seq {
            headers.insert(async_nats::header::NATS_SEQUENCE, seq);
        }
        async_nats::Message {
            subject: subject.into(),
            reply: None,
            payload: bytes::Bytes::new(),
            headers: Some(headers),
            status: None,
            description: None,
            length: 0,
        }
    }

    #[test]
    fn a_change_names_its_key_and_revision() {
        let m = change("bones.tasks.changed.t-abc", Some("42"));
        assert_eq!(change_of(&m), Some(("t-abc", 42)));
        let m = change("bones.tasks.changed.t-abc", None);
        assert_eq!(change_of(&m), Some(("t-abc", u64::MAX)));
        let m = change("bones.tasks.changed.t-abc", Some("x"));
        assert_eq!(change_of(&m), Some(("t-abc", u64::MAX)));
        assert_eq!(change_of(&change("other.t-abc", Some("1"))), None);
        assert_eq!(change_of(&change("bones.tasks.changedx", Some("1"))), None);
    }
}
