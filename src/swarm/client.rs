//! The slot verbs as a library: join, renew, commit, close, status.
//!
//! Every verb renews the slot's lease first, so a slot that is in use is
//! never reaped, and a slot that was reaped is noticed before anything in
//! it is touched. Commits are made in the slot's checkout here, then landed
//! on trunk by the hub (see [`super::protocol`]): the hub is trunk's only
//! writer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use git2::{Oid, Repository, Signature};
use serde::Serialize;
use time::OffsetDateTime;

use super::lease::{self, Acquired, Lease, LeaseError};
use super::name::{self, NameError};
use super::protocol::{LAND_SUBJECT, LandReply, LandRequest};
use super::slot::{self, SlotDir, SlotError};
use crate::hub::coord::{self, CoordError};
use crate::hub::{HubLog, LogEntry, LogLevel, Paths};

/// Environment variable naming the agent (who holds a slot).
pub const AGENT_ENV: &str = "BONES_AGENT_ID";
/// Environment variable naming the current slot.
pub const SLOT_ENV: &str = "BONES_SLOT";
/// How long a commit waits for the hub to land it.
const LAND_TIMEOUT: Duration = Duration::from_secs(60);

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
    #[error("{0}")]
    NoSlot(String),
    #[error(
        "slot {0} has a lease but no checkout; close it (`bones swarm close --slot {0}`) and join again"
    )]
    NoCheckout(String),
    #[error("slot {0}: nothing to commit and nothing waiting to land")]
    NothingToCommit(String),
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
    NotLanded { slot: String, reason: String },
    #[error("slot {slot}: the hub refused to land: {error}")]
    LandFailed { slot: String, error: String },
    #[error(
        "slot {slot} has {count} commit(s) trunk lacks; land them with `bones swarm commit`, or close with --result abandon (they stay on slot/{slot})"
    )]
    Unlanded { slot: String, count: usize },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Internal(String),
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
}

/// What [`Swarm::join`] did.
#[derive(Debug, Clone, Serialize)]
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
}

/// What [`Swarm::commit`] did.
#[derive(Debug, Clone, Serialize)]
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

