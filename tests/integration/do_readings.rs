//! Correct readings of DigitalOcean: a failing later page keeps the pages read, and the simulator
//! answers like the API (rate-limit headers and JSON errors on every answer, `historic_urls`,
//! `skip_pin`).

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

fn do_toml(base: &str) -> String {
    format!(
        "[digitalocean]\napi_url = \"{base}\"\npoll_interval = \"300ms\"\nfast_poll_interval = \"100ms\"\nrequest_timeout = \"1s\"\nbudget_share = 1.0\n\n[health]\ndiscover = false\n"
    )
}

fn app_infos(m: &str) -> usize {
    m.lines()
        .filter(|l| l.starts_with("deploywatch_app_info{"))
        .count()
}

async fn do_last_error(app: &TestApp) -> Option<String> {
    let v: Value = app.get("/api/v1/status").await.json().await.ok()?;
    v["sources"]["digitalocean"]["last_error"]
        .as_str()
        .map(str::to_string)
}

#[tokio::test]
async fn a_failing_later_page_keeps_the_apps_already_read() {
    let sim = SimBuilder::new().start().await;
    let base = sim.url.clone();
    for i in 0..250 {
        sim.add_app(
            &format!("app{i:03}"),
            "1111111111111111111111111111111111111111",
        );
    }
    sim.fail_list_page(Some(2));
    let app = spawn_app(
        Kind::Sqlite,
        &do_toml(&base),
        &[("DIGITALOCEAN_TOKEN", "sim-token")],
    )
    .await;
    // The first page is read although the second fails.
    until(
        "200 app_info series and a last_error saying the list is incomplete",
        Duration::from_secs(30),
        || async {
            let n = app_infos(&app.metrics().await);
            let e = do_last_error(&app).await;
            seen(
                n == 200 && e.as_deref().is_some_and(|e| e.contains("incomplete")),
                (n, e),
            )
        },
    )
    .await;
    sim.fail_list_page(None);
    until(
        "250 app_info series and no last_error",
        Duration::from_secs(30),
        || async {
            let n = app_infos(&app.metrics().await);
            let e = do_last_error(&app).await;
            seen(n == 250 && e.is_none(), (n, e))
        },
    )
    .await;
    let v = app.status().await;
    assert_eq!(v["apps"].as_array().map(Vec::len), Some(250));
    app.stop().await;
}

#[tokio::test]
async fn the_simulator_answers_like_the_api() {
    let sim = SimBuilder::new().start().await;
    let base = sim.url.clone();
    let id = sim.add_app("api", "1111111111111111111111111111111111111111");
    let c = reqwest::Client::new();
    let get = |path: String, token: bool| {
        let mut r = c.get(format!("{base}{path}"));
        if token {
            r = r.bearer_auth("sim-token");
        }
        r.send()
    };
    let cases = [
        (format!("/v2/apps/{id}"), false, 401),
        ("/v2/apps".to_string(), false, 401),
        ("/v2/apps/nosuch".to_string(), true, 404),
        ("/v2/apps/nosuch/deployments".to_string(), true, 404),
        ("/v2/apps/nosuch/deployments/x".to_string(), true, 404),
        ("/v2/apps/nosuch/deployments/x/logs".to_string(), true, 404),
        ("/v2/no/such/route".to_string(), true, 404),
        ("/sim/logs/nosuch/BUILD".to_string(), true, 404),
        ("/sim/apps/nosuch/health/live".to_string(), true, 404),
        ("/v2/apps".to_string(), true, 200),
    ];
    for (path, token, want) in &cases {
        let r = get(path.clone(), *token).await.expect("req");
        assert_eq!(r.status().as_u16(), *want, "{path}");
        assert!(
            r.headers().contains_key("ratelimit-reset"),
            "{path}: ratelimit-reset"
        );
        assert!(r.headers().contains_key("ratelimit-remaining"), "{path}");
        if *want != 200 {
            let v: Value = r
                .json()
                .await
                .unwrap_or_else(|e| panic!("{path}: JSON error body: {e}"));
            assert!(
                v["id"].is_string() && v["message"].is_string(),
                "{path}: {v}"
            );
        }
    }

    // Logs use the schema's key.
    let dep = sim
        .deploy(
            "api",
            "2222222222222222222222222222222222222222",
            do_simulator::Script::Success,
        )
        .expect("deploy");
    let logs: Value = get(
        format!("/v2/apps/{id}/deployments/{dep}/logs?type=BUILD"),
        true,
    )
    .await
    .expect("req")
    .json()
    .await
    .expect("json");
    assert!(
        logs["historic_urls"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{logs}"
    );

    // skip_pin: true rolls back without pinning; the default pins.
    let first = sim
        .deploy(
            "api",
            "3333333333333333333333333333333333333333",
            do_simulator::Script::Success,
        )
        .expect("deploy");
    let rollback = |skip: Option<bool>| {
        let mut body = serde_json::json!({"deployment_id": first});
        if let Some(s) = skip {
            body["skip_pin"] = serde_json::json!(s);
        }
        c.post(format!("{base}/v2/apps/{id}/rollback"))
            .bearer_auth("sim-token")
            .json(&body)
            .send()
    };
    let r = rollback(Some(true)).await.expect("rollback");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v["deployment"]["cause_details"]["type"], "MANUAL_ROLLBACK",
        "{v}"
    );
    assert!(!sim.is_pinned("api"), "skip_pin must not pin");
    let r = rollback(None).await.expect("rollback");
    assert_eq!(r.status(), 200);
    assert!(sim.is_pinned("api"), "a rollback without skip_pin pins");
}

