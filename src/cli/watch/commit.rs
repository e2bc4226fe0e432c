//! `deploywatch watch --commit SHA`: waits for the deployment that carries a commit, even before
//! it exists, follows it to its end, and (with `--verify`) waits for the post-deploy verdict.
//! Straight against the DigitalOcean API with `DIGITALOCEAN_TOKEN`, else through a deploywatch
//! server. The decisions are in `commit_match.rs`; this file polls and prints.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::commit_match::{
    AfterActive, Match, Seen, Verification, after_active, normalize_sha, pick, same_commit,
    seen_in_status,
};
use crate::cli::exit::{EXIT_ERROR, EXIT_FAILING, EXIT_OK, EXIT_TIMEOUT};
use crate::domain::{DeploymentView, Phase};
use crate::sources::digitalocean::client::Client;
use crate::terminal::{clean, clean_lines};

/// What `watch --commit` was asked.
#[derive(Debug, Clone)]
pub struct Request {
    pub commit: String,
    pub app: Option<String>,
    pub verify: bool,
    pub timeout: Duration,
    pub json: bool,
    /// `Some(url)`: through a deploywatch server; `None`: the DigitalOcean API.
    pub server: Option<String>,
}

enum Source {
    Direct {
        c: Client,
        /// (id, name) of the apps looked at.
        apps: Vec<(String, String)>,
    },
    Server {
        c: reqwest::Client,
        base: String,
        /// The last document, for the failure details of a deployment that ended.
        doc: Value,
    },
}

