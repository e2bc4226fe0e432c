//! From the file and the environment to the validated configuration: every key checked, every
//! error naming its key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::ctx::{Ctx, duration_or};
use super::env::Env;
use super::error::ConfigError;
use super::file::*;
use super::types::*;

pub(super) fn build(
    file: FileConfig,
    origin: String,
    env: &dyn Env,
) -> Result<Config, ConfigError> {
    let cx = Ctx { origin: &origin };
    let env_cx = Ctx {
        origin: "environment",
    };
    let listen = listen(file.listen.as_deref(), env, &cx, &env_cx)?;
    let database_url = database_url(file.database_url.clone(), env, &cx)?;
    let startup = startup(&file.startup, &cx)?;
    let digitalocean = digitalocean(file.digitalocean.unwrap_or_default(), env, &cx)?;
    let health = health(file.health, &cx)?;
    let git = git(file.git, &cx)?;
    let migration_checks = migration_checks(file.migration_checks, &cx)?;
    let webhook = webhook(file.webhook, env, &cx)?;
    let tasks = tasks(&file.tasks, &cx)?;
    let rollback = rollback(file.rollback, &cx)?;
    let notifiers = notifiers(file.notifiers, &cx)?;
    let log_format = log_format(file.log_format, env, &env_cx)?;
    let http = http(&file.http, &cx)?;
    let verification = super::verification::verification(file.verification, &cx)?;
    let apps = super::verification::apps(file.apps, &cx)?;
    let deploy = super::deploy::build(&origin, &file.deploy, &apps, file.pipelines)?;
    Ok(Config {
        http,
        origin,
        listen,
        database_url,
        environment: file.environment.unwrap_or_else(|| "production".into()),
        log_format,
        startup,
        digitalocean,
        health,
        git,
        migration_checks,
        webhook,
        tasks,
        rollback,
        notifiers,
        verification,
        apps,
        deploy,
    })
}

fn listen(
    file: Option<&str>,
    env: &dyn Env,
    cx: &Ctx<'_>,
    env_cx: &Ctx<'_>,
) -> Result<SocketAddr, ConfigError> {
    let listen_text = env
        .var("DEPLOYWATCH_LISTEN")
        .map(|v| (v, env_cx, "DEPLOYWATCH_LISTEN"))
        .or_else(|| file.map(|v| (v.to_string(), cx, "listen")))
        .unwrap_or_else(|| (DEFAULT_LISTEN.to_string(), cx, "listen"));
    let listen: SocketAddr = listen_text.0.parse().map_err(|_| {
        listen_text.1.err(
            listen_text.2,
            format!(
                "{:?} is not a socket address; write it like \"127.0.0.1:9797\"",
                listen_text.0
            ),
        )
    })?;
    Ok(listen)
}

fn database_url(
    file: Option<SecretString>,
    env: &dyn Env,
    cx: &Ctx<'_>,
) -> Result<SecretString, ConfigError> {
    let database_url = match env.var("DEPLOYWATCH_DATABASE_URL") {
        Some(v) => SecretString::from(v),
        None => file.unwrap_or_else(|| SecretString::from(DEFAULT_DATABASE_URL)),
    };
    if crate::store::Backend::from_url(database_url.expose_secret()).is_none() {
        return Err(cx.err(
            "database_url",
            "must start with sqlite:// or postgres:// (set it in the file or DEPLOYWATCH_DATABASE_URL)",
        ));
    }
    Ok(database_url)
}

fn startup(f: &StartupFile, cx: &Ctx<'_>) -> Result<StartupConfig, ConfigError> {
    let startup = StartupConfig {
        migrate: f.migrate.unwrap_or(true),
        grace: duration_or(f.grace, Duration::from_secs(300)),
        recheck_interval: cx.positive(
            "startup.recheck_interval",
            f.recheck_interval,
            Duration::from_secs(60),
        )?,
    };
    Ok(startup)
}

