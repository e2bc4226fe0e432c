//! App Platform deployment phases and the outcome each terminal phase means.

use serde::{Deserialize, Serialize};

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
