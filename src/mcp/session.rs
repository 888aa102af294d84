//! One agent session: the agent's id, the slot it holds, and the hub
//! connections its tool calls use.
//!
//! One `bones mcp` process serves one agent session, so the session is the
//! process: the agent id is fixed when it starts (`$BONES_AGENT_ID`, else
//! generated; or the agent of the harness session whose slot it adopts,
//! see below), and the slot it joins is leased to the server's own process
//! (`join --pid`, ADR 0011). The lease is therefore live exactly while the
//! session is connected; when the client closes stdin the server ends, and
//! the hub's lease watcher reaps the slot within seconds, saving its
//! uncommitted work and giving its tasks back (`restore` brings the work
//! into a new checkout). A slot taken by someone else for this session (a
//! harness's session-start hook, ADR 0015, found through the harness
//! process both were started by) is adopted with its agent, only renewed
//! while connected, never tied to this process: it is left to whoever
//! took it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::Mutex;

use super::error::ToolError;
use crate::coord;
use crate::feed::Feed;
use crate::state::Paths;
use crate::swarm::{self, Swarm};
use crate::sys::error::Kinded;
use crate::tasks::Board;

/// How often the session renews its slot's lease while connected: well
/// within the shortest TTL anyone sets by hand for an agent (1 minute is
/// the default floor of hooks), and cheap (one KV update).
pub const RENEW_EVERY: Duration = Duration::from_secs(20);

/// The state of one agent session.
#[derive(Clone)]
pub struct Session {
    paths: Paths,
    held: Arc<Mutex<Held>>,
}

/// Who the session acts as and what it holds; one lock, so a tool call
/// never sees the agent of one slot with another slot.
struct Held {
    agent: String,
    slot: Option<String>,
    /// The slot a hook took for this session: its lease is not retied to
    /// this process.
    hook_slot: Option<String>,
    /// Whether the harness session's record may still be adopted: until
    /// the session holds a slot by any means (the harness runs its start
    /// hook and starts this server concurrently, so the record may come
    /// after the server's start).
    may_adopt: bool,
}

impl Session {
    /// A session for the workspace `paths` describes, as the agent
    /// `$BONES_AGENT_ID` (else a generated id), holding the slot a harness
    /// hook took for it, if any ([`slot_taken_by_hook`]).
    pub fn new(paths: Paths) -> Result<Session, ToolError> {
        let agent = swarm::agent_from_env()?
            .unwrap_or_else(|| format!("mcp-{}", uuid::Uuid::new_v4().simple()));
        let slot = slot_taken_by_hook(&paths)?;
        Ok(Session {
            paths,
            held: Arc::new(Mutex::new(Held {
                agent,
                may_adopt: slot.is_none(),
                slot: slot.clone(),
                hook_slot: slot,
            })),
        })
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// What the session holds, after adopting the slot its harness's
    /// session-start hook took (`bones hook session-start` records it
    /// under the harness process: [`swarm::session::for_this_process`]),
    /// as that session's agent, the first time it is found.
    async fn held(&self) -> tokio::sync::MutexGuard<'_, Held> {
        let mut held = self.held.lock().await;
        if held.may_adopt
            && held.slot.is_none()
            && let Some(record) = swarm::session::for_this_process(&self.paths)
        {
            held.agent = record.agent;
            held.slot = Some(record.slot.clone());
            held.hook_slot = Some(record.slot);
            held.may_adopt = false;
        }
        held
    }

    /// The agent id this session acts as.
    pub async fn agent(&self) -> String {
        self.held().await.agent.clone()
    }

    /// The slot this session holds, if it joined one.
    pub async fn slot(&self) -> Option<String> {
        self.held().await.slot.clone()
    }

    /// The slot this session holds, or a usage error saying to join.
    pub async fn held_slot(&self) -> Result<String, ToolError> {
        self.slot().await.ok_or_else(|| {
            ToolError::usage("this session holds no slot yet; call the join tool first")
        })
    }

    /// The process the lease of `slot` should follow when this session
    /// joins it: this server's own, unless a hook took the slot for the
    /// session (its lease then keeps the process the hook gave it).
    pub async fn lease_pid(&self, slot: Option<&str>) -> Option<u32> {
        match (slot, &self.held().await.hook_slot) {
            (Some(slot), Some(hook)) if slot == hook => None,
            _ => Some(std::process::id()),
        }
    }

    pub async fn set_slot(&self, slot: Option<String>) {
        let mut held = self.held.lock().await;
        held.may_adopt = false;
        held.slot = slot;
    }

    /// The name task claims and feed entries are recorded under: the
    /// slot (claims outlive the process), else the agent id; as
    /// [`swarm::identity`] decides on the command line.
    pub async fn acting_as(&self) -> String {
        let held = self.held().await;
        held.slot.clone().unwrap_or_else(|| held.agent.clone())
    }

    /// Starts the hub when none runs (as every CLI verb does; see
    /// `BONES_NO_AUTOSTART`).
    fn ensure_hub(&self) -> Result<(), ToolError> {
        crate::hub::autostart(&self.paths).map(drop).map_err(|err| {
            ToolError::new(
                err.kind(),
                format!("no hub was running and starting one failed: {err}"),
            )
        })
    }

    /// The slot verbs, acting as this session's agent.
    pub async fn swarm(&self) -> Result<Swarm, ToolError> {
        self.ensure_hub()?;
        Ok(Swarm::connect(self.paths.clone())
            .await?
            .acting_as(Some(self.agent().await), false))
    }

    /// The running hub's JetStream.
    pub async fn jetstream(&self) -> Result<jetstream::Context, ToolError> {
        self.ensure_hub()?;
        let client = coord::connect_running(&self.paths).await?;
        Ok(jetstream::new(client))
    }

    pub async fn board(&self) -> Result<Board, ToolError> {
        Ok(Board::open(&self.jetstream().await?).await?)
    }

    pub async fn feed(&self) -> Result<Feed, ToolError> {
        Ok(Feed::open(&self.jetstream().await?).await?)
    }

    /// Renews the session's slot lease every [`RENEW_EVERY`] until the
    /// returned task is aborted (when the client disconnects). Failures
    /// are reported on stderr and retried: the next tool call says what
    /// is wrong.
    pub fn keep_renewing(&self) -> tokio::task::JoinHandle<()> {
        let session = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(slot) = session.slot().await else {
                    continue;
                };
                let renewed = match session.swarm().await {
                    Ok(hub) => hub.renew(&slot).await.map(|_| ()).map_err(ToolError::from),
                    Err(err) => Err(err),
                };
                if let Err(err) = renewed {
                    eprintln!(
                        "mcp: cannot renew slot {slot}: {}",
                        crate::sys::shown::plain(&err.message)
                    );
                }
            }
        })
    }
}

/// The slot already taken for this session when the server starts:
/// `$BONES_SLOT` (a hook or the user exports it into the harness's
/// environment, which the harness passes to the servers it starts), else
/// the slot whose checkout the server was started in. The slot a
/// session-start hook records under the harness process is looked up later,
/// on each tool call until found (`Session::held`), as the hook may finish
/// after the server starts.
pub fn slot_taken_by_hook(paths: &Paths) -> Result<Option<String>, ToolError> {
    if swarm::env_text(swarm::SLOT_ENV)?.is_some() {
        // named on purpose: an invalid name is an error, not "no slot"
        return Ok(Some(swarm::current_slot(paths, None)?));
    }
    Ok(swarm::current_slot(paths, None).ok())
}
