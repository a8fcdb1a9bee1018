//! Timestamps: UTC only, microsecond precision, rendered as RFC 3339 with `Z`.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};

/// Every audit timestamp is a UTC instant truncated to microseconds (the
/// precision both SQLite text and PostgreSQL timestamps keep).
pub type Timestamp = DateTime<Utc>;

/// The current time, truncated to microseconds so it round-trips through both
/// database backends unchanged.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}

/// The one rendering of a timestamp used in exports and text output:
/// RFC 3339, UTC, `Z` suffix, microseconds.
pub fn render(ts: &Timestamp) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}