fn digitalocean(
    dof: DigitalOceanFile,
    env: &dyn Env,
    cx: &Ctx<'_>,
) -> Result<DigitalOceanConfig, ConfigError> {
    let api_text = env
        .var("DEPLOYWATCH_DO_API_URL")
        .or(dof.api_url)
        .unwrap_or_else(|| DEFAULT_DO_API_URL.to_string());
    let api_url = Url::parse(&api_text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            cx.err(
                "digitalocean.api_url",
                format!("{api_text:?} is not an http(s) URL"),
            )
        })?;
    let token = env
        .var("DIGITALOCEAN_TOKEN")
        .map(SecretString::from)
        .or(dof.token);
    let budget_share = dof.budget_share.unwrap_or(0.5);
    if !(budget_share > 0.0 && budget_share <= 1.0) {
        return Err(cx.err("digitalocean.budget_share", "must be a fraction in (0, 1]"));
    }
    let poll_interval = cx.positive(
        "digitalocean.poll_interval",
        dof.poll_interval,
        Duration::from_secs(30),
    )?;
    let digitalocean = DigitalOceanConfig {
        token,
        api_url,
        poll_interval,
        fast_poll_interval: cx.positive(
            "digitalocean.fast_poll_interval",
            dof.fast_poll_interval,
            Duration::from_secs(10).min(poll_interval),
        )?,
        budget_share,
        request_timeout: cx.positive(
            "digitalocean.request_timeout",
            dof.request_timeout,
            Duration::from_secs(15),
        )?,
        stuck_after: cx.positive(
            "digitalocean.stuck_after",
            dof.stuck_after,
            Duration::from_secs(30 * 60),
        )?,
        log_tail_lines: dof.log_tail_lines.unwrap_or(50).min(1000),
        // Short enough that a takeover after a crash (lease + a quarter lease) fits in one poll
        // interval after the missed one.
        lease: cx.positive(
            "digitalocean.lease",
            dof.lease,
            poll_interval.mul_f64(0.75).max(Duration::from_secs(1)),
        )?,
    };
    if digitalocean.lease < Duration::from_millis(500) {
        return Err(cx.err(
            "digitalocean.lease",
            "must be at least 500ms (it is renewed every third of its length)",
        ));
    }
    Ok(digitalocean)
}

fn health(h: HealthFile, cx: &Ctx<'_>) -> Result<HealthConfig, ConfigError> {
    let allow_ll_global = h.allow_link_local.unwrap_or(false);
    let mut targets = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in h.targets.into_iter().enumerate() {
        let k = |f: &str| format!("health.targets[{i}].{f}");
        let name = cx.label(&k("name"), &t.name)?;
        if !seen.insert(name.as_str().to_string()) {
            return Err(cx.err(k("name"), format!("duplicate target name {:?}", t.name)));
        }
        let url = Url::parse(&t.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| {
                cx.err(
                    k("url"),
                    format!("{:?} is not an http(s) URL with a host", t.url),
                )
            })?;
        let app = cx.label(&k("app"), t.app.as_deref().unwrap_or(t.name.as_str()))?;
        let interval = cx.positive(&k("interval"), t.interval, Duration::from_secs(15))?;
        let timeout = cx.positive(&k("timeout"), t.timeout, Duration::from_secs(5))?;
        if timeout > interval {
            return Err(cx.err(
                k("timeout"),
                "must not be longer than the target's interval",
            ));
        }
        if let Some(bad) = t.accepted_status.iter().find(|s| !(100..=599).contains(*s)) {
            return Err(cx.err(
                k("accepted_status"),
                format!("{bad} is not an HTTP status code"),
            ));
        }
        let ft = t.failure_threshold.unwrap_or(3);
        let st = t.success_threshold.unwrap_or(1);
        if ft == 0 || st == 0 {
            return Err(cx.err(k("failure_threshold"), "thresholds must be at least 1"));
        }
        targets.push(HealthTarget {
            name,
            app,
            url,
            interval,
            timeout,
            accepted_status: t.accepted_status,
            failure_threshold: ft,
            success_threshold: st,
            body_checks: t
                .body_checks
                .into_iter()
                .map(|b| BodyCheck {
                    field: b.field,
                    equals: b.equals,
                })
                .collect(),
            expect_active_commit: t.expect_active_commit,
            allow_link_local: t.allow_link_local.unwrap_or(allow_ll_global),
        });
    }
    let health = HealthConfig {
        targets,
        discover: h.discover.unwrap_or(true),
        concurrency: h.concurrency.unwrap_or(32).clamp(1, 1024),
        allow_link_local: allow_ll_global,
    };
    Ok(health)
}

