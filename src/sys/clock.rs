//! The clock: the one home of bones's timestamps.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Current UTC time as RFC 3339 with second precision and a `Z` suffix,
/// the one timestamp format bones persists (jq's `fromdate` reads it).
pub fn utc_now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// Formats a time as UTC RFC 3339, seconds precision, `Z` suffix.
pub fn format_rfc3339(at: OffsetDateTime) -> String {
    let at = at
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_default()
}

/// Now, UTC, RFC 3339 with microseconds: tasks created in a tight loop
/// still sort in creation order, and the text sorts like the time.
pub fn precise_now() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}
