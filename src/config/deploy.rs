//! The deploy loop's configuration: `[deploy] timeout`, the apps' environments (`[[apps]] name,
//! environment`) and staged pipelines (`[[pipelines]] staging_app, production_app`).

use super::error::ConfigError;
use super::file::{DeployFile, PipelineFile};
use super::types::AppConfig;
pub use super::types::{AppSettings, DEFAULT_TIMEOUT, DeployConfig, Pipeline};

/// Validates the three sections; errors name the key.
pub(super) fn build(
    origin: &str,
    deploy: &DeployFile,
    apps: &[AppConfig],
    pipelines: Vec<PipelineFile>,
) -> Result<DeployConfig, ConfigError> {
    let err = |key: String, message: &str| ConfigError::Invalid {
        origin: origin.to_string(),
        key,
        message: message.to_string(),
    };
    let timeout = deploy.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0);
    if timeout.is_zero() {
        return Err(err("deploy.timeout".into(), "must be greater than zero"));
    }
    // `[[apps]]` is validated with the rest of the per-app settings (config/verification.rs).
    let out_apps: Vec<AppSettings> = apps
        .iter()
        .map(|a| AppSettings {
            name: a.name.clone(),
            environment: a.environment.clone(),
        })
        .collect();
    let mut out_pipes: Vec<Pipeline> = Vec::new();
    for (i, p) in pipelines.into_iter().enumerate() {
        if p.staging_app.trim().is_empty() || p.production_app.trim().is_empty() {
            return Err(err(
                format!("pipelines[{i}]"),
                "staging_app and production_app must both name an app",
            ));
        }
        if p.staging_app == p.production_app {
            return Err(err(
                format!("pipelines[{i}].production_app"),
                "is the same app as staging_app; a pipeline goes from one app to another",
            ));
        }
        if out_pipes
            .iter()
            .any(|o| o.production_app == p.production_app)
        {
            return Err(err(
                format!("pipelines[{i}].production_app"),
                "already has a pipeline; give each production app one staging app",
            ));
        }
        out_pipes.push(Pipeline {
            staging_app: p.staging_app,
            production_app: p.production_app,
        });
    }
    Ok(DeployConfig {
        timeout,
        apps: out_apps,
        pipelines: out_pipes,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::Config;

    fn load(toml: &str) -> Result<Config, String> {
        Config::from_toml(toml, &BTreeMap::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn deploy_settings_parse_and_bad_ones_name_their_key() {
        let c = load(
            "[deploy]\ntimeout = \"10m\"\n[[apps]]\nname = \"api\"\nenvironment = \"production\"\n\
             [[apps]]\nname = \"api-staging\"\nenvironment = \"staging\"\n\
             [[pipelines]]\nstaging_app = \"api-staging\"\nproduction_app = \"api\"\n",
        )
        .unwrap_or_else(|e| panic!("valid: {e}"));
        assert_eq!(c.deploy.timeout, std::time::Duration::from_secs(600));
        assert_eq!(c.deploy.environment_of("api"), Some("production"));
        assert_eq!(c.deploy.environment_of("web"), None);
        assert_eq!(c.deploy.staging_for("api"), Some("api-staging"));
        assert_eq!(
            load("").map(|c| c.deploy.timeout).ok(),
            Some(super::DEFAULT_TIMEOUT)
        );
        for (toml, key) in [
            ("[deploy]\ntimeout = \"0s\"\n", "deploy.timeout"),
            ("[deploy]\ntimout = \"5m\"\n", "timout"),
            (
                "[[apps]]\nname = \"a\"\n[[apps]]\nname = \"a\"\n",
                "apps[1].name",
            ),
            (
                "[[pipelines]]\nstaging_app = \"a\"\nproduction_app = \"a\"\n",
                "pipelines[0].production_app",
            ),
        ] {
            let e = load(toml).err().unwrap_or_default();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }
}
