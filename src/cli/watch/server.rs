//! `watch` through a deploywatch server (`/api/v1/status`), for shells without a DigitalOcean
//! token: an agent next to `deploywatch serve`, or anyone trying `deploywatch demo`.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use crate::cli::exit::{EXIT_ERROR, EXIT_FAILING, EXIT_OK, EXIT_TIMEOUT};
use crate::domain::{Outcome, Phase};
use crate::terminal::{clean, clean_lines};

#[derive(Debug, Deserialize)]
struct Doc {
    #[serde(default)]
    apps: Vec<AppDoc>,
}

#[derive(Debug, Deserialize)]
struct AppDoc {
    name: String,
    latest: Option<Dep>,
    in_progress: Option<Dep>,
    active: Option<Dep>,
    last_failure: Option<Failure>,
}

#[derive(Debug, Clone, Deserialize)]
struct Dep {
    id: String,
    phase: Phase,
    #[serde(default)]
    steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
struct Step {
    name: String,
    #[serde(default)]
    status: String,
}

#[derive(Debug, Deserialize)]
struct Failure {
    deployment_id: String,
    failed_step: Option<FailedStep>,
    log_tail: Option<String>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct FailedStep {
    top_step: String,
    step: String,
    reason_code: Option<String>,
    reason_message: Option<String>,
}

/// Where the followed deployment stands in one status document. Pure.
#[derive(Debug, PartialEq)]
enum Seen {
    Running(Phase, Vec<Step>),
    Ended(Phase, Vec<Step>),
    /// No longer shown as latest, in progress or active, and not the last failure.
    Gone,
}

fn locate(a: &AppDoc, id: &str) -> Seen {
    let found = [&a.in_progress, &a.latest, &a.active]
        .into_iter()
        .flatten()
        .find(|d| d.id == id);
    match found {
        Some(d) if d.phase.outcome().is_some() => Seen::Ended(d.phase, d.steps.clone()),
        Some(d) => Seen::Running(d.phase, d.steps.clone()),
        None if a
            .last_failure
            .as_ref()
            .is_some_and(|f| f.deployment_id == id) =>
        {
            Seen::Ended(Phase::Error, vec![])
        }
        None => Seen::Gone,
    }
}

async fn fetch(c: &reqwest::Client, base: &str, app: &str) -> anyhow::Result<Doc> {
    let mut url = url::Url::parse(&format!("{base}/api/v1/status"))?;
    url.query_pairs_mut().append_pair("app", app);
    let resp = crate::cli::client::auth(c.get(url)).send().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the deploywatch server at {base} ({e}); is `deploywatch serve` or `deploywatch demo` running? \
             Set --server or DEPLOYWATCH_SERVER, or set DIGITALOCEAN_TOKEN to watch the API directly"
        )
    })?;
    if !resp.status().is_success() {
        anyhow::bail!("the server at {base} answered HTTP {}", resp.status());
    }
    Ok(resp.json::<Doc>().await?)
}

pub async fn run(
    base: String,
    app: Option<String>,
    deployment: Option<String>,
    timeout: Duration,
    json_out: bool,
) -> anyhow::Result<i32> {
    let Some(app) = app else {
        eprintln!("deploywatch: name the app with --app (and optionally --deployment)");
        return Ok(EXIT_ERROR);
    };
    let c = crate::cli::client::http_client();
    let start = Instant::now();
    let doc = fetch(&c, &base, &app).await?;
    let Some(a) = doc.apps.into_iter().find(|a| a.name == app) else {
        eprintln!(
            "deploywatch: no app named {:?} on {base}; `deploywatch status` lists the known apps",
            clean(&app)
        );
        return Ok(EXIT_ERROR);
    };
    let Some(id) = deployment.or_else(|| {
        a.in_progress
            .as_ref()
            .or(a.latest.as_ref())
            .map(|d| d.id.clone())
    }) else {
        eprintln!("deploywatch: {} has no deployments yet", clean(&app));
        return Ok(EXIT_ERROR);
    };
    let mut last: Option<Seen> = None;
    let mut current = a;
    loop {
        let seen = locate(&current, &id);
        if last.as_ref() != Some(&seen) {
            print_progress(&app, &id, &seen, last.as_ref(), json_out);
        }
        if let Seen::Ended(phase, _) = &seen {
            return Ok(finish(&app, &id, *phase, &current, json_out));
        }
        if start.elapsed() >= timeout {
            eprintln!(
                "deploywatch: deployment {} of {} has not ended after {timeout:?}",
                clean(&id),
                clean(&app)
            );
            return Ok(EXIT_TIMEOUT);
        }
        last = Some(seen);
        tokio::time::sleep(Duration::from_secs(1).min(timeout.saturating_sub(start.elapsed())))
            .await;
        match fetch(&c, &base, &app).await {
            Ok(doc) => {
                if let Some(a) = doc.apps.into_iter().find(|a| a.name == app) {
                    current = a;
                }
            }
            Err(e) => eprintln!("deploywatch: {e:#} (retrying)"),
        }
    }
}