pub async fn run(req: Request) -> anyhow::Result<i32> {
    let target = match normalize_sha(&req.commit) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("deploywatch: {e}");
            return Ok(EXIT_ERROR);
        }
    };
    let start = Instant::now();
    let mut src = match connect(&req).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("deploywatch: {e:#}");
            return Ok(EXIT_ERROR);
        }
    };
    let git = super::ancestry::Git::at_hand().await;
    let mut ancestry: HashMap<String, Option<bool>> = HashMap::new();
    let out = Printer {
        json: req.json,
        commit: target.clone(),
    };
    out.waiting(&src, git.is_some());

    let mut following: Option<(String, String, Match)> = None;
    let mut last: Option<Seen> = None;
    let mut told_waiting = false;
    loop {
        let observed = match observe(&mut src, &req, following.as_ref()).await {
            Ok(o) => o,
            Err(e) => {
                eprintln!("deploywatch: {e:#} (retrying)");
                Vec::new()
            }
        };
        // Follow the deployment found earlier while it is visible and not canceled; otherwise
        // look again (a cancel may be superseded by a deployment that contains the commit).
        let direct = matches!(src, Source::Direct { .. });
        let followed = following.as_ref().and_then(|(app_id, id, m)| {
            observed
                .iter()
                .find(|s| &s.app_id == app_id && &s.id == id)
                .map(|s| (s.clone(), *m))
        });
        let current = match followed {
            Some(c) if c.0.phase != Phase::Canceled => Some(c),
            _ => {
                let pool = if direct && following.is_some() {
                    observe(&mut src, &req, None).await.unwrap_or_default()
                } else {
                    observed
                };
                if let Some(g) = &git {
                    for s in &pool {
                        if let Some(c) = &s.commit
                            && !same_commit(&target, c)
                            && !ancestry.contains_key(c)
                        {
                            let v = g.is_ancestor(&target, c).await;
                            ancestry.insert(c.clone(), v);
                        }
                    }
                }
                let lookup = |c: &str| ancestry.get(c).copied().flatten();
                pick(&target, &pool, &lookup).map(|(i, m)| (pool[i].clone(), m))
            }
        };
        if let Some((s, m)) = &current {
            if following.as_ref().is_none_or(|(_, id, _)| id != &s.id) {
                out.found(s, *m);
                last = None;
            }
            following = Some((s.app_id.clone(), s.id.clone(), *m));
            if last.as_ref() != Some(s) {
                out.progress(s, last.as_ref());
                last = Some(s.clone());
            }
            match s.phase {
                Phase::Active | Phase::Superseded => {
                    // The API itself has no verdict; only a server reports one.
                    let v = if direct {
                        Verification::NotReported
                    } else {
                        s.verification
                    };
                    match after_active(req.verify, v) {
                        AfterActive::Succeeded => {
                            let v = Some(v).filter(|_| req.verify);
                            return Ok(out.end(s, *m, "success", v, None, EXIT_OK));
                        }
                        AfterActive::SucceededUnverified => {
                            out.note(if direct {
                                "watching the DigitalOcean API directly shows no post-deploy verdict (a deploywatch server reports it: use --server); ACTIVE is the end"
                            } else {
                                "the server reports no post-deploy verdict for this deployment (is [verification] configured?); ACTIVE is the end"
                            });
                            return Ok(out.end(s, *m, "success", Some(v), None, EXIT_OK));
                        }
                        AfterActive::VerificationFailed => {
                            return Ok(out.end(
                                s,
                                *m,
                                "verification_failed",
                                Some(v),
                                None,
                                EXIT_FAILING,
                            ));
                        }
                        AfterActive::WaitForVerdict => {
                            if !told_waiting {
                                out.note("ACTIVE; waiting for the post-deploy verdict");
                                told_waiting = true;
                            }
                        }
                    }
                }
                Phase::Error | Phase::Canceled => {
                    let outcome = if s.phase == Phase::Error {
                        "failure"
                    } else {
                        "canceled"
                    };
                    let details = failure_details(&src, s).await;
                    return Ok(out.end(s, *m, outcome, None, Some(details), EXIT_FAILING));
                }
                _ => {}
            }
        }
        if start.elapsed() >= req.timeout {
            let what = match &current {
                Some((s, _)) => format!(
                    "deployment {} of {} is still {}",
                    clean(&s.id),
                    clean(&s.app),
                    s.phase.as_str()
                ),
                None => "no deployment of it showed up".to_string(),
            };
            eprintln!(
                "deploywatch: commit {} after {:?}: {what}; raise --timeout to wait longer",
                short(&target),
                req.timeout
            );
            if req.json {
                println!(
                    "{}",
                    json!({"commit": target, "outcome": "timeout", "deployment_id": current.as_ref().map(|c| c.0.id.clone()), "phase": current.as_ref().map(|c| c.0.phase.as_str())})
                );
            }
            return Ok(EXIT_TIMEOUT);
        }
        let base = match &src {
            Source::Direct { apps, .. } if following.is_none() => {
                Duration::from_millis((apps.len() as u64 * 500).clamp(1000, 15000))
            }
            _ => Duration::from_secs(1),
        };
        let left = req.timeout.saturating_sub(start.elapsed());
        tokio::time::sleep(base.min(left).max(Duration::from_millis(50))).await;
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

async fn connect(req: &Request) -> anyhow::Result<Source> {
    match &req.server {
        None => {
            let c = super::client()?;
            let (apps, _) = c.list_apps().await.map_err(|e| {
                anyhow::anyhow!("{e}; check DIGITALOCEAN_TOKEN and DEPLOYWATCH_DO_API_URL")
            })?;
            let picked: Vec<(String, String)> = apps
                .iter()
                .filter(|a| {
                    req.app
                        .as_deref()
                        .is_none_or(|n| n == a.name() || n == a.id)
                })
                .map(|a| (a.id.clone(), a.name().to_string()))
                .collect();
            if picked.is_empty() {
                let known: Vec<&str> = apps.iter().map(|a| a.name()).collect();
                match &req.app {
                    Some(n) => anyhow::bail!(
                        "no app named {:?}; known apps: {}",
                        clean(n),
                        clean(&known.join(", "))
                    ),
                    None => {
                        anyhow::bail!("the account has no apps yet; nothing can deploy the commit")
                    }
                }
            }
            Ok(Source::Direct { c, apps: picked })
        }
        Some(base) => {
            let c = crate::cli::client::http_client();
            let doc = server_doc(&c, base, req.app.as_deref()).await?;
            if let Some(n) = &req.app
                && !doc["apps"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["name"].as_str() == Some(n.as_str())))
            {
                anyhow::bail!(
                    "no app named {:?} on {base}; `deploywatch status` lists the known apps",
                    clean(n)
                );
            }
            Ok(Source::Server {
                c,
                base: base.clone(),
                doc,
            })
        }
    }
}

