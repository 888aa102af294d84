//! The slot verbs as a library: join, renew, commit, close, status.
//!
//! Every verb renews the slot's lease first, so a slot that is in use is
//! never reaped, and a slot that was reaped is noticed before anything in
//! it is touched. Commits are made in the slot's checkout here, then landed
//! on trunk by the hub (see [`super::protocol`]): the hub is trunk's only
//! writer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use git2::{Oid, Repository, Signature};
use serde::Serialize;
use time::OffsetDateTime;

use super::protocol::{LAND_SUBJECT, LandReply, LandRequest};
use super::slot::{self, SlotDir, SlotError};
use crate::coord;
use crate::coord::CoordError;
use crate::lease::{self, Acquired, Lease, LeaseError};
use crate::oplog::{HubLog, LogEntry, LogLevel};
use crate::state::Paths;
use crate::sys::error::{ErrorKind, Kinded};
use crate::sys::name;
use crate::sys::name::NameError;
use crate::tasks::record::Refusal;
use crate::tasks::{Board, Status, TaskError};

/// Environment variable naming the agent (who holds a slot).
pub const AGENT_ENV: &str = "BONES_AGENT_ID";
/// Environment variable naming the current slot.
pub const SLOT_ENV: &str = "BONES_SLOT";
/// How long a commit waits for the hub to land it.
const LAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The shortest lease: leases are kept in whole seconds.
const MIN_TTL: Duration = Duration::from_secs(1);

/// Everything a slot verb can fail with.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error(transparent)]
    Coord(#[from] CoordError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Slot(#[from] SlotError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("{0}")]
    NoSlot(String),
    #[error(
        "slot {0} has a lease but no checkout; close it (`bones swarm close --slot {0}`) and join again"
    )]
    NoCheckout(String),
    #[error("slot {0}: nothing to commit and nothing waiting to land")]
    NothingToCommit(String),
    #[error(
        "slot {slot}: conflict markers are still in {}; nothing was committed. Resolve them \
         (keep what each side needs, delete the <<<<<<< ======= >>>>>>> lines), then commit again",
        .paths.join(", ")
    )]
    Unresolved { slot: String, paths: Vec<String> },
    #[error(
        "commit {commit} of slot {slot} conflicts with trunk in {}; trunk is unchanged and the commit \
         stays on slot/{slot}. Bring the slot up to date (`bones swarm sync`), fix the files and commit again",
        .paths.join(", ")
    )]
    Conflict {
        slot: String,
        commit: String,
        paths: Vec<String>,
    },
    #[error(
        "slot {slot}: not landed ({reason}); the commit is safe on slot/{slot}: run `bones swarm commit` again once the hub answers"
    )]
    NotLanded {
        slot: String,
        #[source]
        reason: NoAnswer,
    },
    #[error("slot {slot}: the hub refused to land: {error}")]
    LandFailed { slot: String, error: String },
    #[error(
        "slot {slot} has {count} commit(s) trunk lacks; land them with `bones swarm commit`, or close with --result abandon (they stay on slot/{slot})"
    )]
    Unlanded { slot: String, count: usize },
    #[error(
        "slot {slot} is held by agent {holder}, not by {caller}; act on your own slot, or pass --force to act on it anyway"
    )]
    NotHolder {
        slot: String,
        holder: String,
        caller: String,
    },
    #[error(
        "no slot {0}: it has no lease, no checkout and no branch; `bones swarm status` lists the slots"
    )]
    NoSuchSlot(String),
    #[error(
        "slot {0} has no rescued work to restore (no refs/bones/rescued/{0}/*); join without --restore"
    )]
    NothingToRestore(String),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(
        "no free --auto slot for agent {agent} after {MAX_AUTO_CANDIDATES} tries; pass --slot NAME"
    )]
    NoFreeAutoSlot { agent: String },
    #[error("the hub repository: {0}")]
    Git(#[from] git2::Error),
    #[error("the hub repository: {0}")]
    Land(#[from] crate::trunk::land::LandError),
    #[error("cannot encode the landing request: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("background work failed: {0}")]
    Background(#[from] tokio::task::JoinError),
}

/// Why a landing request got no answer the client could use.
#[derive(Debug, thiserror::Error)]
pub enum NoAnswer {
    #[error("the hub is not answering; is it running? `bones hub status`")]
    NoResponders(#[source] async_nats::RequestError),
    #[error("no answer from the hub within {LAND_TIMEOUT:?}")]
    TimedOut(#[source] async_nats::RequestError),
    #[error("{0}")]
    Request(#[source] async_nats::RequestError),
    #[error("unreadable answer from the hub: {0}")]
    Unreadable(#[source] serde_json::Error),
}

/// Input a slot verb refuses before it touches anything.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(
        "a lease's time to live must be at least 1s, not {}; pass --ttl 1s or more (the default is 1h)",
        crate::sys::duration::format(*.0)
    )]
    TtlTooShort(Duration),
    #[error(
        "no process {0} runs on this machine; --pid (or ${env}) names the agent's own \
         process, e.g. --pid $PPID from the agent's shell",
        env = lease::AGENT_PID_ENV
    )]
    NoProcess(u32),
    #[error("${0} is not valid UTF-8; unset it or set it to a valid value")]
    NotUtf8(String),
    #[error("${AGENT_ENV} holds only blanks; unset it or set it to the agent's name")]
    BlankAgent,
    #[error("the commit message is empty; say what changed with -m")]
    EmptyMessage,
    #[error("the commit message is {0} bytes; keep it under {MAX_MESSAGE} (64 KiB)")]
    LongMessage(usize),
    #[error("the commit message contains a NUL byte; git cannot store it")]
    NulInMessage,
    #[error(
        "slot {0} already has a checkout; --restore brings rescued work into a new one \
         (close the slot first: `bones swarm close --slot {0}`)"
    )]
    RestoreIntoCheckout(String),
}

