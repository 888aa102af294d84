//! What a harness hands a hook on stdin: one JSON object describing the
//! session (Claude Code, Codex and Gemini CLI share the fields bones
//! reads: `session_id`, `cwd`, `hook_event_name`, and `source` at start or
//! `reason` at the end).
//!
//! A hook must never hold up the agent's session, so the input is read
//! within [`MAX_INPUT`] bytes and [`INPUT_WAIT`]: reading stops as soon as
//! one whole JSON value has arrived, without waiting for end of file (a
//! harness once left a hook's stdin open, and every hook that read to the
//! end hung until the harness killed it). Input that is not such an object
//! is reported, never fatal.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Most bytes of hook input read; a session description is a few hundred.
pub const MAX_INPUT: usize = 1024 * 1024;
/// Longest wait for the input to arrive whole.
pub const INPUT_WAIT: Duration = Duration::from_secs(2);

/// The fields of a harness's hook input bones uses; any may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookInput {
    pub session_id: Option<String>,
    /// The session's working directory.
    pub cwd: Option<PathBuf>,
    pub hook_event_name: Option<String>,
    /// How the session started: `startup`, `resume`, `clear`, `compact`.
    pub source: Option<String>,
    /// Why it ended: `clear`, `logout`, `prompt_input_exit`, `exit`, `other`.
    pub reason: Option<String>,
}

/// What came on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Nothing (a terminal, an empty or closed stdin, or nothing in time).
    None,
    Hook(HookInput),
    /// Something that is not a hook's JSON object, and why.
    Garbage(String),
}

impl HookInput {
    /// Reads the fields from a JSON object; other values, and fields of
    /// another type than text, are ignored.
    pub fn from_value(value: &Value) -> Option<HookInput> {
        let object = value.as_object()?;
        let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_string);
        Some(HookInput {
            session_id: text("session_id"),
            cwd: text("cwd").map(PathBuf::from),
            hook_event_name: text("hook_event_name"),
            source: text("source"),
            reason: text("reason"),
        })
    }
}

/// Reads this process's stdin as a hook's input, within [`MAX_INPUT`] and
/// `wait`. A terminal is not read at all (a person running the hook by
/// hand).
pub fn read_stdin(wait: Duration) -> Input {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Input::None;
    }
    let (send, receive) = mpsc::channel::<Option<Vec<u8>>>();
    // a thread of its own, so a stdin that never closes cannot hold the
    // hook: the thread is left blocked in read when the hook is done
    std::thread::spawn(move || {
        let mut stdin = stdin.lock();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut chunk) {
                Ok(0) | Err(_) => {
                    let _ = send.send(None);
                    return;
                }
                Ok(n) => {
                    if send.send(Some(chunk[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let deadline = Instant::now() + wait;
    let mut buffer = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match receive.recv_timeout(left) {
            Ok(Some(bytes)) => {
                buffer.extend_from_slice(&bytes);
                if buffer.len() > MAX_INPUT {
                    return Input::Garbage(format!("more than {MAX_INPUT} bytes"));
                }
                if let Ok(value) = serde_json::from_slice::<Value>(&buffer) {
                    return judge(&value);
                }
            }
            // end of input, or the wait ran out: judge what came
            Ok(None) | Err(_) => return parse(&buffer),
        }
    }
}

/// Judges a whole input.
pub fn parse(bytes: &[u8]) -> Input {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Input::None;
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => judge(&value),
        Err(err) => Input::Garbage(format!("not JSON ({err})")),
    }
}

fn judge(value: &Value) -> Input {
    match HookInput::from_value(value) {
        Some(input) => Input::Hook(input),
        None => Input::Garbage("JSON, but not an object".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claude_code_session_start_is_read() {
        let line = br#"{"session_id":"4e3eb4ec-ccb7","transcript_path":"/t.jsonl","cwd":"/w","hook_event_name":"SessionStart","source":"startup","extra":{"n":1}}"#;
        assert_eq!(
            parse(line),
            Input::Hook(HookInput {
                session_id: Some("4e3eb4ec-ccb7".to_string()),
                cwd: Some(PathBuf::from("/w")),
                hook_event_name: Some("SessionStart".to_string()),
                source: Some("startup".to_string()),
                reason: None,
            })
        );
    }

    #[test]
    fn garbage_is_reported_and_wrong_types_ignored() {
        assert!(matches!(parse(b"not json"), Input::Garbage(_)));
        assert!(matches!(parse(b"[1, 2]"), Input::Garbage(_)));
        assert_eq!(parse(b"  \n"), Input::None);
        assert_eq!(
            parse(br#"{"session_id": 5, "cwd": null}"#),
            Input::Hook(HookInput::default())
        );
    }
}
