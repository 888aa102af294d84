//! `bones hook session-start | session-end`: what an agent harness's
//! session hooks run (`bones integrate` writes them).
//!
//! session-start starts the hub when none runs, takes a slot for the
//! session (agent `<harness>-<session id>`, its lease following the harness
//! process), records it in `sessions/<id>.json` and prints the primer on
//! stdout, which the harness adds to the session's context. session-end
//! closes that session's slot (its uncommitted work saved first; unlanded
//! commits stay on the slot's branch) and removes the record. Both write a
//! `hook` entry to hub.log (`hook`, `session`, `agent`, `slot`, `result`,
//! `took_ms`).
//!
//! A hook must never block or fail the agent's session: whatever goes
//! wrong (no workspace, no hub, a hub that cannot start, a slot held by
//! another) is one warning line on stderr and exit 0, and the whole hook
//! ends within [`HOOK_BOUND`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use clap::builder::PossibleValuesParser;
use serde_json::json;

use crate::harness::input::{self, INPUT_WAIT, Input};
use crate::harness::{Harness, HookEvent, HookOutput};
use crate::oplog::{EventKind, HubLog, LogEntry, LogLevel};
use crate::state::Paths;
use crate::state::workspace::Workspace;
use crate::swarm::session::{self, Session};
use crate::swarm::{JoinOptions, Swarm, SwarmError};

/// The longest a hook runs, stdin included. Past it the hook warns and
/// exits 0, leaving whatever it started (a hub coming up) to finish on its
/// own; harnesses are configured to wait longer
/// ([`crate::harness::HOOK_TIMEOUT_S`]), so they never kill it first.
pub const HOOK_BOUND: Duration = Duration::from_secs(10);

/// Environment variable (set by Claude Code for SessionStart hooks) naming
/// a file whose `export` lines Claude Code applies to the session's later
/// shell commands (<https://code.claude.com/docs/en/hooks>, "Persist
/// environment variables").
const CLAUDE_ENV_FILE: &str = "CLAUDE_ENV_FILE";

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    echo '{\"session_id\":\"4e3eb4ec-ccb7\",\"cwd\":\"'$PWD'\"}' | bones hook session-start\n  \
    bones hook session-end --session 4e3eb4ec-ccb7\n\n\
    Always exits 0 (a warning on stderr when something failed), within 10 seconds.")]
pub struct HookArgs {
    /// session-start: take a slot for the session and print the primer;
    /// session-end: close the session's slot.
    #[arg(value_parser = PossibleValuesParser::new(["session-start", "session-end"]))]
    event: String,
    /// The harness running the hook: sets how the primer is printed (Codex
    /// and Gemini CLI take one JSON object) and the agent id's prefix.
    #[arg(long, value_parser = PossibleValuesParser::new(["claude-code", "codex", "gemini"]))]
    harness: Option<String>,
    /// The session id, when the harness passes none on stdin (its JSON's
    /// `session_id` otherwise).
    #[arg(long, value_name = "ID")]
    session: Option<String>,
}

/// Everything the hook knows before it does anything.
#[derive(Debug, Clone)]
struct Call {
    event: HookEvent,
    harness: Option<Harness>,
    session: Option<String>,
    paths: Paths,
}

/// How a hook ended, for the log entry and the user.
struct Outcome {
    result: &'static str,
    agent: Option<String>,
    slot: Option<String>,
    msg: String,
    err: Option<String>,
    /// What goes on stdout (session-start's primer).
    primer: Option<String>,
}

impl Outcome {
    fn done(result: &'static str, msg: String) -> Outcome {
        Outcome {
            result,
            agent: None,
            slot: None,
            msg,
            err: None,
            primer: None,
        }
    }

    fn failed(err: impl std::fmt::Display) -> Outcome {
        Outcome {
            err: Some(err.to_string()),
            ..Outcome::done("failed", String::new())
        }
    }
}

