//! Usage errors in two lines, built from clap's error kind and context.
//!
//! clap's own rendering spreads one error over four to six lines (the
//! error, a blank line, a tip, the usage, a pointer to `--help`) and echoes
//! the offending value whole, which may be 128 KiB long or hold terminal
//! escapes. bones keeps its promise of a one- or two-line error for usage
//! errors too: the error with its tip folded in, then the usage line. Both
//! are made from what clap's error carries ([`ErrorKind`] and its
//! [`ContextKind`] values), never by reading its rendered text back.
//! Help and version output (and help shown for a missing subcommand) are
//! left to clap.

use clap::error::{ContextKind, ContextValue, ErrorKind};

use super::Failure;

/// Longest line printed; longer ones keep their start and end.
const MAX_LINE: usize = 240;

/// What a command line that clap refused comes to: `Ok(code)` when clap
/// printed help or the version itself, else the usage failure to report.
pub fn failure(err: &clap::Error) -> Result<u8, Failure> {
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            Ok(if err.use_stderr() {
                super::exit::USAGE
            } else {
                super::exit::OK
            })
        }
        _ => {
            let (message, usage) = compact(err);
            let failure = Failure::usage(message);
            Err(match usage {
                Some(usage) => failure.with_hint(usage),
                None => failure,
            })
        }
    }
}

