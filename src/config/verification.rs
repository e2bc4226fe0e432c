//! The `[verification]` section and the per-app `[[apps]]` entries, validated.

use std::time::Duration;

use url::Url;

use super::ctx::{Ctx, duration_or};
use super::error::ConfigError;
use super::file::{AppFile, VerificationFile};
use super::types::{AppConfig, QueryKind, QueryLimit, VerificationConfig, VerificationQuery};

pub(super) fn verification(
    v: VerificationFile,
    cx: &Ctx<'_>,
) -> Result<VerificationConfig, ConfigError> {
    let prometheus_url = match v.prometheus_url {
        None => None,
        Some(u) => Some(
            Url::parse(&u)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| {
                    cx.err(
                        "verification.prometheus_url",
                        format!("{u:?} is not an http(s) URL, e.g. \"http://prometheus:9090\""),
                    )
                })?,
        ),
    };
    let mut queries = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, q) in v.queries.into_iter().enumerate() {
        let k = |f: &str| format!("verification.queries[{i}].{f}");
        let name = cx.label(&k("name"), &q.name)?;
        if !names.insert(name.as_str().to_string()) {
            return Err(cx.err(k("name"), format!("duplicate query name {:?}", q.name)));
        }
        if q.query.trim().is_empty() {
            return Err(cx.err(k("query"), "must be a PromQL expression"));
        }
        let limit = match (q.max, q.min) {
            (Some(m), None) if m.is_finite() => QueryLimit::Max(m),
            (None, Some(m)) if m.is_finite() => QueryLimit::Min(m),
            _ => {
                return Err(cx.err(
                    k("max"),
                    "give exactly one finite bound: `max` (latency, error ratio) or `min`",
                ));
            }
        };
        let kind = match q.kind.as_deref() {
            Some("latency") => QueryKind::Latency,
            Some("error_rate") => QueryKind::ErrorRate,
            Some(other) => {
                return Err(cx.err(
                    k("kind"),
                    format!("{other:?} is neither \"latency\" nor \"error_rate\""),
                ));
            }
            // Unnamed: a name that speaks of errors is an error rate, anything else latency.
            None if name.as_str().contains("error") || name.as_str().contains("5xx") => {
                QueryKind::ErrorRate
            }
            None => QueryKind::Latency,
        };
        queries.push(VerificationQuery {
            name,
            query: q.query,
            limit,
            kind,
        });
    }
    if !queries.is_empty() && prometheus_url.is_none() {
        return Err(cx.err(
            "verification.prometheus_url",
            "is required when verification.queries are given",
        ));
    }
    let oom = v.oom_memory_percent.unwrap_or(90.0);
    if !(oom > 0.0 && oom <= 100.0) {
        return Err(cx.err("verification.oom_memory_percent", "must be in (0, 100]"));
    }
    Ok(VerificationConfig {
        window: duration_or(v.window, Duration::from_secs(10 * 60)),
        interval: cx.positive("verification.interval", v.interval, Duration::from_secs(60))?,
        auto_rollback: v.auto_rollback.unwrap_or(false),
        prometheus_url,
        queries,
        cancel_stuck: v.cancel_stuck.unwrap_or(false),
        crash_loop_restarts: v.crash_loop_restarts.unwrap_or(3).max(1),
        oom_memory_percent: oom,
        // Off unless asked for: idle, deploywatch costs one DigitalOcean request per poll cycle
        // whatever the number of apps, and a sweep adds one request per app per interval.
        sweep_interval: duration_or(v.sweep_interval, Duration::ZERO),
    })
}

pub(super) fn apps(files: Vec<AppFile>, cx: &Ctx<'_>) -> Result<Vec<AppConfig>, ConfigError> {
    let mut out: Vec<AppConfig> = Vec::new();
    for (i, a) in files.into_iter().enumerate() {
        let k = |f: &str| format!("apps[{i}].{f}");
        if a.name.trim().is_empty() {
            return Err(cx.err(k("name"), "must name a DigitalOcean app"));
        }
        if out.iter().any(|o| o.name == a.name) {
            return Err(cx.err(k("name"), format!("duplicate app {:?}", a.name)));
        }
        if let Some(e) = &a.environment {
            cx.label(&k("environment"), e)?;
        }
        out.push(AppConfig {
            name: a.name,
            environment: a.environment,
            window: a.window.map(|d| d.0),
            auto_rollback: a.auto_rollback,
        });
    }
    Ok(out)
}
