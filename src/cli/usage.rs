//! Usage errors in two lines.
//!
//! clap's own rendering spreads one error over four to six lines (the
//! error, a blank line, a tip, the usage, a pointer to `--help`) and echoes
//! the offending value whole, which may be 128 KiB long or hold terminal
//! escapes. bones keeps its promise of a one- or two-line error for usage
//! errors too: the error with its tip folded in, then the usage line.
//! Help and version output (and help shown for a missing subcommand) are
//! left to clap.

use clap::error::ErrorKind;

/// Longest line printed; longer ones keep their start and end.
const MAX_LINE: usize = 240;

/// Prints a clap error the bones way and returns the exit code.
pub fn report(err: &clap::Error) -> u8 {
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            if err.use_stderr() {
                super::exit::USAGE
            } else {
                super::exit::OK
            }
        }
        _ => {
            for line in compact(&err.to_string()) {
                eprintln!("{line}");
            }
            super::exit::USAGE
        }
    }
}

/// clap's rendered error as at most two lines: `bones: <error>` with any
/// tips and value lists folded in, then `usage: ...` when clap gave one.
pub fn compact(rendered: &str) -> Vec<String> {
    let mut message = String::new();
    let mut usage = None;
    for line in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("Usage:") {
            usage = Some(rest.trim().to_string());
        } else if line.starts_with("For more information") {
            continue;
        } else if let Some(rest) = line.strip_prefix("error:") {
            message.push_str(rest.trim());
        } else if let Some(rest) = line.strip_prefix("tip:") {
            message.push_str(&format!(" ({})", rest.trim()));
        } else {
            if !message.is_empty() {
                message.push(' ');
            }
            message.push_str(line);
        }
    }
    if message.is_empty() {
        message.push_str("invalid command line");
    }
    let mut lines = vec![format!("bones: {}", one_line(&message))];
    if let Some(usage) = usage {
        lines.push(format!("usage: {} (try --help)", one_line(&usage)));
    }
    lines
}

/// Escapes control characters and cuts the middle out of a long line.
fn one_line(text: &str) -> String {
    let clean: Vec<char> = text
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if clean.len() <= MAX_LINE {
        return clean.into_iter().collect();
    }
    let half = MAX_LINE / 2;
    let mut out: String = clean[..half].iter().collect();
    out.push('…');
    out.extend(&clean[clean.len() - half..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn folds_clap_errors_into_two_lines() {
        let rendered = "error: unexpected argument '--slott' found\n\n  tip: a similar argument exists: '--slot'\n\nUsage: bones swarm join --slot <NAME>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            compact(rendered),
            [
                "bones: unexpected argument '--slott' found (a similar argument exists: '--slot')",
                "usage: bones swarm join --slot <NAME> (try --help)",
            ]
        );
        let rendered = "error: invalid value 'xyz' for '--log-level <L>'\n  [possible values: debug, info, warn, error]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            compact(rendered),
            [
                "bones: invalid value 'xyz' for '--log-level <L>' [possible values: debug, info, warn, error]"
            ]
        );
    }

    #[test]
    fn long_values_keep_both_ends() {
        let rendered = format!(
            "error: invalid value '{}' for '--since <WHEN>'\n",
            "9".repeat(200_000)
        );
        let lines = compact(&rendered);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].chars().count() < MAX_LINE + 20);
        assert!(lines[0].starts_with("bones: invalid value '999"));
        assert!(lines[0].ends_with("for '--since <WHEN>'"));
    }

    proptest! {
        #[test]
        fn any_rendering_becomes_at_most_two_short_lines(text in "(?s).{0,2000}") {
            let lines = compact(&text);
            prop_assert!(!lines.is_empty() && lines.len() <= 2);
            for line in lines {
                prop_assert!(!line.contains('\n') && !line.contains('\r'));
                prop_assert!(line.chars().count() <= MAX_LINE + 32);
            }
        }
    }
}
