//! The clock: the one home of bones's timestamps.
//!
//! Every time bones writes (hub.log's `ts`, task and feed records, leases,
//! hub.json, backups) is UTC RFC 3339 with microseconds and a `Z` suffix,
//! `2026-11-23T09:00:00.123456Z`: one format everywhere (docs/json.md).
//! Microseconds, not whole seconds, because records made in one second
//! must still sort in the order they were made (tasks are claimed oldest
//! first), and fixed-width text sorts like the time it names. jq reads it
//! with `sub("\\.[0-9]+Z$"; "Z") | fromdate`; readers of times written
//! by older versions (whole seconds) keep working: both are RFC 3339.

use time::OffsetDateTime;

/// Now, in the one format.
pub fn utc_now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// A time in the one format: UTC, RFC 3339, six fraction digits, `Z`.
pub fn format_rfc3339(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn fixed_width_utc_with_microseconds_that_parses_back() {
        let at = OffsetDateTime::parse("2026-11-23T10:00:00.1234567+01:00", &Rfc3339).unwrap();
        let text = format_rfc3339(at);
        assert_eq!(text, "2026-11-23T09:00:00.123456Z");
        let back = OffsetDateTime::parse(&text, &Rfc3339).unwrap();
        assert_eq!(back.unix_timestamp(), at.unix_timestamp());
        assert_eq!(utc_now_rfc3339().len(), text.len());
    }
}
