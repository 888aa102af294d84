//! A knowledge-feed entry (schema 1; see `docs/feed.md`) and the rules its
//! fields must follow.
//!
//! Everything here is pure, so every rule can be tested without a server,
//! and every input is checked before anything is published: a rejected
//! entry never reaches the stream.

use serde::{Deserialize, Serialize};

use crate::sys::name;
use crate::sys::name::NameError;

/// The schema version this code writes; documented in `docs/feed.md`.
pub const SCHEMA: u32 = 1;
/// Largest text accepted, in bytes (after trimming).
pub const MAX_TEXT: usize = 16 * 1024;
/// Most tags on one entry.
pub const MAX_TAGS: usize = 16;
/// Longest tag, in bytes.
pub const MAX_TAG: usize = 32;
/// Longest origin kept, in characters; a longer `$BONES_AGENT_ID` is cut.
pub const MAX_ORIGIN: usize = 128;

/// What an entry records. The order is the order of `bones feed --prime`:
/// the rules agents must follow come before what they may find useful.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A rule of the codebase everyone follows ("errors go through thiserror").
    Convention,
    /// A choice made, with its reason ("the hub repository is bare").
    Decision,
    /// A fact discovered the hard way ("the test suite needs nats-server").
    Learning,
    /// Work noticed and left for someone ("the parser leaks on bad input").
    Task,
}

impl Kind {
    /// Every kind, in digest order.
    pub const ALL: [Kind; 4] = [Kind::Convention, Kind::Decision, Kind::Learning, Kind::Task];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Convention => "convention",
            Kind::Decision => "decision",
            Kind::Learning => "learning",
            Kind::Task => "task",
        }
    }

    /// Reads a kind name as written on the command line or in NDJSON input.
    pub fn parse(text: &str) -> Result<Kind, InputError> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| InputError::BadKind(crate::sys::shown::shown(text)))
    }

    /// The plural, for digest headings and counts.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Convention => "conventions",
            Kind::Decision => "decisions",
            Kind::Learning => "learnings",
            Kind::Task => "tasks",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("unknown entry type {0}; use decision, learning, convention or task")]
    BadKind(String),
    #[error("the entry text is empty; say what was decided or learned")]
    EmptyText,
    #[error("the entry text has {0} bytes; the limit is {MAX_TEXT} (link to a file for more)")]
    TextTooLong(usize),
    #[error("{0}")]
    BadId(#[from] NameError),
    #[error("invalid tag {0}: use 1-{MAX_TAG} characters from A-Z, a-z, 0-9, '.', '_' and '-'")]
    BadTag(String),
    #[error("too many tags ({0}); the limit is {MAX_TAGS}")]
    TooManyTags(usize),
}

/// One entry as stored in the stream `bones-feed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Entry {
    pub schema: u32,
    /// Unique in the feed; also the message id and the subject's last token.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The slot or agent that shared it.
    pub origin: String,
    /// UTC RFC 3339 with microseconds, from the sharer's clock.
    pub created_at: String,
}

/// An entry to share, before it has an origin and a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub kind: Kind,
    pub text: String,
    /// `None`: derived from the type and text ([`content_id`]).
    pub id: Option<String>,
    pub tags: Vec<String>,
}

impl NewEntry {
    pub fn new(kind: Kind, text: impl Into<String>) -> NewEntry {
        NewEntry {
            kind,
            text: text.into(),
            id: None,
            tags: Vec::new(),
        }
    }

    /// Checks every field; the text is checked as it will be stored
    /// (trimmed).
    pub fn validate(&self) -> Result<(), InputError> {
        validate_text(&self.text)?;
        if let Some(id) = &self.id {
            name::validate_entry_id(id)?;
        }
        if self.tags.len() > MAX_TAGS {
            return Err(InputError::TooManyTags(self.tags.len()));
        }
        for tag in &self.tags {
            validate_tag(tag)?;
        }
        Ok(())
    }

    /// The id this entry is published under: the one given, or the one
    /// derived from its content.
    pub fn id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| content_id(self.kind, &self.text))
    }

    /// The stored form, after [`NewEntry::validate`]. Tags given twice are
    /// kept once, in the order first given.
    pub fn into_entry(self, origin: &str, now: &str) -> Entry {
        let id = self.id();
        let mut tags: Vec<String> = Vec::with_capacity(self.tags.len());
        for tag in self.tags {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        Entry {
            schema: SCHEMA,
            id,
            kind: self.kind,
            text: self.text.trim().to_string(),
            tags,
            origin: origin.chars().take(MAX_ORIGIN).collect(),
            created_at: now.to_string(),
        }
    }
}

/// Checks an entry's text: not blank, at most [`MAX_TEXT`] bytes trimmed.
pub fn validate_text(text: &str) -> Result<(), InputError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(InputError::EmptyText);
    }
    if text.len() > MAX_TEXT {
        return Err(InputError::TextTooLong(text.len()));
    }
    Ok(())
}

