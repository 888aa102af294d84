//! User input as it is safe to echo back in an error message.
//!
//! An error that quotes what the user typed helps them, but the input may
//! be 128 KiB long or hold escape sequences that drive the terminal. Every
//! error that echoes input goes through [`shown`]: quoted, with control
//! characters escaped, and cut to a length that keeps the error on one line.

use std::path::Path;

/// Characters of the input kept in an error message.
const KEEP: usize = 40;

/// Characters of a path kept in a message: room for any path a person
/// types, far from a 60 KB `BONES_DIR`.
const KEEP_PATH: usize = 200;

/// `text` quoted and escaped like a Rust string literal, at most
/// [`KEEP`] characters of it, with `…` when it was cut.
pub fn shown(text: &str) -> String {
    let mut cut: String = text.chars().take(KEEP).collect();
    let long = text.chars().nth(KEEP).is_some();
    cut = format!("{cut:?}");
    if long {
        cut.insert(cut.len() - 1, '…');
    }
    cut
}

/// Text from a record as it is safe to print on a terminal: control
/// characters other than tab escaped (`\u{1b}`), everything else as
/// written. Records are written by any holder of the token, and an escape
/// sequence in a title must not drive the operator's terminal.
pub fn plain(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(text);
    }
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// A path as it is safe to show in a message: control characters escaped
/// as [`plain`] does (bytes that are not UTF-8 as U+FFFD), at most
/// [`KEEP_PATH`] characters of it, with `…` when it was cut. Paths come
/// from arguments and `BONES_DIR`: a name can hold an escape sequence, and
/// a long one would bury the error on the terminal.
pub fn path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut cut: String = text.chars().take(KEEP_PATH).collect();
    let long = text.chars().nth(KEEP_PATH).is_some();
    cut = plain(&cut).into_owned();
    if long {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_text_is_quoted_and_escaped() {
        assert_eq!(shown("a b"), "\"a b\"");
        assert_eq!(shown("x\ny\u{1b}"), "\"x\\ny\\u{1b}\"");
        assert_eq!(shown(&"a".repeat(50)), format!("\"{}…\"", "a".repeat(40)));
    }

    #[test]
    fn plain_text_keeps_tabs_and_escapes_the_rest() {
        assert_eq!(plain("a\tb"), "a\tb");
        assert_eq!(plain("x\u{1b}[2Jy\n"), "x\\u{1b}[2Jy\\n");
    }

    #[test]
    fn paths_are_escaped_and_cut() {
        assert_eq!(path(Path::new("/tmp/a b")), "/tmp/a b");
        assert_eq!(path(Path::new("/tmp/x\u{1b}[2J")), "/tmp/x\\u{1b}[2J");
        let long = format!("/{}", "a".repeat(60_000));
        assert_eq!(path(Path::new(&long)).chars().count(), KEEP_PATH + 1);
    }

    proptest! {
        #[test]
        fn plain_text_has_no_control_but_tab(text in "(?s).{0,200}") {
            prop_assert!(!plain(&text).chars().any(|c| c.is_control() && c != '\t'));
        }

        #[test]
        fn the_result_is_one_short_line(text in "(?s).{0,300}") {
            let out = shown(&text);
            prop_assert!(!out.contains('\n') && !out.contains('\r'));
            prop_assert!(!out.chars().any(|c| c.is_control()));
            prop_assert!(out.chars().count() <= 2 + KEEP * 10 + 1);
        }
    }
}
