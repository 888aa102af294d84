//! The primer `bones prime` prints for an agent's first turn: who it is,
//! its slot and checkout, the loop in five commands with their exit codes,
//! the ready tasks it could claim, and the feed digest.
//!
//! Like the feed digest ([`crate::feed::prime`], reused here, not redone),
//! the primer is bounded in characters: its own parts have fixed bounds
//! (names and paths cut, at most [`MAX_READY`] tasks of one line each), and
//! the feed digest gets what is left of the bound. A primer is still
//! useful when the hub cannot be reached: it then says so in place of the
//! tasks and the feed, so a session-start hook never fails for it.

use std::path::PathBuf;

use async_nats::jetstream;
use serde::Serialize;

use crate::feed::prime::{Digest, MIN_MAX_CHARS as MIN_FEED_CHARS};
use crate::feed::{Feed, FeedError, Start, Stored};
use crate::lease;
use crate::state::Paths;
use crate::swarm::slot::SlotDir;
use crate::swarm::{self, SwarmError};
use crate::sys::shown::plain;
use crate::tasks::{Board, Task, TaskError};

/// The version of the primer's JSON document.
pub const SCHEMA: u32 = 1;
/// Default bound on the primer, in characters: about two thousand tokens.
pub const DEFAULT_MAX_CHARS: usize = 8000;
/// Smallest bound accepted: the fixed parts at their longest, a blank
/// line, and the smallest feed digest.
pub const MIN_MAX_CHARS: usize = FIXED_PARTS_MAX + 1 + MIN_FEED_CHARS;
/// Most ready tasks listed.
pub const MAX_READY: usize = 10;
/// Longest line a ready task gets.
const MAX_TASK_LINE: usize = 160;
/// Longest name or path shown, in characters.
const MAX_SHOWN: usize = 200;
/// The most the parts other than the feed digest can take.
const FIXED_PARTS_MAX: usize = 4000;

/// Why a primer could not be made: only a slot or agent named on purpose
/// that is not valid (the hub being unreachable is shown in the primer).
#[derive(Debug, thiserror::Error)]
pub enum PrimeError {
    #[error(transparent)]
    Swarm(#[from] SwarmError),
}

impl crate::sys::error::Kinded for PrimeError {
    fn kind(&self) -> crate::sys::error::ErrorKind {
        match self {
            PrimeError::Swarm(err) => err.kind(),
        }
    }
}

/// One exit code of a step of the loop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ExitCode {
    pub code: u8,
    /// A stable name for scripts: `held`, `conflict`, `nothing_ready`, ...
    pub kind: String,
    /// What it means in this step.
    pub meaning: String,
}

/// One step of the agent's loop: the command and what its exit codes mean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Step {
    pub command: String,
    pub does: String,
    /// The codes besides 0 (success), 1 (failure) and 2 (usage), which
    /// every command has.
    pub exit_codes: Vec<ExitCode>,
}

impl ExitCode {
    pub fn new(code: u8, kind: &str, meaning: &str) -> ExitCode {
        ExitCode {
            code,
            kind: kind.to_string(),
            meaning: meaning.to_string(),
        }
    }
}

impl Step {
    pub fn new(command: &str, does: &str, exit_codes: Vec<ExitCode>) -> Step {
        Step {
            command: command.to_string(),
            does: does.to_string(),
            exit_codes,
        }
    }
}

/// The slot the agent is in (by `--slot`, `$BONES_SLOT` or its current
/// directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct SlotView {
    pub slot: String,
    pub branch: String,
    /// The checkout; `None` when the slot has none on this machine.
    pub path: Option<PathBuf>,
    /// The agent holding its lease; `None` when it has no lease (never
    /// joined, closed or reaped) or the hub could not be asked.
    #[serde(rename = "agent")]
    pub agent_id: Option<String>,
}

/// A ready task, as the primer lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ReadyTask {
    pub id: String,
    pub title: String,
    pub priority: i32,
    pub labels: Vec<String>,
}

