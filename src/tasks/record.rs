//! The task record as stored in the `bones-tasks` bucket (schema 1; see
//! `docs/tasks.md`), its transitions and input validation.
//!
//! Everything here is pure so that every rule a mutation must respect can be
//! tested without a server: the board applies these functions inside its
//! compare-and-swap loop, so a rule is re-checked against the latest record
//! on every retry.

use serde::{Deserialize, Serialize};

use crate::sys::name;
use crate::sys::name::NameError;

/// The schema version this code writes; documented in `docs/tasks.md`.
pub const SCHEMA: u32 = 1;
/// Largest body accepted, in bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest title accepted, in bytes.
pub const MAX_TITLE: usize = 512;
/// Most labels on one task.
pub const MAX_LABELS: usize = 32;
/// Largest close or release reason accepted, in bytes.
pub const MAX_REASON: usize = 1024;
/// Largest encoded record the `bones-tasks` bucket stores (its
/// `max_value_size`). Text that JSON escapes (quotes, control characters)
/// can grow past it within the other limits; such a record is refused
/// before it is written.
pub const MAX_RECORD: usize = 2 * MAX_BODY;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Open,
    Claimed,
    Closed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Claimed => "claimed",
            Status::Closed => "closed",
        }
    }
}

/// The mutation that produced a revision: the hub turns it into the event
/// on `tasks-events` and the `rpc` entry in hub.log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LastOp {
    /// `create`, `claim`, `release`, `update` or `close`.
    pub op: String,
    /// Who did it: a slot, an agent id, or `hub`.
    pub by: String,
    /// UTC RFC 3339.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Task {
    pub schema: u32,
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
    pub status: Status,
    /// Set exactly when `status` is `claimed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Claim order: ready tasks of higher priority are claimed first, then
    /// the oldest. 0 (the default) is omitted from the record.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_reason: Option<String>,
    /// Incremented by every successful claim.
    #[serde(default)]
    pub claim_epoch: u64,
    pub last_op: LastOp,
}

/// A mutation refused by the rules (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("task {id} is claimed by {holder}")]
    ClaimedBy { id: String, holder: String },
    #[error("task {id} is closed")]
    Closed { id: String },
    #[error("task {id} is not claimed by {who} (it is {state})")]
    NotYours {
        id: String,
        who: String,
        state: String,
    },
    /// The claimant is a slot that was closed or reaped (its lease record
    /// deleted) and not joined again: nothing would hold the claim.
    #[error(
        "slot {slot} was closed, or reaped after its lease expired, so it cannot claim tasks; \
         join it again (`bones swarm join --slot {slot}`) and claim from there"
    )]
    SlotEnded { slot: String },
    #[error(transparent)]
    Invalid(#[from] InputError),
}

impl Refusal {
    /// Held by another, or refused by the task's state, or bad input.
    pub fn kind(&self) -> crate::sys::error::ErrorKind {
        use crate::sys::error::ErrorKind;
        match self {
            Refusal::ClaimedBy { .. } => ErrorKind::Held,
            Refusal::Closed { .. } | Refusal::NotYours { .. } | Refusal::SlotEnded { .. } => {
                ErrorKind::Refused
            }
            Refusal::Invalid(_) => ErrorKind::Usage,
        }
    }
}