impl Kinded for SwarmError {
    fn kind(&self) -> ErrorKind {
        match self {
            SwarmError::Coord(err) => err.kind(),
            SwarmError::Lease(err) => err.kind(),
            SwarmError::Task(err) => err.kind(),
            SwarmError::Name(_) | SwarmError::Input(_) => ErrorKind::Usage,
            SwarmError::Slot(SlotError::Uncommitted { .. }) => ErrorKind::Refused,
            SwarmError::Slot(SlotError::ConflictRecord { .. }) => ErrorKind::Corrupt,
            SwarmError::Land(err) => err.kind(),
            SwarmError::Slot(_) | SwarmError::Git(_) => ErrorKind::Io,
            SwarmError::Unresolved { .. } => ErrorKind::Unresolved,
            SwarmError::Conflict { .. } => ErrorKind::Conflict,
            SwarmError::NotHolder { .. } => ErrorKind::Held,
            SwarmError::NoSuchSlot(_) | SwarmError::NothingToRestore(_) => ErrorKind::NotFound,
            SwarmError::NoSlot(_)
            | SwarmError::NoCheckout(_)
            | SwarmError::NothingToCommit(_)
            | SwarmError::Unlanded { .. }
            | SwarmError::LandFailed { .. }
            | SwarmError::NoFreeAutoSlot { .. } => ErrorKind::Refused,
            SwarmError::NotLanded { .. } => ErrorKind::Timeout,
            SwarmError::Encode(_) | SwarmError::Background(_) => ErrorKind::Internal,
        }
    }
}

/// Options for [`Swarm::join`].
#[derive(Debug, Clone, Default)]
pub struct JoinOptions {
    /// The slot; `None` for a generated `agent-<id>` slot.
    pub slot: Option<String>,
    /// Who joins; `None` for `$BONES_AGENT_ID`, else a generated id.
    pub agent: Option<String>,
    pub task: Option<String>,
    /// Lease time to live; `None` for [`lease::DEFAULT_TTL`].
    pub ttl: Option<Duration>,
    /// Bring the slot's newest rescued work back into the new checkout.
    pub restore: bool,
    /// The agent's process on this machine: the lease lives exactly as
    /// long as it does (see [`Lease::is_live`]).
    pub pid: Option<u32>,
}

/// What [`Swarm::join`] did.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Joined {
    pub slot: String,
    pub path: PathBuf,
    pub branch: String,
    pub agent_id: String,
    pub ttl_s: u64,
    /// `created`, `rejoined` or `took_over`.
    pub how: &'static str,
    /// True when no agent id was given and one was generated.
    pub generated_agent: bool,
    /// Work saved while taking over an expired slot or an old branch.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rescued: Vec<String>,
    /// The rescue ref brought back into the checkout (`--restore`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored: Option<String>,
    /// Restored paths left with conflict markers to resolve.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
}

/// What [`Swarm::commit`] did.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CommitOutcome {
    pub slot: String,
    /// The commit made in the checkout (absent when only earlier commits
    /// were waiting to land).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The trunk commits made from the slot's commits, oldest first.
    pub landed: Vec<String>,
    /// Trunk after landing.
    pub trunk: String,
    /// Whether the checkout now shows trunk (others' work included).
    pub synced: bool,
}

/// What [`Swarm::close`] did.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Closed {
    pub slot: String,
    /// Where uncommitted work was saved, if there was any.
    pub rescue_ref: Option<String>,
    /// Tasks the slot held that are open again.
    pub released: Vec<String>,
    /// Tasks the slot held that were closed (`--close-tasks`).
    pub closed_tasks: Vec<String>,
}

/// One line of `bones swarm status`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SlotStatus {
    pub slot: String,
    /// `active`, `stale` (lease expired or missing, not yet reaped) or `reaped`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The task the slot joined for (`--task`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    /// Every task the board says the slot holds.
    pub tasks: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Seconds since the lease was renewed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_age_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    /// Files changed in the checkout and not committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncommitted: Option<usize>,
    /// Commits on the slot branch that trunk lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ahead: Option<usize>,
    /// Commits on trunk the slot branch lacks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind: Option<usize>,
    /// The slot's own last commit on trunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_commit_summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rescue_ref: Option<String>,
}

/// A connection to the workspace hub, for slot verbs.
pub struct Swarm {
    paths: Paths,
    client: async_nats::Client,
    store: kv::Store,
    caller: Caller,
}

/// Who runs a slot verb, for the holder check: a verb on a live slot
/// another agent holds is refused unless forced.
#[derive(Debug, Clone, Default)]
struct Caller {
    /// `None` when the caller gave no agent id: an operator's shell, which
    /// acts on any slot (an agent always runs with `$BONES_AGENT_ID`).
    agent: Option<String>,
    force: bool,
}

