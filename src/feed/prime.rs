//! The digest `bones feed --prime` prints for an agent's context at the
//! start of a session.
//!
//! Context is scarce, so the digest is bounded (in characters) and ordered
//! by what an agent most needs: conventions (rules to follow), then
//! decisions (choices not to reopen), then learnings, then tasks; newest
//! first within each. Each entry is one line, cut to
//! [`MAX_ENTRY_CHARS`]. Once an entry no longer fits, it and everything
//! after it are left out, and the digest says how many.

use std::collections::BTreeMap;

use serde::Serialize;

use super::entry::{Entry, Kind};
use super::store::Stored;

/// Default bound on the digest, in characters: about a thousand tokens.
pub const DEFAULT_MAX_CHARS: usize = 4000;
/// Smallest bound accepted: room for the heading, one entry and the note.
pub const MIN_MAX_CHARS: usize = 1000;
/// Longest line one entry gets in the digest.
pub const MAX_ENTRY_CHARS: usize = 400;

/// A digest of the feed.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Digest {
    pub schema: u32,
    /// Entries in the feed, by type.
    pub counts: BTreeMap<&'static str, usize>,
    pub total: usize,
    /// The entries shown, in digest order.
    pub entries: Vec<Stored>,
    /// Entries left out to stay within the bound.
    pub omitted: usize,
    pub max_chars: usize,
    /// The digest as text, at most `max_chars` characters.
    #[serde(skip)]
    pub text: String,
}

impl Digest {
    /// Builds the digest of `all` (the whole feed, any order) within
    /// `max_chars` characters (at least [`MIN_MAX_CHARS`]).
    pub fn build(all: Vec<Stored>, max_chars: usize) -> Digest {
        let max_chars = max_chars.max(MIN_MAX_CHARS);
        let total = all.len();
        let mut by_kind: BTreeMap<Kind, Vec<Stored>> = BTreeMap::new();
        for stored in all {
            by_kind.entry(stored.entry.kind).or_default().push(stored);
        }
        let counts: BTreeMap<&'static str, usize> = Kind::ALL
            .iter()
            .map(|k| (k.as_str(), by_kind.get(k).map_or(0, Vec::len)))
            .collect();
        let mut text = heading(&by_kind, total);
        let mut used = text.chars().count();
        let mut entries = Vec::new();
        // the closing note is at most this long; keep room for it
        let reserve = 100;
        'kinds: for kind in Kind::ALL {
            let Some(mut list) = by_kind.remove(&kind) else {
                continue;
            };
            list.sort_by_key(|stored| std::cmp::Reverse(stored.seq));
            let title = format!("\n{}:\n", capitalised(kind.plural()));
            let mut titled = false;
            for stored in list {
                let line = line(&stored.entry);
                let mut cost = line.chars().count() + 1;
                if !titled {
                    cost += title.chars().count();
                }
                if used + cost + reserve > max_chars {
                    break 'kinds;
                }
                if !titled {
                    text.push_str(&title);
                    titled = true;
                }
                text.push_str(&line);
                text.push('\n');
                used += cost;
                entries.push(stored);
            }
        }
        let omitted = total - entries.len();
        if omitted > 0 {
            text.push_str(&format!(
                "\n({omitted} more left out to stay within {max_chars} characters; `bones feed` lists them all)\n"
            ));
        }
        Digest {
            schema: super::entry::SCHEMA,
            counts,
            total,
            entries,
            omitted,
            max_chars,
            text,
        }
    }
}

fn heading(by_kind: &BTreeMap<Kind, Vec<Stored>>, total: usize) -> String {
    if total == 0 {
        return "Knowledge feed: no entries yet (share one with `bones share --type learning TEXT`).\n"
            .to_string();
    }
    let counts: Vec<String> = Kind::ALL
        .iter()
        .filter_map(|k| {
            by_kind.get(k).map(|list| match list.len() {
                1 => format!("1 {k}"),
                n => format!("{n} {}", k.plural()),
            })
        })
        .collect();
    format!(
        "Knowledge feed of this workspace ({}), newest first. Follow the conventions; do not reopen the decisions.\n",
        counts.join(", ")
    )
}

