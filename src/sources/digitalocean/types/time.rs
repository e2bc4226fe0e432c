//! Timestamps and phases as the API sends them: absent, zero or unparseable read as unset.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};

use crate::domain::Phase;

/// A timestamp that may be absent, zero or unparseable; all three read as `None`.
pub fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let raw: Option<serde_json::Value> = Option::deserialize(d)?;
    Ok(raw.and_then(|v| v.as_str().and_then(parse_time)))
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|n| n.and_utc())
        })?;
    // The API's way of saying "not set".
    if t.timestamp() <= 0 { None } else { Some(t) }
}

pub(super) fn de_phase<'de, D: Deserializer<'de>>(d: D) -> Result<Phase, D::Error> {
    let raw: Option<serde_json::Value> = Option::deserialize(d)?;
    Ok(raw
        .as_ref()
        .and_then(|v| v.as_str())
        .map(Phase::parse)
        .unwrap_or(Phase::Unknown))
}