fn ratelimit_gauge(m: &str) -> bool {
    m.lines()
        .any(|l| l.starts_with("deploywatch_digitalocean_ratelimit_remaining"))
}

#[tokio::test]
async fn a_wrong_token_or_an_unreachable_api_names_the_host_cause_and_next_step() {
    // Unreachable: connection refused, and DNS; no answer yet, so no rate-limit gauge.
    let closed = free_port();
    let cases = [
        (
            format!("http://127.0.0.1:{closed}"),
            format!("127.0.0.1:{closed}"),
            "connection refused",
        ),
        (
            "http://no-such-host.invalid".to_string(),
            "no-such-host.invalid".to_string(),
            "DNS lookup failed",
        ),
    ];
    for (base, host, cause) in &cases {
        let app = spawn_app(
            Kind::Sqlite,
            &do_toml(base),
            &[("DIGITALOCEAN_TOKEN", "sim-token")],
        )
        .await;
        let e = until(
            &format!("a DigitalOcean last_error for {base}"),
            Duration::from_secs(30),
            || do_last_error(&app),
        )
        .await;
        assert!(
            e.contains(host.as_str()) && e.contains(cause) && e.contains("check"),
            "{e}"
        );
        assert!(
            !ratelimit_gauge(&app.metrics().await),
            "no gauge before any answer"
        );
        app.stop().await;
    }
    // A wrong token: 401 named, with the variable to check; the answer brings the gauge.
    let sim = SimBuilder::new()
        .app("api", "1111111111111111111111111111111111111111")
        .require_token("the-right-token")
        .start()
        .await;
    let base = sim.url.clone();
    let app = spawn_app(
        Kind::Sqlite,
        &do_toml(&base),
        &[("DIGITALOCEAN_TOKEN", "a-wrong-token")],
    )
    .await;
    let e = until(
        "a DigitalOcean last_error for the wrong token",
        Duration::from_secs(30),
        || do_last_error(&app),
    )
    .await;
    let host = base.trim_start_matches("http://");
    assert!(
        e.contains(host)
            && e.contains("401 unauthorized")
            && e.contains("check DIGITALOCEAN_TOKEN"),
        "{e}"
    );
    assert!(!e.contains("a-wrong-token"), "the token never appears: {e}");
    assert!(
        ratelimit_gauge(&app.metrics().await),
        "the gauge appears with the first answer"
    );
    app.stop().await;
}