fn git(g: GitFile, cx: &Ctx<'_>) -> Result<GitConfig, ConfigError> {
    let mut repos = Vec::new();
    for (i, r) in g.repos.into_iter().enumerate() {
        let k = |f: &str| format!("git.repos[{i}].{f}");
        let name = cx.label(&k("name"), &r.name)?;
        if r.url.trim().is_empty() {
            return Err(cx.err(k("url"), "must be a local path or a remote URL"));
        }
        let branches = if r.branches.is_empty() {
            vec!["main".to_string()]
        } else {
            r.branches
        };
        for b in &branches {
            if b.is_empty()
                || b.contains("..")
                || b.starts_with('-')
                || b.contains(char::is_whitespace)
            {
                return Err(cx.err(k("branches"), format!("{b:?} is not a branch name")));
            }
        }
        let app = r
            .app
            .as_deref()
            .map(|a| cx.label(&k("app"), a))
            .transpose()?;
        repos.push(GitRepo {
            name,
            url: r.url,
            branches,
            app,
        });
    }
    let git = GitConfig {
        repos,
        fetch_interval: cx.positive(
            "git.fetch_interval",
            g.fetch_interval,
            Duration::from_secs(60),
        )?,
        mirror_dir: g
            .mirror_dir
            .unwrap_or_else(|| PathBuf::from("deploywatch-git")),
    };
    Ok(git)
}

fn migration_checks(
    files: Vec<MigrationCheckFile>,
    cx: &Ctx<'_>,
) -> Result<Vec<MigrationCheckConfig>, ConfigError> {
    let mut migration_checks = Vec::new();
    for (i, m) in files.into_iter().enumerate() {
        let k = |f: &str| format!("migration_checks[{i}].{f}");
        let name = cx.label(&k("name"), &m.name)?;
        let url = m.database_url.expose_secret();
        if ![
            "mysql://",
            "mariadb://",
            "postgres://",
            "postgresql://",
            "sqlite:",
        ]
        .iter()
        .any(|p| url.starts_with(p))
        {
            return Err(cx.err(
                k("database_url"),
                "must start with mysql://, postgres:// or sqlite:",
            ));
        }
        for t in m.required_tables.iter().chain(m.required_columns.keys()) {
            crate::domain::validate_identifier(t)
                .map_err(|msg| cx.err(k("required_tables"), msg))?;
        }
        if let Some(t) = &m.tracking_table {
            crate::domain::validate_identifier(t)
                .map_err(|msg| cx.err(k("tracking_table"), msg))?;
        }
        let app = m
            .app
            .as_deref()
            .map(|a| cx.label(&k("app"), a))
            .transpose()?;
        migration_checks.push(MigrationCheckConfig {
            name,
            app,
            database_url: m.database_url,
            required_tables: m.required_tables,
            required_columns: m.required_columns,
            migrations_dir: m.migrations_dir,
            expected_version: m.expected_version,
            tracking_table: m.tracking_table,
            sql_checks: m
                .sql_checks
                .into_iter()
                .map(|s| SqlCheck {
                    name: s.name,
                    sql: s.sql,
                })
                .collect(),
            interval: cx.positive(&k("interval"), m.interval, Duration::from_secs(60))?,
            timeout: cx.positive(&k("timeout"), m.timeout, Duration::from_secs(5))?,
        });
    }
    Ok(migration_checks)
}

fn webhook(w: WebhookFile, env: &dyn Env, cx: &Ctx<'_>) -> Result<WebhookConfig, ConfigError> {
    // A blank token would silently turn authentication off: refuse to start instead.
    for (var, key, from_file) in [
        ("DEPLOYWATCH_WEBHOOK_TOKEN", "webhook.token", &w.token),
        (
            "DEPLOYWATCH_WEBHOOK_PREVIOUS_TOKEN",
            "webhook.previous_token",
            &w.previous_token,
        ),
    ] {
        if let Some(m) = env.blank_secret(var) {
            return Err(ConfigError::Invalid {
                origin: "environment".into(),
                key: var.into(),
                message: m,
            });
        }
        if let Some(t) = from_file
            && t.expose_secret().trim().is_empty()
        {
            return Err(cx.err(
                key,
                format!("{key} is empty or whitespace-only; set a real token or remove the key"),
            ));
        }
    }
    let mut tokens = Vec::new();
    if let Some(t) = env
        .var("DEPLOYWATCH_WEBHOOK_TOKEN")
        .map(SecretString::from)
        .or(w.token)
    {
        tokens.push(t);
    }
    if let Some(t) = env
        .var("DEPLOYWATCH_WEBHOOK_PREVIOUS_TOKEN")
        .map(SecretString::from)
        .or(w.previous_token)
    {
        tokens.push(t);
    }
    let mut rules = Vec::new();
    for (i, r) in w.rules.into_iter().enumerate() {
        let actions = r
            .actions
            .iter()
            .map(|a| {
                a.parse::<crate::tasks::rules::Action>()
                    .map_err(|m| cx.err(format!("webhook.rules[{i}].actions"), m))
            })
            .collect::<Result<Vec<_>, _>>()?;
        rules.push(crate::tasks::rules::Rule {
            alertname: r.alertname,
            match_labels: r.match_labels,
            actions,
        });
    }
    let webhook = WebhookConfig {
        tokens,
        reopen_window: duration_or(w.reopen_window, Duration::from_secs(15 * 60)),
        store_timeout: cx.positive(
            "webhook.store_timeout",
            w.store_timeout,
            Duration::from_secs(3),
        )?,
        dashboard_url: w.dashboard_url,
        rules,
    };
    Ok(webhook)
}

