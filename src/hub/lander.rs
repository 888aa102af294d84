//! The hub's landing service: answers `bones.hub.land` requests by landing
//! slot commits on trunk, one at a time.
//!
//! Requests are handled strictly in order on one thread that owns the
//! repository handle, so landings never race each other inside the hub;
//! the compare-and-swap in [`crate::trunk::land`] guards against anyone else who
//! moves trunk. Each request becomes one `rpc` entry in hub.log, and each
//! landing is announced on [`crate::view::LANDINGS_SUBJECT`] once it was
//! acknowledged, for the live view (whatever hub.log's level).

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use futures::StreamExt;
use git2::{Oid, Repository};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::oplog::{EventKind, HubLog, LogEntry, LogLevel};
use crate::swarm::protocol::{LAND_SUBJECT, LandReply, LandRequest};
use crate::sys::clock::utc_now_rfc3339;
use crate::sys::name;
use crate::trunk::land;
use crate::trunk::land::LandError;
use crate::trunk::repo::USER_REF;
use crate::view::{LANDINGS_SUBJECT, Landing};

/// A request, and where to send the reply with the subject of the last
/// landed commit (for hub.log).
type Job = (LandRequest, oneshot::Sender<(LandReply, Option<String>)>);

/// Why the landing service could not start.
#[derive(Debug, thiserror::Error)]
pub enum LanderError {
    #[error("cannot subscribe to {LAND_SUBJECT}: {0}")]
    Subscribe(#[source] async_nats::SubscribeError),
    #[error("cannot start the lander thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// What a request gets once the hub is stopping.
const STOPPING: &str = "the hub is stopping; commit again once it runs";

/// Starts answering landing requests; runs until `stop` is cancelled.
///
/// A landing under way when `stop` comes finishes and is answered (the hub
/// joins this task before its coordination server goes); requests already
/// delivered to the hub then get a refusal, and later ones find no
/// responder, so no client waits for an answer that never comes.
pub async fn spawn(
    client: async_nats::Client,
    hub_repo: PathBuf,
    log: HubLog,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, LanderError> {
    let mut requests = client
        .subscribe(LAND_SUBJECT)
        .await
        .map_err(LanderError::Subscribe)?;
    let (jobs, queue) = mpsc::channel::<Job>();
    // libgit2 checks that every entry of each tree it writes, and each
    // commit's tree and parents, exist: one object read per entry of every
    // tree a landing writes, a repository's whole top directory at least,
    // for checks that cannot fail here (ADR 0019). Process-wide; the hub's
    // other writers also build only from objects already in the repository.
    git2::opts::strict_object_creation(false);
    std::thread::Builder::new()
        .name("bones-lander".into())
        .spawn(move || work(hub_repo, queue))
        .map_err(LanderError::Thread)?;
    Ok(tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                message = requests.next() => message,
            };
            let Some(message) = message else { return };
            answer(&client, &log, message, Some(&jobs)).await;
        }
        // the lander thread ends once its queue is gone
        drop(jobs);
        // no new request reaches this hub; those the server routed here
        // before it saw the unsubscribe are refused. The drain is one round
        // trip (UNSUB, PING): its answer also says the server has every
        // reply sent before it, so only refusals need a flush of their own
        if requests.drain().await.is_ok() {
            let mut refused = false;
            while let Some(message) = requests.next().await {
                answer(&client, &log, message, None).await;
                refused = true;
            }
            if refused {
                let _ = client.flush().await;
            }
        }
    }))
}

/// Lands one request through the lander thread (or refuses it when there
/// is none: the hub is stopping), logs it and replies.
async fn answer(
    client: &async_nats::Client,
    log: &HubLog,
    message: async_nats::Message,
    jobs: Option<&mpsc::Sender<Job>>,
) {
    let Some(reply_to) = message.reply.clone() else {
        return;
    };
    let started = Instant::now();
    let request: Result<LandRequest, _> = serde_json::from_slice(&message.payload);
    let ((reply, subject), request) = match (request, jobs) {
        (Ok(request), Some(jobs)) => {
            let (tx, rx) = oneshot::channel();
            let stopped = || (failed("the lander stopped"), None);
            let reply = if jobs.send((request.clone(), tx)).is_ok() {
                rx.await.unwrap_or_else(|_| stopped())
            } else {
                stopped()
            };
            (reply, Some(request))
        }
        (Ok(request), None) => ((failed(STOPPING), None), Some(request)),
        (Err(err), _) => ((failed(&format!("bad landing request: {err}")), None), None),
    };
    let landing = request
        .as_ref()
        .and_then(|request| announced(request, &reply, subject.as_deref()));
    log_rpc(log, request.as_ref(), &reply, subject, started);
    let body = serde_json::to_vec(&reply).unwrap_or_default();
    let acked = utc_now_rfc3339();
    let _ = client.publish(reply_to, body.into()).await;
    if let Some(mut landing) = landing {
        // stamped before the reply went, announced after: a view never
        // hears of a landing before its committer could
        landing.ts = acked;
        let body = serde_json::to_vec(&landing).unwrap_or_default();
        let _ = client.publish(LANDINGS_SUBJECT, body.into()).await;
    }
}

/// What the live view is told of a landing (its `ts` set on the reply).
fn announced(request: &LandRequest, reply: &LandReply, subject: Option<&str>) -> Option<Landing> {
    let LandReply::Landed { commits, .. } = reply else {
        return None;
    };
    Some(Landing {
        ts: String::new(),
        // `bones land`: the user's branch, no slot
        slot: request.user.is_none().then(|| request.slot.clone()),
        agent: request.agent.clone(),
        task: request.task.clone(),
        commit: commits.last()?.clone(),
        subject: subject.unwrap_or_default().to_string(),
    })
}