/// One line of `bones swarm status`.
#[derive(Debug, Clone, Serialize)]
pub struct SlotStatus {
    pub slot: String,
    /// `active`, `stale` (lease expired or missing, not yet reaped) or `reaped`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Seconds since the lease was renewed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_age_s: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
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
        })
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
        let slot_name = match opts.slot {
            Some(slot) => slot,
            None => auto_slot_name(&agent),
        };
        name::validate_slot(&slot_name)?;
        if let Some(task) = &opts.task {
            name::validate_task_id(task)?;
        }
        let ttl = opts.ttl.unwrap_or(lease::DEFAULT_TTL);
        let wanted = Lease::new(&slot_name, &agent, opts.task.clone(), ttl);
        let (acquired, _) = lease::acquire(&self.store, &wanted).await?;
        let dir = SlotDir::new(&self.paths, &slot_name);
        let mut rescued = Vec::new();
        let made = blocking({
            let dir = dir.clone();
            let took_over = matches!(acquired, Acquired::TookOver(_));
            move || -> Result<Vec<String>, SlotError> {
                let mut saved = Vec::new();
                if took_over && let Some(r) = dir.retire()? {
                    saved.push(r);
                }
                saved.extend(dir.create()?);
                Ok(saved)
            }
        })
        .await;
        match made {
            Ok(saved) => rescued.extend(saved),
            Err(err) => {
                if acquired == Acquired::Created {
                    let _ = lease::release(&self.store, &slot_name).await;
                }
                return Err(err);
            }
        }
        let how = match acquired {
            Acquired::Created => "created",
            Acquired::Rejoined => "rejoined",
            Acquired::TookOver(_) => "took_over",
        };
        let log = self.log();
        for saved in &rescued {
            let mut entry = LogEntry::lifecycle(
                LogLevel::Info,
                format!("swarm: slot {slot_name} joined; earlier work saved to {saved}"),
            );
            entry.slot = Some(slot_name.clone());
            log.write(entry);
        }
        Ok(Joined {
            branch: format!("slot/{slot_name}"),
            path: dir.wt.clone(),
            slot: slot_name,
            agent_id: agent,
            ttl_s: wanted.ttl_s,
            how,
            generated_agent,
            rescued,
        })
    }

    /// Renews a slot's lease; every verb on a slot starts with this.
    pub async fn renew(&self, slot: &str) -> Result<Lease, SwarmError> {
        name::validate_slot(slot)?;
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
        let full_message = with_trailers(message, slot, held.task_id.as_deref());
        let (commit, head, waiting) = blocking({
            let dir = dir.clone();
            let slot = slot.to_string();
            move || -> Result<(Option<Oid>, Oid, usize), SwarmError> {
                let author = Signature::now(&slot, &format!("{slot}@bones.invalid"))
                    .map_err(|e| SwarmError::Internal(e.message().to_string()))?;
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
                let target =
                    Oid::from_str(&trunk).map_err(|e| SwarmError::Internal(e.to_string()))?;
                let synced = blocking({
                    let dir = dir.clone();
                    move || dir.sync_to(target)
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
        let not_landed = |reason: String| SwarmError::NotLanded {
            slot: request.slot.clone(),
            reason,
        };
        let body: bytes::Bytes = serde_json::to_vec(request)
            .map_err(|e| SwarmError::Internal(e.to_string()))?
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
                    async_nats::RequestErrorKind::NoResponders => {
                        "the hub is not answering; is it running? `bones hub status`".to_string()
                    }
                    async_nats::RequestErrorKind::TimedOut => {
                        format!("no answer from the hub within {LAND_TIMEOUT:?}")
                    }
                    _ => err.to_string(),
                })
            })?;
            return serde_json::from_slice(&message.payload)
                .map_err(|e| not_landed(format!("unreadable answer from the hub: {e}")));
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
        self.renew(slot).await?;
        let dir = SlotDir::new(&self.paths, slot);
        if !dir.has_checkout() {
            return Err(SwarmError::NoCheckout(slot.to_string()));
        }
        blocking(move || dir.sync()).await
    }

    /// Closes a slot: saves uncommitted work under a rescue ref, removes the
    /// checkout, deletes the branch when trunk has all of it, and releases
    /// the lease. `abandon` allows closing with commits trunk lacks (they
    /// stay on the branch). Returns the rescue ref, if one was made.
    pub async fn close(&self, slot: &str, abandon: bool) -> Result<Option<String>, SwarmError> {
        name::validate_slot(slot)?;
        let held = lease::get(&self.store, slot).await?;
        let dir = SlotDir::new(&self.paths, slot);
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
        entry.slot = Some(slot.to_string());
        entry.task = held.and_then(|h| h.lease).and_then(|l| l.task_id);
        self.log().write(entry);
        Ok(rescued)
    }

    /// Every slot the workspace knows: leased, on disk, or reaped.
    pub async fn status(&self) -> Result<Vec<SlotStatus>, SwarmError> {
        let records = lease::list(&self.store).await?;
        let paths = self.paths.clone();
        blocking(move || Ok::<_, SwarmError>(collect_status(&paths, records))).await
    }

    fn log(&self) -> HubLog {
        let config = crate::hub::log::LogConfig::from_env(LogLevel::Info);
        HubLog::open(self.paths.hub_log.clone(), config)
    }
}

fn collect_status(paths: &Paths, records: Vec<lease::Stored>) -> Vec<SlotStatus> {
    let now = OffsetDateTime::now_utc();
    let repo = Repository::open_bare(&paths.hub_repo).ok();
    let mut names: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
    names.extend(slot::on_disk(paths));
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let dir = SlotDir::new(paths, &name);
            let record = records.iter().find(|r| r.key == name);
            let held = record.and_then(|r| r.lease.clone());
            let reaped = dir.reaped();
            let state = match (&held, record, &reaped) {
                (Some(l), _, _) if l.is_live_at(now) => "active",
                (None, Some(_), _) => "active", // unreadable record: treated as live
                (None, None, Some(_)) if !dir.wt.exists() => "reaped",
                _ => "stale",
            };
            let last = repo.as_ref().and_then(|repo| {
                let commit = repo
                    .find_reference(&dir.branch_ref())
                    .ok()?
                    .peel_to_commit()
                    .ok()?;
                Some((
                    commit.id().to_string(),
                    commit
                        .summary()
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                        .to_string(),
                ))
            });
            SlotStatus {
                state,
                agent_id: held.as_ref().map(|l| l.agent_id.clone()),
                task_id: held
                    .as_ref()
                    .and_then(|l| l.task_id.clone())
                    .or_else(|| reaped.as_ref().and_then(|r| r.task_id.clone())),
                host: held.as_ref().map(|l| l.host.clone()),
                lease_age_s: held.as_ref().map(|l| l.age_s(now)),
                ttl_s: held.as_ref().map(|l| l.ttl_s),
                last_commit: last.as_ref().map(|l| l.0.clone()),
                last_commit_summary: last.map(|l| l.1),
                path: dir.has_checkout().then(|| dir.wt.clone()),
                rescue_ref: reaped
                    .and_then(|r| r.rescue_ref)
                    .or_else(|| slot::latest_rescue(&paths.hub_repo, &name)),
                slot: name,
            }
        })
        .collect()
}