/// Checks a tag: 1-[`MAX_TAG`] characters from `[A-Za-z0-9._-]`.
pub fn validate_tag(tag: &str) -> Result<(), InputError> {
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(InputError::BadTag(crate::sys::shown::shown(tag)))
    }
}

/// The id an entry gets when none is given: `e-` and 16 hex digits of the
/// 64-bit FNV-1a hash of `<type>\n<text>`, with the text trimmed and every
/// run of whitespace made one space.
///
/// Agents working in parallel rediscover the same facts; deriving the id
/// from the content makes the second sharing of the same fact a duplicate
/// the stream refuses, while a reworded fact (or one given its own `--id`)
/// is a new entry. The recipe is part of the contract in `docs/feed.md`, so
/// any client computes the same id.
pub fn content_id(kind: Kind, text: &str) -> String {
    let mut hash = crate::sys::hash::Fnv1a::default();
    hash.write(kind.as_str().as_bytes());
    hash.write(b"\n");
    for (i, word) in text.split_whitespace().enumerate() {
        if i > 0 {
            hash.write(b" ");
        }
        hash.write(word.as_bytes());
    }
    format!("e-{:016x}", hash.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kinds_round_trip_and_unknown_ones_are_refused() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{kind}\""));
        }
        assert!(Kind::parse("Decision").is_err());
        assert!(Kind::parse("note").is_err());
    }

    #[test]
    fn content_ids_ignore_spacing_but_not_wording_or_type() {
        let a = content_id(Kind::Learning, "tests need  nats-server\n");
        assert_eq!(a, content_id(Kind::Learning, "  tests need nats-server"));
        assert_ne!(a, content_id(Kind::Decision, "tests need nats-server"));
        assert_ne!(a, content_id(Kind::Learning, "tests need nats"));
        assert!(a.starts_with("e-") && a.len() == 18, "{a}");
        assert!(name::validate_entry_id(&a).is_ok());
        // the documented recipe: FNV-1a 64 of "learning\nx"
        assert_eq!(content_id(Kind::Learning, "x"), "e-0c615aa23b4df551");
    }

    #[test]
    fn bad_fields_are_refused() {
        let ok = NewEntry::new(Kind::Decision, "use git2");
        assert_eq!(ok.validate(), Ok(()));
        let mut e = ok.clone();
        e.text = " \n ".into();
        assert_eq!(e.validate(), Err(InputError::EmptyText));
        e.text = "x".repeat(MAX_TEXT + 1);
        assert_eq!(e.validate(), Err(InputError::TextTooLong(MAX_TEXT + 1)));
        for id in ["../x", "a/b", "a b", "feed.>", "*", "", "a..b", "x."] {
            let mut e = ok.clone();
            e.id = Some(id.into());
            assert!(matches!(e.validate(), Err(InputError::BadId(_))), "{id:?}");
        }
        for tag in ["", "has space", "a/b", "ü", &"t".repeat(MAX_TAG + 1)] {
            let mut e = ok.clone();
            e.tags = vec![tag.to_string()];
            assert!(
                matches!(e.validate(), Err(InputError::BadTag(_))),
                "{tag:?}"
            );
        }
        let mut e = ok;
        e.tags = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert_eq!(e.validate(), Err(InputError::TooManyTags(MAX_TAGS + 1)));
    }

    #[test]
    fn the_stored_form_is_trimmed_with_tags_once_and_a_bounded_origin() {
        let mut new = NewEntry::new(Kind::Convention, "  run cargo fmt\n");
        new.tags = vec!["style".into(), "ci".into(), "style".into()];
        let entry = new.into_entry(&"o".repeat(500), "2026-11-23T09:00:00.000000Z");
        assert_eq!(entry.text, "run cargo fmt");
        assert_eq!(entry.tags, ["style", "ci"]);
        assert_eq!(entry.origin.len(), MAX_ORIGIN);
        assert_eq!(entry.id, content_id(Kind::Convention, "run cargo fmt"));
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["type"], "convention");
        assert_eq!(json["schema"], 1);
    }

    proptest! {
        #[test]
        fn any_valid_id_is_one_safe_subject_suffix(id in "[A-Za-z0-9._*> /\\\\-]{0,80}") {
            if name::validate_entry_id(&id).is_ok() {
                prop_assert!(!id.contains(['*', '>', ' ', '/', '\\']));
                prop_assert!(!id.starts_with('.') && !id.ends_with('.') && !id.contains(".."));
            }
        }

        #[test]
        fn content_ids_are_always_valid_ids(text in "\\PC{1,200}") {
            prop_assert!(name::validate_entry_id(&content_id(Kind::Task, &text)).is_ok());
        }

        #[test]
        fn error_messages_stay_short(tag in "\\PC{0,2000}") {
            if let Err(err) = validate_tag(&tag) {
                prop_assert!(err.to_string().len() < 300);
            }
        }
    }
}
