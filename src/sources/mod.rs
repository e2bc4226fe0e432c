//! Sources: the things deploywatch watches. Each keeps a snapshot that `/metrics`, `status` and the
//! webhook's enrichment read without waiting on the network.
//!
//! Architecture Invariant: sources never write tasks. They publish lifecycle events; the fixer turns
//! those into announcements and e2e-test tasks.

pub mod digitalocean;
pub mod git;
pub mod prometheus;

use crate::config::Config;

/// Every source, in the order status and `/metrics` list them.
pub const ALL: [&str; 4] = ["digitalocean", "health", "git", "migrations"];

/// Whether a source is configured, and if not, what would turn it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enabled {
    pub source: &'static str,
    pub on: bool,
    /// Empty when on.
    pub why_off: &'static str,
}

/// Which sources this configuration turns on. Pure. A source that is off exports no
/// `deploywatch_source_up`, so it can never look down.
pub fn enabled(cfg: &Config) -> [Enabled; 4] {
    let token = cfg.digitalocean.token.is_some();
    let health = !cfg.health.targets.is_empty() || (token && cfg.health.discover);
    let e = |source, on, why_off| Enabled {
        source,
        on,
        why_off: if on { "" } else { why_off },
    };
    [
        e("digitalocean", token, "no DIGITALOCEAN_TOKEN set"),
        e(
            "health",
            health,
            "no [[health.targets]] configured and discovery needs the DigitalOcean source",
        ),
        e(
            "git",
            !cfg.git.repos.is_empty(),
            "no [[git.repos]] configured",
        ),
        e(
            "migrations",
            !cfg.migration_checks.is_empty(),
            "no [[migration_checks]] configured",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_install_enables_nothing_and_a_token_enables_the_api_and_discovery() {
        let none = std::collections::BTreeMap::<String, String>::new();
        let bare = Config::load(None, &none).expect("defaults");
        assert!(
            enabled(&bare)
                .iter()
                .all(|e| !e.on && !e.why_off.is_empty())
        );
        let env =
            std::collections::BTreeMap::from([("DIGITALOCEAN_TOKEN".to_string(), "t".to_string())]);
        let mut with_token = Config::load(None, &env).expect("defaults");
        let on: Vec<_> = enabled(&with_token)
            .iter()
            .filter(|e| e.on)
            .map(|e| e.source)
            .collect();
        assert_eq!(on, ["digitalocean", "health"]);
        with_token.health.discover = false;
        assert!(!enabled(&with_token)[1].on);
    }
}