pub fn run(args: HookArgs) -> Result<(), super::Failure> {
    let began = Instant::now();
    let event = HookEvent::parse(&args.event).unwrap_or(HookEvent::SessionStart);
    let harness = args.harness.as_deref().and_then(Harness::parse);
    let hook_input = match input::read_stdin(INPUT_WAIT) {
        Input::Hook(found) => found,
        Input::None => Default::default(),
        Input::Garbage(why) => {
            warn(
                event,
                &format!("stdin is not a hook's JSON input ({why}); ignored it"),
            );
            Default::default()
        }
    };
    let start_dir = hook_input
        .cwd
        .filter(|dir| dir.is_absolute() && dir.is_dir())
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    let paths = match Workspace::discover(&start_dir) {
        Ok(ws) => Paths::new(&ws),
        Err(err) => {
            warn(
                event,
                &format!("{err}; nothing done (run `bones up` in the repository to use bones)"),
            );
            print_primer(harness, event, None);
            return Ok(());
        }
    };
    crate::sys::fsutil::restrict_umask();
    let call = Call {
        event,
        harness,
        session: args.session.or(hook_input.session_id),
        paths,
    };
    let (send, receive) = mpsc::channel();
    let worker = call.clone();
    std::thread::spawn(move || {
        let outcome = match worker.event {
            HookEvent::SessionStart => session_start(&worker),
            HookEvent::SessionEnd => session_end(&worker),
        };
        let _ = send.send(outcome);
    });
    let outcome = match receive.recv_timeout(HOOK_BOUND.saturating_sub(began.elapsed())) {
        Ok(outcome) => outcome,
        Err(mpsc::RecvTimeoutError::Timeout) => Outcome {
            err: Some(format!(
                "gave up after {}s; whatever it started goes on in the background",
                HOOK_BOUND.as_secs()
            )),
            ..Outcome::done("timeout", String::new())
        },
        // the worker panicked (a bug): the session still goes on
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            Outcome::failed("the hook stopped unexpectedly (see above)")
        }
    };
    finish(&call, outcome, began.elapsed());
    Ok(())
}

/// Logs the outcome, warns when it failed, prints the primer.
fn finish(call: &Call, outcome: Outcome, took: Duration) {
    let failed = matches!(outcome.result, "failed" | "timeout");
    let mut entry = LogEntry::new(
        if failed {
            LogLevel::Warn
        } else {
            LogLevel::Info
        },
        EventKind::Hook,
    );
    entry.hook = Some(call.event.name().to_string());
    entry.session = call.session.clone();
    entry.agent = outcome.agent.clone();
    entry.slot = outcome.slot.clone();
    entry.result = Some(outcome.result.to_string());
    entry.took_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
    entry.msg = Some(format!(
        "hook {}: {}",
        call.event.name(),
        if outcome.msg.is_empty() {
            outcome.result
        } else {
            &outcome.msg
        }
    ));
    entry.err = outcome.err.clone();
    HubLog::append_only(call.paths.hub_log.clone()).write(entry);
    if let Some(err) = &outcome.err {
        warn(call.event, err);
    } else if outcome.result == "skipped" {
        eprintln!("bones: hook {}: {}", call.event.name(), outcome.msg);
    }
    print_primer(call.harness, call.event, outcome.primer.as_deref());
}

/// One warning line on stderr, saying the session goes on.
fn warn(event: HookEvent, why: &str) {
    eprintln!(
        "bones: hook {} (warning, the session goes on): {}",
        event.name(),
        crate::sys::shown::plain(why)
    );
}

/// Prints session-start's output the way the harness reads it: the text
/// (Claude Code), or one JSON object for Codex and Gemini CLI, which take
/// nothing else on stdout. A failed start prints a line telling the agent
/// it has no slot.
fn print_primer(harness: Option<Harness>, event: HookEvent, primer: Option<&str>) {
    if event != HookEvent::SessionStart {
        return;
    }
    let text = match primer {
        Some(text) if !text.is_empty() => text.to_string(),
        _ => "bones: no slot was taken for this session (the hook warned why); take one with \
              `bones swarm join --auto` before editing files.\n"
            .to_string(),
    };
    let out = match harness.map(Harness::hook_output) {
        Some(HookOutput::Json) => format!(
            "{}\n",
            json!({"hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": text}})
        ),
        _ => text,
    };
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
}

