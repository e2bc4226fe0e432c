//! Small domain types shared by sources, the fixer and the store ("parse, don't validate").

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value safe to put in a Prometheus label: short, printable, from a bounded set (names from config
/// or DigitalOcean app names), never an id or URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LabelValue(String);

impl LabelValue {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 64 {
            return Err(format!("{s:?} must be 1 to 64 characters"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(format!(
                "{s:?} may only contain letters, digits and - _ . : (it becomes a metric label)"
            ));
        }
        Ok(Self(s.to_string()))
    }

    /// For names coming from DigitalOcean, which are already restricted but are mapped defensively.
    pub fn sanitize(s: &str) -> Self {
        let mut out: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':') {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        if out.is_empty() {
            out.push('_');
        }
        Self(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LabelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// App Platform deployment phases (`apps.deployment.phase` in the OpenAPI spec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    #[default]
    Unknown,
    PendingBuild,
    Building,
    PendingDeploy,
    Deploying,
    Active,
    Superseded,
    Error,
    Canceled,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Unknown,
        Phase::PendingBuild,
        Phase::Building,
        Phase::PendingDeploy,
        Phase::Deploying,
        Phase::Active,
        Phase::Superseded,
        Phase::Error,
        Phase::Canceled,
    ];

    /// Tolerant: anything DigitalOcean adds later is `Unknown`, never an error.
    pub fn parse(s: &str) -> Phase {
        match s {
            "PENDING_BUILD" => Phase::PendingBuild,
            "BUILDING" => Phase::Building,
            "PENDING_DEPLOY" => Phase::PendingDeploy,
            "DEPLOYING" => Phase::Deploying,
            "ACTIVE" => Phase::Active,
            "SUPERSEDED" => Phase::Superseded,
            "ERROR" => Phase::Error,
            "CANCELED" => Phase::Canceled,
            _ => Phase::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Unknown => "UNKNOWN",
            Phase::PendingBuild => "PENDING_BUILD",
            Phase::Building => "BUILDING",
            Phase::PendingDeploy => "PENDING_DEPLOY",
            Phase::Deploying => "DEPLOYING",
            Phase::Active => "ACTIVE",
            Phase::Superseded => "SUPERSEDED",
            Phase::Error => "ERROR",
            Phase::Canceled => "CANCELED",
        }
    }

    pub fn in_progress(self) -> bool {
        matches!(
            self,
            Phase::PendingBuild | Phase::Building | Phase::PendingDeploy | Phase::Deploying
        )
    }

    /// The outcome once the phase is terminal. A SUPERSEDED deployment went ACTIVE first, so it counts
    /// as a success.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            Phase::Active | Phase::Superseded => Some(Outcome::Success),
            Phase::Error => Some(Outcome::Failure),
            Phase::Canceled => Some(Outcome::Canceled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Canceled,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Success, Outcome::Failure, Outcome::Canceled];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_bounded() {
        for (input, ok) in [
            ("api", true),
            ("api-live", true),
            ("a.b:c_d", true),
            ("", false),
            ("has space", false),
            ("{evil}", false),
            (&"x".repeat(65), false),
        ] {
            assert_eq!(LabelValue::parse(input).is_ok(), ok, "{input:?}");
        }
        assert_eq!(LabelValue::sanitize("we ird/name").as_str(), "we_ird_name");
        assert_eq!(LabelValue::sanitize("").as_str(), "_");
    }

    #[test]
    fn phases_parse_tolerantly() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()), p);
        }
        assert_eq!(Phase::parse("SOMETHING_NEW"), Phase::Unknown);
        assert_eq!(Phase::Superseded.outcome(), Some(Outcome::Success));
        assert_eq!(Phase::Building.outcome(), None);
        assert!(Phase::PendingDeploy.in_progress());
        assert!(!Phase::Active.in_progress());
    }
}

/// The first `n` characters of `s` (a short commit, an id): never cuts a character in two, so an
/// unexpected non-ASCII value cannot panic a renderer. Pure.
pub fn prefix(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod prefix_tests {
    #[test]
    fn prefixes_never_split_a_character() {
        for (s, n, want) in [
            ("9a4df0b8e1", 7, "9a4df0b"),
            ("abc", 7, "abc"),
            ("ééééééééé", 7, "ééééééé"),
            ("", 3, ""),
        ] {
            assert_eq!(super::prefix(s, n), want);
        }
    }
}