/// An environment variable's value; `None` when unset or empty. A value
/// that is not UTF-8 is an error, never silently treated as unset: a slot
/// verb would otherwise act on another slot than the one meant.
pub fn env_text(name: &str) -> Result<Option<String>, SwarmError> {
    match std::env::var(name) {
        Ok(value) if value.is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(SwarmError::Usage(format!(
            "${name} is not valid UTF-8; unset it or set it to a valid value"
        ))),
    }
}

/// The agent named by `$BONES_AGENT_ID`, validated; `None` when unset.
pub fn agent_from_env() -> Result<Option<String>, SwarmError> {
    let Some(agent) = env_text(AGENT_ENV)? else {
        return Ok(None);
    };
    if agent.trim().is_empty() {
        return Ok(None);
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

/// A generated slot name for an agent: `agent-` and 12 characters of its id.
pub fn auto_slot_name(agent: &str) -> String {
    let clean: String = agent
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(12)
        .collect();
    if clean.len() >= 4 {
        format!("agent-{clean}")
    } else {
        // too little to go on: a stable hash of the id instead
        let hash = crate::hash::Fnv1a::of(agent.as_bytes());
        format!("agent-{:012x}", hash & 0xffff_ffff_ffff)
    }
}

/// Largest commit message accepted, in bytes: as much as a task body.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Checks a commit message: not blank, at most [`MAX_MESSAGE`] bytes, no
/// NUL (git would cut the message there).
pub fn validate_message(message: &str) -> Result<(), SwarmError> {
    if message.trim().is_empty() {
        return Err(SwarmError::Usage(
            "the commit message is empty; say what changed with -m".to_string(),
        ));
    }
    if message.len() > MAX_MESSAGE {
        return Err(SwarmError::Usage(format!(
            "the commit message is {} bytes; keep it under {MAX_MESSAGE} (64 KiB)",
            message.len()
        )));
    }
    if message.contains('\0') {
        return Err(SwarmError::Usage(
            "the commit message contains a NUL byte; git cannot store it".to_string(),
        ));
    }
    Ok(())
}

fn with_trailers(message: &str, slot: &str, task: Option<&str>) -> String {
    let mut text = message.trim_end().to_string();
    text.push_str("\n\nBones-Slot: ");
    text.push_str(slot);
    if let Some(task) = task {
        text.push_str("\nBones-Task: ");
        text.push_str(task);
    }
    text.push('\n');
    text
}

/// How many commits of `head` trunk lacks.
fn unlanded(hub_repo: &Path, head: Oid) -> Result<usize, SwarmError> {
    let repo = Repository::open_bare(hub_repo)
        .map_err(|e| SwarmError::Internal(e.message().to_string()))?;
    let trunk = crate::hub::land::trunk(&repo).map_err(|e| SwarmError::Internal(e.to_string()))?;
    if head == trunk || repo.graph_descendant_of(trunk, head).unwrap_or(false) {
        return Ok(0);
    }
    crate::hub::land::pending(&repo, trunk, head)
        .map(|c| c.len())
        .map_err(|e| SwarmError::Internal(e.to_string()))
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
        Err(err) => Err(SwarmError::Internal(format!(
            "background work failed: {err}"
        ))),
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
        assert_eq!(auto_slot_name("3F6C1E528D0B4A8E9C"), "agent-3f6c1e528d0b");
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
            with_trailers("fix it\n", "a", Some("t-1")),
            "fix it\n\nBones-Slot: a\nBones-Task: t-1\n"
        );
    }
}