/// Input that can never be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("the title is empty; give the task a title")]
    EmptyTitle,
    #[error("the title is {0} bytes; keep it under {MAX_TITLE}")]
    TitleTooLong(usize),
    #[error(
        "the title holds a control character (a line break, tab or escape); keep it to one line of text and put details in --body"
    )]
    TitleControl,
    #[error(
        "the body is {0} bytes; the limit is {MAX_BODY} (64 KiB): put long text in a file in the repository"
    )]
    BodyTooLarge(usize),
    #[error("a task cannot be its own {0}")]
    SelfReference(&'static str),
    #[error("at most {MAX_LABELS} labels")]
    TooManyLabels,
    #[error("invalid label {}: use 1-64 characters without spaces or control characters", crate::sys::shown::shown(.0))]
    BadLabel(String),
    #[error(
        "priority {0} is out of range; use -{MAX_PRIORITY} to {MAX_PRIORITY} (higher is claimed first)"
    )]
    BadPriority(i32),
    #[error("the reason is {0} bytes; keep it under {MAX_REASON}")]
    ReasonTooLong(usize),
    #[error(
        "the task record would be {0} bytes once encoded, over the board's limit of {MAX_RECORD}; shorten the body (quotes and control characters count several times)"
    )]
    RecordTooLarge(usize),
    #[error(transparent)]
    Id(#[from] NameError),
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Highest (and, negated, lowest) priority accepted.
pub const MAX_PRIORITY: i32 = 1000;

/// Checks a priority: -1000 to 1000.
pub fn validate_priority(priority: i32) -> Result<(), InputError> {
    if priority.abs() > MAX_PRIORITY {
        return Err(InputError::BadPriority(priority));
    }
    Ok(())
}

/// Checks a title.
pub fn validate_title(title: &str) -> Result<(), InputError> {
    if title.trim().is_empty() {
        return Err(InputError::EmptyTitle);
    }
    if title.len() > MAX_TITLE {
        return Err(InputError::TitleTooLong(title.len()));
    }
    if title.chars().any(char::is_control) {
        return Err(InputError::TitleControl);
    }
    Ok(())
}

/// Checks a body.
pub fn validate_body(body: &str) -> Result<(), InputError> {
    if body.len() > MAX_BODY {
        return Err(InputError::BodyTooLarge(body.len()));
    }
    Ok(())
}

/// Checks a label.
pub fn validate_label(label: &str) -> Result<(), InputError> {
    let ok = !label.is_empty()
        && label.len() <= 64
        && label.chars().all(|c| !c.is_whitespace() && !c.is_control());
    if ok {
        Ok(())
    } else {
        Err(InputError::BadLabel(label.chars().take(41).collect()))
    }
}

/// Checks a close or release reason: free text, but bounded, so a record
/// (which keeps it twice) stays far below the bucket's value limit.
pub fn validate_reason(reason: &str) -> Result<(), InputError> {
    if reason.len() > MAX_REASON {
        return Err(InputError::ReasonTooLong(reason.len()));
    }
    Ok(())
}

/// Checks a task id (the same rules as for slots, upper case allowed).
pub fn validate_id(id: &str) -> Result<(), InputError> {
    Ok(name::validate_task_id(id)?)
}

/// Decodes the record stored under `key`. A record whose `id` is not its
/// key (another client wrote it) is refused: the id becomes a subject, a
/// message id and the key of the next compare-and-swap.
pub fn decode(key: &str, bytes: &[u8]) -> Result<Task, DecodeError> {
    let task: Task = serde_json::from_slice(bytes)?;
    if task.id != key || validate_id(&task.id).is_err() {
        return Err(DecodeError::WrongKey {
            id: crate::sys::shown::shown(&task.id),
            key: crate::sys::shown::shown(key),
        });
    }
    Ok(task)
}

/// Why a stored record is not a task bones can use.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// Both shown quoted (see [`crate::sys::shown`]).
    #[error("its id {id} is not its key {key} (or not a task id)")]
    WrongKey { id: String, key: String },
}

impl Task {
    /// A new open task.
    pub fn new(id: String, title: String, by: &str, now: &str) -> Task {
        Task {
            schema: SCHEMA,
            id,
            title,
            body: String::new(),
            status: Status::Open,
            claimed_by: None,
            claimed_at: None,
            parent: None,
            blocked_by: Vec::new(),
            labels: Vec::new(),
            priority: 0,
            created_at: now.to_string(),
            updated_at: now.to_string(),
            closed_at: None,
            closed_reason: None,
            claim_epoch: 0,
            last_op: LastOp {
                op: "create".into(),
                by: by.to_string(),
                at: now.to_string(),
                took_ms: None,
                reason: None,
            },
        }
    }

    /// Claims an open task for `who`; claiming one's own claim again is a
    /// no-op (`Ok(false)`).
    pub fn claim(&mut self, who: &str, now: &str) -> Result<bool, Refusal> {
        match self.status {
            Status::Closed => Err(Refusal::Closed {
                id: self.id.clone(),
            }),
            Status::Claimed if self.claimed_by.as_deref() == Some(who) => Ok(false),
            Status::Claimed => Err(Refusal::ClaimedBy {
                id: self.id.clone(),
                holder: self.claimed_by.clone().unwrap_or_default(),
            }),
            Status::Open => {
                self.status = Status::Claimed;
                self.claimed_by = Some(who.to_string());
                self.claimed_at = Some(now.to_string());
                self.claim_epoch += 1;
                self.stamp("claim", who, now, None);
                Ok(true)
            }
        }
    }

