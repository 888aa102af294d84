//! How long the feed keeps entries: an age and a count, from the hub's
//! environment.
//!
//! The hub applies these at every start (creating or updating the stream),
//! so changing retention is "set the variable, restart the hub". A client
//! that finds no stream creates it with the same rules from its own
//! environment, but never changes an existing stream: a stray variable in
//! one agent's shell must not cut the whole workspace's history.

use std::time::Duration;

use crate::sys::duration;

/// Environment variable: the oldest entry kept (`365d`, `90d`, `12h`; `0`
/// keeps entries of any age).
pub const MAX_AGE_ENV: &str = "BONES_FEED_MAX_AGE";
/// Environment variable: the most entries kept, oldest dropped first (`0`
/// keeps any number).
pub const MAX_MSGS_ENV: &str = "BONES_FEED_MAX_MSGS";
/// A year: what agents learn this month still matters next spring.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);
/// A million entries: a year of about 2,700 entries a day.
pub const DEFAULT_MAX_MSGS: u64 = 1_000_000;
/// Shortest age limit accepted (other than `0`, no limit).
pub const MIN_MAX_AGE: Duration = Duration::from_secs(60);

/// Why a retention setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?}: {why}")]
pub struct RetentionError {
    var: &'static str,
    value: String,
    why: String,
}

/// The feed's retention rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `None`: entries of any age are kept.
    pub max_age: Option<Duration>,
    /// `None`: any number of entries is kept.
    pub max_msgs: Option<u64>,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            max_age: Some(DEFAULT_MAX_AGE),
            max_msgs: Some(DEFAULT_MAX_MSGS),
        }
    }
}

impl Retention {
    /// The rules set by [`MAX_AGE_ENV`] and [`MAX_MSGS_ENV`], defaults for
    /// those unset or empty.
    pub fn from_env() -> Result<Retention, RetentionError> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Retention::parse(var(MAX_AGE_ENV).as_deref(), var(MAX_MSGS_ENV).as_deref())
    }

    /// Reads the two settings as the environment gives them.
    pub fn parse(
        max_age: Option<&str>,
        max_msgs: Option<&str>,
    ) -> Result<Retention, RetentionError> {
        let mut retention = Retention::default();
        if let Some(text) = max_age {
            let age = duration::parse(text).map_err(|why| RetentionError {
                var: MAX_AGE_ENV,
                value: text.to_string(),
                why,
            })?;
            retention.max_age = if age.is_zero() {
                None
            } else if age < MIN_MAX_AGE {
                return Err(RetentionError {
                    var: MAX_AGE_ENV,
                    value: text.to_string(),
                    why: "keep entries at least 1m (or 0 for no age limit)".to_string(),
                });
            } else {
                Some(age)
            };
        }
        if let Some(text) = max_msgs {
            let count: u64 = text.trim().parse().map_err(|_| RetentionError {
                var: MAX_MSGS_ENV,
                value: text.to_string(),
                why: "use a whole number of entries (0 for no limit)".to_string(),
            })?;
            if count > i64::MAX as u64 {
                return Err(RetentionError {
                    var: MAX_MSGS_ENV,
                    value: text.to_string(),
                    why: "too large; use 0 for no limit".to_string(),
                });
            }
            retention.max_msgs = (count > 0).then_some(count);
        }
        Ok(retention)
    }

    /// The stream's `max_age` (zero: unlimited).
    pub fn stream_max_age(&self) -> Duration {
        self.max_age.unwrap_or(Duration::ZERO)
    }

    /// The stream's `max_msgs` (-1: unlimited).
    pub fn stream_max_msgs(&self) -> i64 {
        self.max_msgs.map_or(-1, |n| n as i64)
    }

    /// A one-line description for logs: `age limit 365d, count limit 1000000`.
    pub fn describe(&self) -> String {
        let age = self.max_age.map_or("no age limit".to_string(), |a| {
            if a.as_secs().is_multiple_of(86400) {
                format!("age limit {}d", a.as_secs() / 86400)
            } else {
                format!("age limit {}", duration::format(a))
            }
        });
        let count = self
            .max_msgs
            .map_or("no count limit".to_string(), |n| format!("count limit {n}"));
        format!("{age}, {count}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_a_year() {
        let r = Retention::parse(None, None).unwrap();
        assert_eq!(r.describe(), "age limit 365d, count limit 1000000");
        assert_eq!(r, Retention::default());
        assert_eq!(r.stream_max_age(), Duration::from_secs(365 * 86400));
        assert_eq!(r.stream_max_msgs(), 1_000_000);
    }

    #[test]
    fn settings_are_read_and_zero_means_no_limit() {
        let r = Retention::parse(Some("30d"), Some("500")).unwrap();
        assert_eq!(r.max_age, Some(Duration::from_secs(30 * 86400)));
        assert_eq!(r.max_msgs, Some(500));
        let r = Retention::parse(Some("0"), Some("0")).unwrap();
        assert_eq!(
            (r.stream_max_age(), r.stream_max_msgs()),
            (Duration::ZERO, -1)
        );
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (age, msgs) in [
            (Some("soon"), None),
            (Some("30s"), None),
            (None, Some("-1")),
            (None, Some("lots")),
        ] {
            let err = Retention::parse(age, msgs).unwrap_err().to_string();
            assert!(err.starts_with("BONES_FEED_MAX_"), "{err}");
        }
    }
}
