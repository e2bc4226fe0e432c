//! The context every validation step shares: where a value came from, and errors that name the key.

use std::time::Duration;

use super::error::ConfigError;
use super::file::HumanDuration;
use crate::domain::LabelValue;

/// An optional duration key, or its default (zero allowed).
pub(super) fn duration_or(d: Option<HumanDuration>, default: Duration) -> Duration {
    d.map(|d| d.0).unwrap_or(default)
}

pub(super) struct Ctx<'a> {
    pub(super) origin: &'a str,
}

impl Ctx<'_> {
    pub(super) fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            key: key.into(),
            message: message.into(),
        }
    }

    pub(super) fn label(&self, key: &str, value: &str) -> Result<LabelValue, ConfigError> {
        LabelValue::parse(value).map_err(|m| self.err(key, m))
    }

    pub(super) fn positive(
        &self,
        key: &str,
        d: Option<HumanDuration>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let d = duration_or(d, default);
        if d.is_zero() {
            return Err(self.err(key, "must be greater than zero"));
        }
        Ok(d)
    }
}