/// One entry as one line: its text on one line, cut to
/// [`MAX_ENTRY_CHARS`], then where it came from.
fn line(entry: &Entry) -> String {
    let date = entry.created_at.get(..10).unwrap_or(&entry.created_at);
    let mut suffix = format!(" ({}, {date}", entry.origin);
    if !entry.tags.is_empty() {
        suffix.push_str("; ");
        suffix.push_str(&entry.tags.join(", "));
    }
    suffix.push(')');
    let room = MAX_ENTRY_CHARS
        .saturating_sub(2 + suffix.chars().count())
        .max(40);
    let words: Vec<&str> = entry.text.split_whitespace().collect();
    let one_line = words.join(" ");
    let text = if one_line.chars().count() > room {
        let mut cut: String = one_line.chars().take(room - 1).collect();
        cut.push('…');
        cut
    } else {
        one_line
    };
    // entries are written by any token holder: no terminal escapes
    crate::sys::shown::plain(&format!("- {text}{suffix}")).into_owned()
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: u64, kind: Kind, text: &str) -> Stored {
        Stored {
            seq,
            entry: super::super::entry::NewEntry::new(kind, text)
                .into_entry("slot-a", "2026-11-23T09:00:00.000000Z"),
        }
    }

    #[test]
    fn conventions_then_decisions_newest_first() {
        let all = vec![
            stored(1, Kind::Learning, "learned one"),
            stored(2, Kind::Decision, "decided old"),
            stored(3, Kind::Convention, "convention old"),
            stored(4, Kind::Task, "task one"),
            stored(5, Kind::Decision, "decided new"),
            stored(6, Kind::Convention, "convention new"),
        ];
        let digest = Digest::build(all, DEFAULT_MAX_CHARS);
        let order: Vec<u64> = digest.entries.iter().map(|e| e.seq).collect();
        assert_eq!(order, [6, 3, 5, 2, 1, 4]);
        assert_eq!(digest.omitted, 0);
        assert_eq!(digest.counts["decision"], 2);
        let text = &digest.text;
        let pos = |s: &str| {
            text.find(s)
                .unwrap_or_else(|| panic!("{s} missing in {text}"))
        };
        assert!(pos("Conventions:") < pos("convention new"));
        assert!(pos("convention new") < pos("convention old"));
        assert!(pos("convention old") < pos("Decisions:"));
        assert!(pos("decided new") < pos("Learnings:"));
        assert!(text.contains("(slot-a, 2026-11-23)"));
    }

    #[test]
    fn the_digest_stays_within_its_bound_and_says_what_it_left_out() {
        let all: Vec<Stored> = (1..=500)
            .map(|i| {
                stored(
                    i,
                    Kind::Learning,
                    &format!("fact number {i} {}", "x".repeat(i as usize % 700)),
                )
            })
            .collect();
        for bound in [MIN_MAX_CHARS, 1000, DEFAULT_MAX_CHARS, 20_000] {
            let digest = Digest::build(all.clone(), bound);
            assert!(
                digest.text.chars().count() <= bound,
                "{bound}: {}",
                digest.text.chars().count()
            );
            assert!(!digest.entries.is_empty());
            assert_eq!(digest.omitted, 500 - digest.entries.len());
            assert!(
                digest
                    .text
                    .contains(&format!("{} more left out", digest.omitted))
            );
            assert!(
                digest
                    .text
                    .lines()
                    .all(|l| l.chars().count() <= MAX_ENTRY_CHARS)
            );
        }
    }

    #[test]
    fn an_empty_feed_says_how_to_share() {
        let digest = Digest::build(Vec::new(), DEFAULT_MAX_CHARS);
        assert_eq!(digest.total, 0);
        assert!(digest.text.contains("bones share"));
    }
}
