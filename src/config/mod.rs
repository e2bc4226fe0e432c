//! Configuration: a TOML file plus the contract's environment variables, parsed once at startup into
//! typed values. Everything downstream receives these types and never re-validates.
//!
//! Strictness follows blackbox_exporter: an unknown key or a bad value stops the process with a message
//! that names the file and the key, and `deploywatch check` reports the same errors without starting.

mod build;
mod ctx;
pub mod deploy;
mod env;
mod error;
mod file;
mod types;
mod verification;

use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;

pub use env::{Env, ProcessEnv};
pub use error::ConfigError;
pub use file::HumanDuration;
pub use types::*;

use build::build;
use file::{FileConfig, parse_file};

impl Config {
    /// Loads from `path` (or `DEPLOYWATCH_CONFIG`) and the environment.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Config, ConfigError> {
        let path: Option<PathBuf> = path
            .map(Path::to_path_buf)
            .or_else(|| env.var("DEPLOYWATCH_CONFIG").map(PathBuf::from));
        let (file, origin) = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                (
                    parse_file(&text, p)?,
                    format!("config file {}", p.display()),
                )
            }
            None => (FileConfig::default(), "configuration".to_string()),
        };
        build(file, origin, env)
    }

    /// Parses TOML text; used by tests and by `load`.
    pub fn from_toml(text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        let file = parse_file(text, Path::new("<inline>"))?;
        build(file, "config file <inline>".into(), env)
    }

    /// Names of the outbound notifiers, for the outbox.
    pub fn notifier_names(&self) -> Vec<String> {
        self.notifiers.iter().map(|n| n.name.clone()).collect()
    }

    pub fn database_kind(&self) -> crate::store::Backend {
        crate::store::Backend::from_url(self.database_url.expose_secret())
            .unwrap_or(crate::store::Backend::Sqlite)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secrets_never_show_in_debug_or_display() {
        let cfg = Config::from_toml(
            "database_url = \"postgres://dw:db-canary@h/dw\"\n[[notifiers]]\nname = \"n\"\nkind = \"json\"\nurl = \"https://hooks/notifier-canary\"\n",
            &env(&[("DIGITALOCEAN_TOKEN", "do-canary"), ("DEPLOYWATCH_WEBHOOK_TOKEN", "hook-canary")]),
        )
        .expect("valid");
        let shown = format!("{cfg:?} {cfg}");
        for canary in ["db-canary", "do-canary", "hook-canary", "notifier-canary"] {
            assert!(!shown.contains(canary), "{canary} leaked: {shown}");
        }
        assert!(cfg.digitalocean.token.is_some());
    }

    #[test]
    fn environment_overrides_the_file_and_defaults_apply() {
        let cfg = Config::from_toml(
            "listen = \"127.0.0.1:1\"\n[digitalocean]\npoll_interval = \"2m\"\n",
            &env(&[
                ("DEPLOYWATCH_LISTEN", "127.0.0.1:2"),
                ("DEPLOYWATCH_DO_API_URL", "http://sim:1"),
            ]),
        )
        .expect("valid");
        assert_eq!(cfg.listen.port(), 2);
        assert_eq!(cfg.digitalocean.api_url.as_str(), "http://sim:1/");
        assert_eq!(cfg.digitalocean.poll_interval, Duration::from_secs(120));
        assert_eq!(cfg.digitalocean.fast_poll_interval, Duration::from_secs(10));
        assert!(cfg.digitalocean.token.is_none());
        assert_eq!(cfg.database_kind(), crate::store::Backend::Sqlite);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                "[digitalocean]\npoll_interval = \"0s\"\n",
                "digitalocean.poll_interval",
            ),
            (
                "[[health.targets]]\nname = \"a\"\nurl = \"http://x/\"\ninterval = \"1s\"\ntimeout = \"2s\"\n",
                "health.targets[0].timeout",
            ),
            (
                "[[health.targets]]\nname = \"a\"\nurl = \"http://x/\"\naccepted_status = [999]\n",
                "health.targets[0].accepted_status",
            ),
            (
                "[[git.repos]]\nname = \"r\"\nurl = \"/x\"\nbranches = [\"..\"]\n",
                "git.repos[0].branches",
            ),
            ("unknown_key = 1\n", "unknown_key"),
        ];
        for (text, key) in cases {
            let e = Config::from_toml(text, &env(&[]))
                .expect_err(text)
                .to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }
}