async fn server_doc(c: &reqwest::Client, base: &str, app: Option<&str>) -> anyhow::Result<Value> {
    let mut url = url::Url::parse(&format!("{base}/api/v1/status")).map_err(|e| {
        anyhow::anyhow!(
            "the server URL {base:?} is not a URL ({e}); pass --server http://HOST:PORT"
        )
    })?;
    if let Some(a) = app {
        url.query_pairs_mut().append_pair("app", a);
    }
    let resp = crate::cli::client::auth(c.get(url)).send().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot reach the deploywatch server at {base} ({e}); is `deploywatch serve` running? \
             Set --server or DEPLOYWATCH_SERVER, or DIGITALOCEAN_TOKEN to watch the API directly"
        )
    })?;
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        anyhow::bail!("the server at {base} wants a token: set DEPLOYWATCH_WEBHOOK_TOKEN");
    }
    if !status.is_success() {
        anyhow::bail!("the server at {base} answered HTTP {status}");
    }
    resp.json::<Value>().await.map_err(|e| {
        anyhow::anyhow!("the server at {base} answered something that is not JSON ({e})")
    })
}

/// One poll: the deployment followed (the API, when it is known), else every deployment seen.
async fn observe(
    src: &mut Source,
    req: &Request,
    following: Option<&(String, String, Match)>,
) -> anyhow::Result<Vec<Seen>> {
    match src {
        Source::Direct { c, apps } => {
            let name_of = |id: &str| {
                apps.iter()
                    .find(|(i, _)| i == id)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_default()
            };
            if let Some((app_id, id, _)) = following {
                let d = c.get_deployment(app_id, id).await?;
                return Ok(vec![seen_from_api(app_id, &name_of(app_id), &d)]);
            }
            let mut out = Vec::new();
            for (app_id, name) in apps.iter() {
                let (deps, _) = c.list_deployments(app_id, 10).await?;
                out.extend(deps.iter().map(|d| seen_from_api(app_id, name, d)));
            }
            Ok(out)
        }
        Source::Server { c, base, doc } => {
            *doc = server_doc(c, base, req.app.as_deref()).await?;
            Ok(seen_in_status(doc, req.app.as_deref()))
        }
    }
}

fn seen_from_api(
    app_id: &str,
    app: &str,
    d: &crate::sources::digitalocean::types::Deployment,
) -> Seen {
    let v = DeploymentView::from_api(d);
    Seen {
        app: app.to_string(),
        app_id: app_id.to_string(),
        id: v.id,
        phase: v.phase,
        commit: v.commit,
        created_at: v.created_at,
        steps: v.steps.into_iter().map(|s| (s.name, s.status)).collect(),
        verification: Verification::NotReported,
    }
}