/// The primer.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Primer {
    pub schema: u32,
    /// The workspace root.
    pub workspace: PathBuf,
    /// The agent: the holder of its slot's lease, else `$BONES_AGENT_ID`;
    /// `None` when neither is known (`join` then generates one).
    #[serde(rename = "agent")]
    pub agent_id: Option<String>,
    /// The name task claims and feed entries are recorded under: the
    /// slot, else the agent id, else the workspace's own.
    pub acting_as: String,
    pub slot: Option<SlotView>,
    /// The loop, in the order an agent runs it.
    pub steps: Vec<Step>,
    /// The first ready tasks in claim order (highest priority, then
    /// oldest), at most [`MAX_READY`].
    pub ready: Vec<ReadyTask>,
    /// Every ready task on the board.
    pub ready_total: usize,
    /// The feed digest (`bones feed --prime`), within what the bound left.
    pub feed: Option<Digest>,
    /// Why the tasks and the feed are missing: the hub could not be reached.
    pub hub_error: Option<String>,
    pub max_chars: usize,
    /// The primer as text, at most `max_chars` characters.
    #[serde(skip)]
    pub text: String,
}

/// What the primer is made of, gathered by [`Primer::gather`] (or given
/// directly, for tests).
#[derive(Debug, Clone)]
pub struct Parts {
    pub workspace: PathBuf,
    pub agent_id: Option<String>,
    pub acting_as: String,
    pub slot: Option<SlotView>,
    pub steps: Vec<Step>,
    /// The ready tasks in claim order and the feed, or why they could not
    /// be read.
    pub hub: Result<(Vec<Task>, Vec<Stored>), String>,
}

impl Primer {
    /// Gathers the parts for the agent in `slot` (`None`: `$BONES_SLOT`,
    /// else the checkout the current directory is in, else no slot) and
    /// builds the primer. `hub` is the running hub's JetStream, or why
    /// there is none.
    pub async fn gather(
        paths: &Paths,
        slot: Option<String>,
        steps: Vec<Step>,
        hub: Result<jetstream::Context, String>,
        max_chars: usize,
    ) -> Result<Primer, PrimeError> {
        let named = slot.is_some() || swarm::env_text(swarm::SLOT_ENV)?.is_some();
        let slot = match swarm::current_slot(paths, slot) {
            Ok(slot) => Some(slot),
            // a slot named on purpose that is not valid is an error; no
            // slot found from the directory is just no slot
            Err(err) if named => return Err(err.into()),
            Err(_) => None,
        };
        let acting_as = swarm::identity(paths, slot.clone())?;
        let env_agent = swarm::agent_from_env()?;
        let mut slot_view = slot.map(|slot| {
            let dir = SlotDir::new(paths, &slot);
            SlotView {
                branch: format!("slot/{slot}"),
                path: dir.has_checkout().then_some(dir.wt),
                slot,
                agent_id: None,
            }
        });
        let hub = match hub {
            Ok(js) => {
                if let Some(view) = &mut slot_view {
                    view.agent_id = holder(&js, &view.slot).await;
                }
                // shown in the primer as text, beside the callers' own reasons
                read_hub(&js).await.map_err(|e| e.to_string())
            }
            Err(err) => Err(err),
        };
        let agent_id = slot_view
            .as_ref()
            .and_then(|v| v.agent_id.clone())
            .or(env_agent);
        let parts = Parts {
            workspace: paths.root.clone(),
            agent_id,
            acting_as,
            slot: slot_view,
            steps,
            hub,
        };
        Ok(Primer::build(parts, max_chars))
    }

    /// Builds the primer from its parts within `max_chars` characters (at
    /// least [`MIN_MAX_CHARS`]).
    pub fn build(parts: Parts, max_chars: usize) -> Primer {
        let max_chars = max_chars.max(MIN_MAX_CHARS);
        let (tasks, feed, hub_error) = match parts.hub {
            Ok((tasks, feed)) => (tasks, Some(feed), None),
            Err(err) => (Vec::new(), None, Some(err)),
        };
        let ready_total = tasks.len();
        let ready: Vec<ReadyTask> = tasks
            .into_iter()
            .take(MAX_READY)
            .map(|t| ReadyTask {
                id: t.id,
                title: t.title,
                priority: t.priority,
                labels: t.labels,
            })
            .collect();
        let mut text = who(
            &parts.workspace,
            parts.agent_id.as_deref(),
            &parts.acting_as,
            parts.slot.as_ref(),
            parts.steps.first(),
        );
        text.push_str(&the_loop(&parts.steps));
        match &hub_error {
            Some(err) => text.push_str(&format!(
                "\nThe hub could not be reached ({}); tasks and the feed are not shown. \
                 `bones hub status` says why.\n",
                cut(&plain(err), MAX_SHOWN)
            )),
            None => text.push_str(&ready_lines(&ready, ready_total)),
        }
        // the fixed parts are bounded by construction; cut them anyway
        // rather than ever break the bound
        text = cut_text(&text, FIXED_PARTS_MAX);
        let feed = feed.map(|all| {
            // one character for the blank line before the digest
            let room = max_chars - text.chars().count() - 1;
            let digest = Digest::build(all, room);
            text.push('\n');
            text.push_str(&digest.text);
            digest
        });
        Primer {
            schema: SCHEMA,
            workspace: parts.workspace,
            agent_id: parts.agent_id,
            acting_as: parts.acting_as,
            slot: parts.slot,
            steps: parts.steps,
            ready,
            ready_total,
            feed,
            hub_error,
            max_chars,
            text,
        }
    }
}