fn tasks(t: &TasksFile, cx: &Ctx<'_>) -> Result<TasksConfig, ConfigError> {
    let tasks = TasksConfig {
        default_lease: cx.positive(
            "tasks.default_lease",
            t.default_lease,
            Duration::from_secs(300),
        )?,
        max_attempts: t.max_attempts.unwrap_or(3).max(1),
        sweep_interval: cx.positive(
            "tasks.sweep_interval",
            t.sweep_interval,
            Duration::from_secs(5),
        )?,
    };
    Ok(tasks)
}

fn rollback(r: RollbackFile, cx: &Ctx<'_>) -> Result<RollbackConfig, ConfigError> {
    let rollback = RollbackConfig {
        auto: r
            .auto
            .into_iter()
            .map(|a| AutoRollback {
                app: a.app,
                environment: a.environment,
                dry_run: a.dry_run,
            })
            .collect(),
        cooldown: duration_or(r.cooldown, Duration::from_secs(30 * 60)),
        follow_timeout: cx.positive(
            "rollback.follow_timeout",
            r.follow_timeout,
            Duration::from_secs(20 * 60),
        )?,
        healthy_for: duration_or(r.healthy_for, Duration::from_secs(120)),
    };
    Ok(rollback)
}

fn notifiers(files: Vec<NotifierFile>, cx: &Ctx<'_>) -> Result<Vec<NotifierConfig>, ConfigError> {
    let mut notifiers = Vec::new();
    for (i, n) in files.into_iter().enumerate() {
        let ok = Url::parse(n.url.expose_secret())
            .map(|u| matches!(u.scheme(), "http" | "https"))
            .unwrap_or(false);
        if !ok {
            return Err(cx.err(format!("notifiers[{i}].url"), "is not an http(s) URL"));
        }
        notifiers.push(NotifierConfig {
            name: n.name,
            kind: n.kind,
            url: n.url,
        });
    }
    Ok(notifiers)
}

fn log_format(
    file: Option<LogFormat>,
    env: &dyn Env,
    env_cx: &Ctx<'_>,
) -> Result<LogFormat, ConfigError> {
    let log_format = match env.var("DEPLOYWATCH_LOG_FORMAT").as_deref() {
        Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        Some(other) => {
            return Err(env_cx.err(
                "DEPLOYWATCH_LOG_FORMAT",
                format!("{other:?} is neither \"text\" nor \"json\""),
            ));
        }
        None => file.unwrap_or_default(),
    };
    Ok(log_format)
}

fn http(h: &HttpFile, cx: &Ctx<'_>) -> Result<crate::http::limits::HttpLimits, ConfigError> {
    let d = crate::http::limits::HttpLimits::default();
    let http = crate::http::limits::HttpLimits {
        header_timeout: cx.positive("http.header_timeout", h.header_timeout, d.header_timeout)?,
        body_timeout: cx.positive("http.body_timeout", h.body_timeout, d.body_timeout)?,
        max_body_bytes_in_flight: match h.max_body_bytes_in_flight {
            Some(n) if n < crate::http::limits::BODY_LIMIT => {
                return Err(cx.err(
                    "http.max_body_bytes_in_flight",
                    format!(
                        "must be at least the body limit, {} bytes",
                        crate::http::limits::BODY_LIMIT
                    ),
                ));
            }
            Some(n) => n,
            None => d.max_body_bytes_in_flight,
        },
    };
    Ok(http)
}