/// The failed step and the log tail of a deployment that ended badly, as JSON.
async fn failure_details(src: &Source, s: &Seen) -> Value {
    match src {
        Source::Direct { c, .. } => {
            let Ok(d) = c.get_deployment(&s.app_id, &s.id).await else {
                return json!({});
            };
            let failed = d.failed_step();
            let log_type = if failed.as_ref().is_some_and(|f| f.top_step == "deploy") {
                "DEPLOY"
            } else {
                "BUILD"
            };
            let tail = if s.phase == Phase::Error {
                c.deployment_log_tail(&s.app_id, &s.id, log_type, 30)
                    .await
                    .ok()
            } else {
                None
            };
            json!({"failed_step": failed, "log_tail": tail})
        }
        Source::Server { doc, .. } => {
            let f = doc["apps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| &a["last_failure"])
                .find(|f| f["deployment_id"].as_str() == Some(s.id.as_str()));
            match f {
                Some(f) => json!({"failed_step": f["failed_step"], "log_tail": f["log_tail"]}),
                None => json!({}),
            }
        }
    }
}

struct Printer {
    json: bool,
    commit: String,
}

impl Printer {
    fn waiting(&self, src: &Source, git: bool) {
        let apps: Vec<String> = match src {
            Source::Direct { apps, .. } => apps.iter().map(|(_, n)| n.clone()).collect(),
            Source::Server { doc, .. } => doc["apps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["name"].as_str().map(str::to_string))
                .collect(),
        };
        if self.json {
            println!(
                "{}",
                json!({"commit": self.commit, "waiting": true, "apps": apps, "git": git})
            );
        } else {
            println!(
                "waiting for a deployment of commit {} (apps: {}){}",
                short(&self.commit),
                clean(&apps.join(", ")),
                if git {
                    ""
                } else {
                    "; no git repository here, so only deployments of exactly this commit count"
                }
            );
        }
    }

    fn note(&self, msg: &str) {
        if self.json {
            println!("{}", json!({"commit": self.commit, "note": msg}));
        } else {
            println!("{msg}");
        }
    }

    fn found(&self, s: &Seen, m: Match) {
        if self.json {
            return;
        }
        let how = match m {
            Match::Exact => String::new(),
            Match::Contains => format!(
                " (it deploys {}, which contains {})",
                clean(s.commit.as_deref().map(short).unwrap_or("?")),
                short(&self.commit)
            ),
        };
        println!(
            "{} deployment {} of {}{how}",
            chrono::Utc::now().format("%H:%M:%S"),
            clean(&s.id),
            clean(&s.app)
        );
    }

    fn progress(&self, s: &Seen, last: Option<&Seen>) {
        if self.json {
            println!(
                "{}",
                json!({"app": s.app, "commit": self.commit, "deployment": {
                    "id": s.id, "phase": s.phase.as_str(), "commit": s.commit,
                    "created_at": s.created_at,
                    "steps": s.steps.iter().map(|(n, st)| json!({"name": n, "status": st})).collect::<Vec<_>>(),
                }})
            );
            return;
        }
        if last.is_none_or(|l| l.phase != s.phase) {
            println!(
                "{} {} {}",
                chrono::Utc::now().format("%H:%M:%S"),
                clean(&s.id),
                s.phase.as_str()
            );
        }
        let old: &[(String, String)] = last.map(|l| l.steps.as_slice()).unwrap_or(&[]);
        for (n, st) in s.steps.iter().filter(|x| !old.contains(x)) {
            println!("  {:<24} {}", clean(n), clean(st));
        }
    }

    fn end(
        &self,
        s: &Seen,
        m: Match,
        outcome: &str,
        v: Option<Verification>,
        details: Option<Value>,
        code: i32,
    ) -> i32 {
        let details = details.unwrap_or_else(|| json!({}));
        if self.json {
            println!(
                "{}",
                json!({"app": s.app, "commit": self.commit, "deployment_id": s.id,
                       "deployed_commit": s.commit, "matched": m.as_str(), "outcome": outcome,
                       "phase": s.phase.as_str(),
                       "verification": v.map(Verification::as_str),
                       "failed_step": details["failed_step"], "log_tail": details["log_tail"]})
            );
            return code;
        }
        println!("deployment {} is {}", clean(&s.id), s.phase.as_str());
        if let Some(v) = v.filter(|v| *v != Verification::NotReported) {
            println!("verification: {}", v.as_str());
        }
        if let Some(f) = details["failed_step"].as_object() {
            let g = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("");
            println!(
                "failed step: {} / {} ({}): {}",
                clean(g("top_step")),
                clean(g("step")),
                clean(
                    f.get("reason_code")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason code")
                ),
                clean(g("reason_message"))
            );
        }
        if let Some(t) = details["log_tail"].as_str() {
            println!("--- last lines of the log ---\n{}", clean_lines(t));
        }
        if std::io::stdout().is_terminal() && outcome != "success" {
            println!("deploywatch status --app {} shows more", clean(&s.app));
        }
        code
    }
}
