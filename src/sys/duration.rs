//! Human durations on the command line: `30s`, `1m30s`, `500ms`, `2h`.
//!
//! Every duration a user types ends up added to a clock (`Instant::now() +
//! timeout`, `last_renewed + ttl`, `now - since`), and that addition panics
//! when it overflows. So [`parse`] refuses anything longer than [`MAX`]
//! instead of saturating: ten years is far beyond any timeout or lease and
//! far inside what every clock can add.

use std::time::Duration;

use crate::sys::shown::shown;

/// The longest duration accepted: 3650 days.
pub const MAX: Duration = Duration::from_secs(3650 * 86400);

/// Parses `500ms`, `30s`, `1m30s`, `2h`, or a bare number of seconds, up
/// to [`MAX`].
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; use a value like 30s, 1m30s or 500ms".to_string());
    }
    let too_large = || {
        format!(
            "duration {} is too large; the longest accepted is 3650d",
            shown(text)
        )
    };
    let total = if let Ok(secs) = text.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let mut total = Duration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!(
                    "invalid duration {}; use a value like 30s, 1m30s or 500ms",
                    shown(text)
                ));
            }
            let value: u64 = rest[..digits].parse().map_err(|_| too_large())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let seconds_per = match &rest[..unit_len] {
                "ms" => None,
                "s" => Some(1),
                "m" => Some(60),
                "h" => Some(3600),
                "d" => Some(86400),
                other => {
                    return Err(format!(
                        "invalid duration unit {} in {}; use ms, s, m, h or d",
                        shown(other),
                        shown(text)
                    ));
                }
            };
            let part = match seconds_per {
                None => Duration::from_millis(value),
                Some(size) => Duration::from_secs(value.checked_mul(size).ok_or_else(too_large)?),
            };
            total = total.checked_add(part).ok_or_else(too_large)?;
            rest = &rest[unit_len..];
        }
        total
    };
    if total > MAX {
        return Err(too_large());
    }
    Ok(total)
}

/// Formats a duration the way [`parse`] reads it back (`1m30s`, `250ms`).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if secs > 0 {
        out.push_str(&format!("{secs}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("15"), Ok(Duration::from_secs(15)));
        assert!(parse("").is_err());
        assert!(parse("5x").is_err());
        assert!(parse("m").is_err());
        assert_eq!(parse("3650d"), Ok(MAX));
        assert!(parse("3651d").is_err());
        assert!(parse("99999999999999999999s").is_err());
        assert!(parse("18446744073709551615").is_err());
    }

    proptest! {
        #[test]
        fn format_round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }

        #[test]
        fn never_panics(text in ".{0,40}") {
            let _ = parse(&text);
        }

        #[test]
        fn whatever_it_accepts_every_clock_can_add(text in "[0-9]{1,25}(ms|s|m|h|d)?([0-9]{1,25}(ms|s|m|h|d))?") {
            if let Ok(d) = parse(&text) {
                prop_assert!(d <= MAX);
                let _ = std::time::Instant::now() + d;
                let _ = time::OffsetDateTime::now_utc() - d;
                let _ = time::OffsetDateTime::now_utc() + d;
            } else {
                let err = parse(&text).unwrap_err();
                prop_assert!(!err.contains('\n') && err.len() < 300, "{}", err);
            }
        }
    }
}