/// The session's id, validated.
fn session_id(call: &Call) -> Result<String, String> {
    let id = call.session.clone().ok_or_else(|| {
        "no session id: the harness passed none on stdin and --session was not given".to_string()
    })?;
    crate::sys::name::validate_session_id(&id).map_err(|e| e.to_string())?;
    Ok(id)
}

/// The agent id of a session: the harness's prefix and the session id's
/// first 12 letters and digits (`claude-4e3eb4ecccb7`). Each session is an
/// agent of its own, so two sessions never share a slot.
fn session_agent(harness: Option<Harness>, session: &str) -> String {
    let short: String = session
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase();
    let prefix = harness.map_or("session", Harness::agent_prefix);
    format!("{prefix}-{short}")
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn session_start(call: &Call) -> Outcome {
    let id = match session_id(call) {
        Ok(id) => id,
        Err(err) => return Outcome::failed(err),
    };
    if super::autostart(&call.paths).is_err() {
        return Outcome::failed("no hub runs and starting one failed (see above)");
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => return Outcome::failed(err),
    };
    runtime.block_on(async {
        match take_slot(call, &id).await {
            Ok((record, how)) => {
                let exported = export_for_shell(&record);
                Outcome {
                    result: "ok",
                    msg: format!(
                        "session {id} {how} slot {} (agent {})",
                        record.slot, record.agent
                    ),
                    primer: Some(primer_text(&call.paths, &record, exported).await),
                    agent: Some(record.agent),
                    slot: Some(record.slot),
                    err: None,
                }
            }
            Err(err) => Outcome::failed(err),
        }
    })
}

/// Joins the session's slot (the one its record names, on a resume or
/// after a compaction; else a new one) and writes the record.
async fn take_slot(call: &Call, id: &str) -> Result<(Session, String), String> {
    let earlier = session::read(&call.paths, id).map_err(|e| e.to_string())?;
    let hub = Swarm::connect(call.paths.clone())
        .await
        .map_err(|e| e.to_string())?;
    let harness_process = session::harness_process(std::process::id());
    let agent = earlier
        .as_ref()
        .map(|s| s.agent.clone())
        .unwrap_or_else(|| session_agent(call.harness, id));
    let joined = hub
        .join(JoinOptions {
            slot: earlier.as_ref().map(|s| s.slot.clone()),
            agent: Some(agent),
            pid: harness_process.map(|(pid, _)| pid),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let record = Session {
        schema: session::SCHEMA,
        session: id.to_string(),
        harness: call.harness.map(|h| h.name().to_string()),
        agent: joined.agent_id.clone(),
        slot: joined.slot.clone(),
        path: joined.path.clone(),
        harness_pid: harness_process.map(|(pid, _)| pid),
        harness_start: harness_process.map(|(_, start)| start),
        started_at: earlier
            .map(|s| s.started_at)
            .unwrap_or_else(crate::sys::clock::utc_now_rfc3339),
    };
    session::write(&call.paths, &record).map_err(|e| e.to_string())?;
    Ok((record, joined.how.replace('_', " ")))
}

/// Appends `BONES_SLOT` and `BONES_AGENT_ID` to the file Claude Code
/// applies to the session's shell commands, when it offers one, so the
/// agent's `bones` commands act on its slot as its holder. True when done.
fn export_for_shell(record: &Session) -> bool {
    let Some(file) = std::env::var_os(CLAUDE_ENV_FILE).filter(|f| !f.is_empty()) else {
        return false;
    };
    // both are validated names (no quote, no control character)
    let lines = format!(
        "export {}='{}'\nexport {}='{}'\n",
        crate::swarm::SLOT_ENV,
        record.slot,
        crate::swarm::AGENT_ENV,
        record.agent
    );
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(&file))
        .and_then(|mut f| f.write_all(lines.as_bytes()))
        .is_ok()
}

/// The primer the session starts with: the session's own lines (how its
/// shell commands reach the slot, that the slot ends with the session),
/// then `bones prime`'s digest for its slot, within the same bound.
async fn primer_text(paths: &Paths, record: &Session, exported: bool) -> String {
    use crate::agent::prime::{DEFAULT_MAX_CHARS, Primer};
    let env = if exported {
        format!(
            "BONES_SLOT={} and BONES_AGENT_ID={} are set for your shell commands.",
            record.slot, record.agent
        )
    } else {
        format!(
            "Run bones commands from the checkout, or with BONES_SLOT={} BONES_AGENT_ID={} set.",
            record.slot, record.agent
        )
    };
    let header = format!(
        "# bones: this session's slot\n\n\
         This session holds slot `{slot}` as agent `{agent}`; work only in its checkout: {path}\n\
         {env}\n\
         The slot is closed when this session ends; uncommitted work is saved first.\n\n",
        slot = record.slot,
        agent = record.agent,
        path = record.path.display(),
    );
    let hub = crate::coord::connect_running(paths)
        .await
        .map(async_nats::jetstream::new)
        .map_err(|e| e.to_string());
    let budget = DEFAULT_MAX_CHARS.saturating_sub(header.chars().count());
    match Primer::gather(
        paths,
        Some(record.slot.clone()),
        super::prime::the_loop(),
        hub,
        budget,
    )
    .await
    {
        Ok(primer) => header + &primer.text,
        Err(err) => format!("{header}(the primer could not be built: {err})\n"),
    }
}

fn session_end(call: &Call) -> Outcome {
    let id = match session_id(call) {
        Ok(id) => id,
        Err(err) => return Outcome::failed(err),
    };
    let record = match session::read(&call.paths, &id) {
        Ok(Some(record)) => record,
        Ok(None) => {
            return Outcome::done(
                "skipped",
                format!("session {id} holds no slot; nothing to close"),
            );
        }
        Err(err) => return Outcome::failed(err),
    };
    let mut outcome = match runtime() {
        Ok(runtime) => runtime.block_on(close_slot(call, &record)),
        Err(err) => Outcome::failed(err),
    };
    outcome.agent = Some(record.agent.clone());
    outcome.slot = Some(record.slot.clone());
    // the record has served its purpose whatever happened: the slot is
    // closed, or left to its lease, which follows the harness process
    if let Err(err) = session::remove(&call.paths, &id) {
        outcome.err.get_or_insert(err.to_string());
    }
    outcome
}

/// Closes the session's slot as its holder: never another agent's slot.
/// Commits trunk lacks stay on the slot's branch (closed as abandoned
/// rather than refused: the session is over either way).
async fn close_slot(call: &Call, record: &Session) -> Outcome {
    if !crate::hub::is_running(&call.paths.root) {
        return Outcome::failed(format!(
            "no hub runs, so slot {} stays until the hub reaps it (its lease follows the harness process)",
            record.slot
        ));
    }
    let hub = match Swarm::connect(call.paths.clone()).await {
        Ok(hub) => hub.acting_as(Some(record.agent.clone()), false),
        Err(err) => return Outcome::failed(err),
    };
    let closed = match hub.close(&record.slot, false, false).await {
        Err(SwarmError::Unlanded { .. }) => hub
            .close(&record.slot, true, false)
            .await
            .map(|c| (c, true)),
        other => other.map(|c| (c, false)),
    };
    match closed {
        Ok((closed, abandoned)) => {
            let mut msg = format!("session {} closed slot {}", record.session, record.slot);
            if let Some(saved) = &closed.rescue_ref {
                msg.push_str(&format!("; uncommitted work saved to {saved}"));
            }
            if abandoned {
                msg.push_str(&format!("; unlanded commits kept on slot/{}", record.slot));
            }
            Outcome::done("ok", msg)
        }
        Err(SwarmError::NoSuchSlot(_)) => {
            Outcome::done("skipped", format!("slot {} is already gone", record.slot))
        }
        Err(err) => Outcome::failed(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_session_is_an_agent_of_its_own() {
        assert_eq!(
            session_agent(
                Some(Harness::ClaudeCode),
                "4e3eb4ec-ccb7-46d0-ae99-02762dd11aa4"
            ),
            "claude-4e3eb4ecccb7"
        );
        assert_eq!(session_agent(None, "ABC"), "session-abc");
        assert_ne!(
            session_agent(Some(Harness::Codex), "aaaa-1"),
            session_agent(Some(Harness::Codex), "aaaa-2")
        );
    }
}