fn failed(error: &str) -> LandReply {
    LandReply::Failed {
        error: error.to_string(),
    }
}

fn work(hub_repo: PathBuf, queue: mpsc::Receiver<Job>) {
    crate::trunk::repo::make_object_dirs(&hub_repo);
    let mut repo = None;
    let mut seen = land::Seen::default();
    for (request, reply) in queue {
        if repo.is_none() {
            repo = Repository::open_bare(&hub_repo).ok();
        }
        let answer = match &repo {
            Some(repo) => land_one(repo, &request, &mut seen),
            None => failed(&format!("cannot open {}", hub_repo.display())),
        };
        let subject = match (&answer, &repo) {
            (LandReply::Landed { trunk, .. }, Some(repo)) => Oid::from_str(trunk)
                .ok()
                .and_then(|id| repo.find_commit(id).ok())
                .and_then(|c| c.summary().ok().flatten().map(str::to_string)),
            _ => None,
        };
        let _ = reply.send((answer, subject));
    }
}

fn land_one(repo: &Repository, request: &LandRequest, seen: &mut land::Seen) -> LandReply {
    if let Some(branch) = &request.user {
        return land_user(repo, request, branch, seen);
    }
    if let Err(err) = name::validate_slot(&request.slot) {
        return failed(&err.to_string());
    }
    let Ok(head) = Oid::from_str(&request.head) else {
        return failed(&format!(
            "not a commit id: {}",
            crate::sys::shown::shown(&request.head)
        ));
    };
    // the slot branch must still be where the client saw it
    let branch = crate::swarm::slot::branch_ref(&request.slot);
    match repo.refname_to_id(&branch) {
        Ok(tip) if tip == head => {}
        Ok(tip) => {
            return failed(&format!(
                "slot/{} moved to {tip} while landing {head}; commit again",
                request.slot
            ));
        }
        Err(err) => return failed(&format!("slot/{}: {}", request.slot, err.message())),
    }
    let reflog = format!("bones: land slot {}", request.slot);
    reply_of(land::land_seen(repo, head, &reflog, seen))
}

/// Lands the user's branch (`bones land`), fetched into
/// [`USER_REF`]: the same replay and compare-and-swap as a slot's commits.
fn land_user(
    repo: &Repository,
    request: &LandRequest,
    branch: &str,
    seen: &mut land::Seen,
) -> LandReply {
    let Ok(head) = Oid::from_str(&request.head) else {
        return failed(&format!(
            "not a commit id: {}",
            crate::sys::shown::shown(&request.head)
        ));
    };
    match repo.refname_to_id(USER_REF) {
        Ok(tip) if tip == head => {}
        Ok(tip) => {
            return failed(&format!(
                "{USER_REF} moved to {tip} while landing {head}; run `bones land` again"
            ));
        }
        Err(err) => return failed(&format!("{USER_REF}: {}", err.message())),
    }
    let reflog = format!("bones: land {}", crate::sys::shown::shown(branch));
    reply_of(land::land_seen(repo, head, &reflog, seen))
}

fn reply_of(landed: Result<land::Landed, LandError>) -> LandReply {
    match landed {
        Ok(landed) => LandReply::Landed {
            trunk: landed.trunk.to_string(),
            commits: landed.commits.iter().map(Oid::to_string).collect(),
            skipped: landed.skipped,
        },
        Err(LandError::Conflict { commit, paths }) => LandReply::Conflict {
            commit: commit.to_string(),
            paths,
        },
        Err(err) => failed(&err.to_string()),
    }
}

/// One `rpc` entry per request; a landing names the trunk commit it made
/// and its subject, so the operator can follow a slot's work onto trunk.
fn log_rpc(
    log: &HubLog,
    request: Option<&LandRequest>,
    reply: &LandReply,
    subject: Option<String>,
    started: Instant,
) {
    let (level, err) = match reply {
        LandReply::Landed { .. } => (LogLevel::Info, None),
        LandReply::Conflict { paths, .. } => (
            LogLevel::Warn,
            Some(format!("conflict with trunk in {}", paths.join(", "))),
        ),
        LandReply::Failed { error } => (LogLevel::Error, Some(error.clone())),
    };
    let mut entry = LogEntry::new(level, EventKind::Rpc);
    entry.msg = Some("swarm.commit".to_string());
    if let LandReply::Landed { trunk, commits, .. } = reply {
        entry.msg = Some(match commits.last() {
            Some(landed) => format!(
                "swarm.commit: landed {} {}",
                &landed[..landed.len().min(12)],
                crate::sys::shown::shown(subject.as_deref().unwrap_or_default())
            ),
            None => "swarm.commit: already on trunk".to_string(),
        });
        entry.commit = Some(commits.last().unwrap_or(trunk).clone());
    }
    entry.rpc = Some("swarm.commit".to_string());
    entry.slot = request.map(|r| r.slot.clone());
    entry.agent = request.and_then(|r| r.agent.clone());
    entry.task = request.and_then(|r| r.task.clone());
    entry.took_ms = Some(started.elapsed().as_millis() as u64);
    entry.err = err;
    if request.is_some_and(|r| r.user.is_some()) {
        // `bones land`: the user's branch, no slot
        entry.msg = Some("land".to_string());
        entry.rpc = Some("land".to_string());
        entry.slot = None;
    }
    log.write(entry);
}
