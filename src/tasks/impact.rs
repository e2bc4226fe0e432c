//! Priority by impact: a fix for production is critical, for staging high, elsewhere normal. The
//! environment comes from the alert's `environment` label or, failing that, the app's configured
//! `environment` (`[[apps]]`). Pure.

use serde::{Deserialize, Serialize};

/// Where a deployment lands, as deploy tasks name it (`context.target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Staging,
    Production,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Staging => "staging",
            Target::Production => "production",
        }
    }

    /// `staging` or `production`, as the contract spells them (also the usual short forms, so an
    /// alert labelled `env=prod` counts as production).
    pub fn parse(s: &str) -> Option<Target> {
        match s.trim().to_ascii_lowercase().as_str() {
            "production" | "prod" => Some(Target::Production),
            "staging" | "stage" => Some(Target::Staging),
            _ => None,
        }
    }
}

/// Priorities as the queue orders them (1 is the most urgent).
pub const CRITICAL: i64 = 1;
pub const HIGH: i64 = 2;
pub const NORMAL: i64 = 3;

/// The environment a problem is in: the label wins (it describes this very alert), then the
/// configured environment of the app. `None` when neither says.
pub fn environment<'a>(label: Option<&'a str>, configured: Option<&'a str>) -> Option<&'a str> {
    label
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .or(configured.map(str::trim).filter(|s| !s.is_empty()))
}

/// The priority of a fix task by impact: production critical, staging high, any other named
/// environment normal. With no environment known, `fallback` (the severity-based priority) stands,
/// so installations that never name environments keep today's ordering.
pub fn fix_priority(environment: Option<&str>, fallback: i64) -> i64 {
    match environment {
        None => fallback,
        Some(e) => match Target::parse(e) {
            Some(Target::Production) => CRITICAL,
            Some(Target::Staging) => HIGH,
            None => NORMAL,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_are_prioritised_by_where_they_hurt() {
        let cases = [
            ("production label", Some("production"), None, 3, CRITICAL),
            ("prod label", Some("prod"), None, 3, CRITICAL),
            ("staging label", Some("staging"), None, 1, HIGH),
            ("dev label", Some("dev"), None, 1, NORMAL),
            (
                "configured production",
                None,
                Some("production"),
                3,
                CRITICAL,
            ),
            ("configured staging", None, Some("Staging"), 1, HIGH),
            (
                "label wins over config",
                Some("staging"),
                Some("production"),
                1,
                HIGH,
            ),
            (
                "blank label falls back",
                Some(" "),
                Some("production"),
                3,
                CRITICAL,
            ),
            ("nothing known keeps severity", None, None, 2, 2),
        ];
        for (what, label, configured, fallback, want) in cases {
            let env = environment(label, configured);
            assert_eq!(fix_priority(env, fallback), want, "{what}");
        }
    }

    #[test]
    fn targets_parse_the_contract_spellings() {
        assert_eq!(Target::parse("production"), Some(Target::Production));
        assert_eq!(Target::parse("STAGING"), Some(Target::Staging));
        assert_eq!(Target::parse("qa"), None);
        assert_eq!(Target::Production.as_str(), "production");
    }

    /// The alert rules apply it: a fix's priority follows the alert's environment or the app's.
    #[test]
    fn alert_fixes_follow_the_environment_of_the_alert_or_the_app() {
        use crate::tasks::rules::{AlertInput, PlanContext, plan};
        let fix_prio = |labels: &[(&str, &str)], configured: Option<&str>| {
            let a = AlertInput {
                alertname: "DeploymentFailed".into(),
                firing: true,
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                annotations: Default::default(),
                starts_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
                ends_at: None,
                fingerprint: "abc".into(),
                generator_url: String::new(),
            };
            let c = PlanContext {
                rules: &[],
                app: None,
                dashboard_url: None,
                check_details: None,
                environment: configured,
                verification: None,
            };
            plan(&a, &c)
                .create
                .iter()
                .find(|t| t.kind == crate::tasks::Kind::Fix)
                .map(|t| t.priority)
        };
        let (warn, crit, api) = (
            ("severity", "warning"),
            ("severity", "critical"),
            ("app", "api"),
        );
        let cases = [
            (
                "production label",
                vec![warn, api, ("environment", "production")],
                None,
                1,
            ),
            (
                "staging label",
                vec![crit, api, ("environment", "staging")],
                None,
                2,
            ),
            (
                "configured production",
                vec![warn, api],
                Some("production"),
                1,
            ),
            ("configured staging", vec![crit, api], Some("staging"), 2),
            ("dev", vec![crit, api, ("env", "dev")], None, 3),
            ("unknown keeps severity", vec![warn, api], None, 2),
        ];
        for (what, labels, configured, want) in cases {
            assert_eq!(fix_prio(&labels, configured), Some(want), "{what}");
        }
    }
}
