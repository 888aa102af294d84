//! The tools: the agent's loop with typed JSON inputs and outputs.
//!
//! Each tool calls the library (`swarm`, `tasks`, `feed`, `agent`) as the
//! matching command does, and answers the same JSON document its `--json`
//! prints, as structured content with an output schema derived from the
//! type that serialises it. Lists are wrapped in an object (`{"tasks":
//! [...]}`), as MCP's structured content must be one. Failures are tool
//! errors ([`ToolError`]) carrying the command's exit code.

use std::path::PathBuf;

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::ToolError;
use super::session::Session;
use crate::agent::exit::step as exit_code;
use crate::agent::{Primer, Step};
use crate::feed::{Kind, NewEntry, Published, Start, Stored};
use crate::swarm::slot::Synced;
use crate::swarm::{Closed, CommitOutcome, JoinOptions, Joined, SlotStatus, SwarmError};
use crate::sys::error::ErrorKind;
use crate::sys::name;
use crate::tasks::record;
use crate::tasks::{NewTask, Task};

/// Most feed entries one `feed` call returns.
const MAX_FEED_LIMIT: usize = 1000;
/// Entries a `feed` call returns when it names no limit.
const DEFAULT_FEED_LIMIT: usize = 100;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct JoinInput {
    /// The slot to take ([a-z0-9][a-z0-9._-]{0,62}); default: the slot this
    /// session holds, else one named after the agent (agent-<id>).
    pub slot: Option<String>,
    /// A task to claim for the slot as it is joined.
    pub task: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RestoreInput {
    /// The slot whose newest rescued work (saved when it was reaped or
    /// closed) comes back into a new checkout as uncommitted edits.
    pub slot: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CommitInput {
    /// The commit message.
    pub message: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CloseResult {
    /// All work landed (refused while the slot has commits trunk lacks).
    #[default]
    Success,
    /// Give up: close anyway, keeping unlanded commits on slot/NAME.
    Abandon,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct CloseInput {
    #[serde(default)]
    pub result: CloseResult,
    /// Close the tasks the slot holds instead of releasing them.
    #[serde(default)]
    pub close_tasks: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskCreateInput {
    pub title: String,
    #[serde(default)]
    pub body: String,
    pub parent: Option<String>,
    #[serde(default)]
    pub blocked_by: Vec<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    /// Higher is claimed first.
    #[serde(default)]
    pub priority: i32,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskIdInput {
    /// The task id (t-...).
    pub id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskClaimNextInput {
    /// Only tasks with this label.
    pub label: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskCloseInput {
    pub id: String,
    /// Why (done, duplicate, wontfix, ...).
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ShareInput {
    /// What the entry records.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The entry, at most 16 KiB.
    pub text: String,
    /// The entry's id (default: derived from the type and the text, so
    /// the same fact shared twice is stored once).
    pub id: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct FeedInput {
    /// Entries after this sequence (the last one you saw; default 0: from
    /// the first).
    #[serde(default)]
    pub since: u64,
    /// Only entries of this type.
    #[serde(rename = "type")]
    pub kind: Option<Kind>,
    /// At most this many entries, oldest first (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct PrimeInput {
    /// Bound on the primer's text, in characters (default 8000).
    pub max_chars: Option<usize>,
}

/// What the `status` tool answers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StatusOutput {
    /// This session's agent.
    #[serde(rename = "agent")]
    pub agent_id: String,
    /// The slot this session holds.
    pub slot: Option<String>,
    /// Every slot of the workspace.
    pub slots: Vec<SlotStatus>,
}

/// What the `commit` tool answers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CommitOutput {
    /// True when nothing had changed and nothing was waiting to land.
    pub nothing_to_commit: bool,
    /// What landed (absent when nothing was committed).
    pub landed: Option<CommitOutcome>,
}

/// A list of tasks.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TasksOutput {
    pub tasks: Vec<Task>,
}

/// What the `feed` tool answers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FeedOutput {
    /// The entries, oldest first.
    pub entries: Vec<Stored>,
    /// Pass as `since` to read on from here.
    pub next_since: u64,
    /// Whether more entries follow (call again with `next_since`).
    pub more: bool,
}

/// The primer, with its text (the JSON of `bones prime --json` leaves the
/// text out; an agent reads it here).
#[derive(Debug, Serialize, JsonSchema)]
pub struct PrimeOutput {
    #[serde(flatten)]
    pub primer: Primer,
    pub text: String,
}

/// What the `join` and `restore` tools answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct JoinOutput {
    #[serde(flatten)]
    pub joined: Joined,
    /// The checkout, where the agent edits (same as `path`).
    pub checkout: PathBuf,
}

/// The MCP server of one agent session.
///
/// Tools return `Result<Json<T>, ToolError>` spelled out: the `#[tool]`
/// macro finds a tool's output schema from that return type as written.
#[derive(Clone)]
pub struct BonesServer {
    session: Session,
}

#[tool_router]
impl BonesServer {
    pub fn new(session: Session) -> BonesServer {
        BonesServer { session }
    }

    /// Take a slot: your own checkout of trunk, held by a lease while this
    /// session is connected. Work and commit in the checkout it returns.
    #[tool]
    async fn join(
        &self,
        Parameters(input): Parameters<JoinInput>,
    ) -> Result<Json<JoinOutput>, ToolError> {
        self.join_slot(input.slot, input.task, false).await
    }

    /// Take a slot and bring its newest rescued work (saved when it was
    /// reaped or closed) back into the new checkout as uncommitted edits.
    #[tool]
    async fn restore(
        &self,
        Parameters(input): Parameters<RestoreInput>,
    ) -> Result<Json<JoinOutput>, ToolError> {
        self.join_slot(Some(input.slot), None, true).await
    }

    /// Every slot of the workspace (state, agent, tasks, uncommitted files,
    /// commits ahead of and behind trunk), and which one this session holds.
    #[tool]
    async fn status(&self) -> Result<Json<StatusOutput>, ToolError> {
        let slots = self.session.swarm().await?.status().await?;
        Ok(Json(StatusOutput {
            agent_id: self.session.agent().await,
            slot: self.session.slot().await,
            slots,
        }))
    }

    /// Bring your slot onto the trunk tip (others' landed work). Files
    /// where trunk changed the same lines are left with conflict markers
    /// (listed in `conflicts`): resolve them, then commit.
    #[tool]
    async fn sync(&self) -> Result<Json<Synced>, ToolError> {
        let slot = self.session.held_slot().await?;
        Ok(Json(self.session.swarm().await?.sync(&slot).await?))
    }

    /// Commit everything changed in your slot and land it on trunk. A
    /// conflict (code 5) leaves trunk unchanged: sync, fix, commit again.
    #[tool]
    async fn commit(
        &self,
        Parameters(input): Parameters<CommitInput>,
    ) -> Result<Json<CommitOutput>, ToolError> {
        crate::swarm::validate_message(&input.message)?;
        let slot = self.session.held_slot().await?;
        match self
            .session
            .swarm()
            .await?
            .commit(&slot, &input.message)
            .await
        {
            Ok(outcome) => Ok(Json(CommitOutput {
                nothing_to_commit: false,
                landed: Some(outcome),
            })),
            // nothing changed is an answer, not a failure
            Err(SwarmError::NothingToCommit(_)) => Ok(Json(CommitOutput {
                nothing_to_commit: true,
                landed: None,
            })),
            Err(err) => Err(err.into()),
        }
    }

    /// Release your slot: uncommitted work is saved first, the checkout
    /// removed, the lease freed; the tasks it holds are released (or
    /// closed with close_tasks).
    #[tool]
    async fn close(
        &self,
        Parameters(input): Parameters<CloseInput>,
    ) -> Result<Json<Closed>, ToolError> {
        let slot = self.session.held_slot().await?;
        let abandon = matches!(input.result, CloseResult::Abandon);
        let closed = self
            .session
            .swarm()
            .await?
            .close(&slot, abandon, input.close_tasks)
            .await?;
        self.session.set_slot(None).await;
        Ok(Json(closed))
    }

    /// Add a task to the board.
    #[tool]
    async fn tasks_create(
        &self,
        Parameters(input): Parameters<TaskCreateInput>,
    ) -> Result<Json<Task>, ToolError> {
        let new = NewTask {
            title: input.title,
            body: input.body,
            parent: input.parent,
            blocked_by: input.blocked_by,
            labels: input.labels,
            priority: input.priority,
        };
        new.validate().map_err(crate::tasks::TaskError::from)?;
        let by = self.session.acting_as().await;
        Ok(Json(self.session.board().await?.create(new, &by).await?))
    }

    /// The tasks that can be claimed now, in claim order (highest priority,
    /// then oldest).
    #[tool]
    async fn tasks_ready(&self) -> Result<Json<TasksOutput>, ToolError> {
        let tasks = self.session.board().await?.ready().await?;
        Ok(Json(TasksOutput { tasks }))
    }

    /// One task with all its fields.
    #[tool]
    async fn tasks_show(
        &self,
        Parameters(input): Parameters<TaskIdInput>,
    ) -> Result<Json<Task>, ToolError> {
        record::validate_id(&input.id).map_err(crate::tasks::TaskError::from)?;
        let (task, _) = self.session.board().await?.get(&input.id).await?;
        Ok(Json(task))
    }

    /// Claim the next ready task for your slot (never one another holds).
    /// No task ready is the error kind nothing_ready (code 7).
    #[tool]
    async fn tasks_claim_next(
        &self,
        Parameters(input): Parameters<TaskClaimNextInput>,
    ) -> Result<Json<Task>, ToolError> {
        if let Some(label) = &input.label {
            record::validate_label(label).map_err(crate::tasks::TaskError::from)?;
        }
        let by = self.session.acting_as().await;
        let board = self.session.board().await?;
        let claimed = board
            .claimer(&by)
            .with_label(input.label.as_deref())
            .next()
            .await?;
        claimed.map(Json).ok_or_else(|| {
            ToolError::new(
                ErrorKind::NothingReady,
                "no ready task to claim (tasks_ready lists them; a blocked task waits for its blockers)",
            )
        })
    }

    /// Close a task you hold: it is done (or will not be done: say why).
    #[tool]
    async fn tasks_close(
        &self,
        Parameters(input): Parameters<TaskCloseInput>,
    ) -> Result<Json<Task>, ToolError> {
        record::validate_id(&input.id).map_err(crate::tasks::TaskError::from)?;
        if let Some(reason) = &input.reason {
            record::validate_reason(reason).map_err(crate::tasks::TaskError::from)?;
        }
        let by = self.session.acting_as().await;
        let board = self.session.board().await?;
        Ok(Json(
            board.close(&input.id, &by, input.reason, false).await?,
        ))
    }

    /// Give a task you hold back to the board (open again).
    #[tool]
    async fn tasks_release(
        &self,
        Parameters(input): Parameters<TaskIdInput>,
    ) -> Result<Json<Task>, ToolError> {
        record::validate_id(&input.id).map_err(crate::tasks::TaskError::from)?;
        let by = self.session.acting_as().await;
        let board = self.session.board().await?;
        Ok(Json(board.release(&input.id, &by, false, None).await?))
    }

    /// Share what you decided or learned with every agent of the workspace
    /// (decision, learning, convention or task). The same id is stored once.
    #[tool]
    async fn share(
        &self,
        Parameters(input): Parameters<ShareInput>,
    ) -> Result<Json<Published>, ToolError> {
        let mut entry = NewEntry::new(input.kind, input.text);
        entry.id = input.id;
        entry.tags = input.tags;
        entry.validate().map_err(crate::feed::FeedError::from)?;
        let origin = self.session.acting_as().await;
        Ok(Json(
            self.session.feed().await?.share(entry, &origin).await?,
        ))
    }

    /// Read the knowledge feed after a sequence, oldest first, in pages.
    #[tool]
    async fn feed(
        &self,
        Parameters(input): Parameters<FeedInput>,
    ) -> Result<Json<FeedOutput>, ToolError> {
        let limit = input.limit.unwrap_or(DEFAULT_FEED_LIMIT);
        if limit == 0 || limit > MAX_FEED_LIMIT {
            return Err(ToolError::usage(format!(
                "limit must be 1 to {MAX_FEED_LIMIT}, not {limit}"
            )));
        }
        let feed = self.session.feed().await?;
        let mut entries = Vec::new();
        let mut next_since = input.since;
        let mut more = false;
        feed.read(Start::After(input.since), |stored| {
            let wanted = input.kind.is_none_or(|k| k == stored.entry.kind);
            if more || (wanted && entries.len() == limit) {
                more |= wanted;
                return;
            }
            next_since = stored.seq;
            if wanted {
                entries.push(stored);
            }
        })
        .await?;
        Ok(Json(FeedOutput {
            entries,
            next_since,
            more,
        }))
    }

    /// The primer for your first turn: who you are, your slot and checkout,
    /// the loop and its exit codes, the ready tasks, the feed digest.
    #[tool]
    async fn prime(
        &self,
        Parameters(input): Parameters<PrimeInput>,
    ) -> Result<Json<PrimeOutput>, ToolError> {
        let max_chars = input
            .max_chars
            .unwrap_or(crate::agent::prime::DEFAULT_MAX_CHARS);
        let hub = self.session.jetstream().await.map_err(|e| e.message);
        let mut primer = Primer::gather(
            self.session.paths(),
            self.session.slot().await,
            the_loop(),
            hub,
            max_chars,
        )
        .await?;
        // the primer knows the agent from the lease; before a join, this
        // session's own id is the one it will join as
        if primer.agent_id.is_none() {
            primer.agent_id = Some(self.session.agent().await);
        }
        let text = std::mem::take(&mut primer.text);
        Ok(Json(PrimeOutput { primer, text }))
    }
}

impl BonesServer {
    /// `join` and `restore`: take `slot` (default: the session's, else an
    /// --auto slot) for this session's agent.
    async fn join_slot(
        &self,
        slot: Option<String>,
        task: Option<String>,
        restore: bool,
    ) -> Result<Json<JoinOutput>, ToolError> {
        if let Some(slot) = &slot {
            name::validate_slot(slot).map_err(SwarmError::from)?;
        }
        if let Some(task) = &task {
            name::validate_task_id(task).map_err(SwarmError::from)?;
        }
        let held = self.session.slot().await;
        if let (Some(held), Some(wanted)) = (&held, &slot)
            && held != wanted
        {
            return Err(ToolError::usage(format!(
                "this session holds slot {held}; close it before joining {wanted}"
            )));
        }
        let slot = slot.or(held);
        let joined = self
            .session
            .swarm()
            .await?
            .join(JoinOptions {
                pid: self.session.lease_pid(slot.as_deref()).await,
                slot,
                agent: Some(self.session.agent().await),
                task,
                ttl: None,
                restore,
            })
            .await?;
        self.session.set_slot(Some(joined.slot.clone())).await;
        Ok(Json(JoinOutput {
            checkout: joined.path.clone(),
            joined,
        }))
    }
}

/// The agent's loop in five tool calls, with the error kinds each can end
/// with besides `failure` and `usage`.
fn the_loop() -> Vec<Step> {
    vec![
        Step::new(
            "join",
            "take a slot (your own checkout of trunk); edit files only in its `checkout`",
            vec![exit_code(ErrorKind::Held, "another agent holds that slot")],
        ),
        Step::new(
            "tasks_claim_next",
            "claim the next ready task; tasks_close with its id when it is done",
            vec![exit_code(ErrorKind::NothingReady, "no task is ready")],
        ),
        Step::new(
            "sync",
            "bring the slot onto trunk (others' work); resolve the conflict markers it lists",
            Vec::new(),
        ),
        Step::new(
            "commit",
            "commit everything changed in the checkout and land it on trunk",
            vec![
                exit_code(
                    ErrorKind::Conflict,
                    "conflicts with trunk: trunk unchanged; sync, fix, commit again",
                ),
                exit_code(
                    ErrorKind::Unresolved,
                    "conflict markers are still in files; nothing committed",
                ),
            ],
        ),
        Step::new(
            "close",
            "release the slot when your work has landed (its tasks are released, or closed with close_tasks)",
            Vec::new(),
        ),
    ]
}

#[tool_handler(
    name = "bones",
    instructions = "bones coordinates many coding agents on one repository. Call prime first: it says \
        who you are, your slot, the loop and the ready tasks. Then: join (take your own checkout; edit \
        files only there), tasks_claim_next, edit, commit (lands on trunk; kind conflict: sync, fix, \
        commit again), tasks_close, share what you learned, close. Errors carry {code, kind, message}: \
        kind held = another agent holds it, nothing_ready = no task to claim, conflict, unresolved."
)]
impl ServerHandler for BonesServer {}