    /// Gives a claim back. Only the holder (or the hub, with `force`) may.
    pub fn release(
        &mut self,
        who: &str,
        now: &str,
        force: bool,
        reason: Option<String>,
    ) -> Result<(), Refusal> {
        let mine = self.claimed_by.as_deref() == Some(who);
        if self.status != Status::Claimed || (!mine && !force) {
            return Err(Refusal::NotYours {
                id: self.id.clone(),
                who: who.to_string(),
                state: self.describe(),
            });
        }
        self.status = Status::Open;
        self.claimed_by = None;
        self.claimed_at = None;
        self.stamp("release", who, now, reason);
        Ok(())
    }

    /// Closes the task (releasing any claim). Closing a task someone else
    /// holds is refused unless `force`.
    pub fn close(
        &mut self,
        who: &str,
        now: &str,
        reason: Option<String>,
        force: bool,
    ) -> Result<(), Refusal> {
        match (&self.status, self.claimed_by.as_deref()) {
            (Status::Closed, _) => {
                return Err(Refusal::Closed {
                    id: self.id.clone(),
                });
            }
            (Status::Claimed, Some(holder)) if holder != who && !force => {
                return Err(Refusal::ClaimedBy {
                    id: self.id.clone(),
                    holder: holder.to_string(),
                });
            }
            _ => {}
        }
        self.status = Status::Closed;
        self.claimed_by = None;
        self.claimed_at = None;
        self.closed_at = Some(now.to_string());
        self.closed_reason = reason.clone();
        self.stamp("close", who, now, reason);
        Ok(())
    }

    /// Records an edit.
    pub fn touch(&mut self, who: &str, now: &str) -> Result<(), Refusal> {
        if self.status == Status::Closed {
            return Err(Refusal::Closed {
                id: self.id.clone(),
            });
        }
        self.stamp("update", who, now, None);
        Ok(())
    }

    fn stamp(&mut self, op: &str, who: &str, now: &str, reason: Option<String>) {
        self.updated_at = now.to_string();
        self.last_op = LastOp {
            op: op.to_string(),
            by: who.to_string(),
            at: now.to_string(),
            took_ms: None,
            reason,
        };
    }

    /// `open`, `closed`, or `claimed by X`.
    pub fn describe(&self) -> String {
        match (&self.status, &self.claimed_by) {
            (Status::Claimed, Some(holder)) => format!("claimed by {holder}"),
            (status, _) => status.as_str().to_string(),
        }
    }

