//! `deploywatch watch`: follows one deployment to its end straight against the DigitalOcean API
//! (no server needed, so a post-push hook can run it), and `status` without a server. `server`
//! follows a deployment through a deploywatch server instead, when there is no token.

pub mod ancestry;
pub mod commit;
pub mod commit_match;
pub mod server;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::SecretString;
use serde_json::json;

use crate::cli::exit::{EXIT_ERROR, EXIT_FAILING, EXIT_OK, EXIT_TIMEOUT};
use crate::domain::DeploymentView;
use crate::domain::Phase;
use crate::sources::digitalocean::client::Client;
use crate::sources::digitalocean::types::{Deployment, Step};
use crate::terminal::{clean, clean_lines};

pub(crate) fn client() -> anyhow::Result<Client> {
    let token = std::env::var("DIGITALOCEAN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .context("DIGITALOCEAN_TOKEN is not set; `watch` talks to the DigitalOcean API directly")?;
    let base = std::env::var("DEPLOYWATCH_DO_API_URL")
        .unwrap_or_else(|_| crate::config::DEFAULT_DO_API_URL.into());
    let base = url::Url::parse(&base)
        .with_context(|| format!("DEPLOYWATCH_DO_API_URL {base:?} is not a URL"))?;
    Ok(Client::new(
        base,
        SecretString::from(token),
        Duration::from_secs(15),
        None,
    ))
}

/// Status straight from the API: each app's latest deployment.
pub async fn direct_status(only: Option<&str>) -> anyhow::Result<serde_json::Value> {
    let c = client()?;
    let (apps, _) = c.list_apps().await?;
    let mut out = Vec::new();
    for a in apps.iter().filter(|a| only.is_none_or(|o| o == a.name())) {
        let (deps, _) = c.list_deployments(&a.id, 1).await?;
        out.push(json!({
            "name": a.name(),
            "id": a.id,
            "latest": deps.first().map(DeploymentView::from_api),
            "active": a.active_deployment.as_ref().map(DeploymentView::from_api),
            "in_progress": a.in_progress_deployment.as_ref().map(DeploymentView::from_api),
            "pinned_deployment_id": a.pinned_deployment.as_ref().map(|d| d.id.clone()),
        }));
    }
    Ok(
        json!({"version": env!("CARGO_PKG_VERSION"), "source": "digitalocean-api", "apps": out, "open_tasks": []}),
    )
}

fn flatten(steps: &[Step], depth: usize, out: &mut Vec<(usize, String, String)>) {
    for s in steps {
        out.push((depth, s.name.clone(), s.status.clone().unwrap_or_default()));
        flatten(&s.steps, depth + 1, out);
    }
}

fn render_steps(d: &Deployment) -> Vec<String> {
    let mut flat = Vec::new();
    if let Some(p) = &d.progress {
        flatten(&p.steps, 0, &mut flat);
    }
    flat.into_iter()
        .map(|(depth, name, status)| {
            format!(
                "{}{:<24} {}",
                "  ".repeat(depth),
                clean(&name),
                clean(&status)
            )
        })
        .collect()
}

pub async fn run(
    app: Option<String>,
    deployment: Option<String>,
    timeout: Duration,
    json_out: bool,
) -> anyhow::Result<i32> {
    let c = match client() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("deploywatch: {e:#}");
            return Ok(EXIT_ERROR);
        }
    };
    let (apps, _) = c.list_apps().await?;
    let target_app = match (&app, &deployment) {
        (Some(name), _) => apps.iter().find(|a| a.name() == name || a.id == *name),
        (None, Some(_)) if apps.len() == 1 => apps.first(),
        (None, Some(_)) => {
            anyhow::bail!("--deployment needs --app when the account has more than one app")
        }
        (None, None) => anyhow::bail!("name the app with --app (and optionally --deployment)"),
    };
    let Some(a) = target_app else {
        anyhow::bail!(
            "no app named {:?}; `deploywatch status` lists them",
            app.unwrap_or_default()
        );
    };
    let dep_id = match deployment {
        Some(d) => d,
        None => match a.in_progress_deployment.as_ref() {
            Some(d) => d.id.clone(),
            None => c
                .list_deployments(&a.id, 1)
                .await?
                .0
                .first()
                .map(|d| d.id.clone())
                .context("the app has no deployments")?,
        },
    };
    let tty = std::io::stdout().is_terminal() && !json_out;
    let start = Instant::now();
    let mut last_lines: Vec<String> = Vec::new();
    let mut last_phase = None;
    loop {
        let d = match c.get_deployment(&a.id, &dep_id).await {
            Ok(d) => d,
            Err(e) if start.elapsed() < timeout => {
                eprintln!("deploywatch: {e} (retrying)");
                tokio::time::sleep(Duration::from_secs(3)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let lines = render_steps(&d);
        if json_out {
            if last_phase != Some(d.phase) || lines != last_lines {
                println!(
                    "{}",
                    serde_json::to_string(
                        &json!({"app": a.name(), "deployment": DeploymentView::from_api(&d)})
                    )?
                );
            }
        } else if tty {
            // A live view: redraw the step list in place.
            print!(
                "\x1b[2J\x1b[H{} deployment {} — {}\n\n{}\n",
                clean(a.name()),
                clean(&d.id),
                d.phase.as_str(),
                lines.join("\n")
            );
        } else {
            if last_phase != Some(d.phase) {
                println!(
                    "{} {} {}",
                    chrono::Utc::now().format("%H:%M:%S"),
                    clean(&d.id),
                    d.phase.as_str()
                );
            }
            for l in lines.iter().filter(|l| !last_lines.contains(l)) {
                println!("  {}", l.trim_start());
            }
        }
        last_lines = lines;
        last_phase = Some(d.phase);
        if let Some(outcome) = d.phase.outcome() {
            if d.phase == Phase::Active || d.phase == Phase::Superseded {
                if !json_out {
                    println!("deployment {} is {}", clean(&d.id), d.phase.as_str());
                }
                return Ok(EXIT_OK);
            }
            let failed = d.failed_step();
            let log_type = if failed.as_ref().is_some_and(|f| f.top_step == "deploy") {
                "DEPLOY"
            } else {
                "BUILD"
            };
            let tail = c.deployment_log_tail(&a.id, &d.id, log_type, 30).await.ok();
            if json_out {
                println!(
                    "{}",
                    serde_json::to_string(
                        &json!({"outcome": outcome.as_str(), "failed_step": failed, "log_tail": tail})
                    )?
                );
            } else {
                println!("deployment {} ended {}", clean(&d.id), d.phase.as_str());
                if let Some(f) = &failed {
                    println!(
                        "failed step: {} / {} ({}): {}",
                        clean(&f.top_step),
                        clean(&f.step),
                        clean(f.reason_code.as_deref().unwrap_or("no reason code")),
                        clean(f.reason_message.as_deref().unwrap_or(""))
                    );
                }
                if let Some(t) = &tail {
                    println!(
                        "--- last lines of the {} log ---\n{}",
                        log_type.to_ascii_lowercase(),
                        clean_lines(t)
                    );
                }
            }
            return Ok(EXIT_FAILING);
        }
        if start.elapsed() >= timeout {
            eprintln!(
                "deploywatch: deployment {} still {} after {:?}",
                d.id,
                d.phase.as_str(),
                timeout
            );
            return Ok(EXIT_TIMEOUT);
        }
        let left = timeout.saturating_sub(start.elapsed());
        tokio::time::sleep(
            Duration::from_secs(2)
                .min(left)
                .max(Duration::from_millis(100)),
        )
        .await;
    }
}