impl Swarm {
    /// Connects to the running hub of the workspace `paths` describes.
    pub async fn connect(paths: Paths) -> Result<Swarm, SwarmError> {
        let client = coord::connect_running(&paths).await?;
        let js = jetstream::new(client.clone());
        let store = lease::bucket(&js).await?;
        Ok(Swarm {
            paths,
            client,
            store,
            caller: Caller::default(),
        })
    }

    /// Acts as `agent` from now on: `renew`, `commit`, `sync` and `close`
    /// refuse a live slot another agent holds ([`SwarmError::NotHolder`])
    /// unless `force`.
    pub fn acting_as(mut self, agent: Option<String>, force: bool) -> Swarm {
        self.caller = Caller { agent, force };
        self
    }

    /// Refuses when the caller is a known agent other than the live
    /// holder. Incident: any agent could close another agent's live slot
    /// by naming it, deleting its checkout mid-turn.
    fn check_holder(&self, slot: &str, held: &Lease) -> Result<(), SwarmError> {
        match &self.caller.agent {
            Some(agent)
                if !self.caller.force
                    && *agent != held.agent_id
                    && held.is_live(OffsetDateTime::now_utc()) =>
            {
                Err(SwarmError::NotHolder {
                    slot: slot.to_string(),
                    holder: held.agent_id.clone(),
                    caller: agent.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Joins a slot: takes its lease, then makes its checkout.
    pub async fn join(&self, opts: JoinOptions) -> Result<Joined, SwarmError> {
        let given = match opts.agent {
            Some(agent) => {
                name::validate_agent(&agent)?;
                Some(agent)
            }
            None => agent_from_env()?,
        };
        let generated_agent = given.is_none();
        let agent = given.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let auto = opts.slot.is_none();
        let mut candidate = 1;
        let mut slot_name = match opts.slot {
            Some(slot) => slot,
            None => {
                let (slot, n) = self.free_auto_slot(&agent, candidate).await?;
                candidate = n;
                slot
            }
        };
        name::validate_slot(&slot_name)?;
        if let Some(task) = &opts.task {
            name::validate_task_id(task)?;
        }
        let ttl = opts.ttl.unwrap_or(lease::DEFAULT_TTL);
        // leases count whole seconds: a shorter one used to become 1 s
        // without a word
        if ttl < MIN_TTL {
            return Err(InputError::TtlTooShort(ttl).into());
        }
        // chosen before the checkout is made: making it may save the old
        // branch under a newer rescue ref
        let restore = if opts.restore {
            if SlotDir::new(&self.paths, &slot_name).has_checkout() {
                // a restore writes over the checkout: only into a new one
                return Err(InputError::RestoreIntoCheckout(slot_name).into());
            }
            match slot::latest_rescue(&self.paths.hub_repo, &slot_name) {
                Some(rescue) => Some(rescue),
                None => return Err(SwarmError::NothingToRestore(slot_name)),
            }
        } else {
            None
        };
        // the task must exist and be free before anything is made
        let board = match &opts.task {
            Some(task) => {
                let board = self.board().await?;
                check_claimable(&board, task, &slot_name, &agent).await?;
                Some(board)
            }
            None => None,
        };
        let process = match opts.pid {
            Some(pid) => match crate::sys::process::inspect(pid) {
                Some(info) if !info.zombie => Some((pid, info.start_time)),
                _ => {
                    return Err(InputError::NoProcess(pid).into());
                }
            },
            None => None,
        };
        let make_lease = |slot: &str| {
            let lease = Lease::new(slot, &agent, opts.task.clone(), ttl);
            match process {
                Some((pid, start)) => lease.with_process(pid, start),
                None => lease,
            }
        };
        let mut wanted = make_lease(&slot_name);
        let acquired = loop {
            match lease::acquire(&self.store, &wanted).await {
                Ok((acquired, _)) => break acquired,
                // another agent whose id names the same slot got there
                // first: an --auto slot is never shared, so take the next
                // (unless restoring: the rescued work is that slot's)
                Err(LeaseError::Held { .. }) if auto && restore.is_none() => {
                    let (slot, n) = self.free_auto_slot(&agent, candidate + 1).await?;
                    (slot_name, candidate) = (slot, n);
                    wanted = make_lease(&slot_name);
                }
                Err(err) => return Err(err.into()),
            }
        };
        if let (Some(board), Some(task)) = (&board, &opts.task) {
            // claims belong to the slot, so they outlive this process
            if let Err(err) = board.claim_from(task, &slot_name, &agent).await {
                if acquired == Acquired::Created {
                    let _ = lease::release(&self.store, &slot_name).await;
                }
                return Err(err.into());
            }
        }
        let dir = SlotDir::new(&self.paths, &slot_name);
        let made = blocking({
            let dir = dir.clone();
            let took_over = matches!(acquired, Acquired::TookOver(_));
            let restore = restore.clone();
            move || -> Result<(Vec<String>, Vec<String>), SlotError> {
                let mut saved = Vec::new();
                if took_over && let Some(r) = dir.retire()? {
                    saved.push(r);
                }
                saved.extend(dir.create()?);
                let conflicts = match &restore {
                    Some(rescue) => dir.restore(rescue)?,
                    None => Vec::new(),
                };
                Ok((saved, conflicts))
            }
        })
        .await;
        let (rescued, conflicts) = match made {
            Ok(made) => made,
            Err(err) => {
                if acquired == Acquired::Created {
                    let _ = lease::release(&self.store, &slot_name).await;
                    // no claim outlives a slot that was never made
                    if let (Some(board), Some(task)) = (&board, &opts.task) {
                        let _ = board
                            .release(
                                task,
                                &slot_name,
                                false,
                                Some("the slot was not made".into()),
                            )
                            .await;
                    }
                }
                return Err(err);
            }
        };
        let how = match acquired {
            Acquired::Created => "created",
            Acquired::Rejoined => "rejoined",
            Acquired::TookOver(_) => "took_over",
        };
        let mut said = format!("swarm: slot {slot_name} joined ({})", how.replace('_', " "));
        for saved in &rescued {
            said.push_str(&format!("; earlier work saved to {saved}"));
        }
        if let Some(restored) = &restore {
            said.push_str(&format!("; restored {restored}"));
        }
        self.log().write(slot_entry(
            said,
            &slot_name,
            Some(&agent),
            opts.task.as_deref().or(wanted.task_id.as_deref()),
        ));
        Ok(Joined {
            branch: format!("slot/{slot_name}"),
            path: dir.wt.clone(),
            slot: slot_name,
            agent_id: agent,
            ttl_s: wanted.ttl_s,
            how,
            generated_agent,
            rescued,
            restored: restore,
            conflicts,
        })
    }

    /// Renews a slot's lease; every verb on a slot starts with this.
    pub async fn renew(&self, slot: &str) -> Result<Lease, SwarmError> {
        name::validate_slot(slot)?;
        if let Some(lease::Stored {
            lease: Some(held), ..
        }) = lease::get(&self.store, slot).await?
        {
            self.check_holder(slot, &held)?;
        }
        Ok(lease::renew(&self.store, slot).await?)
    }

    /// The checkout of a slot (renewing its lease).
    pub async fn checkout(&self, slot: &str) -> Result<PathBuf, SwarmError> {
        self.renew(slot).await?;
        let dir = SlotDir::new(&self.paths, slot);
        if !dir.has_checkout() {
            return Err(SwarmError::NoCheckout(slot.to_string()));
        }
        Ok(dir.wt)
    }

    /// Commits everything changed in the slot and lands it on trunk.
    pub async fn commit(&self, slot: &str, message: &str) -> Result<CommitOutcome, SwarmError> {
        validate_message(message)?;
        let held = self.renew(slot).await?;
        let dir = SlotDir::new(&self.paths, slot);
        if !dir.has_checkout() {
            return Err(SwarmError::NoCheckout(slot.to_string()));
        }
        let full_message = with_trailers(
            message,
            slot,
            held.task_id.as_deref(),
            Some(held.agent_id.as_str()),
        );
        let author_name = author_name(&held.agent_id, slot);
        let (commit, head, waiting) = blocking({
            let dir = dir.clone();
            let slot = slot.to_string();
            move || -> Result<(Option<Oid>, Oid, usize), SwarmError> {
                // markers `sync` left must never reach trunk
                let paths = dir.unresolved()?;
                if !paths.is_empty() {
                    return Err(SwarmError::Unresolved { slot, paths });
                }
                // the agent is the author; the slot names the address
                let author = Signature::now(&author_name, &format!("{slot}@bones.invalid"))?;
                let commit = dir.commit_all(&full_message, &author)?;
                let head = match commit {
                    Some(id) => id,
                    None => dir.head()?,
                };
                let waiting = unlanded(&dir.hub_repo, head)?;
                Ok((commit, head, waiting))
            }
        })
        .await?;
        if waiting == 0 {
            return Err(SwarmError::NothingToCommit(slot.to_string()));
        }
        let request = LandRequest {
            slot: slot.to_string(),
            head: head.to_string(),
            agent: Some(held.agent_id.clone()),
            task: held.task_id.clone(),
            user: None,
        };
        let reply = self.land(&request).await?;
        match reply {
            LandReply::Landed { trunk, commits, .. } => {
                let target = Oid::from_str(&trunk)?;
                let synced = blocking({
                    let dir = dir.clone();
                    move || {
                        dir.clear_conflicts();
                        dir.sync_to(target)
                    }
                })
                .await
                .unwrap_or(false);
                Ok(CommitOutcome {
                    slot: slot.to_string(),
                    commit: commit.map(|c| c.to_string()),
                    landed: commits,
                    trunk,
                    synced,
                })
            }
            LandReply::Conflict { commit, paths } => Err(SwarmError::Conflict {
                slot: slot.to_string(),
                commit,
                paths,
            }),
            LandReply::Failed { error } => Err(SwarmError::LandFailed {
                slot: slot.to_string(),
                error,
            }),
        }
    }

    pub(crate) async fn land(&self, request: &LandRequest) -> Result<LandReply, SwarmError> {
        let not_landed = |reason: NoAnswer| SwarmError::NotLanded {
            slot: request.slot.clone(),
            reason,
        };
        let body: bytes::Bytes = serde_json::to_vec(request)
            .map_err(SwarmError::Encode)?
            .into();
        let deadline = tokio::time::Instant::now() + LAND_TIMEOUT;
        let mut reconnected = false;
        loop {
            let connects = self.connects();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let sent = self.client.send_request(
                LAND_SUBJECT,
                async_nats::Request::new()
                    .payload(body.clone())
                    .timeout(Some(left)),
            );
            let sent = tokio::select! {
                sent = sent => sent,
                // the coordination server restarted (the hub with it, most
                // likely) while this request waited: it is gone with the old
                // server and no answer will come. Landing is idempotent, so
                // ask the hub that is there now.
                _ = self.reconnected_since(connects) => {
                    reconnected = true;
                    continue;
                }
            };
            if let Err(err) = &sent
                && err.kind() == async_nats::RequestErrorKind::NoResponders
                && reconnected
                && tokio::time::Instant::now() < deadline
            {
                // a restarted hub answers once its landing service is up
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let message = sent.map_err(|err| {
                not_landed(match err.kind() {
                    async_nats::RequestErrorKind::NoResponders => NoAnswer::NoResponders(err),
                    async_nats::RequestErrorKind::TimedOut => NoAnswer::TimedOut(err),
                    _ => NoAnswer::Request(err),
                })
            })?;
            return serde_json::from_slice(&message.payload)
                .map_err(|e| not_landed(NoAnswer::Unreadable(e)));
        }
    }

    /// How many times the client has connected so far.
    fn connects(&self) -> u64 {
        self.client
            .statistics()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Resolves once the client has connected again after `connects`.
    async fn reconnected_since(&self, connects: u64) {
        let mut every = tokio::time::interval(Duration::from_millis(50));
        loop {
            every.tick().await;
            if self.connects() > connects {
                return;
            }
        }
    }

    /// Brings the slot onto the trunk tip (see [`SlotDir::sync`]).
    pub async fn sync(&self, slot: &str) -> Result<slot::Synced, SwarmError> {
        let held = self.renew(slot).await?;
        let dir = SlotDir::new(&self.paths, slot);
        if !dir.has_checkout() {
            return Err(SwarmError::NoCheckout(slot.to_string()));
        }
        let synced = blocking(move || dir.sync()).await?;
        let mut said = format!(
            "swarm: slot {slot} synced onto trunk {}",
            &synced.trunk[..synced.trunk.len().min(12)]
        );
        if let Some(saved) = &synced.saved {
            said.push_str(&format!("; its commits saved to {saved} and replayed"));
        }
        if !synced.conflicts.is_empty() {
            said.push_str(&format!("; conflicts in {}", synced.conflicts.join(", ")));
        }
        self.log().write(slot_entry(
            said,
            slot,
            Some(&held.agent_id),
            held.task_id.as_deref(),
        ));
        Ok(synced)
    }

    /// The first `--auto` slot for `agent` from the `n`th candidate on
    /// (see [`auto_slot_name`]) that no other agent holds or held: two ids
    /// that derive the same name never share a slot, whatever the odds.
    async fn free_auto_slot(
        &self,
        agent: &str,
        from: usize,
    ) -> Result<(String, usize), SwarmError> {
        let base = auto_slot_name(agent);
        for n in from..from + MAX_AUTO_CANDIDATES {
            let candidate = numbered(&base, n);
            let record = lease::get(&self.store, &candidate).await?;
            let leased_to_other = match record {
                Some(lease::Stored {
                    lease: Some(held), ..
                }) => held.agent_id != agent,
                Some(lease::Stored { lease: None, .. }) => true,
                None => false,
            };
            let reaped_from_other = SlotDir::new(&self.paths, &candidate)
                .reaped()
                .and_then(|r| r.agent_id)
                .is_some_and(|held| held != agent);
            if !leased_to_other && !reaped_from_other {
                return Ok((candidate, n));
            }
        }
        Err(SwarmError::NoFreeAutoSlot {
            agent: agent.to_string(),
        })
    }

    /// The task board on the same connection.
    async fn board(&self) -> Result<Board, SwarmError> {
        Ok(Board::open(&jetstream::new(self.client.clone())).await?)
    }

    /// Closes a slot: saves uncommitted work under a rescue ref, removes the
    /// checkout, deletes the branch when trunk has all of it, releases the
    /// lease, and releases the tasks the slot still holds (or closes them,
    /// with `close_tasks`): nothing stays claimed by a slot that is gone.
    /// `abandon` allows closing with commits trunk lacks (they stay on the
    /// branch).
    pub async fn close(
        &self,
        slot: &str,
        abandon: bool,
        close_tasks: bool,
    ) -> Result<Closed, SwarmError> {
        name::validate_slot(slot)?;
        let held = lease::get(&self.store, slot).await?;
        if let Some(lease) = held.as_ref().and_then(|h| h.lease.as_ref()) {
            self.check_holder(slot, lease)?;
        }
        let dir = SlotDir::new(&self.paths, slot);
        if held.is_none() && !dir.dir.exists() && dir.head().is_err() {
            // nothing to close, so nothing to log either
            return Err(SwarmError::NoSuchSlot(slot.to_string()));
        }
        let rescued = blocking({
            let dir = dir.clone();
            let slot = slot.to_string();
            move || -> Result<Option<String>, SwarmError> {
                let head = dir.head().ok();
                let waiting = match head {
                    Some(head) => unlanded(&dir.hub_repo, head)?,
                    None => 0,
                };
                if waiting > 0 && !abandon {
                    return Err(SwarmError::Unlanded {
                        slot,
                        count: waiting,
                    });
                }
                let rescued = dir.remove()?;
                if waiting == 0 {
                    delete_branch(&dir);
                }
                Ok(rescued)
            }
        })
        .await?;
        if held.is_some() {
            lease::release(&self.store, slot).await?;
        }
        let board = self.board().await?;
        let reason = format!(
            "slot {slot} was closed ({})",
            if abandon { "abandon" } else { "success" }
        );
        let (released, closed_tasks) = if close_tasks {
            (
                Vec::new(),
                board.close_all_held_by(slot, slot, &reason).await?,
            )
        } else {
            (
                board.release_all_held_by(slot, slot, &reason).await?,
                Vec::new(),
            )
        };
        let mut entry = LogEntry::lifecycle(
            LogLevel::Info,
            format!(
                "swarm: slot {slot} closed ({}; {})",
                if abandon { "abandon" } else { "success" },
                match &rescued {
                    Some(r) => format!("uncommitted work saved to {r}"),
                    None => "nothing uncommitted".to_string(),
                }
            ),
        );
        let lease = held.and_then(|h| h.lease);
        entry.slot = Some(slot.to_string());
        entry.agent = lease.as_ref().map(|l| l.agent_id.clone());
        entry.task = lease
            .and_then(|l| l.task_id)
            .or_else(|| released.first().or(closed_tasks.first()).cloned());
        self.log().write(entry);
        Ok(Closed {
            slot: slot.to_string(),
            rescue_ref: rescued,
            released,
            closed_tasks,
        })
    }

    /// Every slot the workspace knows: leased, on disk, or reaped.
    pub async fn status(&self) -> Result<Vec<SlotStatus>, SwarmError> {
        let records = lease::list(&self.store).await?;
        let (tasks, _) = self.board().await?.list().await?;
        let mut held: HashMap<String, Vec<String>> = HashMap::new();
        for task in tasks {
            if let (Status::Claimed, Some(holder)) = (task.status, task.claimed_by) {
                held.entry(holder).or_default().push(task.id);
            }
        }
        let paths = self.paths.clone();
        blocking(move || Ok::<_, SwarmError>(collect_status(&paths, records, &held))).await
    }

    /// Appends only: the hub alone rotates hub.log (see `hub::log`).
    fn log(&self) -> HubLog {
        HubLog::append_only(self.paths.hub_log.clone())
    }
}

/// How far back in trunk's history `status` looks for each slot's last
/// landed commit.
const LANDED_SEARCH: usize = 10_000;

fn collect_status(
    paths: &Paths,
    records: Vec<lease::Stored>,
    held: &HashMap<String, Vec<String>>,
) -> Vec<SlotStatus> {
    let now = OffsetDateTime::now_utc();
    let repo = Repository::open_bare(&paths.hub_repo).ok();
    let mut names: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
    names.extend(slot::on_disk(paths));
    names.sort();
    names.dedup();
    let landed = repo
        .as_ref()
        .map(|repo| last_landed(repo, &names))
        .unwrap_or_default();
    let trunk = repo
        .as_ref()
        .and_then(|repo| crate::trunk::land::trunk(repo).ok());
    names
        .into_iter()
        .map(|name| {
            let dir = SlotDir::new(paths, &name);
            let record = records.iter().find(|r| r.key == name);
            let lease = record.and_then(|r| r.lease.clone());
            let reaped = dir.reaped();
            let state = match (&lease, record, &reaped) {
                (Some(l), _, _) if l.is_live(now) => "active",
                (None, Some(_), _) => "active", // unreadable record: treated as live
                (None, None, Some(_)) if !dir.wt.exists() => "reaped",
                _ => "stale",
            };
            let (ahead, behind) = match (&repo, trunk, dir.head().ok()) {
                (Some(repo), Some(trunk), Some(head)) => repo
                    .graph_ahead_behind(head, trunk)
                    .map(|(a, b)| (Some(a), Some(b)))
                    .unwrap_or((None, None)),
                _ => (None, None),
            };
            let last = landed.get(&name);
            SlotStatus {
                state,
                agent_id: lease
                    .as_ref()
                    .map(|l| l.agent_id.clone())
                    .or_else(|| reaped.as_ref().and_then(|r| r.agent_id.clone())),
                task_id: lease
                    .as_ref()
                    .and_then(|l| l.task_id.clone())
                    .or_else(|| reaped.as_ref().and_then(|r| r.task_id.clone())),
                tasks: held.get(&name).cloned().unwrap_or_default(),
                host: lease.as_ref().map(|l| l.host.clone()),
                lease_age_s: lease.as_ref().map(|l| l.age_s(now)),
                ttl_s: lease.as_ref().map(|l| l.ttl_s),
                uncommitted: dir.has_checkout().then(|| dir.uncommitted().ok()).flatten(),
                ahead,
                behind,
                last_commit: last.map(|l| l.0.clone()),
                last_commit_summary: last.map(|l| l.1.clone()),
                path: dir.has_checkout().then(|| dir.wt.clone()),
                rescue_ref: reaped
                    .and_then(|r| r.rescue_ref)
                    .or_else(|| slot::latest_rescue(&paths.hub_repo, &name)),
                slot: name,
            }
        })
        .collect()
}

/// Each slot's newest commit on trunk (by its `Bones-Slot` trailer), with
/// its subject: what the slot itself last landed, not trunk's tip.
fn last_landed(repo: &Repository, slots: &[String]) -> HashMap<String, (String, String)> {
    let mut found = HashMap::new();
    let Ok(mut walk) = repo.revwalk() else {
        return found;
    };
    if walk.push_ref(crate::trunk::repo::TRUNK_REF).is_err() {
        return found;
    }
    walk.simplify_first_parent().ok();
    for id in walk.take(LANDED_SEARCH).flatten() {
        if found.len() == slots.len() {
            break;
        }
        let Ok(commit) = repo.find_commit(id) else {
            continue;
        };
        let message = String::from_utf8_lossy(commit.message_bytes()).into_owned();
        let Some(slot) = message
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("Bones-Slot: "))
        else {
            continue;
        };
        if slots.iter().any(|s| s == slot) && !found.contains_key(slot) {
            let summary = commit
                .summary()
                .ok()
                .flatten()
                .unwrap_or_default()
                .to_string();
            found.insert(slot.to_string(), (id.to_string(), summary));
        }
    }
    found
}

/// A lifecycle entry about a slot, for its trail in hub.log.
fn slot_entry(msg: String, slot: &str, agent: Option<&str>, task: Option<&str>) -> LogEntry {
    let mut entry = LogEntry::lifecycle(LogLevel::Info, msg);
    entry.slot = Some(slot.to_string());
    entry.agent = agent.map(str::to_string);
    entry.task = task.map(str::to_string);
    entry
}

/// Refuses a task that does not exist, is closed, or is held by another
/// than the slot or the joining agent.
async fn check_claimable(
    board: &Board,
    task: &str,
    slot: &str,
    agent: &str,
) -> Result<(), SwarmError> {
    let (record, _) = board.get(task).await?;
    match (record.status, record.claimed_by.as_deref()) {
        (Status::Closed, _) => Err(TaskError::Refused(Refusal::Closed {
            id: task.to_string(),
        })
        .into()),
        (Status::Claimed, Some(holder)) if holder != slot && holder != agent => {
            Err(TaskError::Refused(Refusal::ClaimedBy {
                id: task.to_string(),
                holder: holder.to_string(),
            })
            .into())
        }
        _ => Ok(()),
    }
}

/// An environment variable's value; `None` when unset or empty. A value
/// that is not UTF-8 is an error, never silently treated as unset: a slot
/// verb would otherwise act on another slot than the one meant.
pub fn env_text(name: &str) -> Result<Option<String>, SwarmError> {
    match std::env::var(name) {
        Ok(value) if value.is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(InputError::NotUtf8(name.to_string()).into()),
    }
}

/// The agent named by `$BONES_AGENT_ID`, validated; `None` when unset or
/// empty. Blanks are refused, as `--agent '   '` is: a name given on
/// purpose is never silently replaced by a generated one.
pub fn agent_from_env() -> Result<Option<String>, SwarmError> {
    let Some(agent) = env_text(AGENT_ENV)? else {
        return Ok(None);
    };
    if agent.trim().is_empty() {
        return Err(InputError::BlankAgent.into());
    }
    name::validate_agent(&agent)?;
    Ok(Some(agent))
}

/// The slot a verb acts on: the flag, else `$BONES_SLOT`, else the slot
/// whose checkout holds the current directory.
pub fn current_slot(paths: &Paths, flag: Option<String>) -> Result<String, SwarmError> {
    let flag = match flag {
        Some(flag) => Some(flag),
        None => env_text(SLOT_ENV)?,
    };
    if let Some(slot) = flag {
        name::validate_slot(&slot)?;
        return Ok(slot);
    }
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|d| d.canonicalize().ok());
    let swarm = paths.swarm_dir.canonicalize().ok();
    if let (Some(cwd), Some(swarm)) = (cwd, swarm)
        && let Ok(rest) = cwd.strip_prefix(&swarm)
        && let Some(first) = rest.iter().next().and_then(|s| s.to_str())
        && name::validate_slot(first).is_ok()
    {
        return Ok(first.to_string());
    }
    let known = slot::on_disk(paths);
    Err(SwarmError::NoSlot(if known.is_empty() {
        "which slot? pass --slot NAME (no slots yet: `bones swarm join --slot NAME`)".to_string()
    } else {
        format!(
            "which slot? pass --slot NAME, set {SLOT_ENV}, or run inside a slot's checkout; slots: {}",
            known.join(", ")
        )
    }))
}

/// How many numbered candidates `--auto` tries before giving up.
const MAX_AUTO_CANDIDATES: usize = 1000;

/// The slot name `--auto` derives from an agent id: `agent-` and the id
/// itself when the id is already a slot-safe name (`claude-worker-1` ->
/// `agent-claude-worker-1`, `a1` -> `agent-a1`), so the name is the id and
/// two such ids never meet. Any other id (upper case, other characters, too
/// long) becomes its lowercased letters and digits, a dash, and 12 hex
/// digits of a hash of the whole id (`Claude Worker` ->
/// `agent-claude-worker-3c41a0d2b9e7`), so ids that differ only in what was
/// dropped still differ. Should two ids still derive the same name, the
/// lease decides: [`Swarm::join`] moves the later agent to `NAME-2`, `NAME-3`.
pub fn auto_slot_name(agent: &str) -> String {
    let plain = format!("agent-{agent}");
    if plain.len() <= 63
        && agent
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name::validate_slot(&plain).is_ok()
    {
        return plain;
    }
    let mut slug = String::new();
    for c in agent.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 36 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    let hash = crate::sys::hash::Fnv1a::of(agent.as_bytes()) & 0xffff_ffff_ffff;
    if slug.is_empty() {
        format!("agent-{hash:012x}")
    } else {
        format!("agent-{slug}-{hash:012x}")
    }
}

/// The `n`th candidate for an `--auto` slot: the name itself, then
/// `NAME-2`, `NAME-3`, ... (shortened to stay a valid slot name).
fn numbered(base: &str, n: usize) -> String {
    if n <= 1 {
        return base.to_string();
    }
    let suffix = format!("-{n}");
    let keep = 63 - suffix.len();
    let head = base[..base.len().min(keep)].trim_end_matches(['-', '.', '_']);
    format!("{head}{suffix}")
}

/// Largest commit message accepted, in bytes: as much as a task body.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Checks a commit message: not blank, at most [`MAX_MESSAGE`] bytes, no
/// NUL (git would cut the message there).
pub fn validate_message(message: &str) -> Result<(), SwarmError> {
    if message.trim().is_empty() {
        return Err(InputError::EmptyMessage.into());
    }
    if message.len() > MAX_MESSAGE {
        return Err(InputError::LongMessage(message.len()).into());
    }
    if message.contains('\0') {
        return Err(InputError::NulInMessage.into());
    }
    Ok(())
}

fn with_trailers(message: &str, slot: &str, task: Option<&str>, agent: Option<&str>) -> String {
    let mut text = message.trim_end().to_string();
    text.push_str("\n\nBones-Slot: ");
    text.push_str(slot);
    if let Some(task) = task {
        text.push_str("\nBones-Task: ");
        text.push_str(task);
    }
    if let Some(agent) = agent {
        text.push_str("\nBones-Agent: ");
        text.push_str(agent);
    }
    text.push('\n');
    text
}

/// The agent id as a git author name: git refuses `<` and `>` there (they
/// delimit the address), so they are dropped; an id of nothing else gives
/// the slot's name.
fn author_name(agent: &str, slot: &str) -> String {
    let name: String = agent.chars().filter(|c| !matches!(c, '<' | '>')).collect();
    if name.trim().is_empty() {
        slot.to_string()
    } else {
        name.trim().to_string()
    }
}

/// How many commits of `head` trunk lacks.
fn unlanded(hub_repo: &Path, head: Oid) -> Result<usize, SwarmError> {
    let repo = Repository::open_bare(hub_repo)?;
    let trunk = crate::trunk::land::trunk(&repo)?;
    if head == trunk || repo.graph_descendant_of(trunk, head).unwrap_or(false) {
        return Ok(0);
    }
    Ok(crate::trunk::land::pending(&repo, trunk, head)?.len())
}

fn delete_branch(dir: &SlotDir) {
    if let Ok(repo) = Repository::open_bare(&dir.hub_repo)
        && let Ok(mut reference) = repo.find_reference(&dir.branch_ref())
    {
        let _ = reference.delete();
    }
}

/// Runs git and filesystem work off the async threads.
async fn blocking<T, E>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, SwarmError>
where
    T: Send + 'static,
    E: Into<SwarmError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Into::into),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_slot_names_are_valid() {
        for agent in ["3f6c1e528d0b4a8e", "Claude Session 5", "x", "", "é€"] {
            let slot = auto_slot_name(agent);
            assert!(name::validate_slot(&slot).is_ok(), "{agent:?} -> {slot}");
        }
        assert_eq!(auto_slot_name("claude-worker-1"), "agent-claude-worker-1");
        assert_eq!(auto_slot_name("a1"), "agent-a1");
        assert!(auto_slot_name("Claude Worker").starts_with("agent-claude-worker-"));
        assert_ne!(auto_slot_name("A1"), auto_slot_name("a1"));
        assert_eq!(numbered("agent-a1", 1), "agent-a1");
        assert_eq!(numbered("agent-a1", 2), "agent-a1-2");
        assert!(name::validate_slot(&numbered(&"a".repeat(63), 999)).is_ok());
    }

    #[test]
    fn commit_messages_are_bounded() {
        assert!(validate_message("fix it").is_ok());
        assert!(validate_message(" \n").is_err());
        assert!(validate_message(&"x".repeat(MAX_MESSAGE)).is_ok());
        assert!(validate_message(&"x".repeat(MAX_MESSAGE + 1)).is_err());
        assert!(validate_message("a\0b").is_err());
    }

    proptest::proptest! {
        #[test]
        fn auto_slot_names_are_valid_for_any_agent(agent in "(?s).{0,200}") {
            proptest::prop_assert!(name::validate_slot(&auto_slot_name(&agent)).is_ok());
        }

        #[test]
        fn distinct_slot_safe_ids_get_distinct_names(a in "[a-z0-9-]{1,57}", b in "[a-z0-9-]{1,57}") {
            let (na, nb) = (auto_slot_name(&a), auto_slot_name(&b));
            if a != b {
                proptest::prop_assert_ne!(na, nb);
            }
        }

        #[test]
        fn numbered_candidates_stay_valid_slot_names(agent in "(?s).{0,200}", n in 1usize..2000) {
            proptest::prop_assert!(name::validate_slot(&numbered(&auto_slot_name(&agent), n)).is_ok());
        }

        #[test]
        fn message_errors_are_one_line(message in "(?s).{0,100}", big in 0usize..2) {
            let message = message.repeat([1, 2000][big]);
            if let Err(err) = validate_message(&message) {
                let text = err.to_string();
                proptest::prop_assert!(!text.contains('\n') && text.len() < 300);
            }
        }
    }

    #[test]
    fn trailers_name_slot_and_task() {
        assert_eq!(
            with_trailers("fix it\n", "a", Some("t-1"), Some("claude 1")),
            "fix it\n\nBones-Slot: a\nBones-Task: t-1\nBones-Agent: claude 1\n"
        );
    }
}