    /// Whether work can start: open, every blocker closed, and a parent (if
    /// any) that is not closed. `lookup` finds other tasks by id; an unknown
    /// blocker blocks (it may not be visible yet), an unknown parent does not.
    pub fn is_ready(&self, lookup: impl Fn(&str) -> Option<Status>) -> bool {
        self.status == Status::Open
            && self
                .blocked_by
                .iter()
                .all(|b| lookup(b) == Some(Status::Closed))
            && self
                .parent
                .as_deref()
                .is_none_or(|p| lookup(p) != Some(Status::Closed))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_record_is_read_only_under_its_own_key() {
        let task = Task::new(
            "t-abc12345".into(),
            "x".into(),
            "me",
            &crate::sys::clock::utc_now_rfc3339(),
        );
        let bytes = serde_json::to_vec(&task).unwrap();
        assert_eq!(decode("t-abc12345", &bytes).unwrap().id, "t-abc12345");
        assert!(decode("t-other000", &bytes).is_err());
        assert!(decode("t-abc12345", b"{not json").is_err());
    }

    use super::*;
    use proptest::prelude::*;

    fn task() -> Task {
        Task::new("t-1".into(), "title".into(), "me", "2026-01-01T00:00:00Z")
    }

    #[test]
    fn claim_is_exclusive_and_idempotent_for_the_holder() {
        let mut t = task();
        assert_eq!(t.claim("a", "now"), Ok(true));
        assert_eq!(t.claim("a", "now"), Ok(false));
        assert_eq!(
            t.claim("b", "now"),
            Err(Refusal::ClaimedBy {
                id: "t-1".into(),
                holder: "a".into()
            })
        );
        assert_eq!(t.claim_epoch, 1);
        assert_eq!(t.last_op.op, "claim");
    }

    #[test]
    fn release_and_close_follow_the_holder() {
        let mut t = task();
        t.claim("a", "now").unwrap();
        assert!(t.release("b", "now", false, None).is_err());
        t.release("a", "now", false, None).unwrap();
        assert_eq!((t.status, t.claimed_by.clone()), (Status::Open, None));
        t.claim("a", "now").unwrap();
        assert!(t.close("b", "now", None, false).is_err());
        t.close("a", "now", Some("done".into()), false).unwrap();
        assert_eq!((t.status, t.claimed_by.clone()), (Status::Closed, None));
        assert!(t.claim("a", "now").is_err());
        assert!(t.touch("a", "now").is_err());
    }

    #[test]
    fn readiness_follows_blockers_and_parent() {
        let mut t = task();
        t.blocked_by = vec!["t-2".into()];
        t.parent = Some("t-3".into());
        let status = |open_blocker: bool, closed_parent: bool| {
            move |id: &str| match id {
                "t-2" => Some(if open_blocker {
                    Status::Open
                } else {
                    Status::Closed
                }),
                "t-3" => Some(if closed_parent {
                    Status::Closed
                } else {
                    Status::Open
                }),
                _ => None,
            }
        };
        assert!(!t.is_ready(status(true, false)));
        assert!(t.is_ready(status(false, false)));
        assert!(!t.is_ready(status(false, true)));
        t.claim("a", "now").unwrap();
        assert!(!t.is_ready(status(false, false)));
    }

    #[test]
    fn a_record_with_every_field_at_its_limit_fits_the_bucket() {
        let mut t = task();
        t.title = "x".repeat(MAX_TITLE);
        t.body = "x".repeat(MAX_BODY);
        t.labels = vec!["l".repeat(64); MAX_LABELS];
        t.blocked_by = vec!["b".repeat(64); 64];
        t.close("a", "now", Some("r".repeat(MAX_REASON)), true)
            .unwrap();
        let bytes = serde_json::to_vec(&t).unwrap();
        assert!(bytes.len() <= MAX_RECORD, "{} bytes", bytes.len());
    }

    #[test]
    fn inputs_are_bounded() {
        assert_eq!(validate_title(" "), Err(InputError::EmptyTitle));
        assert!(validate_body(&"x".repeat(MAX_BODY)).is_ok());
        assert!(validate_body(&"x".repeat(MAX_BODY + 1)).is_err());
        assert!(validate_label("has space").is_err());
        assert!(validate_id("../x").is_err());
    }

    proptest! {
        #[test]
        fn claimed_by_is_set_exactly_when_claimed(ops in proptest::collection::vec((0u8..4, 0u8..3), 0..40)) {
            let mut t = task();
            for (op, who) in ops {
                let who = ["a", "b", "hub"][who as usize];
                let _ = match op {
                    0 => t.claim(who, "now").map(|_| ()),
                    1 => t.release(who, "now", who == "hub", None),
                    2 => t.close(who, "now", None, false),
                    _ => t.touch(who, "now"),
                };
                prop_assert_eq!(t.claimed_by.is_some(), t.status == Status::Claimed);
            }
        }

        #[test]
        fn records_survive_a_round_trip(title in "\\PC{1,100}", body in "\\PC{0,300}") {
            let mut t = task();
            t.title = title;
            t.body = body;
            let json = serde_json::to_vec(&t).unwrap();
            prop_assert_eq!(serde_json::from_slice::<Task>(&json).unwrap(), t);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = serde_json::from_slice::<Task>(&bytes);
        }

        #[test]
        fn validators_refuse_with_one_short_line(text in "(?s).{0,200}", big in 0usize..3) {
            let text = text.repeat([1, 400, 2000][big]);
            let results = [
                validate_title(&text),
                validate_body(&text),
                validate_label(&text),
                validate_reason(&text),
                validate_id(&text),
            ];
            for result in results {
                if let Err(err) = result {
                    let message = err.to_string();
                    prop_assert!(!message.contains('\n') && message.len() < 600, "{}", message);
                }
            }
        }

        #[test]
        fn accepted_inputs_respect_their_bounds(text in "(?s).{0,100}", big in 0usize..3) {
            let text = text.repeat([1, 10, 2000][big]);
            if validate_title(&text).is_ok() {
                prop_assert!(text.len() <= MAX_TITLE && !text.trim().is_empty());
                prop_assert!(!text.chars().any(char::is_control));
            }
            if validate_body(&text).is_ok() {
                prop_assert!(text.len() <= MAX_BODY);
            }
            if validate_label(&text).is_ok() {
                prop_assert!(text.len() <= 64 && !text.chars().any(|c| c.is_whitespace() || c.is_control()));
            }
            if validate_reason(&text).is_ok() {
                prop_assert!(text.len() <= MAX_REASON);
            }
        }

    }
}