/// A context value as plain text: one string, or a list joined by commas.
fn text(value: &ContextValue) -> Option<String> {
    match value {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(list) => Some(list.join(", ")),
        ContextValue::StyledStr(s) => Some(s.to_string()),
        ContextValue::StyledStrs(list) => Some(
            list.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ContextValue::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A context value quoted for a message: `'a'`, or `'a', 'b'`.
fn quoted(value: &ContextValue) -> Option<String> {
    match value {
        ContextValue::String(s) => Some(format!("'{s}'")),
        ContextValue::Strings(list) => Some(
            list.iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        other => text(other),
    }
}

/// The error as two parts: the message with any tip folded in, and the
/// usage line (without its `Usage:` title) when clap gave one.
pub fn compact(err: &clap::Error) -> (String, Option<String>) {
    let get = |kind| err.get(kind).and_then(text);
    let arg = get(ContextKind::InvalidArg).unwrap_or_default();
    let value = get(ContextKind::InvalidValue).unwrap_or_default();
    let mut message = match err.kind() {
        ErrorKind::UnknownArgument => format!("unexpected argument '{arg}' found"),
        ErrorKind::InvalidValue if value.is_empty() => {
            format!("a value is required for '{arg}' but none was supplied")
        }
        ErrorKind::InvalidValue => format!("invalid value '{value}' for '{arg}'"),
        ErrorKind::ValueValidation => {
            let mut message = format!("invalid value '{value}' for '{arg}'");
            if let Some(source) = std::error::Error::source(err) {
                message.push_str(&format!(": {source}"));
            }
            message
        }
        ErrorKind::InvalidSubcommand => {
            let sub = get(ContextKind::InvalidSubcommand).unwrap_or_default();
            format!("unrecognized subcommand '{sub}'")
        }
        ErrorKind::MissingRequiredArgument => {
            format!("the following required arguments were not provided: {arg}")
        }
        ErrorKind::MissingSubcommand => {
            let sub = get(ContextKind::InvalidSubcommand).unwrap_or_default();
            format!("'{sub}' requires a subcommand but one was not provided")
        }
        ErrorKind::ArgumentConflict => match err.get(ContextKind::PriorArg) {
            Some(prior) if get(ContextKind::PriorArg).as_deref() == Some(arg.as_str()) => {
                let _ = prior;
                format!("the argument '{arg}' cannot be used multiple times")
            }
            Some(prior) => format!(
                "the argument '{arg}' cannot be used with {}",
                quoted(prior).unwrap_or_default()
            ),
            None => format!(
                "the argument '{arg}' cannot be used with one or more of the other specified arguments"
            ),
        },
        ErrorKind::TooManyValues => {
            format!("unexpected value '{value}' for '{arg}' found; no more were expected")
        }
        ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues => {
            let wanted = get(ContextKind::MinValues)
                .or_else(|| get(ContextKind::ExpectedNumValues))
                .unwrap_or_default();
            let given = get(ContextKind::ActualNumValues).unwrap_or_default();
            format!("{wanted} values required for '{arg}' but {given} given")
        }
        ErrorKind::NoEquals => {
            format!("equal sign is needed when assigning values to '{arg}'")
        }
        ErrorKind::InvalidUtf8 => "invalid UTF-8 was detected in one or more arguments".into(),
        other => other.as_str().unwrap_or("invalid command line").to_string(),
    };
    if arg.is_empty() && value.is_empty() && message.contains("''") {
        message = err
            .kind()
            .as_str()
            .unwrap_or("invalid command line")
            .to_string();
    }
    if let Some(values) = err.get(ContextKind::ValidValue).and_then(text) {
        message.push_str(&format!(" [possible values: {values}]"));
    }
    if let Some(values) = err.get(ContextKind::ValidSubcommand).and_then(text) {
        message.push_str(&format!(" [subcommands: {values}]"));
    }
    let tips: Vec<String> = [
        (
            ContextKind::SuggestedSubcommand,
            "a similar subcommand exists",
        ),
        (ContextKind::SuggestedArg, "a similar argument exists"),
        (ContextKind::SuggestedValue, "a similar value exists"),
    ]
    .into_iter()
    .filter_map(|(kind, what)| Some(format!("{what}: {}", quoted(err.get(kind)?)?)))
    .chain(err.get(ContextKind::Suggested).and_then(text))
    .chain(
        matches!(
            err.get(ContextKind::TrailingArg),
            Some(ContextValue::Bool(true))
        )
        .then(|| format!("to pass '{arg}' as a value, use '-- {arg}'")),
    )
    .collect();
    for tip in tips {
        message.push_str(&format!(" ({tip})"));
    }
    let usage = get(ContextKind::Usage).map(|usage| {
        let usage = usage.trim();
        let usage = usage.strip_prefix("Usage:").unwrap_or(usage).trim();
        format!("{} (try --help)", one_line(usage))
    });
    (one_line(&message), usage)
}

/// Escapes control characters and cuts the middle out of a long line.
pub fn one_line(text: &str) -> String {
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
    use clap::{CommandFactory, Parser};
    use proptest::prelude::*;

    fn refused(args: &[&str]) -> (String, Option<String>) {
        let err = super::super::Cli::try_parse_from(args).unwrap_err();
        compact(&err)
    }

    #[test]
    fn folds_clap_errors_into_two_lines() {
        let (message, usage) = refused(&["bones", "swarm", "join", "--slott", "x"]);
        assert_eq!(
            message,
            "unexpected argument '--slott' found (a similar argument exists: '--slot')"
        );
        assert!(
            usage.as_deref().unwrap().starts_with("bones swarm join"),
            "{usage:?}"
        );
        assert!(usage.unwrap().ends_with("(try --help)"));
        let (message, _) = refused(&["bones", "hub", "start", "--log-level", "xyz"]);
        assert!(
            message.starts_with("invalid value 'xyz' for '--log-level <L"),
            "{message}"
        );
        assert!(
            message.ends_with("[possible values: debug, info, warn, error]"),
            "{message}"
        );
        super::super::Cli::command().debug_assert();
    }

    #[test]
    fn long_values_keep_both_ends() {
        let long = "9".repeat(200_000);
        let (message, _) = refused(&["bones", "logs", "--hub", "--since", &long]);
        assert!(message.chars().count() <= MAX_LINE + 1);
        assert!(message.starts_with("invalid value '999"), "{message}");
    }

    proptest! {
        #[test]
        fn any_argument_becomes_one_short_line(text in "(?s).{0,2000}") {
            let args = ["bones", "tasks", "claim", "--wait", text.as_str(), "--next", "--bogus"];
            if let Err(err) = super::super::Cli::try_parse_from(args)
                && let Err(failure) = failure(&err)
            {
                for line in [Some(failure.message), failure.hint].into_iter().flatten() {
                    prop_assert!(!line.contains('\n') && !line.contains('\r'));
                    prop_assert!(line.chars().count() <= MAX_LINE + 32);
                }
            }
        }
    }
}
