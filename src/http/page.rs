//! `GET /`: the place to look. Server-rendered from the status document, a little CSS, a few
//! lines of JavaScript that re-fetch the page body every few seconds. No build step, readable on a
//! phone, and every value HTML-escaped (labels and log tails come from outside).

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::access::ApiQuery;
use crate::app::AppState;

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn s(v: &Value) -> String {
    esc(v.as_str().unwrap_or(""))
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// "42s", "7m", "3h", "2d".
pub fn span(secs: i64) -> String {
    match secs.max(0) {
        x if x < 120 => format!("{x}s"),
        x if x < 7200 => format!("{}m", x / 60),
        x if x < 172_800 => format!("{}h", x / 3600),
        x => format!("{}d", x / 86_400),
    }
}

fn short(v: &Value, n: usize) -> String {
    v.as_str()
        .map(|c| esc(crate::domain::prefix(c, n)))
        .unwrap_or_else(|| "—".into())
}

fn phase_class(phase: &str) -> &'static str {
    match phase {
        "ACTIVE" | "SUPERSEDED" => "ok",
        "ERROR" => "bad",
        "CANCELED" => "warn",
        _ => "run",
    }
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1c2430}\
header{background:#1c2430;color:#fff;padding:.8rem 1rem;display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;align-items:baseline}\
header h1{font-size:1.2rem;margin:0}header a{color:#9cc3ff}main{padding:1rem;max-width:1100px;margin:auto}\
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:.8rem 1rem;margin-bottom:1rem}\
h2{font-size:1.05rem;margin:.1rem 0 .6rem}h3{font-size:1rem;margin:.2rem 0}\
.apps{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:1rem}\
.app{border:1px solid #dde1e7;border-radius:8px;padding:.7rem}\
.b{display:inline-block;border-radius:4px;padding:0 .4rem;font-size:.8rem;font-weight:600}\
.ok{background:#d8f5dd;color:#13612a}.bad{background:#fde0e0;color:#9b1c1c}.warn{background:#fff1cc;color:#7a5200}.run{background:#dfeaff;color:#1f4fa3}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.25rem .4rem;border-bottom:1px solid #eef0f3;vertical-align:top}\
pre{background:#1c2430;color:#e6edf3;padding:.5rem;border-radius:6px;overflow-x:auto;font-size:.8rem;white-space:pre-wrap}\
.muted{color:#687385}.b.muted{background:#eef0f3}.kv{display:grid;grid-template-columns:max-content 1fr;gap:.1rem .8rem;font-size:.9rem}\
@media(max-width:600px){td,th{font-size:.85rem}.hide-s{display:none}}";

/// Reloads the page body every 5 seconds without a full reload; stops when the tab is hidden.
const SCRIPT: &str = "(function(){var m=document.getElementById('live');\
function tick(){if(document.hidden)return;fetch(location.pathname+'?partial=1',{credentials:'same-origin'})\
.then(function(r){return r.ok?r.text():null}).then(function(t){if(t!==null){m.innerHTML=t;\
document.getElementById('updated').textContent='updated '+new Date().toLocaleTimeString()}})\
.catch(function(){document.getElementById('updated').textContent='server unreachable, retrying'})}\
setInterval(tick,5000)})();";

/// The whole page. `details` is false for an anonymous reader when a token is configured: then no
/// task, commit, log tail or failure reason is shown.
pub fn render(status: &Value, details: bool, now: DateTime<Utc>) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>deploywatch</title><style>{STYLE}</style></head><body>\
         <header><h1>deploywatch {}</h1><span id=updated class=muted>live: refreshes every 5s</span>\
         <nav><a href=/metrics>metrics</a> · <a href=/api/v1/status>status JSON</a> · \
         <a href=/api/v1/tasks>tasks JSON</a> · <a href=/health/ready>ready</a></nav></header>\
         <main id=live>{}</main><script>{SCRIPT}</script></body></html>",
        s(&status["version"]),
        body(status, details, now)
    )
}

/// What the live refresh replaces: everything below the header.
pub fn body(status: &Value, details: bool, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    if !details {
        out.push_str(
            "<section><p class=muted>A token is configured: deployments, tasks, commits and log tails \
             are shown to requests that send <code>Authorization: Bearer &lt;token&gt;</code>.</p></section>",
        );
    }
    out.push_str(&sources(status));
    if details {
        out.push_str(&apps(status, now));
        out.push_str(&alerts(status, now));
        out.push_str(&tasks(status, now));
    }
    out
}

fn sources(status: &Value) -> String {
    let mut rows = String::new();
    for (name, v) in status["sources"].as_object().into_iter().flatten() {
        let state = v["state"].as_str().unwrap_or("");
        let class = match state {
            "on" => "ok",
            "failing" => "bad",
            _ => "muted",
        };
        let why = [&v["reason"], &v["last_error"]]
            .iter()
            .filter_map(|x| x.as_str().filter(|t| !t.is_empty()))
            .map(esc)
            .collect::<Vec<_>>()
            .join(" — ");
        let _ = write!(
            rows,
            "<tr><td>{}</td><td><span class=\"b {class}\">{}</span></td><td>{why}</td></tr>",
            esc(name),
            esc(state)
        );
    }
    format!(
        "<section><h2>Sources</h2><table><tr><th>source</th><th>state</th><th>why / last error</th></tr>{rows}</table></section>"
    )
}

fn deployment_line(label: &str, d: &Value, now: DateTime<Utc>) -> String {
    if !d.is_object() {
        return String::new();
    }
    let phase = d["phase"].as_str().unwrap_or("UNKNOWN");
    let created = time(&d["created_at"]);
    let age = created
        .map(|c| format!("{} ago", span((now - c).num_seconds())))
        .unwrap_or_default();
    let duration = match (created, time(&d["ended_at"])) {
        (Some(c), Some(e)) => format!(", took {}", span((e - c).num_seconds())),
        _ => String::new(),
    };
    let step = d["steps"]
        .as_array()
        .and_then(|st| {
            st.iter()
                .rev()
                .find(|x| x["status"].as_str().is_some_and(|v| v != "PENDING"))
        })
        .map(|x| format!(" · step {} {}", s(&x["name"]), s(&x["status"])))
        .unwrap_or_default();
    format!(
        "<dt>{label}</dt><dd><span class=\"b {}\">{}</span> <code title=\"{}\">{}</code> commit <code>{}</code>{step}<br>\
         <span class=muted>{} {age}{duration}</span></dd>",
        phase_class(phase),
        esc(phase),
        s(&d["id"]),
        short(&d["id"], 8),
        short(&d["commit"], 7),
        s(&d["cause"]),
    )
}

fn apps(status: &Value, now: DateTime<Utc>) -> String {
    let list = status["apps"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "<section><h2>Deployments</h2><p class=muted>No apps yet: set DIGITALOCEAN_TOKEN, or run <code>deploywatch demo</code>.</p></section>".into();
    }
    let mut cards = String::new();
    for a in &list {
        let mut dl = String::new();
        dl.push_str(&deployment_line("in progress", &a["in_progress"], now));
        if a["latest"]["id"] != a["in_progress"]["id"] {
            dl.push_str(&deployment_line("latest", &a["latest"], now));
        }
        if a["active"]["id"] != a["latest"]["id"] {
            dl.push_str(&deployment_line("active", &a["active"], now));
        }
        let verification = a["verification"]["result"]
            .as_str()
            .map(esc)
            .unwrap_or_else(|| "—".into());
        let _ = write!(dl, "<dt>verification</dt><dd>{verification}</dd>");
        if a["stuck"] == Value::Bool(true) {
            dl.push_str("<dt>stuck</dt><dd><span class=\"b warn\">STUCK</span> the in-progress deployment has not moved for too long</dd>");
        }
        if a["pinned_deployment_id"].is_string() {
            let _ = write!(
                dl,
                "<dt>pinned</dt><dd><span class=\"b warn\">PINNED</span> to <code>{}</code></dd>",
                short(&a["pinned_deployment_id"], 8)
            );
        }
        for p in a["probes"].as_array().into_iter().flatten() {
            let ok = p["healthy"] == Value::Bool(true);
            let _ = write!(
                dl,
                "<dt>probe</dt><dd>{} <span class=\"b {}\">{}</span> {}</dd>",
                s(&p["target"]),
                if ok { "ok" } else { "bad" },
                if ok { "healthy" } else { "FAILING" },
                s(&p["last_failure_reason"])
            );
        }
        let failure = failure_block(a);
        let _ = write!(
            cards,
            "<div class=app data-app=\"{}\"><h3>{}</h3><dl class=kv>{dl}</dl>{failure}</div>",
            s(&a["name"]),
            s(&a["name"])
        );
    }
    format!("<section><h2>Deployments</h2><div class=apps>{cards}</div></section>")
}

fn failure_block(a: &Value) -> String {
    let f = &a["last_failure"];
    if !f.is_object() {
        return String::new();
    }
    let history = crate::http::status_text::failure_is_history(a);
    let when = time(&f["ended_at"])
        .map(|t| format!(" on {}", t.format("%Y-%m-%d %H:%M UTC")))
        .unwrap_or_default();
    let step = &f["failed_step"];
    let tail = f["log_tail"]
        .as_str()
        .map(|t| format!("<pre class=logtail>{}</pre>", esc(t)))
        .unwrap_or_default();
    format!(
        "<div class=failure><p><span class=\"b {}\">{}</span> <b>{}</b> at {}/{}{when}{}<br>\
         <span class=muted>{} {}</span></p>{tail}</div>",
        if history { "muted" } else { "bad" },
        if history { "earlier failure" } else { "FAILED" },
        s(&f["class"]),
        s(&step["top_step"]),
        s(&step["step"]),
        if history {
            " (before the current ACTIVE deployment)"
        } else {
            ""
        },
        s(&step["reason_code"]),
        s(&step["reason_message"]),
    )
}

fn alerts(status: &Value, now: DateTime<Utc>) -> String {
    let list = status["firing_alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        return "<section><h2>Firing alerts</h2><p class=muted>none</p></section>".into();
    }
    let mut rows = String::new();
    for a in &list {
        let since = time(&a["starts_at"])
            .map(|t| span((now - t).num_seconds()))
            .unwrap_or_default();
        let _ = write!(
            rows,
            "<tr><td><span class=\"b bad\">{}</span></td><td>{}</td><td>{since}</td></tr>",
            s(&a["alertname"]),
            s(&a["app"])
        );
    }
    format!(
        "<section><h2>Firing alerts</h2><table><tr><th>alert</th><th>app</th><th>for</th></tr>{rows}</table></section>"
    )
}

fn tasks(status: &Value, now: DateTime<Utc>) -> String {
    let all = status["open_tasks"].as_array().cloned().unwrap_or_default();
    // Announcements are news, not work: shown apart, the newest few, never as open tasks.
    let (announce, work): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|t| t["queue"].as_str() == Some("announce"));
    let mut out = String::from("<section><h2>Open tasks</h2>");
    if work.is_empty() {
        out.push_str("<p class=muted>none</p>");
    }
    // The urgent queues first.
    let rank = |q: &str| {
        ["execution", "deploy", "e2e-test"]
            .iter()
            .position(|x| *x == q)
            .unwrap_or(9)
    };
    let mut queues: Vec<&str> = work.iter().filter_map(|t| t["queue"].as_str()).collect();
    queues.sort_unstable_by_key(|q| (rank(q), *q));
    queues.dedup();
    for q in queues {
        let mut rows = String::new();
        for t in work.iter().filter(|t| t["queue"].as_str() == Some(q)) {
            let holder = match (t["state"].as_str(), t["worker"].as_str()) {
                (Some("claimed"), Some(w)) => format!("claimed by <b>{}</b>", esc(w)),
                _ => "queued".into(),
            };
            let age = time(&t["created_at"])
                .map(|c| span((now - c).num_seconds()))
                .unwrap_or_default();
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{holder}</td><td class=hide-s>P{}</td><td class=hide-s>{age}</td><td class=hide-s><code>{}</code></td></tr>",
                s(&t["title"]),
                t["priority"].as_i64().unwrap_or(0),
                s(&t["id"])
            );
        }
        let _ = write!(
            out,
            "<h3>{}</h3><table class=tasks data-queue=\"{}\"><tr><th>task</th><th>who</th><th class=hide-s>prio</th><th class=hide-s>age</th><th class=hide-s>id</th></tr>{rows}</table>",
            esc(q),
            esc(q)
        );
    }
    out.push_str("</section>");
    let mut recent = String::new();
    for t in announce.iter().take(8) {
        let _ = write!(recent, "<li>{}</li>", s(&t["title"]));
    }
    if !recent.is_empty() {
        let _ = write!(
            out,
            "<section><h2>Recent announcements</h2><ul class=announcements>{recent}</ul><p class=muted>{} undelivered in the announce queue</p></section>",
            announce.len()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "version": "0.1.0",
            "sources": {"digitalocean": {"state": "failing", "reason": "", "last_error": "api.digitalocean.com: 401"}},
            "apps": [{
                "name": "<script>alert(1)</script>",
                "latest": {"id": "d2", "phase": "ERROR", "commit": "abcdef0123", "cause": "commit pushed",
                           "created_at": "2026-11-28T09:50:00Z", "ended_at": "2026-11-28T09:55:00Z",
                           "steps": [{"name": "build", "status": "ERROR"}]},
                "active": {"id": "d1", "phase": "ACTIVE", "commit": "0123abcd", "created_at": "2026-11-27T09:00:00Z"},
                "last_failure": {"deployment_id": "d2", "class": "dependency_issue",
                                 "failed_step": {"top_step": "build", "step": "web", "reason_code": "BuildJobExitNonZero", "reason_message": "exit 1"},
                                 "log_tail": "npm ERR! \"<img src=x onerror=alert(2)>\"", "ended_at": "2026-11-28T09:55:00Z"},
                "probes": [], "stuck": false
            }],
            "firing_alerts": [{"alertname": "DeploymentFailed", "app": "api", "starts_at": "2026-11-28T09:56:00Z"}],
            "open_tasks": [
                {"id": "t1", "queue": "execution", "state": "claimed", "worker": "agent-7", "priority": 1,
                 "title": "FIX: Dependency issue in api", "created_at": "2026-11-28T09:56:00Z"},
                {"id": "t2", "queue": "announce", "state": "queued", "priority": 4,
                 "title": "ANNOUNCE: Deployment of api failed", "created_at": "2026-11-28T09:56:00Z"}
            ]
        })
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn the_page_shows_the_failure_its_log_tail_and_who_holds_the_task() {
        let html = render(&doc(), true, now());
        assert!(html.contains("BuildJobExitNonZero"));
        assert!(html.contains("npm ERR!"));
        assert!(html.contains("claimed by <b>agent-7</b>"));
        assert!(html.contains("took 5m"));
        assert!(html.contains("api.digitalocean.com: 401"));
        // Announcements are not open work.
        let open = &html[html.find("Open tasks").expect("section")
            ..html.find("Recent announcements").expect("section")];
        assert!(!open.contains("ANNOUNCE:"), "{open}");
    }

    #[test]
    fn everything_is_escaped() {
        let html = render(&doc(), true, now());
        assert!(!html.contains("<script>alert(1)"));
        assert!(!html.contains("<img src=x"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&quot;&lt;img src=x onerror=alert(2)&gt;&quot;"));
    }

    #[test]
    fn an_anonymous_reader_sees_no_task_commit_or_log_tail() {
        let html = render(&doc(), false, now());
        for secret in [
            "FIX: Dependency",
            "abcdef0",
            "npm ERR!",
            "agent-7",
            "exit 1",
        ] {
            assert!(!html.contains(secret), "{secret} leaked");
        }
        assert!(html.contains("digitalocean"));
    }

    #[test]
    fn spans_read_naturally() {
        for (secs, want) in [
            (5, "5s"),
            (119, "119s"),
            (600, "10m"),
            (7200, "2h"),
            (200_000, "2d"),
            (-3, "0s"),
        ] {
            assert_eq!(span(secs), want);
        }
    }
}

#[derive(Deserialize)]
pub(super) struct PageQuery {
    partial: Option<u8>,
}

/// The page; `?partial=1` is the body alone, for the page's own live refresh.
pub(super) async fn landing(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Response {
    let details = crate::http::access::authorized(&app.config.webhook.tokens, &headers);
    // The page reads the document as the CLI does: as the JSON the route serves.
    let status =
        serde_json::to_value(crate::http::status::build(&app, None).await).unwrap_or_default();
    let now = chrono::Utc::now();
    let html = if q.partial == Some(1) {
        crate::http::page::body(&status, details, now)
    } else {
        crate::http::page::render(&status, details, now)
    };
    ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}