fn print_progress(app: &str, id: &str, seen: &Seen, last: Option<&Seen>, json_out: bool) {
    let (phase, steps) = match seen {
        Seen::Running(p, s) | Seen::Ended(p, s) => (p.as_str(), s.as_slice()),
        Seen::Gone => ("UNKNOWN", &[][..]),
    };
    if json_out {
        println!(
            "{}",
            json!({"app": app, "deployment": {"id": id, "phase": phase, "steps": steps.iter().map(|s| json!({"name": s.name, "status": s.status})).collect::<Vec<_>>()}})
        );
        return;
    }
    let old: &[Step] = match last {
        Some(Seen::Running(_, s)) | Some(Seen::Ended(_, s)) => s,
        _ => &[],
    };
    let old_phase = match last {
        Some(Seen::Running(p, _)) | Some(Seen::Ended(p, _)) => Some(p.as_str()),
        _ => None,
    };
    if old_phase != Some(phase) {
        println!(
            "{} {} {}",
            chrono::Utc::now().format("%H:%M:%S"),
            clean(id),
            phase
        );
    }
    for s in steps.iter().filter(|s| !old.contains(s)) {
        println!("  {:<24} {}", clean(&s.name), clean(&s.status));
    }
}

fn finish(app: &str, id: &str, phase: Phase, a: &AppDoc, json_out: bool) -> i32 {
    let failure = a.last_failure.as_ref().filter(|f| f.deployment_id == id);
    let outcome = phase.outcome().unwrap_or(Outcome::Failure);
    if json_out {
        println!(
            "{}",
            json!({"app": app, "outcome": outcome.as_str(), "failed_step": failure.and_then(|f| f.failed_step.as_ref()), "log_tail": failure.and_then(|f| f.log_tail.as_deref())})
        );
    } else {
        println!("deployment {} is {}", clean(id), phase.as_str());
        if let Some(f) = failure {
            if let Some(s) = &f.failed_step {
                println!(
                    "failed step: {} / {} ({}): {}",
                    clean(&s.top_step),
                    clean(&s.step),
                    clean(s.reason_code.as_deref().unwrap_or("no reason code")),
                    clean(s.reason_message.as_deref().unwrap_or(""))
                );
            }
            if let Some(t) = &f.log_tail {
                println!("--- last lines of the log ---\n{}", clean_lines(t));
            }
        }
    }
    if outcome == Outcome::Success {
        EXIT_OK
    } else {
        EXIT_FAILING
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(id: &str, phase: Phase) -> Option<Dep> {
        Some(Dep {
            id: id.into(),
            phase,
            steps: vec![],
        })
    }

    #[test]
    fn the_followed_deployment_is_found_wherever_the_status_shows_it() {
        let app = |latest, in_progress, active, failed: Option<&str>| AppDoc {
            name: "api".into(),
            latest,
            in_progress,
            active,
            last_failure: failed.map(|f| Failure {
                deployment_id: f.into(),
                failed_step: None,
                log_tail: None,
            }),
        };
        let table = [
            (
                app(
                    dep("d1", Phase::Building),
                    dep("d1", Phase::Building),
                    None,
                    None,
                ),
                Seen::Running(Phase::Building, vec![]),
            ),
            (
                app(
                    dep("d1", Phase::Active),
                    None,
                    dep("d1", Phase::Active),
                    None,
                ),
                Seen::Ended(Phase::Active, vec![]),
            ),
            (
                app(
                    dep("d2", Phase::Building),
                    dep("d2", Phase::Building),
                    dep("d1", Phase::Active),
                    None,
                ),
                Seen::Ended(Phase::Active, vec![]),
            ),
            (
                app(
                    dep("d2", Phase::Building),
                    dep("d2", Phase::Building),
                    dep("d0", Phase::Active),
                    Some("d1"),
                ),
                Seen::Ended(Phase::Error, vec![]),
            ),
            (
                app(
                    dep("d1", Phase::Canceled),
                    None,
                    dep("d0", Phase::Active),
                    None,
                ),
                Seen::Ended(Phase::Canceled, vec![]),
            ),
            (
                app(
                    dep("d3", Phase::Active),
                    None,
                    dep("d3", Phase::Active),
                    None,
                ),
                Seen::Gone,
            ),
        ];
        for (i, (a, want)) in table.into_iter().enumerate() {
            assert_eq!(locate(&a, "d1"), want, "row {i}");
        }
    }
}