/// The agent holding `slot`'s lease, if it has one.
async fn holder(js: &jetstream::Context, slot: &str) -> Option<String> {
    let store = lease::bucket(js).await.ok()?;
    let stored = lease::get(&store, slot).await.ok()??;
    stored.lease.map(|l| l.agent_id)
}

/// Why the hub's tasks or feed could not be read.
#[derive(Debug, thiserror::Error)]
enum HubUnread {
    #[error(transparent)]
    Tasks(#[from] TaskError),
    #[error(transparent)]
    Feed(#[from] FeedError),
}

/// The ready tasks and the whole feed.
async fn read_hub(js: &jetstream::Context) -> Result<(Vec<Task>, Vec<Stored>), HubUnread> {
    let board = Board::open(js).await?;
    let ready = board.ready().await?;
    let feed = Feed::open(js).await?;
    let mut all = Vec::new();
    feed.read(Start::After(0), |stored| all.push(stored))
        .await?;
    Ok((ready, all))
}

fn who(
    workspace: &std::path::Path,
    agent: Option<&str>,
    acting_as: &str,
    slot: Option<&SlotView>,
    join: Option<&Step>,
) -> String {
    let shown = |s: &str| cut(&plain(s), MAX_SHOWN);
    let mut text = format!(
        "bones primer: you are an agent in the workspace {}.\n",
        shown(&workspace.to_string_lossy())
    );
    match agent {
        Some(agent) => text.push_str(&format!("Agent id: {}.\n", shown(agent))),
        None => text.push_str(
            "Agent id: not set yet (`bones swarm join --auto` generates one; export BONES_AGENT_ID to keep it).\n",
        ),
    }
    match slot {
        Some(SlotView {
            slot,
            branch,
            path: Some(path),
            ..
        }) => text.push_str(&format!(
            "Slot: {slot} (branch {branch}), checkout {}. Edit and commit there; trunk gets your work through the hub.\n",
            shown(&path.to_string_lossy())
        )),
        Some(SlotView { slot, .. }) => text.push_str(&format!(
            "Slot: {slot}, with no checkout on this machine: take it with `bones swarm join --slot {slot}`.\n"
        )),
        None => text.push_str(&format!(
            "Slot: none yet. Take one before editing: {}\n",
            join.map_or("`bones swarm join --auto`", |step| step.command.as_str())
        )),
    }
    text.push_str(&format!(
        "Task claims and feed entries are recorded as {}.\n",
        shown(acting_as)
    ));
    text
}

fn the_loop(steps: &[Step]) -> String {
    let mut text =
        String::from("\nThe loop (exit codes: 0 success, 1 failure, 2 usage, and those below):\n");
    for (n, step) in steps.iter().enumerate() {
        text.push_str(&format!("{}. {}  {}", n + 1, step.command, step.does));
        if !step.exit_codes.is_empty() {
            let codes: Vec<String> = step
                .exit_codes
                .iter()
                .map(|c| format!("{} {}: {}", c.code, c.kind, c.meaning))
                .collect();
            text.push_str(&format!(" [{}]", codes.join("; ")));
        }
        text.push('\n');
    }
    text
}

fn ready_lines(ready: &[ReadyTask], total: usize) -> String {
    if ready.is_empty() {
        return "\nReady tasks: none (`bones tasks create TITLE` adds one).\n".to_string();
    }
    let mut text = format!(
        "\nReady tasks ({} of {total}, in claim order; `bones tasks claim --next` takes the first):\n",
        ready.len()
    );
    for task in ready {
        let mut line = format!("- {} ", task.id);
        if task.priority != 0 {
            line.push_str(&format!("[p{}] ", task.priority));
        }
        // titles and labels come from any token holder: no terminal escapes
        line.push_str(&plain(&task.title));
        if !task.labels.is_empty() {
            line.push_str(&format!(" ({})", plain(&task.labels.join(", "))));
        }
        text.push_str(&cut(&line, MAX_TASK_LINE));
        text.push('\n');
    }
    if total > ready.len() {
        text.push_str(&format!(
            "({} more: `bones tasks ready`)\n",
            total - ready.len()
        ));
    }
    text
}

/// `text` on one line, at most `max` characters (an ellipsis marks a cut).
fn cut(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// `text` cut to at most `max` characters, keeping whole lines.
fn cut_text(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out = String::new();
    for line in text.lines() {
        if out.chars().count() + line.chars().count() + 1 > max {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{Kind, NewEntry};

    fn step(command: &str, codes: &[(u8, &str)]) -> Step {
        let codes = codes
            .iter()
            .map(|(code, kind)| ExitCode::new(*code, kind, "meaning"))
            .collect();
        Step::new(command, "does something", codes)
    }

    fn task(n: usize, title: &str) -> Task {
        let mut task = Task::new(
            format!("t-{n:06}"),
            title.to_string(),
            "someone",
            "2026-11-23T09:00:00.000000Z",
        );
        task.priority = (n % 3) as i32;
        task
    }

    fn parts(tasks: usize, entries: usize, long: usize) -> Parts {
        let feed = (1..=entries as u64)
            .map(|seq| Stored {
                seq,
                entry: NewEntry::new(Kind::Learning, format!("fact {seq} {}", "y".repeat(long)))
                    .into_entry("slot-a", "2026-11-23T09:00:00.000000Z"),
            })
            .collect();
        Parts {
            workspace: PathBuf::from(format!("/work/{}", "w".repeat(long))),
            agent_id: Some("agent-1".to_string()),
            acting_as: "fix-parser".to_string(),
            slot: Some(SlotView {
                slot: "fix-parser".to_string(),
                branch: "slot/fix-parser".to_string(),
                path: Some(PathBuf::from("/ws/.bones/swarm/fix-parser/wt")),
                agent_id: Some("agent-1".to_string()),
            }),
            steps: vec![
                step("bones swarm join --auto", &[(6, "held")]),
                step("bones tasks claim --next", &[(7, "nothing_ready")]),
            ],
            hub: Ok((
                (0..tasks)
                    .map(|n| task(n, &format!("title {n} {}", "x".repeat(long))))
                    .collect(),
                feed,
            )),
        }
    }

    #[test]
    fn the_primer_names_the_agent_its_slot_the_loop_the_tasks_and_the_feed() {
        let primer = Primer::build(parts(3, 2, 5), DEFAULT_MAX_CHARS);
        let text = &primer.text;
        for wanted in [
            "Agent id: agent-1",
            "Slot: fix-parser (branch slot/fix-parser), checkout /ws/.bones/swarm/fix-parser/wt",
            "recorded as fix-parser",
            "1. bones swarm join --auto",
            "6 held: meaning",
            "2. bones tasks claim --next",
            "Ready tasks (3 of 3",
            "- t-000000 title 0",
            "Knowledge feed",
            "fact 2",
        ] {
            assert!(text.contains(wanted), "{wanted:?} missing in:\n{text}");
        }
        assert_eq!(primer.ready.len(), 3);
        assert_eq!(primer.feed.as_ref().map(|d| d.total), Some(2));
    }

    #[test]
    fn the_primer_stays_within_its_bound() {
        for (tasks, entries, long) in [(0, 0, 0), (50, 500, 300), (12, 3, 5000)] {
            for bound in [MIN_MAX_CHARS, DEFAULT_MAX_CHARS, 20_000] {
                let primer = Primer::build(parts(tasks, entries, long), bound);
                let count = primer.text.chars().count();
                assert!(
                    count <= bound,
                    "{tasks}/{entries}/{long} at {bound}: {count}"
                );
                assert!(primer.ready.len() <= MAX_READY);
                assert_eq!(primer.ready_total, tasks);
                assert!(primer.text.contains("The loop"));
            }
        }
    }

    #[test]
    fn an_unreachable_hub_is_said_not_failed() {
        let mut parts = parts(3, 3, 1);
        parts.hub = Err("no hub is running".to_string());
        parts.slot = None;
        let primer = Primer::build(parts, DEFAULT_MAX_CHARS);
        assert!(
            primer
                .text
                .contains("could not be reached (no hub is running)")
        );
        assert!(primer.text.contains("Slot: none yet"));
        assert!(primer.feed.is_none());
        assert!(primer.ready.is_empty());
    }
}
