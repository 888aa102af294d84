//! Validation of names that become paths, git refs and KV keys.
//!
//! A slot name is used as a directory (`swarm/<slot>/`), a branch
//! (`slot/<slot>`), a worktree name and a KV key, so it must be safe as all
//! four: no path traversal, nothing git or NATS would reject. Refusing early,
//! before anything is created, keeps bad input from leaving half-made state.

use crate::sys::shown::shown;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {shown}: {why}")]
pub struct NameError {
    what: &'static str,
    shown: String,
    why: &'static str,
}

impl crate::sys::error::Kinded for NameError {
    /// Always input to fix.
    fn kind(&self) -> crate::sys::error::ErrorKind {
        crate::sys::error::ErrorKind::Usage
    }
}

const SLOT_RULE: &str = "use 1-63 characters from a-z, 0-9, '.', '_' and '-', starting with a letter or digit, without '..' and not ending in '.' or '.lock'";
const AGENT_RULE: &str = "use 1-128 bytes without control characters";
const TASK_RULE: &str = "use 1-64 characters from A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit, without '..' and not ending in '.' or '.lock'";

/// Checks a slot name: `[a-z0-9][a-z0-9._-]{0,62}`, no `..`, and nothing
/// git refuses in a branch name (a trailing `.` or `.lock`).
pub fn validate_slot(name: &str) -> Result<(), NameError> {
    validate(name, "slot name", SLOT_RULE, 63, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit()
    })
}

/// Checks a task id: like a slot name, but upper case is allowed.
pub fn validate_task_id(id: &str) -> Result<(), NameError> {
    validate(id, "task id", TASK_RULE, 64, |b| b.is_ascii_alphanumeric())
}

/// Checks a knowledge-feed entry id: the task id rules. The id becomes a
/// NATS subject token and a message id, so it must hold no wildcard, space
/// or empty token.
pub fn validate_entry_id(id: &str) -> Result<(), NameError> {
    validate(id, "entry id", TASK_RULE, 64, |b| b.is_ascii_alphanumeric())
}

fn validate(
    name: &str,
    what: &'static str,
    why: &'static str,
    max: usize,
    alnum: impl Fn(u8) -> bool,
) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= max
        && alnum(bytes[0])
        && bytes
            .iter()
            .all(|&b| alnum(b) || b == b'.' || b == b'_' || b == b'-')
        && !name.contains("..")
        && !name.ends_with('.')
        && !name.ends_with(".lock");
    if ok {
        Ok(())
    } else {
        Err(NameError {
            what,
            shown: shown(name),
            why,
        })
    }
}

/// Checks an agent harness's session id (Claude Code's `session_id`, a
/// UUID): the task id rules. The id names a file in the state directory
/// (`sessions/<id>.json`), so nothing that could climb out of it passes.
pub fn validate_session_id(id: &str) -> Result<(), NameError> {
    validate(id, "session id", TASK_RULE, 64, |b| {
        b.is_ascii_alphanumeric()
    })
}

/// Longest agent id accepted, in bytes.
pub const MAX_AGENT: usize = 128;

/// Checks an agent id (`--agent`, `$BONES_AGENT_ID`): 1-128 bytes without
/// control characters. An agent id is never a path or a key, only a label
/// stored in lease and task records and printed in messages; the bound
/// keeps those records small and the messages on one line.
pub fn validate_agent(id: &str) -> Result<(), NameError> {
    let ok = !id.trim().is_empty() && id.len() <= MAX_AGENT && !id.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(NameError {
            what: "agent id",
            shown: shown(id),
            why: AGENT_RULE,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["a", "agent-1f3e", "fix.parser", "x_y", "0", &"a".repeat(63)] {
            assert_eq!(validate_slot(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn refuses_traversal_and_git_unsafe_names() {
        for name in [
            "",
            "..",
            "a..b",
            "../x",
            "a/b",
            "/abs",
            "A",
            "-x",
            ".x",
            "x.",
            "x.lock",
            "a b",
            "é",
            "a\0b",
            "a\nb",
            &"a".repeat(64),
        ] {
            assert!(validate_slot(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn agent_ids_are_labels_without_control_characters() {
        for id in [
            "3f6c1e528d0b",
            "Claude Session 5",
            "../x",
            "é€",
            &"a".repeat(128),
        ] {
            assert_eq!(validate_agent(id), Ok(()), "{id:?}");
        }
        for id in ["", "  ", "a\nb", "a\u{1b}[2J", &"a".repeat(129)] {
            assert!(validate_agent(id).is_err(), "{id:?}");
        }
    }

    #[test]
    fn task_ids_allow_upper_case() {
        assert_eq!(validate_task_id("T-101"), Ok(()));
        assert!(validate_task_id("../t").is_err());
    }

    proptest! {
        #[test]
        fn a_valid_slot_is_one_safe_path_component(name in "\\PC{0,80}") {
            if validate_slot(&name).is_ok() {
                let path = std::path::Path::new(&name);
                prop_assert_eq!(path.components().count(), 1);
                prop_assert!(matches!(path.components().next(), Some(std::path::Component::Normal(_))));
                prop_assert!(!name.contains('/') && !name.contains(".."));
            }
        }

        #[test]
        fn the_error_message_stays_short(name in "\\PC{0,2000}") {
            if let Err(err) = validate_slot(&name) {
                prop_assert!(err.to_string().len() < 400);
            }
        }

        #[test]
        fn every_validator_gives_one_short_line_for_any_input(name in "(?s).{0,300}") {
            for result in [validate_slot(&name), validate_task_id(&name), validate_agent(&name)] {
                if let Err(err) = result {
                    let text = err.to_string();
                    prop_assert!(!text.contains('\n') && text.len() < 600, "{}", text);
                }
            }
        }

        #[test]
        fn a_valid_task_id_is_one_safe_path_component_and_subject_token(id in "[ -~]{0,80}") {
            if validate_task_id(&id).is_ok() {
                let path = std::path::Path::new(&id);
                prop_assert_eq!(path.components().count(), 1);
                prop_assert!(matches!(path.components().next(), Some(std::path::Component::Normal(_))));
                // safe in a NATS subject: no wildcards, no spaces, no empty token
                prop_assert!(!id.contains(['*', '>', ' ', '/']));
                prop_assert!(!id.starts_with('.') && !id.ends_with('.') && !id.contains(".."));
            }
        }
    }
}
